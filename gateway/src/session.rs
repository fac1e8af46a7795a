//! The session step: cookie → record (session cache, else Redis) → timeouts → device
//! fingerprint. It returns a verdict; the proxy turns a rejection into a redirect or a 401.
//!
//! A cache miss is looked up through the store's ordinary connections, which Redis does not
//! track; only a record that was found is read again through the feed, tracked, and cached.
//! Cookies that name no session are answered from [`RecentMisses`] for a few seconds and
//! bounded per address by [`MissBudget`] ([`crate::unknown_cookies`]).

use crate::breaker::Breaker;
use crate::config::{MismatchPolicy, SessionCheckConfig};
pub use crate::memo::Device;
use crate::memo::Memo;
use crate::metrics::{self, CacheOutcome};
use crate::rate_limit::Exceeded;
use crate::session_cache::{Entry, SessionCache};
use crate::unknown_cookies::{MissBudget, RecentMisses, UnknownCookieRules};
use authflow_shared::contract::SessionContract;
use authflow_shared::cookie::CookieLookup;
use authflow_shared::fingerprint;
use authflow_shared::session::{Expiry, SessionRecord};
use authflow_shared::store::{SessionFeed, SessionStore, StoreError};
use authflow_shared::token::{log_id, SessionToken};
use std::net::IpAddr;
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
    /// The session was put aside (`on_fingerprint_mismatch = "reauth"`): by this request
    /// from another device, or earlier. Its holder signs in again to get it back.
    Reauth,
}

impl RejectReason {
    pub const ALL: [RejectReason; 8] = [
        RejectReason::Missing,
        RejectReason::Malformed,
        RejectReason::Ambiguous,
        RejectReason::Unknown,
        RejectReason::Expired(Expiry::Idle),
        RejectReason::Expired(Expiry::Absolute),
        RejectReason::FingerprintMismatch,
        RejectReason::Reauth,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Missing => "missing",
            RejectReason::Malformed => "malformed",
            RejectReason::Ambiguous => "ambiguous",
            RejectReason::Unknown => "unknown",
            RejectReason::Expired(Expiry::Idle) => "expired_idle",
            RejectReason::Expired(Expiry::Absolute) => "expired_absolute",
            RejectReason::FingerprintMismatch => "fingerprint_mismatch",
            RejectReason::Reauth => "reauth_required",
        }
    }

    /// Whether the browser's cookie should be cleared: yes unless there was none, or it
    /// names a session put aside (the sign-in that re-binds it needs the cookie).
    pub fn clears_cookie(self) -> bool {
        !matches!(self, RejectReason::Missing | RejectReason::Reauth)
    }
}

/// The metric and log label of a session check's outcome: `ok`, `forbidden`,
/// `mfa_required`, a [`RejectReason`], `throttled`, or `store_error`.
pub fn outcome<E>(verdict: &Result<Verdict, E>) -> &'static str {
    match verdict {
        Ok(Verdict::Valid { .. }) => "ok",
        Ok(Verdict::Forbidden { .. }) => "forbidden",
        Ok(Verdict::SecondFactor { .. }) => "mfa_required",
        Ok(Verdict::Rejected(reason)) => reason.as_str(),
        Ok(Verdict::Throttled(_)) => "throttled",
        Err(_) => "store_error",
    }
}

/// Every label [`outcome`] can give.
pub fn all_outcomes() -> impl Iterator<Item = &'static str> {
    [
        "ok",
        "forbidden",
        "mfa_required",
        "throttled",
        "store_error",
    ]
    .into_iter()
    .chain(RejectReason::ALL.iter().map(|r| r.as_str()))
}

/// What the session step found.
#[derive(Debug)]
pub enum Verdict {
    Valid {
        id: String,
        session: Arc<Entry>,
    },
    Rejected(RejectReason),
    /// A valid session that may not pass this route ([`crate::access`]); given by the proxy,
    /// which knows the route, so the outcome is counted once.
    Forbidden {
        session: Arc<Entry>,
        why: crate::access::Denied,
    },
    /// A valid session the route admits only with a (fresher) second factor
    /// ([`crate::access::Access::SecondFactor`]): a step-up, the cookie kept. `max_age`:
    /// the strictest `mfa_max_age` demanded, told to the client.
    SecondFactor {
        max_age: Option<Duration>,
    },
    /// The client's address looked up too many cookies Redis did not know
    /// (`[session_check] unknown_cookie_lookups`); this one was not looked up: 429, and the
    /// cookie is kept (it may name a real session this gateway has not cached).
    Throttled(Exceeded),
}

/// The name of the unknown-cookie limit in `RateLimit-Policy` and the access log.
pub const UNKNOWN_COOKIE_POLICY: &str = "unknown_cookies";

/// Checks sessions against the store, through the session cache when there is one.
pub struct SessionChecker {
    store: Arc<dyn SessionStore>,
    /// Token ids and matched fingerprint inputs remembered, so a warm hit hashes nothing.
    memo: Memo,
    cache: Option<CacheFeed>,
    breaker: Breaker,
    misses: RecentMisses,
    budget: MissBudget,
}

/// The timeouts and policies a session is judged by: part of the reloadable policy, so a
/// reload changes them for the next request (the cache holds records, not verdicts).
#[derive(Debug, Clone)]
pub struct SessionRules {
    pub idle: Duration,
    pub absolute: Duration,
    pub touch_interval: Duration,
    pub mismatch: MismatchPolicy,
    pub reauth_hold: Duration,
    pub unknown: UnknownCookieRules,
}

impl SessionRules {
    pub fn new(contract: &SessionContract, check: &SessionCheckConfig) -> Self {
        SessionRules {
            idle: contract.idle_timeout.0,
            absolute: contract.absolute_timeout.0,
            touch_interval: check.touch_interval.0,
            mismatch: check.on_fingerprint_mismatch,
            reauth_hold: check.reauth_hold.0,
            unknown: UnknownCookieRules::new(
                check.unknown_cookie_cache.0,
                check.unknown_cookie_lookups,
                check.unknown_cookie_window.0,
            ),
        }
    }

    /// Why the session is over at `now`, given the latest activity known.
    pub fn expiry(&self, record: &SessionRecord, last_seen: u64, now: u64) -> Option<Expiry> {
        record.expiry_seen(now, last_seen, self.idle, self.absolute)
    }
}

/// What [`SessionChecker::find`] found.
enum Found {
    Session(Arc<Entry>),
    /// The store has no such session (or said so a moment ago).
    Nothing,
    /// Not looked up: the client is over its budget of unknown cookies for this long.
    NotAsked(Duration),
}

/// The 429 of an address over its unknown-cookie budget.
fn throttled(rules: &UnknownCookieRules, retry_after: Duration) -> Exceeded {
    let (requests, window) = rules
        .budget
        .map_or((0, Duration::ZERO), |b| (b.lookups, b.window));
    Exceeded {
        policy: UNKNOWN_COOKIE_POLICY.into(),
        requests,
        window_secs: window.as_secs_f64().ceil().max(1.0) as u64,
        retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// The cache and the feed whose reads it may keep.
struct CacheFeed {
    cache: Arc<SessionCache>,
    feed: Arc<dyn SessionFeed>,
}

impl SessionChecker {
    pub fn new(store: Arc<dyn SessionStore>, check: &SessionCheckConfig) -> Self {
        SessionChecker {
            store,
            memo: Memo::new(check.cache_entries.max(1024)),
            cache: None,
            breaker: Breaker::new(check.breaker_threshold, check.breaker_cool_down.0),
            misses: RecentMisses::default(),
            budget: MissBudget::default(),
        }
    }

    /// Serves sessions from `cache`, filled through `feed` (whose `run` must be driven by
    /// the caller, e.g. a background service).
    pub fn with_cache(mut self, cache: Arc<SessionCache>, feed: Arc<dyn SessionFeed>) -> Self {
        self.cache = Some(CacheFeed { cache, feed });
        self
    }

    /// The verdict for this cookie from `client` (its address) and the client's
    /// fingerprint (computed only once a session is found). `Err` means the store could not
    /// answer: the caller must fail closed. Malformed cookies never reach the store.
    pub async fn check(
        &self,
        rules: &SessionRules,
        cookie: CookieLookup<'_>,
        device: &Device<'_>,
    ) -> Result<Verdict, StoreError> {
        let client = device.ip;
        let token = match cookie {
            CookieLookup::Missing => return Ok(Verdict::Rejected(RejectReason::Missing)),
            CookieLookup::Many => return Ok(Verdict::Rejected(RejectReason::Ambiguous)),
            CookieLookup::One(v) => match SessionToken::parse(v) {
                Some(t) => t,
                None => return Ok(Verdict::Rejected(RejectReason::Malformed)),
            },
        };
        let (id, to_remember) = self.memo.session_id(&token);
        let now = authflow_shared::now_ms();
        let session = match self.find(rules, &id, client, now).await? {
            Found::Session(session) => {
                if let Some(tag) = to_remember {
                    self.memo.remember_id(tag, &id);
                }
                session
            }
            Found::Nothing => return Ok(Verdict::Rejected(RejectReason::Unknown)),
            Found::NotAsked(retry_after) => {
                return Ok(Verdict::Throttled(throttled(&rules.unknown, retry_after)))
            }
        };
        let record = &session.record;
        if let Some(expiry) = rules.expiry(record, session.last_seen(), now) {
            self.forget(&id, &record.user_id).await;
            return Ok(Verdict::Rejected(RejectReason::Expired(expiry)));
        }
        if record.held_since.is_some() {
            return Ok(Verdict::Rejected(RejectReason::Reauth));
        }
        // The same inputs as a request that matched give the same fingerprint: only new
        // inputs are hashed and compared.
        let device_tag = self.memo.device_tag(device);
        if !session.device_known(device_tag) {
            let fp = device.fingerprint();
            if !fingerprint::matches(&record.fingerprint, &fp) {
                return self.mismatch(rules, &id, record, &fp, now).await;
            }
            session.device_matched(device_tag);
        }
        session.saw(now);
        if session.claim_touch(now, rules.touch_interval.as_millis() as u64) {
            let ttl = record.ttl(now, rules.idle, rules.absolute);
            self.touch_later(id.clone(), now, ttl);
        }
        Ok(Verdict::Valid { id, session })
    }

    /// A request from another device than the session's: refused, and the session dealt
    /// with as `on_fingerprint_mismatch` says.
    async fn mismatch(
        &self,
        rules: &SessionRules,
        id: &str,
        record: &SessionRecord,
        fp: &str,
        now: u64,
    ) -> Result<Verdict, StoreError> {
        let replaced = record
            .replaced_fingerprint
            .as_deref()
            .is_some_and(|old| fingerprint::matches(old, fp));
        match rules.mismatch {
            MismatchPolicy::Revoke => self.forget(id, &record.user_id).await,
            MismatchPolicy::Reject => {}
            // The device a re-bind took the session from is refused; it cannot put the
            // session aside again.
            MismatchPolicy::Reauth if replaced => {}
            MismatchPolicy::Reauth => {
                self.hold(id, now, rules.reauth_hold).await?;
                return Ok(Verdict::Rejected(RejectReason::Reauth));
            }
        }
        Ok(Verdict::Rejected(RejectReason::FingerprintMismatch))
    }

    /// The session, from the cache when it holds it and it does not look idle (another
    /// instance may have seen activity since), else from the store; unless the cookie was
    /// just found unknown, or `client` has no lookups of unknown cookies left.
    async fn find(
        &self,
        rules: &SessionRules,
        id: &str,
        client: IpAddr,
        now: u64,
    ) -> Result<Found, StoreError> {
        if let Some(c) = &self.cache {
            if let Some(hit) = c.cache.get(id) {
                if rules.expiry(&hit.record, hit.last_seen(), now) != Some(Expiry::Idle) {
                    metrics::cache_lookup(CacheOutcome::Hit);
                    return Ok(Found::Session(hit));
                }
            }
        }
        let unknown = &rules.unknown;
        if self.misses.remembers(id, unknown) {
            return Ok(Found::Nothing);
        }
        if let Some(wait) = unknown.budget.and_then(|l| self.budget.take(client, &l)) {
            return Ok(Found::NotAsked(wait));
        }
        let cached = self.cache.as_ref().is_some_and(|c| c.cache.is_live());
        metrics::cache_lookup(if cached {
            CacheOutcome::Miss
        } else {
            CacheOutcome::Bypass
        });
        let looked = self.lookup(id).await;
        if let (Some(limit), false) = (&unknown.budget, matches!(looked, Ok(None))) {
            // Only misses spend the budget (an outage answers 503, not 429).
            self.budget.give_back(client, limit);
        }
        let Some(found) = looked? else {
            self.misses.missed(id, unknown);
            return Ok(Found::Nothing);
        };
        match self.keep(id, found).await {
            Some(entry) => Ok(Found::Session(entry)),
            None => {
                // It ended between the two reads.
                self.misses.missed(id, unknown);
                Ok(Found::Nothing)
            }
        }
    }

    /// A record the store just returned, cached when the cache is live: read again through
    /// the feed, tracked, and what that read returns is kept (it may have changed or ended
    /// since; `None`). If the feed cannot read it, the record is served uncached.
    async fn keep(&self, id: &str, found: SessionRecord) -> Option<Arc<Entry>> {
        let Some(c) = &self.cache else {
            return Some(Entry::detached(found));
        };
        let Some(ticket) = c.cache.ticket(id) else {
            return Some(Entry::detached(found));
        };
        match c.feed.track(id).await {
            Ok(Some(mut record)) => {
                record.last_seen_at = record.last_seen_at.max(found.last_seen_at);
                Some(c.cache.insert(id, record, ticket))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(session = log_id(id), error = %e, "tracked read failed: session served uncached");
                Some(Entry::detached(found))
            }
        }
    }

    /// The store's record, through the circuit breaker.
    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.guarded(self.store.lookup(id)).await
    }

    /// Runs a store read through the circuit breaker: while it is open, `Err` at once.
    async fn guarded(
        &self,
        read: impl std::future::Future<Output = Result<Option<SessionRecord>, StoreError>>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if !self.breaker.allow(authflow_shared::now_ms()) {
            return Err(StoreError::Unavailable("circuit open".into()));
        }
        match read.await {
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

    /// Puts session `id` aside from `now` for `hold` (`on_fingerprint_mismatch = "reauth"`):
    /// the record is re-written with `held_since` and expires after `hold` unless a sign-in
    /// re-binds it. Fails closed: if the store cannot do it, the request gets 503.
    async fn hold(&self, id: &str, now: u64, hold: Duration) -> Result<(), StoreError> {
        if let Some(c) = &self.cache {
            c.cache.remove(id);
        }
        let mark = move |r: &mut SessionRecord| r.held_since = Some(now);
        let reset = authflow_shared::store::Reset {
            record: hold,
            seen: None,
        };
        self.store.update(id, &mark, Some(reset)).await?;
        tracing::info!(
            session = log_id(id),
            "session put aside: another device, sign-in needed"
        );
        Ok(())
    }

    /// Deletes a dead session; a failure only leaves it to its Redis TTL.
    async fn forget(&self, id: &str, user_id: &str) {
        if let Some(c) = &self.cache {
            c.cache.remove(id);
        }
        if let Err(e) = self.store.delete(id, user_id).await {
            tracing::warn!(session = log_id(id), error = %e, "could not delete dead session");
        }
    }

    /// Records activity and extends the idle timeout, off the request path.
    fn touch_later(&self, id: String, now: u64, ttl: Duration) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch(&id, now, ttl).await {
                tracing::debug!(session = log_id(&id), error = %e, "session touch failed");
            }
        });
    }
}
