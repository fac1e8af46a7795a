//! Recovery codes: what gets a person in when the phone with their authenticator is gone.
//! Ten per set, each 10 base32 characters (50 bits) shown as `xxxxx-xxxxx`, kept only as
//! HMAC-SHA-256 under a key from `AUTHFLOW_MFA_KEY` (a stolen database alone cannot be
//! searched for them), each usable once; a new set voids the old one.

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;

/// Codes per set.
pub const PER_SET: usize = 10;
/// RFC 4648 base32 without the letters people confuse least: the standard alphabet.
const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// A new set, as shown to the person once.
pub fn new_set() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..PER_SET)
        .map(|_| {
            let chars: String = (0..10)
                .map(|_| ALPHABET[rng.gen_range(0..32)] as char)
                .collect();
            format!("{}-{}", &chars[..5], &chars[5..])
        })
        .collect()
}

/// What a person typed, in the one form that is hashed: upper case, no separators or
/// spaces; `None` when it cannot be a code.
pub fn normalize(typed: &str) -> Option<String> {
    let s: String = typed
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (s.len() == 10 && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// The stored form of a (normalized) code.
pub fn hash(key: &[u8], normalized: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(b"authflow-recovery-code\n");
    mac.update(normalized.as_bytes());
    hex(&mac.finalize().into_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_fifty_bits_and_read_back() {
        let set = new_set();
        assert_eq!(set.len(), PER_SET);
        let unique: std::collections::HashSet<_> = set.iter().collect();
        assert_eq!(unique.len(), PER_SET);
        for code in &set {
            assert_eq!(code.len(), 11);
            let n = normalize(code).expect("a code");
            assert_eq!(normalize(&code.to_lowercase().replace('-', " ")), Some(n));
        }
        assert_eq!(normalize("ABCDE-FGHI1"), None, "1 is not base32");
        assert_eq!(normalize("ABCDE"), None);
    }

    #[test]
    fn the_hash_needs_the_key() {
        let n = normalize("ABCDE-FGHIJ").expect("code");
        assert_eq!(hash(b"k1", &n), hash(b"k1", &n));
        assert_ne!(hash(b"k1", &n), hash(b"k2", &n));
    }
}
