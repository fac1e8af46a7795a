//! The Grafana dashboard and the Prometheus alert rules in `deploy/` may name only metrics
//! that the binaries export: both services are started for real and scraped, and every
//! `authflow_*` name in those files must be one of their metric families.

mod support;

use std::collections::BTreeSet;
use support::*;

/// Metric families in a Prometheus text scrape (`# TYPE <name> <kind>`), with the series
/// names a histogram adds.
fn families(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            out.insert(name.to_owned());
            if kind == "histogram" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    out
}

/// Every `authflow_...` identifier in `text`.
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("authflow_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_name_only_exported_metrics() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let (gw_metrics, auth_metrics) = (free_port(), free_port());
    let mut acfg = auth_config(&redis.url());
    acfg.metrics_listen = Some(format!("127.0.0.1:{auth_metrics}"));
    let auth = AuthService::start(acfg, &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    cfg.metrics_listen = Some(format!("127.0.0.1:{gw_metrics}"));
    let _gw = Gateway::start(cfg).await;
    let mut exported = BTreeSet::new();
    for port in [gw_metrics, auth_metrics] {
        let text = scrape_until(&format!("http://127.0.0.1:{port}/metrics"), &[]).await;
        exported.extend(families(&text));
    }
    assert!(exported.contains("authflow_build_info"), "{exported:?}");
    for file in [
        "deploy/grafana/authflow.json",
        "deploy/prometheus/alerts.yml",
    ] {
        let text = std::fs::read_to_string(file).expect(file);
        let named = names_in(&text);
        assert!(named.len() >= 8, "{file} names only {named:?}");
        let unknown: Vec<_> = named.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics nobody exports: {unknown:?}"
        );
    }
    // Both files parse as what they claim to be.
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("deploy/grafana/authflow.json").expect("dashboard"),
    )
    .expect("dashboard JSON");
    assert!(dash["panels"].as_array().is_some_and(|p| !p.is_empty()));
    let alerts = yaml_rust2::YamlLoader::load_from_str(
        &std::fs::read_to_string("deploy/prometheus/alerts.yml").expect("alerts"),
    )
    .expect("alerts YAML");
    assert!(alerts[0]["groups"][0]["rules"]
        .as_vec()
        .is_some_and(|r| r.len() >= 5));
}

/// The value of the series `name{labels}` in a scrape (labels as Prometheus prints them).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_upstream_and_redis_series_follow_real_requests() {
    let mut redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let metrics_port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let gw = Gateway::start(cfg).await;
    let c = client();
    for _ in 0..3 {
        let r = c.get(gw.url("/public/x")).send().await.expect("get");
        assert_eq!(r.status(), 200);
    }
    let r = c
        .post(gw.url("/public/x"))
        .body("x")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    let r = c.get(gw.url("/nowhere")).send().await.expect("404");
    assert_eq!(r.status(), 404);
    let r = c
        .request(
            reqwest::Method::from_bytes(b"PROPFIND").expect("method"),
            gw.url("/public/x"),
        )
        .send()
        .await
        .expect("propfind");
    assert_eq!(r.status(), 200);
    let token = create_session(&redis.store().await, "u-m", None, "127.0.0.1", UA).await;
    assert_eq!(
        get_with_session(gw.url("/app/x"), token.expose())
            .await
            .status(),
        200
    );
    assert_eq!(get_with_session(gw.url("/app/x"), "x").await.status(), 401);

    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let wanted = [
        "authflow_gateway_http_requests_total{method=\"GET\",route=\"/public/\",status=\"2xx\"} 3",
        "authflow_gateway_http_requests_total{method=\"POST\",route=\"/public/\",status=\"2xx\"} 1",
        "authflow_gateway_http_requests_total{method=\"other\",route=\"/public/\",status=\"2xx\"} 1",
        "authflow_gateway_http_requests_total{method=\"GET\",route=\"none\",status=\"4xx\"} 1",
        "authflow_gateway_http_requests_total{method=\"GET\",route=\"/app/\",status=\"2xx\"} 1",
        "authflow_gateway_http_requests_total{method=\"GET\",route=\"/app/\",status=\"4xx\"} 1",
        "authflow_gateway_request_duration_seconds_count{route=\"/public/\"} 5",
        "authflow_gateway_upstream_response_seconds_count{upstream=\"app\"} 6",
    ];
    let text = scrape_until(&url, &wanted).await;
    assert_metric_lines(&text, &wanted);
    let up = format!(
        "authflow_gateway_upstream_server_up{{server=\"{}\",upstream=\"app\"}} 1",
        app.addr()
    );
    assert_metric_lines(&text, &[&up]);
    // The session was read from Redis once (then cached), and Redis answered every operation.
    let lookups = value(
        &text,
        "authflow_redis_operation_duration_seconds_count{operation=\"session_lookup\"}",
    );
    assert!(lookups.is_some_and(|n| n >= 1.0), "{text}");
    for kind in ["error", "timeout"] {
        let series = format!(
            "authflow_redis_operation_errors_total{{kind=\"{kind}\",operation=\"session_lookup\"}}"
        );
        assert_eq!(value(&text, &series), Some(0.0), "{series}");
    }

    // With Redis gone, the failures are counted by kind.
    redis.kill();
    let other = create_token_like();
    assert_eq!(
        get_with_session(gw.url("/app/y"), &other).await.status(),
        503,
        "fail closed"
    );
    let text = scrape_until(&url, &[]).await;
    let failures: f64 = ["error", "timeout"]
        .iter()
        .filter_map(|kind| {
            value(
                &text,
                &format!(
                    "authflow_redis_operation_errors_total{{kind=\"{kind}\",operation=\"session_lookup\"}}"
                ),
            )
        })
        .sum();
    assert!(failures >= 1.0, "{text}");
    let down =
        "authflow_gateway_http_requests_total{method=\"GET\",route=\"/app/\",status=\"5xx\"} 1";
    assert_metric_lines(&text, &[down]);
}

/// A well-formed token of a session that does not exist.
fn create_token_like() -> String {
    authflow_shared::token::SessionToken::for_user("nobody")
        .expose()
        .to_owned()
}
