//! Password policy (NIST 800-63B: length, no composition rules, a blocklist) and argon2id
//! hashing, run on the blocking pool with bounded concurrency so hashing cannot starve the
//! async workers or exhaust memory.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 128;

/// A few of the most common passwords; a deployment wanting more should front this with a
/// breached-password service.
const BLOCKLIST: &[&str] = &[
    "password",
    "password1",
    "password123",
    "12345678",
    "123456789",
    "1234567890",
    "qwertyuiop",
    "qwerty123",
    "iloveyou",
    "11111111",
    "00000000",
    "abc12345",
    "letmein1",
    "welcome1",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "superman",
    "trustno1",
    "passw0rd",
];

/// Why a password is refused; the text is shown to the user.
pub fn check_policy(password: &str) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < MIN_LEN {
        return Err("must be at least 8 characters");
    }
    if chars > MAX_LEN {
        return Err("must be at most 128 characters");
    }
    if BLOCKLIST.contains(&password.to_lowercase().as_str()) {
        return Err("is too common; choose another");
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("argon2 parameters: {0}")]
    Params(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Hashes and verifies passwords with fixed argon2id parameters.
#[derive(Clone)]
pub struct PasswordHasherPool {
    params: Params,
    permits: Arc<Semaphore>,
    /// A real hash of a random password, verified against when the user does not exist, so
    /// that unknown emails take as long as wrong passwords.
    dummy: Arc<String>,
}

impl PasswordHasherPool {
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, HashError> {
        let params = Params::new(memory_kib, iterations, parallelism, Some(32))
            .map_err(|e| HashError::Params(e.to_string()))?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let dummy_pw = authflow_shared::token::random_token(24);
        let dummy = hash_with(&params, &dummy_pw)?;
        Ok(PasswordHasherPool {
            params,
            permits: Arc::new(Semaphore::new(workers)),
            dummy: Arc::new(dummy),
        })
    }

    /// A PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash`.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let pw = password.to_owned();
        self.blocking(move || hash_with(&params, &pw)).await?
    }

    /// `true` when `password` matches `phc`; `None` for `phc` verifies against the dummy hash
    /// and always answers `false`.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let target = phc.map_or_else(|| self.dummy.as_str().to_owned(), str::to_owned);
        let known = phc.is_some();
        let pw = password.to_owned();
        let ok = self
            .blocking(move || {
                PasswordHash::new(&target)
                    .map(|h| Argon2::default().verify_password(pw.as_bytes(), &h).is_ok())
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
        ok && known
    }

    /// Whether a stored hash uses weaker parameters than the current policy (rehash on login).
    pub fn needs_rehash(&self, phc: &str) -> bool {
        PasswordHash::new(phc)
            .ok()
            .and_then(|h| Params::try_from(&h).ok())
            .is_none_or(|p| p.m_cost() < self.params.m_cost() || p.t_cost() < self.params.t_cost())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| HashError::Hash(e.to_string()))
    }
}

fn hash_with(params: &Params, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Hash(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_length_and_blocklist_only() {
        assert!(check_policy("short").is_err());
        assert!(check_policy("correct horse").is_ok());
        assert!(
            check_policy("alllowercaseletters").is_ok(),
            "no composition rules"
        );
        assert!(check_policy("Password123").is_err());
        assert!(check_policy(&"x".repeat(129)).is_err());
        assert!(
            check_policy(&"é".repeat(8)).is_ok(),
            "counted in characters, not bytes"
        );
    }

    #[tokio::test]
    async fn hashes_verify_and_use_argon2id_with_the_configured_cost() {
        let pool = PasswordHasherPool::new(19_456, 2, 1).expect("pool");
        let phc = pool.hash("correct horse battery").await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(pool.verify("correct horse battery", Some(&phc)).await);
        assert!(!pool.verify("wrong horse battery", Some(&phc)).await);
        assert!(!pool.verify("correct horse battery", None).await);
        assert!(!pool.needs_rehash(&phc));
        let weak = PasswordHasherPool::new(8192, 1, 1)
            .expect("pool")
            .hash("x")
            .await
            .expect("hash");
        assert!(pool.needs_rehash(&weak));
    }
}
