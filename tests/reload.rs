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

/// GETs of one URL, one after another, until stopped: how many did not get a 200.
struct RequestStream {
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RequestStream {
    fn start(url: String) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(AtomicUsize::new(0));
        let task = {
            let (stop, failed) = (stop.clone(), failed.clone());
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
        RequestStream { stop, failed, task }
    }

    /// Stops it; the number of failed requests.
    async fn stop(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("stream");
        self.failed.load(Ordering::Relaxed)
    }
}

fn reload(gw: &Gateway) {
    signal_reload(gw.pid());
}

/// `authflow reload --pid <pid>`, which must succeed.
fn signal_reload(pid: u32) {
    let out = Command::new(authflow_bin())
        .args(["reload", "--pid", &pid.to_string()])
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
    let stream = RequestStream::start(gw.url("/public/other"));

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

    assert_eq!(stream.stop().await, 0, "requests failed during reloads");
}

/// Which echo server answered a GET of `path` (or the status, when it was not a 200).
async fn served_by(gw: &Gateway, path: &str) -> String {
    let resp = client().get(gw.url(path)).send().await.expect("request");
    if resp.status() != 200 {
        return resp.status().as_u16().to_string();
    }
    json(resp).await["server"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Writes `cfg` over the running gateway's file.
fn rewrite(gw: &Gateway, edit: impl FnOnce(&mut GatewayConfig)) {
    let text = std::fs::read_to_string(&gw.config_path).expect("config");
    let mut cfg: GatewayConfig = toml::from_str(&text).expect("config");
    edit(&mut cfg);
    std::fs::write(&gw.config_path, toml::to_string(&cfg).expect("toml")).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_servers_new_upstreams_and_session_timeouts_reload_when_the_file_changes() {
    let redis = Redis::start().await;
    let (one, two) = (Upstream::start("one").await, Upstream::start("two").await);
    let metrics_port = free_port();
    let mut cfg = gateway_config(&redis.url(), &[one.addr()]);
    cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    cfg.watch = true;
    cfg.rate_limit.requests = 1_000_000;
    let gw = Gateway::start(cfg).await;
    let pid = gw.pid();
    let store = redis.store().await;
    // Signed in 20 s ago: valid under the 12 h absolute timeout the gateway started with.
    let old = create_session_with(&store, "u-old", None, "127.0.0.1", UA, |r| {
        r.created_at -= 20_000;
    })
    .await;
    assert_eq!(
        get_with_session(gw.url("/app/x"), old.expose())
            .await
            .status(),
        200
    );
    assert_eq!(served_by(&gw, "/public/x").await, "one");

    let stream = RequestStream::start(gw.url("/public/stream"));

    // No signal: `watch = true` sees the file change. The upstream moves to server two, a new
    // upstream appears with its own route, and sessions older than 10 s are over.
    rewrite(&gw, |c| {
        c.upstreams[0].servers = vec![two.addr()];
        let mut extra = c.upstreams[0].clone();
        extra.name = "extra".into();
        extra.servers = vec![one.addr()];
        c.upstreams.push(extra);
        let mut route = c.routes[1].clone();
        route.prefix = "/extra/".into();
        route.upstream = "extra".into();
        c.routes.push(route);
        c.session.idle_timeout = authflow_shared::config::HumanDuration::secs(10);
        c.session_check.touch_interval = authflow_shared::config::HumanDuration::secs(5);
        c.session.absolute_timeout = authflow_shared::config::HumanDuration::secs(10);
    });
    let moved = poll(|| served_by(&gw, "/public/x"), |s| s == "two").await;
    assert_eq!(moved, "two", "the new server list never took effect");
    assert_eq!(served_by(&gw, "/extra/x").await, "one", "the new upstream");
    assert_eq!(
        get_with_session(gw.url("/app/x"), old.expose())
            .await
            .status(),
        401,
        "the shorter absolute timeout is in force"
    );
    let fresh = create_session(&store, "u-new", None, "127.0.0.1", UA).await;
    assert_eq!(
        get_with_session(gw.url("/app/x"), fresh.expose())
            .await
            .status(),
        200
    );
    // The new upstream is health-checked and exported like the others.
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let wanted = [
        format!(
            "authflow_gateway_upstream_server_up{{server=\"{}\",upstream=\"extra\"}} 1",
            one.addr()
        ),
        format!(
            "authflow_gateway_upstream_server_up{{server=\"{}\",upstream=\"app\"}} 1",
            two.addr()
        ),
        "authflow_gateway_config_reloads_total{result=\"ok\"} 1".to_owned(),
    ];
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_metric_lines(&scrape_until(&url, &wanted).await, &wanted);

    // A file that names an upstream it does not define is refused; the servers stay.
    rewrite(&gw, |c| c.routes[0].upstream = "nowhere".into());
    let wanted = ["authflow_gateway_config_reloads_total{result=\"error\"} 1"];
    assert_metric_lines(&scrape_until(&url, &wanted).await, &wanted);
    assert_eq!(served_by(&gw, "/public/x").await, "two");

    assert_eq!(stream.stop().await, 0, "requests failed during reloads");
    assert_eq!(gw.pid(), pid, "same process throughout");
}

/// New accounts `<prefix><n>@example.com` signed up and in until one gets 200 (or time is
/// up): the last sign-in status.
async fn until_sign_ups_pass(svc: &AuthService, prefix: &str) -> u16 {
    let mut n = 0;
    poll(
        || {
            n += 1;
            let email = format!("{prefix}{n}@example.com");
            async move { sign_up_and_in(svc, &email).await }
        },
        |s| *s == 200,
    )
    .await
}

/// Signs `email` up and straight in: the status of the sign-in.
async fn sign_up_and_in(svc: &AuthService, email: &str) -> u16 {
    let account = serde_json::json!({"email": email, "password": "correct horse battery"});
    let r = post_json(svc.api("signup"), account.clone()).await;
    assert!(r.status().is_success(), "signup: {}", r.status());
    post_json(svc.api("signin"), account)
        .await
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_service_reloads_its_rules_and_keeps_them_on_a_bad_file() {
    let redis = Redis::start().await;
    let metrics_port = free_port();
    let mut cfg = auth_config(&redis.url());
    cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    cfg.signup.require_email_verification = true;
    let svc = AuthService::start(cfg, &[]).await;
    let pid = svc.pid();
    assert_eq!(
        sign_up_and_in(&svc, "first@example.com").await,
        403,
        "verification required"
    );

    // Same process, new rule: accounts no longer wait for their verification mail.
    let text = std::fs::read_to_string(svc.config_path()).expect("config");
    let mut next: authflow_auth::AuthConfig = toml::from_str(&text).expect("config");
    next.signup.require_email_verification = false;
    std::fs::write(svc.config_path(), toml::to_string(&next).expect("toml")).expect("write");
    signal_reload(pid);
    let status = until_sign_ups_pass(&svc, "later").await;
    assert_eq!(status, 200, "the new signup rule never took effect");
    assert_eq!(svc.pid(), pid);

    // A bad file: refused and counted; the rule in force stays.
    let good = toml::to_string(&next).expect("toml");
    std::fs::write(
        svc.config_path(),
        good.replace(
            "[signup]",
            "[signup]
speed = 3",
        ),
    )
    .expect("write");
    signal_reload(pid);
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let wanted = [
        "authflow_auth_config_reloads_total{result=\"ok\"} 1",
        "authflow_auth_config_reloads_total{result=\"error\"} 1",
    ];
    assert_metric_lines(&scrape_until(&url, &wanted).await, &wanted);
    assert_eq!(sign_up_and_in(&svc, "after-bad@example.com").await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_service_with_watch_reloads_when_its_file_changes() {
    let redis = Redis::start().await;
    let mut cfg = auth_config(&redis.url());
    cfg.signup.require_email_verification = true;
    cfg.watch = true;
    let svc = AuthService::start(cfg.clone(), &[]).await;
    assert_eq!(sign_up_and_in(&svc, "w1@example.com").await, 403);
    let text = std::fs::read_to_string(svc.config_path()).expect("config");
    let mut next: authflow_auth::AuthConfig = toml::from_str(&text).expect("config");
    next.signup.require_email_verification = false;
    std::fs::write(svc.config_path(), toml::to_string(&next).expect("toml")).expect("write");
    let status = until_sign_ups_pass(&svc, "w-later").await;
    assert_eq!(
        status, 200,
        "no signal, and the file change was still loaded"
    );
}
