//! Second factors: TOTP ([`totp`]) with recovery codes ([`recovery`]), kept in the users
//! database ([`store`]); a sign-in whose first factor was right waits for the second in
//! [`pending`]; [`routes`] has the endpoints (enrol, confirm, verify, disable, new codes) and
//! the pages. A session made or stepped up with a factor carries `otp` (or `mfa` for a
//! recovery code) in `amr` and `mfa_time`, which routes with `mfa = true` read at the edge.

pub mod pending;
pub mod recovery;
pub mod routes;
pub mod store;
pub mod totp;

use crate::crypto::TokenCipher;
use crate::error::ApiError;
use crate::mail::Mailer;
use authflow_shared::config::{Problems, Secret, Validate};
use authflow_shared::store::ShortLived;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;
use store::{Enrolled, MfaStore};

/// The environment variable holding the key that seals TOTP secrets and keys recovery-code
/// hashes (32 bytes, base64; also `_FILE`).
pub const ENV_MFA_KEY: &str = "AUTHFLOW_MFA_KEY";

/// Whether accounts have a second factor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Required {
    /// No second factors (the endpoints answer 404).
    #[default]
    Never,
    /// Each person may enrol one; then every sign-in needs it.
    Optional,
    /// Every account must enrol at its next sign-in, before any session.
    Always,
}

/// `[mfa]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaConfig {
    pub required: Required,
    /// The name authenticator apps show; `[pages] product_name` when unset.
    pub issuer: Option<String>,
    /// From `AUTHFLOW_MFA_KEY`.
    #[serde(skip_serializing)]
    pub key: Secret,
}

impl Validate for MfaConfig {
    fn validate(&self, p: &mut Problems) {
        if self.required == Required::Never {
            return;
        }
        if let Err(e) = TokenCipher::from_base64(self.key.expose()) {
            p.add(
                "required",
                format!("second factors need a key: {e} (set {ENV_MFA_KEY} or {ENV_MFA_KEY}_FILE)"),
            );
        }
    }
}

/// How a second factor was proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    Totp,
    RecoveryCode,
}

impl Proof {
    /// Its `amr` value (RFC 8176): `otp`; a recovery code is no standard method, and
    /// `mfa` says that more than one factor was used.
    pub fn amr(self) -> &'static str {
        match self {
            Proof::Totp => "otp",
            Proof::RecoveryCode => "mfa",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Totp => "totp",
            Proof::RecoveryCode => "recovery_code",
        }
    }
}

/// What a person typed to prove the factor.
#[derive(Debug, Clone)]
pub enum Code<'a> {
    Totp(&'a str),
    Recovery(&'a str),
}

/// A TOTP enrolment just begun: what the person scans or types.
#[derive(Debug, Clone, Serialize)]
pub struct Enrolment {
    pub secret: String,
    pub otpauth_uri: String,
    pub qr_svg: String,
}

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
}

/// How long a used code's step is remembered: past the window either side.
const STEP_MEMORY: Duration = Duration::from_secs(120);

fn db(e: sqlx::Error) -> ApiError {
    ApiError::UserStore(e.to_string())
}

impl Mfa {
    /// `None` when second factors are off (`required = "never"`).
    pub fn new(
        cfg: &MfaConfig,
        issuer: &str,
        users: &dyn crate::users::UserProvider,
        states: Arc<dyn ShortLived>,
    ) -> Result<Option<Mfa>, String> {
        if cfg.required == Required::Never {
            return Ok(None);
        }
        let builtin = users
            .as_builtin()
            .ok_or("second factors need the built-in user store (provider = \"builtin\")")?;
        let store = MfaStore::new(builtin.db().clone());
        let mailer = builtin.mailer().clone();
        let cipher = TokenCipher::from_base64(cfg.key.expose()).map_err(|e| e.to_string())?;
        let code_key: [u8; 32] = Sha256::new()
            .chain_update(b"authflow-recovery-code-key\n")
            .chain_update(cfg.key.expose().as_bytes())
            .finalize()
            .into();
        Ok(Some(Mfa {
            store,
            cipher,
            code_key,
            states,
            issuer: cfg.issuer.clone().unwrap_or_else(|| issuer.to_owned()),
            required: cfg.required,
            mailer,
        }))
    }

    pub async fn enrolled(&self, user_id: &str) -> Result<Enrolled, ApiError> {
        self.store.enrolled(user_id).await.map_err(db)
    }

    /// Starts (or restarts) a TOTP enrolment; nothing counts until [`Mfa::confirm_totp`].
    pub async fn begin_totp(&self, user_id: &str, email: &str) -> Result<Enrolment, ApiError> {
        let secret = totp::new_secret();
        let sealed = self.cipher.encrypt(&secret);
        let now = authflow_shared::now_ms() as i64;
        if !self
            .store
            .begin_totp(user_id, &sealed, now)
            .await
            .map_err(db)?
        {
            return Err(ApiError::SecondFactor(
                "an authenticator is already enrolled: disable it first",
            ));
        }
        let uri = totp::otpauth_uri(&secret, &self.issuer, email);
        Ok(Enrolment {
            secret: totp::base32(&secret),
            qr_svg: totp::qr_svg(&uri).unwrap_or_default(),
            otpauth_uri: uri,
        })
    }

    /// Confirms the enrolment with a code from the app; the recovery codes, shown once.
    pub async fn confirm_totp(&self, user_id: &str, code: &str) -> Result<Vec<String>, ApiError> {
        let Some((sealed, confirmed)) = self.store.totp_secret(user_id).await.map_err(db)? else {
            return Err(ApiError::SecondFactor(
                "no enrolment to confirm: start one first",
            ));
        };
        if confirmed {
            return Err(ApiError::SecondFactor("already confirmed"));
        }
        self.check_totp_secret(user_id, &sealed, code).await?;
        let codes = recovery::new_set();
        let now = authflow_shared::now_ms() as i64;
        if !self
            .store
            .confirm_totp(user_id, &self.hashes(&codes), now)
            .await
            .map_err(db)?
        {
            return Err(ApiError::SecondFactor(
                "no enrolment to confirm: start one first",
            ));
        }
        Ok(codes)
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
        let secret = self.cipher.decrypt(sealed).map_err(|_| {
            ApiError::UserStore("a TOTP secret cannot be decrypted with AUTHFLOW_MFA_KEY".into())
        })?;
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

    /// Mails the owner that a recovery code of theirs was used (in `lang`).
    pub fn recovery_code_used(&self, email: &str, lang: &str) {
        self.mailer
            .queue(self.mailer.recovery_code_used(email, lang));
    }

    /// The enrolment waiting for its confirmation, if any (the setup page shows the same
    /// secret again rather than a new one the person has not scanned); else a new one.
    pub async fn enrolment(&self, user_id: &str, email: &str) -> Result<Enrolment, ApiError> {
        match self.store.totp_secret(user_id).await.map_err(db)? {
            Some((sealed, false)) => {
                let secret = self.cipher.decrypt(&sealed).map_err(|_| {
                    ApiError::UserStore(
                        "a TOTP secret cannot be decrypted with AUTHFLOW_MFA_KEY".into(),
                    )
                })?;
                let uri = totp::otpauth_uri(&secret, &self.issuer, email);
                Ok(Enrolment {
                    secret: totp::base32(&secret),
                    qr_svg: totp::qr_svg(&uri).unwrap_or_default(),
                    otpauth_uri: uri,
                })
            }
            _ => self.begin_totp(user_id, email).await,
        }
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
