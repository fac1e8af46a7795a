//! Session tokens: 32 random bytes from the OS generator, base64url without padding (43
//! characters). The cookie carries the token; Redis only ever sees [`SessionToken::id`], the hex
//! SHA-256 of the token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Length of an encoded token: 32 bytes in unpadded base64url.
pub const TOKEN_LEN: usize = 43;

/// A well-formed session token. Constructing one from client input goes through
/// [`SessionToken::parse`], which rejects anything that could not have been minted here, so
/// malformed cookies never reach Redis.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// Mints a fresh token from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        OsRng.fill_bytes(&mut bytes);
        SessionToken(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts exactly 43 base64url characters that decode to 32 bytes; `None` otherwise.
    pub fn parse(value: &str) -> Option<Self> {
        if value.len() != TOKEN_LEN
            || !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
        match URL_SAFE_NO_PAD.decode(value) {
            Ok(bytes) if bytes.len() == 32 => Some(SessionToken(value.to_owned())),
            _ => None,
        }
    }

    /// The token as it goes into the cookie. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The store id: hex SHA-256 of the token. Safe to log and to use in Redis keys.
    pub fn id(&self) -> String {
        hash_hex(self.0.as_bytes())
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionToken(id={})", log_id(&self.id()))
    }
}

/// Hex SHA-256 of `data`. Used for session ids and for one-time tokens stored only as hashes.
pub fn hash_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A random opaque token of `bytes` bytes (base64url), for one-time links such as password reset.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// The first 12 characters of a session id: enough to follow one session through the logs,
/// too few to look it up in Redis. Every log line that names a session uses this.
pub fn log_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_tokens_are_43_base64url_chars_and_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let t = SessionToken::generate();
            assert_eq!(t.expose().len(), TOKEN_LEN);
            assert!(SessionToken::parse(t.expose()).is_some());
            assert!(seen.insert(t.expose().to_owned()));
        }
    }

    #[test]
    fn malformed_values_are_rejected() {
        assert!(SessionToken::parse("abc").is_none());
        assert!(SessionToken::parse(&"a".repeat(5000)).is_none());
        assert!(SessionToken::parse(&format!("{}=", "a".repeat(42))).is_none());
        assert!(SessionToken::parse(&format!("{}+", "a".repeat(42))).is_none());
        assert!(SessionToken::parse(&"é".repeat(21)).is_none());
    }

    #[test]
    fn id_is_sha256_hex_of_token_and_debug_hides_token() {
        let t = SessionToken::generate();
        assert_eq!(t.id(), hash_hex(t.expose().as_bytes()));
        assert_eq!(t.id().len(), 64);
        assert!(!format!("{t:?}").contains(t.expose()));
    }
}
