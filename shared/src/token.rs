//! Session tokens: a slot tag, a dot, and 32 random bytes from the OS generator in base64url
//! without padding (4 + 1 + 43 characters). The cookie carries the token; Redis only ever sees
//! [`SessionToken::id`], `{tag}:` and the hex SHA-256 of the token.
//!
//! The tag is [`crate::keys::slot_tag`] of the user: four hex digits of a hash of the user id,
//! which reveal nothing about the user. With it the session's keys and the user's keys share
//! a Redis Cluster hash slot, so sign-in and revocation stay single atomic scripts on Cluster,
//! and a lookup still needs nothing but the cookie.

use crate::digest::hash_hex;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;

/// Length of the random part: 32 bytes in unpadded base64url.
const RANDOM_LEN: usize = 43;
/// Length of the slot tag in front of it.
const TAG_LEN: usize = 4;
/// Length of a whole token: tag, dot, random part.
pub const TOKEN_LEN: usize = TAG_LEN + 1 + RANDOM_LEN;

/// A well-formed session token. Constructing one from client input goes through
/// [`SessionToken::parse`], which rejects anything that could not have been minted here, so
/// malformed cookies never reach Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Mints a fresh token for a session of `user_id`, from the OS CSPRNG.
    pub fn for_user(user_id: &str) -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        SessionToken(format!(
            "{}.{}",
            crate::keys::slot_tag(user_id),
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// Accepts exactly a 4-hex-digit tag, a dot and 43 base64url characters that decode to
    /// 32 bytes; `None` otherwise (tokens of schema version 1 had no tag, and are refused).
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != TOKEN_LEN || !value.is_ascii() {
            return None;
        }
        let (tag, rest) = value.split_at(TAG_LEN);
        let random = rest.strip_prefix('.')?;
        let tag_ok = tag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        let random_ok = random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !(tag_ok && random_ok) {
            return None;
        }
        match URL_SAFE_NO_PAD.decode(random) {
            Ok(bytes) if bytes.len() == 32 => Some(SessionToken(value.to_owned())),
            _ => None,
        }
    }

    /// The token as it goes into the cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The store id: `{tag}:` and the hex SHA-256 of the token. Safe to log (shortened, see
    /// [`log_id`]) and to use in Redis keys; the braces make the tag Redis Cluster's hash tag.
    pub fn id(&self) -> String {
        let tag = &self.0[..TAG_LEN];
        format!("{{{tag}}}:{}", hash_hex(self.0.as_bytes()))
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionToken(id={})", log_id(&self.id()))
    }
}

/// A random opaque token of `bytes` bytes (base64url), for one-time links such as password reset.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The handle a person or an operator names a session by (in the session list, to sign one
/// out): 16 hex digits derived from the session id. Neither the token nor its Redis key can
/// be recovered from it, so showing it in a page or a terminal gives nothing away.
pub fn public_handle(id: &str) -> String {
    let mut h = hash_hex(format!("authflow-session-handle:{id}").as_bytes());
    h.truncate(16);
    h
}

/// The tag and the first 12 hex digits of a session id: enough to follow one session through
/// the logs, too few to look it up in Redis. Every log line that names a session uses this.
pub fn log_id(id: &str) -> &str {
    id.get(..7 + 12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn public_handles_are_short_stable_and_not_the_id() {
        let id = SessionToken::for_user("u1").id();
        let h = public_handle(&id);
        assert_eq!(h.len(), 16);
        assert_eq!(h, public_handle(&id));
        assert!(!id.contains(&h));
        assert_ne!(h, public_handle(&SessionToken::for_user("u1").id()));
    }

    #[test]
    fn generated_tokens_carry_the_users_tag_and_are_distinct() {
        let mut seen = HashSet::new();
        let tag = crate::keys::slot_tag("u1");
        for _ in 0..10_000 {
            let t = SessionToken::for_user("u1");
            assert_eq!(t.expose().len(), TOKEN_LEN);
            assert!(t.expose().starts_with(&format!("{tag}.")));
            assert!(SessionToken::parse(t.expose()).is_some());
            assert!(seen.insert(t.expose().to_owned()));
        }
    }

    #[test]
    fn malformed_values_are_rejected() {
        let good = SessionToken::for_user("u").expose().to_owned();
        assert!(SessionToken::parse(&good).is_some());
        assert!(SessionToken::parse("abc").is_none());
        assert!(SessionToken::parse(&"a".repeat(5000)).is_none());
        assert!(
            SessionToken::parse(&good[5..]).is_none(),
            "schema 1 token, no tag"
        );
        assert!(SessionToken::parse(&format!("ABCD{}", &good[4..])).is_none());
        assert!(SessionToken::parse(&format!("{}x{}", &good[..4], &good[5..])).is_none());
        assert!(SessionToken::parse(&format!("{}=", &good[..47])).is_none());
        assert!(SessionToken::parse(&format!("{}+", &good[..47])).is_none());
        assert!(SessionToken::parse(&"é".repeat(24)).is_none());
    }

    #[test]
    fn id_is_tag_and_sha256_hex_of_token_and_debug_hides_token() {
        let t = SessionToken::for_user("u9");
        let tag = crate::keys::slot_tag("u9");
        assert_eq!(
            t.id(),
            format!("{{{tag}}}:{}", hash_hex(t.expose().as_bytes()))
        );
        assert_eq!(t.id().len(), 6 + 1 + 64);
        assert!(!format!("{t:?}").contains(t.expose()));
        assert_eq!(log_id(&t.id()).len(), 19);
    }
}
