//! Distributed tracing: the W3C trace context is kept from trusted callers only, passed to
//! the upstream and the auth service, and written beside the request id in both services'
//! logs; with `[tracing] otlp_endpoint`, both services export their spans over OTLP/HTTP to
//! a receiver started here, in the caller's trace.

mod support;

use authflow_shared::config::LogFormat;
use std::time::Duration;
use support::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// The address the gateway trusts as a proxy in front of it.
const PROXY: &str = "127.0.0.2";

fn traceparent(trace: &str) -> String {
    format!("00-{trace}-{CALLER_SPAN}-01")
}

/// The (trace id, parent span id) of a `traceparent` value.
fn ids(tp: &str) -> (String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[0], "00");
    assert_eq!(parts[1].len(), 32);
    assert_eq!(parts[2].len(), 16);
    (parts[1].to_owned(), parts[2].to_owned())
}

/// What the echo upstream received for a GET of `path` from `source` with `headers`.
async fn upstream_saw(
    gw: &Gateway,
    source: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> serde_json::Value {
    let mut req = client_from(Some(source)).get(gw.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    assert_eq!(resp.status(), 200);
    json(resp).await["headers"].clone()
}

fn first(headers: &serde_json::Value, name: &str) -> Option<String> {
    headers[name][0].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_is_kept_from_trusted_callers_only_and_joins_both_logs() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut acfg = auth_config(&redis.url());
    acfg.log_format = LogFormat::Json;
    let auth = AuthService::start_logging(acfg, "info").await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    cfg.trusted_proxies = vec![format!("{PROXY}/32").parse().expect("net")];
    cfg.log_format = LogFormat::Json;
    let gw = Gateway::start_logging(cfg, "info").await;
    let tp = traceparent(TRACE);
    let sent = [
        ("traceparent", tp.as_str()),
        ("tracestate", "vendor=opaque"),
        ("x-request-id", "trusted-1"),
    ];

    // From the trusted proxy: same trace, the gateway's own span as parent, state kept.
    let seen = upstream_saw(&gw, PROXY, "/public/x", &sent).await;
    let (trace, parent) = ids(&first(&seen, "traceparent").expect("traceparent upstream"));
    assert_eq!(trace, TRACE);
    assert_ne!(parent, CALLER_SPAN, "the gateway is a hop of its own");
    assert_eq!(first(&seen, "tracestate").as_deref(), Some("vendor=opaque"));
    assert_eq!(seen["traceparent"].as_array().map(Vec::len), Some(1));

    // From anyone else: a new trace, and their state is not passed on.
    let seen = upstream_saw(&gw, "127.0.0.1", "/public/x", &sent).await;
    let (trace, _) = ids(&first(&seen, "traceparent").expect("traceparent upstream"));
    assert_ne!(trace, TRACE, "an untrusted client chose the trace");
    assert_eq!(first(&seen, "tracestate"), None);

    // An invalid header from the trusted proxy: a new valid trace, no error.
    let bad = [("traceparent", "00-zz-yy-01")];
    let seen = upstream_saw(&gw, PROXY, "/public/x", &bad).await;
    let (trace, _) = ids(&first(&seen, "traceparent").expect("traceparent upstream"));
    assert_ne!(trace, "0".repeat(32));

    // Through the gateway to the auth service: its log line of the request carries the
    // same trace and request id as the gateway's access-log line.
    let trace2 = "0af7651916cd43dd8448eb211c80319c";
    let tp2 = traceparent(trace2);
    let resp = client_from(Some(PROXY))
        .post(gw.url("/api/v1/simple_auth/signin"))
        .header("traceparent", &tp2)
        .header("x-request-id", "signin-1")
        .json(&serde_json::json!({"email": "nobody@example.com", "password": "wrong-password-1"}))
        .send()
        .await
        .expect("signin");
    assert!(resp.status().is_client_error(), "{}", resp.status());
    let auth_log = auth.log.clone().expect("auth log");
    let gw_log = gw.log.clone().expect("gateway log");
    let joined = poll(
        || async {
            let auth_line = log_lines(&auth_log)
                .into_iter()
                .find(|l| l["span"]["trace_id"] == trace2);
            let access = log_lines(&gw_log)
                .into_iter()
                .find(|l| l["target"] == "access" && l["trace_id"] == trace2);
            (auth_line, access)
        },
        |(a, g)| a.is_some() && g.is_some(),
    )
    .await;
    let (Some(auth_line), Some(access)) = joined else {
        panic!(
            "no log line of trace {trace2}:\n{}\n{}",
            std::fs::read_to_string(&auth_log).unwrap_or_default(),
            std::fs::read_to_string(&gw_log).unwrap_or_default()
        );
    };
    assert_eq!(access["request_id"], "signin-1");
    assert_eq!(auth_line["span"]["request_id"], "signin-1");
    let first_access = log_lines(&gw_log)
        .into_iter()
        .find(|l| l["target"] == "access" && l["request_id"] == "trusted-1")
        .expect("access line of the first request");
    assert_eq!(first_access["trace_id"], TRACE);
}

/// Waits until `receiver` holds the spans of `trace` named in `wanted` (service, name): the
/// batch exporters send every few seconds.
async fn spans_of(
    receiver: &OtlpReceiver,
    trace: &str,
    wanted: &[(&str, &str)],
) -> Vec<otlp::Span> {
    for _ in 0..150 {
        let spans = receiver.trace(trace);
        let all_there = wanted
            .iter()
            .all(|(svc, name)| spans.iter().any(|s| s.service == *svc && s.name == *name));
        if all_there {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    receiver.trace(trace)
}

fn named<'a>(spans: &'a [otlp::Span], service: &str, name: &str) -> &'a otlp::Span {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} of {service} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_in_the_callers_trace() {
    let receiver = OtlpReceiver::start().await;
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut acfg = auth_config(&redis.url());
    acfg.tracing.otlp_endpoint = Some(receiver.endpoint());
    let auth = AuthService::start(acfg, &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    cfg.trusted_proxies = vec![format!("{PROXY}/32").parse().expect("net")];
    cfg.tracing.otlp_endpoint = Some(receiver.endpoint());
    let gw = Gateway::start(cfg).await;

    // A protected request: rate limit, session check and upstream call, each a span.
    let token = create_session(&redis.store().await, "u-t", None, PROXY, UA).await;
    let resp = client_from(Some(PROXY))
        .get(gw.url("/app/x"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", token.expose()))
        .header("traceparent", traceparent(TRACE))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let seen = json(resp).await["headers"].clone();
    let (_, upstream_parent) = ids(&first(&seen, "traceparent").expect("traceparent"));

    // A sign-in through the gateway: the auth service's span joins the same trace.
    let trace2 = "0af7651916cd43dd8448eb211c80319c";
    let resp = client_from(Some(PROXY))
        .post(gw.url("/api/v1/simple_auth/signin"))
        .header("traceparent", traceparent(trace2))
        .json(&serde_json::json!({"email": "nobody@example.com", "password": "wrong-password-1"}))
        .send()
        .await
        .expect("signin");
    assert!(resp.status().is_client_error());

    const GW: &str = "authflow-gateway";
    let wanted = [
        (GW, "GET gateway"),
        (GW, "rate limit"),
        (GW, "session check"),
        (GW, "upstream app"),
    ];
    let spans = spans_of(&receiver, TRACE, &wanted).await;
    let request = named(&spans, "authflow-gateway", "GET gateway");
    assert_eq!(
        request.parent_span_id, CALLER_SPAN,
        "continues the caller's span"
    );
    for step in ["rate limit", "session check", "upstream app"] {
        let s = named(&spans, "authflow-gateway", step);
        assert_eq!(
            s.parent_span_id, request.span_id,
            "{step} is a step of the request"
        );
    }
    let call = named(&spans, "authflow-gateway", "upstream app");
    assert_eq!(
        call.span_id, upstream_parent,
        "the upstream was told its caller's span"
    );

    let wanted = [
        (GW, "upstream auth"),
        ("authflow-auth", "POST /api/v1/simple_auth/signin"),
    ];
    let spans = spans_of(&receiver, trace2, &wanted).await;
    let call = named(&spans, "authflow-gateway", "upstream auth");
    let served = named(&spans, "authflow-auth", "POST /api/v1/simple_auth/signin");
    assert_eq!(
        served.parent_span_id, call.span_id,
        "the auth span is the call's child"
    );
}

/// Kills the process named in a pid file when dropped.
struct PidFileGuard(std::path::PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_from_a_daemonized_gateway() {
    // `--daemon` forks after start (the systemd unit runs it so): the exporter must work in
    // the process that serves, not only in the one that started.
    let receiver = OtlpReceiver::start().await;
    let app = Upstream::start("app").await;
    let redis = Redis::start().await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    let port = free_port();
    cfg.listen = format!("127.0.0.1:{port}");
    cfg.tracing.otlp_endpoint = Some(receiver.endpoint());
    cfg.tracing.accept_traceparent = authflow_shared::config::AcceptTraceparent::All;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, toml::to_string(&cfg).expect("toml")).expect("write");
    let pid_file = dir.path().join("gateway.pid");
    let status = std::process::Command::new(authflow_bin())
        .arg("gateway")
        .arg("--config")
        .arg(&config)
        .arg("--daemon")
        .arg("--pid-file")
        .arg(&pid_file)
        .arg("--upgrade-sock")
        .arg(dir.path().join("upgrade.sock"))
        .env("RUST_LOG", "error")
        .stderr(std::process::Stdio::null())
        .status()
        .expect("authflow gateway --daemon");
    assert!(
        status.success(),
        "the starting process exits once it has forked"
    );
    let _guard = PidFileGuard(pid_file);
    assert!(
        wait_for_port(port, Duration::from_secs(20)).await,
        "daemon never listened"
    );

    let trace = "5bf92f3577b34da6a3ce929d0e0e4737";
    let resp = client()
        .get(format!("http://127.0.0.1:{port}/public/x"))
        .header("traceparent", traceparent(trace))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let spans = spans_of(&receiver, trace, &[("authflow-gateway", "GET gateway")]).await;
    let request = named(&spans, "authflow-gateway", "GET gateway");
    assert_eq!(request.parent_span_id, CALLER_SPAN);
}
