//! WebSockets and event streams on protected routes: the upgrade is checked like any request
//! before anything reaches the upstream, and a live connection ends with its session: a
//! logout through the auth service closes the sockets it opened on every gateway within a
//! second (the same Redis invalidations the session cache receives), and so do expiry and
//! an operator deleting the session. A real WebSocket server (`ws` under Node) echoes.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig};
use serde_json::json;
use std::time::{Duration, Instant};
use support::*;

const PW: &str = "correct horse battery";

/// `/ws/` (protected, WebSockets allowed) to the echo server, `/events/` (protected) and
/// the rest to the HTTP echo upstream.
fn config(redis: &Redis, app: &Upstream, echo: &WsEcho) -> GatewayConfig {
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.upstreams.push(upstream("ws", &[echo.addr()]));
    let mut ws = route("/ws/", "ws", AuthMode::Required);
    ws.websocket = true;
    cfg.routes.insert(0, ws);
    cfg.routes
        .insert(0, route("/events/", "app", AuthMode::Required));
    cfg
}

fn headers(cookie: &str) -> Vec<(&'static str, String)> {
    vec![
        ("Cookie", format!("sid={cookie}")),
        ("User-Agent", UA.to_owned()),
    ]
}

async fn connect(gw: &Gateway, path: &str, cookie: Option<&str>) -> Result<WsClient, HttpRefusal> {
    let owned = cookie.map(headers).unwrap_or_default();
    let extra: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (*k, v.as_str())).collect();
    WsClient::connect(&format!("127.0.0.1:{}", gw.port), path, &extra).await
}

async fn echoes(ws: &mut WsClient, text: &str) -> bool {
    ws.send_text(text).await.is_ok()
        && ws.recv_text(Duration::from_secs(5)).await.as_deref() == Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgrade_without_a_valid_session_never_reaches_the_upstream() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let gw = Gateway::start(config(&redis, &app, &echo)).await;
    let refused = connect(&gw, "/ws/chat", None).await.err().expect("refused");
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("unauthenticated"), "{}", refused.body);
    let refused = connect(&gw, "/ws/chat", Some("not-a-session"))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    // A real session with another device's fingerprint.
    let token = create_session(
        &redis.store().await,
        "u1",
        None,
        "127.0.0.1",
        "OtherBrowser/2",
    )
    .await;
    let refused = connect(&gw, "/ws/chat", Some(token.expose()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 401);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(echo.opened(), 0, "nothing reached the WebSocket server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_socket_echoes_and_the_upstream_learns_who_opened_it() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let gw = Gateway::start(config(&redis, &app, &echo)).await;
    let token = create_session(
        &redis.store().await,
        "u-ws",
        Some("ws@example.com"),
        "127.0.0.1",
        UA,
    )
    .await;
    let mut ws = connect(&gw, "/ws/chat", Some(token.expose()))
        .await
        .expect("upgraded");
    assert!(echoes(&mut ws, "hello").await);
    let opened = echo.open_events();
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["x-user-id"], "u-ws", "{:?}", opened[0]);
    // Silent for longer than the upstream's read_timeout (2 s here): a tunnel waits for
    // tunnel_timeout instead.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(
        echoes(&mut ws, "still there").await,
        "an idle socket was cut off"
    );
    // A route without `websocket = true` refuses the upgrade.
    let refused = connect(&gw, "/events/x", Some(token.expose()))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.status, 400);
}

/// Redis, the echo servers, the auth service and two gateways with private listeners.
struct Stack {
    _redis: Redis,
    _app: Upstream,
    echo: WsEcho,
    auth: AuthService,
    gws: Vec<(Gateway, u16)>,
}

async fn stack(redis: Redis, tweak: impl Fn(&mut GatewayConfig)) -> Stack {
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let mut auth_cfg = auth_config(&redis.url());
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut gws = Vec::new();
    for _ in 0..2 {
        let mut cfg = config(&redis, &app, &echo);
        with_auth_service(&mut cfg, auth.port);
        let private = free_port();
        cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
        tweak(&mut cfg);
        gws.push((Gateway::start(cfg).await, private));
    }
    Stack {
        _redis: redis,
        _app: app,
        echo,
        auth,
        gws,
    }
}

impl Stack {
    async fn sign_in(&self, email: &str) -> String {
        self.auth.sign_up(email, PW).await;
        let r = sign_in_through(&self.gws[0].0.url(""), email, PW).await;
        assert_eq!(r.status(), 200);
        session_cookie(&r).expect("cookie")
    }

    async fn logout(&self, via: usize, cookie: &str) {
        let r = client()
            .post(self.gws[via].0.url("/api/v1/simple_auth/logout"))
            .header("user-agent", UA)
            .header("cookie", format!("sid={cookie}"))
            .json(&json!({}))
            .send()
            .await
            .expect("logout");
        assert_eq!(r.status(), 204);
    }

    async fn metrics(&self, gw: usize) -> String {
        client()
            .get(format!("http://127.0.0.1:{}/metrics", self.gws[gw].1))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logout_closes_the_sockets_it_opened_on_every_gateway_within_a_second() {
    let s = stack(Redis::start().await, |_| {}).await;
    let alice = s.sign_in("alice@example.com").await;
    let bob = s.sign_in("bob@example.com").await;
    let mut on_0 = connect(&s.gws[0].0, "/ws/a", Some(&alice))
        .await
        .expect("upgraded");
    let mut on_1 = connect(&s.gws[1].0, "/ws/a", Some(&alice))
        .await
        .expect("upgraded");
    let mut bobs = connect(&s.gws[1].0, "/ws/b", Some(&bob))
        .await
        .expect("upgraded");
    for ws in [&mut on_0, &mut on_1, &mut bobs] {
        assert!(echoes(ws, "before").await);
    }
    // Once the gateways have read the session through their feeds, the logout is news.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let at = Instant::now();
    s.logout(0, &alice).await;
    assert!(
        on_0.closed_within(Duration::from_secs(1)).await,
        "gateway 0 kept it"
    );
    assert!(
        on_1.closed_within(Duration::from_secs(1)).await,
        "gateway 1 kept it"
    );
    let took = at.elapsed();
    assert!(took < Duration::from_millis(1_500), "closed after {took:?}");
    eprintln!("both sockets closed {took:?} after the logout was sent");
    assert!(
        echoes(&mut bobs, "after").await,
        "another session's socket stays open"
    );
    assert_eq!(s.echo.wait_closed(2, Duration::from_secs(2)).await, 2);
    for gw in 0..2 {
        let text = s.metrics(gw).await;
        assert!(
            text.contains("authflow_gateway_live_connections_closed_total{reason=\"revoked\"} 1"),
            "gateway {gw}: {text}"
        );
    }
    let text = s.metrics(1).await;
    assert!(
        text.contains("authflow_gateway_live_connections{kind=\"ws\"} 1"),
        "{text}"
    );
    assert!(text.contains("authflow_gateway_requests_by_protocol_total{protocol=\"ws\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_session_cache_sockets_still_end_with_their_session() {
    let s = stack(Redis::start().await, |cfg| {
        cfg.session_check.cache_entries = 0
    })
    .await;
    let alice = s.sign_in("alice@example.com").await;
    let mut ws = connect(&s.gws[1].0, "/ws/a", Some(&alice))
        .await
        .expect("upgraded");
    assert!(echoes(&mut ws, "before").await);
    s.logout(0, &alice).await;
    assert!(
        ws.closed_within(Duration::from_secs(2)).await,
        "polled within a tick"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_session_closes_its_socket_and_a_deleted_one_its_event_stream() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let gw = Gateway::start(config(&redis, &app, &echo)).await;
    let store = redis.store().await;
    let ends = authflow_shared::now_ms() + 2_000;
    let token = create_session_with(&store, "u-exp", None, "127.0.0.1", UA, |r| {
        r.expires_at = ends
    })
    .await;
    let mut ws = connect(&gw, "/ws/a", Some(token.expose()))
        .await
        .expect("upgraded");
    assert!(echoes(&mut ws, "before").await);
    assert!(
        ws.closed_within(Duration::from_secs(4)).await,
        "open past its expiry"
    );
    let closed_at = authflow_shared::now_ms();
    assert!(closed_at >= ends, "closed before its expiry");
    assert!(
        closed_at < ends + 1_500,
        "closed {} ms after its expiry",
        closed_at - ends
    );

    let token = create_session(&store, "u-sse", None, "127.0.0.1", UA).await;
    let mut events = client()
        .get(gw.url("/events/feed"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", token.expose()))
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status(), 200);
    let first = events.chunk().await.expect("chunk").expect("a tick");
    assert!(String::from_utf8_lossy(&first).contains("tick"));
    use authflow_shared::store::SessionStore;
    store
        .delete(&token.id(), "u-sse")
        .await
        .expect("an operator deletes the session");
    let at = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.chunk().await {
                Ok(Some(_)) => continue,
                _ => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived its session");
    eprintln!(
        "event stream ended {:?} after the session was deleted",
        at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_over_http2_ends_with_its_session() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let mut cfg = config(&redis, &app, &echo);
    cfg.h2c = true;
    let gw = Gateway::start(cfg).await;
    let store = redis.store().await;
    let token = create_session(&store, "u-h2", None, "127.0.0.1", UA).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", gw.port))
        .await
        .expect("connect");
    let (send, conn) = h2::client::handshake(tcp).await.expect("h2");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut send = send.ready().await.expect("ready");
    let req = http::Request::get("http://localhost/events/feed")
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", token.expose()))
        .body(())
        .expect("req");
    let (resp, _) = send.send_request(req, true).expect("stream");
    let resp = resp.await.expect("answer");
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let first = body.data().await.expect("a tick").expect("data");
    assert!(String::from_utf8_lossy(&first).contains("tick"));
    use authflow_shared::store::SessionStore;
    store.delete(&token.id(), "u-h2").await.expect("deleted");
    let at = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = body.data().await {}
    })
    .await;
    assert!(ended.is_ok(), "the HTTP/2 stream outlived its session");
    eprintln!(
        "HTTP/2 event stream ended {:?} after the session was deleted",
        at.elapsed()
    );
    // The connection itself serves on.
    let mut send = send.ready().await.expect("the connection is still open");
    let req = http::Request::get("http://localhost/public/x")
        .body(())
        .expect("req");
    let (resp, _) = send.send_request(req, true).expect("stream");
    assert_eq!(resp.await.expect("answer").status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_signed_in_answer_still_streaming_ends_with_its_session() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let mut cfg = config(&redis, &app, &echo);
    cfg.routes
        .insert(0, route("/stream/", "app", AuthMode::Required));
    let gw = Gateway::start(cfg).await;
    let store = redis.store().await;
    let token = create_session(&store, "u-dl", None, "127.0.0.1", UA).await;
    let mut download = client()
        .get(gw.url("/stream/big"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", token.expose()))
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    // Past a second of streaming the answer is watched.
    let until = Instant::now() + Duration::from_millis(1_500);
    while Instant::now() < until {
        assert!(download.chunk().await.expect("chunk").is_some());
    }
    use authflow_shared::store::SessionStore;
    store.delete(&token.id(), "u-dl").await.expect("deleted");
    let at = Instant::now();
    let ended = tokio::time::timeout(Duration::from_secs(2), async {
        while let Ok(Some(_)) = download.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the download outlived its session");
    eprintln!(
        "chunked download ended {:?} after the session was deleted",
        at.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_falls_silent_still_ends_with_its_session() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let echo = WsEcho::start().await;
    let mut cfg = config(&redis, &app, &echo);
    cfg.routes
        .insert(0, route("/silent/", "app", AuthMode::Required));
    cfg.upstreams[0].read_timeout = authflow_shared::config::HumanDuration::secs(20);
    let gw = Gateway::start(cfg).await;
    let store = redis.store().await;
    let token = create_session(&store, "u-quiet", None, "127.0.0.1", UA).await;
    let mut quiet = client()
        .get(gw.url("/silent/x"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", token.expose()))
        .send()
        .await
        .expect("stream");
    assert_eq!(quiet.status(), 200);
    let first = quiet
        .chunk()
        .await
        .expect("chunk")
        .expect("the first chunk");
    assert_eq!(&first[..], b"chunk 0\n");
    // Within its first second, then silent: no chunk passes after the revocation.
    use authflow_shared::store::SessionStore;
    store.delete(&token.id(), "u-quiet").await.expect("deleted");
    let at = Instant::now();
    let rest = tokio::time::timeout(Duration::from_secs(2), quiet.chunk()).await;
    match rest {
        Ok(Ok(Some(chunk))) => panic!("a chunk passed after the session ended: {chunk:?}"),
        Ok(_) => eprintln!(
            "silent stream ended {:?} after the session was deleted",
            at.elapsed()
        ),
        Err(_) => panic!("the silent stream outlived its session"),
    }
}
