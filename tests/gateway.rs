//! The gateway, end to end: real redis-server, real upstream, the real binary, HTTP over
//! loopback. Each test reads as one behaviour of the request path.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig, MismatchPolicy, RateRule, TlsConfig};
use authflow_shared::config::HumanDuration;
use fred::interfaces::KeysInterface;
use std::time::Duration;
use support::*;

/// Redis, an echo upstream and a gateway on [`gateway_config`] changed by `adjust`.
async fn stack(adjust: impl FnOnce(&mut GatewayConfig)) -> (Redis, Upstream, Gateway) {
    let redis = Redis::start().await;
    let upstream = Upstream::start("a").await;
    let mut cfg = gateway_config(&redis.url(), &[upstream.addr()]);
    adjust(&mut cfg);
    let gw = Gateway::start(cfg).await;
    (redis, upstream, gw)
}

fn rate_limit(cfg: &mut GatewayConfig, requests: u64, per: HumanDuration) {
    cfg.rate_limit.requests = requests;
    cfg.rate_limit.per = per;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_session_is_forwarded_with_identity_and_without_the_session_cookie() {
    let (redis, _up, gw) = stack(|_| {}).await;
    let token = create_session(
        &redis.store().await,
        "user-1",
        Some("ann@example.com"),
        "127.0.0.1",
        UA,
    )
    .await;
    let resp = client()
        .get(gw.url("/app/dashboard?x=1"))
        .header("user-agent", UA)
        .header("cookie", format!("theme=dark; sid={}", token.expose()))
        .header("x-user-id", "admin")
        .header("X-User-Email", "root@evil")
        .header("x-session-role", "superuser")
        .header("x-request-id", "trace-42")
        .header("x-forwarded-for", "6.6.6.6")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    // Not from a trusted proxy: the client's id is replaced by the gateway's own.
    let id = resp.headers()["x-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    assert_ne!(id, "trace-42");
    let echo = json(resp).await;
    let h = &echo["headers"];
    assert_eq!(echo["path"], "/app/dashboard");
    assert_eq!(h["x-user-id"], serde_json::json!(["user-1"]));
    assert_eq!(h["x-user-email"], serde_json::json!(["ann@example.com"]));
    assert!(h.get("x-session-role").is_none(), "{h}");
    assert_eq!(h["x-request-id"], serde_json::json!([id]));
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(h["cookie"], serde_json::json!(["theme=dark"]));
    assert!(
        !echo.to_string().contains(token.expose()),
        "session token reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream_on_public_routes() {
    let (_redis, _up, gw) = stack(|c| c.identity.strip_headers = vec!["X-Tenant".into()]).await;
    let resp = client()
        .get(gw.url("/public/x"))
        .header("x-user-id", "admin")
        .header("x-user-email", "root@evil")
        .header("x-session-id", "s")
        .header("x-authflow-fingerprint", "f")
        .header("x-tenant", "other")
        .header(
            "cookie",
            "sid=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA; a=b",
        )
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let echo = json(resp).await;
    let h = &echo["headers"];
    for name in [
        "x-user-id",
        "x-user-email",
        "x-session-id",
        "x-authflow-fingerprint",
        "x-tenant",
    ] {
        assert!(h.get(name).is_none(), "{name} reached the upstream: {h}");
    }
    assert_eq!(h["cookie"], serde_json::json!(["a=b"]));
    assert_eq!(h["x-request-id"].as_array().map(|a| a.len()), Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_session_redirects_browsers_and_gives_api_clients_401() {
    let (_redis, _up, gw) = stack(|_| {}).await;
    let resp = client()
        .get(gw.url("/app/page?tab=2&q=a b"))
        .header("accept", "text/html,application/xhtml+xml")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 302);
    assert_eq!(
        resp.headers()["location"],
        "/auth/signin?next=/app/page%3Ftab%3D2%26q%3Da%2520b"
    );
    assert!(resp.headers().get("set-cookie").is_none());

    let resp = client()
        .get(gw.url("/app/api"))
        .header("accept", "application/json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("sid"));
    assert_eq!(
        json(resp).await,
        serde_json::json!({"error": "unauthenticated"})
    );

    let resp = client()
        .post(gw.url("/app/form"))
        .header("accept", "text/html")
        .body("a=1")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 401, "a POST is never redirected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_malformed_and_duplicate_cookies_are_refused_and_cleared() {
    let (_redis, _up, gw) = stack(|_| {}).await;
    let unknown = authflow_shared::token::SessionToken::for_user("nobody");
    for cookie in [
        format!("sid={}", unknown.expose()),
        "sid=abc".to_string(),
        format!("sid={}", "a".repeat(5000)),
        format!("sid={0}; sid={0}", unknown.expose()),
    ] {
        let resp = client()
            .get(gw.url("/app/x"))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("request");
        assert_eq!(resp.status(), 401, "{cookie:.40}");
        assert_eq!(
            resp.headers()["set-cookie"],
            "sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax",
            "{cookie:.40}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_cookies_never_reach_redis() {
    let (redis, _up, gw) = stack(|_| {}).await;
    let gets = || redis.command_calls("mget");
    let send = |cookie: String| {
        client()
            .get(gw.url("/app/x"))
            .header("cookie", cookie)
            .send()
    };
    let before = gets().await;
    for cookie in [
        "sid=abc".to_string(),
        format!("sid={}", "a".repeat(5000)),
        format!("sid={}+", "a".repeat(42)),
    ] {
        assert_eq!(send(cookie).await.expect("request").status(), 401);
    }
    assert_eq!(
        gets().await,
        before,
        "a malformed cookie caused a Redis lookup"
    );
    // The counter is real: a well-formed unknown token is looked up.
    let unknown = authflow_shared::token::SessionToken::for_user("nobody");
    assert_eq!(
        send(format!("sid={}", unknown.expose()))
            .await
            .expect("request")
            .status(),
        401
    );
    assert_eq!(gets().await, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_expired_session_is_refused_cleared_and_deleted() {
    let (redis, _up, gw) = stack(|_| {}).await;
    let store = redis.store().await;
    let token = create_session_with(&store, "u2", None, "127.0.0.1", UA, |r| {
        r.last_seen_at -= 2 * 3600 * 1000; // idle for two hours; idle_timeout is 1h
        r.created_at = r.last_seen_at;
    })
    .await;
    let resp = get_with_session(gw.url("/app/x"), token.expose()).await;
    assert_eq!(resp.status(), 401);
    assert!(resp.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    let exists: i64 = redis
        .client()
        .await
        .exists(authflow_shared::keys::session(&token.id()))
        .await
        .expect("exists");
    assert_eq!(exists, 0, "expired session still in Redis");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absolutely_expired_session_is_refused_even_when_active() {
    let (redis, _up, gw) = stack(|_| {}).await;
    let store = redis.store().await;
    let token = create_session_with(&store, "u3", None, "127.0.0.1", UA, |r| {
        r.expires_at = r.created_at + 1_500; // 1.5 s absolute lifetime
    })
    .await;
    let send = || get_with_session(gw.url("/app/x"), token.expose());
    assert_eq!(send().await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    assert_eq!(send().await.status(), 401);
}

/// The gateway's `[session] absolute_timeout` governs too: lowering it ends sessions that
/// were signed in under a longer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_configured_absolute_timeout_ends_older_sessions() {
    let (redis, _up, gw) = stack(|c| {
        c.session.idle_timeout = HumanDuration::secs(10);
        c.session.absolute_timeout = HumanDuration::secs(10);
        c.session_check.touch_interval = HumanDuration::secs(5);
    })
    .await;
    let store = redis.store().await;
    let old = create_session_with(&store, "u3b", None, "127.0.0.1", UA, |r| {
        r.created_at -= 20_000; // signed in 20 s ago; the record itself allows an hour
    })
    .await;
    let fresh = create_session(&store, "u3c", None, "127.0.0.1", UA).await;
    assert_eq!(
        get_with_session(gw.url("/app/x"), old.expose())
            .await
            .status(),
        401
    );
    assert_eq!(
        get_with_session(gw.url("/app/x"), fresh.expose())
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_mismatch_by_user_agent_is_refused_and_burns_the_session() {
    let (redis, _up, gw) = stack(|_| {}).await;
    let token = create_session(&redis.store().await, "u4", None, "127.0.0.1", UA).await;
    let with_ua = |ua: &'static str| {
        client()
            .get(gw.url("/app/x"))
            .header("user-agent", ua)
            .header("cookie", format!("sid={}", token.expose()))
            .send()
    };
    assert_eq!(with_ua(UA).await.expect("request").status(), 200);
    let stolen = with_ua("curl/8.0").await.expect("request");
    assert_eq!(stolen.status(), 401);
    assert!(stolen.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    assert_eq!(
        with_ua(UA).await.expect("request").status(),
        401,
        "session survived a mismatch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fingerprint_mismatch_by_source_ip_is_refused() {
    let redis = Redis::start().await;
    let _up = Upstream::start("a").await;
    let mut cfg = gateway_config(&redis.url(), &[_up.addr()]);
    cfg.session_check.on_fingerprint_mismatch = MismatchPolicy::Reject;
    let gw = Gateway::start(cfg).await;
    // Signed in from 127.0.0.1; the cookie is replayed from 127.0.0.2 with the same browser.
    let token = create_session(&redis.store().await, "u5", None, "127.0.0.1", UA).await;
    let from = |ip: &'static str| {
        client_from(Some(ip))
            .get(gw.url("/app/x"))
            .header("user-agent", UA)
            .header("cookie", format!("sid={}", token.expose()))
            .send()
    };
    assert_eq!(from("127.0.0.2").await.expect("request").status(), 401);
    assert_eq!(
        from("127.0.0.1").await.expect("request").status(),
        200,
        "reject policy keeps the session"
    );
    // Once its own device has matched (and the gateway remembers its inputs), another
    // device is still refused, and the first still served.
    for _ in 0..2 {
        assert_eq!(from("127.0.0.2").await.expect("request").status(), 401);
        assert_eq!(from("127.0.0.1").await.expect("request").status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_trips_at_the_configured_count_and_lifts_after_the_window() {
    let (_redis, _up, gw) = stack(|c| rate_limit(c, 5, HumanDuration::secs(1))).await;
    // From an address of its own: the harness's `/health` probes (rate limited like any
    // request) came from 127.0.0.1.
    let c = client_from(Some("127.0.0.9"));
    // A window opens with the first request after the previous one ended, so six quick
    // requests fall into one window.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(c.get(gw.url("/public/x")).send().await.expect("request"));
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, vec![200, 200, 200, 200, 200, 429], "{codes:?}");
    let limited = statuses.pop().expect("last");
    assert_eq!(limited.headers()["retry-after"], "1");
    assert_eq!(limited.headers()["ratelimit-policy"], "\"default\";q=5;w=1");
    assert_eq!(limited.headers()["ratelimit"], "\"default\";r=0;t=1");
    assert_eq!(json(limited).await["error"], "rate_limited");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        c.get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_rules_limit_their_prefix_only() {
    let (_redis, _up, gw) = stack(|c| {
        rate_limit(c, 100, HumanDuration::secs(60));
        c.rate_limit.rules = vec![toml::from_str::<RateRule>(
            "name = \"login\"\nprefix = \"/public/login\"\nmethods = [\"POST\"]\nrequests = 2\nper = \"1m\"",
        )
        .expect("rule")];
    })
    .await;
    let c = client();
    let mut codes = Vec::new();
    for _ in 0..3 {
        codes.push(
            c.post(gw.url("/public/login"))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    assert_eq!(codes, vec![200, 200, 429]);
    // Segment boundaries and methods: neither of these is under the rule.
    for r in [
        c.post(gw.url("/public/login-help")),
        c.get(gw.url("/public/login")),
    ] {
        assert_eq!(r.send().await.expect("request").status(), 200);
    }
    let r = c
        .get(gw.url("/public/other"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_distinct_client_ips_under_their_limit_never_see_429() {
    let (_redis, _up, gw) = stack(|c| rate_limit(c, 5, HumanDuration::secs(60))).await;
    let mut tasks = Vec::new();
    for i in 1..=100u8 {
        let url = gw.url("/public/x");
        tasks.push(tokio::spawn(async move {
            let ip = format!("127.0.1.{i}");
            let c = client_from(Some(&ip));
            let mut codes = Vec::new();
            for _ in 0..5 {
                codes.push(c.get(&url).send().await.expect("request").status().as_u16());
            }
            (ip, codes)
        }));
    }
    for t in tasks {
        let (ip, codes) = t.await.expect("task");
        assert!(codes.iter().all(|c| *c == 200), "{ip}: {codes:?}");
    }
    // ...and the limit is real: the same client's sixth request is refused.
    let c = client_from(Some("127.0.1.1"));
    assert_eq!(
        c.get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status(),
        429
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let mut trusting = gateway_config(&redis.url(), &[up.addr()]);
    trusting.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    let gw = Gateway::start(trusting).await;
    let xff_seen = |source: &'static str| {
        let url = gw.url("/public/x");
        async move {
            let r = client_from(Some(source))
                .get(url)
                .header("x-forwarded-for", "6.6.6.6, 203.0.113.7")
                .send()
                .await
                .expect("request");
            json(r).await["headers"]["x-forwarded-for"].clone()
        }
    };
    assert_eq!(
        xff_seen("127.0.0.1").await,
        serde_json::json!(["203.0.113.7"])
    );
    assert_eq!(
        xff_seen("127.0.0.3").await,
        serde_json::json!(["127.0.0.3"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unrouted_paths_get_404_json_and_traversal_gets_400() {
    let (_redis, _up, gw) = stack(|_| {}).await;
    let r = client()
        .get(gw.url("/nowhere"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await, serde_json::json!({"error": "not_found"}));
    for path in [
        "/public/%2e%2e/app/x",
        "/public/../app/x",
        "/public/..%2fapp/x",
    ] {
        let raw = raw_request(
            gw.port,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(raw.starts_with("HTTP/1.1 400"), "{path}: {raw}");
        assert!(raw.contains("{\"error\":\"bad_request\""), "{path}: {raw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_down_gives_502_and_too_slow_gives_504() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    let mut dead_upstream = upstream("dead", &[dead]);
    dead_upstream.connect_timeout = HumanDuration::millis(300);
    dead_upstream.read_timeout = HumanDuration::secs(30);
    dead_upstream.health_check_interval = HumanDuration::secs(5);
    cfg.upstreams.push(dead_upstream);
    cfg.routes.push(route("/dead/", "dead", AuthMode::Public));
    let gw = Gateway::start_unready(cfg).await;
    let r = client()
        .get(gw.url("/dead/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 502);
    assert_eq!(json(r).await, serde_json::json!({"error": "bad_gateway"}));
    let r = client()
        .get(gw.url("/public/slow/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 504);
    assert_eq!(
        json(r).await,
        serde_json::json!({"error": "gateway_timeout"})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_spread_round_robin_across_servers() {
    let redis = Redis::start().await;
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let gw = Gateway::start(gateway_config(&redis.url(), &[a.addr(), b.addr()])).await;
    let mut seen = std::collections::HashMap::new();
    for _ in 0..10 {
        let r = client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request");
        *seen
            .entry(json(r).await["server"].as_str().unwrap_or("?").to_owned())
            .or_insert(0) += 1;
    }
    assert_eq!(seen.get("a"), Some(&5), "{seen:?}");
    assert_eq!(seen.get("b"), Some(&5), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_fails_closed_and_recovers_without_a_restart() {
    let (mut redis, _up, gw) = stack(|_| {}).await;
    let token = create_session(&redis.store().await, "u6", None, "127.0.0.1", UA).await;
    let protected = || get_with_session(gw.url("/app/x"), token.expose());
    assert_eq!(protected().await.status(), 200);
    let health = client()
        .get(gw.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 200);
    assert_eq!(json(health).await["status"], "ok");

    redis.kill();
    // A request in the moment before the tracking connection's close is noticed may still
    // be served from the session cache; from then on every one fails closed.
    let r = poll(protected, |r| r.status() == 503).await;
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "session_store_unavailable");
    assert_eq!(
        client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status(),
        200,
        "public routes keep working"
    );
    let health = client()
        .get(gw.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(health.status(), 503);
    assert_eq!(json(health).await["status"], "unavailable");

    redis.restart().await;
    // The restarted Redis is empty: sign in again, then the gateway must serve it by itself.
    let token2 = create_session(&redis.store().await, "u6", None, "127.0.0.1", UA).await;
    let last = poll(
        || get_with_session(gw.url("/app/x"), token2.expose()),
        |r| r.status() == 200,
    )
    .await;
    assert_eq!(
        last.status(),
        200,
        "gateway did not recover after Redis came back"
    );
    assert_eq!(
        client()
            .get(gw.url("/health"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_never_up_at_start_still_serves_public_routes() {
    let up = Upstream::start("a").await;
    let url = format!("redis://127.0.0.1:{}", free_port());
    let gw = Gateway::start_unready(gateway_config(&url, &[up.addr()])).await;
    assert_eq!(
        client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    let r = client()
        .get(gw.url("/app/x"))
        .header(
            "cookie",
            format!(
                "sid={}",
                authflow_shared::token::SessionToken::for_user("nobody").expose()
            ),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_redis_gives_503_within_the_timeout_not_a_hang() {
    use fred::interfaces::ClientLike;
    let (redis, _up, gw) = stack(|_| {}).await;
    let token = create_session(&redis.store().await, "u7", None, "127.0.0.1", UA).await;
    let hang = redis.client().await;
    // Redis is single-threaded: DEBUG SLEEP blocks every client for 3 s.
    let sleeper = tokio::spawn(async move {
        let r: Result<fred::types::Value, _> =
            hang.custom(fred::cmd!("DEBUG"), vec!["SLEEP", "3"]).await;
        r.expect("DEBUG SLEEP");
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let r = get_with_session(gw.url("/app/x"), token.expose()).await;
    assert_eq!(r.status(), 503);
    // Not a speed check: the configured timeout is 100 ms, and the point is that the answer
    // does not wait for Redis to wake up (3 s).
    assert!(
        started.elapsed() < Duration::from_millis(2500),
        "gateway waited for Redis"
    );
    sleeper.await.expect("sleeper");
    let last = poll(
        || get_with_session(gw.url("/app/x"), token.expose()),
        |r| r.status() == 200,
    )
    .await;
    assert_eq!(last.status(), 200, "no recovery after Redis woke up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_on_their_own_listener() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let metrics_port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let gw = Gateway::start(cfg).await;
    assert_eq!(
        client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(gw.url("/app/x"))
            .send()
            .await
            .expect("request")
            .status(),
        401
    );
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    // Every series exists from the start; the counts land when each request is logged, just
    // after its response was sent.
    let wanted = [
        "authflow_gateway_requests_total{decision=\"forwarded\"} 1",
        "authflow_gateway_requests_total{decision=\"unauthenticated\"} 1",
        "authflow_gateway_session_checks_total{outcome=\"missing\"} 1",
        "authflow_gateway_session_checks_total{outcome=\"fingerprint_mismatch\"} 0",
        "authflow_gateway_session_checks_total{outcome=\"store_error\"} 0",
    ];
    let text = scrape_until(&url, &wanted).await;
    assert_metric_lines(&text, &wanted);
    assert!(
        text.contains("authflow_gateway_session_lookup_seconds"),
        "{text}"
    );
    assert_eq!(
        client()
            .get(gw.url("/metrics"))
            .send()
            .await
            .expect("request")
            .status(),
        404,
        "metrics must not be public"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_serves_https_and_says_so_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = self_signed(dir.path());
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let tls_port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.tls = Some(TlsConfig {
        listen: format!("127.0.0.1:{tls_port}"),
        cert: cert.display().to_string(),
        key: key.display().to_string(),
        http2: true,
    });
    let gw = Gateway::start(cfg).await;
    assert!(wait_for_port(tls_port, Duration::from_secs(10)).await);
    let https = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client");
    let r = https
        .get(format!("https://localhost:{tls_port}/public/x"))
        .send()
        .await
        .expect("https request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await["headers"]["x-forwarded-proto"],
        serde_json::json!(["https"])
    );
    let r = client()
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        json(r).await["headers"]["x-forwarded-proto"],
        serde_json::json!(["http"])
    );
}
