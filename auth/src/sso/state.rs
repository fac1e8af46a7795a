//! What a provider sign-in remembers between sending the browser to the provider and the
//! provider sending it back: the `state` it sent, the `nonce` the ID token must carry, the
//! PKCE verifier, where to go afterwards. Kept server-side in the shared store (ten minutes,
//! taken once), keyed by a hash of `state`, and bound to the browser that began: that
//! browser holds a secret in a cookie named after this sign-in, so two tabs signing in at
//! once each find their own, and a callback URL sent to someone else finds nothing (login
//! CSRF).

use super::SsoError;
use authflow_shared::digest::hash_hex;
use authflow_shared::fingerprint;
use authflow_shared::store::ShortLived;
use authflow_shared::token::random_token;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// How long a sign-in may take at the provider.
pub const TTL: Duration = Duration::from_secs(600);

/// One sign-in in flight, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Pending {
    /// The provider it began at: a callback at another provider's URL is a mix-up.
    pub provider: String,
    pub nonce: String,
    pub code_verifier: String,
    /// A local path (checked before it got here).
    pub next: String,
    /// SHA-256 of the browser's cookie secret.
    binding: String,
}

/// A sign-in just begun: what goes into the redirect and the cookie.
pub struct Begun {
    pub state: String,
    pub nonce: String,
    /// The PKCE S256 challenge of the stored verifier.
    pub code_challenge: String,
    /// `Set-Cookie` binding the sign-in to this browser.
    pub cookie: String,
}

/// Where the sign-in cookies live and how they are written.
#[derive(Debug, Clone)]
pub struct CookieRules {
    /// `__Host-` when the session cookie has it (then `Secure` and `Path=/` are required).
    pub prefix: &'static str,
    pub secure: bool,
}

impl CookieRules {
    fn name(&self, state: &str) -> String {
        format!(
            "{}{}{}",
            self.prefix,
            authflow_shared::cookie::SSO_COOKIE_PREFIX,
            &hash_hex(state.as_bytes())[..12]
        )
    }

    fn attributes(&self, max_age: u64) -> String {
        format!(
            "Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    /// `Set-Cookie` for a short-lived flow cookie `name` (with the session cookie's prefix):
    /// a waiting link, a sign-in waiting for its second factor. An empty `value` with
    /// `max_age` 0 drops it.
    pub fn flow_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        format!(
            "{}{name}={value}; {}",
            self.prefix,
            self.attributes(max_age)
        )
    }

    /// The name a flow cookie `name` is sent back under.
    pub fn flow_cookie_name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// `Set-Cookie` that drops the sign-in cookie of `state`.
    pub fn clear(&self, state: &str) -> String {
        format!("{}=; {}", self.name(state), self.attributes(0))
    }

    /// The names of the sign-in cookies in `cookies`, in order.
    pub fn sign_in_cookies<'a>(&self, cookies: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let prefix = format!(
            "{}{}",
            self.prefix,
            authflow_shared::cookie::SSO_COOKIE_PREFIX
        );
        cookies
            .into_iter()
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.trim()))
            .filter(|name| name.starts_with(&prefix))
            .map(str::to_owned)
            .collect()
    }

    /// `Set-Cookie` that drops the sign-in cookie `name`.
    pub fn clear_named(&self, name: &str) -> String {
        format!("{name}=; {}", self.attributes(0))
    }
}

/// Sign-ins one browser may have in flight; beginning another past it drops the others
/// (their sign-ins can no longer finish): every cookie costs the browser's jar and every
/// request's `Cookie` header, and a jar filled with them would push the session cookie out
/// or make every request too large.
pub const MAX_IN_FLIGHT: usize = 8;

fn key(state: &str) -> String {
    format!("sso:{}", hash_hex(state.as_bytes()))
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Begins a sign-in at `provider` that returns to `next`.
pub async fn begin(
    store: &dyn ShortLived,
    rules: &CookieRules,
    provider: &str,
    next: &str,
) -> Result<Begun, SsoError> {
    let state = random_token(32);
    let secret = random_token(32);
    let pending = Pending {
        provider: provider.to_owned(),
        nonce: random_token(32),
        code_verifier: random_token(48),
        next: next.to_owned(),
        binding: hash_hex(secret.as_bytes()),
    };
    let value =
        serde_json::to_string(&pending).map_err(|e| SsoError::Unavailable(e.to_string()))?;
    let stored = store
        .put_new(&key(&state), &value, TTL)
        .await
        .map_err(|e| SsoError::Unavailable(e.to_string()))?;
    if !stored {
        return Err(SsoError::Unavailable("state collision".into()));
    }
    Ok(Begun {
        cookie: format!(
            "{}={secret}; {}",
            rules.name(&state),
            rules.attributes(TTL.as_secs())
        ),
        code_challenge: challenge(&pending.code_verifier),
        nonce: pending.nonce,
        state,
    })
}

/// Finishes the sign-in `state` names, for the browser presenting `cookies`, at `provider`.
/// Nothing is used up unless this browser holds the sign-in's cookie; once it does, the state
/// is gone whatever follows (a callback is never replayed).
pub async fn finish<'a>(
    store: &dyn ShortLived,
    rules: &CookieRules,
    state: Option<&str>,
    cookies: impl IntoIterator<Item = &'a str>,
    provider: &str,
) -> Result<Pending, SsoError> {
    let state = state
        .filter(|s| !s.is_empty() && s.len() <= 128)
        .ok_or(SsoError::State("missing"))?;
    let secret = match authflow_shared::cookie::find(cookies, &rules.name(state)) {
        authflow_shared::cookie::CookieLookup::One(v) => v.to_owned(),
        _ => return Err(SsoError::State("this browser did not begin this sign-in")),
    };
    let value = store
        .take(&key(state))
        .await
        .map_err(|e| SsoError::Unavailable(e.to_string()))?
        .ok_or(SsoError::State("unknown, expired or already used"))?;
    let pending: Pending =
        serde_json::from_str(&value).map_err(|_| SsoError::State("unreadable"))?;
    if !fingerprint::matches(&hash_hex(secret.as_bytes()), &pending.binding) {
        return Err(SsoError::State("this browser did not begin this sign-in"));
    }
    if pending.provider != provider {
        return Err(SsoError::State("begun at another provider"));
    }
    Ok(pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use authflow_shared::store::MemorySessionStore;

    fn rules() -> CookieRules {
        CookieRules {
            prefix: "",
            secure: false,
        }
    }

    fn cookie_pair(set_cookie: &str) -> String {
        set_cookie.split(';').next().unwrap_or("").to_owned()
    }

    #[tokio::test]
    async fn only_the_browser_that_began_finishes_and_only_once() {
        let store = MemorySessionStore::new();
        let a = begin(&store, &rules(), "idp", "/app/")
            .await
            .expect("begin");
        let b = begin(&store, &rules(), "idp", "/b/").await.expect("begin");
        // Another browser (b's cookie) cannot finish a: and a is not used up by trying.
        let other = cookie_pair(&b.cookie);
        let e = finish(&store, &rules(), Some(&a.state), [other.as_str()], "idp").await;
        assert!(matches!(e, Err(SsoError::State(_))));
        let mine = cookie_pair(&a.cookie);
        let p = finish(&store, &rules(), Some(&a.state), [mine.as_str()], "idp")
            .await
            .expect("finish");
        assert_eq!(p.next, "/app/");
        assert_eq!(challenge(&p.code_verifier), a.code_challenge);
        assert_eq!(p.nonce, a.nonce);
        let again = finish(&store, &rules(), Some(&a.state), [mine.as_str()], "idp").await;
        assert!(matches!(again, Err(SsoError::State(_))), "replayed");
        // Two tabs: b still finishes.
        let p = finish(&store, &rules(), Some(&b.state), [other.as_str()], "idp").await;
        assert_eq!(p.expect("b").next, "/b/");
    }

    #[tokio::test]
    async fn a_callback_at_another_provider_is_refused() {
        let store = MemorySessionStore::new();
        let a = begin(&store, &rules(), "idp", "/").await.expect("begin");
        let mine = cookie_pair(&a.cookie);
        let e = finish(&store, &rules(), Some(&a.state), [mine.as_str()], "other").await;
        assert!(matches!(
            e,
            Err(SsoError::State("begun at another provider"))
        ));
    }

    #[test]
    fn the_challenge_is_rfc_7636s() {
        // RFC 7636 appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
