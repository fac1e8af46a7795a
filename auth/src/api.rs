//! The HTTP API under `/api/v1/simple_auth/` and `/health`. Handlers validate input, call
//! the user provider and the session store, and map every outcome to a fixed JSON response;
//! nothing here reveals whether an account exists.

use crate::config::AuthConfig;
use crate::users::{ProviderError, SignedIn, UserProvider};
use authflow_shared::client_ip;
use authflow_shared::cookie::{self, CookieLookup, CookieSpec};
use authflow_shared::fingerprint::{FingerprintSpec, FINGERPRINT_HEADER};
use authflow_shared::session::SessionRecord;
use authflow_shared::store::{SessionStore, StoreError};
use authflow_shared::token::SessionToken;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub const PREFIX: &str = "/api/v1/simple_auth";
/// Consecutive failed sign-ins of one account before it is locked (OWASP / ASVS 2.2.1).
const LOCK_AFTER_FAILURES: u64 = 5;
/// Failures older than this are forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest lock; there is no permanent lockout.
const MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Largest request body accepted (JSON credentials are tiny).
const MAX_BODY: usize = 16 * 1024;

pub type HttpResponse = Response<Full<Bytes>>;

/// Everything a request can end in, besides success. Each maps to one status and body.
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
    #[error("invalid credentials")]
    InvalidCredentials,
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
            ApiError::InvalidCredentials => "invalid_credentials",
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
            ApiError::InvalidJson(_) | ApiError::InvalidToken => 400,
            ApiError::Validation { .. } => 422,
            ApiError::InvalidCredentials => 401,
            ApiError::EmailNotVerified | ApiError::CrossSite => 403,
            ApiError::RateLimited | ApiError::AccountLocked(_) => 429,
            ApiError::SessionStore(_) | ApiError::UserStore(_) => 503,
        }
    }

    /// `{"error": code}`, with the field and reason where the client can act on them. The
    /// text of dependency failures stays in the logs.
    pub fn response(&self) -> HttpResponse {
        let mut body = json!({ "error": self.code() });
        match self {
            ApiError::UnsupportedMediaType => {
                body["reason"] = json!("send Content-Type: application/json")
            }
            ApiError::InvalidJson(reason) => body["reason"] = json!(reason),
            ApiError::Validation { field, reason } => {
                body["field"] = json!(field);
                body["reason"] = json!(reason);
            }
            _ => {}
        }
        let status = self.status();
        let mut resp = json_response(status, &body);
        if let ApiError::MethodNotAllowed(allow) = self {
            if let Ok(v) = header::HeaderValue::from_str(allow) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        let retry_after = match self {
            ApiError::RateLimited => Some(60),
            ApiError::AccountLocked(left) => Some(left.as_secs_f64().ceil().max(1.0) as u64),
            _ => None,
        };
        if let Some(secs) =
            retry_after.and_then(|s| header::HeaderValue::from_str(&s.to_string()).ok())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, secs);
        }
        resp
    }
}

/// A response that is never cached: `status`, and `body` typed `content_type` when given.
/// Every response this service writes starts here.
pub fn uncached(status: u16, content_type: Option<&'static str>, body: Bytes) -> HttpResponse {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    if let Some(ct) = content_type {
        h.insert(header::CONTENT_TYPE, header::HeaderValue::from_static(ct));
    }
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

pub fn json_response(status: u16, body: &serde_json::Value) -> HttpResponse {
    uncached(
        status,
        Some("application/json"),
        Bytes::from(body.to_string()),
    )
}

/// The parts of a request the handlers need, with the body already read (bounded).
pub struct ApiRequest {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub peer: SocketAddr,
    pub body: Bytes,
}

impl ApiRequest {
    /// Reads the body of `req`, refusing more than [`MAX_BODY`] bytes.
    pub async fn read<B>(req: http::Request<B>, peer: SocketAddr) -> Result<Self, ApiError>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?
            .to_bytes();
        Ok(ApiRequest {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers: parts.headers,
            peer,
            body,
        })
    }

    fn media_type(&self) -> String {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        ct.split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    }

    /// Whether this is an HTML form post (the pages' progressive-enhancement path).
    pub fn is_form(&self) -> bool {
        self.media_type() == "application/x-www-form-urlencoded"
    }

    /// Whether the client is a browser asking for a page.
    pub fn wants_html(&self) -> bool {
        self.headers
            .get_all(header::ACCEPT)
            .iter()
            .any(|v| v.to_str().is_ok_and(|s| s.contains("text/html")))
    }

    /// The body as `T`: JSON (`Content-Type: application/json`) or an HTML form. Other
    /// types get 415.
    pub fn input<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ApiError> {
        if self.is_form() {
            let text = String::from_utf8_lossy(&self.body);
            let map: serde_json::Map<String, serde_json::Value> = text
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| p.split_once('=').unwrap_or((p, "")))
                .filter(|(k, _)| *k != "next")
                .map(|(k, v)| {
                    (
                        crate::pages::decode(k),
                        serde_json::Value::String(crate::pages::decode(v)),
                    )
                })
                .collect();
            return serde_json::from_value(serde_json::Value::Object(map))
                .map_err(|e| ApiError::InvalidJson(e.to_string()));
        }
        if self.media_type() != "application/json" {
            return Err(ApiError::UnsupportedMediaType);
        }
        serde_json::from_slice(&self.body).map_err(|e| ApiError::InvalidJson(e.to_string()))
    }

    /// A form field, decoded (for `next`, which the handlers do not take).
    pub fn form_field(&self, name: &str) -> Option<String> {
        if !self.is_form() {
            return None;
        }
        crate::pages::param(Some(&String::from_utf8_lossy(&self.body)), name)
    }

    /// True when a browser sent this from another site: Fetch Metadata says so, or the
    /// `Origin` is not this host. Non-browser clients send neither header.
    pub fn is_cross_site(&self) -> bool {
        let h = |n: &str| self.headers.get(n).and_then(|v| v.to_str().ok());
        if let Some(site) = h("sec-fetch-site") {
            return !matches!(site, "same-origin" | "none");
        }
        match (h("origin"), h("host")) {
            (Some("null"), _) => true,
            (Some(origin), Some(host)) => origin.split_once("://").map(|(_, o)| o) != Some(host),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
    }

    pub fn cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmailOnly {
    email: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetUpdate {
    token: String,
    new_password: String,
}

/// The API: the provider, the session store and the settings they share.
pub struct Api {
    pub users: Arc<dyn UserProvider>,
    pub store: Arc<dyn SessionStore>,
    pub cookie: CookieSpec,
    trusted_proxies: Vec<IpNet>,
    fingerprint: FingerprintSpec,
    idle: Duration,
    absolute: Duration,
}

impl Api {
    pub fn new(
        cfg: &AuthConfig,
        users: Arc<dyn UserProvider>,
        store: Arc<dyn SessionStore>,
    ) -> Self {
        Api {
            users,
            store,
            cookie: CookieSpec {
                name: cfg.session.cookie_name.clone(),
                secure: cfg.session.cookie_secure,
            },
            trusted_proxies: cfg.trusted_proxies.clone(),
            fingerprint: cfg.session.fingerprint.clone(),
            idle: cfg.session.idle_timeout.0,
            absolute: cfg.session.absolute_timeout.0,
        }
    }

    /// Routes one request: pages, then the API. Form posts get redirects instead of JSON.
    pub async fn handle(&self, req: &ApiRequest) -> HttpResponse {
        if req.method == Method::GET {
            if let Some(page) = crate::pages::render(&req.path, req.query.as_deref()) {
                return page;
            }
        }
        if req.method == Method::POST && req.is_cross_site() {
            tracing::warn!(path = %req.path, "cross-site POST refused");
            return ApiError::CrossSite.response();
        }
        let result = self.route(req).await;
        if req.is_form()
            || (req.method == Method::GET
                && req.wants_html()
                && req.path.ends_with("/verify-email"))
        {
            return crate::forms::redirect_after(req, result);
        }
        result.unwrap_or_else(|e| {
            match &e {
                ApiError::SessionStore(m) | ApiError::UserStore(m) => {
                    tracing::error!(path = %req.path, error = %m, "dependency unavailable")
                }
                other => tracing::info!(path = %req.path, error = %other, "request refused"),
            }
            e.response()
        })
    }

    async fn route(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        match (req.path.as_str(), &req.method) {
            ("/health", &Method::GET) => Ok(self.health().await),
            ("/health", _) => Err(ApiError::MethodNotAllowed("GET")),
            (p, m) => match (p.strip_prefix(PREFIX), m) {
                (Some("/signup"), &Method::POST) => self.signup(req).await,
                (Some("/signin"), &Method::POST) => self.signin(req).await,
                (Some("/logout"), &Method::POST) => self.logout(req).await,
                (Some("/forgot-password"), &Method::POST) => self.forgot_password(req).await,
                (Some("/reset-password/update"), &Method::POST) => self.reset_password(req).await,
                (Some("/verify-email"), &Method::GET) => self.verify_email(req).await,
                (Some("/verify-email"), _) => Err(ApiError::MethodNotAllowed("GET")),
                (
                    Some(
                        "/signup"
                        | "/signin"
                        | "/logout"
                        | "/forgot-password"
                        | "/reset-password/update",
                    ),
                    _,
                ) => Err(ApiError::MethodNotAllowed("POST")),
                _ => Err(ApiError::NotFound),
            },
        }
    }

    async fn signup(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let c: Credentials = req.input()?;
        let email = validate_email(&c.email)?;
        validate_password(&c.password)?;
        self.users.sign_up(&email, &c.password).await?;
        Ok(json_response(
            202,
            &json!({"status": "pending_verification", "message": "Check your email to continue."}),
        ))
    }

    async fn signin(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let c: Credentials = req.input()?;
        let email = normalize_email(&c.email);
        if email.is_empty()
            || c.password.is_empty()
            || c.password.chars().count() > crate::password::MAX_LEN
        {
            return Err(ApiError::InvalidCredentials);
        }
        let signed_in = self.checked_sign_in(&email, &c.password).await?;
        // No fixation: a session presented with the sign-in is revoked, never adopted.
        self.revoke_presented(req).await?;
        let (token, record) = self.start_session(req, signed_in).await?;
        let mut resp = json_response(
            200,
            &json!({"user_id": record.user_id, "email": record.email, "expires_at": record.expires_at / 1000}),
        );
        set_cookie(&mut resp, &self.cookie.set(token.expose(), self.absolute));
        tracing::info!(user = %record.user_id, session = &token.id()[..12], "signed in");
        Ok(resp)
    }

    /// Credentials checked under the per-account throttle: from the 5th consecutive failure
    /// within 15 minutes the account is locked for 1 s, then 2 s, 4 s... up to 15 minutes.
    /// A locked account answers 429 whatever the password, so the lock reveals nothing, and
    /// unknown addresses are throttled alike (the key is a hash of the address).
    async fn checked_sign_in(&self, email: &str, password: &str) -> Result<SignedIn, ApiError> {
        let account = authflow_shared::token::hash_hex(email.as_bytes());
        if let Some(left) = self.store.login_locked_for(&account).await? {
            return Err(ApiError::AccountLocked(left));
        }
        match self.users.sign_in(email, password).await {
            Ok(who) => {
                self.store.clear_login_failures(&account).await?;
                Ok(who)
            }
            Err(ProviderError::InvalidCredentials) => {
                let failures = self
                    .store
                    .record_login_failure(&account, FAILURE_WINDOW)
                    .await?;
                if failures >= LOCK_AFTER_FAILURES {
                    let doublings = (failures - LOCK_AFTER_FAILURES).min(10) as u32;
                    let lock = (Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_LOCK);
                    self.store.lock_login(&account, lock).await?;
                    tracing::warn!(
                        failures,
                        lock_s = lock.as_secs(),
                        "sign-in locked for an account after repeated failures"
                    );
                }
                Err(ApiError::InvalidCredentials)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn logout(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        if let Some(record) = self.revoke_presented(req).await? {
            self.users.signed_out(&record).await;
            tracing::info!(user = %record.user_id, "signed out");
        }
        let mut resp = uncached(204, None, Bytes::new());
        set_cookie(&mut resp, &self.cookie.clear());
        Ok(resp)
    }

    async fn forgot_password(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let b: EmailOnly = req.input()?;
        let email = normalize_email(&b.email);
        // The lookup and the email happen after the response: existing and unknown addresses
        // answer alike, in the same time.
        if looks_like_email(&email) {
            let users = self.users.clone();
            tokio::spawn(async move {
                if let Err(e) = users.forgot_password(&email).await {
                    tracing::error!(error = %e, "forgot-password failed");
                }
            });
        }
        Ok(json_response(
            202,
            &json!({"status": "accepted", "message": "If an account exists for this address, a reset link is on its way."}),
        ))
    }

    async fn reset_password(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let b: ResetUpdate = req.input()?;
        validate_password(&b.new_password)?;
        if b.token.is_empty() || b.token.len() > 512 {
            return Err(ApiError::InvalidToken);
        }
        let user_id = self.users.reset_password(&b.token, &b.new_password).await?;
        let revoked = self.store.revoke_user(&user_id).await?;
        tracing::info!(user = %user_id, revoked, "password reset; all sessions revoked");
        Ok(json_response(200, &json!({"status": "password_updated"})))
    }

    async fn verify_email(&self, req: &ApiRequest) -> Result<HttpResponse, ApiError> {
        let token = req
            .query_param("token")
            .filter(|t| !t.is_empty() && t.len() <= 512)
            .ok_or(ApiError::InvalidToken)?;
        self.users.verify_email(&token).await?;
        Ok(json_response(200, &json!({"status": "email_verified"})))
    }

    async fn health(&self) -> HttpResponse {
        let (redis, users) = tokio::join!(self.store.ping(), self.users.health());
        let ok = redis.is_ok() && users.is_ok();
        json_response(
            if ok { 200 } else { 503 },
            &json!({
                "status": if ok { "ok" } else { "unavailable" },
                self.store.kind(): if redis.is_ok() { "up" } else { "down" },
                "user_store": { "provider": self.users.name(), "state": if users.is_ok() { "up" } else { "down" } },
            }),
        )
    }

    /// Deletes the session named by the request's cookie, if any; returns its record.
    async fn revoke_presented(&self, req: &ApiRequest) -> Result<Option<SessionRecord>, ApiError> {
        let CookieLookup::One(value) = cookie::find(req.cookies(), &self.cookie.name) else {
            return Ok(None);
        };
        let Some(token) = SessionToken::parse(value) else {
            return Ok(None);
        };
        let id = token.id();
        let Some(record) = self.store.lookup(&id).await? else {
            return Ok(None);
        };
        self.store.delete(&id, &record.user_id).await?;
        Ok(Some(record))
    }

    /// Writes a new session for `who`, bound to this client's device fingerprint.
    pub async fn start_session(
        &self,
        req: &ApiRequest,
        who: SignedIn,
    ) -> Result<(SessionToken, SessionRecord), ApiError> {
        let token = SessionToken::generate();
        let mut record = SessionRecord::new(
            who.user_id,
            Some(who.email),
            self.client_fingerprint(req),
            authflow_shared::now_ms(),
            self.absolute,
        );
        record.provider_data = who.provider_data;
        self.store
            .create(&token.id(), &record, self.idle.min(self.absolute))
            .await?;
        Ok((token, record))
    }

    /// The gateway's fingerprint header when the request comes from a trusted proxy (the
    /// gateway sees the real client); otherwise computed here from what we see.
    fn client_fingerprint(&self, req: &ApiRequest) -> String {
        let peer = client_ip::canonical(req.peer.ip());
        if client_ip::is_trusted(peer, &self.trusted_proxies) {
            if let Some(fp) = req
                .headers
                .get(FINGERPRINT_HEADER)
                .and_then(|v| v.to_str().ok())
            {
                if fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return fp.to_ascii_lowercase();
                }
            }
        }
        let xff = req
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok());
        let ip: IpAddr = client_ip::resolve(peer, xff, &self.trusted_proxies);
        self.fingerprint.compute(ip, &req.headers)
    }
}

pub fn set_cookie(resp: &mut HttpResponse, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// Trimmed and lower-cased, as GoTrue does.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

fn looks_like_email(email: &str) -> bool {
    if email.len() > 254
        || email
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>()[],;:\"\\".contains(c))
    {
        return false;
    }
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && local.len() <= 64
                && !local.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
        }
        None => false,
    }
}

pub fn validate_email(email: &str) -> Result<String, ApiError> {
    let e = normalize_email(email);
    if looks_like_email(&e) {
        Ok(e)
    } else {
        Err(ApiError::Validation {
            field: "email",
            reason: "is not a valid email address".into(),
        })
    }
}

pub fn validate_password(password: &str) -> Result<(), ApiError> {
    crate::password::check_policy(password).map_err(|reason| ApiError::Validation {
        field: "password",
        reason: reason.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            validate_email("  Ann@Example.COM ").expect("valid"),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.y",
            "ann@localhost",
            "a b@x.y",
            "ann@x..y",
            "<a>@x.y",
            "a@.x.y",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_email(&format!("{}@x.y", "a".repeat(65))).is_err());
    }
}
