//! HTTP plumbing: the request as the handlers see it (body read, bounded) and the responses
//! every part of the service builds on. No account logic here.

use authflow_shared::request;
use bytes::Bytes;
use http::{header, HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;
use std::net::SocketAddr;

/// Largest request body accepted (credentials and tokens are tiny).
const MAX_BODY: usize = 16 * 1024;

pub type HttpResponse = Response<Full<Bytes>>;

/// Why a request's input could not be read. [`crate::error::ApiError`] gives each its status.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("payload too large")]
    TooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("invalid input: {0}")]
    Malformed(String),
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
    // No MIME sniffing of our JSON, no paths or tokens leaking through Referer. (HSTS is the
    // gateway's, on its TLS listener, for everything it serves.)
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
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

/// A `303 See Other` to `location` (after a form post).
pub fn see_other(location: &str) -> HttpResponse {
    let mut resp = uncached(303, None, Bytes::new());
    if let Ok(v) = header::HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Appends a `Set-Cookie` header.
pub fn set_cookie(resp: &mut HttpResponse, value: &str) {
    if let Ok(v) = header::HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// What went wrong with a body, for the logs: the kind of error and where, never the
/// parser's message, which can quote the input (a password sent as a number, say).
fn malformed(e: serde_json::Error) -> InputError {
    InputError::Malformed(format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    ))
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
    pub async fn read<B>(req: http::Request<B>, peer: SocketAddr) -> Result<Self, InputError>
    where
        B: hyper::body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map_err(|_| InputError::TooLarge)?
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

    fn header(&self, name: impl header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn media_type(&self) -> String {
        let ct = self.header(header::CONTENT_TYPE).unwrap_or("");
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

    /// Whether a browser asks for a page (a GET accepting `text/html`).
    pub fn wants_html(&self) -> bool {
        let accept = self.headers.get_all(header::ACCEPT);
        let accept = accept.iter().filter_map(|v| v.to_str().ok());
        request::wants_html(self.method == Method::GET, accept)
    }

    /// The body as `T`: JSON (`Content-Type: application/json`) or an HTML form, so a flow
    /// reads the same input whichever client called it. Other types get 415.
    pub fn input<T: for<'de> Deserialize<'de>>(&self) -> Result<T, InputError> {
        if self.is_form() {
            let text = String::from_utf8_lossy(&self.body);
            let map: serde_json::Map<String, serde_json::Value> = request::query_pairs(&text)
                .filter(|(k, _)| k != "next")
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            return serde_json::from_value(serde_json::Value::Object(map)).map_err(malformed);
        }
        if self.media_type() != "application/json" {
            return Err(InputError::UnsupportedMediaType);
        }
        serde_json::from_slice(&self.body).map_err(malformed)
    }

    /// A form field, decoded (for `next`, which the handlers do not take).
    pub fn form_field(&self, name: &str) -> Option<String> {
        if !self.is_form() {
            return None;
        }
        request::query_param(Some(&String::from_utf8_lossy(&self.body)), name)
    }

    /// A query parameter, decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        request::query_param(self.query.as_deref(), name)
    }

    /// True when a browser sent this from another site: Fetch Metadata says so, or the
    /// `Origin` is not this host. Non-browser clients send neither header.
    pub fn is_cross_site(&self) -> bool {
        if let Some(site) = self.header("sec-fetch-site") {
            return !matches!(site, "same-origin" | "none");
        }
        match (self.header("origin"), self.header("host")) {
            (Some("null"), _) => true,
            (Some(origin), Some(host)) => origin.split_once("://").map(|(_, o)| o) != Some(host),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    pub fn cookies(&self) -> impl Iterator<Item = &str> {
        self.headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
    }
}
