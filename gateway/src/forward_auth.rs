//! Forward-auth: the gateway's session and fingerprint check offered to a proxy that stays in
//! front (nginx `auth_request`, Traefik `forwardAuth`, Envoy `ext_authz` in HTTP mode), so
//! AuthFlow can be adopted behind an existing edge and take its place later.
//!
//! The caller asks about the *original* request. Where it went is read from the headers each
//! proxy sends; who sent it is the client address resolved through `trusted_proxies`, as for
//! any request, so the fingerprint and the rate limits see the real client. A `/verify`
//! request is never routed to an upstream.

use crate::access::{Requirements, SecondFactor};
use crate::response::LocalResponse;
use authflow_shared::config::HumanDuration;
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

pub use crate::config::endpoint_suffix as suffix;

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

/// Why the check URL's own demands were refused (400): the proxy's config is wrong, and a
/// check that cannot say what it was asked fails closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadDemand {
    /// `?roles=` is not a list of role names.
    Roles(String),
    /// `?mfa=` is not a yes or no, `?mfa_max_age=` not a duration of whole seconds, or given
    /// without `?mfa=1`.
    SecondFactor(String),
}

impl BadDemand {
    /// The `reason` of the 400.
    pub fn as_str(&self) -> &'static str {
        match self {
            BadDemand::Roles(_) => "bad_roles",
            BadDemand::SecondFactor(_) => "bad_mfa",
        }
    }

    /// What was wrong, for the log.
    pub fn detail(&self) -> &str {
        match self {
            BadDemand::Roles(d) | BadDemand::SecondFactor(d) => d,
        }
    }
}

/// What the caller's config demands on the check URL besides the original request's route
/// (oauth2-proxy's `allowed_groups` habit): `?roles=a,b` (any of them admits), `?mfa=1` (a
/// second factor) and `?mfa_max_age=15m` (used that recently; only with `?mfa=1`, as on a
/// route). `None` when it demands nothing.
pub fn demanded(query: Option<&str>) -> Result<Option<Requirements>, BadDemand> {
    let roles = query_param(query, "roles");
    let mfa = query_param(query, "mfa");
    let max_age = query_param(query, "mfa_max_age");
    if roles.is_none() && mfa.is_none() && max_age.is_none() {
        return Ok(None);
    }
    let mut demand = match roles {
        Some(list) => {
            Requirements::from_query(&list).map_err(|e| BadDemand::Roles(e.to_string()))?
        }
        None => Requirements::default(),
    };
    let bad = |why: String| BadDemand::SecondFactor(why);
    let mfa = match mfa.as_deref().map(str::trim) {
        None | Some("0" | "false" | "no") => false,
        Some("1" | "true" | "yes") => true,
        Some(other) => return Err(bad(format!("mfa={other:?} is not 1 or 0"))),
    };
    let max_age = match max_age {
        Some(text) => {
            let d = text.parse::<HumanDuration>().map_err(bad)?.0;
            SecondFactor::check_max_age(d).map_err(|why| bad(format!("mfa_max_age {why}")))?;
            Some(d)
        }
        None => None,
    };
    if max_age.is_some() && !mfa {
        return Err(bad("mfa_max_age needs mfa=1".into()));
    }
    demand.second_factor = mfa.then_some(SecondFactor { max_age });
    Ok(Some(demand))
}

/// `/verify`'s refusal `api` (a 401) as the original request's client should get it:
/// a browser's is a 302 to `page` when the caller asks for redirects ([`wants_redirect`]),
/// else `api` naming `page` in [`LOGIN_HEADER`], for a proxy that redirects itself (nginx).
/// The same for a missing session (`page`: the sign-in page) and a step-up (the
/// second-factor page).
pub fn refusal(
    req: &RequestHeader,
    original: &Original,
    page: impl FnOnce() -> String,
    api: LocalResponse,
) -> LocalResponse {
    if !from_browser(req, original) {
        api
    } else if wants_redirect(req) {
        LocalResponse::redirect(page())
    } else {
        api.header(LOGIN_HEADER, page())
    }
}

/// Whether the original request came from a browser that should see the sign-in page.
pub fn from_browser(req: &RequestHeader, original: &Original) -> bool {
    let accept = req.headers.get_all("accept");
    let accept = accept.iter().filter_map(|v| v.to_str().ok());
    wants_html(original.method == http::Method::GET, accept)
}

/// Where a browser goes to sign in (or for a second factor): the page `login_url` with the
/// original URI in `next`, percent-encoded.
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
    fn the_check_url_demands_roles_and_a_second_factor() {
        assert_eq!(demanded(None), Ok(None));
        assert_eq!(demanded(Some("redirect=1")), Ok(None));
        let d = demanded(Some("roles=admin,ops&redirect=1"))
            .expect("ok")
            .expect("some");
        assert_eq!((d.any.len(), d.second_factor), (2, None));
        let d = demanded(Some("mfa=1")).expect("ok").expect("some");
        assert_eq!(d.second_factor, Some(SecondFactor { max_age: None }));
        assert!(d.any.is_empty());
        let d = demanded(Some("mfa=true&mfa_max_age=15m&roles=admin"))
            .expect("ok")
            .expect("some");
        assert_eq!(
            d.second_factor,
            Some(SecondFactor {
                max_age: Some(std::time::Duration::from_secs(900))
            })
        );
        assert_eq!(d.any, vec!["admin"]);
        let d = demanded(Some("mfa=0")).expect("ok").expect("some");
        assert!(d.is_open());
        for bad in [
            "mfa=maybe",
            "mfa_max_age=15m",
            "mfa=0&mfa_max_age=15m",
            "mfa=1&mfa_max_age=15",
            "mfa=1&mfa_max_age=0s",
            "mfa=1&mfa_max_age=1500ms",
        ] {
            let e = demanded(Some(bad)).expect_err(bad);
            assert_eq!(e.as_str(), "bad_mfa", "{bad}: {}", e.detail());
        }
        let e = demanded(Some("roles=bad%20role&mfa=1")).expect_err("roles");
        assert_eq!(e.as_str(), "bad_roles");
    }

    #[test]
    fn a_browsers_refusal_is_a_redirect_only_when_asked() {
        let original = |r: &RequestHeader| original(r, "", true).expect("clear");
        let api = || LocalResponse::second_factor_required(None);
        let page = || "/auth/mfa?next=/x".to_owned();
        let html = [("accept", "text/html")];
        let r = req("/verify?redirect=1", &html);
        let resp = refusal(&r, &original(&r), page, api());
        assert_eq!(
            (resp.status, resp.header_value("location")),
            (302, Some("/auth/mfa?next=/x"))
        );
        let r = req("/verify", &html);
        let resp = refusal(&r, &original(&r), page, api());
        assert_eq!(resp.status, 401);
        assert_eq!(resp.header_value(LOGIN_HEADER), Some("/auth/mfa?next=/x"));
        assert!(resp.header_value("www-authenticate").is_some());
        let r = req("/verify?redirect=1", &[("accept", "application/json")]);
        let resp = refusal(&r, &original(&r), page, api());
        assert_eq!(resp.status, 401);
        assert_eq!(resp.header_value(LOGIN_HEADER), None);
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
