//! A real `redis-server` in a temp dir, and clients to look inside it.

use super::process::{free_port, wait_for_port};
use authflow_shared::config::{HumanDuration, RedisConfig};
use authflow_shared::store::RedisSessionStore;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A real `redis-server` in its own temp dir; without persistence unless started with
/// [`Redis::start_persistent`].
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// An append-only file synced on every write, so a kill loses nothing.
    persistent: bool,
}

impl Redis {
    pub async fn start() -> Redis {
        Self::start_with(false).await
    }

    /// With an append-only file fsynced on every write, as production runs it.
    pub async fn start_persistent() -> Redis {
        Self::start_with(true).await
    }

    async fn start_with(persistent: bool) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            persistent,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let (appendonly, fsync) = if self.persistent {
            ("yes", "always")
        } else {
            ("no", "everysec")
        };
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                appendonly,
                "--appendfsync",
                fsync,
                // Lets tests make Redis hang (DEBUG SLEEP) to check timeouts.
                "--enable-debug-command",
                "yes",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run scripts/install-deps.sh");
        self.child = Some(child);
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)).await,
            "redis-server did not start"
        );
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (as an outage would).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open and nothing answers, as with a
    /// hung host.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a [`Redis::pause`]d server.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status()
                .expect("kill");
            assert!(ok.success(), "kill {sig}");
        }
    }

    /// Starts it again on the same port: empty, or with what it had if persistent.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// A store client, as the auth service would have.
    pub async fn store(&self) -> RedisSessionStore {
        let store = RedisSessionStore::new(&RedisConfig {
            url: self.url(),
            timeout: HumanDuration::secs(2),
            pool_size: 1,
            ..RedisConfig::default()
        })
        .expect("store");
        assert!(store.warm_up().await);
        store
    }

    /// How many times `command` (lower case, e.g. `"get"`) has run, from `INFO commandstats`.
    pub async fn command_calls(&self, command: &str) -> u64 {
        use fred::interfaces::ClientLike;
        let info: String = self
            .client()
            .await
            .info(Some(fred::types::InfoKind::CommandStats))
            .await
            .expect("info");
        let prefix = format!("cmdstat_{command}:calls=");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// A numeric field of `INFO` (e.g. `"tracking_total_keys"`, `"used_memory"`), 0 if absent.
    pub async fn info_field(&self, field: &str) -> u64 {
        use fred::interfaces::ClientLike;
        let info: String = self
            .client()
            .await
            .info(Some(fred::types::InfoKind::All))
            .await
            .expect("info");
        let prefix = format!("{field}:");
        info.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// How many keys Redis remembers for client-side caching (`CLIENT TRACKING`), over
    /// every client: the table a flood of unknown cookies must not grow.
    pub async fn tracking_total_keys(&self) -> u64 {
        self.info_field("tracking_total_keys").await
    }

    /// A raw fred client for looking at keys.
    pub async fn client(&self) -> fred::clients::Client {
        use fred::interfaces::ClientLike;
        let c = fred::clients::Client::new(
            fred::types::config::Config::from_url(&self.url()).expect("url"),
            None,
            None,
            None,
        );
        c.init().await.expect("connect");
        c
    }
}

/// A numeric `INFO` field of the server on `port` (e.g. one node of a Cluster), 0 if absent.
pub fn info_field_on(port: u16, field: &str) -> u64 {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "info", "everything"])
        .output()
        .expect("redis-cli not found: run scripts/install-deps.sh");
    let prefix = format!("{field}:");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
