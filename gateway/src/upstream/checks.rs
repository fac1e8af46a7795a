//! Active health checks that a reload can change, and the task that runs discovery and the
//! checks of every upstream in force. Pingora's own background service per balancer is fixed
//! at start; this one follows the upstream set through reloads: an added upstream is checked
//! at once, a removed one is no longer checked, a changed interval applies from the reload.

use crate::config::UpstreamConfig;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::lb::health_check::{HealthCheck, HttpHealthCheck, TcpHealthCheck};
use pingora::lb::Backend;
use std::sync::Arc;

type Check = Box<dyn HealthCheck + Send + Sync>;

/// The active check of one upstream, replaced whole on reload (the balancer keeps this
/// handle; the health state of its servers is kept).
#[derive(Clone)]
pub struct ReloadableCheck(Arc<ArcSwap<Check>>);

impl ReloadableCheck {
    pub fn new(cfg: &UpstreamConfig) -> Self {
        ReloadableCheck(Arc::new(ArcSwap::from_pointee(check_for(cfg))))
    }

    /// Checks from now on as `cfg` says.
    pub fn set(&self, cfg: &UpstreamConfig) {
        self.0.store(Arc::new(check_for(cfg)));
    }
}

#[async_trait]
impl HealthCheck for ReloadableCheck {
    async fn check(&self, target: &Backend) -> pingora::Result<()> {
        let check = self.0.load_full();
        check.check(target).await
    }

    async fn health_status_change(&self, target: &Backend, healthy: bool) {
        if !healthy {
            tracing::warn!(server = %target.addr, "upstream server failed its health check");
        }
    }

    fn health_threshold(&self, success: bool) -> usize {
        self.0.load().health_threshold(success)
    }
}

/// TCP checks by default; with `health_check_path`, a GET of that path that must answer
/// `health_check_status`; with `health_check_grpc`, the gRPC health service.
fn check_for(cfg: &UpstreamConfig) -> Check {
    if let Some(service) = &cfg.health_check_grpc {
        return Box::new(super::grpc_health::GrpcHealthCheck::new(cfg, service));
    }
    let Some(path) = &cfg.health_check_path else {
        let mut hc = TcpHealthCheck::new();
        hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout.0);
        return hc;
    };
    let host = if cfg.sni.is_empty() {
        "localhost"
    } else {
        &cfg.sni
    };
    let mut hc = HttpHealthCheck::new(host, cfg.tls);
    super::set_protocol(&mut hc.peer_template, cfg.protocol);
    hc.peer_template.options.ca = super::ca_for_checks(cfg);
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
    Box::new(hc)
}

/// The upstreams in force now (the reloadable policy's), read at each round.
pub type UpstreamsInForce = Arc<dyn Fn() -> Vec<super::Upstream> + Send + Sync>;

/// Runs discovery (every `resolve_interval`) and active checks (every
/// `health_check_interval`) for each upstream in force, one task per upstream. `changed`
/// (notified by a reload) restarts the tasks for the new set: each starts with a check and
/// a resolution, so a new server list or check applies at once.
pub struct Keeper {
    pub upstreams: UpstreamsInForce,
    pub changed: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl pingora::services::background::BackgroundService for Keeper {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let mut first = true;
        loop {
            let tasks: Vec<_> = (self.upstreams)()
                .into_iter()
                .map(|u| tokio::spawn(keep(u, !first)))
                .collect();
            first = false;
            tokio::select! {
                _ = self.changed.notified() => {}
                _ = shutdown.changed() => {}
            }
            for t in &tasks {
                t.abort();
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }
}

/// One upstream's rounds, until aborted. Its servers were resolved when it was built, so
/// the first resolution waits an interval unless `resolve_first`.
async fn keep(upstream: super::Upstream, resolve_first: bool) {
    let now = tokio::time::Instant::now();
    let mut next_resolve = if resolve_first {
        now
    } else {
        now + upstream.resolve_interval()
    };
    let mut next_check = now;
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_resolve {
            upstream.refresh().await;
            next_resolve = now + upstream.resolve_interval();
        }
        if now >= next_check {
            upstream.check_now().await;
            next_check = now + upstream.health_check_interval();
        }
        tokio::time::sleep_until(next_resolve.min(next_check)).await;
    }
}
