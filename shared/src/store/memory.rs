//! [`MemorySessionStore`]: sessions in this process, with Redis' semantics (TTLs, the per-user
//! index, revocation). For `authflow up`, where gateway and auth service share one process
//! and no Redis server is wanted.

use super::{Attempt, LoginThrottle, SessionStore, ShortLived, StoreError, ThrottlePolicy};
use crate::session::SessionRecord;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Attempts {
    recent: Vec<u64>,
    total: u32,
    locked_until: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, (SessionRecord, Instant)>,
    user_sessions: HashMap<String, HashSet<String>>,
    devices: HashMap<String, HashSet<String>>,
    /// user -> Unix ms of the last revoke-all
    revoked_before: HashMap<String, u64>,
    /// account -> the attempt times in the window, the total since the last success, and the
    /// lock end
    attempts: HashMap<String, Attempts>,
    /// address -> end of its mail cooldown
    mail_cooldowns: HashMap<String, Instant>,
    /// key -> value and its end ([`ShortLived`])
    short_lived: HashMap<String, (String, Instant)>,
    writes: u64,
}

impl Inner {
    /// Drops expired sessions and their index entries (run every so many writes).
    fn sweep(&mut self, now: Instant) {
        let dead: Vec<(String, String)> = self
            .sessions
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(id, (r, _))| (id.clone(), r.user_id.clone()))
            .collect();
        for (id, user) in dead {
            self.remove(&id, &user);
        }
    }

    fn remove(&mut self, id: &str, user_id: &str) {
        self.sessions.remove(id);
        if let Some(set) = self.user_sessions.get_mut(user_id) {
            set.remove(id);
            if set.is_empty() {
                self.user_sessions.remove(user_id);
            }
        }
    }
}

/// In-process session store.
#[derive(Default)]
pub struct MemorySessionStore {
    inner: Mutex<Inner>,
}

impl MemorySessionStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }

    /// Ids of the live sessions of `user_id` (for tests and listings).
    pub fn sessions_of(&self, user_id: &str) -> Vec<String> {
        self.lock()
            .map(|g| {
                g.user_sessions
                    .get(user_id)
                    .map(|s| s.iter().cloned().collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    /// Exact: the sessions not yet past their idle or absolute end.
    async fn count_active(&self) -> Result<u64, StoreError> {
        let g = self.lock()?;
        let now = Instant::now();
        Ok(g.sessions.values().filter(|(_, exp)| *exp > now).count() as u64)
    }

    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        match g.sessions.get(id) {
            Some((r, exp)) if *exp > now => Ok(Some(r.clone())),
            Some((r, _)) => {
                let user = r.user_id.clone();
                g.remove(id, &user);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn touch(&self, id: &str, seen_ms: u64, ttl: Duration) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        if let Some((record, expires)) = g.sessions.get_mut(id) {
            if *expires > now {
                record.last_seen_at = record.last_seen_at.max(seen_ms);
                *expires = now + ttl;
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
        checked_at_us: u64,
    ) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.revoked_before
            .get(&record.user_id)
            .is_some_and(|mark| *mark >= checked_at_us)
        {
            return Err(StoreError::Revoked);
        }
        let now = Instant::now();
        g.writes += 1;
        if g.writes % 1024 == 0 {
            g.sweep(now);
        }
        g.sessions
            .insert(id.to_owned(), (record.clone(), now + ttl));
        g.user_sessions
            .entry(record.user_id.clone())
            .or_default()
            .insert(id.to_owned());
        g.devices
            .entry(record.user_id.clone())
            .or_default()
            .insert(record.fingerprint.clone());
        Ok(())
    }

    async fn delete(&self, id: &str, user_id: &str) -> Result<(), StoreError> {
        self.lock()?.remove(id, user_id);
        Ok(())
    }

    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let mut g = self.lock()?;
        g.revoked_before.insert(user_id.to_owned(), crate::now_us());
        let mut ids = g.user_sessions.remove(user_id).unwrap_or_default();
        if let Some(kept) = keep.filter(|k| ids.remove(*k)) {
            g.user_sessions
                .insert(user_id.to_owned(), HashSet::from([kept.to_owned()]));
        }
        for id in &ids {
            g.sessions.remove(id);
        }
        Ok(ids.len())
    }

    async fn update(
        &self,
        id: &str,
        change: &super::RecordChange,
        ttl: Option<super::Reset>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        let Some((record, exp)) = g.sessions.get_mut(id).filter(|(_, exp)| *exp > now) else {
            return Ok(None);
        };
        change(record);
        if let Some(reset) = ttl {
            *exp = now + reset.record;
            if let Some((seen, _)) = reset.seen {
                record.last_seen_at = record.last_seen_at.max(seen);
            }
        }
        Ok(Some(record.clone()))
    }

    async fn set_roles(&self, user_id: &str, roles: &[String]) -> Result<usize, StoreError> {
        let mut g = self.lock()?;
        g.revoked_before.insert(user_id.to_owned(), crate::now_us());
        let ids = g.user_sessions.get(user_id).cloned().unwrap_or_default();
        let mut n = 0;
        for id in ids {
            if let Some((record, _)) = g.sessions.get_mut(&id) {
                record.claims.roles = roles.to_vec();
                n += 1;
            }
        }
        Ok(n)
    }

    async fn list_user(&self, user_id: &str) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let g = self.lock()?;
        let now = Instant::now();
        let ids = g.user_sessions.get(user_id).cloned().unwrap_or_default();
        Ok(ids
            .into_iter()
            .filter_map(|id| match g.sessions.get(&id) {
                Some((r, exp)) if *exp > now => Some((id, r.clone())),
                _ => None,
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl ShortLived for MemorySessionStore {
    async fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        g.short_lived.retain(|_, (_, end)| *end > now);
        if g.short_lived.contains_key(key) {
            return Ok(false);
        }
        g.short_lived
            .insert(key.to_owned(), (value.to_owned(), now + ttl));
        Ok(true)
    }

    async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut g = self.lock()?;
        Ok(g.short_lived
            .remove(key)
            .filter(|(_, end)| *end > Instant::now())
            .map(|(v, _)| v))
    }

    async fn advance(&self, key: &str, value: u64, ttl: Duration) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        let current = g
            .short_lived
            .get(key)
            .filter(|(_, end)| *end > now)
            .and_then(|(v, _)| v.parse::<u64>().ok());
        if current.is_some_and(|c| c >= value) {
            return Ok(false);
        }
        g.short_lived
            .insert(key.to_owned(), (value.to_string(), now + ttl));
        Ok(true)
    }
}

#[async_trait]
impl LoginThrottle for MemorySessionStore {
    async fn begin_attempt(
        &self,
        account: &str,
        policy: &ThrottlePolicy,
    ) -> Result<Attempt, StoreError> {
        let mut g = self.lock()?;
        let (now, now_ms, now_us) = (Instant::now(), crate::now_ms(), crate::now_us());
        let a = g.attempts.entry(account.to_owned()).or_default();
        if a.total >= policy.hard_cap {
            return Ok(Attempt::Capped);
        }
        if let Some(left) = a
            .locked_until
            .and_then(|end| end.checked_duration_since(now))
        {
            if !left.is_zero() {
                return Ok(Attempt::Locked(left));
            }
        }
        let window = policy.window.as_millis() as u64;
        a.recent.retain(|t| t + window > now_ms);
        a.recent.push(now_ms);
        a.total += 1;
        if let Some(lock) = policy.lock_for(a.recent.len() as u64) {
            a.locked_until = Some(now + lock);
        }
        Ok(Attempt::Allowed { at_us: now_us })
    }

    async fn clear_attempts(&self, account: &str) -> Result<(), StoreError> {
        self.lock()?.attempts.remove(account);
        Ok(())
    }

    async fn mail_allowed(&self, address: &str, cooldown: Duration) -> Result<bool, StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        match g.mail_cooldowns.get(address) {
            Some(end) if *end > now => Ok(false),
            _ => {
                g.mail_cooldowns.insert(address.to_owned(), now + cooldown);
                Ok(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str) -> SessionRecord {
        SessionRecord::new(user, None, "fp", crate::now_ms(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn create_lookup_touch_delete() {
        let s = MemorySessionStore::new();
        s.create("a", &record("u"), Duration::from_secs(60), crate::now_us())
            .await
            .expect("create");
        assert_eq!(
            s.lookup("a").await.expect("lookup").map(|r| r.user_id),
            Some("u".into())
        );
        s.delete("a", "u").await.expect("delete");
        assert!(s.lookup("a").await.expect("lookup").is_none());
        assert!(s.sessions_of("u").is_empty());
        s.touch("a", 1, Duration::from_secs(60))
            .await
            .expect("touch");
        assert!(
            s.lookup("a").await.expect("lookup").is_none(),
            "touch must not resurrect"
        );
    }

    #[tokio::test]
    async fn ttl_expires_sessions_and_touch_extends_them() {
        let s = MemorySessionStore::new();
        s.create(
            "a",
            &record("u"),
            Duration::from_millis(50),
            crate::now_us(),
        )
        .await
        .expect("create");
        s.create(
            "b",
            &record("u"),
            Duration::from_millis(50),
            crate::now_us(),
        )
        .await
        .expect("create");
        s.touch("b", 1, Duration::from_secs(60))
            .await
            .expect("touch");
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(s.lookup("a").await.expect("lookup").is_none());
        assert!(s.lookup("b").await.expect("lookup").is_some());
        assert_eq!(s.sessions_of("u"), vec!["b".to_string()]);
    }

    #[tokio::test]
    async fn revoke_user_removes_every_session_of_that_user_only() {
        let s = MemorySessionStore::new();
        for id in ["a", "b", "c"] {
            s.create(id, &record("u"), Duration::from_secs(60), crate::now_us())
                .await
                .expect("create");
        }
        s.create("d", &record("v"), Duration::from_secs(60), crate::now_us())
            .await
            .expect("create");
        assert_eq!(s.revoke_user("u", None).await.expect("revoke"), 3);
        for id in ["a", "b", "c"] {
            assert!(s.lookup(id).await.expect("lookup").is_none());
        }
        assert!(s.lookup("d").await.expect("lookup").is_some());
    }

    #[tokio::test]
    async fn revoke_user_can_keep_one_session_and_still_marks_the_time() {
        let s = MemorySessionStore::new();
        let began = crate::now_us();
        for id in ["a", "b"] {
            s.create(id, &record("u"), Duration::from_secs(60), began)
                .await
                .expect("create");
        }
        assert_eq!(s.revoke_user("u", Some("a")).await.expect("revoke"), 1);
        assert!(s.lookup("a").await.expect("lookup").is_some());
        assert!(s.lookup("b").await.expect("lookup").is_none());
        assert_eq!(s.sessions_of("u"), vec!["a".to_string()]);
        // A sign-in that began checking before the revoke may not create a session.
        let late = s
            .create("c", &record("u"), Duration::from_secs(60), began)
            .await;
        assert!(matches!(late, Err(StoreError::Revoked)), "{late:?}");
    }

    fn policy() -> ThrottlePolicy {
        ThrottlePolicy {
            lock_after: 3,
            window: Duration::from_secs(60),
            max_lock: Duration::from_millis(50),
            hard_cap: 5,
        }
    }

    #[tokio::test]
    async fn attempts_lock_from_the_threshold_and_cap_until_cleared() {
        let s = MemorySessionStore::new();
        let p = policy();
        for _ in 0..3 {
            assert!(matches!(
                s.begin_attempt("a", &p).await.expect("attempt"),
                Attempt::Allowed { .. }
            ));
        }
        assert!(matches!(
            s.begin_attempt("a", &p).await.expect("attempt"),
            Attempt::Locked(_)
        ));
        assert!(matches!(
            s.begin_attempt("b", &p).await.expect("attempt"),
            Attempt::Allowed { .. }
        ));
        tokio::time::sleep(Duration::from_millis(70)).await;
        for _ in 0..2 {
            let _ = s.begin_attempt("a", &p).await.expect("attempt");
            tokio::time::sleep(Duration::from_millis(70)).await;
        }
        assert_eq!(
            s.begin_attempt("a", &p).await.expect("attempt"),
            Attempt::Capped
        );
        s.clear_attempts("a").await.expect("clear");
        assert!(matches!(
            s.begin_attempt("a", &p).await.expect("attempt"),
            Attempt::Allowed { .. }
        ));
    }

    #[tokio::test]
    async fn a_revoke_refuses_sessions_of_sign_ins_that_began_before_it() {
        let s = MemorySessionStore::new();
        let r = SessionRecord::new("u", None, "fp", crate::now_ms(), Duration::from_secs(60));
        let before = crate::now_us();
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.revoke_user("u", None).await.expect("revoke");
        assert!(matches!(
            s.create("x", &r, Duration::from_secs(60), before).await,
            Err(StoreError::Revoked)
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        s.create("y", &r, Duration::from_secs(60), crate::now_us())
            .await
            .expect("a later sign-in");
    }

    #[tokio::test]
    async fn mail_cooldown_allows_one_per_period() {
        let s = MemorySessionStore::new();
        let d = Duration::from_millis(40);
        assert!(s.mail_allowed("x", d).await.expect("cooldown"));
        assert!(!s.mail_allowed("x", d).await.expect("cooldown"));
        assert!(s.mail_allowed("y", d).await.expect("cooldown"));
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(s.mail_allowed("x", d).await.expect("cooldown"));
    }
}
