//! The session store: one trait, so the request path does not care where sessions live.
//! [`RedisSessionStore`] is the production implementation (key layout in [`crate::keys`]);
//! [`MemorySessionStore`] keeps the same semantics in-process for `authflow up`.

mod codec;
mod feed;
mod memory;
pub mod op_metrics;
mod redis;

pub use feed::RedisFeed;
pub use memory::MemorySessionStore;
pub use redis::RedisSessionStore;

use crate::session::SessionRecord;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// Why the store could not answer. Either way the caller must fail closed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer in time, or the connection is down.
    #[error("session store unavailable: {0}")]
    Unavailable(String),
    /// A stored record could not be decoded.
    #[error("corrupt session record: {0}")]
    Corrupt(String),
    /// The store configuration is unusable.
    #[error("session store configuration: {0}")]
    Config(String),
    /// The user's sessions were revoked (password reset) after this sign-in began checking
    /// credentials: the password it checked may be the old one, so no session is created.
    #[error("sessions revoked during sign-in")]
    Revoked,
}

/// What both services do with sessions. `id` is always the hashed id from
/// [`crate::token::SessionToken::id`], never the token itself.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The record of session `id`, or `None` when there is none. Its `last_seen_at` is the
    /// latest activity any instance recorded.
    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Records activity at `seen_ms` and extends the idle timeout to `ttl`, only if the
    /// session still exists (a concurrent logout wins). Never rewrites the record itself, so
    /// caches of it stay valid.
    async fn touch(&self, id: &str, seen_ms: u64, ttl: Duration) -> Result<(), StoreError>;
    /// Stores a new session and its index entries in one atomic step, unless the user's
    /// sessions were revoked after `checked_at_us` (when the sign-in began checking the
    /// password, in µs on the store's clock: [`Attempt::Allowed`]); then [`StoreError::Revoked`].
    async fn create(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
        checked_at_us: u64,
    ) -> Result<(), StoreError>;
    /// Deletes session `id` of `user_id` and its index entries.
    async fn delete(&self, id: &str, user_id: &str) -> Result<(), StoreError>;
    /// Deletes every session of `user_id` but `keep` in one atomic step and marks the time,
    /// so that a sign-in already under way cannot create a session afterwards; returns how
    /// many ended.
    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError>;
    /// Re-writes session `id`'s record with `change` (compare-and-set against what was read,
    /// retried a few times), so every gateway cache tracking it drops it. `ttl`: the record's
    /// new TTL and `seen:{id}`'s (its value set to now when given a value), or `None` to keep
    /// both. `Ok(None)` when the session does not exist; else the record as written.
    async fn update(
        &self,
        id: &str,
        change: &RecordChange,
        ttl: Option<Reset>,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// Writes `roles` (normalized) into every live session of `user_id` and returns how many
    /// were re-written. First marks the time as [`SessionStore::revoke_user`] does, so a
    /// sign-in that read the old roles before the change cannot create its session after
    /// this sweep. Each record is re-written (compare-and-set, keeping its TTL), so every
    /// gateway's cache, which tracks the record, drops it and reads the new roles on the
    /// session's next request: nothing is checked per request beyond the record itself.
    async fn set_roles(&self, user_id: &str, roles: &[String]) -> Result<usize, StoreError>;
    /// Every live session of `user_id`, with its id (from the `user_sessions` index; entries
    /// whose session has ended are dropped from the index on the way).
    async fn list_user(&self, user_id: &str) -> Result<Vec<(String, SessionRecord)>, StoreError>;
    /// About how many sessions are active within the idle timeout (for a metric; see each
    /// store for how exact). Walks the whole store: call it seldom.
    async fn count_active(&self) -> Result<u64, StoreError>;
    /// Succeeds when the store answers now.
    async fn ping(&self) -> Result<(), StoreError>;
    /// What the store is (`"redis"`, `"memory"`), for health reports.
    fn kind(&self) -> &'static str;
    /// The store's change feed, when it has one (Redis: client tracking), for a cache of
    /// records that must learn of every change at once.
    fn feed(&self) -> Option<Arc<dyn SessionFeed>> {
        None
    }
}

/// A change to a session record ([`SessionStore::update`]).
pub type RecordChange = dyn Fn(&mut SessionRecord) + Send + Sync;

/// New TTLs for a re-written session ([`SessionStore::update`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// The record's.
    pub record: Duration,
    /// `seen:{id}`: set to `Some((activity ms, TTL))`, or `None` to expire with the record.
    pub seen: Option<(u64, Duration)>,
}

/// Told by a [`SessionFeed`] what changed in the store. The gateway's session cache.
pub trait ChangeSink: Send + Sync {
    /// Session `id`'s record changed or went away.
    fn changed(&self, id: &str);
    /// Anything may have changed (the feed's connection dropped, or the server flushed):
    /// forget everything. `live` says whether the feed now reports changes; while it does
    /// not, records must not be kept.
    fn reset(&self, live: bool);
}

/// Reads whose later changes the store reports, and the loop that reports them.
///
/// Only records that exist are followed: a caller looks a session up with
/// [`SessionStore::lookup`] (which the store does not follow) and calls
/// [`SessionFeed::track`] only for a record it found and will keep, so cookies that name
/// no session (a flood of guesses) cost the store no memory.
#[async_trait]
pub trait SessionFeed: Send + Sync {
    /// Reads session `id`'s record again, so that from now on a change of it reaches the
    /// sink given to [`SessionFeed::run`]; keep what this returns, not the earlier read (the
    /// record may have changed or ended in between: `None`). Its `last_seen_at` is the
    /// record's own; the latest activity comes with [`SessionStore::lookup`]. `Err` also
    /// when the feed is down.
    async fn track(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Keeps the feed connected and reports to `sink` until the process ends: reconnects by
    /// itself, and calls [`ChangeSink::reset`] on every drop and every new connection.
    async fn run(&self, sink: Arc<dyn ChangeSink>);
}

/// The sign-in throttle's policy (`[throttle]` in `auth.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Unsuccessful attempts within `window` from which the account is locked.
    pub lock_after: u32,
    /// The sliding window the attempts are counted in.
    pub window: Duration,
    /// The longest lock (locks double from 1 s up to this).
    pub max_lock: Duration,
    /// Unsuccessful attempts since the last success after which only a password reset
    /// unlocks the account.
    pub hard_cap: u32,
}

impl ThrottlePolicy {
    /// The lock after the `attempts`-th attempt in the window: none below `lock_after`, then
    /// 1 s, 2 s, 4 s... up to `max_lock`. (The Redis script computes the same.)
    pub fn lock_for(&self, attempts: u64) -> Option<Duration> {
        let over = attempts.checked_sub(u64::from(self.lock_after))?;
        let doublings = over.min(20) as u32;
        Some((Duration::from_secs(1) * 2u32.pow(doublings)).min(self.max_lock))
    }
}

/// What the throttle says about a sign-in attempt, decided before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead; the attempt is already counted as unsuccessful until
    /// [`LoginThrottle::clear_attempts`]. `at_us` is the store's clock in µs, for
    /// [`SessionStore::create`].
    Allowed { at_us: u64 },
    /// Locked for this long.
    Locked(Duration),
    /// Past the hard cap: only a password reset unlocks.
    Capped,
}

/// The per-account sign-in throttle and the per-address mail cooldown. Its own trait, kept
/// apart from [`SessionStore`]: only the auth service uses it, and the gateway never sees
/// it. `account` and `address` are hashes of the normalized email, so unknown addresses are
/// treated alike.
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// In one atomic step: refuses a locked or capped account, else counts this attempt as
    /// unsuccessful (so parallel guesses are all counted before any password is checked) and
    /// locks the account for the next ones once there are too many.
    async fn begin_attempt(
        &self,
        account: &str,
        policy: &ThrottlePolicy,
    ) -> Result<Attempt, StoreError>;
    /// After a successful sign-in or a password reset: forgets attempts, lock and cap.
    async fn clear_attempts(&self, account: &str) -> Result<(), StoreError>;
    /// Whether a mail may go to `address` now; at most one per `cooldown`.
    async fn mail_allowed(&self, address: &str, cooldown: Duration) -> Result<bool, StoreError>;
}

/// Small records that live a few minutes and are used once: the state of a provider sign-in
/// between its redirect and its callback, an account link waiting for its password. In the
/// shared store, so that any auth instance can finish what another began.
#[async_trait]
pub trait ShortLived: Send + Sync {
    /// Stores `value` under `key` for `ttl`, unless the key exists (`Ok(false)`).
    async fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError>;
    /// Returns the value under `key` and deletes it in the same step: two callers can never
    /// both get it.
    async fn take(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Raises the number under `key` to `value` (kept for `ttl`) if it is below it, in one
    /// step; `Ok(false)` when it already is `value` or more. A one-time code's time step is
    /// accepted once this way, by whichever auth instance sees it first.
    async fn advance(&self, key: &str, value: u64, ttl: Duration) -> Result<bool, StoreError>;
}

/// What the auth service keeps in the shared store besides sessions.
pub trait AuthStore: LoginThrottle + ShortLived {}

impl<T: LoginThrottle + ShortLived> AuthStore for T {}

/// A GCRA decision taken in the shared store ([`SharedLimits::gcra`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedDecision {
    pub allowed: bool,
    /// When refused: µs until a request conforms.
    pub wait_us: u64,
    /// When allowed: how many more would be allowed now.
    pub remaining: u64,
}

/// Rate limits shared by every gateway on one store (`scope = "global"` rules): one atomic
/// GCRA step per decision, on the store's clock.
#[async_trait]
pub trait SharedLimits: Send + Sync {
    /// Counts a request against `key`: one per `interval_us`, running at most
    /// `tolerance_us` ahead (the burst).
    async fn gcra(
        &self,
        key: &str,
        interval_us: u64,
        tolerance_us: u64,
    ) -> Result<SharedDecision, StoreError>;
}
