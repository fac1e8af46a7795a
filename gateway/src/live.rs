//! Long-lived connections opened under a session (a WebSocket tunnel, a server-sent event
//! stream), ended when the session ends: a logout, reset, operator revocation or a device
//! put aside anywhere reaches this gateway through the store's change feed (the same Redis
//! client-tracking invalidations the session cache receives), and the session's connections
//! are closed at once; an expired session's are closed within [`TICK`].
//!
//! Watched are WebSocket tunnels and event streams from their first byte, and any other
//! answer of a signed-in request still streaming after [`LONG_LIVED`] (a gRPC server
//! stream, a chunked download), from then on.
//!
//! A connection over HTTP/1.1 to its server is closed by shutting down its upstream socket:
//! Pingora then ends the tunnel or the response both ways, as if the upstream had hung up.
//! The registry holds its own duplicate of the socket's descriptor, so the number it shuts
//! down can never have been reused for another connection. A stream over a shared HTTP/2
//! connection to its server cannot be cut that way: it is marked, and the proxy ends it at
//! its next chunk ([`Registration::is_closed`]).

use crate::policy::Policy;
use crate::session_cache::SessionCache;
use authflow_shared::session::SessionRecord;
use authflow_shared::store::{ChangeSink, SessionFeed, SessionStore};
use authflow_shared::token::log_id;
use prometheus::{IntCounter, IntGauge};
use std::collections::HashMap;
use std::net::{Shutdown, TcpStream};
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

/// How often sessions with live connections are judged again for expiry (and, without a
/// change feed, read again from the store).
pub const TICK: Duration = Duration::from_millis(500);
/// How long a session may go unconfirmed (the store unreachable) before its connections
/// are closed: fail closed, but not on a blip.
pub const UNVERIFIED_GRACE: Duration = Duration::from_secs(10);
/// A signed-in answer still streaming after this long is watched like a tunnel.
pub const LONG_LIVED: Duration = Duration::from_secs(1);

/// What a live connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveKind {
    WebSocket,
    EventStream,
    /// Any other answer still streaming after [`LONG_LIVED`].
    Stream,
}

impl LiveKind {
    pub const ALL: [LiveKind; 3] = [LiveKind::WebSocket, LiveKind::EventStream, LiveKind::Stream];

    pub fn as_str(self) -> &'static str {
        match self {
            LiveKind::WebSocket => "ws",
            LiveKind::EventStream => "sse",
            LiveKind::Stream => "stream",
        }
    }
}

/// Why live connections were closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The session was deleted or put aside.
    Revoked,
    Expired,
    /// The store could not confirm the session for [`UNVERIFIED_GRACE`].
    Unverifiable,
}

impl CloseReason {
    pub const ALL: [CloseReason; 3] = [
        CloseReason::Revoked,
        CloseReason::Expired,
        CloseReason::Unverifiable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Revoked => "revoked",
            CloseReason::Expired => "expired",
            CloseReason::Unverifiable => "unverifiable",
        }
    }
}

/// The live connections of every session, shared by the worker threads, the feed (as a
/// [`ChangeSink`]) and the [`LiveConnections::watch`] task.
#[derive(Default)]
pub struct LiveConnections {
    sessions: Mutex<HashMap<String, Watched>>,
    next_key: AtomicU64,
    wake: tokio::sync::Notify,
}

/// One session with live connections.
struct Watched {
    record: SessionRecord,
    /// The latest activity known (Unix ms).
    last_seen: u64,
    conns: Vec<Conn>,
    /// Changes reported so far (being new here counts as one, so does a feed reconnection)...
    changes: u64,
    /// ...and how many of them the last confirming read began after: while the two differ
    /// the session is to be read from the store again ([`Watched::stale`]).
    read: u64,
    /// Since when the store has failed to confirm it (Unix ms).
    unverified_since: Option<u64>,
}

impl Watched {
    /// To be read from the store again: new here, changed, or the feed reconnected.
    fn stale(&self) -> bool {
        self.changes != self.read
    }
}

struct Conn {
    key: u64,
    /// A duplicate of the upstream socket's descriptor (closed when dropped; the socket
    /// itself lives on until Pingora closes its own); none over a shared HTTP/2 connection.
    socket: Option<TcpStream>,
    /// Set when the session ended, for the proxy to end the stream at its next chunk.
    closed: Arc<AtomicBool>,
    kind: LiveKind,
}

/// A connection's place in the registry, held in the request's context: dropping it (the
/// request ended) takes the connection out.
pub struct Registration {
    live: Arc<LiveConnections>,
    session: String,
    key: u64,
    closed: Arc<AtomicBool>,
}

impl Registration {
    /// Whether the session ended: the stream must end now.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.live.remove(&self.session, self.key);
    }
}

/// What the store says about a watched session now.
enum Judged {
    Valid(Box<SessionRecord>, u64),
    Over(CloseReason),
    Unknown,
}

impl LiveConnections {
    pub fn new() -> Arc<Self> {
        register_metrics();
        Arc::new(LiveConnections::default())
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, Watched>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Watches a connection until the returned registration is dropped: its upstream
    /// socket `fd` (HTTP/1.1 to the server) is shut down when the session ends, and the
    /// registration says so either way. `fd` must be open for the duration of this call
    /// (the upstream connection of the request being answered). If it cannot be duplicated
    /// (out of descriptors) the stream is still ended at its next chunk.
    pub fn register(
        self: &Arc<Self>,
        session_id: &str,
        record: &SessionRecord,
        last_seen: u64,
        fd: Option<RawFd>,
        kind: LiveKind,
    ) -> Registration {
        let socket = fd.and_then(|fd| {
            // SAFETY: the caller guarantees `fd` is open for this call; it is only borrowed
            // to be duplicated, and the duplicate is owned from here on.
            match unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() {
                Ok(fd) => Some(TcpStream::from(fd)),
                Err(e) => {
                    tracing::warn!(session = log_id(session_id), error = %e, "upstream socket not duplicated: the stream ends at its next chunk");
                    None
                }
            }
        });
        let closed = Arc::new(AtomicBool::new(false));
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        let mut sessions = self.sessions();
        let watched = sessions
            .entry(session_id.to_owned())
            .or_insert_with(|| Watched {
                record: record.clone(),
                last_seen,
                conns: Vec::new(),
                // Read through the feed once, so its changes reach us whether or not the
                // request was served from the cache.
                changes: 1,
                read: 0,
                unverified_since: None,
            });
        watched.conns.push(Conn {
            key,
            socket,
            closed: closed.clone(),
            kind,
        });
        drop(sessions);
        metric_opened(kind);
        self.wake.notify_one();
        Registration {
            live: self.clone(),
            session: session_id.to_owned(),
            key,
            closed,
        }
    }

    fn remove(&self, session_id: &str, key: u64) {
        let mut sessions = self.sessions();
        let Some(watched) = sessions.get_mut(session_id) else {
            return;
        };
        let Some(i) = watched.conns.iter().position(|c| c.key == key) else {
            return;
        };
        let conn = watched.conns.swap_remove(i);
        if watched.conns.is_empty() {
            sessions.remove(session_id);
        }
        drop(sessions);
        metric_ended(conn.kind);
    }

    /// Closes every live connection of `session_id`.
    pub fn close(&self, session_id: &str, reason: CloseReason) {
        let Some(watched) = self.sessions().remove(session_id) else {
            return;
        };
        for conn in &watched.conns {
            conn.closed.store(true, Ordering::Relaxed);
            if let Some(socket) = &conn.socket {
                // Already closed by its peer is fine: the tunnel is ending anyway.
                let _ = socket.shutdown(Shutdown::Both);
            }
            metric_ended(conn.kind);
            metric_closed(reason);
        }
        tracing::info!(
            session = log_id(session_id),
            connections = watched.conns.len(),
            reason = reason.as_str(),
            "live connections closed: their session ended"
        );
    }

    /// How many connections are watched now.
    pub fn len(&self) -> usize {
        self.sessions().values().map(|w| w.conns.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Judges the watched sessions until the process ends: at once when one changed (or
    /// the feed reconnected), and every [`TICK`] for expiry. Without a feed every session
    /// is read from the store each tick.
    pub async fn watch(self: Arc<Self>, sources: Arc<Sources>) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            let rules = sources.policy.load().session.rules.clone();
            let now = authflow_shared::now_ms();
            for (id, stale, changes) in self.due(&rules, now, sources.feed.is_none()) {
                let judged = judge(&sources, &rules, &id, stale).await;
                self.apply(&id, judged, changes, authflow_shared::now_ms());
            }
        }
    }

    /// The sessions to read again: changed ones, ones that look expired, and every one when
    /// there is no feed (`poll`).
    fn due(
        &self,
        rules: &crate::session::SessionRules,
        now: u64,
        poll: bool,
    ) -> Vec<(String, bool, u64)> {
        self.sessions()
            .iter()
            .filter(|(_, w)| {
                poll || w.stale() || rules.expiry(&w.record, w.last_seen, now).is_some()
            })
            .map(|(id, w)| (id.clone(), w.stale(), w.changes))
            .collect()
    }

    /// What a read of session `id` found; `changes` is the count of changes it began after.
    fn apply(&self, id: &str, judged: Judged, changes: u64, now: u64) {
        let reason = {
            let mut sessions = self.sessions();
            let Some(w) = sessions.get_mut(id) else {
                return;
            };
            match judged {
                Judged::Valid(record, seen) => {
                    w.record = *record;
                    w.last_seen = w.last_seen.max(seen);
                    // A change reported during the read is read again on the next round.
                    w.read = changes;
                    w.unverified_since = None;
                    return;
                }
                Judged::Over(reason) => reason,
                Judged::Unknown => {
                    let since = *w.unverified_since.get_or_insert(now);
                    if now.saturating_sub(since) < UNVERIFIED_GRACE.as_millis() as u64 {
                        return;
                    }
                    CloseReason::Unverifiable
                }
            }
        };
        self.close(id, reason);
    }
}

/// Where the watcher reads sessions from.
pub struct Sources {
    pub store: Arc<dyn SessionStore>,
    /// The change feed, and the cache it keeps coherent.
    pub feed: Option<Arc<dyn SessionFeed>>,
    pub cache: Option<Arc<SessionCache>>,
    pub policy: Arc<arc_swap::ArcSwap<Policy>>,
}

/// Reads session `id` again. A session the live cache holds is tracked and unchanged since
/// it was cached (a change removes it before it reaches this registry), so it is judged
/// from the cache with no Redis command. Otherwise it is read through the feed when it
/// changed (so its next change is reported too), and from the store for the latest
/// activity.
async fn judge(
    sources: &Sources,
    rules: &crate::session::SessionRules,
    id: &str,
    stale: bool,
) -> Judged {
    if let Some(hit) = sources.cache.as_ref().and_then(|c| c.get(id)) {
        return judged(hit.record.clone(), hit.last_seen(), rules);
    }
    let (store, feed) = (&*sources.store, sources.feed.as_deref());
    if let (true, Some(feed)) = (stale, feed) {
        match feed.track(id).await {
            Ok(None) => return Judged::Over(CloseReason::Revoked),
            Ok(Some(_)) => {}
            Err(_) => return Judged::Unknown,
        }
    }
    match store.lookup(id).await {
        Ok(Some(record)) => {
            let seen = record.last_seen_at;
            judged(record, seen, rules)
        }
        Ok(None) => Judged::Over(CloseReason::Revoked),
        Err(_) => Judged::Unknown,
    }
}

/// A record that exists: over if put aside or expired at the latest activity known.
fn judged(record: SessionRecord, seen: u64, rules: &crate::session::SessionRules) -> Judged {
    if record.held_since.is_some() {
        return Judged::Over(CloseReason::Revoked);
    }
    if rules
        .expiry(&record, seen, authflow_shared::now_ms())
        .is_some()
    {
        return Judged::Over(CloseReason::Expired);
    }
    Judged::Valid(Box::new(record), seen)
}

impl ChangeSink for LiveConnections {
    fn changed(&self, id: &str) {
        if let Some(w) = self.sessions().get_mut(id) {
            w.changes += 1;
            self.wake.notify_one();
        }
    }

    fn reset(&self, _live: bool) {
        let mut sessions = self.sessions();
        for w in sessions.values_mut() {
            w.changes += 1;
        }
        if !sessions.is_empty() {
            self.wake.notify_one();
        }
    }
}

/// Several sinks fed by one change feed (the session cache and the live connections).
pub struct Fanout(pub Vec<Arc<dyn ChangeSink>>);

impl ChangeSink for Fanout {
    fn changed(&self, id: &str) {
        for s in &self.0 {
            s.changed(id);
        }
    }

    fn reset(&self, live: bool) {
        for s in &self.0 {
            s.reset(live);
        }
    }
}

/// `authflow_gateway_live_connections{kind}`: open connections watched, by kind.
static LIVE: LazyLock<Option<Vec<IntGauge>>> = LazyLock::new(|| {
    let vec = prometheus::register_int_gauge_vec!(
        "authflow_gateway_live_connections",
        "Open long-lived connections watched for their session's end, by kind (ws, sse, stream)",
        &["kind"]
    )
    .ok()?;
    Some(
        LiveKind::ALL
            .iter()
            .map(|k| vec.with_label_values(&[k.as_str()]))
            .collect(),
    )
});

/// `authflow_gateway_live_connections_closed_total{reason}`.
static CLOSED: LazyLock<Option<Vec<IntCounter>>> = LazyLock::new(|| {
    let vec = prometheus::register_int_counter_vec!(
        "authflow_gateway_live_connections_closed_total",
        "Long-lived connections the gateway closed because their session ended, by reason",
        &["reason"]
    )
    .ok()?;
    Some(
        CloseReason::ALL
            .iter()
            .map(|r| vec.with_label_values(&[r.as_str()]))
            .collect(),
    )
});

/// Registers the series, so that each exists from the first scrape.
pub fn register_metrics() {
    LazyLock::force(&LIVE);
    LazyLock::force(&CLOSED);
}

fn metric_opened(kind: LiveKind) {
    if let Some(g) = LIVE.as_ref().and_then(|all| all.get(kind as usize)) {
        g.inc();
    }
}

fn metric_ended(kind: LiveKind) {
    if let Some(g) = LIVE.as_ref().and_then(|all| all.get(kind as usize)) {
        g.dec();
    }
}

fn metric_closed(reason: CloseReason) {
    if let Some(c) = CLOSED.as_ref().and_then(|all| all.get(reason as usize)) {
        c.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

    fn record() -> SessionRecord {
        SessionRecord::new(
            "u",
            None,
            "fp",
            authflow_shared::now_ms(),
            Duration::from_secs(60),
        )
    }

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    #[test]
    fn closing_a_session_shuts_its_sockets_and_only_its_own() {
        let live = LiveConnections::new();
        let (ours, mut peer) = pair();
        let (other, mut other_peer) = pair();
        let r1 = live.register(
            "s1",
            &record(),
            0,
            Some(ours.as_raw_fd()),
            LiveKind::WebSocket,
        );
        let _r2 = live.register(
            "s2",
            &record(),
            0,
            Some(other.as_raw_fd()),
            LiveKind::EventStream,
        );
        assert_eq!(live.len(), 2);
        let shared = live.register("s1", &record(), 0, None, LiveKind::Stream);
        assert!(!shared.is_closed());
        live.close("s1", CloseReason::Revoked);
        assert!(
            shared.is_closed(),
            "a stream without a socket of its own is marked"
        );
        assert!(r1.is_closed());
        assert_eq!(live.len(), 1);
        let mut buf = [0u8; 1];
        assert_eq!(
            peer.read(&mut buf).expect("read"),
            0,
            "the peer sees the end"
        );
        other_peer
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        (&other)
            .write_all(b"x")
            .expect("the other session's socket is open");
        assert_eq!(other_peer.read(&mut buf).expect("read"), 1);
        drop(r1); // already gone: nothing to do
        assert_eq!(live.len(), 1);
    }

    #[test]
    fn a_registration_leaves_when_dropped_and_keeps_no_socket_open() {
        let live = LiveConnections::new();
        let (ours, mut peer) = pair();
        let r = live.register(
            "s",
            &record(),
            0,
            Some(ours.as_raw_fd()),
            LiveKind::WebSocket,
        );
        drop(r);
        assert!(live.is_empty());
        drop(ours);
        let mut buf = [0u8; 1];
        assert_eq!(
            peer.read(&mut buf).expect("read"),
            0,
            "the duplicate was closed"
        );
    }

    #[test]
    fn a_change_marks_the_session_for_reading_and_an_unconfirmed_one_closes_after_the_grace() {
        let live = LiveConnections::new();
        let (ours, _peer) = pair();
        let _r = live.register(
            "s",
            &record(),
            0,
            Some(ours.as_raw_fd()),
            LiveKind::WebSocket,
        );
        assert!(
            live.sessions().get("s").is_some_and(|w| w.stale()),
            "new: to be read"
        );
        live.apply("s", Judged::Valid(Box::new(record()), 0), 1, 1_000);
        assert!(live.sessions().get("s").is_some_and(|w| !w.stale()));
        live.changed("s");
        assert!(live.sessions().get("s").is_some_and(|w| w.stale()));
        // A read that began before that change does not clear it.
        live.apply("s", Judged::Valid(Box::new(record()), 0), 1, 1_000);
        assert!(
            live.sessions().get("s").is_some_and(|w| w.stale()),
            "a change was lost"
        );
        live.apply("s", Judged::Valid(Box::new(record()), 0), 2, 1_000);
        assert!(live.sessions().get("s").is_some_and(|w| !w.stale()));
        live.apply("s", Judged::Unknown, 2, 1_000);
        assert_eq!(live.len(), 1, "a blip keeps it");
        live.apply(
            "s",
            Judged::Unknown,
            2,
            1_000 + UNVERIFIED_GRACE.as_millis() as u64,
        );
        assert!(live.is_empty(), "fails closed after the grace");
    }
}
