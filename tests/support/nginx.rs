//! A real nginx in a temp dir, in front of the gateway, running the shipped forward-auth
//! example (`conf/examples/nginx-auth-request.conf`) with its addresses filled in.

use super::process::{free_port, wait_for_port};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The example, as shipped.
pub const NGINX_EXAMPLE: &str = "conf/examples/nginx-auth-request.conf";

/// One nginx process (no master, no daemon), stopped on drop.
pub struct Nginx {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
}

impl Nginx {
    /// nginx on a free port with the example's `server` block, `authflow:8000` and
    /// `app:8080` replaced by the given addresses.
    pub async fn start_example(gateway: &str, app: &str) -> Nginx {
        let example =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(NGINX_EXAMPLE))
                .expect("example");
        let port = free_port();
        for placeholder in ["server authflow:8000;", "server app:8080;", "listen 80;"] {
            assert!(
                example.contains(placeholder),
                "{placeholder} in the example"
            );
        }
        let site = example
            .replace("server authflow:8000;", &format!("server {gateway};"))
            .replace("server app:8080;", &format!("server {app};"))
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        Self::start(port, &site).await
    }

    async fn start(port: u16, site: &str) -> Nginx {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\nevents {{ worker_connections 256; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  \
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  \
             uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{site}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (scripts/install-deps.sh installs it)");
        assert!(
            wait_for_port(port, Duration::from_secs(10)).await,
            "nginx did not start; see {d}/error.log"
        );
        Nginx {
            port,
            _dir: dir,
            child,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
