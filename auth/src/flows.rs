//! The account flows, each read top to bottom in one place: sign up, sign in, sign out,
//! forgot password, reset password, verify email. They take typed input and return typed
//! outcomes; whether a JSON client or an HTML form called them is the caller's business
//! ([`crate::api`] answers JSON, [`crate::forms`] turns the same outcome into a redirect).

use crate::credentials::{
    looks_like_email, normalize_email, plausible_sign_in, validate_email, validate_password,
};
use crate::error::ApiError;
use crate::http::ApiRequest;
use crate::sessions::Sessions;
use crate::throttle::SignInThrottle;
use crate::users::UserProvider;
use authflow_shared::session::SessionRecord;
use authflow_shared::store::LoginThrottle;
use authflow_shared::token::{log_id, SessionToken};
use std::sync::Arc;

pub struct Accounts {
    pub users: Arc<dyn UserProvider>,
    pub sessions: Sessions,
    throttle: SignInThrottle,
}

impl Accounts {
    pub fn new(
        users: Arc<dyn UserProvider>,
        sessions: Sessions,
        throttle: Arc<dyn LoginThrottle>,
    ) -> Self {
        Accounts {
            users,
            sessions,
            throttle: SignInThrottle::new(throttle),
        }
    }

    /// Creates an account (or quietly mails the owner of an existing address: the answer is
    /// the same either way).
    pub async fn sign_up(&self, email: &str, password: &str) -> Result<(), ApiError> {
        let email = validate_email(email)?;
        validate_password(password)?;
        Ok(self.users.sign_up(&email, password).await?)
    }

    /// Checks the credentials under the throttle, revokes any session the request presented
    /// (no fixation: it is never adopted) and starts a new one bound to this device.
    pub async fn sign_in(
        &self,
        req: &ApiRequest,
        email: &str,
        password: &str,
    ) -> Result<(SessionToken, SessionRecord), ApiError> {
        let email = normalize_email(email);
        if !plausible_sign_in(&email, password) {
            return Err(ApiError::InvalidCredentials);
        }
        let who = self
            .throttle
            .guard(&email, self.users.sign_in(&email, password))
            .await?;
        self.sessions.revoke_presented(req).await?;
        let (token, record) = self.sessions.start(req, who).await?;
        tracing::info!(user = %record.user_id, session = log_id(&token.id()), "signed in");
        Ok((token, record))
    }

    /// Ends the session the request presents, on the server, and tells the provider.
    pub async fn sign_out(&self, req: &ApiRequest) -> Result<(), ApiError> {
        if let Some(record) = self.sessions.revoke_presented(req).await? {
            self.users.signed_out(&record).await;
            tracing::info!(user = %record.user_id, "signed out");
        }
        Ok(())
    }

    /// Starts a reset for `email`. The lookup and the email happen after the caller has
    /// answered, so existing and unknown addresses answer alike, in the same time.
    pub fn forgot_password(&self, email: &str) {
        let email = normalize_email(email);
        if !looks_like_email(&email) {
            return;
        }
        let users = self.users.clone();
        tokio::spawn(async move {
            if let Err(e) = users.forgot_password(&email).await {
                tracing::error!(error = %e, "forgot-password failed");
            }
        });
    }

    /// Sets a new password with a reset token, then ends every session of the account.
    pub async fn reset_password(&self, token: &str, new_password: &str) -> Result<(), ApiError> {
        validate_password(new_password)?;
        if token.is_empty() || token.len() > 512 {
            return Err(ApiError::InvalidToken);
        }
        let user_id = self.users.reset_password(token, new_password).await?;
        let revoked = self.sessions.revoke_user(&user_id).await?;
        tracing::info!(user = %user_id, revoked, "password reset; all sessions revoked");
        Ok(())
    }

    /// Confirms an address with the token from the verification link.
    pub async fn verify_email(&self, token: Option<&str>) -> Result<(), ApiError> {
        let token = token
            .filter(|t| !t.is_empty() && t.len() <= 512)
            .ok_or(ApiError::InvalidToken)?;
        Ok(self.users.verify_email(token).await?)
    }
}
