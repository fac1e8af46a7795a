//! Wires a validated config into a running Pingora server: the proxy service, the upstream
//! discovery and health checks, the Redis connection and the optional metrics listener.

use crate::config::AuthMode;
use crate::config::GatewayConfig;
use crate::live::{Fanout, LiveConnections, Sources};
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
    let gateway = Gateway::new(
        cfg,
        upstreams,
        store.clone(),
        cache.clone(),
        shared_limits.clone(),
    )
    .with_signer(signer);
    crate::metrics::register_all();
    crate::protocol::register_metrics();
    let policy = gateway.reload_handle();
    let watched_policy = policy.clone();
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
    let live = gateway.live_connections();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "authflow gateway",
    );
    if let Some(app) = proxy.app_logic_mut() {
        let mut options = pingora::apps::HttpServerOptions::default();
        options.h2c = cfg.h2c;
        // An HTTP/2 connection without a stream in flight is closed like an idle HTTP/1.1
        // one (Pingora keeps it forever otherwise).
        options.h2_idle_timeout = Some(cfg.limits.keepalive_timeout.0);
        app.server_options = Some(options);
        app.h2_options = Some(h2_options(&cfg.limits));
    }
    proxy.add_tcp(&cfg.listen);
    if let (true, Some(listen)) = (cfg.forward_auth.enabled, &cfg.forward_auth.listen) {
        proxy.add_tcp(listen);
    }
    if let Some(tls) = &cfg.tls {
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate(&tls.cert, &tls.key)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        if tls.http2 {
            settings.enable_h2();
        }
        proxy.add_tls_with_settings(&tls.listen, None, settings);
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
    let (cached, feed) = cache.unzip();
    if let (Some(cache), Some(feed)) = (&cached, &feed) {
        let mut sinks: Vec<Arc<dyn ChangeSink>> = vec![cache.clone()];
        sinks.extend(live.clone().map(|l| l as Arc<dyn ChangeSink>));
        server.add_service(background_service(
            "session cache feed",
            FeedService {
                sink: Arc::new(Fanout(sinks)),
                feed: feed.clone(),
            },
        ));
    }
    if let Some(live) = live {
        server.add_service(background_service(
            "live connections",
            LiveService {
                live,
                sources: Arc::new(Sources {
                    store,
                    feed,
                    cache: cached,
                    policy: watched_policy,
                }),
            },
        ));
    }
    Ok(server)
}

/// HTTP/2 bounds per downstream connection. Pingora 0.9 already bounds the decoded header
/// list (64 KiB), concurrent streams (100) and malformed streams (32); the `h2` crate bounds
/// streams reset before they were accepted (20, then `GOAWAY ENHANCE_YOUR_CALM`) and the
/// HPACK table (4 KiB). Here the header list follows `[limits] max_header_bytes`, so an
/// HPACK bomb is cut off while it is decoded, and concurrency follows
/// `h2_max_concurrent_streams`; streams cancelled after acceptance (rapid reset) are
/// counted by the proxy ([`crate::stream_resets`]).
fn h2_options(
    limits: &crate::config::LimitsConfig,
) -> pingora::protocols::http::v2::server::H2Options {
    let mut options = pingora::protocols::http::v2::server::default_h2_options();
    options.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    options.max_concurrent_streams(limits.h2_max_concurrent_streams);
    options
}

/// Watches the sessions of live connections until shutdown ([`crate::live`]).
struct LiveService {
    live: Arc<LiveConnections>,
    sources: Arc<Sources>,
}

#[async_trait::async_trait]
impl BackgroundService for LiveService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.live.clone().watch(self.sources.clone()) => {}
            _ = shutdown.changed() => {}
        }
    }
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

/// Drives the change feed into the cache (and the live connections) until shutdown.
struct FeedService {
    sink: Arc<dyn ChangeSink>,
    feed: Arc<dyn SessionFeed>,
}

#[async_trait::async_trait]
impl BackgroundService for FeedService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.feed.run(self.sink.clone()) => {}
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
