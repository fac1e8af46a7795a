//! Python's `http.server` serving a directory: an upstream that, unlike hyper, nginx or Node,
//! accepts request-targets that do not start with `/` and maps them to files, so a gateway
//! that forwarded such a target would hand out the file. Its request log (stderr) says what
//! reached it.

use super::process::wait_for_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// `http.server`'s handler on a directory, bound to a port the OS picks.
const SERVE: &str = "import functools, http.server, sys\n\
h = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])\n\
s = http.server.ThreadingHTTPServer(('127.0.0.1', 0), h)\n\
print(s.server_address[1], flush=True)\n\
s.serve_forever()\n";

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
        let log = std::fs::File::create(dir.path().join("requests.log")).expect("log");
        // Port 0, told back on stdout: a port picked before the server binds could be taken
        // by another test's process in between.
        let mut child = Command::new("python3")
            .args(["-u", "-c", SERVE])
            .arg(&root)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("python3");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line)
            .expect("port line");
        let port: u16 = line.trim().parse().expect("http.server port");
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
