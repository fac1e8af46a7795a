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

/// The `RateLimit-Policy` and `RateLimit` of a GET of `path`, with its status.
async fn quota_headers(gw: &Gateway, path: &str) -> (u16, Option<String>, Option<String>) {
    let resp = client_from(Some("127.0.0.9"))
        .get(gw.url(path))
        .send()
        .await
        .expect("request");
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    (
        resp.status().as_u16(),
        h("ratelimit-policy"),
        h("ratelimit"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_responses_state_the_tightest_quota_when_asked_to() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let rule = |scope: &str| -> RateRule {
        toml::from_str(&format!(
            "name = \"api-{scope}\"\nprefix = \"/public/{scope}\"\nrequests = 3\nper = \"1m\"\nscope = \"{scope}\""
        ))
        .expect("rule")
    };
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.rate_limit.rules = vec![rule("local"), rule("global")];
    let quiet = Gateway::start(cfg.clone()).await;
    cfg.rate_limit.headers = authflow_gateway::config::RateHeaders::Always;
    let gw = Gateway::start(cfg).await;

    // By default only a 429 carries them.
    let (status, policy, state) = quota_headers(&quiet, "/public/local/x").await;
    assert_eq!((status, policy, state), (200, None, None));

    for scope in ["local", "global"] {
        let path = format!("/public/{scope}/x");
        for left in [2, 1, 0] {
            let (status, policy, state) = quota_headers(&gw, &path).await;
            assert_eq!(status, 200);
            assert_eq!(
                policy.as_deref(),
                Some(format!("\"api-{scope}\";q=3;w=60").as_str())
            );
            let state = state.expect("RateLimit");
            let prefix = format!("\"api-{scope}\";r={left};t=");
            assert!(state.starts_with(&prefix), "{state} after {prefix}");
            let t: u64 = state[prefix.len()..].parse().expect("t");
            assert!(
                (1..=60).contains(&t),
                "{state}: full again within the window"
            );
        }
        let (status, _, state) = quota_headers(&gw, &path).await;
        assert_eq!(status, 429);
        assert!(state.is_some_and(|s| s.contains(";r=0;")));
    }
    // Where only the default rule (100/s) applies, it is the one stated.
    let (_, policy, _) = quota_headers(&gw, "/public/other").await;
    assert_eq!(policy.as_deref(), Some("\"default\";q=100;w=1"));
}
