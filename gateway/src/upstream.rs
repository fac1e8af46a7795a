//! Upstream pools: round-robin over each upstream's servers, with active health checks (TCP,
//! or HTTP with `health_check_path`) running as Pingora background services, and passive
//! health from live traffic (nginx's `max_fails`/`fail_timeout`). No server is ever the
//! reason for an instant 502 by itself: when every server of an upstream is marked down,
//! requests still go to them (Envoy's panic mode), so a lone server is never blacked out by a
//! failed check, and a server that just started is used at once.

use crate::config::UpstreamConfig;
use pingora::http::ResponseHeader;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::protocols::l4::socket::SocketAddr;
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::upstreams::peer::HttpPeer;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
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
        tried.len() <= self.retries && self.passive.servers.len() > tried.len()
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
/// for `fail_timeout` (0 turns it off). Lock-free: a few atomics per server.
struct Passive {
    servers: Vec<(SocketAddr, ServerState)>,
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
    fn state(&self, addr: &SocketAddr) -> Option<&ServerState> {
        self.servers.iter().find(|(a, _)| a == addr).map(|(_, s)| s)
    }

    fn is_down(&self, addr: &SocketAddr, now: u64) -> bool {
        self.state(addr)
            .is_some_and(|s| s.down_until.load(Ordering::Relaxed) > now)
    }

    fn fail(&self, addr: &SocketAddr, now: u64) {
        if self.max_fails == 0 {
            return;
        }
        let Some(s) = self.state(addr) else { return };
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
        let mut lb =
            LoadBalancer::<RoundRobin>::try_from_iter(cfg.servers.iter().map(String::as_str))
                .map_err(|source| UpstreamError {
                    name: cfg.name.clone(),
                    source,
                })?;
        set_health_check(&mut lb, cfg);
        let passive = Passive {
            servers: lb
                .backends()
                .get_backend()
                .iter()
                .map(|b| (b.addr.clone(), ServerState::default()))
                .collect(),
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
