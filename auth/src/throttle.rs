//! The per-account sign-in throttle (OWASP / ASVS 2.2.1): from the 5th consecutive failure
//! within 15 minutes the account is locked for 1 s, then 2 s, 4 s... up to 15 minutes. A
//! locked account answers 429 whatever the password, so the lock reveals nothing, and unknown
//! addresses are throttled alike (the counters are keyed by a hash of the address).

use crate::error::ApiError;
use crate::users::{ProviderError, SignedIn};
use authflow_shared::store::LoginThrottle;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Consecutive failed sign-ins of one account before it is locked.
const LOCK_AFTER_FAILURES: u64 = 5;
/// Failures older than this are forgotten.
const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The longest lock; there is no permanent lockout.
pub const MAX_LOCK: Duration = Duration::from_secs(15 * 60);

pub struct SignInThrottle {
    counters: Arc<dyn LoginThrottle>,
}

impl SignInThrottle {
    pub fn new(counters: Arc<dyn LoginThrottle>) -> Self {
        SignInThrottle { counters }
    }

    /// Runs `check` (the password verification) for `email` unless the account is locked,
    /// and counts its outcome.
    pub async fn guard(
        &self,
        email: &str,
        check: impl Future<Output = Result<SignedIn, ProviderError>>,
    ) -> Result<SignedIn, ApiError> {
        let account = authflow_shared::token::hash_hex(email.as_bytes());
        if let Some(left) = self.counters.login_locked_for(&account).await? {
            return Err(ApiError::AccountLocked(left));
        }
        match check.await {
            Ok(who) => {
                self.counters.clear_login_failures(&account).await?;
                Ok(who)
            }
            Err(ProviderError::InvalidCredentials) => {
                self.failed(&account).await?;
                Err(ApiError::InvalidCredentials)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Counts a failure and locks the account once there are too many.
    async fn failed(&self, account: &str) -> Result<(), ApiError> {
        let failures = self
            .counters
            .record_login_failure(account, FAILURE_WINDOW)
            .await?;
        if let Some(lock) = lock_for(failures) {
            self.counters.lock_login(account, lock).await?;
            tracing::warn!(
                failures,
                lock_s = lock.as_secs(),
                "sign-in locked for an account after repeated failures"
            );
        }
        Ok(())
    }
}

/// The lock after `failures` consecutive failures: none below the threshold, then doubling.
fn lock_for(failures: u64) -> Option<Duration> {
    let over = failures.checked_sub(LOCK_AFTER_FAILURES)?;
    let doublings = over.min(10) as u32;
    Some((Duration::from_secs(1) * 2u32.pow(doublings)).min(MAX_LOCK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_up_to_the_cap() {
        assert_eq!(lock_for(4), None);
        assert_eq!(lock_for(5), Some(Duration::from_secs(1)));
        assert_eq!(lock_for(7), Some(Duration::from_secs(4)));
        assert_eq!(lock_for(100), Some(MAX_LOCK));
    }
}
