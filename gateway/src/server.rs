//! Wires a validated config into a running Pingora server: the proxy service, the upstream
//! health checks, the Redis connection and the optional metrics listener.

use crate::config::GatewayConfig;
use crate::proxy::Gateway;
use crate::upstream;
use authflow_shared::store::{RedisSessionStore, SessionStore, StoreError};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS listener: {0}")]
    Tls(String),
}

/// Builds the Pingora server for `cfg` with the Redis session store.
pub fn build(cfg: &GatewayConfig) -> Result<Server, StartError> {
    // Each Pingora worker thread connects its own Redis pool on first use.
    let store: Arc<dyn SessionStore> = Arc::new(RedisSessionStore::new(&cfg.redis)?);
    build_with_store(cfg, store)
}

/// Builds the server around any session store.
pub fn build_with_store(
    cfg: &GatewayConfig,
    store: Arc<dyn SessionStore>,
) -> Result<Server, StartError> {
    let conf = ServerConf {
        threads: cfg.threads,
        // Work stealing costs more than it gains for many tiny requests on few cores.
        work_stealing: false,
        grace_period_seconds: Some(cfg.shutdown_grace.0.as_secs()),
        graceful_shutdown_timeout_seconds: Some(cfg.shutdown_grace.0.as_secs().max(1)),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let (upstreams, health_checks) = upstream::build(&cfg.upstreams)?;
    let gateway = Gateway::new(cfg, upstreams, store);
    let health = gateway.health();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "authflow gateway",
    );
    proxy.add_tcp(&cfg.listen);
    if let Some(tls) = &cfg.tls {
        proxy
            .add_tls(&tls.listen, &tls.cert, &tls.key)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    server.add_service(proxy);
    if let Some(addr) = &cfg.metrics_listen {
        let mut metrics = pingora::services::listening::Service::new(
            "metrics".into(),
            crate::metrics::MetricsApp::new(health),
        );
        metrics.add_tcp(addr);
        server.add_service(metrics);
    }
    for hc in health_checks {
        server.add_service(hc);
    }
    Ok(server)
}

/// Runs until SIGINT/SIGTERM; in-flight requests get the configured grace period.
pub fn run(cfg: &GatewayConfig) -> Result<(), StartError> {
    let mut server = build(cfg)?;
    server.bootstrap();
    tracing::info!(listen = %cfg.listen, routes = cfg.routes.len(), "gateway starting");
    server.run(RunArgs::default());
    Ok(())
}
