//! Passkeys (WebAuthn, `[mfa.webauthn]`): the two ceremonies, registration and
//! authentication, with `webauthn-rs` doing the cryptography and the checks (origin, RP ID,
//! challenge, user verification, signature counter). A ceremony is begun by one request and
//! finished by the next, possibly on another auth instance: its state waits in the shared
//! store (single use, [`CEREMONY_TTL`]) under a random id the client sends back, together
//! with who began it (a session, a pending sign-in, or, for a passwordless sign-in, a
//! device), which the finish must be again. Never in a cookie: a client holding the state
//! could replay a challenge.
//!
//! The passkeys themselves (public key, counter) are rows of `mfa_passkeys` ([`super::store`]).

use crate::error::ApiError;
use authflow_shared::digest::hash_hex;
use authflow_shared::store::ShortLived;
use authflow_shared::token::random_token;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder,
};

/// How long a begun ceremony waits for its finish; also the timeout the browser is given.
pub const CEREMONY_TTL: Duration = Duration::from_secs(300);

pub use crate::config::mfa::{host_within, WebauthnConfig};

/// Who began a ceremony; the finish must come from the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Requester {
    /// A signed-in session (hash of its id): an enrolment, or a step-up.
    Session(String),
    /// A sign-in waiting for its second factor (hash of its cookie's secret).
    Pending(String),
    /// Nobody yet (a passwordless sign-in): the device fingerprint of the request.
    Device(String),
}

/// What a ceremony waits for, with its `webauthn-rs` state.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Register {
        user_id: String,
        state: PasskeyRegistration,
    },
    Authenticate {
        user_id: String,
        state: PasskeyAuthentication,
    },
    Discover {
        state: DiscoverableAuthentication,
    },
}

/// A begun ceremony, as stored.
#[derive(Serialize, Deserialize)]
pub struct Ceremony {
    pub by: Requester,
    pub stage: Stage,
}

/// What the client needs to run a begun ceremony: the id to send back with its result, and
/// the options for `navigator.credentials.create/get` (`publicKey`, binary as base64url).
#[derive(Debug, Serialize)]
pub struct Challenge<T: Serialize> {
    pub ceremony: String,
    #[serde(flatten)]
    pub options: T,
}

/// The relying party: `webauthn-rs` set up from `[mfa.webauthn]`, and where ceremonies wait.
pub struct Passkeys {
    webauthn: Webauthn,
    pub passwordless: bool,
    states: Arc<dyn ShortLived>,
}

fn ceremony_key(id: &str) -> String {
    format!("webauthn:{}", hash_hex(id.as_bytes()))
}

/// The user handle a passkey stores for `user_id`: the account id itself when it is a UUID
/// (every built-in account's is), else 16 bytes of its SHA-256. Never the address, which an
/// authenticator may show and which can change.
pub fn user_handle(user_id: &str) -> Uuid {
    Uuid::parse_str(user_id).unwrap_or_else(|_| {
        let digest = hex_bytes(&hash_hex(user_id.as_bytes()));
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        Uuid::from_bytes(b)
    })
}

fn hex_bytes(h: &str) -> Vec<u8> {
    (0..h.len() / 2)
        .filter_map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// A credential id as text (base64url, no padding), as stored and listed.
pub fn credential_id_text(id: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id)
}

/// A ceremony's result that `webauthn-rs` refused (wrong origin, challenge, signature, no
/// user verification, a counter gone backwards...): logged with the reason, answered as a
/// wrong code, counted by the throttle like one.
fn refused(e: webauthn_rs::prelude::WebauthnError) -> ApiError {
    tracing::info!(reason = %e, "passkey ceremony refused");
    ApiError::InvalidCode
}

impl Passkeys {
    /// `None` when `cfg` has no `rp_id`. `public_url` is the origin when `cfg.origins` is
    /// empty; `product_name` the RP name when `cfg.rp_name` is unset.
    pub fn new(
        cfg: &WebauthnConfig,
        public_url: &str,
        product_name: &str,
        states: Arc<dyn ShortLived>,
    ) -> Result<Option<Passkeys>, String> {
        let Some(rp_id) = &cfg.rp_id else {
            return Ok(None);
        };
        let origins: Vec<Url> = if cfg.origins.is_empty() {
            vec![public_url.to_owned()]
        } else {
            cfg.origins.clone()
        }
        .iter()
        .map(|o| Url::parse(o).map_err(|e| format!("mfa.webauthn.origins: {o:?}: {e}")))
        .collect::<Result<_, _>>()?;
        let (first, rest) = origins.split_first().ok_or("mfa.webauthn.origins: none")?;
        let mut builder = WebauthnBuilder::new(rp_id, first)
            .map_err(|e| format!("mfa.webauthn: {first} is not within rp_id {rp_id:?}: {e}"))?
            .rp_name(cfg.rp_name.as_deref().unwrap_or(product_name))
            .timeout(CEREMONY_TTL);
        for o in rest {
            builder = builder.append_allowed_origin(o);
        }
        let webauthn = builder.build().map_err(|e| format!("mfa.webauthn: {e}"))?;
        Ok(Some(Passkeys {
            webauthn,
            passwordless: cfg.passwordless,
            states,
        }))
    }

    async fn remember(&self, c: &Ceremony) -> Result<String, ApiError> {
        let id = random_token(24);
        let value = serde_json::to_string(c)
            .map_err(|e| ApiError::SessionStore(format!("ceremony state: {e}")))?;
        self.states
            .put_new(&ceremony_key(&id), &value, CEREMONY_TTL)
            .await?;
        Ok(id)
    }

    /// Takes the ceremony `id` names (once); `InvalidToken` when it is unknown, used or
    /// expired.
    pub async fn take(&self, id: &str) -> Result<Ceremony, ApiError> {
        if id.is_empty() || id.len() > 128 {
            return Err(ApiError::InvalidToken);
        }
        self.states
            .take(&ceremony_key(id))
            .await?
            .and_then(|v| serde_json::from_str(&v).ok())
            .ok_or(ApiError::InvalidToken)
    }

    /// Begins registering a passkey for `user_id` (`email` is the name the authenticator
    /// shows), excluding the ones it has; passwordless ones must be discoverable.
    pub async fn begin_registration(
        &self,
        by: Requester,
        user_id: &str,
        email: &str,
        existing: &[Passkey],
    ) -> Result<Challenge<serde_json::Value>, ApiError> {
        let exclude = existing.iter().map(|p| p.cred_id().clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user_handle(user_id), email, email, Some(exclude))
            .map_err(|e| ApiError::UserStore(format!("webauthn: {e}")))?;
        let options = self.discoverable_if_passwordless(options)?;
        let ceremony = Ceremony {
            by,
            stage: Stage::Register {
                user_id: user_id.to_owned(),
                state,
            },
        };
        Ok(Challenge {
            ceremony: self.remember(&ceremony).await?,
            options,
        })
    }

    /// `options` as JSON; asking for a discoverable credential (`residentKey: "required"`)
    /// when a passkey alone signs in, since only those can name their account (the crate's
    /// passkey registration leaves it `discouraged`, and the crate does not re-export the
    /// type to set it; the finish does not read it).
    fn discoverable_if_passwordless(
        &self,
        options: CreationChallengeResponse,
    ) -> Result<serde_json::Value, ApiError> {
        let mut v = serde_json::to_value(options)
            .map_err(|e| ApiError::UserStore(format!("webauthn options: {e}")))?;
        if self.passwordless {
            if let Some(sel) = v
                .pointer_mut("/publicKey/authenticatorSelection")
                .and_then(|s| s.as_object_mut())
            {
                sel.insert("residentKey".into(), "required".into());
                sel.insert("requireResidentKey".into(), true.into());
            }
        }
        Ok(v)
    }

    /// Checks the authenticator's answer to a registration; the new passkey.
    pub fn finish_registration(
        &self,
        state: &PasskeyRegistration,
        credential: serde_json::Value,
    ) -> Result<Passkey, ApiError> {
        let credential: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|_| ApiError::Validation {
                field: "credential",
                reason: "not a PublicKeyCredential from navigator.credentials.create".into(),
            })?;
        self.webauthn
            .finish_passkey_registration(&credential, state)
            .map_err(refused)
    }

    /// Begins an authentication of `user_id` with one of `passkeys`.
    pub async fn begin_authentication(
        &self,
        by: Requester,
        user_id: &str,
        passkeys: &[Passkey],
    ) -> Result<Challenge<RequestChallengeResponse>, ApiError> {
        if passkeys.is_empty() {
            return Err(ApiError::SecondFactor("no passkey enrolled"));
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(passkeys)
            .map_err(|e| ApiError::UserStore(format!("webauthn: {e}")))?;
        let ceremony = Ceremony {
            by,
            stage: Stage::Authenticate {
                user_id: user_id.to_owned(),
                state,
            },
        };
        Ok(Challenge {
            ceremony: self.remember(&ceremony).await?,
            options,
        })
    }

    /// Begins a passwordless sign-in: the authenticator chooses the account.
    pub async fn begin_discovery(
        &self,
        fingerprint: String,
    ) -> Result<Challenge<RequestChallengeResponse>, ApiError> {
        let (mut options, state) = self
            .webauthn
            .start_discoverable_authentication()
            .map_err(|e| ApiError::UserStore(format!("webauthn: {e}")))?;
        // Started by a button, not by an input's autofill: the ordinary modal request.
        options.mediation = None;
        let ceremony = Ceremony {
            by: Requester::Device(fingerprint),
            stage: Stage::Discover { state },
        };
        Ok(Challenge {
            ceremony: self.remember(&ceremony).await?,
            options,
        })
    }

    /// Reads an authenticator's answer to an authentication.
    pub fn assertion(credential: serde_json::Value) -> Result<PublicKeyCredential, ApiError> {
        serde_json::from_value(credential).map_err(|_| ApiError::Validation {
            field: "credential",
            reason: "not a PublicKeyCredential from navigator.credentials.get".into(),
        })
    }

    /// The account and credential a discoverable answer names (not yet checked).
    pub fn identify(&self, credential: &PublicKeyCredential) -> Result<(Uuid, Vec<u8>), ApiError> {
        self.webauthn
            .identify_discoverable_authentication(credential)
            .map(|(user, cred)| (user, cred.to_vec()))
            .map_err(refused)
    }

    /// Checks an authentication against `passkey` and brings its counter up to date;
    /// `Ok(true)` when the stored passkey changed (the counter moved).
    pub fn finish_authentication(
        &self,
        stage: Stage,
        credential: &PublicKeyCredential,
        passkey: &mut Passkey,
    ) -> Result<bool, ApiError> {
        let result = match stage {
            Stage::Authenticate { state, .. } => self
                .webauthn
                .finish_passkey_authentication(credential, &state),
            Stage::Discover { state } => self
                .webauthn
                .finish_discoverable_authentication_v2(credential, state, &*passkey),
            Stage::Register { .. } => return Err(ApiError::InvalidToken),
        }
        .map_err(refused)?;
        if !result.user_verified() {
            return Err(refused(
                webauthn_rs::prelude::WebauthnError::UserNotVerified,
            ));
        }
        Ok(passkey.update_credential(&result).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use authflow_shared::config::validate::problems_of;

    fn cfg(rp_id: &str, origins: &[&str]) -> WebauthnConfig {
        WebauthnConfig {
            rp_id: Some(rp_id.into()),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            ..Default::default()
        }
    }

    fn keys(c: &WebauthnConfig) -> Vec<String> {
        problems_of(c).into_iter().map(|(k, _)| k).collect()
    }

    #[test]
    fn origins_must_be_within_the_rp_id() {
        assert!(keys(&cfg("localhost", &["http://localhost:8000"])).is_empty());
        assert!(keys(&cfg(
            "example.com",
            &["https://login.example.com", "https://example.com:8443"]
        ))
        .is_empty());
        assert_eq!(
            keys(&cfg("example.com", &["https://evilexample.com"])),
            ["origins[0]"]
        );
        assert_eq!(
            keys(&cfg("login.example.com", &["https://example.com"])),
            ["origins[0]"]
        );
        assert_eq!(
            keys(&cfg("example.com", &["http://login.example.com"])),
            ["origins[0]"],
            "http off localhost"
        );
        assert_eq!(
            keys(&cfg("example.com", &["https://example.com/login"])),
            ["origins[0]"],
            "a path"
        );
        assert_eq!(keys(&cfg("example.com", &["example.com"])), ["origins[0]"]);
    }

    #[test]
    fn the_rp_id_is_a_lowercase_domain() {
        assert_eq!(keys(&cfg("127.0.0.1", &[])), ["rp_id"]);
        assert_eq!(keys(&cfg("Example.com", &[])), ["rp_id"]);
        assert_eq!(keys(&cfg("https://example.com", &[])), ["rp_id"]);
        assert!(keys(&cfg("example.com", &[])).is_empty());
        let off = WebauthnConfig {
            passwordless: true,
            ..Default::default()
        };
        assert_eq!(keys(&off), ["passwordless"]);
    }

    #[test]
    fn a_user_handle_is_the_account_uuid_or_a_stable_hash() {
        let id = "6f2c1a4e-8b1d-4c3e-9a7f-0d2b5e6c7a81";
        assert_eq!(user_handle(id).to_string(), id);
        assert_eq!(user_handle("supabase|42"), user_handle("supabase|42"));
        assert_ne!(user_handle("a"), user_handle("b"));
    }

    #[test]
    fn the_relying_party_refuses_an_origin_outside_its_id() {
        let states: Arc<dyn ShortLived> =
            Arc::new(authflow_shared::store::MemorySessionStore::new());
        let bad = cfg("example.com", &["https://other.org"]);
        assert!(Passkeys::new(&bad, "https://example.com", "AuthFlow", states.clone()).is_err());
        let good = cfg("localhost", &[]);
        assert!(
            Passkeys::new(&good, "http://localhost:8000", "AuthFlow", states)
                .expect("built")
                .is_some()
        );
    }
}
