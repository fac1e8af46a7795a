//! SHA-256 in hex: what session ids, stored one-time tokens, throttle keys and slot tags are
//! made of. Its own module, below both the key schema and the token rules that use it.

use sha2::{Digest, Sha256};

/// Hex SHA-256 of `data`.
pub fn hash_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
