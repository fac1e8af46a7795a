//! `watch = true` in either service's config: the file is polled and a change triggers a
//! reload, besides `SIGHUP`.

use std::path::PathBuf;
use std::time::Duration;

/// The first 12 hex digits of the SHA-256 of the file (empty file when unreadable).
pub fn file_hash(path: &std::path::Path) -> String {
    let mut hash = crate::digest::hash_hex(&std::fs::read(path).unwrap_or_default());
    hash.truncate(12);
    hash
}

/// `watch = true`: the file is polled every [`Watch::EVERY`] and a reload follows once its
/// content has changed and stayed the same for one more poll (an editor's half-written save
/// is not loaded). Polling, not inotify: it also sees a Kubernetes ConfigMap's symlink swap.
pub struct Watch {
    path: Option<PathBuf>,
    /// The hash last reloaded (or seen at start), and a changed one waiting to settle.
    loaded: String,
    pending: Option<String>,
}

impl Watch {
    const EVERY: Duration = Duration::from_secs(1);

    /// Watching `path` when `on` (else [`Watch::changed`] never resolves).
    pub fn new(path: &std::path::Path, on: bool) -> Self {
        Watch {
            path: on.then(|| path.to_path_buf()),
            loaded: file_hash(path),
            pending: None,
        }
    }

    /// Resolves when the file changed and settled; never when watching is off.
    pub async fn changed(&mut self) {
        let Some(path) = self.path.clone() else {
            return std::future::pending().await;
        };
        loop {
            tokio::time::sleep(Self::EVERY).await;
            let now = file_hash(&path);
            if now == self.loaded {
                self.pending = None;
            } else if self.pending.as_deref() == Some(now.as_str()) {
                self.loaded = now;
                self.pending = None;
                return;
            } else {
                self.pending = Some(now);
            }
        }
    }

    /// Takes the file as it is now as loaded (after a reload by signal).
    pub fn loaded_now(&mut self) {
        if let Some(path) = &self.path {
            self.loaded = file_hash(path);
        }
        self.pending = None;
    }
}

/// What starts a reload: `SIGHUP` (`authflow reload`), or the file changing with `watch`.
pub struct ReloadTriggers {
    hup: Option<tokio::signal::unix::Signal>,
    watch: Watch,
}

impl ReloadTriggers {
    /// Must run on a Tokio runtime. Without a `SIGHUP` handler (logged) only `watch` can
    /// trigger.
    pub fn new(path: &std::path::Path, watch: bool) -> Self {
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        if let Err(e) = &hup {
            tracing::warn!(error = %e, "cannot listen for SIGHUP: reload by signal is off");
        }
        ReloadTriggers {
            hup: hup.ok(),
            watch: Watch::new(path, watch),
        }
    }

    /// Resolves at the next trigger; `None` once signals can no longer arrive.
    pub async fn next(&mut self) -> Option<()> {
        match &mut self.hup {
            Some(hup) => tokio::select! {
                signal = hup.recv() => signal,
                _ = self.watch.changed() => Some(()),
            },
            None => {
                self.watch.changed().await;
                Some(())
            }
        }
    }

    /// The file as it is now has been loaded (so `watch` does not load it again).
    pub fn reloaded(&mut self) {
        self.watch.loaded_now();
    }
}

/// Logs the outcome of one reload of `path`: the keys that changed but need `restart_how`,
/// or why the file was refused. Whether it went through (for the caller's counter).
pub fn log_reload<E: std::fmt::Display>(
    path: &std::path::Path,
    result: Result<Vec<&'static str>, E>,
    restart_how: &str,
) -> bool {
    match result {
        Ok(ignored) => {
            tracing::info!(file = %path.display(), "config reloaded");
            if !ignored.is_empty() {
                tracing::warn!(keys = ?ignored, "these keys changed but need {restart_how}; the running values stay");
            }
            true
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "config reload refused; the running config stays");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_is_reported_once_it_has_settled() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "a = 1").expect("write");
        let mut w = Watch::new(&path, true);
        std::fs::write(&path, "a = 2").expect("write");
        let started = std::time::Instant::now();
        tokio::time::timeout(Duration::from_secs(5), w.changed())
            .await
            .expect("change seen");
        assert!(
            started.elapsed() >= Watch::EVERY * 2,
            "reported before a second poll saw the same content"
        );
        // Nothing new: no second report.
        let again = tokio::time::timeout(Duration::from_millis(2500), w.changed()).await;
        assert!(again.is_err(), "the same content reported twice");
        // Off: never.
        let mut off = Watch::new(&path, false);
        std::fs::write(&path, "a = 3").expect("write");
        let seen = tokio::time::timeout(Duration::from_millis(2500), off.changed()).await;
        assert!(seen.is_err());
    }
}
