//! Live reload on `SIGHUP` (`authflow reload`, `systemctl reload` with the unit's own
//! signal) or, with `watch = true`, when the file changes: the file is read and validated
//! like `authflow check`, then the reloadable part ([`Policy`]: routes, upstream servers and
//! their checks, rate-limit rules, trusted proxies, identity header rules, session timeouts,
//! cookie and fingerprint) is swapped whole. A bad file is refused, logged with
//! `file:line: key: reason` and counted, and the old config stays. Rate-limit rules whose
//! name and parameters did not change keep their counters; upstreams that keep their name
//! keep their balancer and the health of their servers. What cannot change without a restart
//! is named in the log line (use the zero-downtime upgrade for it).

use crate::config::GatewayConfig;
use crate::proxy::Policy;
use crate::upstream;
use arc_swap::ArcSwap;
use authflow_shared::config::watch::{log_reload, ReloadTriggers};
use authflow_shared::config::ConfigFile;
use authflow_shared::store::SharedLimits;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::PathBuf;
use std::sync::Arc;

/// Reloads `path` into `policy` on every `SIGHUP` (and on changes, with `watch`).
pub struct Reloader {
    pub path: PathBuf,
    /// The config the process started with (what needs a restart is compared against it).
    pub started: GatewayConfig,
    pub policy: Arc<ArcSwap<Policy>>,
    pub shared_limits: Option<Arc<dyn SharedLimits>>,
    /// Told after each swap, so the upstream checks follow the new set.
    pub upstreams_changed: Arc<tokio::sync::Notify>,
}

/// Why a reload was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Upstream(#[from] upstream::UpstreamError),
}

impl Reloader {
    /// One reload: validate, swap, report. The old policy stays on any error.
    pub async fn reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let cfg =
            GatewayConfig::from_path(&self.path).map_err(|e| ReloadError::Invalid(e.one_line()))?;
        let previous = self.policy.load_full();
        let (upstreams, to_refresh) = upstream::rebuild(&previous.upstreams, &cfg.upstreams)?;
        // New server lists resolve before the swap, so no request meets an empty upstream.
        for u in &to_refresh {
            u.refresh().await;
        }
        let next = Policy::new(&cfg, upstreams, self.shared_limits.clone(), Some(&previous));
        let kept = next.limiter.kept_from(&previous.limiter);
        self.policy.store(Arc::new(next));
        self.upstreams_changed.notify_one();
        crate::metrics::config_in_force(&file_hash(&self.path));
        tracing::info!(
            rules_kept = kept,
            upstreams = cfg.upstreams.len(),
            routes = cfg.routes.len(),
            "new policy in force"
        );
        Ok(needs_restart(&self.started, &cfg))
    }

    /// Reloads and reports the outcome in logs and metrics.
    async fn reload_and_report(&self) {
        let how = "an upgrade (authflow gateway --upgrade)";
        let ok = log_reload(&self.path, self.reload().await, how);
        crate::metrics::reloaded(ok);
    }
}

/// The first 12 hex digits of the SHA-256 of the file (for `authflow_gateway_config_info`).
pub use authflow_shared::config::watch::file_hash;

/// The keys that differ from the running config but only change with a restart or upgrade.
fn needs_restart(running: &GatewayConfig, new: &GatewayConfig) -> Vec<&'static str> {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    let pairs: [(&'static str, String, String); 10] = [
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
        ("redis", json(&running.redis), json(&new.redis)),
        (
            "session_check.breaker_*",
            json(&(
                running.session_check.breaker_threshold,
                &running.session_check.breaker_cool_down,
            )),
            json(&(
                new.session_check.breaker_threshold,
                &new.session_check.breaker_cool_down,
            )),
        ),
        (
            "session_check.cache_entries",
            running.session_check.cache_entries.to_string(),
            new.session_check.cache_entries.to_string(),
        ),
        (
            "forward_auth",
            json(&running.forward_auth),
            json(&new.forward_auth),
        ),
        ("tracing", json(&running.tracing), json(&new.tracing)),
        ("watch", running.watch.to_string(), new.watch.to_string()),
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
        let mut triggers = ReloadTriggers::new(&self.path, self.started.watch);
        loop {
            tokio::select! {
                t = triggers.next() => if t.is_none() { return },
                _ = shutdown.changed() => return,
            }
            self.reload_and_report().await;
            triggers.reloaded();
        }
    }
}
