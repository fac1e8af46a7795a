//! Live reload on `SIGHUP` (`authflow reload`, `systemctl reload` with the unit's own
//! signal): the file is read and validated like `authflow check`, then the reloadable part
//! ([`Policy`]: routes, rate-limit rules, trusted proxies, identity header rules) is swapped
//! whole. A bad file is refused, logged with `file:line: key: reason` and counted, and the
//! old config stays. Rate-limit rules whose name and parameters did not change keep their
//! counters. What cannot change without a restart is named in the log line (use the
//! zero-downtime upgrade for it).

use crate::config::GatewayConfig;
use crate::proxy::Policy;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use authflow_shared::config::ConfigFile;
use authflow_shared::store::SharedLimits;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;

/// Reloads `path` into `policy` on every `SIGHUP`.
pub struct Reloader {
    pub path: PathBuf,
    /// The config the process started with (what needs a restart is compared against it).
    pub started: GatewayConfig,
    pub policy: Arc<ArcSwap<Policy>>,
    pub upstreams: Vec<Upstream>,
    pub shared_limits: Option<Arc<dyn SharedLimits>>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(String),
    #[error("route {route:?} names upstream {upstream:?}, which this process does not have (upstreams change with an upgrade)")]
    NewUpstream { route: String, upstream: String },
}

impl Reloader {
    /// One reload: validate, swap, report. The old policy stays on any error.
    pub fn reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let cfg = GatewayConfig::from_path(&self.path).map_err(|e| {
            ReloadError::Invalid(
                e.0.iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        for r in &cfg.routes {
            if !self.upstreams.iter().any(|u| u.name == r.upstream) {
                return Err(ReloadError::NewUpstream {
                    route: r.prefix.clone(),
                    upstream: r.upstream.clone(),
                });
            }
        }
        let previous = self.policy.load_full();
        let next = Policy::new(
            &cfg,
            &self.upstreams,
            self.shared_limits.clone(),
            Some(&previous),
        );
        let kept = next.limiter.kept_from(&previous.limiter);
        self.policy.store(Arc::new(next));
        crate::metrics::config_in_force(&file_hash(&self.path));
        tracing::info!(
            rules_kept = kept,
            "config reloaded: routes, rate-limit rules, trusted proxies, identity headers"
        );
        Ok(needs_restart(&self.started, &cfg))
    }
}

/// The first 12 hex digits of the SHA-256 of the file (for `authflow_gateway_config_info`).
pub fn file_hash(path: &std::path::Path) -> String {
    let mut hash = authflow_shared::digest::hash_hex(&std::fs::read(path).unwrap_or_default());
    hash.truncate(12);
    hash
}

/// The keys that differ from the running config but only change with a restart or upgrade.
fn needs_restart(running: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let pairs: [(&'static str, String, String); 9] = [
        ("listen", running.listen.clone(), new.listen.clone()),
        ("tls", json(&running.tls), json(&new.tls)),
        (
            "threads",
            running.threads.to_string(),
            new.threads.to_string(),
        ),
        (
            "metrics_listen",
            json(&running.metrics_listen),
            json(&new.metrics_listen),
        ),
        ("upstreams", json(&running.upstreams), json(&new.upstreams)),
        ("redis", json(&running.redis), json(&new.redis)),
        ("session", json(&running.session), json(&new.session)),
        (
            "session_check",
            json(&running.session_check),
            json(&new.session_check),
        ),
        (
            "forward_auth",
            json(&running.forward_auth),
            json(&new.forward_auth),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(k, _, _)| k)
        .collect()
}

#[async_trait::async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP: live reload is off");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {}
                _ = shutdown.changed() => return,
            }
            match self.reload() {
                Ok(ignored) => {
                    crate::metrics::reloaded(true);
                    if !ignored.is_empty() {
                        tracing::warn!(keys = ?ignored, "these keys changed but need a restart (authflow gateway --upgrade); the running values stay");
                    }
                }
                Err(e) => {
                    crate::metrics::reloaded(false);
                    tracing::error!(file = %self.path.display(), error = %e, "config reload refused; the running config stays");
                }
            }
        }
    }
}
