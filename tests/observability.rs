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
