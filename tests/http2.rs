//! HTTP/2 at the edge: ALPN `h2` on the TLS listener, cleartext HTTP/2 with prior knowledge
//! when `h2c = true`, and every stream judged like an HTTP/1.1 request (canonical `:path`,
//! `:authority` against `Host`, the session per stream). The protocol's own floods are
//! bounded: concurrent streams, decoded header lists, and streams cancelled in a rush
//! (rapid reset). Real clients: `curl` (built with nghttp2) and the `h2` crate.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig, TlsConfig};
use authflow_shared::config::HumanDuration;
use bytes::Bytes;
use std::time::Duration;
use support::*;

/// `curl` with `args`; returns the HTTP version it used, the status and the body (`"0"`
/// and status 0 when the request failed).
async fn curl(args: &[&str]) -> (String, u16, String) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "-A",
            UA,
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut tail = tail.split(' ');
    let version = tail.next().unwrap_or("0").to_owned();
    let code = tail.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (version, code, body.to_owned())
}

fn tls(dir: &std::path::Path, port: u16, http2: bool) -> TlsConfig {
    let (cert, key) = self_signed(dir);
    TlsConfig {
        listen: format!("127.0.0.1:{port}"),
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        http2,
    }
}

/// A session for `user` from curl on loopback, as the auth service would write it.
async fn session_for(redis: &Redis, user: &str) -> String {
    let token = create_session(
        &redis.store().await,
        user,
        Some("u@example.com"),
        "127.0.0.1",
        UA,
    )
    .await;
    format!("sid={}", token.expose())
}

fn h2c_config(redis: &Redis, up: &Upstream) -> GatewayConfig {
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.h2c = true;
    cfg.routes = vec![
        route("/app/", "app", AuthMode::Required),
        route("/admin", "app", AuthMode::Required),
        route("/", "app", AuthMode::Public),
    ];
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tls_listener_speaks_http2_and_checks_every_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.tls = Some(tls(dir.path(), port, true));
    let _gw = Gateway::start(cfg).await;
    assert!(wait_for_port(port, Duration::from_secs(10)).await);
    let url = |p: &str| format!("https://localhost:{port}{p}");

    let (version, code, body) = curl(&["-k", "--http2", &url("/public/x")]).await;
    assert_eq!((version.as_str(), code), ("2", 200), "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("echo");
    assert_eq!(
        seen["headers"]["x-forwarded-proto"],
        serde_json::json!(["https"])
    );
    assert_eq!(
        seen["headers"]["host"],
        serde_json::json!([format!("localhost:{port}")]),
        "an HTTP/1.1 upstream gets the :authority as Host"
    );

    let (version, code, body) = curl(&["-k", "--http2", &url("/app/x")]).await;
    assert_eq!((version.as_str(), code), ("2", 401), "{body}");
    assert!(body.contains("unauthenticated"), "{body}");

    let cookie = session_for(&redis, "user-h2").await;
    // Two streams on one connection, each checked: the second has no cookie.
    let (version, code, body) = curl(&[
        "-k",
        "--http2",
        "-H",
        &format!("cookie: {cookie}"),
        &url("/app/x"),
    ])
    .await;
    assert_eq!((version.as_str(), code), ("2", 200), "{body}");
    let seen: serde_json::Value = serde_json::from_str(&body).expect("echo");
    assert_eq!(seen["headers"]["x-user-id"], serde_json::json!(["user-h2"]));
    assert!(
        seen["headers"].get("cookie").is_none(),
        "the session cookie stays at the edge: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_can_be_turned_off_on_the_tls_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.tls = Some(tls(dir.path(), port, false));
    let _gw = Gateway::start(cfg).await;
    assert!(wait_for_port(port, Duration::from_secs(10)).await);
    let (version, code, _) = curl(&[
        "-k",
        "--http2",
        &format!("https://localhost:{port}/public/x"),
    ])
    .await;
    assert_eq!((version.as_str(), code), ("1.1", 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_with_prior_knowledge_only_when_turned_on_and_http1_still_works() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(h2c_config(&redis, &up)).await;
    let (version, code, _) = curl(&["--http2-prior-knowledge", &gw.url("/public/x")]).await;
    assert_eq!((version.as_str(), code), ("2", 200));
    let (version, code, _) = curl(&[&gw.url("/public/x")]).await;
    assert_eq!((version.as_str(), code), ("1.1", 200));

    let mut cfg = h2c_config(&redis, &up);
    cfg.h2c = false;
    let off = Gateway::start(cfg).await;
    let (_, code, _) = curl(&["--http2-prior-knowledge", &off.url("/public/x")]).await;
    assert_ne!(code, 200, "no HTTP/2 without h2c = true");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_protected_path_is_protected_as_an_http2_path() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(h2c_config(&redis, &up)).await;
    let (_, code, _) = curl(&["--http2-prior-knowledge", &gw.url("/elsewhere")]).await;
    assert_eq!(code, 200);
    let before = up.hits();
    for path in [
        "/app/x",
        "/APP/x",
        "//app/x",
        "///app//x",
        "/%61pp/x",
        "/app;x/y",
        "/x/..;/app/y",
        "/x/../app/y",
        "/x/%2e%2e/app/y",
        "/app/%2e/x",
        "/admin",
        "/ADMIN",
        "/%61dmin",
        "/admin;jsessionid=1",
        // Not starting with `/`: the HTTP/1.1 bypass of the security review, as `:path`.
        "app/x",
        "admin",
        "*",
        "http://localhost/app/x",
        ".",
        "",
    ] {
        let (version, code, body) = curl(&[
            "--http2-prior-knowledge",
            "--path-as-is",
            "--request-target",
            path,
            &gw.url("/"),
        ])
        .await;
        // A refused stream is 400/401, or reset by the HTTP/2 layer itself (status 0).
        assert!(
            matches!(code, 0 | 400 | 401),
            "{path:?} was not protected ({version} {code}): {body}"
        );
        assert!(
            !body.contains("\"server\":\"a\""),
            "{path:?} reached the upstream"
        );
    }
    assert_eq!(up.hits(), before, "no spelling reached the upstream");
}

/// An HTTP/2 client on a fresh cleartext connection.
async fn h2_client(port: u16) -> h2::client::SendRequest<Bytes> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// Sends `req` with no body; the status, or `None` when the stream or connection failed.
async fn h2_status(
    send: &mut h2::client::SendRequest<Bytes>,
    req: http::Request<()>,
) -> Option<u16> {
    let mut ready = send.clone().ready().await.ok()?;
    let (resp, _) = ready.send_request(req, true).ok()?;
    let resp = tokio::time::timeout(Duration::from_secs(10), resp)
        .await
        .ok()?
        .ok()?;
    Some(resp.status().as_u16())
}

fn get(uri: &str) -> http::request::Builder {
    http::Request::builder().method("GET").uri(uri)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_and_host_must_name_the_same_server() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = h2c_config(&redis, &up);
    let mut bound = route("/", "app", AuthMode::Required);
    bound.host = Some("admin.example".into());
    cfg.routes.insert(0, bound);
    let gw = Gateway::start(cfg).await;
    let mut send = h2_client(gw.port).await;
    let ok = get("http://www.example/x").body(()).expect("req");
    assert_eq!(h2_status(&mut send, ok).await, Some(200));
    let protected = get("http://admin.example/x").body(()).expect("req");
    assert_eq!(h2_status(&mut send, protected).await, Some(401));
    let before = up.hits();
    // The public :authority with the protected Host, and the other way round.
    for (authority, host) in [
        ("www.example", "admin.example"),
        ("admin.example", "www.example"),
    ] {
        let mut send = h2_client(gw.port).await;
        let req = get(&format!("http://{authority}/x"))
            .header("host", host)
            .body(())
            .expect("req");
        let status = h2_status(&mut send, req).await;
        assert!(
            matches!(status, None | Some(400)),
            ":authority {authority} with Host {host}: {status:?}"
        );
    }
    assert_eq!(up.hits(), before, "neither reached the upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_per_connection_are_bounded() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = h2c_config(&redis, &up);
    cfg.limits.h2_max_concurrent_streams = 4;
    cfg.upstreams[0].read_timeout = HumanDuration::secs(10);
    let gw = Gateway::start(cfg).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let (send, mut conn) = h2::client::handshake(tcp).await.expect("handshake");
    // The server's SETTINGS arrive with the first exchange.
    let mut first = send.clone();
    let warm = tokio::spawn(async move {
        h2_status(&mut first, get("http://x/public/x").body(()).expect("req")).await
    });
    let settled = tokio::time::timeout(Duration::from_secs(5), &mut conn).await;
    assert!(settled.is_err(), "the connection stays open");
    assert_eq!(warm.await.expect("task"), Some(200));
    assert_eq!(conn.max_concurrent_send_streams(), 4, "advertised limit");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let streams: Vec<_> = (0..8)
        .map(|_| {
            let mut s = send.clone();
            tokio::spawn(async move {
                h2_status(&mut s, get("http://x/public/slow/").body(()).expect("req")).await
            })
        })
        .collect();
    for s in streams {
        assert_eq!(s.await.expect("task"), Some(200));
    }
    assert!(
        up.max_concurrent() <= 4,
        "{} at once through one connection",
        up.max_concurrent()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_flood_is_cut_off() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = h2c_config(&redis, &up);
    cfg.limits.h2_max_reset_streams = 20;
    cfg.rate_limit.requests = 1_000_000;
    let gw = Gateway::start(cfg).await;
    let send = h2_client(gw.port).await;
    let mut sent = 0;
    for _ in 0..400 {
        let Ok(mut ready) = send.clone().ready().await else {
            break; // GOAWAY: the connection was closed on the client
        };
        let Ok((_, mut stream)) =
            ready.send_request(get("http://x/public/x").body(()).expect("req"), false)
        else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reached = up.hits();
    assert!(
        reached < 150,
        "{reached} of {sent} cancelled streams reached the upstream"
    );
    // The connection is either closed or refuses every further stream.
    let mut send = send;
    let next = h2_status(&mut send, get("http://x/public/x").body(()).expect("req")).await;
    eprintln!("{sent} streams cancelled, {reached} reached the upstream, then {next:?}");
    assert!(
        matches!(next, None | Some(429)),
        "after the flood: {next:?}"
    );
    // Another connection is served.
    let mut fresh = h2_client(gw.port).await;
    let status = h2_status(&mut fresh, get("http://x/public/x").body(()).expect("req")).await;
    assert_eq!(status, Some(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_header_list_is_refused_while_it_is_decoded() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(h2c_config(&redis, &up)).await;
    let mut send = h2_client(gw.port).await;
    let mut req = get("http://x/public/x");
    let value = "v".repeat(1000);
    for i in 0..60 {
        req = req.header(format!("x-filler-{i}"), value.as_str());
    }
    let status = h2_status(&mut send, req.body(()).expect("req")).await;
    assert!(
        matches!(status, None | Some(431) | Some(400)),
        "60 KB of headers: {status:?}"
    );
    assert_eq!(up.hits(), 0);
    let mut fresh = h2_client(gw.port).await;
    let status = h2_status(&mut fresh, get("http://x/public/x").body(()).expect("req")).await;
    assert_eq!(status, Some(200), "the gateway still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_cancelled_after_they_reached_the_upstream_are_counted_per_connection() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = h2c_config(&redis, &up);
    cfg.limits.h2_max_reset_streams = 10;
    cfg.rate_limit.requests = 1_000_000;
    cfg.upstreams[0].read_timeout = HumanDuration::secs(10);
    let gw = Gateway::start(cfg).await;
    let send = h2_client(gw.port).await;
    // Each stream is cancelled once the upstream has it: past the acceptance checks of the
    // h2 crate, so only the gateway's count can stop them.
    let mut refused_at = None;
    for i in 0..30 {
        let mut ready = send.clone().ready().await.expect("ready");
        let (resp, mut stream) = ready
            .send_request(get("http://x/public/slow/").body(()).expect("req"), true)
            .expect("stream");
        let reached = async {
            while up.hits() <= i {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::select! {
            _ = reached => stream.send_reset(h2::Reason::CANCEL),
            resp = resp => {
                let status = resp.expect("an answer").status().as_u16();
                assert_eq!(status, 429, "stream {i} was answered before the upstream had it");
                refused_at = Some(i);
                break;
            }
        }
    }
    let refused_at = refused_at.expect("the connection was never refused");
    assert!(
        (10..=12).contains(&refused_at),
        "refused after {refused_at} cancelled streams with a budget of 10"
    );
    let reached = up.hits();
    let mut send = send;
    let next = h2_status(&mut send, get("http://x/public/x").body(()).expect("req")).await;
    assert_eq!(
        next,
        Some(429),
        "a connection past its budget stays refused"
    );
    assert_eq!(up.hits(), reached, "without reaching the upstream");
    let mut fresh = h2_client(gw.port).await;
    let status = h2_status(&mut fresh, get("http://x/public/x").body(()).expect("req")).await;
    assert_eq!(status, Some(200), "another connection is not");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_over_http2_gets_headers_only_and_idle_connections_are_closed() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = h2c_config(&redis, &up);
    cfg.limits.keepalive_timeout = HumanDuration::secs(1);
    let gw = Gateway::start(cfg).await;
    let (version, code, body) = curl(&["--http2-prior-knowledge", "-I", &gw.url("/app/x")]).await;
    assert_eq!((version.as_str(), code), ("2", 401), "{body}");

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let (mut send, conn) = h2::client::handshake(tcp).await.expect("h2");
    let conn = tokio::spawn(conn);
    assert_eq!(
        h2_status(&mut send, get("http://x/public/x").body(()).expect("req")).await,
        Some(200)
    );
    let closed = tokio::time::timeout(Duration::from_secs(4), conn).await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection was kept past keepalive_timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_cancel_do_not_take_servers_out() {
    let redis = Redis::start().await;
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let mut cfg = h2c_config(&redis, &a);
    cfg.upstreams[0].servers = vec![a.addr(), b.addr()];
    cfg.upstreams[0].read_timeout = HumanDuration::secs(10);
    cfg.rate_limit.requests = 1_000_000;
    let gw = Gateway::start(cfg).await;
    for _ in 0..12 {
        let mut send = h2_client(gw.port).await;
        let mut ready = send.clone().ready().await.expect("ready");
        let (_, mut stream) = ready
            .send_request(get("http://x/public/slow/").body(()).expect("req"), true)
            .expect("stream");
        tokio::time::sleep(Duration::from_millis(50)).await;
        stream.send_reset(h2::Reason::CANCEL);
        let _ = h2_status(&mut send, get("http://x/public/x").body(()).expect("req")).await;
    }
    // Let the cancelled requests end (their upstream answers come after 3 s).
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let mut servers = std::collections::HashSet::new();
    let c = client();
    for _ in 0..10 {
        let body: serde_json::Value = c
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json");
        servers.insert(body["server"].as_str().unwrap_or_default().to_owned());
    }
    assert_eq!(
        servers.len(),
        2,
        "a server was taken out: only {servers:?} answered"
    );
}
