//! Live reload: the config file changes under a running gateway and `authflow reload`
//! (SIGHUP) puts the new rate limit in force without a restart and without a failed request;
//! a bad file is refused and the old config stays.

mod support;

use authflow_gateway::GatewayConfig;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use support::*;

fn with_rule(cfg: &mut GatewayConfig, requests: u64) {
    cfg.rate_limit.requests = 1_000_000;
    cfg.rate_limit.rules = vec![toml::from_str(&format!(
        "name = \"probe\"\nprefix = \"/public/limited\"\nrequests = {requests}\nper = \"1m\""
    ))
    .expect("rule")];
}

/// Status codes of `n` quick requests to `path` from one client.
async fn statuses(gw: &Gateway, path: &str, n: usize) -> Vec<u16> {
    let c = client_from(Some("127.0.0.9"));
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(
            c.get(gw.url(path))
                .send()
                .await
                .expect("request")
                .status()
                .as_u16(),
        );
    }
    out
}

fn reload(gw: &Gateway) {
    let out = Command::new(authflow_bin())
        .args(["reload", "--pid", &gw.pid().to_string()])
        .output()
        .expect("authflow reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_limit_takes_effect_without_restart_and_a_bad_file_changes_nothing() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let metrics_port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    with_rule(&mut cfg, 1000);
    let gw = Gateway::start(cfg).await;
    assert!(statuses(&gw, "/public/limited", 5)
        .await
        .iter()
        .all(|s| *s == 200));

    // A steady stream elsewhere through every reload: not one request may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (url, stop, failed) = (gw.url("/public/other"), stop.clone(), failed.clone());
        tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };

    // Same process, new file: the rule allows 2 a minute now (a changed rule starts afresh).
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    let mut next: GatewayConfig = toml::from_str(&text).expect("config");
    with_rule(&mut next, 2);
    std::fs::write(&gw.config_path, toml::to_string(&next).expect("toml")).expect("write");
    let pid = gw.pid();
    reload(&gw);
    let limited = poll(
        || async { statuses(&gw, "/public/limited", 3).await.contains(&429) },
        |l| *l,
    )
    .await;
    assert!(limited, "the new limit never took effect");
    assert_eq!(gw.pid(), pid);

    // A bad file: refused, counted, and the limit of 2 stays (still limited).
    std::fs::write(
        &gw.config_path,
        text.replace("[rate_limit]", "[rate_limit]\nestimator_slots = 5"),
    )
    .expect("write");
    reload(&gw);
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let wanted = [
        "authflow_gateway_config_reloads_total{result=\"ok\"} 1",
        "authflow_gateway_config_reloads_total{result=\"error\"} 1",
    ];
    assert_metric_lines(&scrape_until(&url, &wanted).await, &wanted);
    assert_eq!(
        statuses(&gw, "/public/limited", 1).await,
        [429],
        "the old config did not stay"
    );

    stop.store(true, Ordering::Relaxed);
    stream.await.expect("stream");
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during reloads"
    );
}
