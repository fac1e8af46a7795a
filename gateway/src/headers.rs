//! Headers the gateway owns: what it strips from clients and what it adds for upstreams.

use pingora::http::RequestHeader;

/// Header-name prefixes the gateway owns: identities (`X-User-Id`, `X-User-Email`,
/// `X-User-Role`...), session data and its own internal headers. Never passed from a client.
const OWNED_PREFIXES: [&str; 3] = ["x-user-", "x-session-", "x-authflow-"];
/// Headers that describe the client or the original request. Only the gateway may set them
/// (it sets `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Real-IP` itself),
/// so an upstream that trusts them cannot be lied to.
const FORWARDING_HEADERS: [&str; 7] = [
    "forwarded",
    "x-real-ip",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-forwarded-port",
    "x-forwarded-prefix",
];

/// Whether a client header named `name` (lower case) must not reach an upstream. `_` counts
/// as `-`: CGI, WSGI and PHP map both `X-User-Id` and `X_User_Id` to `HTTP_X_USER_ID`.
/// Runs for every header of every request, so it compares in place, without allocating.
pub fn is_owned(name: &str, extra: &[String]) -> bool {
    OWNED_PREFIXES.iter().any(|p| starts_with_folded(name, p))
        || FORWARDING_HEADERS.iter().any(|h| eq_folded(name, h))
        || extra.iter().any(|h| eq_folded(name, h))
}

/// `name` starts with `prefix` once its `_` are read as `-`.
fn starts_with_folded(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(a, b)| (if a == b'_' { b'-' } else { a }) == b)
}

fn eq_folded(name: &str, target: &str) -> bool {
    name.len() == target.len() && starts_with_folded(name, target)
}

/// Removes every header the gateway owns and every header in `extra` (lower-case names,
/// `_` folded to `-`), whatever the spelling.
pub fn strip_identity(req: &mut RequestHeader, extra: &[String]) {
    let doomed: Vec<String> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| is_owned(k, extra))
        .map(str::to_owned)
        .collect();
    for name in doomed {
        req.remove_header(&name);
    }
}

/// Removes the session cookie from every `Cookie` header, dropping headers left empty.
pub fn strip_session_cookie(req: &mut RequestHeader, cookie_name: &str) -> pingora::Result<()> {
    let kept: Vec<String> = req
        .headers
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| authflow_shared::cookie::without(v, cookie_name))
        .collect();
    req.remove_header("cookie");
    if !kept.is_empty() {
        req.insert_header("cookie", kept.join("; "))?;
    }
    Ok(())
}

/// The client's `X-Request-Id` if it is well formed (1 to 128 of `[A-Za-z0-9._-]`), else a
/// fresh UUID. Propagating lets a trace span the load balancer, the gateway and upstreams.
pub fn request_id(incoming: Option<&[u8]>) -> String {
    match incoming {
        Some(v)
            if (1..=128).contains(&v.len())
                && v.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b)) =>
        {
            String::from_utf8_lossy(v).into_owned()
        }
        _ => uuid::Uuid::new_v4().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).expect("req");
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).expect("header");
        }
        r
    }

    #[test]
    fn identity_headers_are_stripped_in_any_case() {
        let mut r = req(&[
            ("X-User-Id", "admin"),
            ("x-user-email", "a@b"),
            ("X-Session-Role", "root"),
            ("X-Authflow-Fingerprint", "f"),
            ("X-Tenant", "t"),
            ("X_Tenant", "t"),
            ("X_User_Id", "admin"),
            ("x_user-EMAIL", "root@evil"),
            ("X-User-Role", "admin"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("X-Forwarded-Host", "evil"),
            ("X_Forwarded_Port", "1"),
            ("X-Forwarded-Prefix", "/x"),
            ("Accept", "*/*"),
        ]);
        strip_identity(&mut r, &["x-tenant".into()]);
        let left: Vec<_> = r.headers.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn session_cookie_is_removed_others_kept() {
        let mut r = req(&[("cookie", "a=1; sid=secret"), ("cookie", "sid=x")]);
        strip_session_cookie(&mut r, "sid").expect("strip");
        assert_eq!(r.headers.get_all("cookie").iter().count(), 1);
        assert_eq!(
            r.headers.get("cookie").map(|v| v.as_bytes()),
            Some(&b"a=1"[..])
        );
        let mut r = req(&[("cookie", "sid=x")]);
        strip_session_cookie(&mut r, "sid").expect("strip");
        assert!(r.headers.get("cookie").is_none());
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_eq!(request_id(None).len(), 36);
        assert_ne!(request_id(Some(b"bad id\n")), "bad id\n");
        assert_eq!(request_id(Some(&[b'a'; 129])).len(), 36);
    }
}
