//! Python's `http.server` serving a directory: an upstream that, unlike hyper, nginx or Node,
//! accepts request-targets that do not start with `/` and maps them to files, so a gateway
//! that forwarded such a target would hand out the file. Its request log (stderr) says what
//! reached it.

use super::process::{free_port, wait_for_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct FileServer {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Child,
}

impl FileServer {
    /// Serves a temp dir holding `files` (relative paths and contents).
    pub async fn start(files: &[(&str, &str)]) -> FileServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("www");
        for (path, text) in files {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
            std::fs::write(file, text).expect("write");
        }
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("requests.log")).expect("log");
        let child = Command::new("python3")
            .args(["-u", "-m", "http.server", "--bind", "127.0.0.1"])
            .arg(port.to_string())
            .arg("--directory")
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("python3");
        assert!(
            wait_for_port(port, Duration::from_secs(10)).await,
            "http.server did not start"
        );
        FileServer { port, dir, child }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The request lines it has logged, in order (`GET /x HTTP/1.1`).
    pub fn requests(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        log.lines()
            .filter_map(|l| Some(l.split_once("\"")?.1.rsplit_once("\"")?.0.to_owned()))
            .collect()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("requests.log")
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
