//! Users in Supabase Auth (GoTrue), over HTTP. Mapping of our endpoints to GoTrue calls and
//! of GoTrue's errors to ours follows `security-and-gotrue.md` B-9: sign-in uses
//! `/token?grant_type=password`, reset is `/verify` → `PUT /user` → `/logout?scope=global`,
//! and no answer reveals whether an account exists. GoTrue's tokens are kept in our session,
//! encrypted; our Redis session stays the gate, so a logout takes effect at once.

use super::{Account, ProviderError, SignedIn, UserProvider};
use crate::config::SupabaseConfig;
use crate::crypto::{CryptoError, TokenCipher};
use async_trait::async_trait;
use authflow_shared::session::SessionRecord;
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub struct SupabaseUsers {
    http: reqwest::Client,
    base: String,
    anon_key: String,
    cipher: TokenCipher,
}

/// GoTrue tokens as kept (encrypted) in our session record.
#[derive(Serialize, Deserialize)]
struct StoredTokens {
    access_token: String,
    refresh_token: String,
    /// Unix seconds.
    expires_at: u64,
}

/// The parts of GoTrue's AccessTokenResponse we use.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    refresh_token: String,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    expires_in: Option<u64>,
    user: GoTrueUser,
}

#[derive(Deserialize)]
struct GoTrueUser {
    id: String,
    #[serde(default)]
    email: Option<String>,
    /// Set by the Supabase project's admin (service role) only, never by the user:
    /// `app_metadata.roles`, read at every sign-in.
    #[serde(default)]
    app_metadata: AppMetadata,
}

#[derive(Debug, Clone, Default, serde::Deserialize)]
struct AppMetadata {
    #[serde(default)]
    roles: Vec<serde_json::Value>,
}

impl GoTrueUser {
    /// The roles in `app_metadata.roles` that are role names (sorted, at most 32); anything
    /// else is dropped with a warning rather than failing the sign-in.
    fn roles(&self) -> Vec<String> {
        let given = &self.app_metadata.roles;
        let mut names: Vec<String> = given
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|r| authflow_shared::roles::validate(r).is_ok())
            .map(str::to_owned)
            .collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != given.len() || names.len() > authflow_shared::roles::MAX_ROLES_PER_USER {
            tracing::warn!(user = %self.id, "app_metadata.roles: entries that are not role names (or past 32) dropped");
        }
        names.truncate(authflow_shared::roles::MAX_ROLES_PER_USER);
        names
    }
}

/// A GoTrue reply: status and parsed JSON body (`Null` if not JSON).
struct Reply {
    status: StatusCode,
    body: Value,
}

impl Reply {
    /// The error code in any of GoTrue's error shapes.
    fn code(&self) -> &str {
        self.body
            .get("error_code")
            .and_then(Value::as_str)
            .or_else(|| self.body.get("code").and_then(Value::as_str))
            .or_else(|| self.body.get("error").and_then(Value::as_str))
            .unwrap_or("")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SupabaseSetupError {
    #[error("encryption key: {0}")]
    Key(#[from] CryptoError),
    #[error("http client: {0}")]
    Http(#[from] reqwest::Error),
}

impl SupabaseUsers {
    pub fn new(cfg: &SupabaseConfig) -> Result<Self, SupabaseSetupError> {
        Ok(SupabaseUsers {
            http: reqwest::Client::builder().timeout(cfg.timeout.0).build()?,
            base: cfg.url.trim_end_matches('/').to_owned(),
            anon_key: cfg.anon_key.expose().to_owned(),
            cipher: TokenCipher::from_base64(cfg.encryption_key.expose())?,
        })
    }

    /// One call. `bearer` is a user token; without it the anon key is the bearer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        bearer: Option<&str>,
    ) -> Result<Reply, ProviderError> {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .header("apikey", &self.anon_key)
            .bearer_auth(bearer.unwrap_or(&self.anon_key));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| ProviderError::Unavailable(format!("supabase: {e}")))?;
        let status = resp.status();
        let body = resp.json::<Value>().await.unwrap_or(Value::Null);
        if status.is_server_error() {
            return Err(ProviderError::Unavailable(format!(
                "supabase answered {status}"
            )));
        }
        Ok(Reply { status, body })
    }

    fn tokens(&self, r: &Reply) -> Result<TokenResponse, ProviderError> {
        serde_json::from_value(r.body.clone())
            .map_err(|e| ProviderError::Unavailable(format!("supabase token response: {e}")))
    }

    fn seal(&self, t: &TokenResponse) -> String {
        let expires_at = t
            .expires_at
            .unwrap_or_else(|| authflow_shared::now_ms() / 1000 + t.expires_in.unwrap_or(3600));
        let stored = StoredTokens {
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone(),
            expires_at,
        };
        self.cipher.encrypt(json!(stored).to_string().as_bytes())
    }

    fn unseal(&self, sealed: &str) -> Option<StoredTokens> {
        let plain = self.cipher.decrypt(sealed).ok()?;
        serde_json::from_slice(&plain).ok()
    }

    /// A usable access token: the stored one, or a refreshed one when it has (nearly) expired.
    async fn fresh_access_token(&self, t: StoredTokens) -> Option<String> {
        if t.expires_at > authflow_shared::now_ms() / 1000 + 30 {
            return Some(t.access_token);
        }
        let r = self
            .call(
                Method::POST,
                "/token?grant_type=refresh_token",
                Some(json!({"refresh_token": t.refresh_token})),
                None,
            )
            .await
            .ok()?;
        (r.status == StatusCode::OK)
            .then(|| self.tokens(&r).ok().map(|t| t.access_token))
            .flatten()
    }
}

fn weak_password(r: &Reply) -> Option<ProviderError> {
    matches!(r.code(), "weak_password" | "same_password").then(|| ProviderError::Validation {
        field: "password",
        reason: if r.code() == "same_password" {
            "must differ from the current password".into()
        } else {
            "is too weak".into()
        },
    })
}

#[async_trait]
impl UserProvider for SupabaseUsers {
    /// GoTrue sends its own mails, in the language its templates are set up in.
    async fn sign_up(&self, email: &str, password: &str, _lang: &str) -> Result<(), ProviderError> {
        let r = self
            .call(
                Method::POST,
                "/signup",
                Some(json!({"email": email, "password": password})),
                None,
            )
            .await?;
        if let Some(e) = weak_password(&r) {
            return Err(e);
        }
        match (r.status.as_u16(), r.code()) {
            // Created, obfuscated existing user, or "already registered": all look the same to the client.
            (200..=299, _) | (422, "user_already_exists") => Ok(()),
            (429, "over_email_send_rate_limit") => {
                tracing::warn!("supabase email budget exhausted: sign-up email not sent");
                Ok(())
            }
            (429, _) => Err(ProviderError::RateLimited),
            (400 | 422, code) => {
                tracing::info!(code, "supabase refused sign-up input");
                Err(ProviderError::Validation {
                    field: "email",
                    reason: "was refused by the identity provider".into(),
                })
            }
            (status, code) => Err(ProviderError::Unavailable(format!(
                "supabase sign-up: {status} {code}"
            ))),
        }
    }

    async fn sign_in(&self, email: &str, password: &str) -> Result<SignedIn, ProviderError> {
        let r = self
            .call(
                Method::POST,
                "/token?grant_type=password",
                Some(json!({"email": email, "password": password})),
                None,
            )
            .await?;
        match (r.status.as_u16(), r.code()) {
            (200, _) => {
                let t = self.tokens(&r)?;
                Ok(SignedIn {
                    user_id: t.user.id.clone(),
                    email: t.user.email.clone().unwrap_or_else(|| email.to_owned()),
                    provider_data: Some(self.seal(&t)),
                    roles: t.user.roles(),
                })
            }
            (_, "email_not_confirmed") => Err(ProviderError::EmailNotVerified),
            (429, _) => Err(ProviderError::RateLimited),
            _ => Err(ProviderError::InvalidCredentials),
        }
    }

    async fn signed_out(&self, record: &SessionRecord) {
        let Some(tokens) = record.provider_data.as_deref().and_then(|s| self.unseal(s)) else {
            return;
        };
        let Some(access) = self.fresh_access_token(tokens).await else {
            tracing::warn!(user = %record.user_id, "could not refresh supabase token for logout");
            return;
        };
        match self
            .call(Method::POST, "/logout?scope=local", None, Some(&access))
            .await
        {
            Ok(r) if r.status.is_success() || r.code() == "session_not_found" => {}
            Ok(r) => tracing::warn!(status = %r.status, code = r.code(), "supabase logout refused"),
            Err(e) => tracing::warn!(error = %e, "supabase logout failed"),
        }
    }

    async fn forgot_password(&self, email: &str, _lang: &str) -> Result<(), ProviderError> {
        let r = self
            .call(
                Method::POST,
                "/recover",
                Some(json!({"email": email})),
                None,
            )
            .await?;
        if !r.status.is_success() {
            tracing::warn!(status = %r.status, code = r.code(), "supabase recover refused");
        }
        Ok(())
    }

    /// GoTrue's `/verify` uses the recovery token up, so there is no look without using it.
    /// `PUT /user` with the GoTrue session the old-password check just opened, which is
    /// then logged out (`scope=local`): AuthFlow's own sessions are what the user keeps.
    async fn set_password(&self, who: &SignedIn, new_password: &str) -> Result<(), ProviderError> {
        let tokens = who
            .provider_data
            .as_deref()
            .and_then(|s| self.unseal(s))
            .ok_or_else(|| {
                ProviderError::Unavailable(
                    "supabase: no session to change the password with".into(),
                )
            })?;
        let access = tokens.access_token;
        let r = self
            .call(
                Method::PUT,
                "/user",
                Some(json!({"password": new_password})),
                Some(&access),
            )
            .await?;
        let result = if let Some(e) = weak_password(&r) {
            Err(e)
        } else if r.code() == "same_password" {
            Err(ProviderError::Validation {
                field: "new_password",
                reason: "must differ from the current password".into(),
            })
        } else if !r.status.is_success() {
            Err(ProviderError::Unavailable(format!(
                "supabase password update: {} {}",
                r.status,
                r.code()
            )))
        } else {
            Ok(())
        };
        match self
            .call(Method::POST, "/logout?scope=local", None, Some(&access))
            .await
        {
            Ok(r) if r.status.is_success() || r.code() == "session_not_found" => {}
            Ok(r) => {
                tracing::warn!(status = %r.status, "supabase logout after password change refused")
            }
            Err(e) => tracing::warn!(error = %e, "supabase logout after password change failed"),
        }
        result
    }

    async fn reset_account(&self, _token: &str) -> Result<Option<Account>, ProviderError> {
        Ok(None)
    }

    async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
    ) -> Result<Account, ProviderError> {
        let r = self
            .call(
                Method::POST,
                "/verify",
                Some(json!({"type": "recovery", "token_hash": token})),
                None,
            )
            .await?;
        if r.status != StatusCode::OK {
            return Err(ProviderError::InvalidToken);
        }
        let recovery = self.tokens(&r)?;
        let r = self
            .call(
                Method::PUT,
                "/user",
                Some(json!({"password": new_password})),
                Some(&recovery.access_token),
            )
            .await?;
        if let Some(e) = weak_password(&r) {
            return Err(e);
        }
        if !r.status.is_success() {
            return Err(ProviderError::Unavailable(format!(
                "supabase password update: {} {}",
                r.status,
                r.code()
            )));
        }
        // GoTrue keeps the calling (recovery) session alive: end every session of the user.
        if let Ok(r) = self
            .call(
                Method::POST,
                "/logout?scope=global",
                None,
                Some(&recovery.access_token),
            )
            .await
        {
            if !r.status.is_success() {
                tracing::warn!(status = %r.status, "supabase global logout after reset refused");
            }
        }
        Ok(Account {
            email: recovery.user.email.clone().unwrap_or_default(),
            user_id: recovery.user.id,
        })
    }

    /// GoTrue keeps the password of a sign-up itself; confirming sets none of ours.
    async fn verify_email(&self, token: &str) -> Result<Option<Account>, ProviderError> {
        let r = self
            .call(
                Method::POST,
                "/verify",
                Some(json!({"type": "email", "token_hash": token})),
                None,
            )
            .await?;
        if r.status == StatusCode::OK {
            Ok(None)
        } else {
            Err(ProviderError::InvalidToken)
        }
    }

    async fn health(&self) -> Result<(), String> {
        match self.call(Method::GET, "/health", None, None).await {
            Ok(r) if r.status.is_success() => Ok(()),
            Ok(r) => Err(format!("supabase health {}", r.status)),
            Err(e) => Err(e.to_string()),
        }
    }

    fn name(&self) -> &'static str {
        "supabase"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_app_metadata_and_only_role_names_are_kept() {
        let user: GoTrueUser = serde_json::from_value(serde_json::json!({
            "id": "u1",
            "email": "a@example.com",
            "app_metadata": {"provider": "email", "roles": ["ops", "admin", "ops", "bad role", 7]},
            "user_metadata": {"roles": ["root"]}
        }))
        .expect("user");
        assert_eq!(user.roles(), vec!["admin".to_owned(), "ops".to_owned()]);
        let none: GoTrueUser =
            serde_json::from_value(serde_json::json!({"id": "u2", "app_metadata": {}}))
                .expect("user");
        assert!(none.roles().is_empty());
        let bare: GoTrueUser =
            serde_json::from_value(serde_json::json!({"id": "u3"})).expect("user");
        assert!(bare.roles().is_empty());
    }
}
