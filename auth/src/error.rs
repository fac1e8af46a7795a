//! Everything a request can end in besides success, and the one status and body each maps to.
//! Nothing here reveals whether an account exists; dependency failures keep their text for
//! the logs only.

use crate::http::{json_response, HttpResponse, InputError};
use crate::users::ProviderError;
use authflow_shared::store::StoreError;
use http::header;
use serde_json::json;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("payload too large")]
    PayloadTooLarge,
    #[error("invalid json: {0}")]
    InvalidJson(String),
    #[error("validation: {field}: {reason}")]
    Validation { field: &'static str, reason: String },
    /// An address whose local part (or a domain label) mixes scripts: a look-alike.
    #[error("email mixes scripts")]
    MixedScriptEmail,
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A wrong, used or expired second-factor code.
    #[error("invalid code")]
    InvalidCode,
    /// The account has no such second factor (or already has one, for an enrolment).
    #[error("second factor: {0}")]
    SecondFactor(&'static str),
    /// No valid session on a request that needs one.
    #[error("unauthenticated")]
    Unauthenticated,
    #[error("email not verified")]
    EmailNotVerified,
    #[error("invalid token")]
    InvalidToken,
    #[error("rate limited")]
    RateLimited,
    #[error("cross-site request refused")]
    CrossSite,
    #[error("sign-in locked for {0:?}")]
    AccountLocked(Duration),
    #[error("session store unavailable: {0}")]
    SessionStore(String),
    #[error("user store unavailable: {0}")]
    UserStore(String),
}

impl From<ProviderError> for ApiError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::InvalidCredentials => ApiError::InvalidCredentials,
            ProviderError::EmailNotVerified => ApiError::EmailNotVerified,
            ProviderError::InvalidToken => ApiError::InvalidToken,
            ProviderError::Validation { field, reason } => ApiError::Validation { field, reason },
            ProviderError::RateLimited => ApiError::RateLimited,
            ProviderError::Unavailable(m) => ApiError::UserStore(m),
        }
    }
}

impl From<InputError> for ApiError {
    fn from(e: InputError) -> Self {
        match e {
            InputError::TooLarge => ApiError::PayloadTooLarge,
            InputError::UnsupportedMediaType => ApiError::UnsupportedMediaType,
            InputError::Malformed(reason) => ApiError::InvalidJson(reason),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::SessionStore(e.to_string())
    }
}

impl ApiError {
    /// The `error` code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed(_) => "method_not_allowed",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Validation { .. } => "validation_failed",
            ApiError::MixedScriptEmail => "mixed_script_email",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidCode => "invalid_code",
            ApiError::SecondFactor(_) => "second_factor_state",
            ApiError::Unauthenticated => "unauthenticated",
            ApiError::EmailNotVerified => "email_not_verified",
            ApiError::InvalidToken => "invalid_token",
            ApiError::RateLimited => "rate_limited",
            ApiError::CrossSite => "cross_site_request",
            ApiError::AccountLocked(_) => "too_many_attempts",
            ApiError::SessionStore(_) => "session_store_unavailable",
            ApiError::UserStore(_) => "user_store_unavailable",
        }
    }

    fn status(&self) -> u16 {
        match self {
            ApiError::NotFound => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::UnsupportedMediaType => 415,
            ApiError::PayloadTooLarge => 413,
            ApiError::InvalidJson(_) | ApiError::InvalidToken | ApiError::MixedScriptEmail => 400,
            ApiError::Validation { .. } => 422,
            ApiError::InvalidCredentials | ApiError::Unauthenticated | ApiError::InvalidCode => 401,
            ApiError::SecondFactor(_) => 409,
            ApiError::EmailNotVerified | ApiError::CrossSite => 403,
            ApiError::RateLimited | ApiError::AccountLocked(_) => 429,
            ApiError::SessionStore(_) | ApiError::UserStore(_) => 503,
        }
    }

    /// Seconds a client should wait before trying again, where that is known.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited => Some(60),
            ApiError::AccountLocked(left) => Some(left.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        }
    }

    /// `{"error": code}`, with the field and reason where the client can act on them.
    pub fn response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.code() });
        match self {
            ApiError::UnsupportedMediaType => {
                body["reason"] = json!("send Content-Type: application/json")
            }
            // The parser's message stays out of the body (and out of the logs: see
            // `http::malformed`): it can quote what was sent.
            ApiError::InvalidJson(_) => {
                body["reason"] =
                    json!("send a JSON object with exactly the fields this endpoint takes")
            }
            ApiError::Validation { field, reason } => {
                body["field"] = json!(field);
                body["reason"] = json!(reason);
            }
            ApiError::SecondFactor(reason) => body["reason"] = json!(reason),
            ApiError::MixedScriptEmail => {
                body["field"] = json!("email");
                body["reason"] = json!(
                    "mixes letters from different scripts (such as Latin and Cyrillic); type the address in one script"
                );
            }
            _ => {}
        }
        let mut resp = json_response(self.status(), &body);
        if let ApiError::MethodNotAllowed(allow) = self {
            if let Ok(v) = header::HeaderValue::from_str(allow) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        if let Some(secs) = self.retry_after() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
        }
        resp
    }
}
