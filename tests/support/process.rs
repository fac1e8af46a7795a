//! Processes and ports: what every service in the harness is started with.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The `authflow` binary under test.
pub fn authflow_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_authflow"))
}

/// Where [`free_port`] looks: below Linux's ephemeral range (32768-60999), so the source
/// port of some test's outgoing connection never takes a port between the moment it is
/// handed out and the moment its service binds it (which made services fail to start with
/// "Address already in use" when many tests ran at once).
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A port nobody listens on right now, and that no other test of this process was given.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let span = (PORTS.end - PORTS.start) as u128;
    let start = uuid::Uuid::new_v4().as_u128() % span;
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..span {
        let port = PORTS.start + ((start + i * 7_919) % span) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
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

/// Spawns `cmd` and waits until `GET health_url` answers 200, as a load balancer would
/// before sending traffic. Panics (after killing the process) if it never does.
pub async fn spawn_until_healthy(cmd: &mut Command, health_url: &str, limit: Duration) -> Child {
    let mut child = cmd.spawn().expect("spawn authflow");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(r) = super::client::client().get(health_url).send().await {
            if r.status() == 200 {
                return child;
            }
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{health_url}: the process exited with {status} before it was healthy");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{health_url} never answered 200 within {limit:?}");
}

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

/// Whether the tests run as root (then PostgreSQL runs as the `postgres` user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

pub fn write_temp(dir: &std::path::Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

/// The JSON lines of a log file (a service started with `log_format = "json"`).
pub fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}
