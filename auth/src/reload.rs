//! Live reload on `SIGHUP` (`authflow reload --pid`), or when the file changes with
//! `watch = true`: the file is read and validated like
//! `authflow check`, a whole new [`Api`] is built from it (mail, signup rules, throttle,
//! password hashing, provider, database and Redis connections) and swapped in; requests
//! already running finish on the old one. A bad file, or a new database or Redis that cannot
//! be set up, is refused, logged, counted, and the running service stays as it was. The keys
//! that need a restart (`listen`, `metrics_listen`, `log_format`, `tracing`) are named in the
//! log line.

use crate::api::Api;
use crate::build::{api_from_config, StartError};
use crate::config::AuthConfig;
use arc_swap::ArcSwap;
use authflow_shared::config::watch::{log_reload, ReloadTriggers};
use authflow_shared::config::ConfigFile;
use std::path::PathBuf;
use std::sync::Arc;

/// Reloads `path` into `api` on every `SIGHUP`.
pub struct Reloader {
    pub path: PathBuf,
    /// The config the process started with (what needs a restart is compared against it).
    pub started: AuthConfig,
    pub api: Arc<ArcSwap<Api>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Start(#[from] StartError),
}

impl Reloader {
    /// One reload: validate, build, swap. The running API stays on any error.
    pub async fn reload(&self) -> Result<Vec<&'static str>, ReloadError> {
        let cfg =
            AuthConfig::from_path(&self.path).map_err(|e| ReloadError::Invalid(e.one_line()))?;
        let api = api_from_config(&cfg).await?;
        self.api.store(Arc::new(api));
        Ok(needs_restart(&self.started, &cfg))
    }

    /// Reloads on each `SIGHUP` (and change of the file, with `watch = true`), forever.
    pub async fn run(self) {
        let mut triggers = ReloadTriggers::new(&self.path, self.started.watch);
        while triggers.next().await.is_some() {
            let ok = log_reload(&self.path, self.reload().await, "a restart");
            crate::metrics::reloaded(ok);
            triggers.reloaded();
        }
    }
}

/// The keys that differ from the running config but only change with a restart.
fn needs_restart(running: &AuthConfig, new: &AuthConfig) -> Vec<&'static str> {
    fn json<T: serde::Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }
    [
        ("listen", json(&running.listen), json(&new.listen)),
        (
            "metrics_listen",
            json(&running.metrics_listen),
            json(&new.metrics_listen),
        ),
        (
            "log_format",
            json(&running.log_format),
            json(&new.log_format),
        ),
        ("tracing", json(&running.tracing), json(&new.tracing)),
        ("watch", json(&running.watch), json(&new.watch)),
    ]
    .into_iter()
    .filter(|(_, a, b)| a != b)
    .map(|(k, _, _)| k)
    .collect()
}
