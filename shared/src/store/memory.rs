//! [`MemorySessionStore`]: sessions in this process, with Redis' semantics (TTLs, the per-user
//! index, revocation). For `authflow up`, where gateway and auth service share one process
//! and no Redis server is wanted.

use super::{LoginThrottle, SessionStore, StoreError};
use crate::session::SessionRecord;
use async_trait::async_trait;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, (SessionRecord, Instant)>,
    user_sessions: HashMap<String, HashSet<String>>,
    devices: HashMap<String, HashSet<String>>,
    /// account -> (failures, window end)
    login_failures: HashMap<String, (u64, Instant)>,
    /// account -> lock end
    login_locks: HashMap<String, Instant>,
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

    async fn touch(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        if let Some(entry) = g.sessions.get_mut(id) {
            if entry.1 > now {
                *entry = (record.clone(), now + ttl);
            }
        }
        Ok(())
    }

    async fn create(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut g = self.lock()?;
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

    async fn revoke_user(&self, user_id: &str) -> Result<usize, StoreError> {
        let mut g = self.lock()?;
        let ids = g.user_sessions.remove(user_id).unwrap_or_default();
        for id in &ids {
            g.sessions.remove(id);
        }
        Ok(ids.len())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.lock().map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

#[async_trait]
impl LoginThrottle for MemorySessionStore {
    async fn record_login_failure(
        &self,
        account: &str,
        window: Duration,
    ) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let now = Instant::now();
        let entry = g
            .login_failures
            .entry(account.to_owned())
            .or_insert((0, now + window));
        if entry.1 <= now {
            *entry = (0, now + window);
        }
        entry.0 += 1;
        Ok(entry.0)
    }

    async fn clear_login_failures(&self, account: &str) -> Result<(), StoreError> {
        self.lock()?.login_failures.remove(account);
        Ok(())
    }

    async fn lock_login(&self, account: &str, duration: Duration) -> Result<(), StoreError> {
        self.lock()?
            .login_locks
            .insert(account.to_owned(), Instant::now() + duration);
        Ok(())
    }

    async fn login_locked_for(&self, account: &str) -> Result<Option<Duration>, StoreError> {
        let now = Instant::now();
        Ok(self
            .lock()?
            .login_locks
            .get(account)
            .and_then(|end| end.checked_duration_since(now))
            .filter(|d| !d.is_zero()))
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
        s.create("a", &record("u"), Duration::from_secs(60))
            .await
            .expect("create");
        assert_eq!(
            s.lookup("a").await.expect("lookup").map(|r| r.user_id),
            Some("u".into())
        );
        s.delete("a", "u").await.expect("delete");
        assert!(s.lookup("a").await.expect("lookup").is_none());
        assert!(s.sessions_of("u").is_empty());
        s.touch("a", &record("u"), Duration::from_secs(60))
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
        s.create("a", &record("u"), Duration::from_millis(50))
            .await
            .expect("create");
        s.create("b", &record("u"), Duration::from_millis(50))
            .await
            .expect("create");
        s.touch("b", &record("u"), Duration::from_secs(60))
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
            s.create(id, &record("u"), Duration::from_secs(60))
                .await
                .expect("create");
        }
        s.create("d", &record("v"), Duration::from_secs(60))
            .await
            .expect("create");
        assert_eq!(s.revoke_user("u").await.expect("revoke"), 3);
        for id in ["a", "b", "c"] {
            assert!(s.lookup(id).await.expect("lookup").is_none());
        }
        assert!(s.lookup("d").await.expect("lookup").is_some());
    }

    #[tokio::test]
    async fn login_failures_count_in_a_window_and_locks_expire() {
        let s = MemorySessionStore::new();
        assert_eq!(
            s.record_login_failure("a", Duration::from_millis(60))
                .await
                .expect("incr"),
            1
        );
        assert_eq!(
            s.record_login_failure("a", Duration::from_millis(60))
                .await
                .expect("incr"),
            2
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            s.record_login_failure("a", Duration::from_millis(60))
                .await
                .expect("incr"),
            1,
            "window over"
        );
        s.clear_login_failures("a").await.expect("clear");
        assert_eq!(
            s.record_login_failure("a", Duration::from_secs(60))
                .await
                .expect("incr"),
            1
        );
        assert!(s.login_locked_for("a").await.expect("ttl").is_none());
        s.lock_login("a", Duration::from_millis(50))
            .await
            .expect("lock");
        assert!(s.login_locked_for("a").await.expect("ttl").is_some());
        tokio::time::sleep(Duration::from_millis(70)).await;
        assert!(s.login_locked_for("a").await.expect("ttl").is_none());
    }
}
