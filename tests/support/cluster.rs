//! A real three-primary Redis Cluster on loopback, created with `redis-cli --cluster create`.

use super::process::{free_port, wait_for_port};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub ports: Vec<u16>,
    _dir: tempfile::TempDir,
    nodes: Vec<Child>,
}

/// A free port whose cluster bus port (port + 10000) exists and is free too: an ephemeral
/// port above 55535 has none, and redis-server then refuses to start.
fn node_port() -> u16 {
    loop {
        let port = free_port();
        let bus_free = port
            .checked_add(10_000)
            .is_some_and(|bus| std::net::TcpListener::bind(("127.0.0.1", bus)).is_ok());
        if bus_free {
            return port;
        }
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        let ports: Vec<u16> = (0..3).map(|_| node_port()).collect();
        let mut nodes = Vec::new();
        for port in &ports {
            let data = dir.path().join(port.to_string());
            std::fs::create_dir_all(&data).expect("dir");
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .arg("--dir")
                .arg(&data)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server not found: run scripts/install-deps.sh");
            nodes.push(child);
            assert!(wait_for_port(*port, Duration::from_secs(10)).await);
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let ok = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli not found: run scripts/install-deps.sh");
        assert!(ok.success(), "redis-cli --cluster create failed");
        let cluster = Cluster {
            ports,
            _dir: dir,
            nodes,
        };
        cluster.wait_until_ok().await;
        cluster
    }

    async fn wait_until_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let states: Vec<bool> = self
                .ports
                .iter()
                .map(|p| {
                    Command::new("redis-cli")
                        .args(["-p", &p.to_string(), "cluster", "info"])
                        .output()
                        .map(|o| String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok"))
                        .unwrap_or(false)
                })
                .collect();
            if states.iter().all(|s| *s) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("the cluster never reached cluster_state:ok");
    }

    /// The URL both services use (the form fred parses).
    pub fn url(&self) -> String {
        let others: Vec<String> = self.ports[1..]
            .iter()
            .map(|p| format!("node=127.0.0.1:{p}"))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.ports[0],
            others.join("&")
        )
    }

    /// Keys matching `pattern` on each primary.
    pub fn keys_per_node(&self, pattern: &str) -> Vec<usize> {
        self.ports
            .iter()
            .map(|p| {
                Command::new("redis-cli")
                    .args(["-p", &p.to_string(), "--scan", "--pattern", pattern])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
                    .unwrap_or(0)
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &mut self.nodes {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
