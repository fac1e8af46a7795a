//! Rate-limit rules shared across instances (`scope = "global"`): two real gateway
//! processes on one real Redis hold one budget; with Redis gone each falls back to its own
//! local counters (fail open for limiting) and goes back to the shared budget by itself.

mod support;

use authflow_gateway::config::RateRule;
use support::*;

/// 20 per minute, all at once, shared through Redis.
fn shared_rule() -> RateRule {
    toml::from_str(
        "name = \"shared\"\nprefix = \"/public\"\nrequests = 20\nper = \"1m\"\nscope = \"global\"",
    )
    .expect("rule")
}

/// How many of `n` requests to each gateway in turn got through (the rest must be 429).
async fn allowed(gateways: &[&Gateway], n: usize) -> usize {
    let c = client_from(Some("127.0.0.9"));
    let mut ok = 0;
    for i in 0..n {
        let gw = gateways[i % gateways.len()];
        let status = c
            .get(gw.url("/public/x"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16();
        assert!(status == 200 || status == 429, "status {status}");
        ok += usize::from(status == 200);
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_hold_one_shared_limit_and_fall_back_to_local_without_redis() {
    let mut redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let metrics_port = free_port();
    let config = |metrics: Option<u16>| {
        let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
        cfg.rate_limit.requests = 100_000;
        cfg.rate_limit.rules = vec![shared_rule()];
        cfg.metrics_listen = metrics.map(|p| format!("127.0.0.1:{p}"));
        cfg
    };
    let a = Gateway::start(config(Some(metrics_port))).await;
    let b = Gateway::start(config(None)).await;
    let both = [&a, &b];
    // 60 requests, alternating: the shared budget of 20 holds (within 10%), not 2 x 20.
    let n = allowed(&both, 60).await;
    assert!(
        (18..=22).contains(&n),
        "{n} of 60 allowed with a shared budget of 20"
    );

    // Redis gone: limiting goes on locally (no 503, no unlimited traffic): each gateway has
    // its own budget of 20 now.
    // (Each gateway remembers for one emission interval, 3 s, that this client was refused:
    // wait that out so the fallback is what decides.)
    redis.kill();
    tokio::time::sleep(std::time::Duration::from_millis(3_500)).await;
    let n = allowed(&both, 60).await;
    assert!(
        (36..=44).contains(&n),
        "{n} of 60 allowed on local fallback"
    );
    let metrics = scrape_until(&format!("http://127.0.0.1:{metrics_port}/metrics"), &[]).await;
    assert!(
        metrics.lines().any(|l| l
            .starts_with("authflow_gateway_rate_limit_fallbacks_total{rule=\"shared\"}")
            && !l.ends_with(" 0")),
        "{metrics}"
    );

    // Redis back (empty): the shared budget is used again by itself.
    redis.restart().await;
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let n = allowed(&both, 60).await;
    assert!(
        (18..=22).contains(&n),
        "{n} of 60 allowed after Redis came back"
    );
}
