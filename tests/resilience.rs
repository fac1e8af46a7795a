//! The gateway on a bad day for its upstreams: a server that starts after the gateway, a
//! lone server that failed one health check, a server killed while requests stream through.
//! Nothing that could have been served may get a 502.

mod support;

use authflow_shared::config::HumanDuration;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_starts_after_the_gateway_is_used_at_once() {
    let redis = Redis::start().await;
    let port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[format!("127.0.0.1:{port}")]);
    // The production default: the next active check is seconds away.
    cfg.upstreams[0].health_check_interval = HumanDuration::secs(5);
    // Not ready by definition (its only upstream is absent): wait for the port only.
    let gw = Gateway::start_unready(cfg).await;
    // Let the first health check find nobody there.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _up = Upstream::start_on("late", port).await;
    let r = client()
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        200,
        "the first request after the server listens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_server_that_failed_a_check_is_not_blacked_out() {
    let redis = Redis::start().await;
    let up = Upstream::start("lone").await;
    let port = up.port;
    let gw = Gateway::start(gateway_config(&redis.url(), &[up.addr()])).await;
    assert_eq!(
        client()
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status(),
        200
    );
    up.kill();
    drop(up);
    // Checks run every second in the test config: at least one fails.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let _up = Upstream::start_on("lone", port).await;
    let r = client()
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        200,
        "a failed check must not take out the only server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_servers_loses_no_idempotent_request() {
    let redis = Redis::start().await;
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let mut cfg = gateway_config(&redis.url(), &[a.addr(), b.addr()]);
    cfg.rate_limit.requests = 10_000;
    let gw = Gateway::start(cfg).await;
    let c = client_from(Some("127.0.0.5"));
    let mut failures = Vec::new();
    let mut served_by_b_after_kill = 0;
    for i in 0..120 {
        if i == 40 {
            b.kill();
        }
        let r = c.get(gw.url(&format!("/public/{i}"))).send().await;
        match r {
            Ok(r) if r.status() == 200 => {
                let body = json(r).await;
                if i > 40 && body["server"] == "b" {
                    served_by_b_after_kill += 1;
                }
            }
            Ok(r) => failures.push((i, r.status().as_u16())),
            Err(e) => failures.push((i, e.status().map_or(0, |s| s.as_u16()))),
        }
    }
    assert!(failures.is_empty(), "lost requests: {failures:?}");
    assert_eq!(served_by_b_after_kill, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_failing_on_live_traffic_is_taken_out_for_a_while() {
    let redis = Redis::start().await;
    let a = Upstream::start("a").await;
    let dead = format!("127.0.0.1:{}", free_port());
    let mut cfg = gateway_config(&redis.url(), &[a.addr(), dead]);
    // Active checks far apart, no retries: only passive health can spare the dead server.
    cfg.upstreams[0].health_check_interval = HumanDuration::secs(60);
    cfg.upstreams[0].retries = 0;
    cfg.upstreams[0].max_fails = 1;
    cfg.upstreams[0].fail_timeout = HumanDuration::secs(30);
    let gw = Gateway::start_unready(cfg).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let c = client_from(Some("127.0.0.6"));
    let mut codes = Vec::new();
    for i in 0..10 {
        codes.push(
            c.get(gw.url(&format!("/public/{i}")))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    // At most the first request can meet the dead server; after it, passive health steers
    // everything to the live one.
    assert!(codes.iter().skip(1).all(|c| *c == 200), "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_ignores_redis_and_readiness_does_not() {
    let mut redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let private = free_port();
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
    let gw = Gateway::start(cfg).await;
    let status = |path: &'static str| {
        let url = gw.url(path);
        async move {
            client()
                .get(url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        (status("/livez").await, status("/readyz").await),
        (200, 200)
    );
    redis.kill();
    assert_eq!(
        status("/livez").await,
        200,
        "a Redis outage must not fail liveness"
    );
    assert_eq!(status("/readyz").await, 503);
    assert_eq!(status("/health").await, 503, "/health is /readyz");
    let details: serde_json::Value = client()
        .get(format!("http://127.0.0.1:{private}/readyz"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(details["redis"], "down");
    assert_eq!(details["upstreams"]["app"]["healthy"], 1);
    assert_eq!(status("/public/x").await, 200, "public routes keep working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_health_checks_expect_their_status_and_panic_mode_still_serves() {
    let redis = Redis::start().await;
    let up = Upstream::start("a").await;
    let private = free_port();
    let mut cfg = gateway_config(&redis.url(), &[up.addr()]);
    cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
    cfg.upstreams[0].health_check_path = Some("/healthz".into());
    // The echo upstream answers 200; expecting 204 makes every check fail.
    cfg.upstreams[0].health_check_status = 204;
    let gw = Gateway::start_unready(cfg).await;
    let details = poll(
        || async {
            client()
                .get(format!("http://127.0.0.1:{private}/readyz"))
                .send()
                .await
                .expect("request")
                .json::<serde_json::Value>()
                .await
                .expect("json")
        },
        |d| d["upstreams"]["app"]["healthy"] == 0,
    )
    .await;
    assert_eq!(details["upstreams"]["app"]["healthy"], 0, "{details}");
    let r = client()
        .get(gw.url("/public/x"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        r.status(),
        200,
        "an upstream with no healthy server is still tried"
    );
}
