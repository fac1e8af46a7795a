//! gRPC behind the gateway: a real grpc-js server reached over cleartext HTTP/2 (`protocol =
//! "h2c"`), called by a real grpc-js client over h2c to the gateway. A call with a session
//! passes with its trailers intact; the gateway's own refusals are gRPC answers
//! (`UNAUTHENTICATED`, `RESOURCE_EXHAUSTED` with the retry delay, `UNAVAILABLE`), never an
//! HTTP status the client would not read; and the gRPC health service decides which servers
//! get calls.

mod support;

use authflow_gateway::config::RateRule;
use authflow_gateway::config::{AuthMode, GatewayConfig, UpstreamProtocol};
use std::time::Duration;
use support::grpc::code;
use support::*;

/// What grpc-js sends as its `User-Agent` (the version `tests/support/peers` pins): the
/// device fingerprint of its sessions.
const GRPC_UA: &str = "grpc-node-js/1.14.7";
const ECHO: &str = "/authflow.test.Echo/";

fn config(redis: &Redis, app: &Upstream, servers: &[String]) -> GatewayConfig {
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.h2c = true;
    let mut grpc = upstream("grpc", servers);
    grpc.protocol = UpstreamProtocol::H2c;
    cfg.upstreams.push(grpc);
    cfg.routes
        .insert(0, route(ECHO, "grpc", AuthMode::Required));
    cfg.routes.insert(
        0,
        route("/grpc.health.v1.Health/", "grpc", AuthMode::Public),
    );
    cfg
}

/// `Say` calls a server has received (its health checks are calls too).
fn says(server: &GrpcServer) -> usize {
    server
        .call_events()
        .iter()
        .filter(|e| e["method"] == "Say")
        .count()
}

async fn session(redis: &Redis, user: &str) -> String {
    let token = create_session(&redis.store().await, user, None, "127.0.0.1", GRPC_UA).await;
    format!("sid={}", token.expose())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_a_session_passes_with_its_trailers_and_one_without_is_unauthenticated() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let server = GrpcServer::start().await;
    let gw = Gateway::start(config(&redis, &app, &[server.addr()])).await;
    let target = format!("127.0.0.1:{}", gw.port);

    let refused = grpc_call(&target, "Say", "hi", None).await;
    assert_eq!(refused.code, code::UNAUTHENTICATED, "{:?}", refused.raw);
    assert!(
        refused.details.contains("unauthenticated"),
        "{}",
        refused.details
    );
    let forged = grpc_call(&target, "Say", "hi", Some("sid=forged")).await;
    assert_eq!(forged.code, code::UNAUTHENTICATED, "{:?}", forged.raw);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(server.calls(), 0, "no refused call reached the server");

    let cookie = session(&redis, "u-grpc").await;
    let ok = grpc_call(&target, "Say", "hi", Some(&cookie)).await;
    assert_eq!(ok.code, code::OK, "{:?}", ok.raw);
    assert_eq!(ok.field("text"), Some("hi"));
    assert_eq!(
        ok.field("user_id"),
        Some("u-grpc"),
        "identity reaches the server"
    );
    assert_eq!(ok.trailer("x-echo-trailer"), Some("kept"), "{:?}", ok.raw);
    assert_eq!(ok.header("x-echo-header"), Some("sent"));
    let seen = server.call_events();
    assert!(
        seen.iter()
            .all(|e| e["cookie"].as_str().unwrap_or("").is_empty()),
        "the session cookie stays at the edge: {seen:?}"
    );

    // The server's own error status and its trailers pass untouched.
    let failed = grpc_call(&target, "Say", "fail", Some(&cookie)).await;
    assert_eq!(failed.code, code::INVALID_ARGUMENT, "{:?}", failed.raw);
    assert_eq!(failed.details, "asked to fail");
    assert_eq!(failed.trailer("x-echo-trailer"), Some("kept"));

    // A server stream runs until the client ends it.
    let ticks = grpc_call(&target, "Ticks", "t", Some(&cookie)).await;
    assert!(ticks.replies.unwrap_or(0) >= 5, "{:?}", ticks.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_grpc_statuses_with_the_retry_delay() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let server = GrpcServer::start().await;
    let mut cfg = config(&redis, &app, &[server.addr()]);
    let rule: RateRule = toml::from_str(&format!(
        "name = \"grpc\"\nprefix = \"{ECHO}\"\nrequests = 2\nper = \"1m\""
    ))
    .expect("rule");
    cfg.rate_limit.rules.push(rule);
    let gw = Gateway::start(cfg).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let cookie = session(&redis, "u-limited").await;
    for _ in 0..2 {
        assert_eq!(
            grpc_call(&target, "Say", "hi", Some(&cookie)).await.code,
            code::OK
        );
    }
    let limited = grpc_call(&target, "Say", "hi", Some(&cookie)).await;
    assert_eq!(limited.code, code::RESOURCE_EXHAUSTED, "{:?}", limited.raw);
    assert!(
        limited.details.contains("retry after"),
        "{}",
        limited.details
    );
    let pushback = limited
        .trailer("grpc-retry-pushback-ms")
        .or(limited.header("grpc-retry-pushback-ms"))
        .and_then(|v| v.parse::<u64>().ok());
    assert!(pushback.is_some_and(|ms| ms >= 1_000), "{:?}", limited.raw);
    assert_eq!(
        server.wait_calls(2).await,
        2,
        "the limited call did not reach it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_or_not_serving_gets_no_calls() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let serving = GrpcServer::start().await;
    let draining = GrpcServer::start().await;
    let mut cfg = config(&redis, &app, &[serving.addr(), draining.addr()]);
    let grpc = cfg
        .upstreams
        .iter_mut()
        .find(|u| u.name == "grpc")
        .expect("grpc");
    grpc.health_check_grpc = Some(String::new());
    grpc.health_check_interval = authflow_shared::config::HumanDuration::millis(200);
    let gw = Gateway::start(cfg).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let cookie = session(&redis, "u-health").await;
    draining.set_health(false);
    // Health checks run every 200 ms: wait until the draining server is out.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = says(&draining);
    for _ in 0..6 {
        assert_eq!(
            grpc_call(&target, "Say", "hi", Some(&cookie)).await.code,
            code::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(says(&draining), before, "a NOT_SERVING server got calls");
    assert_eq!(says(&serving), 6);
    assert!(
        serving.call_events().iter().any(|e| e["method"] == "Check"),
        "the gateway asked the health service"
    );

    // Every server gone: UNAVAILABLE, not an HTTP 502 the client cannot read.
    let mut serving = serving;
    let mut draining = draining;
    serving.kill();
    draining.kill();
    let down = grpc_call(&target, "Say", "hi", Some(&cookie)).await;
    assert_eq!(down.code, code::UNAVAILABLE, "{:?}", down.raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_with_roles_answers_permission_denied_and_passes_the_roles_on() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let server = GrpcServer::start().await;
    let mut cfg = config(&redis, &app, &[server.addr()]);
    cfg.routes[1].roles = vec!["admin".into()];
    assert_eq!(cfg.routes[1].prefix, ECHO);
    let gw = Gateway::start(cfg).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let store = redis.store().await;
    let plain = create_session(&store, "u-plain", None, "127.0.0.1", GRPC_UA).await;
    let denied = grpc_call(
        &target,
        "Say",
        "hi",
        Some(&format!("sid={}", plain.expose())),
    )
    .await;
    assert_eq!(denied.code, code::PERMISSION_DENIED, "{:?}", denied.raw);
    let admin = create_session_with(&store, "u-admin", None, "127.0.0.1", GRPC_UA, |r| {
        r.claims.roles = vec!["admin".into()]
    })
    .await;
    let ok = grpc_call(
        &target,
        "Say",
        "hi",
        Some(&format!("sid={}", admin.expose())),
    )
    .await;
    assert_eq!(ok.code, code::OK, "{:?}", ok.raw);
    assert_eq!(ok.field("roles"), Some("admin"));
    assert_eq!(says(&server), 1, "only the admin's call reached the server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stream_over_a_shared_http2_connection_ends_with_its_session() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let server = GrpcServer::start().await;
    let gw = Gateway::start(config(&redis, &app, &[server.addr()])).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let store = redis.store().await;
    let token = create_session(&store, "u-ticks", None, "127.0.0.1", GRPC_UA).await;
    let cookie = format!("sid={}", token.expose());
    let call = tokio::spawn(async move { grpc_call(&target, "Ticks", "t", Some(&cookie)).await });
    // The client ends the stream itself at 2 s: revoke at 1.2 s, once it is watched.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    use authflow_shared::store::SessionStore;
    store.delete(&token.id(), "u-ticks").await.expect("deleted");
    let ticks = call.await.expect("call");
    let ended = ticks.ended_after_ms.expect("ended_after_ms");
    // The gateway resets the stream (the client reports CANCELLED, as for any reset),
    // well before the client's own end at 2 s.
    assert_ne!(ticks.code, code::OK, "{:?}", ticks.raw);
    assert!(
        ended < 1_700,
        "ended {ended} ms after it began: {:?}",
        ticks.raw
    );
    eprintln!(
        "server stream ended {} ms after the session was deleted",
        ended.saturating_sub(1_200)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_service_over_tls_is_reached_with_its_own_certificate_authority() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, cert, key) = private_pki(dir.path(), "grpc");
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let server = GrpcServer::start_tls(&cert, &key).await;
    let mut cfg = config(&redis, &app, &[server.addr()]);
    let grpc = cfg
        .upstreams
        .iter_mut()
        .find(|u| u.name == "grpc")
        .expect("grpc");
    grpc.protocol = UpstreamProtocol::H2;
    grpc.tls = true;
    grpc.sni = "localhost".into();
    grpc.ca_file = Some(ca);
    grpc.health_check_grpc = Some(String::new());
    let gw = Gateway::start(cfg.clone()).await;
    let target = format!("127.0.0.1:{}", gw.port);
    let cookie = session(&redis, "u-tls").await;
    let ok = grpc_call(&target, "Say", "over tls", Some(&cookie)).await;
    assert_eq!(ok.code, code::OK, "{:?}", ok.raw);
    assert_eq!(ok.field("user_id"), Some("u-tls"));
    assert_eq!(ok.trailer("x-echo-trailer"), Some("kept"));
    assert!(
        server.call_events().iter().any(|e| e["method"] == "Check"),
        "the health check reached the server over TLS"
    );

    // Without the authority the server's certificate is not trusted: no call gets through.
    let grpc = cfg
        .upstreams
        .iter_mut()
        .find(|u| u.name == "grpc")
        .expect("grpc");
    grpc.ca_file = None;
    grpc.health_check_grpc = None;
    let untrusting = Gateway::start(cfg).await;
    let target = format!("127.0.0.1:{}", untrusting.port);
    let before = says(&server);
    let refused = grpc_call(&target, "Say", "over tls", Some(&cookie)).await;
    assert_eq!(refused.code, code::UNAVAILABLE, "{:?}", refused.raw);
    assert_eq!(says(&server), before);
}
