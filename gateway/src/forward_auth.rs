//! Forward-auth: the gateway's session and fingerprint check offered to a proxy that stays in
//! front (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` in HTTP mode), so
//! AuthFlow can be adopted behind an existing edge and take its place later.
//!
//! The caller asks about the *original* request. Where it went is read from the headers each
//! proxy sends; who sent it is the client address resolved through `trusted_proxies`, as for
//! any request, so the fingerprint and the rate limits see the real client. A `/verify`
//! request is never routed to an upstream.

use authflow_shared::request::{encode_query_value, query_param, wants_html};
use pingora::http::RequestHeader;

/// On a 401 for a browser's request: where that browser should go to sign in, for a proxy
/// that can only turn the 401 into a redirect itself (nginx: `auth_request_set` +
/// `error_page 401`).
pub const LOGIN_HEADER: &str = "x-authflow-login";

/// Set by a caller that wants browsers redirected (see [`wants_redirect`]).
pub const REDIRECT_HEADER: &str = "x-authflow-redirect";

/// Which request a forward-auth call asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: http::Method,
    /// Path and query as the client sent them (for `next` in a sign-in redirect).
    pub uri: String,
    /// The path part of `uri`, for the rate-limit rules (canonicalised by the caller).
    pub path: String,
    /// The host the client asked for, if the caller said.
    pub host: Option<String>,
}

/// Whether `path` (canonical) is the forward-auth endpoint `endpoint`, and what follows it:
/// `Some("")` for the endpoint itself, `Some("/app/x")` for Envoy's `path_prefix` form.
pub fn suffix<'a>(endpoint: &str, path: &'a str) -> Option<&'a str> {
    let rest = path.strip_prefix(endpoint)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// The headers that describe the original request.
const DESCRIBING: [&str; 5] = [
    "x-forwarded-uri",
    "x-original-uri",
    "x-forwarded-method",
    "x-original-method",
    "x-forwarded-host",
];

/// Why the description of the original request was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unclear {
    /// Both spellings (`X-Forwarded-Uri` and `X-Original-URI`, or of the method) with
    /// different values, or one of them twice: nginx's `auth_request` passes the client's own
    /// headers to the check, so a client could name another request than the one it sent.
    Conflicting,
    /// An original method that is not a method token.
    BadMethod,
    /// A caller outside `trusted_proxies` describing an original request: believing it would
    /// let anyone choose what is judged, ignoring it would judge `/` and let a misconfigured
    /// proxy pass every route's roles (black-box review), so it is refused.
    Untrusted,
}

impl Unclear {
    pub fn as_str(self) -> &'static str {
        match self {
            Unclear::Conflicting => "conflicting_original_request",
            Unclear::BadMethod => "bad_original_method",
            Unclear::Untrusted => "original_request_from_untrusted_caller",
        }
    }
}

/// The original request: `X-Forwarded-*` (Traefik), `X-Original-*` (nginx), or, for Envoy,
/// the request itself with the endpoint's path taken off (`suffix`). The method and URI fall
/// back to the check request's own, so a bare `GET /verify` asks about `GET /`. The headers
/// count only from a `trusted` caller: anyone else asks about their own request. Two
/// spellings that disagree are refused rather than one believed.
pub fn original(req: &RequestHeader, suffix: &str, trusted: bool) -> Result<Original, Unclear> {
    if !trusted && DESCRIBING.iter().any(|h| req.headers.contains_key(*h)) {
        return Err(Unclear::Untrusted);
    }
    let header = |name: &str| -> Result<Option<&str>, Unclear> {
        if !trusted {
            return Ok(None);
        }
        let mut values = req.headers.get_all(name).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(Unclear::Conflicting);
        }
        Ok(first
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty()))
    };
    let either = |a: &str, b: &str| -> Result<Option<&str>, Unclear> {
        match (header(a)?, header(b)?) {
            (Some(x), Some(y)) if x != y => Err(Unclear::Conflicting),
            (x, y) => Ok(x.or(y)),
        }
    };
    let method = match either("x-forwarded-method", "x-original-method")? {
        Some(m) => http::Method::from_bytes(m.as_bytes()).map_err(|_| Unclear::BadMethod)?,
        None => req.method.clone(),
    };
    let described = either("x-forwarded-uri", "x-original-uri")?;
    // Envoy's form (the original path after the endpoint) and a header must not disagree.
    if let (Some(u), false) = (described, suffix.is_empty()) {
        if u.split(['?', '#']).next() != Some(suffix) {
            return Err(Unclear::Conflicting);
        }
    }
    let uri = match described {
        Some(u) => u.to_owned(),
        None if !suffix.is_empty() => {
            let query = req.uri.query().map_or(String::new(), |q| format!("?{q}"));
            format!("{suffix}{query}")
        }
        None => "/".to_owned(),
    };
    let path = uri.split(['?', '#']).next().unwrap_or("/").to_owned();
    let host = header("x-forwarded-host")?.map(str::to_owned);
    Ok(Original {
        method,
        uri,
        path,
        host,
    })
}

/// Whether the caller wants browsers sent to the sign-in page rather than a 401: with
/// `?redirect=1` on the check URL (Traefik, which passes any answer but a 2xx to the client
/// as it is) or the header [`REDIRECT_HEADER`]`: 1` (Envoy, whose check URL carries the
/// original path and query, and which relays a denial's status and allowed headers). nginx
/// needs neither: `auth_request` understands only 2xx, 401 and 403, and turns the 401 into a
/// redirect itself with `error_page`.
pub fn wants_redirect(req: &RequestHeader) -> bool {
    let yes = |v: &str| matches!(v.trim(), "1" | "true" | "yes");
    query_param(req.uri.query(), "redirect").is_some_and(|v| yes(&v))
        || req
            .headers
            .get(REDIRECT_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(yes)
}

/// Whether the original request came from a browser that should see the sign-in page.
pub fn from_browser(req: &RequestHeader, original: &Original) -> bool {
    let accept = req.headers.get_all("accept");
    let accept = accept.iter().filter_map(|v| v.to_str().ok());
    wants_html(original.method == http::Method::GET, accept)
}

/// Where a browser goes to sign in: `login_url` with the original URI in `next`.
pub fn login_location(login_url: &str, original_uri: &str) -> String {
    let sep = if login_url.contains('?') { '&' } else { '?' };
    format!("{login_url}{sep}next={}", encode_query_value(original_uri))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).expect("request");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn the_endpoint_matches_on_a_segment_boundary() {
        assert_eq!(suffix("/verify", "/verify"), Some(""));
        assert_eq!(suffix("/verify", "/verify/app/x"), Some("/app/x"));
        assert_eq!(suffix("/verify", "/verifyx"), None);
        assert_eq!(suffix("/verify", "/app/verify"), None);
    }

    #[test]
    fn traefik_headers_name_the_original_request() {
        let r = req(
            "/verify",
            &[
                ("x-forwarded-method", "POST"),
                ("x-forwarded-uri", "/app/x?a=1"),
                ("x-forwarded-host", "app.example.com"),
            ],
        );
        let o = original(&r, "", true).expect("clear");
        assert_eq!(o.method, http::Method::POST);
        assert_eq!((o.uri.as_str(), o.path.as_str()), ("/app/x?a=1", "/app/x"));
        assert_eq!(o.host.as_deref(), Some("app.example.com"));
    }

    #[test]
    fn nginx_headers_name_the_original_request() {
        let r = req(
            "/verify",
            &[
                ("x-original-method", "DELETE"),
                ("x-original-uri", "/app/y"),
            ],
        );
        let o = original(&r, "", true).expect("clear");
        assert_eq!(o.method, http::Method::DELETE);
        assert_eq!(o.path, "/app/y");
    }

    #[test]
    fn envoy_sends_the_original_path_after_the_prefix() {
        let r = req("/verify/app/z?q=2", &[]);
        let o = original(&r, "/app/z", true).expect("clear");
        assert_eq!((o.uri.as_str(), o.path.as_str()), ("/app/z?q=2", "/app/z"));
        assert_eq!(o.method, http::Method::GET);
    }

    #[test]
    fn an_untrusted_caller_asks_about_its_own_request_and_may_not_describe_another() {
        let r = req("/verify/app/z", &[]);
        let o = original(&r, "/app/z", false).expect("clear");
        assert_eq!((o.method, o.path.as_str()), (http::Method::GET, "/app/z"));
        assert_eq!(original(&r, "", false).expect("clear").path, "/");
        let described = req(
            "/verify/app/z",
            &[
                ("x-forwarded-uri", "/public/x"),
                ("x-forwarded-method", "POST"),
            ],
        );
        assert_eq!(
            original(&described, "/app/z", false),
            Err(Unclear::Untrusted)
        );
    }

    #[test]
    fn envoys_path_form_and_a_header_must_agree() {
        let r = req("/verify/admin/x", &[("x-original-uri", "/app/x")]);
        assert_eq!(original(&r, "/admin/x", true), Err(Unclear::Conflicting));
        let r = req("/verify/app/x?q=1", &[("x-original-uri", "/app/x?q=1")]);
        assert_eq!(
            original(&r, "/app/x", true).map(|o| o.path),
            Ok("/app/x".into())
        );
    }

    #[test]
    fn two_spellings_that_disagree_are_refused() {
        let both = |a: (&'static str, &'static str), b: (&'static str, &'static str)| {
            original(&req("/verify", &[a, b]), "", true).map(|o| o.path)
        };
        let nginx = ("x-original-uri", "/app/x");
        assert_eq!(
            both(("x-forwarded-uri", "/elsewhere"), nginx),
            Err(Unclear::Conflicting)
        );
        assert_eq!(
            both(("x-forwarded-uri", "/app/x"), nginx),
            Ok("/app/x".into())
        );
        assert_eq!(
            both(("x-forwarded-method", "GET"), ("x-original-method", "POST")),
            Err(Unclear::Conflicting)
        );
        assert_eq!(
            both(("x-forwarded-uri", "/a"), ("x-forwarded-uri", "/b")),
            Err(Unclear::Conflicting)
        );
        let bad = req("/verify", &[("x-forwarded-method", "PO ST")]);
        assert_eq!(original(&bad, "", true), Err(Unclear::BadMethod));
        // From an untrusted caller they are refused, whatever they say.
        assert_eq!(original(&bad, "", false), Err(Unclear::Untrusted));
    }

    #[test]
    fn redirects_only_when_asked() {
        assert!(wants_redirect(&req("/verify?redirect=1", &[])));
        assert!(wants_redirect(&req("/verify?x=2&redirect=true", &[])));
        assert!(!wants_redirect(&req("/verify", &[])));
        assert!(!wants_redirect(&req("/verify?redirect=0", &[])));
        assert!(wants_redirect(&req(
            "/verify/app",
            &[(REDIRECT_HEADER, "1")]
        )));
        assert!(!wants_redirect(&req(
            "/verify/app",
            &[(REDIRECT_HEADER, "0")]
        )));
    }

    #[test]
    fn the_login_location_carries_the_original_uri() {
        assert_eq!(
            login_location("/auth/signin", "/app/x?a=1"),
            "/auth/signin?next=/app/x%3Fa%3D1"
        );
        assert_eq!(
            login_location("https://id.example.com/signin?x=1", "/"),
            "https://id.example.com/signin?x=1&next=/"
        );
    }
}
