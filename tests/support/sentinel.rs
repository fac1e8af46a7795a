//! A real Redis Sentinel deployment on loopback: one primary, one replica and three
//! sentinels, each a `redis-server` process in one temp dir. Fails over in about two seconds.

use super::process::{free_port, wait_for_port};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SERVICE: &str = "authflow";

pub struct Sentinels {
    pub primary_port: u16,
    pub replica_port: u16,
    pub sentinel_ports: Vec<u16>,
    dir: tempfile::TempDir,
    primary: Option<Child>,
    others: Vec<Child>,
}

fn redis_server(args: &[String]) -> Child {
    Command::new("redis-server")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server not found: run scripts/install-deps.sh")
}

impl Sentinels {
    pub async fn start() -> Sentinels {
        let dir = tempfile::tempdir().expect("tempdir");
        let (primary_port, replica_port) = (free_port(), free_port());
        let node = |port: u16, name: &str, extra: &[String]| {
            let data = dir.path().join(name);
            std::fs::create_dir_all(&data).expect("dir");
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                &data.display().to_string(),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend_from_slice(extra);
            redis_server(&args)
        };
        let primary = node(primary_port, "primary", &[]);
        assert!(wait_for_port(primary_port, Duration::from_secs(10)).await);
        let replica = node(
            replica_port,
            "replica",
            &[
                "--replicaof".into(),
                "127.0.0.1".into(),
                primary_port.to_string(),
            ],
        );
        assert!(wait_for_port(replica_port, Duration::from_secs(10)).await);
        let mut others = vec![replica];
        let mut sentinel_ports = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\n\
                     sentinel monitor {SERVICE} 127.0.0.1 {primary_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 3000\n\
                     sentinel parallel-syncs {SERVICE} 1\n",
                    dir.path().display()
                ),
            )
            .expect("sentinel.conf");
            others.push(redis_server(&[
                conf.display().to_string(),
                "--sentinel".into(),
            ]));
            assert!(wait_for_port(port, Duration::from_secs(10)).await);
            sentinel_ports.push(port);
        }
        let s = Sentinels {
            primary_port,
            replica_port,
            sentinel_ports,
            dir,
            primary: Some(primary),
            others,
        };
        s.wait_until_replicated().await;
        s
    }

    /// The URL both services use: every sentinel, and the service name.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self.sentinel_ports[1..]
            .iter()
            .map(|p| format!("node=127.0.0.1:{p}"))
            .collect();
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SERVICE}&{}",
            self.sentinel_ports[0],
            nodes.join("&")
        )
    }

    async fn client(port: u16) -> fred::clients::Client {
        use fred::interfaces::ClientLike;
        let c = fred::clients::Client::new(
            fred::types::config::Config::from_url(&format!("redis://127.0.0.1:{port}"))
                .expect("url"),
            None,
            None,
            None,
        );
        c.init().await.expect("connect");
        c
    }

    /// `command args...` on the server at `port`, as text; empty when it does not answer.
    async fn ask(port: u16, command: &'static str, args: Vec<&str>) -> String {
        use fred::interfaces::ClientLike;
        let args: Vec<String> = args.into_iter().map(str::to_owned).collect();
        match tokio::time::timeout(Duration::from_secs(2), async {
            Self::client(port)
                .await
                .custom::<fred::types::Value, _>(fred::cmd!(command), args)
                .await
        })
        .await
        {
            Ok(Ok(v)) => format!("{v:?}"),
            _ => String::new(),
        }
    }

    async fn wait_until_replicated(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            let info = Self::ask(self.replica_port, "INFO", vec!["replication"]).await;
            if info.contains("master_link_status:up") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the replica never synced");
    }

    /// Waits until every write so far has reached the replica (`WAIT 1`).
    pub async fn replicate_now(&self) {
        use fred::interfaces::ClientLike;
        let c = Self::client(self.primary_port).await;
        let n: i64 = c
            .custom(fred::cmd!("WAIT"), vec!["1", "2000"])
            .await
            .expect("WAIT");
        assert_eq!(n, 1, "the replica did not acknowledge");
    }

    /// Kills the primary as a crash would.
    pub fn kill_primary(&mut self) {
        if let Some(mut c) = self.primary.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until the sentinels name the replica as the primary.
    pub async fn wait_for_failover(&self) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(30);
        while Instant::now() < deadline {
            let primary = Self::ask(
                self.sentinel_ports[0],
                "SENTINEL",
                vec!["get-master-addr-by-name", SERVICE],
            )
            .await;
            if primary.contains(&self.replica_port.to_string()) {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no failover within 30 s");
    }
}

impl Drop for Sentinels {
    fn drop(&mut self) {
        self.kill_primary();
        for c in &mut self.others {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = &self.dir;
    }
}
