//! Wires a validated config into a running Pingora server: the proxy service, the upstream
//! discovery and health checks, the Redis connection and the optional metrics listener.

use crate::config::AuthMode;
use crate::config::GatewayConfig;
use crate::proxy::Gateway;
use crate::session_cache::SessionCache;
use crate::upstream;
use authflow_shared::store::{
    ChangeSink, RedisSessionStore, SessionFeed, SessionStore, SharedLimits, StoreError,
};
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::server::{RunArgs, Server};
use pingora::services::background::{background_service, BackgroundService};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("TLS listener: {0}")]
    Tls(String),
    #[error(transparent)]
    JwtKey(#[from] crate::identity_jwt::JwtKeyError),
}

/// How the process runs, beside what the config says: Pingora's graceful upgrade (a new
/// process takes the listening sockets of the old one over `upgrade_sock`, and the old one
/// drains on `SIGQUIT`), daemon mode and its pid file.
#[derive(Debug, Clone)]
pub struct Process {
    /// Take the listening sockets from the running gateway instead of binding them.
    pub upgrade: bool,
    pub daemon: bool,
    /// Absolute path.
    pub pid_file: String,
    /// Absolute path; the old and the new process must name the same.
    pub upgrade_sock: String,
    /// The config file, reloaded on `SIGHUP` (none: no live reload).
    pub config_path: Option<std::path::PathBuf>,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            upgrade: false,
            daemon: false,
            pid_file: "/tmp/authflow-gateway.pid".into(),
            upgrade_sock: "/tmp/authflow-gateway-upgrade.sock".into(),
            config_path: None,
        }
    }
}

/// Builds the Pingora server for `cfg` with the Redis session store.
pub fn build(cfg: &GatewayConfig, process: &Process) -> Result<Server, StartError> {
    // Each Pingora worker thread connects its own Redis pool on first use.
    let redis = Arc::new(RedisSessionStore::new(&cfg.redis)?);
    build_for(cfg, process, redis.clone(), Some(redis))
}

/// Builds the server around any session store, with the store for `scope = "global"` rate
/// limits when there is one (without, those rules count locally).
pub fn build_with_store(
    cfg: &GatewayConfig,
    store: Arc<dyn SessionStore>,
    shared_limits: Option<Arc<dyn SharedLimits>>,
) -> Result<Server, StartError> {
    build_for(cfg, &Process::default(), store, shared_limits)
}

fn build_for(
    cfg: &GatewayConfig,
    process: &Process,
    store: Arc<dyn SessionStore>,
    shared_limits: Option<Arc<dyn SharedLimits>>,
) -> Result<Server, StartError> {
    let conf = ServerConf {
        threads: cfg.threads,
        // Work stealing costs more than it gains for many tiny requests on few cores.
        work_stealing: false,
        grace_period_seconds: Some(cfg.shutdown_grace.0.as_secs()),
        graceful_shutdown_timeout_seconds: Some(cfg.shutdown_grace.0.as_secs().max(1)),
        daemon: process.daemon,
        pid_file: process.pid_file.clone(),
        upgrade_sock: process.upgrade_sock.clone(),
        ..ServerConf::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade: process.upgrade,
        daemon: process.daemon,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);
    crate::metrics::register_session_outcomes(crate::session::all_outcomes());
    let upstreams = upstream::build(&cfg.upstreams)?;
    let cache = session_cache(cfg, store.as_ref());
    let signer = match (&cfg.identity.jwt, &cfg.identity.jwt_key_file) {
        (true, Some(path)) => Some(Arc::new(
            crate::identity_jwt::IdentitySigner::from_pem_file(path, cfg.identity.jwt_ttl.0)?,
        )),
        _ => None,
    };
    let gateway = Gateway::new(cfg, upstreams, store, cache.clone(), shared_limits.clone())
        .with_signer(signer);
    crate::metrics::register_all();
    let policy = gateway.reload_handle();
    let upstreams_changed = Arc::new(tokio::sync::Notify::new());
    let in_force = policy.clone();
    server.add_service(background_service(
        "upstream discovery and health checks",
        upstream::checks::Keeper {
            upstreams: Arc::new(move || in_force.load().upstreams.clone()),
            changed: upstreams_changed.clone(),
        },
    ));
    if let Some(path) = &process.config_path {
        crate::metrics::register_reloads();
        crate::metrics::config_in_force(&crate::reload::file_hash(path));
        server.add_service(background_service(
            "config reload",
            crate::reload::Reloader {
                path: path.clone(),
                started: cfg.clone(),
                policy,
                shared_limits,
                upstreams_changed,
            },
        ));
    }
    let health = gateway.health();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "authflow gateway",
    );
    proxy.add_tcp(&cfg.listen);
    if let (true, Some(listen)) = (cfg.forward_auth.enabled, &cfg.forward_auth.listen) {
        proxy.add_tcp(listen);
    }
    if let Some(tls) = &cfg.tls {
        proxy
            .add_tls(&tls.listen, &tls.cert, &tls.key)
            .map_err(|e| StartError::Tls(e.to_string()))?;
    }
    server.add_service(proxy);
    if let Some(addr) = &cfg.metrics_listen {
        let mut metrics = pingora::services::listening::Service::new(
            "metrics".into(),
            crate::admin::MetricsApp::new(health),
        );
        metrics.add_tcp(addr);
        server.add_service(metrics);
    }
    if let Some((cache, feed)) = cache {
        server.add_service(background_service(
            "session cache feed",
            FeedService { cache, feed },
        ));
    }
    Ok(server)
}

/// The session cache and the store's change feed, when sessions are checked (protected
/// routes or forward-auth), the cache is configured and the store has a feed.
fn session_cache(
    cfg: &GatewayConfig,
    store: &dyn SessionStore,
) -> Option<(Arc<SessionCache>, Arc<dyn SessionFeed>)> {
    let protects =
        cfg.forward_auth.enabled || cfg.routes.iter().any(|r| r.auth == AuthMode::Required);
    if !protects || cfg.session_check.cache_entries == 0 {
        return None;
    }
    let feed = store.feed()?;
    Some((
        Arc::new(SessionCache::new(cfg.session_check.cache_entries)),
        feed,
    ))
}

/// Drives the change feed into the cache until shutdown.
struct FeedService {
    cache: Arc<SessionCache>,
    feed: Arc<dyn SessionFeed>,
}

#[async_trait::async_trait]
impl BackgroundService for FeedService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let sink: Arc<dyn ChangeSink> = self.cache.clone();
        tokio::select! {
            _ = self.feed.run(sink) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Runs until SIGINT/SIGTERM; in-flight requests get the configured grace period.
pub fn run(cfg: &GatewayConfig, process: &Process) -> Result<(), StartError> {
    let mut server = build(cfg, process)?;
    server.bootstrap();
    tracing::info!(listen = %cfg.listen, routes = cfg.routes.len(), upgrade = process.upgrade, "gateway starting");
    server.run(RunArgs::default());
    Ok(())
}
