//! Second factors: TOTP ([`totp`]) with recovery codes ([`recovery`]) and passkeys
//! ([`passkey`], WebAuthn), kept in the users database ([`store`]); a sign-in whose first
//! factor was right waits for the second in [`pending`]; [`routes`] has the endpoints
//! (enrol, confirm, verify, disable, new codes) and the pages, [`passkey_routes`] the
//! passkey ceremonies. A session made or stepped up with a factor carries `otp`, `hwk` (a
//! passkey) or `mfa` (a recovery code) in `amr` and `mfa_time`, which routes with
//! `mfa = true` read at the edge.

pub mod passkey;
pub mod passkey_routes;
pub mod pending;
pub mod recovery;
pub mod routes;
pub mod store;
pub mod totp;

use crate::crypto::TokenCipher;
use crate::error::ApiError;
use crate::mail::Mailer;
use authflow_shared::store::ShortLived;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use store::{Enrolled, MfaStore};

pub use crate::config::mfa::{MfaConfig, Required, ENV_MFA_KEY};

/// How a second factor was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    RecoveryCode,
    /// A passkey, after a first factor (or for a step-up).
    Passkey,
    /// A passkey alone (`[mfa.webauthn] passwordless`): a discoverable credential whose
    /// authenticator verified the user (PIN or biometric; `webauthn-rs` requires the UV flag
    /// for every passkey). That is two factors in one gesture, something held (the key,
    /// `hwk`) and something known or been (what unlocked it), as NIST SP 800-63B counts a
    /// multi-factor cryptographic authenticator; so the session gets `["hwk", "mfa"]` and a
    /// `mfa_time`, and routes with `mfa = true` let it in without asking again.
    Passwordless,
}

impl Proof {
    /// Its `amr` value (RFC 8176): `otp`; `hwk` for a passkey (proof of possession of a
    /// hardware-secured key); a recovery code is no standard method, and `mfa` says that
    /// more than one factor was used (so too for a passkey alone, after its `hwk`).
    pub fn amr(self) -> &'static str {
        match self {
            Proof::Totp => "otp",
            Proof::RecoveryCode | Proof::Passwordless => "mfa",
            Proof::Passkey => "hwk",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Totp => "totp",
            Proof::RecoveryCode => "recovery_code",
            Proof::Passkey => "webauthn",
            Proof::Passwordless => "passwordless",
        }
    }
}

/// What a person typed to prove the factor.
#[derive(Debug, Clone)]
pub enum Code<'a> {
    Totp(&'a str),
    Recovery(&'a str),
}

pub use crate::views::Enrolment;

/// The second factors of the built-in accounts.
pub struct Mfa {
    store: MfaStore,
    cipher: TokenCipher,
    /// Keys the recovery-code hashes (derived from the MFA key, never the key itself).
    code_key: [u8; 32],
    states: Arc<dyn ShortLived>,
    issuer: String,
    pub required: Required,
    /// Tells the owner when a recovery code was used.
    mailer: Arc<Mailer>,
    /// Passkeys; `None` when `[mfa.webauthn] rp_id` is unset.
    pub passkeys: Option<passkey::Passkeys>,
}

/// How long an enrolment waits for its confirmation.
const ENROLMENT_TTL: Duration = Duration::from_secs(900);

/// Where the enrolment `binder` began waits.
fn enrolment_key(binder: &str) -> String {
    format!(
        "totp-enrol:{}",
        authflow_shared::digest::hash_hex(binder.as_bytes())
    )
}

/// How long a used code's step is remembered: past the window either side.
const STEP_MEMORY: Duration = Duration::from_secs(120);

fn db(e: sqlx::Error) -> ApiError {
    ApiError::UserStore(e.to_string())
}

impl Mfa {
    /// `None` when second factors are off (`required = "never"`). `issuer` names the
    /// product to authenticator apps and passkeys; `public_url` is the passkeys' origin
    /// unless `[mfa.webauthn] origins` names them.
    pub fn new(
        cfg: &MfaConfig,
        issuer: &str,
        public_url: &str,
        builtin: Option<&crate::users::builtin::BuiltinUsers>,
        states: Arc<dyn ShortLived>,
    ) -> Result<Option<Mfa>, String> {
        if cfg.required == Required::Never {
            return Ok(None);
        }
        let builtin = builtin
            .ok_or("second factors need the built-in user store (provider = \"builtin\")")?;
        let store = MfaStore::new(builtin.db().clone());
        let mailer = builtin.mailer().clone();
        let cipher = TokenCipher::from_base64(cfg.key.expose()).map_err(|e| e.to_string())?;
        let code_key: [u8; 32] = Sha256::new()
            .chain_update(b"authflow-recovery-code-key\n")
            .chain_update(cfg.key.expose().as_bytes())
            .finalize()
            .into();
        let passkeys = passkey::Passkeys::new(&cfg.webauthn, public_url, issuer, states.clone())?;
        Ok(Some(Mfa {
            passkeys,
            store,
            cipher,
            code_key,
            states,
            issuer: cfg.issuer.clone().unwrap_or_else(|| issuer.to_owned()),
            required: cfg.required,
            mailer,
        }))
    }

    /// What `user_id` has enrolled, as far as it counts: passkeys only while they are on.
    pub async fn enrolled(&self, user_id: &str) -> Result<Enrolled, ApiError> {
        let mut e = self.store.enrolled(user_id).await.map_err(db)?;
        if self.passkeys.is_none() {
            e.passkeys = 0;
        }
        Ok(e)
    }

    /// The passkeys, or `NotFound` when they are off.
    pub fn passkeys(&self) -> Result<&passkey::Passkeys, ApiError> {
        self.passkeys.as_ref().ok_or(ApiError::NotFound)
    }

    pub fn store(&self) -> &MfaStore {
        &self.store
    }

    /// Keeps a passkey `user_id` just registered under `name`. The account's first factor
    /// of any kind also gets recovery codes (shown once, returned here), as a TOTP
    /// enrolment does: a lost passkey must not mean a lost account.
    pub async fn add_passkey(
        &self,
        user_id: &str,
        key: &webauthn_rs::prelude::Passkey,
        name: &str,
    ) -> Result<(String, Option<Vec<String>>), ApiError> {
        let before = self.store.enrolled(user_id).await.map_err(db)?;
        let id = passkey::credential_id_text(key.cred_id());
        let now = authflow_shared::now_ms() as i64;
        if !self
            .store
            .add_passkey(user_id, &id, key, name, now)
            .await
            .map_err(db)?
        {
            return Err(ApiError::SecondFactor("this passkey is registered already"));
        }
        let codes = if before.recovery_codes == 0 && !before.totp {
            Some(self.new_codes(user_id).await?)
        } else {
            None
        };
        Ok((id, codes))
    }

    /// Starts (or restarts) a TOTP enrolment for whoever `binder` names (a session id, or
    /// a pending sign-in's secret): the secret waits in the shared store under that name
    /// only, so no other session of the account can see or replace it, and nothing counts
    /// until [`Mfa::confirm_totp`] with the same binder.
    pub async fn begin_totp(
        &self,
        user_id: &str,
        email: &str,
        binder: &str,
    ) -> Result<Enrolment, ApiError> {
        self.refuse_if_enrolled(user_id).await?;
        self.new_enrolment(email, binder).await
    }

    /// A new secret waiting under `binder` (replacing one that waited there).
    async fn new_enrolment(&self, email: &str, binder: &str) -> Result<Enrolment, ApiError> {
        let secret = totp::new_secret();
        let key = enrolment_key(binder);
        let _ = self.states.take(&key).await?;
        self.states
            .put_new(&key, &self.cipher.encrypt(&secret), ENROLMENT_TTL)
            .await?;
        Ok(self.enrolment_of(&secret, email))
    }

    /// The enrolment `binder` began and has not confirmed (the setup page shows the same
    /// secret again rather than a new one the person has not scanned); else a new one.
    pub async fn enrolment(
        &self,
        user_id: &str,
        email: &str,
        binder: &str,
    ) -> Result<Enrolment, ApiError> {
        self.refuse_if_enrolled(user_id).await?;
        let key = enrolment_key(binder);
        let Some(sealed) = self.states.take(&key).await? else {
            return self.new_enrolment(email, binder).await;
        };
        self.states.put_new(&key, &sealed, ENROLMENT_TTL).await?;
        Ok(self.enrolment_of(&self.open(&sealed)?, email))
    }

    /// Confirms `binder`'s enrolment with a code from the app: the authenticator is on, and
    /// the recovery codes come back, shown once.
    pub async fn confirm_totp(
        &self,
        user_id: &str,
        code: &str,
        binder: &str,
    ) -> Result<Vec<String>, ApiError> {
        let key = enrolment_key(binder);
        let Some(sealed) = self.states.take(&key).await? else {
            return Err(ApiError::SecondFactor(
                "no enrolment to confirm: start one first",
            ));
        };
        if let Err(e) = self.check_totp_secret(user_id, &sealed, code).await {
            self.states.put_new(&key, &sealed, ENROLMENT_TTL).await?;
            return Err(e);
        }
        let codes = recovery::new_set();
        let now = authflow_shared::now_ms() as i64;
        if !self
            .store
            .enable_totp(user_id, &sealed, &self.hashes(&codes), now)
            .await
            .map_err(db)?
        {
            return Err(ApiError::SecondFactor(
                "an authenticator is already enrolled",
            ));
        }
        Ok(codes)
    }

    async fn refuse_if_enrolled(&self, user_id: &str) -> Result<(), ApiError> {
        match self.store.totp_secret(user_id).await.map_err(db)? {
            Some((_, true)) => Err(ApiError::SecondFactor(
                "an authenticator is already enrolled: disable it first",
            )),
            _ => Ok(()),
        }
    }

    fn open(&self, sealed: &str) -> Result<Vec<u8>, ApiError> {
        self.cipher.decrypt(sealed).map_err(|_| {
            ApiError::UserStore("a TOTP secret cannot be decrypted with AUTHFLOW_MFA_KEY".into())
        })
    }

    fn enrolment_of(&self, secret: &[u8], email: &str) -> Enrolment {
        let uri = totp::otpauth_uri(secret, &self.issuer, email);
        Enrolment {
            secret: totp::base32(secret),
            qr_svg: totp::qr_svg(&uri).unwrap_or_default(),
            otpauth_uri: uri,
        }
    }

    /// Checks `code` against `user_id`'s factors: a TOTP code (its time step accepted once,
    /// across every auth instance) or a recovery code (each once).
    pub async fn check(&self, user_id: &str, code: &Code<'_>) -> Result<Proof, ApiError> {
        match code {
            Code::Totp(c) => {
                let Some((sealed, true)) = self.store.totp_secret(user_id).await.map_err(db)?
                else {
                    return Err(ApiError::InvalidCode);
                };
                self.check_totp_secret(user_id, &sealed, c).await?;
                Ok(Proof::Totp)
            }
            Code::Recovery(c) => {
                let n = recovery::normalize(c).ok_or(ApiError::InvalidCode)?;
                let now = authflow_shared::now_ms() as i64;
                let used = self
                    .store
                    .use_code(user_id, &recovery::hash(&self.code_key, &n), now)
                    .await
                    .map_err(db)?;
                if used {
                    Ok(Proof::RecoveryCode)
                } else {
                    Err(ApiError::InvalidCode)
                }
            }
        }
    }

    async fn check_totp_secret(
        &self,
        user_id: &str,
        sealed: &str,
        code: &str,
    ) -> Result<(), ApiError> {
        let secret = self.open(sealed)?;
        let now = authflow_shared::now_ms() / 1000;
        let step = totp::matching_step(&secret, code, now).ok_or(ApiError::InvalidCode)?;
        let key = format!(
            "totp-step:{}",
            authflow_shared::digest::hash_hex(user_id.as_bytes())
        );
        if !self.states.advance(&key, step, STEP_MEMORY).await? {
            tracing::warn!(user = %user_id, "a TOTP code was presented again: refused");
            return Err(ApiError::InvalidCode);
        }
        Ok(())
    }

    /// A new set of recovery codes (the old set void).
    pub async fn new_codes(&self, user_id: &str) -> Result<Vec<String>, ApiError> {
        let codes = recovery::new_set();
        let now = authflow_shared::now_ms() as i64;
        self.store
            .new_codes(user_id, &self.hashes(&codes), now)
            .await
            .map_err(db)?;
        Ok(codes)
    }

    /// Mails the owner (in `lang`) that their second factors changed; nothing when the
    /// account's address is not known (not verified).
    pub fn factors_changed(&self, email: &str, lang: &str) {
        if !email.is_empty() {
            self.mailer.queue(self.mailer.factors_changed(email, lang));
        }
    }

    /// Mails the owner that a recovery code of theirs was used (in `lang`).
    pub fn recovery_code_used(&self, email: &str, lang: &str) {
        self.mailer
            .queue(self.mailer.recovery_code_used(email, lang));
    }

    pub async fn disable(&self, user_id: &str) -> Result<(), ApiError> {
        self.store.disable(user_id).await.map_err(db)
    }

    fn hashes(&self, codes: &[String]) -> Vec<String> {
        codes
            .iter()
            .filter_map(|c| recovery::normalize(c))
            .map(|n| recovery::hash(&self.code_key, &n))
            .collect()
    }
}
