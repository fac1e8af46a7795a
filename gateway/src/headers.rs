//! Headers the gateway owns: what it strips from clients and what it adds for upstreams.

use pingora::http::RequestHeader;

/// Client headers that claim an identity; never passed upstream from a client.
const IDENTITY_HEADERS: [&str; 2] = ["x-user-id", "x-user-email"];
/// Header-name prefixes the gateway owns.
const OWNED_PREFIXES: [&str; 2] = ["x-session-", "x-authflow-"];

/// Removes every identity-claiming header and every header in `extra` (lower-case names).
pub fn strip_identity(req: &mut RequestHeader, extra: &[String]) {
    let doomed: Vec<String> = req
        .headers
        .keys()
        .map(|k| k.as_str())
        .filter(|k| {
            IDENTITY_HEADERS.contains(k)
                || OWNED_PREFIXES.iter().any(|p| k.starts_with(p))
                || extra.iter().any(|e| e == k)
        })
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
