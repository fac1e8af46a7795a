//! Headers the gateway owns: what it strips from clients and what it adds for upstreams.

use pingora::http::{RequestHeader, ResponseHeader};

/// Header-name prefixes the gateway owns: identities (`X-User-Id`, `X-User-Email`,
/// `X-User-Role`...), session data and its own internal headers. Never passed from a client,
/// whatever a route says.
const OWNED_PREFIXES: [&str; 3] = ["x-user-", "x-session-", "x-authflow-"];
/// Headers the gateway sets itself on every forwarded request. Never passed from a client.
const SET_BY_GATEWAY: [&str; 6] = [
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-real-ip",
    "x-request-id",
    "forwarded",
];
/// Prefixes of headers that describe the client, the original request or another auth proxy's
/// verdict (`X-Forwarded-*`, nginx's `X-Original-URI`, oauth2-proxy's `X-Auth-Request-*`):
/// stripped unless a route passes one (`pass_headers`), so an upstream that trusts them cannot
/// be lied to.
/// Also the verdicts other identity proxies and load balancers hand their upstreams (Pomerium,
/// Cloudflare Access, AWS ALB, Azure App Service, IAP, authentik, mod_auth_openidc) and
/// client-certificate verdicts, which an upstream built for one of them would trust.
const DESCRIBING_PREFIXES: [&str; 13] = [
    "x-forwarded-",
    "x-original-",
    "x-auth-request-",
    "x-pomerium-",
    "cf-access-",
    "x-amzn-oidc-",
    "x-ms-client-principal",
    "x-goog-authenticated-",
    "x-authentik-",
    "oidc-claim-",
    "x-ssl-client-",
    "ssl-client-",
    "x-authenticated-",
];
/// Single headers of the same kind: client addresses set by CDNs and proxies, rewritten URLs,
/// schemes, identities set by other auth proxies (Authelia's `Remote-User`, Grafana's
/// `X-WEBAUTH-USER`, Kong's `X-Consumer-*`), client certificates, and method overrides that
/// change what a framework routes.
const DESCRIBING_HEADERS: [&str; 41] = [
    "x-rewrite-url",
    "x-envoy-original-path",
    "x-envoy-external-address",
    "x-host",
    "x-scheme",
    "x-url-scheme",
    "front-end-https",
    "x-https",
    "true-client-ip",
    "cf-connecting-ip",
    "cf-connecting-ipv6",
    "fastly-client-ip",
    "client-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "x-originating-ip",
    "x-remote-ip",
    "x-remote-addr",
    "x-proxyuser-ip",
    "x-azure-clientip",
    "remote-user",
    "remote-groups",
    "remote-email",
    "remote-name",
    "x-remote-user",
    "x-remote-group",
    "x-webauth-user",
    "x-webauth-email",
    "x-auth-user",
    "auth-user",
    "x-consumer-username",
    "x-consumer-id",
    "x-consumer-custom-id",
    "x-credential-identifier",
    "x-credential-username",
    "x-client-cert",
    "x-client-verify",
    "x-client-dn",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
/// Framing and routing headers: a client's `Transfer_Encoding` or `Content_Length` spelled
/// with `_` is not framing to the gateway but may be to a CGI-style upstream (nginx drops
/// headers with `_` for this reason), so such a spelling never passes.
const FRAMING_HEADERS: [&str; 5] = [
    "transfer-encoding",
    "content-length",
    "host",
    "connection",
    "upgrade",
];

/// Whether a client header named `name` (lower case) must not reach an upstream: the gateway
/// owns it, or it describes the request and the route does not `keep` it, or it is in `extra`
/// (`[identity] strip_headers`). `_` counts as `-`: CGI, WSGI and PHP map both `X-User-Id` and
/// `X_User_Id` to `HTTP_X_USER_ID`. Runs for every header of every request, so it compares in
/// place, without allocating.
pub fn is_owned(name: &str, extra: &[String], keep: &[String]) -> bool {
    if !may_pass(name) || extra.iter().any(|h| eq_folded(name, h)) {
        return true;
    }
    if name.contains('_') && FRAMING_HEADERS.iter().any(|h| eq_folded(name, h)) {
        return true;
    }
    let describing = DESCRIBING_PREFIXES
        .iter()
        .any(|p| starts_with_folded(name, p))
        || DESCRIBING_HEADERS.iter().any(|h| eq_folded(name, h));
    describing && !keep.iter().any(|h| eq_folded(name, h))
}

/// Whether a route may pass the client's `name` (lower case) at all: not an identity or
/// gateway-internal header, not one the gateway sets itself.
pub fn may_pass(name: &str) -> bool {
    !(OWNED_PREFIXES.iter().any(|p| starts_with_folded(name, p))
        || SET_BY_GATEWAY.iter().any(|h| eq_folded(name, h)))
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

/// Removes every header [`is_owned`] names, whatever the spelling.
pub fn strip_identity(req: &mut RequestHeader, extra: &[String], keep: &[String]) {
    // Without cookies to take out, nothing is inserted, so nothing can fail.
    let _ = strip_for_upstream(req, extra, keep, None);
}

/// Removes the session cookie, and the auth service's flow cookies (a sign-in in progress:
/// [`authflow_shared::cookie::is_flow_cookie`]), from every `Cookie` header, dropping
/// headers left empty.
pub fn strip_session_cookie(req: &mut RequestHeader, cookie_name: &str) -> pingora::Result<()> {
    let cookies = req.headers.get_all(http::header::COOKIE).iter();
    let kept = kept_cookies(cookies, cookie_name);
    replace_cookies(req, kept)
}

/// The client's headers as an upstream gets them, in one walk over them: every header
/// [`is_owned`] names is removed whatever its spelling, and with `session_cookie` (every route
/// but the auth service's) the session cookie and the auth service's flow cookies
/// ([`authflow_shared::cookie::is_flow_cookie`]) are taken out of `Cookie`: the pairs left, from
/// every `Cookie` header in order, become one header where the first was (none when nothing is
/// left). Everything else stays as the client sent it (name case, value), in order,
/// duplicates included.
///
/// The hot path of every forwarded request: names are judged once per distinct name, in
/// place, and nothing is allocated when nothing changes. Removing a name from the header map
/// moves its last name into the hole (`swap_remove`), so what follows the first change is
/// taken off from the end and put back in order, instead of removing names in the middle.
pub fn strip_for_upstream(
    req: &mut RequestHeader,
    extra: &[String],
    keep: &[String],
    session_cookie: Option<&str>,
) -> pingora::Result<()> {
    // The walk: the first header (by position among distinct names) that changes, and the
    // cookie pairs kept.
    let mut first_change: Option<usize> = None;
    let mut cookies: Option<Option<String>> = None;
    let mut cookie_values = 0usize;
    let mut index = 0usize;
    let mut last: Option<(&http::HeaderName, bool)> = None;
    for (name, value) in req.headers.iter() {
        let owned = match last {
            Some((prev, owned)) if prev == name => owned,
            _ => {
                index += 1;
                let cookie = session_cookie.is_some() && name == http::header::COOKIE;
                !cookie && is_owned(name.as_str(), extra, keep)
            }
        };
        last = Some((name, owned));
        if owned {
            first_change.get_or_insert(index - 1);
            continue;
        }
        if let (Some(cookie_name), true) = (session_cookie, name == http::header::COOKIE) {
            cookie_values += 1;
            let kept = cookies.get_or_insert(None);
            if let Ok(v) = value.to_str() {
                push_kept_cookies(kept, v, cookie_name);
            }
            // The cookies change unless they are one header that stays as it was.
            let same =
                cookie_values == 1 && value.to_str().is_ok_and(|v| kept.as_deref() == Some(v));
            if !same {
                first_change.get_or_insert(index - 1);
            }
        }
    }
    let Some(first) = first_change else {
        return Ok(());
    };
    // The tail from the first change on, as it must be: (name as sent, value).
    let mut tail = Vec::new();
    let mut names: Vec<http::HeaderName> = Vec::new();
    let mut cookie_done = false;
    let mut cases = req.case_header_iter();
    let mut index = 0usize;
    let mut prev: Option<&http::HeaderName> = None;
    let mut owned = false;
    for (name, value) in req.headers.iter() {
        let case = cases.next().map(|(c, _)| c.clone());
        if prev != Some(name) {
            index += 1;
            prev = Some(name);
            if index > first {
                names.push(name.clone());
                let cookie = session_cookie.is_some() && name == http::header::COOKIE;
                owned = !cookie && is_owned(name.as_str(), extra, keep);
            }
        }
        if index <= first {
            continue;
        }
        if session_cookie.is_some() && name == http::header::COOKIE {
            if !cookie_done {
                cookie_done = true;
                if let Some(Some(kept)) = cookies.take() {
                    let v = http::HeaderValue::try_from(kept).map_err(|e| {
                        pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "cookie", e)
                    })?;
                    tail.push((None, http::header::COOKIE, v));
                }
            }
            continue;
        }
        if owned {
            continue;
        }
        tail.push((case, name.clone(), value.clone()));
    }
    drop(cases);
    // One name removed whole with only one name after it, left as it was (a request ending
    // in `Cookie: <session>`, `User-Agent`): removing it moves that last name into its
    // place, and the order holds without taking anything off.
    let cookie = |n: &http::HeaderName| session_cookie.is_some() && n == http::header::COOKIE;
    if names.len() == 2
        && !cookie(&names[1])
        && !tail.is_empty()
        && tail.iter().all(|(_, n, _)| *n == names[1])
    {
        req.remove_header(&names[0]);
        return Ok(());
    }
    // Taken off from the end (each the map's last name: nothing moves), then put back.
    for name in names.iter().rev() {
        req.remove_header(name);
    }
    for (case, name, value) in tail {
        match case {
            Some(case) => req.append_header(case, value)?,
            None if name == http::header::COOKIE => req.append_header("cookie", value)?,
            None => req.append_header(name, value)?,
        };
    }
    Ok(())
}

/// The pairs of `headers` that are neither the session cookie `cookie_name` nor a flow
/// cookie, joined with `; ` (`None` when none is left).
fn kept_cookies<'a>(
    headers: impl Iterator<Item = &'a http::HeaderValue>,
    cookie_name: &str,
) -> Option<String> {
    let mut kept = None;
    for v in headers.filter_map(|v| v.to_str().ok()) {
        push_kept_cookies(&mut kept, v, cookie_name);
    }
    kept
}

/// Appends the pairs of one `Cookie` header `value` that are neither `cookie_name` nor a
/// flow cookie to `kept`, trimmed, empty ones skipped, joined with `; `.
fn push_kept_cookies(kept: &mut Option<String>, value: &str, cookie_name: &str) {
    for pair in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let name = pair.split_once('=').map_or(pair, |(k, _)| k).trim();
        if name == cookie_name || authflow_shared::cookie::is_flow_cookie(name) {
            continue;
        }
        match kept {
            Some(joined) => {
                joined.push_str("; ");
                joined.push_str(pair);
            }
            None => {
                let mut joined = String::with_capacity(value.len());
                joined.push_str(pair);
                *kept = Some(joined);
            }
        }
    }
}

/// Every `Cookie` header replaced by `kept` (none when `None`).
fn replace_cookies(req: &mut RequestHeader, kept: Option<String>) -> pingora::Result<()> {
    req.remove_header(&http::header::COOKIE);
    if let Some(kept) = kept {
        req.insert_header("cookie", kept)?;
    }
    Ok(())
}

/// Removes an upstream's `Set-Cookie` for the session cookie (any case, with or without a
/// `__Host-`/`__Secure-` prefix): only the auth service sets it, so an upstream cannot plant a
/// session (fixation) or shadow the real cookie. Returns how many were dropped.
pub fn drop_session_set_cookies(resp: &mut ResponseHeader, cookie_name: &str) -> usize {
    let session = cookie_base(cookie_name);
    let total = resp.headers.get_all("set-cookie").iter().count();
    if total == 0 {
        return 0;
    }
    let kept: Vec<http::HeaderValue> = resp
        .headers
        .get_all("set-cookie")
        .iter()
        .filter(|v| {
            // `=sid=x` (no name) is read by some clients as a cookie named `sid`.
            let text = v.as_bytes().trim_ascii_start();
            let text = text.strip_prefix(b"=").unwrap_or(text);
            let name = text.split(|&b| b == b'=').next().unwrap_or_default();
            !cookie_base(&String::from_utf8_lossy(name)).eq_ignore_ascii_case(session)
        })
        .cloned()
        .collect();
    let dropped = total - kept.len();
    if dropped > 0 {
        resp.remove_header("set-cookie");
        for v in kept {
            // Appending a value that was already a valid header value cannot fail.
            let _ = resp.append_header("set-cookie", v);
        }
    }
    dropped
}

/// A cookie name without surrounding space and without its `__Host-`/`__Secure-` prefix
/// (browsers compare the prefixes case-insensitively).
fn cookie_base(name: &str) -> &str {
    let name = name.trim();
    match authflow_shared::cookie::secure_prefix(name) {
        Some(prefix) if name.len() > prefix.len() => &name[prefix.len()..],
        _ => name,
    }
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
            ("X-User-Roles", "admin"),
            ("X_User_Roles", "admin"),
            ("x-USER_roles", "admin"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("X-Forwarded-Host", "evil"),
            ("X_Forwarded_Port", "1"),
            ("X-Forwarded-Prefix", "/x"),
            ("Accept", "*/*"),
        ]);
        strip_identity(&mut r, &["x-tenant".into()], &[]);
        let left: Vec<_> = r.headers.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, vec!["accept"]);
    }

    #[test]
    fn look_alike_forwarding_headers_are_stripped_unless_the_route_passes_one() {
        let sent = [
            ("X-Forwarded-Uri", "/public"),
            ("X-Forwarded-Method", "GET"),
            ("X-Forwarded-Server", "evil"),
            ("X-Original-URI", "/public"),
            ("X-Original-URL", "/public"),
            ("X-Rewrite-URL", "/public"),
            ("True-Client-IP", "1.2.3.4"),
            ("CF-Connecting-IP", "1.2.3.4"),
            ("X-Client-IP", "1.2.3.4"),
            ("X-Auth-Request-User", "admin"),
            ("X-Auth-Request-Email", "root@evil"),
            ("Remote-User", "admin"),
            ("Remote_Groups", "admins"),
            ("X-HTTP-Method-Override", "DELETE"),
            ("X-WEBAUTH-USER", "admin"),
            ("X-Pomerium-Claim-Email", "root@evil"),
            ("Cf-Access-Authenticated-User-Email", "root@evil"),
            ("X-Amzn-Oidc-Identity", "admin"),
            ("X-MS-CLIENT-PRINCIPAL-NAME", "admin"),
            ("Oidc_Claim_Email", "root@evil"),
            ("X-Ssl-Client-Verify", "SUCCESS"),
            ("X-Authenticated-Userid", "admin"),
            ("Client-IP", "1.2.3.4"),
            ("X-Scheme", "https"),
            ("Transfer_Encoding", "chunked"),
            ("Content_Length", "5"),
            ("Accept", "*/*"),
            ("Content-Length", "0"),
        ];
        let mut r = req(&sent);
        strip_identity(&mut r, &[], &[]);
        let mut left: Vec<_> = r.headers.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "content-length"]);
        let mut r = req(&sent);
        let keep = ["true-client-ip".to_owned(), "x-user-id".to_owned()];
        strip_identity(&mut r, &[], &keep);
        let mut left: Vec<_> = r.headers.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(left, vec!["accept", "content-length", "true-client-ip"]);
    }

    #[test]
    fn identity_and_gateway_set_headers_may_never_be_passed() {
        for name in [
            "x-user-id",
            "x_user_email",
            "x-forwarded-for",
            "x-request-id",
        ] {
            assert!(!may_pass(name), "{name}");
        }
        for name in ["true-client-ip", "x-forwarded-uri", "remote-user"] {
            assert!(may_pass(name), "{name}");
        }
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
    fn the_auth_services_flow_cookies_never_reach_an_upstream() {
        let mut r = req(&[(
            "cookie",
            "a=1; authflow_sso_affe72be8da5=s; __Host-authflow_link=l; authflow_mfa=m; authflow_ssox=kept",
        )]);
        strip_session_cookie(&mut r, "sid").expect("strip");
        assert_eq!(
            r.headers.get("cookie").map(|v| v.as_bytes()),
            Some(&b"a=1; authflow_ssox=kept"[..])
        );
    }

    #[test]
    fn an_upstreams_set_cookie_for_the_session_cookie_is_dropped_in_any_spelling() {
        let mut resp = ResponseHeader::build(200, None).expect("resp");
        for v in [
            "sid=planted; Path=/",
            "SID=planted",
            "__Host-sid=planted; Secure; Path=/",
            "__secure-Sid=planted; Secure",
            " sid =x",
            "=sid=x",
            "theme=dark",
            "sidecar=1",
        ] {
            resp.append_header("set-cookie", v).expect("header");
        }
        assert_eq!(drop_session_set_cookies(&mut resp, "__Host-sid"), 6);
        let left: Vec<_> = resp.headers.get_all("set-cookie").iter().collect();
        assert_eq!(left, vec!["theme=dark", "sidecar=1"]);
    }

    #[test]
    fn request_ids() {
        assert_eq!(request_id(Some(b"abc-123")), "abc-123");
        assert_eq!(request_id(None).len(), 36);
        assert_ne!(request_id(Some(b"bad id\n")), "bad id\n");
        assert_eq!(request_id(Some(&[b'a'; 129])).len(), 36);
    }
}
