//! Upstream pools: round-robin over each upstream's servers, with active health checks (TCP,
//! or HTTP with `health_check_path`, [`checks`]), passive health from live traffic (nginx's
//! `max_fails`/`fail_timeout`), and host names resolved again every `resolve_interval`
//! ([`discovery`]), so a server restarted under a new address is found. No server is ever the
//! reason for an instant 502 by itself: when every server of an upstream is marked down,
//! requests still go to them (Envoy's panic mode), so a lone server is never blacked out by a
//! failed check, and a server that just started is used at once.
//!
//! A reload ([`rebuild`]) keeps each upstream that keeps its name, with its balancer and the
//! health of its servers, and changes its servers, checks and settings in place.

pub mod checks;
pub mod discovery;
mod grpc_health;

use crate::config::{UpstreamConfig, UpstreamProtocol};
use arc_swap::ArcSwap;
use checks::ReloadableCheck;
use discovery::{Dns, Resolve, Resolving, ServerList};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::tls::CaType;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

/// One named upstream. Cheap to clone: a reload makes a new value with new settings around
/// the same balancer, passive state, server list and check.
#[derive(Clone)]
pub struct Upstream {
    pub name: String,
    lb: Arc<LoadBalancer<RoundRobin>>,
    passive: Arc<Passive>,
    servers: ServerList,
    check: ReloadableCheck,
    /// What it was built or last reconfigured from.
    cfg: Arc<UpstreamConfig>,
    /// Response time of its servers.
    response_time: Option<prometheus::Histogram>,
    /// The authorities its servers' certificates are checked against (`ca_file`).
    ca: Option<Arc<CaType>>,
}

impl Upstream {
    /// A new upstream for `cfg`, its servers resolved once through `resolver`.
    pub fn new(cfg: &UpstreamConfig, resolver: Arc<dyn Resolve>) -> Result<Self, UpstreamError> {
        let servers: ServerList = Arc::new(ArcSwap::from_pointee(cfg.servers.clone()));
        let check = ReloadableCheck::new(cfg);
        let mut lb = resolving_balancer(cfg, servers.clone(), resolver).map_err(|source| {
            UpstreamError::Resolve {
                name: cfg.name.clone(),
                source,
            }
        })?;
        lb.set_health_check(Box::new(check.clone()));
        lb.parallel_health_check = true;
        let ca = load_ca(cfg).map_err(|why| UpstreamError::Ca {
            name: cfg.name.clone(),
            why,
        })?;
        Ok(Upstream {
            ca,
            name: cfg.name.clone(),
            lb: Arc::new(lb),
            passive: Arc::new(Passive::new(cfg)),
            servers,
            check,
            cfg: Arc::new(cfg.clone()),
            response_time: crate::metrics::traffic::upstream_duration(&cfg.name),
        })
    }

    /// This upstream as `cfg` says, keeping its balancer and the health of its servers.
    /// Whether the server list changed (then [`Upstream::refresh`] applies it at once).
    pub fn reconfigured(&self, cfg: &UpstreamConfig) -> (Self, bool) {
        let servers_changed = self.cfg.servers != cfg.servers;
        if servers_changed {
            self.servers.store(Arc::new(cfg.servers.clone()));
        }
        self.check.set(cfg);
        self.passive.set(cfg);
        let ca = match load_ca(cfg) {
            Ok(ca) => ca,
            Err(why) => {
                tracing::error!(upstream = %self.name, error = %why, "ca_file not reloaded: the previous one stays");
                self.ca.clone()
            }
        };
        let next = Upstream {
            cfg: Arc::new(cfg.clone()),
            ca,
            ..self.clone()
        };
        (next, servers_changed)
    }

    /// Resolves the server list now (instead of at the next `resolve_interval`).
    pub async fn refresh(&self) {
        if let Err(e) = self.lb.update().await {
            tracing::warn!(upstream = %self.name, error = %e, "upstream servers do not resolve");
        }
    }

    /// Runs one round of active checks on every server.
    pub async fn check_now(&self) {
        self.lb
            .backends()
            .run_health_check(self.lb.parallel_health_check)
            .await;
    }

    pub fn resolve_interval(&self) -> Duration {
        self.cfg.resolve_interval.0
    }

    pub fn health_check_interval(&self) -> Duration {
        self.cfg.health_check_interval.0
    }

    /// Further servers a failed request may be tried on.
    pub fn retries(&self) -> usize {
        self.cfg.retries as usize
    }

    /// The next server for a request that has already tried `tried`: a healthy one (active
    /// and passive checks agree), else any server not tried yet (panic mode); `None` only when
    /// every server has been tried.
    pub fn pick(&self, tried: &[SocketAddr]) -> Option<Box<HttpPeer>> {
        let now = authflow_shared::now_ms();
        let untried = |b: &Backend| !tried.contains(&b.addr);
        let backend = self
            .lb
            .select_with(b"", 256, |b, healthy| {
                healthy && untried(b) && !self.passive.is_down(&b.addr, now)
            })
            .or_else(|| self.lb.select_with(b"", 256, |b, _| untried(b)))?;
        let cfg = &self.cfg;
        let mut peer = HttpPeer::new(backend, cfg.tls, cfg.sni.clone());
        peer.options.connection_timeout = Some(cfg.connect_timeout.0);
        peer.options.total_connection_timeout = Some(cfg.connect_timeout.0);
        peer.options.read_timeout = Some(cfg.read_timeout.0);
        peer.options.write_timeout = Some(cfg.read_timeout.0);
        set_protocol(&mut peer, cfg.protocol);
        peer.options.ca = self.ca.clone();
        Some(Box::new(peer))
    }

    /// How long a WebSocket tunnel to this upstream may stay silent.
    pub fn tunnel_timeout(&self) -> Duration {
        self.cfg.tunnel_timeout.0
    }

    /// Whether a request that has been sent to `tried` may go to one more server: within the
    /// configured retries, and only if a server it has not tried exists.
    pub fn can_retry(&self, tried: &[SocketAddr]) -> bool {
        tried.len() <= self.retries() && self.lb.backends().get_backend().len() > tried.len()
    }

    /// Counts a failure of live traffic on `addr` (refused, reset, timed out, 502-504).
    pub fn report_failure(&self, addr: &SocketAddr) {
        self.passive.fail(addr, authflow_shared::now_ms());
    }

    /// Records one server's response time (choice to response header).
    pub fn observe_response(&self, seconds: f64) {
        if let Some(h) = &self.response_time {
            h.observe(seconds);
        }
    }

    /// (healthy, total) servers, for `/health` and readiness.
    pub fn health(&self) -> (usize, usize) {
        let servers = self.servers_up();
        (servers.iter().filter(|(_, up)| *up).count(), servers.len())
    }

    /// Each server's address and whether it is in rotation (active and passive checks agree).
    pub fn servers_up(&self) -> Vec<(String, bool)> {
        let now = authflow_shared::now_ms();
        let backends = self.lb.backends().get_backend();
        backends
            .iter()
            .map(|b| {
                let up = self.lb.backends().ready(b) && !self.passive.is_down(&b.addr, now);
                (b.addr.to_string(), up)
            })
            .collect()
    }
}

/// Passive health: `max_fails` failures within `fail_timeout` take a server out of rotation
/// for `fail_timeout` (0 turns it off). A server's state is made at its first failure (the
/// set of servers changes when host names resolve anew); the request path only reads.
struct Passive {
    servers: RwLock<HashMap<SocketAddr, Arc<ServerState>>>,
    /// Changed by a reload; the state of each server is kept.
    max_fails: AtomicU32,
    fail_timeout_ms: AtomicU64,
}

#[derive(Default)]
struct ServerState {
    fails: AtomicU32,
    window_start: AtomicU64,
    down_until: AtomicU64,
}

impl Passive {
    fn state(&self, addr: &SocketAddr) -> Option<Arc<ServerState>> {
        self.servers.read().ok()?.get(addr).cloned()
    }

    fn is_down(&self, addr: &SocketAddr, now: u64) -> bool {
        self.state(addr)
            .is_some_and(|s| s.down_until.load(Ordering::Relaxed) > now)
    }

    fn new(cfg: &UpstreamConfig) -> Self {
        let passive = Passive {
            servers: RwLock::new(HashMap::new()),
            max_fails: AtomicU32::new(0),
            fail_timeout_ms: AtomicU64::new(0),
        };
        passive.set(cfg);
        passive
    }

    fn set(&self, cfg: &UpstreamConfig) {
        self.max_fails.store(cfg.max_fails, Ordering::Relaxed);
        let timeout = cfg.fail_timeout.0.as_millis().min(u128::from(u64::MAX)) as u64;
        self.fail_timeout_ms.store(timeout, Ordering::Relaxed);
    }

    fn fail(&self, addr: &SocketAddr, now: u64) {
        let max_fails = self.max_fails.load(Ordering::Relaxed);
        let fail_timeout_ms = self.fail_timeout_ms.load(Ordering::Relaxed);
        if max_fails == 0 {
            return;
        }
        let s = match self.state(addr) {
            Some(s) => s,
            None => match self.servers.write() {
                Ok(mut map) => map.entry(addr.clone()).or_default().clone(),
                Err(_) => return,
            },
        };
        if now.saturating_sub(s.window_start.load(Ordering::Relaxed)) > fail_timeout_ms {
            s.window_start.store(now, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
        }
        if s.fails.fetch_add(1, Ordering::Relaxed) + 1 >= max_fails {
            s.down_until.store(now + fail_timeout_ms, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
            tracing::warn!(server = %addr, "upstream server marked down after failures on live traffic");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {name:?}: cannot resolve servers: {source}")]
    Resolve {
        name: String,
        source: std::io::Error,
    },
    #[error("upstream {name:?}: ca_file: {why}")]
    Ca { name: String, why: String },
}

/// The upstream's `ca_file` for its health checks (an unreadable one is reported when the
/// upstream is built; the checks then use the system's roots and fail, as live traffic would).
fn ca_for_checks(cfg: &UpstreamConfig) -> Option<Arc<CaType>> {
    load_ca(cfg).ok().flatten()
}

/// The certificates of `cfg.ca_file`, when it names one.
pub fn load_ca(cfg: &UpstreamConfig) -> Result<Option<Arc<CaType>>, String> {
    use rustls_pki_types::pem::PemObject;
    let Some(path) = &cfg.ca_file else {
        return Ok(None);
    };
    let certs = rustls_pki_types::CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    let wrapped: Vec<WrappedX509> = certs
        .into_iter()
        .map(|der| WrappedX509::new(der.to_vec(), parse_x509))
        .collect();
    Ok(Some(Arc::from(wrapped)))
}

/// HTTP/2 only (no fallback to HTTP/1.1, which would break gRPC), its streams multiplexed
/// on few connections.
pub fn set_protocol(peer: &mut HttpPeer, protocol: UpstreamProtocol) {
    if protocol != UpstreamProtocol::H1 {
        peer.options.set_http_version(2, 2);
        peer.options.max_h2_streams = H2_STREAMS_PER_CONNECTION;
    }
}

/// Streams the gateway opens on one HTTP/2 connection to a server before opening another.
const H2_STREAMS_PER_CONNECTION: usize = 100;

/// Builds every upstream of `cfgs`.
pub fn build(cfgs: &[UpstreamConfig]) -> Result<Vec<Upstream>, UpstreamError> {
    rebuild(&[], cfgs).map(|(all, _)| all)
}

/// The upstreams of `cfgs`, keeping those of `previous` that keep their name (reconfigured in
/// place); also the ones whose server list is new or changed, to resolve at once.
pub fn rebuild(
    previous: &[Upstream],
    cfgs: &[UpstreamConfig],
) -> Result<(Vec<Upstream>, Vec<Upstream>), UpstreamError> {
    let mut all = Vec::with_capacity(cfgs.len());
    let mut to_refresh = Vec::new();
    for cfg in cfgs {
        match previous.iter().find(|u| u.name == cfg.name) {
            Some(old) => {
                let (next, servers_changed) = old.reconfigured(cfg);
                if servers_changed {
                    to_refresh.push(next.clone());
                }
                all.push(next);
            }
            None => all.push(Upstream::new(cfg, Arc::new(Dns))?),
        }
    }
    Ok((all, to_refresh))
}

/// A balancer over `servers` resolved through `resolver` now, so the first request finds
/// servers. A name that does not resolve yet (a container not started) is not fatal: the
/// gateway starts, the upstream is not ready (`/readyz`), and the next round finds it.
fn resolving_balancer(
    cfg: &UpstreamConfig,
    servers: ServerList,
    resolver: Arc<dyn Resolve>,
) -> std::io::Result<LoadBalancer<RoundRobin>> {
    let discovery = Resolving::new(servers, resolver);
    let lb = LoadBalancer::<RoundRobin>::from_backends(Backends::new(Box::new(discovery)));
    // The first resolution, before anything listens: on a thread and runtime of its own, since
    // this may itself run inside a runtime (`authflow up`, a reload).
    let first = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(lb.update())
                    .map_err(|e| std::io::Error::other(e.to_string()))
            })
            .join()
            .map_err(|_| std::io::Error::other("resolver thread panicked"))?
    });
    if let Err(e) = first {
        tracing::warn!(upstream = %cfg.name, error = %e, "upstream servers do not resolve yet");
    }
    Ok(lb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;
    use std::sync::Mutex;

    /// A resolver whose answers the test changes, as DNS does when a container moves.
    struct Moving(Mutex<Vec<std::net::SocketAddr>>);

    #[async_trait::async_trait]
    impl Resolve for Moving {
        async fn resolve(&self, _: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
            Ok(self.0.lock().map(|a| a.clone()).unwrap_or_default())
        }
    }

    fn addrs(lb: &LoadBalancer<RoundRobin>) -> Vec<String> {
        lb.backends()
            .get_backend()
            .iter()
            .map(|b| b.addr.to_string())
            .collect()
    }

    #[tokio::test]
    async fn a_server_that_moves_is_found_at_its_new_address() {
        let cfg: UpstreamConfig =
            toml::from_str("name = \"app\"\nservers = [\"app.internal:9000\"]").expect("cfg");
        let resolver = Arc::new(Moving(Mutex::new(vec!["10.0.0.1:9000"
            .parse()
            .expect("addr")])));
        let up = Upstream::new(&cfg, resolver.clone()).expect("balancer");
        let lb = &up.lb;
        assert_eq!(
            addrs(lb),
            vec!["10.0.0.1:9000"],
            "resolved before the first request"
        );
        *resolver.0.lock().expect("lock") = vec!["10.0.0.2:9000".parse().expect("addr")];
        lb.update().await.expect("update");
        assert_eq!(addrs(lb), vec!["10.0.0.2:9000"]);
        // A round where nothing resolves keeps what was there.
        resolver.0.lock().expect("lock").clear();
        assert!(lb.update().await.is_err());
        assert_eq!(addrs(lb), vec!["10.0.0.2:9000"]);
        // Nothing resolving at start is not fatal: the next round fills it in.
        let up = Upstream::new(&cfg, resolver.clone()).expect("a balancer even so");
        let lb = &up.lb;
        assert!(addrs(lb).is_empty());
        *resolver.0.lock().expect("lock") = vec!["10.0.0.3:9000".parse().expect("addr")];
        lb.update().await.expect("update");
        assert_eq!(addrs(lb), vec!["10.0.0.3:9000"]);
    }

    /// Answers each name with the address it spells (`127.0.0.1:9000`).
    struct Literal;

    #[async_trait::async_trait]
    impl Resolve for Literal {
        async fn resolve(&self, host_port: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
            host_port
                .parse()
                .map(|a| vec![a])
                .map_err(std::io::Error::other)
        }
    }

    #[tokio::test]
    async fn a_reload_changes_servers_and_settings_but_keeps_the_balancer() {
        let cfg = |servers: &str, retries: u32| -> UpstreamConfig {
            toml::from_str(&format!(
                "name = \"app\"\nservers = [{servers}]\nretries = {retries}\nmax_fails = 1"
            ))
            .expect("cfg")
        };
        let up = Upstream::new(&cfg("\"10.0.0.1:80\"", 1), Arc::new(Literal)).expect("upstream");
        let addr: SocketAddr = "10.0.0.1:80"
            .parse::<std::net::SocketAddr>()
            .expect("addr")
            .into();
        up.report_failure(&addr);
        assert_eq!(up.health(), (0, 1), "marked down by live traffic");
        let (next, changed) = up.reconfigured(&cfg("\"10.0.0.1:80\", \"10.0.0.2:80\"", 2));
        assert!(changed);
        assert_eq!(next.retries(), 2);
        assert!(Arc::ptr_eq(&next.lb, &up.lb), "same balancer");
        next.refresh().await;
        assert_eq!(addrs(&next.lb), vec!["10.0.0.1:80", "10.0.0.2:80"]);
        assert_eq!(
            next.health(),
            (1, 2),
            "the down server stays down across the reload"
        );
        let (_, changed) = next.reconfigured(&cfg("\"10.0.0.1:80\", \"10.0.0.2:80\"", 3));
        assert!(!changed, "same servers: nothing to resolve");
    }
}
