//! [`RedisFeed`]: Redis server-assisted client-side caching (RESP3 `CLIENT TRACKING`) for
//! the gateway's session cache.
//!
//! One dedicated connection (one per node on a Cluster) with tracking on in `OPTIN` mode:
//! Redis remembers only the keys this connection reads right after `CLIENT CACHING yes`,
//! and pushes an invalidation on the same connection when any client changes one of them
//! (logout, revoke, reset, expiry). The gateway looks sessions up through its ordinary,
//! untracked pool; only a record that was found, and will be cached, is read again here
//! ([`SessionFeed::track`]), so whatever is cached is tracked and nothing else is. (In the
//! default mode every miss was read here: a flood of 1,904 random cookies grew Redis'
//! `tracking_total_keys` by 3,808 and its memory by ~700 KB, without bound; issue 18.) Only
//! the `session:` key is tracked, not `seen:`: activity must not send invalidations.
//!
//! The connection is never reconnected behind our back: fred's reconnect policy is off and
//! this loop builds a new client after every failure, telling the sink to forget everything
//! first. So no read can land on a fresh, untracked connection while the cache still
//! trusts it, and no invalidation lost with a dead connection can leave a stale record.

use super::codec::decode_record;
use super::op_metrics::{self, Op};
use super::{ChangeSink, SessionFeed, StoreError};
use crate::keys;
use crate::session::SessionRecord;
use async_trait::async_trait;
use fred::error::ErrorKind;
use fred::interfaces::TrackingInterface;
use fred::prelude::*;
use fred::types::{ClusterHash, RespVersion};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How often the feed checks that its connection still answers. A Redis that stops
/// answering without closing the connection (paused, partitioned) is noticed within this
/// plus [`HEARTBEAT_TIMEOUT`]; a closed connection at once.
const HEARTBEAT: Duration = Duration::from_millis(500);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);
/// After tracking was refused (Redis older than 6, an ACL without `CLIENT`), how long until
/// the feed asks again.
const RETRY_REFUSED: Duration = Duration::from_secs(30);

/// The tracking connection and the loop that follows it.
pub struct RedisFeed {
    config: Config,
    timeout: Duration,
    client: RwLock<Option<Client>>,
}

/// Why a feed connection ended or never started.
#[derive(Debug)]
enum Ended {
    /// Redis is not there or the connection failed: try again soon.
    Down(String),
    /// Redis answered but will not track (no RESP3, no `CLIENT TRACKING`, ACL): say so once.
    Refused(String),
}

impl RedisFeed {
    /// A feed for the store's Redis (same URL, credentials and TLS), speaking RESP3.
    pub(super) fn new(mut config: Config, timeout: Duration) -> Self {
        config.version = RespVersion::RESP3;
        config.fail_fast = true;
        RedisFeed {
            config,
            timeout,
            client: RwLock::new(None),
        }
    }

    fn build(&self) -> Result<Client, Ended> {
        let timeout = self.timeout;
        Builder::from_config(self.config.clone())
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(1);
                c.internal_command_timeout = Duration::from_secs(1);
                c.max_command_attempts = 1;
                c.tcp = TcpConfig {
                    nodelay: Some(true),
                    ..Default::default()
                };
            })
            .with_performance_config(|p| {
                p.default_command_timeout = timeout;
                // Invalidations queue here until the loop reads them; an overflow flushes.
                p.broadcast_channel_capacity = 4096;
            })
            .build()
            .map_err(|e| Ended::Refused(e.to_string()))
    }

    /// Connects and turns tracking on (`OPTIN`: nothing is tracked until [`Self::read_tracked`]
    /// asks); the receivers are subscribed before tracking starts, so no invalidation can
    /// be missed.
    async fn connect(&self) -> Result<(Client, Receivers), Ended> {
        let client = self.build()?;
        let invalidations = client.invalidation_rx();
        let errors = client.error_rx();
        match tokio::time::timeout(Duration::from_secs(2), client.init()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(classify(&e)),
            Err(_) => return Err(Ended::Down("connect timed out".into())),
        }
        // Cluster changes from here on: `init`'s own first sync of the slot map reports
        // every node as added. (Listening before `init` reconnected the feed as soon as it
        // connected, hundreds of times a second, and the cache never served on a Cluster.)
        // A change until tracking starts is covered too: tracking goes to every node fred
        // then knows.
        let receivers = Receivers {
            invalidations,
            errors,
            topology: client.cluster_change_rx(),
        };
        if let Err(e) = client.start_tracking(None, false, true, false, false).await {
            let _ = client.quit().await;
            return Err(classify(&e));
        }
        Ok((client, receivers))
    }

    /// Follows one connection until it fails; says why.
    async fn follow(&self, client: &Client, mut rx: Receivers, sink: &dyn ChangeSink) -> String {
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        loop {
            tokio::select! {
                message = rx.invalidations.recv() => match message {
                    Ok(inv) if inv.keys.is_empty() => sink.reset(true), // FLUSHALL / FLUSHDB
                    Ok(inv) => {
                        for key in &inv.keys {
                            if let Some(id) = key.as_str().and_then(|k| k.strip_prefix("session:")) {
                                sink.changed(id);
                            }
                        }
                    }
                    Err(RecvError::Lagged(_)) => sink.reset(true),
                    Err(RecvError::Closed) => return "invalidation channel closed".into(),
                },
                error = rx.errors.recv() => {
                    return match error {
                        Ok((e, _)) => format!("connection error: {e}"),
                        Err(_) => "connection error".into(),
                    };
                }
                _ = rx.topology.recv() => return "cluster topology changed".into(),
                _ = heartbeat.tick() => {
                    let ping = client.ping::<String>(None);
                    match tokio::time::timeout(HEARTBEAT_TIMEOUT, ping).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return format!("heartbeat failed: {e}"),
                        Err(_) => return "heartbeat timed out".into(),
                    }
                }
            }
        }
    }

    /// `GET session:{id}` on the tracking connection, tracked: `MULTI`, `CLIENT CACHING
    /// yes`, `GET`, `EXEC`. Redis tracks the reads of the command right after `CLIENT
    /// CACHING yes`, or of the whole transaction it is in; fred writes a transaction in one
    /// go on one connection (its router drains the connection first and reads the replies
    /// itself, still passing invalidations on), so no other command of this client can come
    /// between the two. Both commands are pinned to the key's slot: on a Cluster the
    /// key's node is the one that must track it.
    async fn read_tracked(client: &Client, id: &str) -> Result<Option<String>, fred::error::Error> {
        let key = keys::session(id);
        let slot = fred::util::redis_keyslot(key.as_bytes());
        let trx = client.multi();
        let pinned = trx.with_options(&Options {
            cluster_hash: Some(ClusterHash::Custom(slot)),
            ..Default::default()
        });
        let _: () = pinned.client_caching(true).await?;
        let _: () = pinned.get(&key).await?;
        let mut replies: Vec<Value> = trx.exec(true).await?;
        match replies.pop() {
            Some(value) if replies.len() == 1 => value.convert(),
            _ => Err(fred::error::Error::new(
                ErrorKind::Protocol,
                "tracked read: unexpected EXEC reply",
            )),
        }
    }

    fn set_client(&self, client: Option<Client>) {
        if let Ok(mut slot) = self.client.write() {
            *slot = client;
        }
    }
}

struct Receivers {
    invalidations: tokio::sync::broadcast::Receiver<fred::types::client::Invalidation>,
    errors:
        tokio::sync::broadcast::Receiver<(fred::error::Error, Option<fred::types::config::Server>)>,
    topology: tokio::sync::broadcast::Receiver<Vec<fred::types::ClusterStateChange>>,
}

/// Connection trouble is worth retrying soon; anything else means Redis will not track.
fn classify(e: &fred::error::Error) -> Ended {
    match e.kind() {
        ErrorKind::IO | ErrorKind::Timeout | ErrorKind::Canceled | ErrorKind::Tls => {
            Ended::Down(e.to_string())
        }
        _ => Ended::Refused(e.to_string()),
    }
}

#[async_trait]
impl SessionFeed for RedisFeed {
    async fn track(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let client = self
            .client
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| StoreError::Unavailable("tracking connection down".into()))?;
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.timeout, Self::read_tracked(&client, id)).await;
        let seconds = started.elapsed().as_secs_f64();
        op_metrics::observe(Op::Track, seconds, op_metrics::failure_of(&result));
        match result {
            Ok(Ok(raw)) => decode_record(raw),
            Ok(Err(e)) => Err(StoreError::Unavailable(e.to_string())),
            Err(_) => Err(StoreError::Unavailable(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    async fn run(&self, sink: Arc<dyn ChangeSink>) {
        let mut refused_logged = false;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.connect().await {
                Ok((client, receivers)) => {
                    backoff = Duration::from_millis(50);
                    refused_logged = false;
                    self.set_client(Some(client.clone()));
                    sink.reset(true);
                    tracing::info!("session cache on: Redis client tracking enabled");
                    let why = self.follow(&client, receivers, sink.as_ref()).await;
                    // Forget first: from here on nothing is tracked.
                    sink.reset(false);
                    self.set_client(None);
                    let _ = tokio::time::timeout(Duration::from_millis(200), client.quit()).await;
                    tracing::warn!(reason = %why, "session cache flushed: tracking connection lost; reading sessions from Redis until it is back");
                }
                Err(Ended::Refused(e)) => {
                    if !refused_logged {
                        tracing::warn!(error = %e, "Redis client tracking unavailable: no session cache, every session is read from Redis");
                        refused_logged = true;
                    }
                    tokio::time::sleep(RETRY_REFUSED).await;
                }
                Err(Ended::Down(e)) => {
                    tracing::debug!(error = %e, "tracking connection: Redis not reachable");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
