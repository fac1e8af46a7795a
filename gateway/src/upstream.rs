//! Upstream pools: round-robin over each upstream's servers, with TCP health checks running
//! as Pingora background services.

use crate::config::UpstreamConfig;
use pingora::lb::health_check::TcpHealthCheck;
use pingora::lb::selection::RoundRobin;
use pingora::lb::LoadBalancer;
use pingora::services::background::{background_service, GenBackgroundService};
use pingora::upstreams::peer::HttpPeer;
use std::sync::Arc;
use std::time::Duration;

/// One named upstream.
#[derive(Clone)]
pub struct Upstream {
    pub name: String,
    lb: Arc<LoadBalancer<RoundRobin>>,
    tls: bool,
    sni: String,
    connect_timeout: Duration,
    read_timeout: Duration,
}

impl Upstream {
    /// The next healthy server as a peer, or `None` when every server is down.
    pub fn peer(&self) -> Option<Box<HttpPeer>> {
        let backend = self.lb.select(b"", 256)?;
        let mut peer = HttpPeer::new(backend, self.tls, self.sni.clone());
        peer.options.connection_timeout = Some(self.connect_timeout);
        peer.options.total_connection_timeout = Some(self.connect_timeout);
        peer.options.read_timeout = Some(self.read_timeout);
        peer.options.write_timeout = Some(self.read_timeout);
        Some(Box::new(peer))
    }

    /// (healthy, total) servers, for `/health`.
    pub fn health(&self) -> (usize, usize) {
        let backends = self.lb.backends().get_backend();
        let healthy = backends
            .iter()
            .filter(|b| self.lb.backends().ready(b))
            .count();
        (healthy, backends.len())
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
        let mut hc = TcpHealthCheck::new();
        hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout.0);
        lb.set_health_check(hc);
        lb.health_check_frequency = Some(cfg.health_check_interval.0);
        let service = background_service(&format!("health check {}", cfg.name), lb);
        upstreams.push(Upstream {
            name: cfg.name.clone(),
            lb: service.task(),
            tls: cfg.tls,
            sni: cfg.sni.clone(),
            connect_timeout: cfg.connect_timeout.0,
            read_timeout: cfg.read_timeout.0,
        });
        services.push(service);
    }
    Ok((upstreams, services))
}
