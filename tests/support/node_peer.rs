//! A Node script of `tests/support/peers/` run as a server on a free loopback port: what
//! [`super::grpc`] and [`super::websocket`] share. The script is started as
//! `node <script> <port>`, prints `listening <port>` once bound and then one JSON line per
//! event, which are kept here in order for the test to count. Killed on drop; it also exits
//! when its stdin (held by [`NodePeer`]) closes, so a test killed without unwinding leaves no
//! node behind.
//!
//! The packages are pinned by `tests/support/peers/package-lock.json` and installed by
//! `scripts/install-deps.sh` (`npm ci`); a missing install is a panic that says so, never a
//! skipped test.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `tests/support/peers`: the scripts, protos and their `node_modules`.
pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/peers")
}

/// Panics with the install hint when the peers' packages are not installed.
pub fn assert_installed() {
    let dir = peers_dir();
    assert!(
        dir.join("node_modules/@grpc/grpc-js").is_dir() && dir.join("node_modules/ws").is_dir(),
        "{}/node_modules is missing: run ./scripts/install-deps.sh (npm ci of the gRPC and \
         WebSocket test peers)",
        dir.display()
    );
}

/// A running peer script.
pub struct NodePeer {
    pub port: u16,
    child: Child,
    events: Arc<Mutex<Vec<Value>>>,
}

impl NodePeer {
    /// Runs `node <script> <port>` on a port from [`super::process::free_port`] with the
    /// extra environment `envs`, and waits (at most 20 s) for its `listening` line.
    /// `label` prefixes the script's other output, shown for a failed test only.
    pub async fn start(script: &str, label: &'static str, envs: &[(&str, &Path)]) -> NodePeer {
        assert_installed();
        let dir = peers_dir();
        let port = super::process::free_port();
        let mut cmd = Command::new("node");
        cmd.arg(dir.join(script))
            .arg(port.to_string())
            .current_dir(&dir)
            // Held open by `child` (its stdin is never taken): the script exits when it closes.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in envs {
            cmd.env(key, value);
        }
        let mut child = cmd
            .spawn()
            .expect("node (scripts/install-deps.sh installs Node 20)");
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{label}: {line}");
            }
        });
        let events = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&events);
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening ") {
                    let _ = ready_tx.send(());
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(event) => kept.lock().unwrap_or_else(|e| e.into_inner()).push(event),
                    Err(_) => eprintln!("{label}: {line}"),
                }
            }
        });
        let ready =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(20)))
                .await
                .expect("join");
        if ready.is_err() {
            let _ = child.kill();
            let status = child.wait().ok();
            panic!("{label} ({script}) never printed its listening line (exit: {status:?})");
        }
        NodePeer {
            port,
            child,
            events,
        }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every event the script printed so far, in order.
    pub fn events(&self) -> Vec<Value> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many events named `event` (`{"event": ..}`) the script printed so far.
    pub fn count(&self, event: &str) -> usize {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e["event"] == event)
            .count()
    }

    /// Waits (at most `limit`) until at least `n` events named `event` were printed; returns
    /// the count then. A script prints an event before it answers, but the line reaches this
    /// process through a pipe and a reader thread, so a test that has the answer may look a
    /// moment before the line is kept.
    pub async fn wait_count(&self, event: &str, n: usize, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let count = self.count(event);
            if count >= n || Instant::now() >= deadline {
                return count;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the script now (an upstream that goes away); its port stops accepting.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        self.kill();
    }
}
