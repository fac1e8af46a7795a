//! The session step: cookie → Redis record → timeouts → device fingerprint.
//! It returns a verdict; the proxy turns a rejection into a redirect or a 401.

use crate::breaker::Breaker;
use crate::config::{MismatchPolicy, SessionCheckConfig};
use authflow_shared::contract::SessionContract;
use authflow_shared::cookie::CookieLookup;
use authflow_shared::fingerprint;
use authflow_shared::session::{Expiry, SessionRecord};
use authflow_shared::store::{SessionStore, StoreError};
use authflow_shared::token::{log_id, SessionToken};
use std::sync::Arc;
use std::time::Duration;

/// Why a request has no valid session. Goes to logs and metrics, never to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    Missing,
    Malformed,
    Ambiguous,
    Unknown,
    Expired(Expiry),
    FingerprintMismatch,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Missing => "missing",
            RejectReason::Malformed => "malformed",
            RejectReason::Ambiguous => "ambiguous",
            RejectReason::Unknown => "unknown",
            RejectReason::Expired(Expiry::Idle) => "expired_idle",
            RejectReason::Expired(Expiry::Absolute) => "expired_absolute",
            RejectReason::FingerprintMismatch => "fingerprint_mismatch",
        }
    }

    /// Whether the browser's cookie should be cleared: yes unless there was none.
    pub fn clears_cookie(self) -> bool {
        self != RejectReason::Missing
    }
}

#[derive(Debug)]
pub enum Verdict {
    Valid { id: String, record: SessionRecord },
    Rejected(RejectReason),
}

/// Checks sessions against the store.
pub struct SessionChecker {
    store: Arc<dyn SessionStore>,
    breaker: Breaker,
    idle: Duration,
    absolute: Duration,
    touch_interval: Duration,
    mismatch: MismatchPolicy,
}

impl SessionChecker {
    pub fn new(
        store: Arc<dyn SessionStore>,
        contract: &SessionContract,
        check: &SessionCheckConfig,
    ) -> Self {
        SessionChecker {
            store,
            breaker: Breaker::new(check.breaker_threshold, check.breaker_cool_down.0),
            idle: contract.idle_timeout.0,
            absolute: contract.absolute_timeout.0,
            touch_interval: check.touch_interval.0,
            mismatch: check.on_fingerprint_mismatch,
        }
    }

    /// The verdict for this cookie and this client's fingerprint. `Err` means the store could
    /// not answer: the caller must fail closed. Malformed cookies never reach the store.
    pub async fn check(
        &self,
        cookie: CookieLookup<'_>,
        fingerprint: &str,
    ) -> Result<Verdict, StoreError> {
        let token = match cookie {
            CookieLookup::Missing => return Ok(Verdict::Rejected(RejectReason::Missing)),
            CookieLookup::Many => return Ok(Verdict::Rejected(RejectReason::Ambiguous)),
            CookieLookup::One(v) => match SessionToken::parse(v) {
                Some(t) => t,
                None => return Ok(Verdict::Rejected(RejectReason::Malformed)),
            },
        };
        let id = token.id();
        let Some(mut record) = self.lookup(&id).await? else {
            return Ok(Verdict::Rejected(RejectReason::Unknown));
        };
        let now = authflow_shared::now_ms();
        if let Some(expiry) = record.expiry(now, self.idle, self.absolute) {
            self.forget(&id, &record.user_id).await;
            return Ok(Verdict::Rejected(RejectReason::Expired(expiry)));
        }
        if !fingerprint::matches(&record.fingerprint, fingerprint) {
            if self.mismatch == MismatchPolicy::Revoke {
                self.forget(&id, &record.user_id).await;
            }
            return Ok(Verdict::Rejected(RejectReason::FingerprintMismatch));
        }
        if now.saturating_sub(record.last_seen_at) >= self.touch_interval.as_millis() as u64 {
            record.last_seen_at = now;
            self.touch_later(id.clone(), record.clone(), now);
        }
        Ok(Verdict::Valid { id, record })
    }

    /// The store's record, through the circuit breaker: while it is open, `Err` at once.
    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        if !self.breaker.allow(authflow_shared::now_ms()) {
            return Err(StoreError::Unavailable("circuit open".into()));
        }
        match self.store.lookup(id).await {
            Err(StoreError::Unavailable(e)) => {
                self.breaker.failure(authflow_shared::now_ms());
                Err(StoreError::Unavailable(e))
            }
            other => {
                self.breaker.success();
                other
            }
        }
    }

    /// Deletes a dead session; a failure only leaves it to its Redis TTL.
    async fn forget(&self, id: &str, user_id: &str) {
        if let Err(e) = self.store.delete(id, user_id).await {
            tracing::warn!(session = log_id(id), error = %e, "could not delete dead session");
        }
    }

    /// Refreshes last-seen and the idle TTL off the request path.
    fn touch_later(&self, id: String, record: SessionRecord, now: u64) {
        let store = self.store.clone();
        let ttl = record.ttl(now, self.idle, self.absolute);
        tokio::spawn(async move {
            if let Err(e) = store.touch(&id, &record, ttl).await {
                tracing::debug!(session = log_id(&id), error = %e, "session touch failed");
            }
        });
    }
}
