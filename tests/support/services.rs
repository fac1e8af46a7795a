//! The services under test as real processes: `authflow gateway`, `authflow auth` and
//! `authflow up`. Each writes its typed config to a temp file, starts the binary and waits
//! until it is ready; each stops on drop.

use super::client::client;
use super::process::{authflow_bin, free_port, spawn_until_healthy, wait_for_port};
use authflow_auth::config::AuthConfig;
use authflow_gateway::config::GatewayConfig;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `authflow gateway` with its config written to a temp file.
pub struct Gateway {
    pub port: u16,
    pub config_path: PathBuf,
    /// Its stderr, when started with [`Gateway::start_logging`].
    pub log: Option<PathBuf>,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Gateway {
    /// Starts the gateway on `cfg` (its `listen` is set to a free port) and waits until
    /// `/readyz` says it is ready (Redis connected, every upstream up), as a load balancer
    /// would. A config meant to start unready wants [`Gateway::start_unready`].
    pub async fn start(cfg: GatewayConfig) -> Gateway {
        Self::start_with_log(cfg, None).await
    }

    /// As [`Gateway::start`], logging at `level` (a `RUST_LOG` filter) into [`Gateway::log`].
    pub async fn start_logging(cfg: GatewayConfig, level: &str) -> Gateway {
        Self::start_with_log(cfg, Some(level)).await
    }

    /// As [`Gateway::start`], with more `authflow gateway` arguments.
    pub async fn start_with_args(cfg: GatewayConfig, args: &[String]) -> Gateway {
        Self::start_inner(cfg, None, args).await
    }

    async fn start_with_log(cfg: GatewayConfig, level: Option<&str>) -> Gateway {
        Self::start_inner(cfg, level, &[]).await
    }

    async fn start_inner(cfg: GatewayConfig, level: Option<&str>, args: &[String]) -> Gateway {
        let (port, dir, config_path) = Self::prepare(cfg);
        let mut cmd = Self::command(&config_path);
        cmd.args(args);
        let log = level.map(|l| capture_log(&mut cmd, l, dir.path()));
        let child = spawn_until_healthy(
            &mut cmd,
            &format!("http://127.0.0.1:{port}/readyz"),
            Duration::from_secs(20),
        )
        .await;
        Gateway {
            port,
            config_path,
            log,
            _dir: dir,
            child,
        }
    }

    /// Starts the gateway and waits only for its port.
    pub async fn start_unready(cfg: GatewayConfig) -> Gateway {
        let (port, dir, config_path) = Self::prepare(cfg);
        let child = Self::command(&config_path).spawn().expect("spawn authflow");
        assert!(
            wait_for_port(port, Duration::from_secs(20)).await,
            "gateway did not start"
        );
        Gateway {
            port,
            config_path,
            log: None,
            _dir: dir,
            child,
        }
    }

    fn prepare(mut cfg: GatewayConfig) -> (u16, tempfile::TempDir, PathBuf) {
        let port = free_port();
        cfg.listen = format!("127.0.0.1:{port}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gateway.toml");
        let text = toml::to_string(&cfg).expect("serialize gateway config");
        std::fs::write(&path, text).expect("write config");
        (port, dir, path)
    }

    fn command(config_path: &PathBuf) -> Command {
        let mut c = Command::new(authflow_bin());
        c.args(["gateway", "--config"])
            .arg(config_path)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        c
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Starts a second gateway process on the same config with `--upgrade` and `args`: it
    /// waits for this one's listening sockets (send this one `SIGQUIT`).
    pub fn spawn_upgrade(&self, args: &[String]) -> KillOnDrop {
        let child = Self::command(&self.config_path)
            .arg("--upgrade")
            .args(args)
            .spawn()
            .expect("spawn upgrade");
        KillOnDrop(child)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. `-QUIT`) to the process.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(ok.success(), "kill {signal}");
    }

    /// Whether the process has exited (waits up to `limit`).
    pub async fn exited_within(&mut self, limit: Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

/// A child process killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the process's stderr to `dir/stderr.log` at `level`; returns the path.
fn capture_log(cmd: &mut Command, level: &str, dir: &std::path::Path) -> PathBuf {
    let path = dir.join("stderr.log");
    let file = std::fs::File::create(&path).expect("log file");
    cmd.env("RUST_LOG", level).stderr(Stdio::from(file));
    path
}

/// A running `authflow auth` with its own temp dir (outbox, SQLite file).
pub struct AuthService {
    pub port: u16,
    pub dir: tempfile::TempDir,
    /// Its stderr, when started with [`AuthService::start_logging`].
    pub log: Option<PathBuf>,
    child: Child,
}

impl AuthService {
    /// Starts the service on `cfg` with extra environment `env` and waits for `/health` to
    /// answer 200. The harness sets `listen`, the outbox, and (when `database.url` is empty)
    /// a SQLite file in the temp dir.
    pub async fn start(cfg: AuthConfig, env: &[(&str, &str)]) -> AuthService {
        Self::start_with_log(cfg, env, None).await
    }

    /// As [`AuthService::start`], logging at `level` (a `RUST_LOG` filter) into
    /// [`AuthService::log`].
    pub async fn start_logging(cfg: AuthConfig, level: &str) -> AuthService {
        Self::start_with_log(cfg, &[], Some(level)).await
    }

    /// As [`AuthService::start_logging`], with extra environment `env`.
    pub async fn start_logging_with(
        cfg: AuthConfig,
        env: &[(&str, &str)],
        level: &str,
    ) -> AuthService {
        Self::start_with_log(cfg, env, Some(level)).await
    }

    async fn start_with_log(
        mut cfg: AuthConfig,
        env: &[(&str, &str)],
        level: Option<&str>,
    ) -> AuthService {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        cfg.listen = format!("127.0.0.1:{port}");
        cfg.mail.outbox_dir = dir.path().join("outbox").display().to_string();
        if cfg.database.url.is_empty() {
            cfg.database.url = format!("sqlite://{}/users.db?mode=rwc", dir.path().display());
        }
        let path = dir.path().join("auth.toml");
        let text = toml::to_string(&cfg).expect("serialize auth config");
        std::fs::write(&path, text).expect("write config");
        let mut cmd = Command::new(authflow_bin());
        cmd.args(["auth", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let log = level.map(|l| capture_log(&mut cmd, l, dir.path()));
        let child = spawn_until_healthy(
            &mut cmd,
            &format!("http://127.0.0.1:{port}/health"),
            Duration::from_secs(20),
        )
        .await;
        AuthService {
            port,
            dir,
            log,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn api(&self, endpoint: &str) -> String {
        self.url(&format!("/api/v1/simple_auth/{endpoint}"))
    }

    /// Signs `email` up with `password`, straight at the service; panics unless it succeeds.
    pub async fn sign_up(&self, email: &str, password: &str) {
        let r = reqwest::Client::new()
            .post(self.api("signup"))
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .expect("signup");
        assert!(r.status().is_success(), "signup {}", r.status());
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// The config file it runs on (a test may change it and send `authflow reload`).
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("auth.toml")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `authflow up` on free ports with a temp data dir.
pub struct Up {
    pub gateway_port: u16,
    pub auth_port: u16,
    pub demo_port: u16,
    pub dir: tempfile::TempDir,
    pub child: Option<Child>,
}

impl Up {
    pub async fn start(extra_args: &[&str]) -> Up {
        Self::start_on(free_port(), extra_args, &[]).await
    }

    /// As [`Up::start`], with the gateway on `gateway_port` (chosen first, when a provider
    /// must know the redirect URI before `up` runs) and extra environment `env`.
    pub async fn start_on(gateway_port: u16, extra_args: &[&str], env: &[(&str, &str)]) -> Up {
        let dir = tempfile::tempdir().expect("tempdir");
        let (g, a, d) = (gateway_port, free_port(), free_port());
        let mut cmd = Command::new(authflow_bin());
        cmd.arg("up")
            .arg("--data-dir")
            .arg(dir.path())
            .args([
                "--gateway-port",
                &g.to_string(),
                "--auth-port",
                &a.to_string(),
                "--demo-port",
                &d.to_string(),
            ])
            .args(extra_args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = spawn_until_healthy(
            &mut cmd,
            &format!("http://127.0.0.1:{g}/health"),
            Duration::from_secs(20),
        )
        .await;
        Up {
            gateway_port: g,
            auth_port: a,
            demo_port: d,
            dir,
            child: Some(child),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.gateway_port, path)
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }

    /// Sends SIGINT (Ctrl-C) and waits for the process; returns its exit status and output.
    pub fn interrupt(&mut self) -> (std::process::ExitStatus, String, String) {
        let child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let out = child.wait_with_output().expect("wait");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
