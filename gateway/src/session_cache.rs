//! A bounded in-process cache of session records, kept coherent by the store's change feed
//! (Redis client tracking): a hit costs no Redis command, and a logout, reset or revoke
//! made anywhere reaches the cache before the client can send its next request.
//!
//! Only records read while the feed is live are kept, and only if no change of that
//! session (and no reset) was reported while the read was under way: a read is issued with
//! a [`Ticket`] taken before it, and the insert re-checks the ticket after it is in the
//! map. Whichever of "insert" and "invalidate" runs second wins, so a record that changed
//! during its read is never kept.

use authflow_shared::session::SessionRecord;
use authflow_shared::store::ChangeSink;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Per-shard change counters: an invalidation of one session only spoils the reads under
/// way in its shard, not every read in the process.
const EPOCH_SHARDS: usize = 64;

/// One cached session.
#[derive(Debug)]
pub struct Entry {
    pub record: SessionRecord,
    /// The latest activity this instance knows of (Unix ms): the record's, or a request's.
    seen: AtomicU64,
    /// When this instance last recorded activity in the store (Unix ms).
    touched: AtomicU64,
    /// The identity headers for upstreams, made at the first request that forwards them
    /// (once per cached record, not once per request).
    identity: OnceLock<IdentityHeaders>,
    /// The tag of the fingerprint inputs that matched this record ([`crate::memo`]): every
    /// request that matches has the same inputs, so one tag is all there is to remember.
    device: OnceLock<u128>,
}

/// `X-User-Id`, `X-User-Email` and `X-User-Roles` of a session as header values, made when
/// the record is read (a cache hit then clones a reference count instead of copying and
/// checking three strings). `None` when the record has no such value, or one that cannot be
/// a header value: the proxy then converts the record's own value, and fails the request
/// as it always did.
#[derive(Debug)]
pub struct IdentityHeaders {
    pub user_id: Option<http::HeaderValue>,
    pub email: Option<http::HeaderValue>,
    pub roles: Option<http::HeaderValue>,
}

impl IdentityHeaders {
    fn of(record: &SessionRecord) -> Self {
        let value = |s: &str| http::HeaderValue::from_str(s).ok();
        let roles = &record.claims.roles;
        IdentityHeaders {
            user_id: value(&record.user_id),
            email: record.email.as_deref().and_then(value),
            roles: (!roles.is_empty())
                .then(|| value(&authflow_shared::roles::header_value(roles)))
                .flatten(),
        }
    }
}

impl Entry {
    fn new(record: SessionRecord) -> Self {
        let at = record.last_seen_at;
        Entry {
            identity: OnceLock::new(),
            device: OnceLock::new(),
            record,
            seen: AtomicU64::new(at),
            touched: AtomicU64::new(at),
        }
    }

    /// An entry that is not in the cache (cache off, or its feed down).
    pub fn detached(record: SessionRecord) -> Arc<Entry> {
        Arc::new(Entry::new(record))
    }

    /// `X-User-Id`, `X-User-Email` and `X-User-Roles` of this session as header values.
    pub fn identity(&self) -> &IdentityHeaders {
        self.identity
            .get_or_init(|| IdentityHeaders::of(&self.record))
    }

    /// Whether fingerprint inputs with this tag matched the record before.
    pub fn device_known(&self, tag: Option<u128>) -> bool {
        tag.is_some() && self.device.get() == tag.as_ref()
    }

    /// Fingerprint inputs with this tag matched the record.
    pub fn device_matched(&self, tag: Option<u128>) {
        if let Some(t) = tag {
            let _ = self.device.set(t);
        }
    }

    /// The latest activity this instance knows of.
    pub fn last_seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// A request used the session at `now`. Writes at most once a second, so two threads
    /// serving one session do not fight over the cache line.
    pub fn saw(&self, now: u64) {
        if now >= self.seen.load(Ordering::Relaxed) + 1_000 {
            self.seen.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Whether activity at `now` should be written to the store: at most once per
    /// `interval_ms` per instance, and only by one request.
    pub fn claim_touch(&self, now: u64, interval_ms: u64) -> bool {
        let last = self.touched.load(Ordering::Relaxed);
        now.saturating_sub(last) >= interval_ms
            && self
                .touched
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// What the cache looked like when a read began.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    generation: u64,
    epoch: u64,
    shard: usize,
}

/// The cache. Shared by every worker thread; the feed calls it as its [`ChangeSink`].
pub struct SessionCache {
    entries: quick_cache::sync::Cache<String, Arc<Entry>>,
    live: AtomicBool,
    generation: AtomicU64,
    epochs: Vec<AtomicU64>,
}

impl SessionCache {
    /// A cache of at most `capacity` sessions; not live until the feed says so.
    pub fn new(capacity: usize) -> Self {
        SessionCache {
            entries: quick_cache::sync::Cache::new(capacity.max(1)),
            live: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            epochs: (0..EPOCH_SHARDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// The cached session `id`, while the feed is live.
    pub fn get(&self, id: &str) -> Option<Arc<Entry>> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        self.entries.get(id)
    }

    /// Taken before a read whose result may be kept; `None` while the feed is down.
    pub fn ticket(&self, id: &str) -> Option<Ticket> {
        let generation = self.generation.load(Ordering::SeqCst);
        if !self.live.load(Ordering::SeqCst) {
            return None;
        }
        let shard = shard_of(id);
        Some(Ticket {
            generation,
            epoch: self.epochs[shard].load(Ordering::SeqCst),
            shard,
        })
    }

    /// Keeps `record`, read under `ticket`, unless something changed since; returns the entry
    /// the request should use either way.
    pub fn insert(&self, id: &str, record: SessionRecord, ticket: Ticket) -> Arc<Entry> {
        let entry = Arc::new(Entry::new(record));
        self.entries.insert(id.to_owned(), entry.clone());
        let spoiled = self.generation.load(Ordering::SeqCst) != ticket.generation
            || self.epochs[ticket.shard].load(Ordering::SeqCst) != ticket.epoch;
        if spoiled {
            self.entries.remove_if(id, |e| Arc::ptr_eq(e, &entry));
        }
        entry
    }

    /// Drops session `id` (this instance ended it, or found it dead).
    pub fn remove(&self, id: &str) {
        self.entries.remove(id);
    }

    /// Whether entries are being served (the feed is connected and tracking).
    pub fn is_live(&self) -> bool {
        self.live.load(Ordering::Acquire)
    }

    /// How many sessions are cached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl ChangeSink for SessionCache {
    fn changed(&self, id: &str) {
        self.epochs[shard_of(id)].fetch_add(1, Ordering::SeqCst);
        self.entries.remove(id);
        crate::metrics::cache_invalidated();
    }

    fn reset(&self, live: bool) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.live.store(live, Ordering::SeqCst);
        self.entries.clear();
        crate::metrics::cache_reset(live);
    }
}

/// The epoch shard of a session id (its last hex digits; ids are SHA-256 hex).
fn shard_of(id: &str) -> usize {
    let tail = id.as_bytes().iter().rev().take(2);
    tail.fold(0usize, |acc, b| acc * 31 + *b as usize) % EPOCH_SHARDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str) -> SessionRecord {
        SessionRecord::new(user, None, "fp", 1_000, std::time::Duration::from_secs(60))
    }

    #[test]
    fn nothing_is_served_or_kept_until_the_feed_is_live() {
        let cache = SessionCache::new(10);
        assert!(cache.ticket("a").is_none());
        cache.reset(true);
        let t = cache.ticket("a").expect("live");
        cache.insert("a", record("u"), t);
        assert_eq!(cache.get("a").expect("hit").record.user_id, "u");
        cache.reset(false);
        assert!(cache.get("a").is_none());
        assert!(cache.ticket("a").is_none());
    }

    #[test]
    fn a_change_during_the_read_spoils_the_insert() {
        let cache = SessionCache::new(10);
        cache.reset(true);
        let t = cache.ticket("ab").expect("live");
        cache.changed("ab"); // the record changed while it was being read
        let entry = cache.insert("ab", record("u"), t);
        assert_eq!(
            entry.record.user_id, "u",
            "the request still gets what it read"
        );
        assert!(
            cache.get("ab").is_none(),
            "but the stale record is not kept"
        );
        // A reset during the read spoils it too.
        let t = cache.ticket("ab").expect("live");
        cache.reset(true);
        cache.insert("ab", record("u"), t);
        assert!(cache.get("ab").is_none());
    }

    #[test]
    fn a_change_after_the_insert_removes_the_entry() {
        let cache = SessionCache::new(10);
        cache.reset(true);
        let t = cache.ticket("cd").expect("live");
        cache.insert("cd", record("u"), t);
        assert!(cache.get("cd").is_some());
        cache.changed("cd");
        assert!(cache.get("cd").is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let cache = SessionCache::new(100);
        cache.reset(true);
        for i in 0..1_000 {
            let id = format!("{i:064x}");
            let t = cache.ticket(&id).expect("live");
            cache.insert(&id, record("u"), t);
        }
        assert!(cache.len() <= 110, "{} entries", cache.len());
    }

    #[test]
    fn touches_are_claimed_once_per_interval() {
        let entry = Entry::new(record("u"));
        assert!(!entry.claim_touch(1_500, 1_000));
        assert!(entry.claim_touch(2_000, 1_000));
        assert!(!entry.claim_touch(2_500, 1_000));
        assert!(entry.claim_touch(3_000, 1_000));
    }
}
