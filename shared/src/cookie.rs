//! The session cookie: finding it in `Cookie` headers, removing it before a request goes
//! upstream, and writing the `Set-Cookie` that sets or clears it.

use std::time::Duration;

/// What the `Cookie` headers hold under the session cookie's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieLookup<'a> {
    Missing,
    One(&'a str),
    /// Several cookies of that name: ambiguous, so treated as unauthenticated.
    Many,
}

/// Finds the cookie `name` across all `Cookie` header values.
pub fn find<'a>(cookie_headers: impl IntoIterator<Item = &'a str>, name: &str) -> CookieLookup<'a> {
    let mut found = CookieLookup::Missing;
    for header in cookie_headers {
        for pair in header.split(';') {
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            if k.trim() == name {
                found = match found {
                    CookieLookup::Missing => CookieLookup::One(v.trim().trim_matches('"')),
                    _ => CookieLookup::Many,
                };
            }
        }
    }
    found
}

/// Every value of the cookie `name` across all `Cookie` headers, in order (a logout ends
/// each session presented, not only an unambiguous one).
pub fn find_all<'a>(cookie_headers: impl IntoIterator<Item = &'a str>, name: &str) -> Vec<&'a str> {
    cookie_headers
        .into_iter()
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| k.trim() == name)
        .map(|(_, v)| v.trim().trim_matches('"'))
        .collect()
}

/// The `Cookie` header value with every cookie called `name` removed; `None` when nothing is left.
pub fn without(cookie_header: &str, name: &str) -> Option<String> {
    without_matching(cookie_header, |n| n == name)
}

/// The `Cookie` header value without the cookies whose name `drop` picks; `None` when
/// nothing is left.
pub fn without_matching(cookie_header: &str, drop: impl Fn(&str) -> bool) -> Option<String> {
    let kept: Vec<&str> = cookie_header
        .split(';')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !drop(pair.split_once('=').map_or(pair.trim(), |(k, _)| k.trim())))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
}

/// The cookie of an account link waiting for the password.
pub const LINK_COOKIE: &str = "authflow_link";
/// The cookie of a sign-in waiting for its second factor.
pub const MFA_COOKIE: &str = "authflow_mfa";
/// The auth service's short-lived flow cookies with fixed names.
pub const FLOW_COOKIES: [&str; 2] = [LINK_COOKIE, MFA_COOKIE];
/// The prefix of a provider sign-in's cookie (`authflow_sso_<12 hex>`).
pub const SSO_COOKIE_PREFIX: &str = "authflow_sso_";

/// Whether `name` (with or without a `__Host-`/`__Secure-` prefix) is one of the auth
/// service's flow cookies: bearer secrets of a sign-in in progress, which the gateway never
/// passes to any other upstream, as it never passes the session cookie.
pub fn is_flow_cookie(name: &str) -> bool {
    let base = name
        .strip_prefix("__Host-")
        .or_else(|| name.strip_prefix("__Secure-"))
        .unwrap_or(name);
    FLOW_COOKIES.contains(&base) || base.starts_with(SSO_COOKIE_PREFIX)
}

/// How the session cookie is written. The same attributes serve to set and to clear it,
/// because a browser only replaces a cookie whose name, path and flags match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieSpec {
    pub name: String,
    pub secure: bool,
}

impl CookieSpec {
    /// `Set-Cookie` for a fresh session: `HttpOnly; SameSite=Lax; Path=/`, `Secure` unless
    /// the deployment is plain-HTTP development.
    pub fn set(&self, token: &str, max_age: Duration) -> String {
        format!(
            "{}={}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
            self.name,
            token,
            max_age.as_secs(),
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` that makes the browser drop the session cookie.
    pub fn clear(&self) -> String {
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{}",
            self.name,
            if self.secure { "; Secure" } else { "" }
        )
    }
}

/// A cookie name is a token (RFC 6265): no separators, controls or spaces.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
}

/// The name prefixes a browser only accepts on a `Secure` cookie (RFC 6265bis §4.1.3):
/// `__Host-` (also bound to the host, `Path=/`) and `__Secure-`. Browsers match them
/// without regard to case (`__host-sid` is held to the same rules), so this does too.
/// Returns the prefix as it is usually spelt, or `None`.
pub fn secure_prefix(name: &str) -> Option<&'static str> {
    ["__Host-", "__Secure-"].into_iter().find(|p| {
        name.get(..p.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_prefixes_match_in_any_case() {
        for (name, want) in [
            ("__Host-sid", Some("__Host-")),
            ("__host-sid", Some("__Host-")),
            ("__HOST-sid", Some("__Host-")),
            ("__Secure-sid", Some("__Secure-")),
            ("__secure-sid", Some("__Secure-")),
            ("__SeCuRe-", Some("__Secure-")),
            ("sid", None),
            ("__Hostsid", None),
            ("_Host-sid", None),
            ("__Hos", None),
            ("é__Host-", None),
        ] {
            assert_eq!(secure_prefix(name), want, "{name}");
        }
    }

    #[test]
    fn finds_one_many_or_none() {
        assert_eq!(find(["a=1; sid=xyz; b=2"], "sid"), CookieLookup::One("xyz"));
        assert_eq!(find(["a=1", "sid=x"], "sid"), CookieLookup::One("x"));
        assert_eq!(find(["sid=x; sid=y"], "sid"), CookieLookup::Many);
        assert_eq!(find(["sid=x", "sid=y"], "sid"), CookieLookup::Many);
        assert_eq!(find(["xsid=x"], "sid"), CookieLookup::Missing);
        assert_eq!(find(Vec::<&str>::new(), "sid"), CookieLookup::Missing);
    }

    #[test]
    fn strips_only_the_named_cookie() {
        assert_eq!(
            without("a=1; sid=x; b=2", "sid").as_deref(),
            Some("a=1; b=2")
        );
        assert_eq!(without("sid=x", "sid"), None);
        assert_eq!(without("sid=x;sid=y; c=3", "sid").as_deref(), Some("c=3"));
    }

    #[test]
    fn set_and_clear_share_attributes() {
        let spec = CookieSpec {
            name: "__Host-session".into(),
            secure: true,
        };
        let set = spec.set("tok", Duration::from_secs(60));
        assert_eq!(
            set,
            "__Host-session=tok; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        assert_eq!(
            spec.clear(),
            "__Host-session=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax; Secure"
        );
        let dev = CookieSpec {
            name: "sid".into(),
            secure: false,
        };
        assert!(!dev.clear().contains("Secure"));
    }

    #[test]
    fn cookie_names() {
        assert!(valid_name("__Host-session"));
        assert!(!valid_name("a b"));
        assert!(!valid_name("a;b"));
        assert!(!valid_name(""));
    }
}
