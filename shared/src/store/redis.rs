//! [`RedisSessionStore`]: sessions in Redis through a fred pool, with the key layout of
//! [`crate::keys`]. Every operation is bounded by the configured timeout.

use super::codec::{decode, session_keys};
use super::feed::RedisFeed;
use super::op_metrics::{self, Op};
use super::{
    Attempt, LoginThrottle, SessionFeed, SessionStore, SharedDecision, SharedLimits, ShortLived,
    StoreError, ThrottlePolicy,
};
use crate::config::RedisConfig;
use crate::keys;
use crate::session::SessionRecord;
use async_trait::async_trait;
use fred::prelude::*;
use fred::types::config::UnresponsiveConfig;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use thread_local::ThreadLocal;

/// Sessions in Redis through fred connection pools, one per worker thread.
///
/// Each thread that uses the store gets its own pool, connected from that thread, so a
/// command and its connection task run on the same (Pingora worker) runtime: no cross-thread
/// wake-up per Redis round trip. On a 2-core machine this took the protected-route cost
/// from ~130 to ~90 CPU-us per request (benches/e2e.sh).
#[derive(Clone)]
pub struct RedisSessionStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool_size: usize,
    timeout: Duration,
    pools: ThreadLocal<LocalPool>,
    /// The client-tracking connection, made when a cache first asks for it.
    feed: std::sync::OnceLock<Arc<RedisFeed>>,
}

/// A thread's pool and whether its first connection attempt is over.
struct LocalPool {
    pool: Pool,
    first_connect: tokio::sync::OnceCell<()>,
}

/// How long a thread's first use of the store waits for its pool to connect. Later
/// commands wait at most the configured timeout, so an outage still fails fast.
const FIRST_CONNECT: Duration = Duration::from_secs(1);

impl RedisSessionStore {
    /// Checks the configuration; nothing connects until a thread first uses the store. The
    /// section's `password` (e.g. from `AUTHFLOW_REDIS_PASSWORD`) overrides the URL's.
    pub fn new(cfg: &RedisConfig) -> Result<Self, StoreError> {
        op_metrics::register();
        let mut config =
            Config::from_url(&cfg.url).map_err(|e| StoreError::Config(e.details().to_owned()))?;
        if let Some(pw) = cfg.password.as_ref().filter(|p| !p.is_empty()) {
            config.password = Some(pw.expose().to_owned());
        }
        if cfg.uses_tls() {
            config.tls = Some(tls(cfg.ca_file.as_deref())?.into());
        }
        // Keep reconnecting in the background from the first attempt on: the gateway must
        // start, fail closed and recover by itself while Redis is away.
        config.fail_fast = false;
        let store = RedisSessionStore {
            inner: Arc::new(Inner {
                config,
                pool_size: cfg.pool_size,
                timeout: cfg.timeout.0,
                pools: ThreadLocal::new(),
                feed: std::sync::OnceLock::new(),
            }),
        };
        store.build_pool()?;
        Ok(store)
    }

    fn build_pool(&self) -> Result<Pool, StoreError> {
        let timeout = self.inner.timeout;
        Builder::from_config(self.inner.config.clone())
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
            .build_pool(self.inner.pool_size)
            .map_err(|e| StoreError::Config(e.details().to_owned()))
    }

    /// This thread's pool, created and connected on first use (requests that arrive while it
    /// connects wait for it, up to [`FIRST_CONNECT`]). Must run on a Tokio runtime.
    async fn local(&self) -> Result<Pool, StoreError> {
        let local = self.inner.pools.get_or_try(|| {
            self.build_pool().map(|pool| LocalPool {
                pool,
                first_connect: tokio::sync::OnceCell::new(),
            })
        })?;
        local
            .first_connect
            .get_or_init(|| async {
                let _ = local.pool.connect_pool();
                let _ = tokio::time::timeout(FIRST_CONNECT, local.pool.wait_for_connect()).await;
            })
            .await;
        Ok(local.pool.clone())
    }

    /// Connects this thread's pool; `false` if Redis is not there yet (it keeps trying in
    /// the background).
    pub async fn warm_up(&self) -> bool {
        match self.local().await {
            Ok(pool) => pool.is_connected(),
            Err(_) => false,
        }
    }

    /// Runs one store operation under the configured timeout; a fred error or a timeout both
    /// mean "unavailable" (commands queued while reconnecting wait at most this long).
    /// Its time and failures are counted under `name` ([`op_metrics`]).
    async fn bounded<T>(
        &self,
        name: Op,
        op: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, StoreError> {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.inner.timeout, op).await;
        let failure = op_metrics::failure_of(&result);
        op_metrics::observe(name, started.elapsed().as_secs_f64(), failure);
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.inner.timeout
            ))),
        }
    }

    /// This thread's pool with one attempt per command.
    async fn once(&self) -> Result<fred::clients::WithOptions<Pool>, StoreError> {
        Ok(self.local().await?.with_options(&Options {
            max_attempts: Some(1),
            timeout: Some(self.inner.timeout),
            ..Default::default()
        }))
    }
}

impl RedisSessionStore {
    /// How many sessions were active within the idle timeout: a `SCAN` for `seen:*` (each
    /// live session's activity key expires with the idle timeout), on every primary of a
    /// Cluster. Approximate by nature: keys that come or go during the scan may be missed or
    /// counted twice. Costs one pass over the keyspace in pages of 1000, so callers keep
    /// the result for a while; gives up after `within`.
    pub async fn count_active_sessions(&self, within: Duration) -> Result<u64, StoreError> {
        use futures_util::TryStreamExt;
        let pool = self.local().await?;
        let client = pool.next();
        let pattern = keys::seen("*");
        let count = async {
            if client.is_clustered() {
                client
                    .scan_cluster_buffered(pattern, Some(1000), None)
                    .try_fold(0u64, |n, _| async move { Ok(n + 1) })
                    .await
            } else {
                client
                    .scan_buffered(pattern, Some(1000), None)
                    .try_fold(0u64, |n, _| async move { Ok(n + 1) })
                    .await
            }
        };
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(within, count).await;
        let failure = op_metrics::failure_of(&result);
        op_metrics::observe(Op::CountActive, started.elapsed().as_secs_f64(), failure);
        match result {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "session count not done within {within:?}"
            ))),
        }
    }
}

/// The TLS connector for `rediss://`: the roots of `ca_file` (PEM), or the system's.
fn tls(ca_file: Option<&str>) -> Result<fred::types::config::TlsConnector, StoreError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let Some(path) = ca_file else {
        return fred::types::config::TlsConnector::default_rustls()
            .map_err(|e| StoreError::Config(format!("TLS roots: {}", e.details())));
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| StoreError::Config(format!("ca_file {path}: {e}")))?;
    for cert in certs {
        let cert = cert.map_err(|e| StoreError::Config(format!("ca_file {path}: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| StoreError::Config(format!("ca_file {path}: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config.into())
}

fn ms(d: Duration) -> i64 {
    d.as_millis().clamp(1, i64::MAX as u128) as i64
}

#[async_trait]
impl SessionStore for RedisSessionStore {
    async fn lookup(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let raw: Vec<Option<String>> = self
            .bounded(Op::Lookup, self.once().await?.mget(session_keys(id)))
            .await?;
        decode(raw)
    }

    async fn touch(&self, id: &str, seen_ms: u64, ttl: Duration) -> Result<(), StoreError> {
        let client = self.once().await?;
        let args: Vec<Value> = vec![(seen_ms as i64).into(), ms(ttl).into()];
        let _: i64 = self
            .bounded(
                Op::Touch,
                client.eval(scripts::TOUCH, session_keys(id), args),
            )
            .await?;
        Ok(())
    }

    async fn create(
        &self,
        id: &str,
        record: &SessionRecord,
        ttl: Duration,
        checked_at_us: u64,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let now = crate::now_ms();
        let lifetime = Duration::from_millis(record.expires_at.saturating_sub(now));
        let uid = record.user_id.as_str();
        let profile = serde_json::json!({ "user_id": uid, "email": record.email }).to_string();
        let keys = vec![
            keys::session(id),
            keys::user_sessions(uid),
            keys::device(uid),
            keys::user_id(id),
            keys::user_profile(uid),
            keys::revoked_before(uid),
            keys::seen(id),
        ];
        let args: Vec<Value> = vec![
            json.into(),
            // The record lives until the absolute expiry; `seen` carries the idle timeout.
            ms(lifetime).into(),
            id.into(),
            // The index lives as long as the longest session it can hold.
            ms(lifetime).into(),
            record.fingerprint.as_str().into(),
            (keys::DEVICE_TTL.as_secs() as i64).into(),
            uid.into(),
            ms(keys::USER_ID_TTL.min(lifetime)).into(),
            profile.into(),
            (keys::USER_PROFILE_TTL.as_secs() as i64).into(),
            (checked_at_us as i64).into(),
            (record.last_seen_at as i64).into(),
            ms(ttl).into(),
        ];
        let client = self.once().await?;
        let created: i64 = self
            .bounded(Op::Create, client.eval(scripts::CREATE_SESSION, keys, args))
            .await?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Revoked)
        }
    }

    async fn delete(&self, id: &str, user_id: &str) -> Result<(), StoreError> {
        let trx = self.local().await?.next().multi();
        let op = async {
            let _: () = trx.del(keys::session(id)).await?;
            let _: () = trx.del(keys::seen(id)).await?;
            let _: () = trx.del(keys::user_id(id)).await?;
            let _: () = trx.srem(keys::user_sessions(user_id), id).await?;
            let _: Value = trx.exec(true).await?;
            Ok(())
        };
        self.bounded(Op::Delete, op).await
    }

    async fn revoke_user(&self, user_id: &str, keep: Option<&str>) -> Result<usize, StoreError> {
        let keys = vec![keys::user_sessions(user_id), keys::revoked_before(user_id)];
        let args: Vec<Value> = vec![
            ms(keys::REVOKED_MARK_TTL).into(),
            keys::session("").into(),
            keys::user_id("").into(),
            keys::seen("").into(),
            keep.unwrap_or("").into(),
        ];
        let client = self.once().await?;
        let n: i64 = self
            .bounded(
                Op::RevokeUser,
                client.eval(scripts::REVOKE_USER, keys, args),
            )
            .await?;
        Ok(n.max(0) as usize)
    }

    async fn update(
        &self,
        id: &str,
        change: &super::RecordChange,
        ttl: Option<super::Reset>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let client = self.once().await?;
        let key = keys::session(id);
        // A record changed by someone else between the read and the write is read again.
        for _ in 0..5 {
            let old: Option<String> = self.bounded(Op::ListUser, client.get(&key)).await?;
            let Some(old) = old else { return Ok(None) };
            let Some(mut record) = super::codec::decode_record(Some(old.clone()))? else {
                return Ok(None);
            };
            change(&mut record);
            let new =
                serde_json::to_string(&record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let (record_ttl, seen, seen_ttl) = match ttl {
                None => (String::new(), String::new(), String::new()),
                Some(r) => {
                    let (seen, seen_ttl) =
                        r.seen.map_or((String::new(), String::new()), |(at, t)| {
                            (at.to_string(), ms(t).to_string())
                        });
                    (ms(r.record).to_string(), seen, seen_ttl)
                }
            };
            let args: Vec<Value> = vec![
                old.into(),
                new.into(),
                record_ttl.into(),
                seen.into(),
                seen_ttl.into(),
            ];
            let done: i64 = self
                .bounded(
                    Op::ListUser,
                    client.eval(scripts::COMPARE_AND_SET, session_keys(id), args),
                )
                .await?;
            match done {
                1 => return Ok(Some(record)),
                0 => return Ok(None),
                _ => continue,
            }
        }
        Err(StoreError::Unavailable(
            "session record kept changing: not updated".into(),
        ))
    }

    /// Measured: one `SET` (the mark), one `SMEMBERS`, then per session a `GET` and a
    /// compare-and-set script; a user has at most `max_sessions_per_user` sessions, so a
    /// change costs a few ms once, and the request path nothing.
    async fn set_roles(&self, user_id: &str, roles: &[String]) -> Result<usize, StoreError> {
        let client = self.once().await?;
        let mark: Vec<Value> = vec![ms(keys::REVOKED_MARK_TTL).into()];
        let _: i64 = self
            .bounded(
                Op::RevokeUser,
                client.eval(scripts::MARK, vec![keys::revoked_before(user_id)], mark),
            )
            .await?;
        let ids: Vec<String> = self
            .bounded(Op::ListUser, client.smembers(keys::user_sessions(user_id)))
            .await?;
        let mut rewritten = 0;
        let roles = roles.to_vec();
        let set = move |r: &mut SessionRecord| r.claims.roles = roles.clone();
        for id in ids {
            if self.update(&id, &set, None).await?.is_some() {
                rewritten += 1;
            }
        }
        Ok(rewritten)
    }

    async fn list_user(&self, user_id: &str) -> Result<Vec<(String, SessionRecord)>, StoreError> {
        let index = keys::user_sessions(user_id);
        let client = self.once().await?;
        let ids: Vec<String> = self.bounded(Op::ListUser, client.smembers(&index)).await?;
        let mut live = Vec::with_capacity(ids.len());
        let mut ended = Vec::new();
        for id in ids {
            let raw: Vec<Option<String>> = self
                .bounded(Op::ListUser, client.mget(session_keys(&id)))
                .await?;
            match decode(raw)? {
                Some(record) => live.push((id, record)),
                None => ended.push(id),
            }
        }
        if !ended.is_empty() {
            let _: i64 = self
                .bounded(Op::ListUser, client.srem(&index, ended))
                .await?;
        }
        Ok(live)
    }

    /// [`RedisSessionStore::count_active_sessions`], given up after 10 s.
    async fn count_active(&self) -> Result<u64, StoreError> {
        self.count_active_sessions(Duration::from_secs(10)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(Op::Ping, self.once().await?.ping::<String>(None))
            .await
            .map(|_| ())
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn feed(&self) -> Option<Arc<dyn SessionFeed>> {
        let feed = self.inner.feed.get_or_init(|| {
            Arc::new(RedisFeed::new(
                self.inner.config.clone(),
                self.inner.timeout,
            ))
        });
        Some(feed.clone())
    }
}

#[async_trait]
impl SharedLimits for RedisSessionStore {
    async fn gcra(
        &self,
        key: &str,
        interval_us: u64,
        tolerance_us: u64,
    ) -> Result<SharedDecision, StoreError> {
        let client = self.once().await?;
        let args: Vec<Value> = vec![
            (interval_us.min(i64::MAX as u64) as i64).into(),
            (tolerance_us.min(i64::MAX as u64) as i64).into(),
        ];
        let reply: Vec<i64> = self
            .bounded(
                Op::RateLimit,
                client.eval(scripts::GCRA, vec![key.to_owned()], args),
            )
            .await?;
        match reply[..] {
            [allowed, wait, remaining] => Ok(SharedDecision {
                allowed: allowed == 1,
                wait_us: wait.max(0) as u64,
                remaining: remaining.max(0) as u64,
            }),
            _ => Err(StoreError::Unavailable(format!(
                "GCRA script answered {reply:?}"
            ))),
        }
    }
}

#[async_trait]
impl LoginThrottle for RedisSessionStore {
    async fn begin_attempt(
        &self,
        account: &str,
        policy: &ThrottlePolicy,
    ) -> Result<Attempt, StoreError> {
        let keys = vec![
            keys::login_attempts(account),
            keys::login_lock(account),
            keys::login_total(account),
        ];
        let args: Vec<Value> = vec![
            ms(policy.window).into(),
            i64::from(policy.lock_after).into(),
            ms(policy.max_lock).into(),
            i64::from(policy.hard_cap).into(),
            ms(keys::LOGIN_TOTAL_TTL).into(),
        ];
        let client = self.once().await?;
        let out: Vec<i64> = self
            .bounded(
                Op::LoginAttempt,
                client.eval(scripts::BEGIN_ATTEMPT, keys, args),
            )
            .await?;
        match out.as_slice() {
            [0, _, now] => Ok(Attempt::Allowed {
                at_us: (*now).max(0) as u64,
            }),
            [1, left, _] => Ok(Attempt::Locked(
                Duration::from_millis((*left).max(1) as u64),
            )),
            [2, _, _] => Ok(Attempt::Capped),
            other => Err(StoreError::Corrupt(format!(
                "unexpected throttle answer {other:?}"
            ))),
        }
    }

    async fn clear_attempts(&self, account: &str) -> Result<(), StoreError> {
        let keys = vec![
            keys::login_attempts(account),
            keys::login_lock(account),
            keys::login_total(account),
        ];
        self.bounded(Op::ClearAttempts, self.once().await?.del::<(), _>(keys))
            .await
    }

    async fn mail_allowed(&self, address: &str, cooldown: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .bounded(
                Op::MailCooldown,
                self.once().await?.set(
                    keys::mail_cooldown(address),
                    1,
                    Some(Expiration::PX(ms(cooldown))),
                    Some(SetOptions::NX),
                    false,
                ),
            )
            .await?;
        Ok(set.is_some())
    }
}

#[async_trait]
impl ShortLived for RedisSessionStore {
    async fn put_new(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let set: Option<String> = self
            .bounded(
                Op::ShortLived,
                self.once().await?.set(
                    keys::short_lived(key),
                    value,
                    Some(Expiration::PX(ms(ttl))),
                    Some(SetOptions::NX),
                    false,
                ),
            )
            .await?;
        Ok(set.is_some())
    }

    async fn take(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.bounded(
            Op::ShortLived,
            self.once().await?.getdel(keys::short_lived(key)),
        )
        .await
    }

    async fn advance(&self, key: &str, value: u64, ttl: Duration) -> Result<bool, StoreError> {
        let args: Vec<Value> = vec![(value as i64).into(), ms(ttl).into()];
        let client = self.once().await?;
        let raised: i64 = self
            .bounded(
                Op::ShortLived,
                client.eval(scripts::ADVANCE, vec![keys::short_lived(key)], args),
            )
            .await?;
        Ok(raised == 1)
    }
}

/// The Lua scripts: each is one atomic step on the server, so no other client's command can
/// fall between its reads and writes.
mod scripts {
    /// Raises KEYS[1] to ARGV[1] (PX ARGV[2]) unless it is already there or beyond.
    pub const ADVANCE: &str = r#"
local cur = redis.call('GET', KEYS[1])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#;

    /// Creates a session unless the user's sessions were revoked after the sign-in began
    /// (KEYS: session, user_sessions, device, user_id, user_profile, revoked_before, seen).
    pub const CREATE_SESSION: &str = r#"
local mark = redis.call('GET', KEYS[6])
if mark and tonumber(mark) >= tonumber(ARGV[11]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('SET', KEYS[4], ARGV[7], 'PX', ARGV[8])
redis.call('SET', KEYS[5], ARGV[9], 'EX', ARGV[10])
redis.call('SET', KEYS[7], ARGV[12], 'PX', ARGV[13])
return 1
"#;

    /// Records activity of a session that still exists (KEYS: session, seen; ARGV: Unix ms,
    /// idle TTL ms). Reads the record's key without writing it, so caches of it stay valid.
    pub const TOUCH: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
"#;

    /// Marks the revoke time and deletes every session in the user's index but the one to
    /// keep (KEYS: user_sessions, revoked_before; ARGV: mark TTL, session, user_id and seen
    /// key prefixes, the id to keep or ''). Returns how many ended.
    pub const REVOKE_USER: &str = r#"
local t = redis.call('TIME')
redis.call('SET', KEYS[2], t[1] .. string.format('%06d', tonumber(t[2])), 'PX', ARGV[1])
local ids = redis.call('SMEMBERS', KEYS[1])
local ended = 0
for _, id in ipairs(ids) do
  if id ~= ARGV[5] then
    redis.call('DEL', ARGV[2] .. id, ARGV[3] .. id, ARGV[4] .. id)
    redis.call('SREM', KEYS[1], id)
    ended = ended + 1
  end
end
return ended
"#;

    /// Marks the time of a change to the user's sessions (KEYS: revoked_before; ARGV: TTL ms),
    /// as [`REVOKE_USER`] does, without ending any.
    pub const MARK: &str = r#"
local t = redis.call('TIME')
redis.call('SET', KEYS[1], t[1] .. string.format('%06d', tonumber(t[2])), 'PX', ARGV[1])
return 1
"#;

    /// Replaces a record only if it is still what was read (KEYS: session, seen; ARGV: old,
    /// new, the record's new TTL ms or '' to keep it, the activity value for `seen` or '',
    /// its TTL ms). Without a value `seen` expires with the record. 1 done, 0 the session is
    /// gone, -1 it changed meanwhile.
    pub const COMPARE_AND_SET: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
if cur ~= ARGV[1] then return -1 end
if ARGV[3] == '' then
  redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  if ARGV[4] ~= '' then
    redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[5])
  else
    redis.call('PEXPIRE', KEYS[2], ARGV[3])
  end
end
return 1
"#;

    /// One GCRA step on the server's clock (KEYS: the limit's key; ARGV: emission interval
    /// and tolerance in µs). Returns {1, 0, remaining} when allowed (and stores the new
    /// arrival time, expiring when the bucket is full again), {0, µs to wait, 0} when not.
    pub const GCRA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local ahead = tat - now
if ahead > tolerance then return {0, ahead - tolerance, 0} end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1)
return {1, 0, math.floor((tolerance + interval - (new - now)) / interval)}
"#;

    /// The throttle's check-and-count (KEYS: attempts, lock, total; ARGV: window ms,
    /// lock_after, max lock ms, hard cap, total TTL ms). Returns {0, 0, now µs} to go ahead,
    /// {1, ms left, now µs} when locked, {2, 0, now µs} past the hard cap. The lock doubles
    /// as in `ThrottlePolicy::lock_for`.
    pub const BEGIN_ATTEMPT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
if total >= tonumber(ARGV[4]) then return {2, 0, now_us} end
local left = redis.call('PTTL', KEYS[2])
if left > 0 then return {1, left, now_us} end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
total = redis.call('INCR', KEYS[3])
redis.call('PEXPIRE', KEYS[3], ARGV[5])
redis.call('ZADD', KEYS[1], now, now .. ':' .. total)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if over >= 0 then
  local lock = math.min(1000 * 2 ^ math.min(over, 20), tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], '1', 'PX', math.floor(lock))
end
return {0, 0, now_us}
"#;
}
