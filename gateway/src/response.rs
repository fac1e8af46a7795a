//! Responses the gateway writes itself (errors, redirects, health). Request steps return a
//! [`LocalResponse`]; one place, [`LocalResponse::send`], writes it to the wire.

use crate::rate_limit::Exceeded;
use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::proxy::Session;
use std::borrow::Cow;

/// A complete response: status, headers and a body that is always framed with
/// `Content-Length`.
#[derive(Debug, Clone)]
pub struct LocalResponse {
    pub status: u16,
    /// Names and values; a constant value is borrowed (written without a copy).
    pub headers: Vec<(&'static str, Cow<'static, str>)>,
    pub body: Bytes,
}

impl LocalResponse {
    /// A JSON response that is never cached.
    pub fn json(status: u16, body: serde_json::Value) -> Self {
        LocalResponse {
            status,
            headers: vec![
                ("content-type", "application/json".into()),
                ("cache-control", "no-store".into()),
            ],
            body: Bytes::from(body.to_string()),
        }
    }

    /// `status` with no body (a forward-auth answer: only the status and headers count).
    pub fn empty(status: u16) -> Self {
        LocalResponse {
            status,
            headers: vec![("cache-control", "no-store".into())],
            body: Bytes::new(),
        }
    }

    /// 403 for a signed-in person the route does not admit. Browsers (`html`) get a plain
    /// page naming the account (escaped) with a link to sign in as someone else; API
    /// clients `{"error":"forbidden"}`. The session and its cookie stay.
    pub fn forbidden(html: bool, email: Option<&str>, sign_in: &str) -> Self {
        if !html {
            return Self::error(403, "forbidden");
        }
        let who = email.map_or_else(|| "an account".to_owned(), escape_html);
        let body = format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>403 Forbidden</title></head>\n<body>\n<h1>Forbidden</h1>\n\
             <p>You are signed in as {who}, which cannot open this page.</p>\n\
             <p><a href=\"{}\">Sign in as someone else</a></p>\n</body></html>\n",
            escape_html(sign_in)
        );
        LocalResponse {
            status: 403,
            headers: vec![
                ("content-type", "text/html; charset=utf-8".into()),
                ("cache-control", "no-store".into()),
                (
                    "content-security-policy",
                    "default-src 'none'; frame-ancestors 'none'".into(),
                ),
            ],
            body: Bytes::from(body),
        }
    }

    /// 401 for a signed-in person a route asks for a (fresher) second factor:
    /// `{"error":"mfa_required"}` and the RFC 9470 challenge, whose `max_age` (seconds) is
    /// there when the route bounds the factor's age (`mfa_max_age`). The session and its
    /// cookie stay.
    pub fn second_factor_required(max_age: Option<std::time::Duration>) -> Self {
        let mut challenge = String::from(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"A second factor is required\"",
        );
        if let Some(max_age) = max_age {
            challenge.push_str(&format!(", max_age={}", max_age.as_secs()));
        }
        Self::error(401, "mfa_required").header("www-authenticate", challenge)
    }

    /// `{"error": code}` with `status`.
    pub fn error(status: u16, code: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": code }))
    }

    /// A `302 Found` to `location`.
    pub fn redirect(location: String) -> Self {
        LocalResponse {
            status: 302,
            headers: vec![
                ("location", location.into()),
                ("cache-control", "no-store".into()),
            ],
            body: Bytes::new(),
        }
    }

    /// 429 with `Retry-After` and the IETF `RateLimit-Policy` / `RateLimit` fields
    /// (draft-ietf-httpapi-ratelimit-headers).
    pub fn too_many_requests(limit: &Exceeded) -> Self {
        let retry = limit.retry_after;
        let (policy, state) =
            rate_limit_headers(&limit.policy, limit.requests, limit.window_secs, 0, retry);
        // The rejection path must stay cheaper than proxying: the body is written directly
        // (the same bytes `serde_json` gives), not built as a JSON value.
        let body = format!("{{\"error\":\"rate_limited\",\"retry_after\":{retry}}}");
        LocalResponse {
            status: 429,
            headers: vec![
                ("content-type", Cow::Borrowed("application/json")),
                ("cache-control", Cow::Borrowed("no-store")),
            ],
            body: Bytes::from(body),
        }
        .header("retry-after", retry.to_string())
        .header("ratelimit-policy", policy)
        .header("ratelimit", state)
    }

    /// Adds `name: value` to the JSON body (for a `reason` the client can act on).
    pub fn field(mut self, name: &str, value: &str) -> Self {
        if let Ok(mut body) = serde_json::from_slice::<serde_json::Value>(&self.body) {
            body[name] = serde_json::Value::from(value);
            self.body = Bytes::from(body.to_string());
        }
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<Cow<'static, str>>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    pub fn header_value(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Writes the response downstream. Keep-alive is dropped when the client sent a request
    /// body we did not read, so leftover bytes never become the next request.
    pub async fn send(self, session: &mut Session, request_id: &str) -> pingora::Result<()> {
        let mut header = ResponseHeader::build(self.status, Some(self.headers.len() + 5))?;
        for (k, v) in self.headers {
            let v = match v {
                Cow::Borrowed(v) => HeaderValue::from_static(v),
                Cow::Owned(v) => HeaderValue::try_from(v).map_err(|e| {
                    pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, k, e)
                })?,
            };
            header.append_header(k, v)?;
        }
        if !request_id.is_empty() {
            header.insert_header("x-request-id", request_id)?;
        }
        security_headers(&mut header, is_tls(session))?;
        header.insert_header("content-length", self.body.len().to_string())?;
        if request_has_body(session) {
            session.set_keepalive(None);
        }
        // A HEAD answer has the headers of the GET answer, never its body.
        let empty = self.body.is_empty() || session.req_header().method == http::Method::HEAD;
        if let (true, ServerSession::H2(h2)) = (empty, session.as_downstream_mut()) {
            // The stream ends with the headers (Pingora's own writer leaves it open and
            // resets it later): a gRPC client reads a Trailers-Only answer only so.
            return h2.write_response_header(Box::new(header), true);
        }
        session
            .write_response_header(Box::new(header), empty)
            .await?;
        if !empty {
            session.write_response_body(Some(self.body), true).await?;
        }
        Ok(())
    }
}

/// `s` safe as HTML text and as a double- or single-quoted attribute value: the five
/// characters that could end either are replaced by character references (the OWASP rule
/// for HTML contexts); nothing else is touched.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether the client is on the TLS listener.
pub fn is_tls(session: &Session) -> bool {
    session.digest().is_some_and(|d| d.ssl_digest.is_some())
}

/// Headers on everything the gateway answers itself, and (HSTS) on every response over TLS:
/// no MIME sniffing, no referrer leaking paths, and browsers that came over HTTPS stay there.
pub fn security_headers(header: &mut ResponseHeader, tls: bool) -> pingora::Result<()> {
    if !header.headers.contains_key("x-content-type-options") {
        header.insert_header(
            "x-content-type-options",
            HeaderValue::from_static("nosniff"),
        )?;
    }
    if !header.headers.contains_key("referrer-policy") {
        header.insert_header("referrer-policy", HeaderValue::from_static("no-referrer"))?;
    }
    if tls && !header.headers.contains_key("strict-transport-security") {
        header.insert_header(
            "strict-transport-security",
            HeaderValue::from_static("max-age=31536000"),
        )?;
    }
    Ok(())
}

fn request_has_body(session: &Session) -> bool {
    let h = &session.req_header().headers;
    h.contains_key("transfer-encoding")
        || h.get("content-length")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0")
}

/// `RateLimit-Policy` and `RateLimit` (IETF draft-ietf-httpapi-ratelimit-headers) for the
/// rule `name`: `requests` per `window_secs`, `remaining` left, full again in `reset_secs`.
pub fn rate_limit_headers(
    name: &str,
    requests: u64,
    window_secs: u64,
    remaining: u64,
    reset_secs: u64,
) -> (String, String) {
    (
        format!("\"{name}\";q={requests};w={window_secs}"),
        format!("\"{name}\";r={remaining};t={reset_secs}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escaping_leaves_no_markup() {
        assert_eq!(
            escape_html(r#"<a href="x" onclick='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape_html("anna@example.com"), "anna@example.com");
    }

    #[test]
    fn forbidden_page_names_the_account_escaped_and_links_to_sign_in() {
        let page = LocalResponse::forbidden(
            true,
            Some("\"><script>alert(1)</script>@x.com"),
            "/auth/signin?next=/admin/&x=1",
        );
        assert_eq!(page.status, 403);
        let body = std::str::from_utf8(&page.body).expect("utf-8");
        assert!(!body.contains("<script>"), "{body}");
        assert!(body.contains("You are signed in as &quot;&gt;&lt;script&gt;"));
        assert!(body.contains(r#"href="/auth/signin?next=/admin/&amp;x=1""#));
        assert_eq!(
            page.header_value("content-type"),
            Some("text/html; charset=utf-8")
        );
        let api = LocalResponse::forbidden(false, Some("a@b"), "/x");
        assert_eq!(&api.body[..], br#"{"error":"forbidden"}"#);
    }

    #[test]
    fn a_step_up_is_the_rfc_9470_challenge_with_max_age_only_when_bounded() {
        let r = LocalResponse::second_factor_required(Some(std::time::Duration::from_secs(900)));
        assert_eq!(r.status, 401);
        assert_eq!(&r.body[..], br#"{"error":"mfa_required"}"#);
        assert_eq!(
            r.header_value("www-authenticate"),
            Some(
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A second factor is required\", max_age=900"
            )
        );
        let r = LocalResponse::second_factor_required(None);
        let challenge = r.header_value("www-authenticate").expect("challenge");
        assert!(challenge.ends_with("is required\""), "{challenge}");
        assert!(r.header_value("set-cookie").is_none());
    }
}
