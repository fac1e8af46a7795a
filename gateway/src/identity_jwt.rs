//! The signed identity for upstreams that want proof (`[identity] jwt = true`): each request
//! forwarded with a session carries `X-Authflow-Jwt`, a short-lived JWT (ES256) with `sub`,
//! `email`, `roles`, `amr`, `iat`, `exp`, signed with a P-256 key from the config; the public
//! key is served as a JWKS at [`JWKS_PATH`]. An upstream reached some other way than through
//! the gateway can then tell that the identity headers are not the gateway's. Pomerium's
//! `X-Pomerium-Jwt-Assertion` is the model.
//!
//! Signing is ring's (already linked for TLS); the token is the JWS compact form of RFC 7515
//! with the fixed-size `r || s` signature that ES256 (RFC 7518 §3.4) requires.

use authflow_shared::session::SessionRecord;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use std::path::Path;
use std::time::Duration;

/// The request header carrying the token upstream (the client's own is always stripped,
/// with every `X-Authflow-*`).
pub const JWT_HEADER: &str = "x-authflow-jwt";

/// Where the gateway serves its public key (GET, public, cacheable for a few minutes).
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    #[error("[identity] jwt_key_file {0}: {1}")]
    Read(String, std::io::Error),
    #[error("[identity] jwt_key_file {0}: not a PEM \"PRIVATE KEY\" (PKCS#8) block")]
    NotPem(String),
    #[error("[identity] jwt_key_file {0}: not a P-256 key in PKCS#8 ({1}); make one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`")]
    NotP256(String, String),
}

/// The signing key and what is derived from it once.
pub struct IdentitySigner {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    ttl: Duration,
    /// `base64url({"alg":"ES256","typ":"JWT","kid":...})`: the same for every token.
    header_b64: String,
    jwks: String,
}

impl IdentitySigner {
    /// Reads the PKCS#8 PEM private key at `path`.
    pub fn from_pem_file(path: &Path, ttl: Duration) -> Result<Self, JwtKeyError> {
        let name = path.display().to_string();
        let pem = std::fs::read_to_string(path).map_err(|e| JwtKeyError::Read(name.clone(), e))?;
        let der =
            pem_block(&pem, "PRIVATE KEY").ok_or_else(|| JwtKeyError::NotPem(name.clone()))?;
        Self::from_pkcs8(&der, ttl).map_err(|e| JwtKeyError::NotP256(name, e))
    }

    /// From a PKCS#8 DER document.
    pub fn from_pkcs8(der: &[u8], ttl: Duration) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
            .map_err(|e| e.to_string())?;
        // Uncompressed point: 0x04 || X (32) || Y (32).
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [4, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err("unexpected public key form".into()),
        };
        let mut kid = authflow_shared::digest::hash_hex(point);
        kid.truncate(16);
        let header = serde_json::json!({ "alg": "ES256", "typ": "JWT", "kid": kid });
        let jwks = serde_json::json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]});
        Ok(IdentitySigner {
            header_b64: URL_SAFE_NO_PAD.encode(header.to_string()),
            jwks: jwks.to_string(),
            pair,
            rng,
            ttl,
        })
    }

    /// A signer with a fresh random key (benches and tests; a deployment needs a key that
    /// outlives the process and is shared by every gateway).
    pub fn generate(ttl: Duration) -> Result<Self, String> {
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|e| e.to_string())?;
        Self::from_pkcs8(doc.as_ref(), ttl)
    }

    /// The JWKS document served at [`JWKS_PATH`].
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A token for the session `record` at `now_s` (Unix seconds), valid for the configured
    /// lifetime. `None` only if the signer fails (the request then goes without it, logged).
    pub fn sign(&self, record: &SessionRecord, now_s: u64) -> Option<String> {
        let claims = serde_json::json!({
            "sub": record.user_id,
            "email": record.email,
            "roles": record.claims.roles,
            "amr": record.claims.amr,
            "iat": now_s,
            "exp": now_s + self.ttl.as_secs().max(1),
        });
        let mut token = self.header_b64.clone();
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(claims.to_string()));
        let sig = self.pair.sign(&self.rng, token.as_bytes()).ok()?;
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(sig.as_ref()));
        Some(token)
    }
}

/// The DER bytes of the first `-----BEGIN <label>-----` block of `pem`.
fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> IdentitySigner {
        let rng = SystemRandom::new();
        let doc =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("key");
        IdentitySigner::from_pkcs8(doc.as_ref(), Duration::from_secs(60)).expect("signer")
    }

    #[test]
    fn a_token_is_es256_over_the_sessions_identity_and_verifies_with_the_jwks_key() {
        let s = signer();
        let mut record = SessionRecord::new(
            "u1",
            Some("a@example.com".into()),
            "fp",
            0,
            Duration::from_secs(60),
        );
        record.claims = authflow_shared::session::Claims::password(0, vec!["admin".into()]);
        let token = s.sign(&record, 1_000).expect("token");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["sub"], "u1");
        assert_eq!(claims["roles"], serde_json::json!(["admin"]));
        assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
        assert_eq!(
            (claims["iat"].as_u64(), claims["exp"].as_u64()),
            (Some(1_000), Some(1_060))
        );
        // Verified with the public key as the JWKS publishes it.
        let jwks: serde_json::Value = serde_json::from_str(s.jwks()).expect("jwks");
        let key = &jwks["keys"][0];
        let coord = |k: &str| {
            URL_SAFE_NO_PAD
                .decode(key[k].as_str().expect("coord"))
                .expect("b64")
        };
        let mut point = vec![4u8];
        point.extend(coord("x"));
        point.extend(coord("y"));
        let public = ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            point,
        );
        let signed = format!("{}.{}", parts[0], parts[1]);
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).expect("b64");
        assert!(public.verify(signed.as_bytes(), &sig).is_ok());
    }

    #[test]
    fn keys_that_are_not_p256_pkcs8_are_refused() {
        assert!(pem_block("nothing", "PRIVATE KEY").is_none());
        assert!(IdentitySigner::from_pkcs8(b"garbage", Duration::from_secs(1)).is_err());
    }
}
