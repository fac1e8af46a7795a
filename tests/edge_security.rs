//! The gateway against hostile requests: other spellings of a protected path or host,
//! identity and forwarding headers in any spelling, oversized headers and bodies, and what
//! `/health` gives away. Each test sends the probe as raw bytes where a URL library would
//! normalize it first, and checks the upstream never saw it.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig};
use std::time::Duration;
use support::*;

/// Routes as a typical deployment has them: protected `/app/` (trailing slash) and `/admin`
/// (none), public everything else through a catch-all.
fn deployment(redis: &Redis, up: &Upstream) -> GatewayConfig {
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.routes = vec![
        route("/app/", "app", AuthMode::Required),
        route("/admin", "app", AuthMode::Required),
        route("/", "app", AuthMode::Public),
    ];
    cfg
}

fn get(path: &str, host: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_spelling_of_a_protected_path_is_protected_or_refused() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(deployment(&redis, &up)).await;
    assert_eq!(raw_status(gw.port, &get("/elsewhere", "x")).await.0, 200);
    for path in [
        "/app/x",
        "/APP/x",
        "/App/x",
        "//app/x",
        "///app//x",
        "/%61pp/x",
        "/%41PP/x",
        "/app;x/y",
        "/x/..;/app/y",
        "/x/../app/y",
        "/x/%2e%2e/app/y",
        "/x/.%2e/app/y",
        "/app/%2e/x",
        "/admin",
        "/ADMIN",
        "//admin",
        "/%61dmin",
        "/admin/x",
        "/Admin/x",
        "/admin;jsessionid=1",
        "/x/..;/admin",
    ] {
        let (code, raw) = raw_status(gw.port, &get(path, "x")).await;
        assert!(
            code == 401 || code == 400,
            "{path} was not protected ({code}): {raw}"
        );
        assert!(
            !raw.contains("\"server\":\"a\""),
            "{path} reached the upstream: {raw}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_request_reaches_the_upstream_at_the_canonical_path() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(deployment(&redis, &up)).await;
    let token = create_session(&redis.store().await, "u1", None, "127.0.0.1", UA).await;
    let request = format!(
        "GET //APP//%78?q=%2F HTTP/1.1\r\nHost: x\r\nUser-Agent: {UA}\r\nCookie: sid={}\r\nConnection: close\r\n\r\n",
        token.expose()
    );
    let (code, raw) = raw_status(gw.port, &request).await;
    assert_eq!(code, 200, "{raw}");
    assert!(raw.contains("\"path\":\"/APP/x\""), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_bound_protected_route_holds_for_every_spelling_of_its_host() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    let mut admin = route("/", "app", AuthMode::Required);
    admin.host = Some("admin.example.com".into());
    cfg.routes = vec![admin, route("/", "app", AuthMode::Public)];
    let gw = Gateway::start(cfg).await;
    for host in [
        "admin.example.com",
        "admin.example.com.",
        "ADMIN.Example.COM",
        "admin.example.com:8000",
        "admin.example.com.:80",
    ] {
        let (code, raw) = raw_status(gw.port, &get("/x", host)).await;
        assert_eq!(code, 401, "Host: {host}: {raw}");
    }
    assert_eq!(
        raw_status(gw.port, &get("/x", "www.example.com")).await.0,
        200
    );
    let no_host = "GET /x HTTP/1.1\r\nConnection: close\r\n\r\n";
    let (code, raw) = raw_status(gw.port, no_host).await;
    assert_eq!(code, 400, "HTTP/1.1 without Host: {raw}");
    assert!(raw.contains("missing_host"), "{raw}");
    let two_hosts =
        "GET /x HTTP/1.1\r\nHost: www.example.com\r\nHost: admin.example.com\r\nConnection: close\r\n\r\n";
    assert_eq!(raw_status(gw.port, two_hosts).await.0, 400);
    for bad in ["admin.example.com:x", "a b", "[::1"] {
        assert_eq!(raw_status(gw.port, &get("/x", bad)).await.0, 400, "{bad}");
    }
    // HTTP/1.0 may omit Host: only host-less routes can then match.
    let (code, _) = raw_status(gw.port, "GET /x HTTP/1.0\r\n\r\n").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_headers_in_any_spelling_and_forwarding_headers_never_reach_the_upstream() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(deployment(&redis, &up)).await;
    let token = create_session(
        &redis.store().await,
        "u7",
        Some("u7@example.com"),
        "127.0.0.1",
        UA,
    )
    .await;
    let spoofed = "X_User_Id: admin\r\nX_User_Email: root@evil\r\nX-User-Role: admin\r\n\
        x_session_id: s\r\nForwarded: for=6.6.6.6;host=evil\r\nX-Real-IP: 6.6.6.6\r\n\
        X-Forwarded-Host: evil.example\r\nX_Forwarded_Port: 1\r\nX-Forwarded-Prefix: /evil\r\n\
        X-Forwarded-Proto: https\r\n";
    for (path, cookie) in [
        ("/app/x", format!("Cookie: sid={}\r\n", token.expose())),
        ("/public/x", String::new()),
    ] {
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: App.Example.com:8000\r\nUser-Agent: {UA}\r\n{cookie}{spoofed}Connection: close\r\n\r\n"
        );
        let raw = raw_request(gw.port, &request).await;
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
        let echo: serde_json::Value = serde_json::from_str(body).expect("echo json");
        let h = echo["headers"].as_object().expect("headers");
        for name in h.keys() {
            assert!(!name.contains('_'), "{path}: {name} reached the upstream");
        }
        for gone in [
            "x-user-role",
            "forwarded",
            "x-forwarded-port",
            "x-forwarded-prefix",
        ] {
            assert!(h.get(gone).is_none(), "{path}: {gone} reached the upstream");
        }
        assert_eq!(h["x-real-ip"], serde_json::json!(["127.0.0.1"]), "{path}");
        assert_eq!(
            h["x-forwarded-for"],
            serde_json::json!(["127.0.0.1"]),
            "{path}"
        );
        assert_eq!(
            h["x-forwarded-proto"],
            serde_json::json!(["http"]),
            "{path}"
        );
        assert_eq!(
            h["x-forwarded-host"],
            serde_json::json!(["app.example.com"]),
            "{path}"
        );
        if path == "/app/x" {
            assert_eq!(h["x-user-id"], serde_json::json!(["u7"]));
            assert_eq!(h["x-user-email"], serde_json::json!(["u7@example.com"]));
        } else {
            assert!(h.get("x-user-id").is_none());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_oversized_bodies_413() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up);
    cfg.limits.max_body_bytes = 4096;
    let gw = Gateway::start(cfg).await;
    let big = "a".repeat(500 * 1024);
    for header in [
        format!("X-Big: {big}"),
        format!("Cookie: sid={}", &big[..300 * 1024]),
    ] {
        let request =
            format!("GET /public/x HTTP/1.1\r\nHost: x\r\n{header}\r\nConnection: close\r\n\r\n");
        let (code, raw) = raw_status(gw.port, &request).await;
        assert_eq!(code, 431, "{}", &raw[..raw.len().min(200)]);
    }
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let request = format!("GET /public/x HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(raw_status(gw.port, &request).await.0, 431);

    let post = |body: &str| {
        format!(
            "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    assert_eq!(raw_status(gw.port, &post(&"b".repeat(1000))).await.0, 200);
    let (code, raw) = raw_status(gw.port, &post(&"b".repeat(5000))).await;
    assert_eq!(code, 413, "{raw}");
    assert!(raw.contains("payload_too_large"), "{raw}");
    let chunk = "c".repeat(3000);
    let chunked = format!(
        "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{len:x}\r\n{chunk}\r\n{len:x}\r\n{chunk}\r\n0\r\n\r\n",
        len = chunk.len()
    );
    let (code, raw) = raw_status(gw.port, &chunked).await;
    assert_eq!(code, 413, "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_health_is_get_only_and_names_no_dependency() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let private = free_port();
    let mut cfg = deployment(&redis, &up);
    cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
    let gw = Gateway::start(cfg).await;
    let r = client()
        .get(gw.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await, serde_json::json!({"status": "ok"}));
    let r = client()
        .post(gw.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = client()
        .head(gw.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = client()
        .get(format!("http://127.0.0.1:{private}/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let details = json(r).await;
    assert_eq!(details["redis"], "up");
    assert_eq!(details["upstreams"]["app"]["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_rate_limited_like_everything_else() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up);
    cfg.rate_limit.requests = 3;
    cfg.rate_limit.per = authflow_shared::config::HumanDuration::secs(60);
    let gw = Gateway::start_unready(cfg).await;
    let mut codes = Vec::new();
    for _ in 0..5 {
        codes.push(raw_status(gw.port, &get("/health", "x")).await.0);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(codes.contains(&429), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_gateway_answers_itself_carries_security_headers() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(deployment(&redis, &up)).await;
    for path in ["/app/x", "/health"] {
        let r = client().get(gw.url(path)).send().await.expect("request");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{path}");
        assert!(
            r.headers().get("strict-transport-security").is_none(),
            "plain HTTP"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_hold_more_than_its_share_of_requests() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up);
    cfg.limits.max_in_flight_per_client = 2;
    let gw = Gateway::start(cfg).await;
    // Three slow requests at once from one address: the third is refused at once.
    let slow = || {
        let url = gw.url("/public/slow/x");
        tokio::spawn(async move {
            let t = std::time::Instant::now();
            let r = client_from(Some("127.0.0.7"))
                .get(url)
                .send()
                .await
                .expect("request");
            (r.status().as_u16(), t.elapsed())
        })
    };
    let (a, b) = (slow(), slow());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (code, took) = slow().await.expect("task");
    assert_eq!(code, 429);
    assert!(
        took < Duration::from_millis(900),
        "refused only after {took:?}"
    );
    let others = client_from(Some("127.0.0.8"))
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(others.status(), 200, "other addresses are not held up");
    for h in [a, b] {
        let (code, _) = h.await.expect("task");
        assert_ne!(code, 429);
    }
    let again = client_from(Some("127.0.0.7"))
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(again.status(), 200, "slots are given back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up);
    cfg.limits.keepalive_timeout = authflow_shared::config::HumanDuration::secs(1);
    let gw = Gateway::start(cfg).await;
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 8192];
    let n = s.read(&mut buf).await.expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    // Idle past the timeout: the gateway closes the connection.
    let closed = tokio::time::timeout(Duration::from_secs(4), s.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0))),
        "connection still open: {closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_forwarding_headers_are_stripped_unless_the_route_passes_one() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up);
    let mut cdn = route("/cdn/", "app", AuthMode::Public);
    cdn.pass_headers = vec!["True-Client-IP".into()];
    cfg.routes.push(cdn);
    let gw = Gateway::start(cfg).await;
    let spoofed = "X-Forwarded-Uri: /admin\r\nX-Forwarded-Method: DELETE\r\n\
        X-Forwarded-Server: evil\r\nX-Original-URI: /admin\r\nX-Original-URL: /admin\r\n\
        X-Rewrite-URL: /admin\r\nTrue-Client-IP: 6.6.6.6\r\nCF-Connecting-IP: 6.6.6.6\r\n\
        X-Client-IP: 6.6.6.6\r\nX-Auth-Request-User: admin\r\nX-Auth-Request-Email: root@evil\r\n\
        Remote-User: admin\r\nRemote-Groups: admins\r\nX-HTTP-Method-Override: DELETE\r\n";
    let gone = [
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-forwarded-server",
        "x-original-uri",
        "x-original-url",
        "x-rewrite-url",
        "cf-connecting-ip",
        "x-client-ip",
        "x-auth-request-user",
        "x-auth-request-email",
        "remote-user",
        "remote-groups",
        "x-http-method-override",
    ];
    for path in ["/public/x", "/cdn/x"] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{spoofed}Connection: close\r\n\r\n");
        let raw = raw_request(gw.port, &request).await;
        let body = raw.split("\r\n\r\n").nth(1).unwrap_or_default();
        let echo: serde_json::Value = serde_json::from_str(body).expect("echo json");
        let h = &echo["headers"];
        for name in &gone {
            assert!(
                h.get(name).is_none(),
                "{path}: {name} reached the upstream: {h}"
            );
        }
        if path == "/cdn/x" {
            assert_eq!(h["true-client-ip"], serde_json::json!(["6.6.6.6"]));
        } else {
            assert!(h.get("true-client-ip").is_none(), "{h}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_cannot_pass_identity_or_gateway_headers() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = deployment(&redis, &up);
    cfg.routes[0].pass_headers = vec!["X-User-Id".into(), "X-Forwarded-For".into()];
    let dir = tempfile::tempdir().expect("dir");
    let path = write_temp(dir.path(), "gw.toml", &toml::to_string(&cfg).expect("toml"));
    let out = std::process::Command::new(authflow_bin())
        .arg("check")
        .arg(&path)
        .output()
        .expect("check");
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("routes[0].pass_headers[0]"), "{text}");
    assert!(text.contains("routes[0].pass_headers[1]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_session_cookies_are_dropped_and_protected_answers_are_not_cached() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(deployment(&redis, &up)).await;
    let token = create_session(&redis.store().await, "u1", None, "127.0.0.1", UA).await;
    let get = |path: &'static str| {
        client()
            .get(gw.url(path))
            .header("user-agent", UA)
            .header("cookie", format!("sid={}", token.expose()))
            .send()
    };
    for path in ["/public/set-cookie/", "/app/set-cookie/"] {
        let resp = get(path).await.expect("request");
        assert_eq!(resp.status(), 200);
        let cookies: Vec<_> = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(cookies, vec!["theme=dark".to_owned()], "{path}");
    }
    let cache = |resp: &reqwest::Response| {
        resp.headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap_or_default().to_owned())
    };
    let resp = get("/app/x").await.expect("request");
    assert_eq!(cache(&resp).as_deref(), Some("private, no-store"));
    let resp = get("/app/cached/").await.expect("request");
    assert_eq!(cache(&resp).as_deref(), Some("public, max-age=60"));
    let resp = get("/public/x").await.expect("request");
    assert_eq!(
        cache(&resp),
        None,
        "public answers are the upstream's business"
    );
}
