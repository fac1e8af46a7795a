//! [`RedisSessionStore`]: sessions in Redis through a fred pool, with the key layout of
//! [`crate::keys`]. Every operation is bounded by the configured timeout.

use super::{SessionStore, StoreError};
use crate::config::RedisConfig;
use crate::keys;
use crate::session::SessionRecord;
use async_trait::async_trait;
use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use std::future::Future;
use std::time::Duration;

/// Sessions in Redis through a fred connection pool.
#[derive(Clone)]
pub struct RedisSessionStore {
    pool: Pool,
    timeout: Duration,
}

impl RedisSessionStore {
    /// Builds the pool; nothing connects until [`RedisSessionStore::connect`] runs on a Tokio
    /// runtime. A password in `AUTHFLOW_REDIS_PASSWORD` overrides the URL's.
    pub fn new(cfg: &RedisConfig) -> Result<Self, StoreError> {
        let mut config =
            Config::from_url(&cfg.url).map_err(|e| StoreError::Config(e.details().to_owned()))?;
        if let Ok(pw) = std::env::var("AUTHFLOW_REDIS_PASSWORD") {
            if !pw.is_empty() {
                config.password = Some(pw);
            }
        }
        // Keep reconnecting in the background from the first attempt on: the gateway must
        // start, fail closed and recover by itself while Redis is away.
        config.fail_fast = false;
        let timeout = cfg.timeout.0;
        let pool = Builder::from_config(config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(1);
                c.internal_command_timeout = Duration::from_secs(1);
                c.max_command_attempts = 1;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
                c.unresponsive = UnresponsiveConfig {
                    max_timeout: Some(Duration::from_secs(2)),
                    interval: Duration::from_millis(500),
                };
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(ReconnectPolicy::new_exponential(0, 50, 1000, 2))
            .build_pool(cfg.pool_size)
            .map_err(|e| StoreError::Config(e.details().to_owned()))?;
        Ok(RedisSessionStore { pool, timeout })
    }

    /// Starts the connection tasks on the current Tokio runtime; they reconnect forever.
    pub fn connect(&self) {
        let _ = self.pool.connect_pool();
    }

    /// Waits up to `limit` for the first connection; `false` if Redis is not there yet.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.pool.wait_for_connect()).await,
            Ok(Ok(()))
        )
    }

    /// The underlying pool, for commands outside the session schema (e.g. rate counters).
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Runs one store operation under the configured timeout; a fred error or a timeout both
    /// mean "unavailable".
    async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, op).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    fn fast(&self) -> fred::clients::WithOptions<Pool> {
        self.pool.with_options(&Options {
            fail_fast: true,
            max_attempts: Some(1),
            timeout: Some(self.timeout),
            ..Default::default()
        })
    }
}

fn ms(d: Duration) -> i64 {
    d.as_millis().clamp(1, i64::MAX as u128) as i64
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let raw: Option<String> = self.bounded(self.fast().get(keys::session(id))).await?;
        raw.map(|s| serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()
    }

    async fn touch(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let fast = self.fast();
        let op = async {
            let _: Option<String> = fast
                .set(
                    keys::session(id),
                    json,
                    Some(Expiration::PX(ms(ttl))),
                    Some(SetOptions::XX),
                    false,
                )
                .await?;
            Ok(())
        };
        self.bounded(op).await
    }

    async fn create(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = crate::now_ms();
        let lifetime = Duration::from_millis(record.expires_at.saturating_sub(now));
        let uid = record.user_id.as_str();
        let profile = serde_json::json!({ "user_id": uid, "email": record.email }).to_string();
        let trx = self.pool.next().multi();
        let op = async {
            let _: () = trx
                .set(
                    keys::session(id),
                    json,
                    Some(Expiration::PX(ms(ttl))),
                    None,
                    false,
                )
                .await?;
            let _: () = trx.sadd(keys::user_sessions(uid), id).await?;
            // The index lives as long as the longest session it can hold.
            let _: () = trx
                .pexpire(keys::user_sessions(uid), ms(lifetime), None)
                .await?;
            let _: () = trx
                .sadd(keys::device(uid), record.fingerprint.as_str())
                .await?;
            let _: () = trx
                .expire(keys::device(uid), keys::DEVICE_TTL.as_secs() as i64, None)
                .await?;
            let user_id_ttl = keys::USER_ID_TTL.min(lifetime);
            let _: () = trx
                .set(
                    keys::user_id(id),
                    uid,
                    Some(Expiration::PX(ms(user_id_ttl))),
                    None,
                    false,
                )
                .await?;
            let _: () = trx
                .set(
                    keys::user_profile(uid),
                    profile,
                    Some(Expiration::EX(keys::USER_PROFILE_TTL.as_secs() as i64)),
                    None,
                    false,
                )
                .await?;
            let _: Value = trx.exec(true).await?;
            Ok(())
        };
        self.bounded(op).await
    }

    async fn delete(&self, id: &str, user_id: &str) -> Result<(), StoreError> {
        let trx = self.pool.next().multi();
        let op = async {
            let _: () = trx.del(keys::session(id)).await?;
            let _: () = trx.del(keys::user_id(id)).await?;
            let _: () = trx.srem(keys::user_sessions(user_id), id).await?;
            let _: Value = trx.exec(true).await?;
            Ok(())
        };
        self.bounded(op).await
    }

    async fn revoke_user(&self, user_id: &str) -> Result<usize, StoreError> {
        let ids: Vec<String> = self
            .bounded(self.fast().smembers(keys::user_sessions(user_id)))
            .await?;
        let trx = self.pool.next().multi();
        let n = ids.len();
        let op = async {
            for id in &ids {
                let _: () = trx.del(keys::session(id)).await?;
                let _: () = trx.del(keys::user_id(id)).await?;
            }
            let _: () = trx.del(keys::user_sessions(user_id)).await?;
            let _: Value = trx.exec(true).await?;
            Ok(())
        };
        self.bounded(op).await?;
        Ok(n)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(self.fast().ping::<String>(None))
            .await
            .map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
