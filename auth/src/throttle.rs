//! The per-account sign-in throttle (OWASP / ASVS 2.2.1).
//!
//! The check and the count are one atomic step on the store, taken *before* the password is
//! verified: every attempt counts as unsuccessful until it succeeds, so parallel guesses at
//! the moment a lock expires are all counted, and from the `lock_after`-th in the sliding
//! window the account is locked (1 s, 2 s, 4 s... up to `max_lock`). Past `hard_cap`
//! attempts since the last success only a password reset unlocks. A locked account answers
//! 429 whatever the password, so the lock reveals nothing, and unknown addresses are
//! throttled alike (the counters are keyed by a hash of the address).

use crate::error::ApiError;
use crate::users::{ProviderError, SignedIn};
use authflow_shared::digest::hash_hex;
use authflow_shared::store::{Attempt, LoginThrottle, ThrottlePolicy};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long a capped account reports itself locked (it stays locked until a reset).
const CAPPED_RETRY: Duration = Duration::from_secs(3600);

pub struct SignInThrottle {
    counters: Arc<dyn LoginThrottle>,
    policy: ThrottlePolicy,
}

impl SignInThrottle {
    pub fn new(counters: Arc<dyn LoginThrottle>, policy: ThrottlePolicy) -> Self {
        SignInThrottle { counters, policy }
    }

    /// Runs `check` (the password verification) for `email` unless the account is locked;
    /// on success returns who signed in and when the attempt began (the store's clock, for
    /// [`authflow_shared::store::SessionStore::create`]).
    pub async fn guard(
        &self,
        email: &str,
        check: impl Future<Output = Result<SignedIn, ProviderError>>,
    ) -> Result<(SignedIn, u64), ApiError> {
        let account = hash_hex(email.as_bytes());
        let began = match self.counters.begin_attempt(&account, &self.policy).await? {
            Attempt::Allowed { at_us } => at_us,
            Attempt::Locked(left) => {
                crate::metrics::locked_out();
                return Err(ApiError::AccountLocked(left));
            }
            Attempt::Capped => {
                crate::metrics::locked_out();
                tracing::warn!("sign-in refused: account past the attempt cap until a reset");
                return Err(ApiError::AccountLocked(CAPPED_RETRY));
            }
        };
        let who = check.await?;
        self.counters.clear_attempts(&account).await?;
        Ok((who, began))
    }

    /// After a password reset: the account starts afresh.
    pub async fn reset(&self, email: &str) -> Result<(), ApiError> {
        Ok(self
            .counters
            .clear_attempts(&hash_hex(email.as_bytes()))
            .await?)
    }
}
