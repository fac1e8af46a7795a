//! A circuit breaker in front of the session store. When Redis stops answering, every
//! protected request would otherwise wait the whole store timeout before its 503, and pile
//! onto a Redis that is struggling. After `threshold` failures in a row the breaker opens:
//! requests fail closed (503) at once, without a command. After `cool_down` one request is
//! let through as a probe; its success closes the breaker, its failure opens it again.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

pub struct Breaker {
    threshold: u32,
    cool_down_ms: u64,
    failures: AtomicU32,
    open_until_ms: AtomicU64,
    probing: AtomicBool,
}

impl Breaker {
    /// `threshold` 0 never opens.
    pub fn new(threshold: u32, cool_down: Duration) -> Self {
        Breaker {
            threshold,
            cool_down_ms: cool_down.as_millis() as u64,
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    /// Whether a request may use the store now: always while closed; while open, nothing
    /// until the cool-down is over, then one probe at a time.
    pub fn allow(&self, now_ms: u64) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        now_ms >= until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// The store answered: close.
    pub fn success(&self) {
        self.failures.store(0, Ordering::Release);
        if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("session store answers again: circuit closed");
        }
        self.probing.store(false, Ordering::Release);
    }

    /// The store failed: open after `threshold` failures in a row, or at once when the
    /// failure was the probe's.
    pub fn failure(&self, now_ms: u64) {
        if self.threshold == 0 {
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if failures >= self.threshold || was_probe {
            let reopened = self
                .open_until_ms
                .swap(now_ms + self.cool_down_ms, Ordering::AcqRel);
            if reopened == 0 {
                tracing::warn!(
                    failures,
                    "session store failing: circuit open, failing closed at once"
                );
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cool_down() {
        let b = Breaker::new(3, Duration::from_millis(100));
        for _ in 0..2 {
            assert!(b.allow(0));
            b.failure(0);
        }
        assert!(!b.is_open());
        b.failure(0);
        assert!(b.is_open());
        assert!(!b.allow(50), "open: nothing goes through");
        assert!(b.allow(100), "one probe after the cool-down");
        assert!(!b.allow(100), "only one");
        b.failure(100);
        assert!(!b.allow(150), "the probe failed: open again");
        assert!(b.allow(200));
        b.success();
        assert!(!b.is_open());
        assert!(b.allow(200) && b.allow(200));
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(1));
        b.failure(0);
        b.success();
        b.failure(0);
        assert!(!b.is_open());
    }
}
