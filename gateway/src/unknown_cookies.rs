//! What the session step does about cookies Redis does not know: well-formed tokens that
//! name no session (stale cookies, or someone guessing). Such a request costs Redis one
//! untracked `MGET` and never grows shared state, and these two bound even that:
//!
//! - [`RecentMisses`]: a token Redis did not know is answered as unknown without asking
//!   again for a few seconds (`[session_check] unknown_cookie_cache`), so a browser's burst
//!   of requests with one stale cookie is one lookup.
//! - [`MissBudget`]: per client address (IPv6: per /64), at most
//!   `unknown_cookie_lookups` lookups that found nothing per `unknown_cookie_window`;
//!   past that, unknown cookies from the address get 429 without a Redis command.
//!
//! Why 429 and not "unauthenticated" past the budget: the budget is spent before the
//! lookup is made, so the gateway cannot tell a guessed cookie from a real session it has
//! not cached. A 401 or a redirect to sign in would clear a real user's cookie and log
//! them out whenever someone behind the same address floods; a 429 never ends a session,
//! grants nothing, and tells the client when to retry. Found sessions never spend budget,
//! and cached sessions are served without looking at it.

use crate::gcra::{Gcra, Outcome};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Tokens remembered as unknown at most (~120 bytes each: about 2 MiB). A flood of fresh
/// tokens only evicts older entries; each of those costs one more lookup later.
const REMEMBERED_MISSES: usize = 16_384;
/// Client addresses whose budget is kept at most (~80 bytes each). An address evicted by a
/// flood from many others starts with a full budget again: limits loosen, memory does not
/// grow.
const BUDGET_ADDRESSES: usize = 32_768;
/// IPv6 clients share the budget of their /64: one host usually controls the whole prefix.
const IPV6_PREFIX: u8 = 64;

/// How unknown cookies are handled, from `[session_check]`; part of the reloadable rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCookieRules {
    /// How long a miss is remembered (zero: not at all).
    pub remember: Duration,
    /// Lookups that find nothing, per address (`None`: unbounded).
    pub budget: Option<MissLimit>,
}

/// `lookups` per `window`, all of them at once at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissLimit {
    pub lookups: u64,
    pub window: Duration,
    gcra: Gcra,
    /// What one lookup costs, in ns (the GCRA's emission interval).
    cost: u64,
}

impl MissLimit {
    pub fn new(lookups: u64, window: Duration) -> Self {
        let cost = (window.as_nanos() / u128::from(lookups.max(1))).clamp(1, u64::MAX as u128);
        MissLimit {
            lookups,
            window,
            gcra: Gcra::new(lookups, window, lookups),
            cost: cost as u64,
        }
    }
}

impl UnknownCookieRules {
    pub fn new(remember: Duration, lookups: u64, window: Duration) -> Self {
        UnknownCookieRules {
            remember,
            budget: (lookups > 0 && !window.is_zero()).then(|| MissLimit::new(lookups, window)),
        }
    }
}

/// Session ids Redis just said it does not have, each until a deadline.
pub struct RecentMisses {
    entries: quick_cache::sync::Cache<String, u64>,
    epoch: Instant,
}

impl Default for RecentMisses {
    fn default() -> Self {
        Self::with_capacity(REMEMBERED_MISSES)
    }
}

impl RecentMisses {
    pub fn with_capacity(capacity: usize) -> Self {
        RecentMisses {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            epoch: Instant::now(),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether `id` was a miss less than `rules.remember` ago (then it is still unknown:
    /// tokens are random 256-bit values, so only a guess can name a session created since).
    pub fn remembers(&self, id: &str, rules: &UnknownCookieRules) -> bool {
        if rules.remember.is_zero() {
            return false;
        }
        match self.entries.get(id) {
            Some(until) if until > self.now() => true,
            Some(_) => {
                self.entries.remove(id);
                false
            }
            None => false,
        }
    }

    /// Redis does not have `id` now.
    pub fn missed(&self, id: &str, rules: &UnknownCookieRules) {
        if !rules.remember.is_zero() {
            let until = self.now() + rules.remember.as_millis() as u64;
            self.entries.insert(id.to_owned(), until);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Per client address, how many lookups that found nothing it may still make: a GCRA per
/// address (its theoretical arrival time), in a table of bounded size.
pub struct MissBudget {
    tats: quick_cache::sync::Cache<IpAddr, Arc<AtomicU64>>,
    epoch: Instant,
}

impl Default for MissBudget {
    fn default() -> Self {
        Self::with_capacity(BUDGET_ADDRESSES)
    }
}

impl MissBudget {
    pub fn with_capacity(capacity: usize) -> Self {
        MissBudget {
            tats: quick_cache::sync::Cache::new(capacity.max(1)),
            epoch: Instant::now(),
        }
    }

    /// Now in ns since the table was made.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Takes one lookup from `client`'s budget before the lookup is made (so that lookups
    /// under way at once cannot overdraw it): `None` when taken, else how long until one
    /// is left. A lookup that finds a session gives it back ([`MissBudget::give_back`]), so
    /// only cookies Redis does not know spend the budget.
    pub fn take(&self, client: IpAddr, limit: &MissLimit) -> Option<Duration> {
        let Ok(tat) = self
            .tats
            .get_or_insert_with(&key(client), || -> Result<_, ()> {
                Ok(Arc::new(AtomicU64::new(0)))
            })
        else {
            return None;
        };
        let now = self.now();
        let mut current = tat.load(Ordering::Relaxed);
        loop {
            match limit.gcra.decide(current, now) {
                (Outcome::Limited { retry_after }, _) => return Some(retry_after),
                (_, Some(new)) => {
                    match tat.compare_exchange_weak(
                        current,
                        new,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    ) {
                        Ok(_) => return None,
                        Err(seen) => current = seen,
                    }
                }
                (_, None) => return None,
            }
        }
    }

    /// The lookup [`MissBudget::take`] paid for found a session: the budget gets it back.
    pub fn give_back(&self, client: IpAddr, limit: &MissLimit) {
        if let Some(tat) = self.tats.get(&key(client)) {
            let _ = tat.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some(t.saturating_sub(limit.cost))
            });
        }
    }
}

/// The address a budget belongs to: IPv4 as is, IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    authflow_shared::client_ip::network(ip, IPV6_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(remember_ms: u64, lookups: u64, window: Duration) -> UnknownCookieRules {
        UnknownCookieRules::new(Duration::from_millis(remember_ms), lookups, window)
    }

    #[test]
    fn a_miss_is_remembered_only_for_its_ttl() {
        let misses = RecentMisses::with_capacity(10);
        let r = rules(50, 0, Duration::ZERO);
        assert!(!misses.remembers("a", &r));
        misses.missed("a", &r);
        assert!(misses.remembers("a", &r));
        assert!(!misses.remembers("b", &r));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!misses.remembers("a", &r), "a miss outlived its TTL");
        assert!(misses.is_empty(), "the expired entry was not dropped");
    }

    #[test]
    fn with_no_ttl_nothing_is_remembered() {
        let misses = RecentMisses::with_capacity(10);
        let r = rules(0, 0, Duration::ZERO);
        misses.missed("a", &r);
        assert!(!misses.remembers("a", &r));
        assert!(misses.is_empty());
    }

    #[test]
    fn remembered_misses_are_bounded() {
        let misses = RecentMisses::with_capacity(100);
        let r = rules(60_000, 0, Duration::ZERO);
        for i in 0..10_000 {
            misses.missed(&format!("{i:064x}"), &r);
        }
        assert!(misses.len() <= 110, "{} entries", misses.len());
    }

    #[test]
    fn an_address_is_refused_after_its_budget_and_others_are_not() {
        let budget = MissBudget::with_capacity(100);
        let limit = MissLimit::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        for _ in 0..3 {
            assert_eq!(budget.take(a, &limit), None);
        }
        let wait = budget.take(a, &limit).expect("refused after 3 misses");
        assert!(wait > Duration::from_secs(15) && wait <= Duration::from_secs(20));
        assert_eq!(budget.take(b, &limit), None);
        // Asking past the budget does not push the wait further out.
        assert!(budget.take(a, &limit).expect("refused") <= wait);
    }

    #[test]
    fn lookups_that_find_a_session_cost_nothing() {
        let budget = MissBudget::with_capacity(100);
        let limit = MissLimit::new(3, Duration::from_secs(60));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..100 {
            assert_eq!(budget.take(a, &limit), None);
            budget.give_back(a, &limit);
        }
        for _ in 0..3 {
            assert_eq!(budget.take(a, &limit), None);
        }
        assert!(budget.take(a, &limit).is_some());
    }

    #[test]
    fn the_budget_refills_with_time() {
        let budget = MissBudget::with_capacity(100);
        let limit = MissLimit::new(2, Duration::from_millis(100));
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        budget.take(a, &limit);
        budget.take(a, &limit);
        assert!(budget.take(a, &limit).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(budget.take(a, &limit), None);
    }

    #[test]
    fn ipv6_addresses_share_their_64() {
        let budget = MissBudget::with_capacity(100);
        let limit = MissLimit::new(1, Duration::from_secs(60));
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let same: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        budget.take(a, &limit);
        assert!(budget.take(same, &limit).is_some());
        assert!(budget.take(other, &limit).is_none());
    }

    #[test]
    fn the_budget_table_is_bounded() {
        let budget = MissBudget::with_capacity(100);
        let limit = MissLimit::new(1, Duration::from_secs(60));
        for i in 0..10_000u32 {
            budget.take(IpAddr::V4(i.into()), &limit);
        }
        assert!(budget.tats.len() <= 110, "{} addresses", budget.tats.len());
    }

    #[test]
    fn zero_lookups_means_no_bound() {
        assert_eq!(rules(0, 0, Duration::from_secs(10)).budget, None);
        assert!(rules(0, 5, Duration::from_secs(10)).budget.is_some());
    }
}
