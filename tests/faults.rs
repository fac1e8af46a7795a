//! Faults, injected for real, with nothing lost and everything recovering without a restart:
//! Redis killed and restarted with persistence, Redis hanging (the circuit breaker), Redis
//! full, the user database gone, and upstreams that reset, hang or answer garbage.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig};
use authflow_shared::config::HumanDuration;
use serde_json::json;
use std::time::Duration;
use support::*;

const PW: &str = "correct horse battery";

/// The auth service (on `database`, or SQLite) behind a gateway, as deployed.
async fn stack(redis: &Redis, database: Option<String>) -> (Upstream, AuthService, Gateway) {
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&redis.url());
    auth_cfg.signup.require_email_verification = false;
    if let Some(url) = database {
        auth_cfg.database.url = url;
    }
    // Below the gateway's 2 s read timeout in the test config.
    auth_cfg.database.acquire_timeout = HumanDuration::millis(500);
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    (app, auth, gw)
}

async fn sign_up_and_in(gw: &Gateway, email: &str) -> reqwest::Response {
    let api = |e: &str| gw.url(&format!("/api/v1/simple_auth/{e}"));
    let body = json!({"email": email, "password": PW});
    let r = client()
        .post(api("signup"))
        .json(&body)
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    sign_in(gw, email).await
}

async fn sign_in(gw: &Gateway, email: &str) -> reqwest::Response {
    sign_in_through(&gw.url(""), email, PW).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_survive_a_redis_kill_with_persistence() {
    let mut redis = Redis::start_persistent().await;
    let (_app, _auth, gw) = stack(&redis, None).await;
    let token = session_cookie(&sign_up_and_in(&gw, "kept@example.com").await).expect("cookie");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &token).await.status(),
        200
    );
    redis.kill();
    // The gateway learns of the kill from its tracking connection closing, a moment after
    // the process is gone; a request in that moment may still be served from the cache.
    let down = poll(
        || get_with_session(gw.url("/app/x"), &token),
        |r| r.status() == 503,
    )
    .await;
    assert_eq!(down.status(), 503, "fail closed");
    redis.restart().await;
    let r = poll(
        || get_with_session(gw.url("/app/x"), &token),
        |r| r.status() == 200,
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "the session written before the kill survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_opens_the_breaker_which_probes_it_back() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg: GatewayConfig = gateway_config(&redis.url(), &[up.addr()]);
    cfg.session_check.breaker_threshold = 3;
    cfg.session_check.breaker_cool_down = HumanDuration::secs(2);
    // The breaker guards reads from Redis; a cached session would need none.
    cfg.session_check.cache_entries = 0;
    let gw = Gateway::start(cfg).await;
    let token = create_session(&redis.store().await, "u1", None, "127.0.0.1", UA).await;
    let request = || get_with_session(gw.url("/app/x"), token.expose());
    assert_eq!(request().await.status(), 200);

    // Redis hangs for 1.5 s: three requests wait out the 100 ms timeout, and the breaker opens.
    let sleeper = redis.client().await;
    let hang = tokio::spawn(async move {
        use fred::interfaces::ClientLike;
        let _: Result<String, _> = sleeper
            .custom(fred::cmd!("DEBUG"), vec!["SLEEP", "1.5"])
            .await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..3 {
        assert_eq!(request().await.status(), 503);
    }
    let _ = hang.await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Redis is back, but the breaker is open: fail closed at once, without a command.
    let before = redis.command_calls("get").await;
    for _ in 0..5 {
        let r = request().await;
        assert_eq!(r.status(), 503);
        assert_eq!(json(r).await["error"], "session_store_unavailable");
    }
    assert_eq!(
        redis.command_calls("get").await,
        before,
        "an open breaker sent commands"
    );
    // After the cool-down one probe goes through, succeeds, and closes it.
    let r = poll(request, |r| r.status() == 200).await;
    assert_eq!(r.status(), 200, "the breaker never closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_new_sign_ins_cleanly_and_keeps_existing_sessions() {
    let redis = Redis::start().await;
    let (_app, _auth, gw) = stack(&redis, None).await;
    let token = session_cookie(&sign_up_and_in(&gw, "full@example.com").await).expect("cookie");
    let r = client()
        .post(gw.url("/api/v1/simple_auth/signup"))
        .json(&json!({"email": "late@example.com", "password": PW}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    {
        use fred::interfaces::ClientLike;
        let c = redis.client().await;
        let _: String = c
            .custom(
                fred::cmd!("CONFIG"),
                vec!["SET", "maxmemory-policy", "noeviction"],
            )
            .await
            .expect("config");
        let _: String = c
            .custom(fred::cmd!("CONFIG"), vec!["SET", "maxmemory", "1"])
            .await
            .expect("config");
    }
    let r = sign_in(&gw, "late@example.com").await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "session_store_unavailable");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &token).await.status(),
        200,
        "existing sessions keep working"
    );
    {
        use fred::interfaces::ClientLike;
        let c = redis.client().await;
        let _: String = c
            .custom(fred::cmd!("CONFIG"), vec!["SET", "maxmemory", "0"])
            .await
            .expect("config");
    }
    assert_eq!(
        sign_in(&gw, "late@example.com").await.status(),
        200,
        "recovers by itself"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_database_the_auth_service_answers_503_and_recovers() {
    let redis = Redis::start().await;
    let pg = Postgres::start().await;
    let (_app, _auth, gw) = stack(&redis, Some(pg.url())).await;
    let token = session_cookie(&sign_up_and_in(&gw, "db@example.com").await).expect("cookie");
    pg.stop();
    let r = sign_in(&gw, "db@example.com").await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "user_store_unavailable");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &token).await.status(),
        200,
        "the gateway does not need the database"
    );
    pg.resume();
    let r = poll(|| sign_in(&gw, "db@example.com"), |r| r.status() == 200).await;
    assert_eq!(r.status(), 200, "sign-in did not recover");
}

/// An upstream that misbehaves in one way for every connection.
async fn misbehaving(kind: &'static str) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                match kind {
                    "reset" => {
                        // A zero linger sends RST on close (and, being zero, never blocks).
                        #[allow(deprecated)]
                        let _ = s.set_linger(Some(Duration::ZERO));
                        drop(s);
                    }
                    "hang" => tokio::time::sleep(Duration::from_secs(30)).await,
                    _ => {
                        let _ = s.write_all(b"this is not HTTP at all\r\n\r\n").await;
                        let _ = s.shutdown().await;
                    }
                }
            });
        }
    });
    (port, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstreams_that_reset_hang_or_answer_garbage_get_clean_errors() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    let mut tasks = Vec::new();
    for kind in ["reset", "hang", "garbage"] {
        let (port, task) = misbehaving(kind).await;
        tasks.push(task);
        cfg.upstreams
            .push(upstream(kind, &[format!("127.0.0.1:{port}")]));
        cfg.routes
            .push(route(&format!("/{kind}/"), kind, AuthMode::Public));
    }
    let gw = Gateway::start(cfg).await;
    for (kind, status, code) in [
        ("reset", 502, "bad_gateway"),
        ("hang", 504, "gateway_timeout"),
        ("garbage", 502, "bad_gateway"),
    ] {
        let r = client()
            .get(gw.url(&format!("/{kind}/x")))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), status, "{kind}");
        assert_eq!(json(r).await, json!({"error": code}), "{kind}");
    }
    let r = client()
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "the gateway itself is unharmed");
    for t in tasks {
        t.abort();
    }
}
