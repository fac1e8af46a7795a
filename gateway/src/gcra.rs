//! GCRA (the generic cell rate algorithm, a token bucket kept as one timestamp per client)
//! in a table of fixed size.
//!
//! Why not a crate: pingora-limits counts in fixed windows (no burst, a doubled rate at
//! window edges) and governor's keyed store grows with every key until swept. An edge proxy
//! needs a memory budget that no flood of fresh addresses can exceed, so the table is sized
//! once from `max_clients` and set-associative: a new client takes the slot of one whose
//! bucket is full again (which loses nothing), and only when every slot of its set is in use
//! does it take the slot of the client closest to a full bucket (that client starts afresh:
//! over budget, limits loosen rather than memory grows).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Slots per set: a new key may go to any of these.
const WAYS: usize = 8;

/// A limit in GCRA terms: one request per `interval`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// The emission interval T = per / requests, in ns.
    interval: u64,
    /// How far ahead of now a client's theoretical arrival time may run: (burst - 1) x T.
    tolerance: u64,
}

/// One decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed; `remaining` more would be allowed right now, and the bucket is full again
    /// after `reset`.
    Allowed { remaining: u64, reset: Duration },
    /// Over the limit; the next request conforms after `retry_after`.
    Limited { retry_after: Duration },
}

impl Gcra {
    /// `requests` per `per`, up to `burst` at once (both at least 1).
    pub fn new(requests: u64, per: Duration, burst: u64) -> Self {
        let interval = (per.as_nanos() / u128::from(requests.max(1))).clamp(1, u64::MAX as u128);
        let interval = interval as u64;
        Gcra {
            interval,
            tolerance: interval.saturating_mul(burst.max(1) - 1),
        }
    }

    /// The decision for a request at `now` (ns) against the stored theoretical arrival time
    /// `tat` (0: none), and the new `tat` to store when allowed.
    pub fn decide(&self, tat: u64, now: u64) -> (Outcome, Option<u64>) {
        let tat = tat.max(now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            return (
                Outcome::Limited {
                    retry_after: Duration::from_nanos(wait),
                },
                None,
            );
        }
        let new_tat = tat.saturating_add(self.interval);
        let used = new_tat - now;
        let room = (self.tolerance + self.interval).saturating_sub(used);
        (
            Outcome::Allowed {
                remaining: room / self.interval,
                reset: Duration::from_nanos(used),
            },
            Some(new_tat),
        )
    }

    /// How long until the bucket is full again when `remaining` more requests would pass now
    /// (for the shared form, whose script answers only `remaining`).
    pub fn full_after(&self, remaining: u64) -> Duration {
        let capacity = self.tolerance + self.interval;
        Duration::from_nanos(capacity.saturating_sub(remaining.saturating_mul(self.interval)))
    }

    /// Emission interval and tolerance in µs, for the shared (Redis) form of the same rule.
    pub fn micros(&self) -> (u64, u64) {
        ((self.interval / 1000).max(1), self.tolerance / 1000)
    }
}

#[derive(Clone, Copy, Default)]
struct Slot {
    key: u64,
    /// 0: free.
    tat: u64,
}

/// Theoretical arrival times of up to about `capacity` clients.
pub struct Table {
    sets: Box<[Mutex<[Slot; WAYS]>]>,
    mask: usize,
    epoch: Instant,
}

impl Table {
    /// Room for `capacity` clients (rounded up to a power of two sets of [`WAYS`] slots);
    /// 16 bytes a slot.
    pub fn new(capacity: usize) -> Self {
        let sets = capacity.div_ceil(WAYS).max(1).next_power_of_two();
        Table {
            sets: (0..sets)
                .map(|_| Mutex::new([Slot::default(); WAYS]))
                .collect(),
            mask: sets - 1,
            epoch: Instant::now(),
        }
    }

    /// Now, in ns since the table was made (never 0, which marks a free slot).
    pub fn now(&self) -> u64 {
        (self.epoch.elapsed().as_nanos() as u64).max(1)
    }

    /// Decides for `key` (a hash) under `limit`, and records the request when allowed.
    pub fn check(&self, key: u64, limit: &Gcra) -> Outcome {
        self.check_at(key, limit, self.now())
    }

    fn check_at(&self, key: u64, limit: &Gcra, now: u64) -> Outcome {
        let set = &self.sets[(key as usize ^ (key >> 32) as usize) & self.mask];
        let Ok(mut set) = set.lock() else {
            // A panic while holding the lock cannot leave a slot half written: go on unlimited
            // for this set rather than fail every request.
            return Outcome::Allowed {
                remaining: 0,
                reset: Duration::ZERO,
            };
        };
        let found = set.iter().position(|s| s.key == key && s.tat != 0);
        let tat = found.map_or(0, |i| set[i].tat);
        let (outcome, new_tat) = limit.decide(tat, now);
        if let Some(new_tat) = new_tat {
            let i = found.unwrap_or_else(|| victim(&set));
            set[i] = Slot { key, tat: new_tat };
        }
        outcome
    }
}

/// The slot a new key takes: a free one, else the one closest to a full bucket.
fn victim(set: &[Slot; WAYS]) -> usize {
    let mut best = 0;
    for (i, s) in set.iter().enumerate() {
        if s.tat == 0 {
            return i;
        }
        if s.tat < set[best].tat {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_burst_then_one_per_interval() {
        // 10 per second, 5 at once.
        let g = Gcra::new(10, Duration::from_secs(1), 5);
        let t = Table::new(64);
        let now = 10 * SEC;
        for i in 0..5 {
            match t.check_at(1, &g, now) {
                Outcome::Allowed { remaining, .. } => assert_eq!(remaining, 4 - i),
                o => panic!("request {i}: {o:?}"),
            }
        }
        match t.check_at(1, &g, now) {
            Outcome::Limited { retry_after } => {
                assert_eq!(retry_after, Duration::from_millis(100))
            }
            o => panic!("6th: {o:?}"),
        }
        // Another client is not affected.
        assert!(matches!(t.check_at(2, &g, now), Outcome::Allowed { .. }));
        // One interval later exactly one more conforms.
        let later = now + SEC / 10;
        assert!(matches!(t.check_at(1, &g, later), Outcome::Allowed { .. }));
        assert!(matches!(t.check_at(1, &g, later), Outcome::Limited { .. }));
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_refused() {
        let g = Gcra::new(100, Duration::from_secs(1), 1);
        let t = Table::new(64);
        for i in 0..1000 {
            let now = SEC + i * SEC / 100;
            assert!(
                matches!(t.check_at(7, &g, now), Outcome::Allowed { .. }),
                "request {i}"
            );
        }
        // ...and one faster than it is.
        assert!(matches!(
            t.check_at(7, &g, SEC + 999 * SEC / 100 + 1),
            Outcome::Limited { .. }
        ));
    }

    #[test]
    fn a_refusal_costs_nothing() {
        let g = Gcra::new(1, Duration::from_secs(1), 1);
        let t = Table::new(64);
        assert!(matches!(t.check_at(3, &g, SEC), Outcome::Allowed { .. }));
        for _ in 0..100 {
            assert!(matches!(
                t.check_at(3, &g, SEC + 1),
                Outcome::Limited { .. }
            ));
        }
        assert!(matches!(
            t.check_at(3, &g, 2 * SEC),
            Outcome::Allowed { .. }
        ));
    }

    #[test]
    fn the_table_never_grows_and_evicts_the_least_constrained_client() {
        let g = Gcra::new(1, Duration::from_secs(60), 1);
        let t = Table::new(8); // one set of 8 slots
        assert_eq!(t.sets.len(), 1);
        for key in 1..=8u64 {
            assert!(matches!(
                t.check_at(key, &g, SEC * key),
                Outcome::Allowed { .. }
            ));
        }
        // A ninth client takes the slot of the first (the closest to a full bucket)...
        assert!(matches!(
            t.check_at(9, &g, 9 * SEC),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(
            t.check_at(9, &g, 9 * SEC),
            Outcome::Limited { .. }
        ));
        // ...who starts afresh; the others are still held.
        assert!(matches!(
            t.check_at(1, &g, 9 * SEC),
            Outcome::Allowed { .. }
        ));
        assert!(matches!(
            t.check_at(8, &g, 9 * SEC),
            Outcome::Limited { .. }
        ));
    }

    #[test]
    fn full_after_counts_the_intervals_already_used() {
        let g = Gcra::new(3, Duration::from_secs(60), 3);
        assert_eq!(g.full_after(3), Duration::ZERO);
        assert_eq!(g.full_after(2), Duration::from_secs(20));
        assert_eq!(g.full_after(0), Duration::from_secs(60));
        // Agrees with what a local decision reports.
        let (Outcome::Allowed { remaining, reset }, _) = g.decide(0, 1_000) else {
            panic!("first request refused");
        };
        assert_eq!(g.full_after(remaining), reset);
    }
}
