//! The request message's own checks, around routing: a method spelled in upper case, one
//! declared body length, and what a route lets through of `TRACE` and `Upgrade`. Each returns
//! what it found; the request policy in `proxy.rs` decides the answer.

use http::header::{CONTENT_LENGTH, UPGRADE};
use http::HeaderMap;

/// Why a request message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A method with lower-case letters (`get`): methods are case-sensitive, so `get` is not
    /// `GET` to the rate-limit rules, while some upstreams treat it as `GET`.
    MethodCase,
    /// `Content-Length` values that are not one number repeated (RFC 9110 §8.6).
    ContentLength,
    /// `TRACE` (or IIS's `TRACK`) on a route without `allow_trace`.
    Trace,
    /// `Upgrade: websocket` on a route without `websocket = true`.
    Upgrade,
}

impl Refusal {
    /// The status and the `error` of the JSON body.
    pub fn answer(self) -> (u16, &'static str) {
        match self {
            Refusal::MethodCase => (400, "bad_method"),
            Refusal::ContentLength => (400, "bad_content_length"),
            Refusal::Trace => (405, "method_not_allowed"),
            Refusal::Upgrade => (400, "upgrade_not_allowed"),
        }
    }
}

/// Methods are tokens; one with a lower-case letter is refused before any rule looks at it.
pub fn check_method(method: &http::Method) -> Result<(), Refusal> {
    if method.as_str().bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(Refusal::MethodCase);
    }
    Ok(())
}

/// The body length the client declared: `Ok(None)` without `Content-Length`; a list of one
/// value repeated (`20000000, 20000000`, or several headers) is that value; anything else is
/// [`Refusal::ContentLength`].
pub fn declared_length(headers: &HeaderMap) -> Result<Option<u64>, Refusal> {
    let mut found = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        let text = value.to_str().map_err(|_| Refusal::ContentLength)?;
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Refusal::ContentLength);
            }
            let n: u64 = part.parse().map_err(|_| Refusal::ContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(Refusal::ContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Whether `headers` declare their length as a list or in several headers, which the
/// upstream should get as one value.
pub fn length_is_list(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let first = values.next();
    values.next().is_some() || first.is_some_and(|v| v.as_bytes().contains(&b','))
}

/// What the client asked to upgrade to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upgrade {
    None,
    /// `Upgrade: websocket`, alone.
    WebSocket,
    /// Anything else (`h2c`, `TLS/1.0`, a list): never passed on; the request is served as
    /// plain HTTP/1.1, as RFC 9110 §7.8 lets a server do.
    Other,
}

pub fn upgrade(headers: &HeaderMap) -> Upgrade {
    let mut values = headers.get_all(UPGRADE).iter();
    match (values.next(), values.next()) {
        (None, _) => Upgrade::None,
        (Some(v), None) if v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"websocket") => {
            Upgrade::WebSocket
        }
        _ => Upgrade::Other,
    }
}

/// The route's verdict on the method and upgrade, once routed.
pub fn route_admits(
    method: &http::Method,
    upgrade: Upgrade,
    allow_trace: bool,
    websocket: bool,
) -> Result<(), Refusal> {
    // TRACK is IIS's TRACE.
    let trace = *method == http::Method::TRACE || method.as_str() == "TRACK";
    if trace && !allow_trace {
        return Err(Refusal::Trace);
    }
    if upgrade == Upgrade::WebSocket && !websocket {
        return Err(Refusal::Upgrade);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_repeated_length_is_one_length_and_differing_ones_are_refused() {
        let ok = |pairs, n| assert_eq!(declared_length(&headers(pairs)), Ok(n));
        ok(&[], None);
        ok(&[("content-length", "5")], Some(5));
        ok(
            &[("content-length", "20000000, 20000000")],
            Some(20_000_000),
        );
        ok(&[("content-length", "7"), ("content-length", "7")], Some(7));
        for bad in [
            &[("content-length", "5, 6")][..],
            &[("content-length", "5"), ("content-length", "6")],
            &[("content-length", "+5")],
            &[("content-length", "5,")],
            &[("content-length", "0x5")],
            &[("content-length", "99999999999999999999999")],
        ] {
            assert_eq!(
                declared_length(&headers(bad)),
                Err(Refusal::ContentLength),
                "{bad:?}"
            );
        }
        assert!(length_is_list(&headers(&[("content-length", "5, 5")])));
        assert!(!length_is_list(&headers(&[("content-length", "5")])));
    }

    #[test]
    fn only_a_lone_websocket_upgrade_counts_as_one() {
        assert_eq!(upgrade(&headers(&[])), Upgrade::None);
        assert_eq!(
            upgrade(&headers(&[("upgrade", "WebSocket")])),
            Upgrade::WebSocket
        );
        for other in ["h2c", "websocket, h2c", "TLS/1.0"] {
            let h = headers(&[("upgrade", other)]);
            assert_eq!(upgrade(&h), Upgrade::Other, "{other}");
        }
    }

    #[test]
    fn routes_refuse_trace_and_websocket_unless_they_allow_them() {
        let get = http::Method::GET;
        let trace = http::Method::TRACE;
        assert_eq!(
            route_admits(&trace, Upgrade::None, false, false),
            Err(Refusal::Trace)
        );
        assert_eq!(route_admits(&trace, Upgrade::None, true, false), Ok(()));
        let track = http::Method::from_bytes(b"TRACK").expect("token");
        assert_eq!(
            route_admits(&track, Upgrade::None, false, false),
            Err(Refusal::Trace)
        );
        assert_eq!(
            route_admits(&get, Upgrade::WebSocket, false, false),
            Err(Refusal::Upgrade)
        );
        assert_eq!(route_admits(&get, Upgrade::WebSocket, false, true), Ok(()));
        assert_eq!(
            check_method(&http::Method::from_bytes(b"get").expect("token")),
            Err(Refusal::MethodCase)
        );
        assert_eq!(
            check_method(&http::Method::from_bytes(b"PROPFIND").expect("token")),
            Ok(())
        );
    }
}
