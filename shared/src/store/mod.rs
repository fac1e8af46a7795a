//! The session store: one trait, so the request path does not care where sessions live.
//! [`RedisSessionStore`] is the production implementation (key layout in [`crate::keys`]);
//! [`MemorySessionStore`] keeps the same semantics in-process for `authflow up`.

mod memory;
mod redis;

pub use memory::MemorySessionStore;
pub use redis::RedisSessionStore;

use crate::session::SessionRecord;
use async_trait::async_trait;
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
}

/// What both services do with sessions. `id` is always the hashed id from
/// [`crate::token::SessionToken::id`], never the token itself.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// The record of session `id`, or `None` when there is none.
    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Rewrites the record with a new `last_seen_at` and TTL, only if the session still
    /// exists (a concurrent logout wins).
    async fn touch(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Stores a new session and its index entries in one atomic step.
    async fn create(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError>;
    /// Deletes session `id` of `user_id` and its index entries.
    async fn delete(&self, id: &str, user_id: &str) -> Result<(), StoreError>;
    /// Deletes every session of `user_id`; returns how many there were.
    async fn revoke_user(&self, user_id: &str) -> Result<usize, StoreError>;
    /// Succeeds when the store answers now.
    async fn ping(&self) -> Result<(), StoreError>;
    /// What the store is (`"redis"`, `"memory"`), for health reports.
    fn kind(&self) -> &'static str;
}

/// The per-account sign-in throttle's counters. Its own trait, kept apart from
/// [`SessionStore`]: only the auth service uses it, and the gateway never sees it. `account`
/// is a hash of the normalized email, so unknown addresses are throttled alike.
#[async_trait]
pub trait LoginThrottle: Send + Sync {
    /// Counts a failed sign-in of `account` in a window of `window`; returns the count.
    async fn record_login_failure(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<u64, StoreError>;
    /// Forgets the failures of `account` (after a successful sign-in).
    async fn clear_login_failures(&self, account: &str) -> Result<(), StoreError>;
    /// Locks sign-in to `account` for `duration`.
    async fn lock_login(&self, account: &str, duration: Duration) -> Result<(), StoreError>;
    /// Time left on the sign-in lock of `account`, if locked.
    async fn login_locked_for(&self, account: &str) -> Result<Option<Duration>, StoreError>;
}
