//! What a request line and its framing may be. Pingora 0.9 routes a request-target it cannot
//! classify as `/` and keeps its bytes for the wire; a lenient upstream (Python's
//! `http.server`, Werkzeug) then serves the path those bytes name. The gateway judges the raw
//! target, refuses every form but origin, `http(s)` absolute and `OPTIONS *`, and always sends
//! the target it judged. Also: one declared length, methods in upper case, `TRACE` and
//! upgrades only where a route allows them.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig};
use authflow_shared::config::LogFormat;
use std::time::Duration;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "TOP-SECRET-FILE";

/// Protected `/app/`, public everything else, all on `upstream`; JSON access log.
fn deployment(redis: &Redis, upstream: &str) -> GatewayConfig {
    let mut cfg = gateway_config(&redis.url(), &[upstream.to_owned()]);
    cfg.routes = vec![
        route("/app/", "app", AuthMode::Required),
        route("/", "app", AuthMode::Public),
    ];
    cfg.log_format = LogFormat::Json;
    cfg
}

/// The access-log line of the request whose raw target was `target`.
async fn access_line(gw: &Gateway, target: &str) -> serde_json::Value {
    let log = gw.log.clone().expect("gateway log");
    poll(
        || async {
            log_lines(&log)
                .into_iter()
                .find(|l| l["target"] == "access" && l["request_target"].as_str() == Some(target))
        },
        |found| found.is_some(),
    )
    .await
    .unwrap_or_else(|| panic!("no access line for {target:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_that_are_not_origin_form_are_refused_before_a_lenient_upstream_sees_them() {
    let redis = Redis::start().await;
    let files = FileServer::start(&[("app/secret.txt", SECRET), ("index.html", "home")]).await;
    let gw = Gateway::start_logging(deployment(&redis, &files.addr()), "info").await;
    // The file server does serve the secret to whoever reaches it with such a target.
    let direct = raw_request(
        files.port,
        "GET app/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        direct.contains(SECRET),
        "the upstream is not lenient: {direct}"
    );
    let before = files.requests().len();

    for target in [
        "app/secret.txt",
        "%2Fapp/secret.txt",
        "x:/app/secret.txt",
        "*/app/secret.txt",
        "127.0.0.1:9000",
        "ftp://x/app/secret.txt",
    ] {
        let req = format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (code, raw) = raw_status(gw.port, &req).await;
        assert_eq!(code, 400, "{target}: {raw}");
        assert!(!raw.contains(SECRET), "{target} reached the file: {raw}");
        assert!(raw.contains("request_target_form"), "{target}: {raw}");
        let line = access_line(&gw, target).await;
        assert_eq!(line["status"], 400, "{line}");
        assert_eq!(line["upstream_target"], "-", "{line}");
    }
    // Two spaces: whatever the parser makes of it, it is refused, never served.
    let (code, raw) = raw_status(
        gw.port,
        "GET  /app/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 400, "two spaces: {raw}");
    assert!(!raw.contains(SECRET), "{raw}");
    assert_eq!(
        files.requests().len(),
        before,
        "something reached the upstream: {:?}",
        &files.requests()[before..]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolute_form_is_judged_by_its_path_and_forwarded_in_origin_form() {
    let redis = Redis::start().await;
    let files = FileServer::start(&[("app/secret.txt", SECRET), ("pub.txt", "public")]).await;
    let gw = Gateway::start_logging(deployment(&redis, &files.addr()), "info").await;

    let protected = "GET http://x/app/secret.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (code, raw) = raw_status(gw.port, protected).await;
    assert_eq!(code, 401, "{raw}");
    let other_host = "GET http://y/pub.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(gw.port, other_host).await.0, 400);

    let public = "GET http://x//pub.txt?a=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let (code, raw) = raw_status(gw.port, public).await;
    assert_eq!(code, 200, "{raw}");
    assert!(raw.contains("public"), "{raw}");
    assert_eq!(files.requests(), vec!["GET /pub.txt?a=1 HTTP/1.1"]);
    // The log leaves queries out (they may carry one-time tokens).
    let line = access_line(&gw, "http://x//pub.txt").await;
    assert_eq!(line["path"], "/pub.txt", "{line}");
    assert_eq!(line["upstream_target"], "/pub.txt", "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_asterisk_is_answered_by_the_gateway() {
    let redis = Redis::start().await;
    let files = FileServer::start(&[("index.html", "home")]).await;
    let gw = Gateway::start(deployment(&redis, &files.addr())).await;
    let (code, raw) = raw_status(
        gw.port,
        "OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 204, "{raw}");
    assert!(raw.to_ascii_lowercase().contains("allow: get"), "{raw}");
    let (code, _) = raw_status(
        gw.port,
        "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(code, 400);
    assert!(files.requests().is_empty(), "{:?}", files.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_content_length_is_one_length_and_differing_ones_are_refused() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up.addr());
    cfg.limits.max_body_bytes = 1000;
    let gw = Gateway::start(cfg).await;
    let big = "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 20000000, 20000000\r\nConnection: close\r\n\r\n";
    let (code, raw) = raw_status(gw.port, big).await;
    assert_eq!(code, 413, "{raw}");
    let differing =
        "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\nConnection: close\r\n\r\nhello";
    assert_eq!(raw_status(gw.port, differing).await.0, 400);
    let same =
        "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello";
    let (code, raw) = raw_status(gw.port, same).await;
    assert_eq!(code, 200, "{raw}");
    assert!(raw.contains("\"content-length\":[\"5\"]"), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_methods_and_trace_are_refused_unless_a_route_allows_trace() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up.addr());
    let mut debug = route("/debug/", "app", AuthMode::Public);
    debug.allow_trace = true;
    cfg.routes.push(debug);
    let gw = Gateway::start(cfg).await;
    let req =
        |m: &str, p: &str| format!("{m} {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (code, raw) = raw_status(gw.port, &req("get", "/x")).await;
    assert_eq!(code, 400, "{raw}");
    assert!(raw.contains("bad_method"), "{raw}");
    let (code, raw) = raw_status(gw.port, &req("TRACE", "/x")).await;
    assert_eq!(code, 405, "{raw}");
    assert!(!raw.contains("\"server\":\"a\""), "{raw}");
    let (code, raw) = raw_status(gw.port, &req("TRACE", "/debug/x")).await;
    assert_eq!(code, 200, "{raw}");
    assert!(raw.contains("\"method\":\"TRACE\""), "{raw}");
}

/// An upstream that answers every request `101 Switching Protocols` and then reports, on
/// the same connection, whatever bytes follow (what a tunnel would carry).
async fn switching_upstream() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&seen).into_owned());
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    .await;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
                }
            });
        }
    });
    (port, rx)
}

/// Sends `head`, then `inner` once a 101 came back; returns what the client read.
async fn upgrade_and_send(port: u16, head: &str, inner: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or(0);
    let got = String::from_utf8_lossy(&buf[..n]).into_owned();
    if got.starts_with("HTTP/1.1 101") {
        let _ = s.write_all(inner.as_bytes()).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_open_a_tunnel_only_on_websocket_routes() {
    let redis = Redis::start().await;
    let (port, mut seen) = switching_upstream().await;
    let mut cfg = gateway_config(&redis.url(), &[format!("127.0.0.1:{port}")]);
    let mut ws = route("/ws/", "app", AuthMode::Public);
    ws.websocket = true;
    cfg.routes = vec![ws, route("/", "app", AuthMode::Public)];
    let gw = Gateway::start(cfg).await;
    let inner =
        "GET /admin HTTP/1.1\r\nHost: x\r\nX-User-Id: admin\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n";
    let upgrade = |path: &str, proto: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    };

    // A websocket upgrade where the route does not allow one: refused, nothing sent.
    let got = upgrade_and_send(gw.port, &upgrade("/x", "websocket"), inner).await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("upgrade_not_allowed"), "{got}");

    // Another protocol (h2c smuggling): served as plain HTTP, the upstream's 101 refused.
    let got = upgrade_and_send(gw.port, &upgrade("/x", "h2c"), inner).await;
    assert!(got.starts_with("HTTP/1.1 502"), "{got}");
    let head = seen.recv().await.expect("the plain request");
    assert!(
        !head.to_ascii_lowercase().contains("upgrade: h2c"),
        "{head}"
    );

    // A websocket route: the tunnel opens.
    let got = upgrade_and_send(gw.port, &upgrade("/ws/chat", "websocket"), "ping").await;
    assert!(got.starts_with("HTTP/1.1 101"), "{got}");
    let head = seen.recv().await.expect("the upgrade request");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    let tunnelled = tokio::time::timeout(Duration::from_secs(5), seen.recv())
        .await
        .ok()
        .flatten();
    assert_eq!(tunnelled.as_deref(), Some("ping"));
    // Nothing of the refused attempts' inner requests ever arrived.
    while let Ok(extra) = seen.try_recv() {
        assert!(!extra.contains("X-User-Id"), "smuggled: {extra}");
    }
}
