//! The request-target (RFC 9112 §3.2): which form it has, judged on the raw bytes the client
//! sent (Pingora routes a target it cannot classify as `/` and keeps its bytes for the wire);
//! the canonical path and host every later step uses; and what of it goes upstream and into
//! the log.

use crate::canonical::{self, Rejection, TargetForm};
use pingora::http::RequestHeader;

/// What the request-target names, once judged.
pub enum Target {
    /// A resource: its canonical path and host.
    Resource(String, Option<String>),
    /// `OPTIONS *`: the server itself.
    Server,
}

/// The canonical path and host of `req`, or why it has none. The raw target bytes decide the
/// form (Pingora routes a target it cannot classify as `/` and keeps its bytes for the wire).
/// HTTP/1.1 needs exactly one `Host`; an absolute-form target's authority must agree with it;
/// HTTP/2 names the host in its `:authority`; HTTP/1.0 may name none.
pub fn judge(req: &RequestHeader) -> Result<Target, Rejection> {
    if !req.raw_path_is_utf8() {
        return Err(Rejection::BadByte);
    }
    let raw = req.raw_path();
    let form = canonical::target_form(raw, req.method == http::Method::OPTIONS)?;
    if form == TargetForm::Asterisk {
        return Ok(Target::Server);
    }
    let path = canonical::path(req.uri.path())?;
    let authority = match form {
        TargetForm::Absolute => Some(absolute_authority(raw)?),
        _ => req.uri.host(),
    };
    let mut hosts = req.headers.get_all("host").iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(Rejection::MissingHost),
        (Some(v), None) => Some(v.to_str().map_err(|_| Rejection::BadHost)?),
        (None, _) => authority,
    };
    let host = match host {
        Some(h) => Some(canonical::host(h)?),
        None if req.version == http::Version::HTTP_11 => return Err(Rejection::MissingHost),
        None => None,
    };
    if let (Some(named), Some(host)) = (authority, &host) {
        if canonical::host(named)? != *host {
            return Err(Rejection::BadHost);
        }
    }
    Ok(Target::Resource(path, host))
}

/// The authority of an `http(s)://authority/...` target (no userinfo).
fn absolute_authority(raw: &[u8]) -> Result<&str, Rejection> {
    let text = std::str::from_utf8(raw).map_err(|_| Rejection::BadByte)?;
    let rest = text.split_once("://").map_or("", |(_, r)| r);
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.is_empty() || authority.contains('@') {
        return Err(Rejection::BadHost);
    }
    Ok(authority)
}

/// Whether the raw target `raw` is already `path` with `query`: then it is sent as it is.
pub fn is_already(raw: &[u8], path: &str, query: Option<&str>) -> bool {
    match query {
        None => raw == path.as_bytes(),
        Some(q) => {
            raw.len() == path.len() + 1 + q.len()
                && raw.starts_with(path.as_bytes())
                && raw[path.len()] == b'?'
                && raw.ends_with(q.as_bytes())
        }
    }
}

/// What the access log shows of a target: the part before the query, which may carry
/// one-time tokens (`/verify-email?token=...`) that no log may hold.
pub fn without_query(target: &[u8]) -> &[u8] {
    target.split(|&b| b == b'?').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, target: &[u8], host: Option<&str>) -> RequestHeader {
        let mut r = RequestHeader::build(method, target, None).expect("request");
        if let Some(h) = host {
            r.insert_header("host", h).expect("host");
        }
        r
    }

    fn judged(
        method: &str,
        target: &[u8],
        host: Option<&str>,
    ) -> Result<(String, Option<String>), Rejection> {
        match judge(&req(method, target, host))? {
            Target::Resource(path, host) => Ok((path, host)),
            Target::Server => Ok(("*".into(), None)),
        }
    }

    #[test]
    fn the_raw_target_decides_not_the_uri_pingora_made_of_it() {
        for raw in [
            &b"app/secret"[..],
            b"%2Fapp",
            b"x:/app",
            b"*/app",
            b"127.0.0.1:9000",
        ] {
            assert_eq!(
                judged("GET", raw, Some("x")),
                Err(Rejection::TargetForm),
                "{}",
                raw.escape_ascii()
            );
        }
        assert_eq!(judged("OPTIONS", b"*", Some("x")), Ok(("*".into(), None)));
        assert_eq!(
            judged("GET", b"//APP/%78?q=1", Some("X:80")),
            Ok(("/APP/x".into(), Some("x".into())))
        );
    }

    #[test]
    fn an_absolute_target_is_judged_by_its_path_and_must_agree_with_host() {
        assert_eq!(
            judged("GET", b"http://x//pub?a=1", Some("x")),
            Ok(("/pub".into(), Some("x".into())))
        );
        assert_eq!(
            judged("GET", b"http://y/pub", Some("x")),
            Err(Rejection::BadHost)
        );
        assert_eq!(
            judged("GET", b"http://u@x/pub", Some("x")),
            Err(Rejection::BadHost)
        );
    }

    #[test]
    fn what_goes_upstream_and_into_the_log() {
        assert!(is_already(b"/a?q=1", "/a", Some("q=1")));
        assert!(is_already(b"/a", "/a", None));
        assert!(!is_already(b"//a", "/a", None));
        assert!(!is_already(b"http://x/a", "/a", None));
        assert!(!is_already(b"/a?q=2", "/a", Some("q=1")));
        assert_eq!(
            without_query(b"/verify-email?token=secret"),
            b"/verify-email"
        );
    }
}
