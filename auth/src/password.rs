//! Password policy (NIST 800-63B: length, no composition rules, a blocklist) and argon2id
//! hashing, run on threads of its own at the lowest CPU priority, one per core, so that a
//! sign-in flood can neither starve the async workers (or a gateway on the same machine) nor
//! exhaust memory.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
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
    workers: Arc<Workers>,
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
            workers: Arc::new(Workers::start(workers)?),
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
        let _job = crate::metrics::Argon2Job::start();
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| HashError::Hash(e.to_string()))?;
        self.workers.run(f).await
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// The hashing threads. Their work waits for whatever else wants the CPU (nice 19): under a
/// sign-in flood the request path keeps its latency and sign-ins take the rest.
struct Workers {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl Workers {
    fn start(n: usize) -> Result<Workers, HashError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })
                .map_err(|e| HashError::Hash(format!("hashing thread: {e}")))?;
        }
        Ok(Workers {
            jobs: Mutex::new(tx),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs
            .lock()
            .map_err(|_| HashError::Hash("hashing pool poisoned".into()))?
            .send(job)
            .map_err(|_| HashError::Hash("hashing threads gone".into()))?;
        rx.await
            .map_err(|_| HashError::Hash("hashing job dropped".into()))
    }
}

/// Nice 19 for the calling thread (on Linux, priorities are per thread). Unprivileged, and
/// never fatal: a failure only leaves the thread at normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
            tracing::debug!(error = %e, "could not lower the hashing thread's priority");
        }
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

    /// Hashing runs at nice 19, so a sign-in flood yields the CPU to the request path.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_the_lowest_priority() {
        let pool = PasswordHasherPool::new(8, 1, 1).expect("pool");
        let nice = pool
            .blocking(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
            .await
            .expect("job")
            .expect("getpriority");
        assert_eq!(nice, 19);
        let hash = pool.hash("correct horse").await.expect("hash");
        assert!(pool.verify("correct horse", Some(&hash)).await);
    }

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
