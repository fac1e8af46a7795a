//! gRPC at the edge: a real grpc-js server behind the gateway ([`GrpcServer`]) and a real
//! grpc-js client in front of it ([`grpc_call`]), both plaintext HTTP/2 with prior knowledge
//! (h2c), as a gRPC service inside the cluster speaks. The scripts, `echo.proto` and the
//! standard `grpc.health.v1` `health.proto` are in `tests/support/peers/`.
//!
//! The service, `authflow.test.Echo`:
//! - `Say(Msg{text})` answers `Reply{text, user_id, roles}` with `user_id` and `roles` the
//!   `x-user-id` and `x-user-roles` metadata the call arrived with (what the gateway
//!   forwarded), the header `x-echo-header: sent` and the trailer `x-echo-trailer: kept`;
//!   `text: "fail"` answers INVALID_ARGUMENT (3) "asked to fail", with the same trailer.
//! - `Ticks(Msg)` streams a `Reply` every 100 ms until the client cancels (the client does
//!   after 2 s).
//! - `grpc.health.v1.Health/Check` answers SERVING, or NOT_SERVING after
//!   [`GrpcServer::set_health`]`(false)`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::node_peer::{assert_installed, peers_dir, NodePeer};

/// The gRPC status codes the tests name (grpc `doc/statuscodes.md`).
pub mod code {
    pub const OK: i64 = 0;
    pub const CANCELLED: i64 = 1;
    pub const INVALID_ARGUMENT: i64 = 3;
    pub const DEADLINE_EXCEEDED: i64 = 4;
    pub const PERMISSION_DENIED: i64 = 7;
    pub const RESOURCE_EXHAUSTED: i64 = 8;
    pub const UNIMPLEMENTED: i64 = 12;
    pub const INTERNAL: i64 = 13;
    pub const UNAVAILABLE: i64 = 14;
    pub const UNAUTHENTICATED: i64 = 16;
}

/// The running gRPC server (`tests/support/peers/grpc_server.mjs`), killed on drop.
pub struct GrpcServer {
    peer: NodePeer,
    health_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl GrpcServer {
    /// Starts the server on a free port and waits until it listens (at most 20 s).
    pub async fn start() -> GrpcServer {
        Self::start_with(None).await
    }

    /// The same over TLS (HTTP/2 with ALPN `h2`) with this certificate and key (PEM).
    pub async fn start_tls(cert: &Path, key: &Path) -> GrpcServer {
        Self::start_with(Some((cert, key))).await
    }

    async fn start_with(tls: Option<(&Path, &Path)>) -> GrpcServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let health_file = dir.path().join("health");
        let mut env = vec![("HEALTH_FILE", health_file.as_path())];
        if let Some((cert, key)) = tls {
            env.extend([("TLS_CERT", cert), ("TLS_KEY", key)]);
        }
        let peer = NodePeer::start("grpc_server.mjs", "grpc-server", &env).await;
        GrpcServer {
            peer,
            health_file,
            _dir: dir,
        }
    }

    /// `127.0.0.1:<port>`, the upstream address for a gateway config and a client target.
    pub fn addr(&self) -> String {
        self.peer.addr()
    }

    pub fn port(&self) -> u16 {
        self.peer.port
    }

    /// How many calls (any method) reached the server so far.
    pub fn calls(&self) -> usize {
        self.peer.count("call")
    }

    /// Waits (at most 2 s) until at least `n` calls reached the server; returns the count
    /// then. For asserting on a call the client already has the answer to (see
    /// [`NodePeer::wait_count`]).
    pub async fn wait_calls(&self, n: usize) -> usize {
        self.peer
            .wait_count("call", n, Duration::from_secs(2))
            .await
    }

    /// Every event in order: `{"event":"call","method":..,"x-user-id":..,"x-user-roles":..,
    /// "cookie":..,"authorization":..}` (absent metadata is `null`) and
    /// `{"event":"cancelled","method":"Ticks","sent":N}` when a stream's client went away.
    pub fn events(&self) -> Vec<Value> {
        self.peer.events()
    }

    /// The `call` events, in order: what the upstream saw of each call.
    pub fn call_events(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["event"] == "call")
            .collect()
    }

    /// What `grpc.health.v1.Health/Check` answers from now on: SERVING or NOT_SERVING.
    pub fn set_health(&self, serving: bool) {
        let status = if serving { "SERVING" } else { "NOT_SERVING" };
        std::fs::write(&self.health_file, status).expect("write the health file");
    }

    /// Kills the server now (an upstream that goes away).
    pub fn kill(&mut self) {
        self.peer.kill();
    }
}

/// What [`grpc_call`] got: the final status, and the reply (unary) or the count of streamed
/// replies (`Ticks`).
#[derive(Clone, Debug)]
pub struct GrpcReply {
    /// The gRPC status code (`grpc-status`, or what grpc-js made of a non-gRPC answer: an
    /// HTTP 401 without `grpc-status` is 16, UNAUTHENTICATED).
    pub code: i64,
    pub details: String,
    /// The response message as JSON (`{"text":..,"user_id":..,"roles":..}` for `Say`,
    /// `{"status":"SERVING"}` for `Check`), `None` on an error or for `Ticks`.
    pub reply: Option<Value>,
    /// The response's initial metadata (HTTP/2 headers), values of a repeated key joined
    /// with `", "`.
    pub headers: BTreeMap<String, String>,
    /// The trailing metadata, without `grpc-status` and `grpc-message`.
    pub trailers: BTreeMap<String, String>,
    /// `Ticks` only: the replies received before the stream ended.
    pub replies: Option<u64>,
    /// `Ticks` only: milliseconds from the call's start to its end.
    pub ended_after_ms: Option<u64>,
    /// The client's whole JSON line.
    pub raw: Value,
}

impl GrpcReply {
    pub fn trailer(&self, name: &str) -> Option<&str> {
        self.trailers.get(name).map(String::as_str)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    /// A field of the reply message (`"text"`, `"user_id"`, `"roles"`, `"status"`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.reply.as_ref().and_then(|r| r[name].as_str())
    }
}

/// One call with grpc-js (`tests/support/peers/grpc_client.mjs`): h2c to `target`
/// (`host:port`), `method` one of `Say`, `Ticks`, `Check` (`text` is the health `service`
/// then), with the metadata `cookie: <cookie>` when given, and a 5 s deadline. A new
/// process, so a new HTTP/2 connection, per call. Panics if the client prints no JSON line.
pub async fn grpc_call(target: &str, method: &str, text: &str, cookie: Option<&str>) -> GrpcReply {
    assert_installed();
    let dir = peers_dir();
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(dir.join("grpc_client.mjs"))
        .args([target, method, text])
        .current_dir(&dir)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(cookie) = cookie {
        cmd.arg(cookie);
    }
    let output = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("grpc_client.mjs {target} {method}: no answer within 20 s"))
        .expect("node (scripts/install-deps.sh installs Node 20)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let raw: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "grpc_client.mjs {target} {method} printed no JSON line ({}): stdout {stdout:?} \
                 stderr {stderr:?}",
                output.status
            )
        });
    let metadata = |key: &str| -> BTreeMap<String, String> {
        raw[key]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    };
    GrpcReply {
        code: raw["code"].as_i64().expect("code"),
        details: raw["details"].as_str().unwrap_or_default().to_owned(),
        reply: raw.get("reply").filter(|r| !r.is_null()).cloned(),
        headers: metadata("headers"),
        trailers: metadata("trailers"),
        replies: raw["replies"].as_u64(),
        ended_after_ms: raw["ended_after_ms"].as_u64(),
        raw,
    }
}
