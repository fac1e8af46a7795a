//! Wires a validated config into a running Pingora server: the proxy service, the upstream
//! health checks, the Redis connection and the optional metrics listener.

use crate::config::GatewayConfig;
use crate::proxy::Gateway;
use crate::upstream;
use async_trait::async_trait;
use authflow_shared::store::{RedisSessionStore, SessionStore, StoreError};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownWatch};
use pingora::services::background::{background_service, BackgroundService};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS listener: {0}")]
    Tls(String),
}

/// Keeps the Redis pool connected from inside Pingora's runtime; fred reconnects forever.
struct RedisConnector(RedisSessionStore);

#[async_trait]
impl BackgroundService for RedisConnector {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        self.0.connect();
        if !self.0.wait_connected(Duration::from_secs(2)).await {
            tracing::warn!("Redis is not reachable yet: protected routes answer 503 until it is");
        }
        let _ = shutdown.changed().await;
    }
}

/// Builds the Pingora server for `cfg` with the Redis session store.
pub fn build(cfg: &GatewayConfig) -> Result<Server, StartError> {
    let store = RedisSessionStore::new(&cfg.redis)?;
    let shared: Arc<dyn SessionStore> = Arc::new(store.clone());
    build_with_store(cfg, shared, Some(store))
}

/// Builds the server around any session store; `redis` (when given) is connected by a
/// background service.
pub fn build_with_store(
    cfg: &GatewayConfig,
    store: Arc<dyn SessionStore>,
    redis: Option<RedisSessionStore>,
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
            crate::metrics::MetricsApp,
        );
        metrics.add_tcp(addr);
        server.add_service(metrics);
    }
    for hc in health_checks {
        server.add_service(hc);
    }
    if let Some(redis) = redis {
        server.add_service(background_service("redis", RedisConnector(redis)));
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
