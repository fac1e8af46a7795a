//! Test harness: real processes on free loopback ports. A `redis-server` in a temp dir, a
//! tiny echo upstream, and the `authflow` binary itself; everything stops on drop.
#![allow(dead_code)]

pub mod gotrue;

use authflow_shared::config::{HumanDuration, RedisConfig};
use authflow_shared::fingerprint::FingerprintSpec;
use authflow_shared::session::SessionRecord;
use authflow_shared::store::{RedisSessionStore, SessionStore};
use authflow_shared::token::SessionToken;
use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::{IpAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Calls `attempt` every 100 ms (at most 100 times) until `done` accepts its result; returns
/// the last result either way, for the caller to assert on.
pub async fn poll<T, Fut: std::future::Future<Output = T>>(
    mut attempt: impl FnMut() -> Fut,
    done: impl Fn(&T) -> bool,
) -> T {
    let mut last = attempt().await;
    for _ in 0..100 {
        if done(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = attempt().await;
    }
    last
}

/// A GET of `url` from the test browser (`UA`) carrying session cookie `sid=<token>`.
pub async fn get_with_session(url: String, token: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("request")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Waits until something accepts TCP on `port`.
pub async fn wait_for_port(port: u16, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// A real `redis-server`, no persistence, in its own temp dir.
pub struct Redis {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Redis {
    pub async fn start() -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        r.spawn().await;
        r
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
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

    /// Starts it again on the same port, empty.
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
        })
        .expect("store");
        assert!(store.warm_up().await);
        store
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

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Signs a user in the way the auth service does: a fresh token, a record with the
/// fingerprint of the given client, written through the shared store.
pub async fn create_session(
    store: &RedisSessionStore,
    user_id: &str,
    email: Option<&str>,
    client_ip: &str,
    user_agent: &str,
) -> SessionToken {
    create_session_with(store, user_id, email, client_ip, user_agent, |_| {}).await
}

pub async fn create_session_with(
    store: &RedisSessionStore,
    user_id: &str,
    email: Option<&str>,
    client_ip: &str,
    user_agent: &str,
    adjust: impl FnOnce(&mut SessionRecord),
) -> SessionToken {
    let token = SessionToken::generate();
    let fp = fingerprint(client_ip, user_agent);
    let mut record = SessionRecord::new(
        user_id,
        email.map(Into::into),
        fp,
        authflow_shared::now_ms(),
        Duration::from_secs(3600),
    );
    adjust(&mut record);
    store
        .create(&token.id(), &record, Duration::from_secs(3600))
        .await
        .expect("create session");
    token
}

/// The default fingerprint of a client with this IP and User-Agent (no Accept-Language).
pub fn fingerprint(client_ip: &str, user_agent: &str) -> String {
    let mut headers = http::HeaderMap::new();
    headers.insert("user-agent", user_agent.parse().expect("ua"));
    FingerprintSpec::default().compute(client_ip.parse::<IpAddr>().expect("ip"), &headers)
}

/// An upstream that answers every request with JSON describing what it received:
/// `{"server": name, "method", "path", "headers": {name: [values]}}`. A path containing
/// `/slow/` waits 3 s first.
pub struct Upstream {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Upstream {
    pub async fn start(name: &'static str) -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| async move {
                            if req.uri().path().contains("/slow/") {
                                tokio::time::sleep(Duration::from_secs(3)).await;
                            }
                            let mut headers = serde_json::Map::new();
                            for (k, v) in req.headers() {
                                let entry = headers
                                    .entry(k.as_str())
                                    .or_insert_with(|| serde_json::json!([]));
                                if let Some(a) = entry.as_array_mut() {
                                    a.push(String::from_utf8_lossy(v.as_bytes()).into());
                                }
                            }
                            let body = serde_json::json!({
                                "server": name,
                                "method": req.method().as_str(),
                                "path": req.uri().path(),
                                "headers": headers,
                            });
                            let resp = hyper::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(body.to_string())))
                                .expect("response");
                            Ok::<_, std::convert::Infallible>(resp)
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Upstream { port, task }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `authflow` binary under test.
pub fn authflow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_authflow"))
}

/// A running `authflow gateway` with a config written to a temp file.
pub struct Gateway {
    pub port: u16,
    pub config_path: PathBuf,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Gateway {
    /// Starts the gateway with `config` (TOML; `{port}` is replaced by the listen port) and
    /// waits until `/health` says it is ready (Redis connected), as a load balancer would.
    pub async fn start(config: &str) -> Gateway {
        let gw = Self::start_unready(config).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(gw.url("/health")).send().await {
                if r.status() == 200 {
                    return gw;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway never became healthy");
    }

    /// Starts the gateway and waits only for its port.
    pub async fn start_unready(config: &str) -> Gateway {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, config.replace("{port}", &port.to_string()))
            .expect("write config");
        let child = Command::new(authflow_bin())
            .args(["gateway", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn authflow");
        assert!(
            wait_for_port(port, Duration::from_secs(20)).await,
            "gateway did not start"
        );
        Gateway {
            port,
            config_path,
            _dir: dir,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client that does not follow redirects, optionally bound to a source address.
pub fn client_from(source: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0);
    if let Some(ip) = source {
        b = b.local_address(ip.parse::<IpAddr>().expect("ip"));
    }
    b.build().expect("client")
}

pub fn client() -> reqwest::Client {
    client_from(None)
}

/// A gateway config for tests: one protected route `/app/`, one public route `/public/`,
/// the given Redis and upstream servers, and `extra` TOML appended.
pub fn config(redis_url: &str, upstream_servers: &[String], extra: &str) -> String {
    let servers: Vec<String> = upstream_servers
        .iter()
        .map(|s| format!("\"{s}\""))
        .collect();
    format!(
        r#"
listen = "127.0.0.1:{{port}}"
threads = 1
shutdown_grace = "1s"

[redis]
url = "{redis_url}"
timeout = "100ms"

[session]
cookie_name = "sid"
cookie_secure = false
idle_timeout = "1h"
absolute_timeout = "12h"
login_url = "/auth/signin"

[[upstreams]]
name = "app"
servers = [{servers}]
read_timeout = "1s"
connect_timeout = "500ms"
health_check_interval = "1s"

[[routes]]
prefix = "/app/"
upstream = "app"
auth = "required"

[[routes]]
prefix = "/public/"
upstream = "app"
auth = "public"
{extra}
"#,
        servers = servers.join(", ")
    )
}

pub fn write_temp(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";

/// Sends raw bytes and returns the raw response head and body (for requests a URL library
/// would normalize first).
pub async fn raw_request(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("json body")
}

/// A throwaway PostgreSQL cluster (`initdb` + `pg_ctl`) on a free port, trust auth on
/// loopback only. As root, the server runs as the `postgres` user, since it refuses root.
pub struct Postgres {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres: bool,
}

impl Postgres {
    fn find_bin() -> PathBuf {
        let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| e.path().join("bin"))
                    .collect()
            })
            .unwrap_or_default();
        candidates.sort();
        candidates
            .into_iter()
            .rev()
            .find(|p| p.join("pg_ctl").exists())
            .expect("PostgreSQL server binaries not found: run scripts/install-deps.sh")
    }

    fn command(&self, tool: &str) -> Command {
        let exe = self.bin.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(exe);
            c
        } else {
            Command::new(exe)
        }
    }

    pub async fn start() -> Postgres {
        let dir = tempfile::Builder::new()
            .prefix("authflow-pg")
            .tempdir()
            .expect("tempdir");
        let as_postgres = is_root();
        let pg = Postgres {
            port: free_port(),
            dir,
            bin: Self::find_bin(),
            as_postgres,
        };
        if as_postgres {
            let _ = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(pg.dir.path())
                .status();
        }
        let data = pg.dir.path().join("data");
        let ok = pg
            .command("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("initdb");
        assert!(ok.success(), "initdb failed");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.port,
            pg.dir.path().display()
        );
        let ok = pg
            .command("pg_ctl")
            .args(["-w", "-l"])
            .arg(pg.dir.path().join("log"))
            .args(["-o", &opts, "-D"])
            .arg(&data)
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(ok.success(), "pg_ctl start failed");
        let ok = pg
            .command("createdb")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &pg.port.to_string(),
                "-U",
                "postgres",
                "authflow",
            ])
            .status()
            .expect("createdb");
        assert!(ok.success(), "createdb failed");
        pg
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/authflow", self.port)
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A running `authflow auth` with its own outbox directory.
pub struct AuthService {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Child,
}

impl AuthService {
    /// Starts the service with `config` (TOML; `{port}` and `{dir}` are replaced) and waits
    /// for `/health` to answer 200.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> AuthService {
        let port = free_port();
        let dir = tempfile::tempdir().expect("tempdir");
        let text = config
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("auth.toml");
        std::fs::write(&path, text).expect("write config");
        let child = Command::new(authflow_bin())
            .args(["auth", "--config"])
            .arg(&path)
            .envs(env.iter().copied())
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn authflow auth");
        let svc = AuthService { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(svc.url("/health")).send().await {
                if r.status() == 200 {
                    return svc;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("auth service never became healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn api(&self, endpoint: &str) -> String {
        self.url(&format!("/api/v1/simple_auth/{endpoint}"))
    }

    pub fn outbox(&self) -> PathBuf {
        self.dir.path().join("outbox")
    }
}

impl Drop for AuthService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An auth config for tests: plain-HTTP cookies, outbox in the service's temp dir.
pub fn auth_config(redis_url: &str, database_url: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:{{port}}"
trusted_proxies = ["127.0.0.1/32"]
provider = "builtin"

[redis]
url = "{redis_url}"
timeout = "2s"

[session]
cookie_name = "sid"
cookie_secure = false
idle_timeout = "1h"
absolute_timeout = "12h"

[database]
url = "{database_url}"

[mail]
outbox_dir = "{{dir}}/outbox"
from = "AuthFlow <no-reply@example.com>"
base_url = "http://app.example.com"
{extra}
"#
    )
}

/// Every message in an outbox; quoted-printable bodies (as SMTP-bound mail would have) are
/// decoded, others are taken as written.
pub fn outbox_messages(dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|m| {
            if m.contains("Content-Transfer-Encoding: quoted-printable") {
                decode_qp(&m)
            } else {
                m
            }
        })
        .collect()
}

/// Undoes quoted-printable soft line breaks and `=XX` escapes.
pub fn decode_qp(s: &str) -> String {
    let s = s.replace("=\r\n", "").replace("=\n", "");
    let mut out = String::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 3 <= b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v as char);
                i += 3;
                continue;
            }
        }
        out.push(b[i] as char);
        i += 1;
    }
    out
}

/// Waits for a message to `to` whose text contains `needle`; returns it.
pub async fn wait_for_mail(dir: &Path, to: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(m) = outbox_messages(dir)
            .into_iter()
            .rev()
            .find(|m| m.contains(&format!("To: {to}")) && m.contains(needle))
        {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "no mail to {to} containing {needle:?}; outbox: {:?}",
        outbox_messages(dir)
    );
}

/// The `token=` value of the first link in a message.
pub fn link_token(mail: &str) -> String {
    let start = mail.find("token=").expect("no token link") + "token=".len();
    mail[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The session token from a `Set-Cookie: sid=...` header.
pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let v = c.strip_prefix("sid=")?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_owned())
        })
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
        let dir = tempfile::tempdir().expect("tempdir");
        let (g, a, d) = (free_port(), free_port(), free_port());
        let child = Command::new(authflow_bin())
            .arg("up")
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
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn authflow up");
        let up = Up {
            gateway_port: g,
            auth_port: a,
            demo_port: d,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = client().get(up.url("/health")).send().await {
                if r.status() == 200 {
                    return up;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("authflow up never became healthy");
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

/// A minimal SMTP server (RFC 5321 happy path, no TLS) that keeps every message it accepts,
/// to test the auth service's real SMTP delivery.
pub struct SmtpSink {
    pub port: u16,
    pub messages: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl SmtpSink {
    pub async fn start() -> SmtpSink {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let messages = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = messages.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let store = store.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let mut data: Option<String> = None;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(buf) = data.as_mut() {
                            if line == "." {
                                store.lock().expect("lock").push(std::mem::take(buf));
                                data = None;
                                let _ = w.write_all(b"250 queued\r\n").await;
                            } else {
                                buf.push_str(line.strip_prefix('.').unwrap_or(&line));
                                buf.push('\n');
                            }
                            continue;
                        }
                        let verb = line
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_ascii_uppercase();
                        let reply: &[u8] = match verb.as_str() {
                            "EHLO" | "HELO" => b"250-sink\r\n250 8BITMIME\r\n",
                            "DATA" => {
                                data = Some(String::new());
                                b"354 go ahead\r\n"
                            }
                            "QUIT" => {
                                let _ = w.write_all(b"221 bye\r\n").await;
                                break;
                            }
                            _ => b"250 ok\r\n",
                        };
                        let _ = w.write_all(reply).await;
                    }
                });
            }
        });
        SmtpSink {
            port,
            messages,
            task,
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}
