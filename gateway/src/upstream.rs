//! Upstream pools: round-robin over each upstream's servers, with active health checks (TCP,
//! or HTTP with `health_check_path`) running as Pingora background services, passive health
//! from live traffic (nginx's `max_fails`/`fail_timeout`), and host names resolved again every
//! `resolve_interval`, so a server restarted under a new address is found. No server is ever the
//! reason for an instant 502 by itself: when every server of an upstream is marked down,
//! requests still go to them (Envoy's panic mode), so a lone server is never blacked out by a
//! failed check, and a server that just started is used at once.

use crate::config::UpstreamConfig;
use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::lb::discovery::ServiceDiscovery;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, Backends, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::upstreams::peer::HttpPeer;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;

/// One named upstream.
#[derive(Clone)]
pub struct Upstream {
    pub name: String,
    lb: Arc<LoadBalancer<RoundRobin>>,
    passive: Arc<Passive>,
    tls: bool,
    sni: String,
    connect_timeout: Duration,
    read_timeout: Duration,
    /// Further servers a failed request may be tried on.
    pub retries: usize,
}

impl Upstream {
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
        let mut peer = HttpPeer::new(backend, self.tls, self.sni.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        Some(Box::new(peer))
    }

    /// Whether a request that has been sent to `tried` may go to one more server: within the
    /// configured retries, and only if a server it has not tried exists.
    pub fn can_retry(&self, tried: &[SocketAddr]) -> bool {
        tried.len() <= self.retries && self.lb.backends().get_backend().len() > tried.len()
    }

    /// Counts a failure of live traffic on `addr` (refused, reset, timed out, 502-504).
    pub fn report_failure(&self, addr: &SocketAddr) {
        self.passive.fail(addr, authflow_shared::now_ms());
    }

    /// (healthy, total) servers, for `/health` and readiness.
    pub fn health(&self) -> (usize, usize) {
        let now = authflow_shared::now_ms();
        let backends = self.lb.backends().get_backend();
        let healthy = backends
            .iter()
            .filter(|b| self.lb.backends().ready(b) && !self.passive.is_down(&b.addr, now))
            .count();
        (healthy, backends.len())
    }
}

/// Passive health: `max_fails` failures within `fail_timeout` take a server out of rotation
/// for `fail_timeout` (0 turns it off). A server's state is made at its first failure (the
/// set of servers changes when host names resolve anew); the request path only reads.
struct Passive {
    servers: RwLock<HashMap<SocketAddr, Arc<ServerState>>>,
    max_fails: u32,
    fail_timeout_ms: u64,
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

    fn fail(&self, addr: &SocketAddr, now: u64) {
        if self.max_fails == 0 {
            return;
        }
        let s = match self.state(addr) {
            Some(s) => s,
            None => match self.servers.write() {
                Ok(mut map) => map.entry(addr.clone()).or_default().clone(),
                Err(_) => return,
            },
        };
        if now.saturating_sub(s.window_start.load(Ordering::Relaxed)) > self.fail_timeout_ms {
            s.window_start.store(now, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
        }
        if s.fails.fetch_add(1, Ordering::Relaxed) + 1 >= self.max_fails {
            s.down_until
                .store(now + self.fail_timeout_ms, Ordering::Relaxed);
            s.fails.store(0, Ordering::Relaxed);
            tracing::warn!(server = %addr, "upstream server marked down after failures on live traffic");
        }
    }
}

/// Turns `host:port` into addresses. The DNS in production; a stand-in in tests.
#[async_trait]
pub trait Resolve: Send + Sync {
    async fn resolve(&self, host_port: &str) -> std::io::Result<Vec<std::net::SocketAddr>>;
}

/// The system resolver.
pub struct Dns;

#[async_trait]
impl Resolve for Dns {
    async fn resolve(&self, host_port: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
        Ok(tokio::net::lookup_host(host_port).await?.collect())
    }
}

/// Discovery that resolves every configured `host:port` again on each round. An entry that
/// does not resolve this time is left out (and logged); when none resolves, discovery fails
/// and Pingora keeps the servers it had.
pub struct Resolving {
    servers: Vec<String>,
    resolver: Arc<dyn Resolve>,
}

impl Resolving {
    pub fn new(servers: Vec<String>, resolver: Arc<dyn Resolve>) -> Self {
        Resolving { servers, resolver }
    }
}

#[async_trait]
impl ServiceDiscovery for Resolving {
    async fn discover(&self) -> pingora::Result<(BTreeSet<Backend>, HashMap<u64, bool>)> {
        let mut found = BTreeSet::new();
        for server in &self.servers {
            match self.resolver.resolve(server).await {
                Ok(addrs) => {
                    for addr in addrs {
                        if let Ok(b) = Backend::new(&addr.to_string()) {
                            found.insert(b);
                        }
                    }
                }
                Err(e) => tracing::warn!(server, error = %e, "upstream host does not resolve"),
            }
        }
        if found.is_empty() {
            return pingora::Error::e_explain(
                pingora::ErrorType::ConnectNoRoute,
                "no upstream server resolves",
            );
        }
        Ok((found, HashMap::new()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("upstream {name:?}: cannot resolve servers: {source}")]
pub struct UpstreamError {
    name: String,
    source: std::io::Error,
}

/// The background service that health-checks one upstream.
pub type HealthCheckService = GenBackgroundService<LoadBalancer<RoundRobin>>;

/// Builds every upstream and the background services that health-check them.
pub fn build(
    cfgs: &[UpstreamConfig],
) -> Result<(Vec<Upstream>, Vec<HealthCheckService>), UpstreamError> {
    let mut upstreams = Vec::with_capacity(cfgs.len());
    let mut services = Vec::with_capacity(cfgs.len());
    for cfg in cfgs {
        let mut lb = resolving_balancer(cfg, Arc::new(Dns)).map_err(|source| UpstreamError {
            name: cfg.name.clone(),
            source,
        })?;
        set_health_check(&mut lb, cfg);
        let passive = Passive {
            servers: RwLock::new(HashMap::new()),
            max_fails: cfg.max_fails,
            fail_timeout_ms: cfg.fail_timeout.0.as_millis() as u64,
        };
        let service = background_service(&format!("health check {}", cfg.name), lb);
        upstreams.push(Upstream {
            name: cfg.name.clone(),
            lb: service.task(),
            passive: Arc::new(passive),
            tls: cfg.tls,
            sni: cfg.sni.clone(),
            connect_timeout: cfg.connect_timeout.0,
            read_timeout: cfg.read_timeout.0,
            retries: cfg.retries as usize,
        });
        services.push(service);
    }
    Ok((upstreams, services))
}

/// A balancer over `cfg.servers` resolved through `resolver` now (so the first request finds
/// servers) and again every `resolve_interval` by the background service. A name that does
/// not resolve yet (a container not started) is not fatal: the gateway starts, the upstream
/// is not ready (`/readyz`), and the next round finds it.
pub fn resolving_balancer(
    cfg: &UpstreamConfig,
    resolver: Arc<dyn Resolve>,
) -> std::io::Result<LoadBalancer<RoundRobin>> {
    let discovery = Resolving::new(cfg.servers.clone(), resolver);
    let mut lb = LoadBalancer::<RoundRobin>::from_backends(Backends::new(Box::new(discovery)));
    lb.update_frequency = Some(cfg.resolve_interval.0);
    // The first resolution, before anything listens: on a thread and runtime of its own, since
    // `build` may itself run inside a runtime (`authflow up`).
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

/// TCP checks by default; with `health_check_path`, a GET of that path that must answer
/// `health_check_status`.
fn set_health_check(lb: &mut LoadBalancer<RoundRobin>, cfg: &UpstreamConfig) {
    match &cfg.health_check_path {
        Some(path) => {
            let host = if cfg.sni.is_empty() {
                "localhost"
            } else {
                &cfg.sni
            };
            let mut hc = HttpHealthCheck::new(host, cfg.tls);
            if let Ok(mut req) = pingora::http::RequestHeader::build("GET", path.as_bytes(), None) {
                let _ = req.append_header("Host", host);
                hc.req = req;
            }
            hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout.0);
            let expected = cfg.health_check_status;
            hc.validator = Some(Box::new(move |resp: &ResponseHeader| {
                if resp.status.as_u16() == expected {
                    Ok(())
                } else {
                    pingora::Error::e_explain(
                        pingora::ErrorType::Custom("health check status"),
                        format!("{} instead of {expected}", resp.status.as_u16()),
                    )
                }
            }));
            lb.set_health_check(Box::new(hc));
        }
        None => {
            let mut hc = TcpHealthCheck::new();
            hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout.0);
            lb.set_health_check(hc);
        }
    }
    lb.health_check_frequency = Some(cfg.health_check_interval.0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;
    use std::sync::Mutex;

    /// A resolver whose answers the test changes, as DNS does when a container moves.
    struct Moving(Mutex<Vec<std::net::SocketAddr>>);

    #[async_trait]
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
        let lb = std::thread::scope(|s| {
            s.spawn(|| resolving_balancer(&cfg, resolver.clone()))
                .join()
                .expect("thread")
        })
        .expect("balancer");
        assert_eq!(
            addrs(&lb),
            vec!["10.0.0.1:9000"],
            "resolved before the first request"
        );
        *resolver.0.lock().expect("lock") = vec!["10.0.0.2:9000".parse().expect("addr")];
        lb.update().await.expect("update");
        assert_eq!(addrs(&lb), vec!["10.0.0.2:9000"]);
        // A round where nothing resolves keeps what was there.
        resolver.0.lock().expect("lock").clear();
        assert!(lb.update().await.is_err());
        assert_eq!(addrs(&lb), vec!["10.0.0.2:9000"]);
        // Nothing resolving at start is not fatal: the next round fills it in.
        let lb = std::thread::scope(|s| {
            s.spawn(|| resolving_balancer(&cfg, resolver.clone()))
                .join()
                .expect("thread")
        })
        .expect("a balancer even so");
        assert!(addrs(&lb).is_empty());
        *resolver.0.lock().expect("lock") = vec!["10.0.0.3:9000".parse().expect("addr")];
        lb.update().await.expect("update");
        assert_eq!(addrs(&lb), vec!["10.0.0.3:9000"]);
    }
}
