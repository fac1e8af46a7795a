//! Encryption at rest for upstream (Supabase) tokens kept inside our Redis sessions:
//! AES-256-GCM with a random 96-bit nonce per message.

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("ciphertext is malformed or was not made with this key")]
    Undecryptable,
}

/// Encrypts and decrypts short secrets with one key.
#[derive(Clone)]
pub struct TokenCipher {
    cipher: Aes256Gcm,
}

impl TokenCipher {
    /// The key as 32 bytes in standard or URL-safe base64.
    pub fn from_base64(key: &str) -> Result<Self, CryptoError> {
        let bytes = STANDARD
            .decode(key.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(key.trim()))
            .map_err(|_| CryptoError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        Ok(TokenCipher {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// base64url(nonce || ciphertext+tag).
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        // Encryption with a valid key and a fresh nonce cannot fail for inputs this small.
        let sealed = self.cipher.encrypt(&nonce, plaintext).unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn decrypt(&self, sealed: &str) -> Result<Vec<u8>, CryptoError> {
        let raw = URL_SAFE_NO_PAD
            .decode(sealed)
            .map_err(|_| CryptoError::Undecryptable)?;
        if raw.len() < 12 + 16 {
            return Err(CryptoError::Undecryptable);
        }
        let (nonce, ct) = raw.split_at(12);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Undecryptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // 32 ASCII bytes

    #[test]
    fn round_trip_and_tamper_detection() {
        let c = TokenCipher::from_base64(KEY).expect("key");
        let sealed = c.encrypt(b"refresh-token-123");
        assert!(!sealed.contains("refresh"));
        assert_eq!(c.decrypt(&sealed).expect("decrypt"), b"refresh-token-123");
        assert_ne!(
            sealed,
            c.encrypt(b"refresh-token-123"),
            "nonce must be fresh"
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&sealed).expect("b64");
        bytes[20] ^= 1;
        assert_eq!(
            c.decrypt(&URL_SAFE_NO_PAD.encode(bytes)),
            Err(CryptoError::Undecryptable)
        );
        let other = TokenCipher::from_base64(&STANDARD.encode([7u8; 32])).expect("key");
        assert_eq!(other.decrypt(&sealed), Err(CryptoError::Undecryptable));
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(TokenCipher::from_base64("short").is_err());
        assert!(TokenCipher::from_base64(&STANDARD.encode([1u8; 16])).is_err());
    }
}
