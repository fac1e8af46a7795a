//! A throwaway PostgreSQL cluster per test.

use super::process::{free_port, is_root};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
        pg.resume();
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

    /// Stops the server at once (as a crash or an outage would); data stay.
    pub fn stop(&self) {
        let _ = self
            .command("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.path().join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Starts the server (again) on its port and data directory, and waits for it.
    pub fn resume(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let ok = self
            .command("pg_ctl")
            .args(["-w", "-l"])
            .arg(self.dir.path().join("log"))
            .args(["-o", &opts, "-D"])
            .arg(self.dir.path().join("data"))
            .arg("start")
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(ok.success(), "pg_ctl start failed");
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
