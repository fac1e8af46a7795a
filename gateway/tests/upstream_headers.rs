//! Property test of the one-pass upstream header builder ([`headers::strip_for_upstream`]):
//! whatever the client sends, every header the gateway owns is gone in every spelling (`-` or
//! `_`, any case), the session cookie and the auth service's flow cookies are out of
//! `Cookie`, and every other header reaches the upstream unchanged (name case, value) and in
//! the order the request held them, duplicates included.

use authflow_gateway::headers;
use pingora::http::RequestHeader;
use proptest::prelude::*;

/// Names the gateway owns (with no route keeping any, and `x-tenant` in
/// `[identity] strip_headers`), written with `-`.
const OWNED: &[&str] = &[
    "x-user-id",
    "x-user-email",
    "x-user-roles",
    "x-session-role",
    "x-authflow-jwt",
    "x-authflow-fingerprint",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-prefix",
    "x-real-ip",
    "x-request-id",
    "forwarded",
    "x-original-uri",
    "x-auth-request-user",
    "true-client-ip",
    "cf-connecting-ip",
    "remote-user",
    "x-webauth-user",
    "x-http-method-override",
    "x-ms-client-principal-name",
    "oidc-claim-email",
    "x-tenant",
];
/// Framing headers, owned only when spelled with at least one `_`.
const FRAMING: &[&str] = &["transfer-encoding", "content-length"];
/// Names that pass, some a letter away from an owned one.
const PASSING: &[&str] = &[
    "accept",
    "user-agent",
    "accept-language",
    "x-api-key",
    "if-none-match",
    "x-user",
    "x-userid",
    "x-sessions",
    "x-forwarded",
    "forwarded-by",
    "x-tenants",
    "dnt",
];
const SESSION_COOKIE: &str = "sid";
/// Cookie pairs: the session and flow cookies (dropped), and others (kept).
const COOKIE_PAIRS: &[&str] = &[
    "sid=secret",
    " sid = spaced",
    "authflow_mfa=m",
    "__Host-authflow_link=l",
    "authflow_sso_0123456789ab=s",
    "SID=kept",
    "sidecar=1",
    "authflow_ssox=kept",
    "a=1",
    " theme=dark ",
    "",
    "flag",
];

/// One spelling of `name`: each `-` maybe `_` (at least one when `force_underscore`), each
/// letter in either case.
fn spelling(name: &'static str, force_underscore: bool) -> impl Strategy<Value = String> {
    let n = name.len();
    (
        prop::collection::vec(any::<bool>(), n),
        prop::collection::vec(any::<bool>(), n),
    )
        .prop_map(move |(under, upper)| {
            let dashes: Vec<usize> = name.match_indices('-').map(|(i, _)| i).collect();
            let mut out = String::with_capacity(n);
            for (i, c) in name.chars().enumerate() {
                let c = if c == '-' && (under[i] || (force_underscore && dashes[0] == i)) {
                    '_'
                } else {
                    c
                };
                out.push(if upper[i] { c.to_ascii_uppercase() } else { c });
            }
            out
        })
}

#[derive(Debug, Clone)]
enum Sent {
    Owned(String, String),
    Passing(String, String),
    Cookie(String, String),
}

fn header() -> impl Strategy<Value = Sent> {
    let value = "[a-zA-Z0-9 ,./=]{0,6}";
    let owned = prop::sample::select(OWNED).prop_flat_map(|n| spelling(n, false));
    let framing = prop::sample::select(FRAMING).prop_flat_map(|n| spelling(n, true));
    let passing = prop::sample::select(PASSING).prop_flat_map(|n| spelling(n, false));
    let cookie_name = prop::sample::select(&["cookie", "Cookie", "COOKIE"][..]);
    let cookie = prop::collection::vec(prop::sample::select(COOKIE_PAIRS), 0..5)
        .prop_map(|pairs| pairs.join(";"));
    prop_oneof![
        (owned, value).prop_map(|(n, v)| Sent::Owned(n, v)),
        (framing, value).prop_map(|(n, v)| Sent::Owned(n, v)),
        (passing.clone(), value).prop_map(|(n, v)| Sent::Passing(n, v)),
        (passing, value).prop_map(|(n, v)| Sent::Passing(n, v)),
        (cookie_name, cookie).prop_map(|(n, v)| Sent::Cookie(n.to_owned(), v)),
    ]
}

/// The headers as the upstream gets them: name as spelled, value.
fn wire(req: &RequestHeader) -> Vec<(String, String)> {
    req.case_header_iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n.as_slice()).into_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn dropped_cookie(name: &str) -> bool {
    name == SESSION_COOKIE
        || ["authflow_mfa", "__Host-authflow_link"].contains(&name)
        || name.starts_with("authflow_sso_")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn owned_headers_and_session_cookies_go_everything_else_passes_in_order(
        sent in prop::collection::vec(header(), 0..14),
        strip_cookies in any::<bool>(),
    ) {
        let mut req = RequestHeader::build("GET", b"/", None).expect("request");
        for h in &sent {
            let (Sent::Owned(n, v) | Sent::Passing(n, v) | Sent::Cookie(n, v)) = h;
            req.append_header(n.clone(), v.as_str()).expect("header");
        }
        let owned: Vec<String> = sent
            .iter()
            .filter_map(|h| match h {
                Sent::Owned(n, _) => Some(n.to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        let before = wire(&req);
        let extra = ["x-tenant".to_owned()];
        let cookie = strip_cookies.then_some(SESSION_COOKIE);
        headers::strip_for_upstream(&mut req, &extra, &[], cookie).expect("strip");
        let after = wire(&req);

        // Nothing owned is left, in any spelling.
        for (n, _) in &after {
            let lower = n.to_ascii_lowercase();
            prop_assert!(!owned.contains(&lower), "{} passed", n);
            let folded = lower.replace('_', "-");
            prop_assert!(!OWNED.contains(&folded.as_str()), "{} passed", n);
            prop_assert!(
                !(lower.contains('_') && FRAMING.contains(&folded.as_str())),
                "{} passed", n
            );
        }
        // Every other header, as it was, in order, duplicates included.
        let is_cookie = |n: &str| n.eq_ignore_ascii_case("cookie");
        let want: Vec<_> = before
            .iter()
            .filter(|(n, _)| !owned.contains(&n.to_ascii_lowercase()))
            .filter(|(n, _)| !(strip_cookies && is_cookie(n)))
            .cloned()
            .collect();
        let got: Vec<_> = after
            .iter()
            .filter(|(n, _)| !(strip_cookies && is_cookie(n)))
            .cloned()
            .collect();
        prop_assert_eq!(got, want);
        // Cookies: every pair but the session and flow cookies, in order, in one header.
        if strip_cookies {
            let kept: Vec<String> = before
                .iter()
                .filter(|(n, _)| is_cookie(n))
                .flat_map(|(_, v)| v.split(';').map(|p| p.trim().to_owned()).collect::<Vec<_>>())
                .filter(|p| !p.is_empty())
                .filter(|p| !dropped_cookie(p.split_once('=').map_or(p.as_str(), |(k, _)| k).trim()))
                .collect();
            let cookies: Vec<_> = after.iter().filter(|(n, _)| is_cookie(n)).collect();
            if kept.is_empty() {
                prop_assert!(cookies.is_empty(), "{:?}", cookies);
            } else {
                prop_assert_eq!(cookies.len(), 1);
                prop_assert_eq!(&cookies[0].1, &kept.join("; "));
            }
        }
    }
}
