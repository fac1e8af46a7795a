//! Routes that demand a second factor (issue 21): `mfa = true` admits only a session whose
//! `amr` names one (`otp`, `hwk`, `swk`, `mfa`), `mfa_max_age` only one used that recently.
//! Browsers without it are sent to the second-factor page, API clients get 401 with the
//! RFC 9470 challenge; the session and its cookie stay. A step-up (the auth service
//! re-writing the record with a new `mfa_time`) opens the route on the very next request
//! through every gateway, because each gateway's cache tracks the record. Sessions are
//! written straight into Redis the way the auth service writes them.

mod support;

use authflow_gateway::config::{AuthMode, GatewayConfig};
use authflow_shared::config::{HumanDuration, LogFormat};
use authflow_shared::session::{Claims, SessionRecord};
use authflow_shared::store::{RedisSessionStore, SessionStore};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

/// The challenge of a route with `mfa = true` and no `mfa_max_age`.
const CHALLENGE: &str = "Bearer error=\"insufficient_user_authentication\", \
                         error_description=\"A second factor is required\"";

/// Redis, an echo app and `gateways` gateways on it, each with a private listener. Besides
/// the harness's `/app/` and `/public/`: `/secure/` (`mfa = true`), `/step/` (`mfa = true`,
/// `mfa_max_age = "2s"`) and `/admin/` (`roles = ["admin"]`, `mfa = true`).
struct Stack {
    redis: Redis,
    store: RedisSessionStore,
    _app: Upstream,
    gws: Vec<(Gateway, u16)>,
}

/// The routes above on the harness's config (loopback is a trusted proxy, for `/verify`).
fn config(redis: &Redis, app: &Upstream) -> GatewayConfig {
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.trusted_proxies = vec!["127.0.0.1/32".parse().expect("net")];
    let mut secure = route("/secure/", "app", AuthMode::Required);
    secure.mfa = true;
    let mut step = route("/step/", "app", AuthMode::Required);
    step.mfa = true;
    step.mfa_max_age = Some(HumanDuration::secs(2));
    let mut admin = route("/admin/", "app", AuthMode::Required);
    admin.roles = vec!["admin".into()];
    admin.mfa = true;
    cfg.routes.extend([secure, step, admin]);
    cfg
}

async fn stack(gateways: usize) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut gws = Vec::new();
    for i in 0..gateways {
        let mut cfg = config(&redis, &app);
        let private = free_port();
        cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
        // The first gateway's access log is read as JSON.
        let gw = if i == 0 {
            cfg.log_format = LogFormat::Json;
            Gateway::start_logging(cfg, "info").await
        } else {
            Gateway::start(cfg).await
        };
        let live = poll(|| cache_state(private), |s| s["live"] == true).await;
        assert_eq!(live["live"], true, "gateway {i}: the cache never went live");
        gws.push((gw, private));
    }
    let store = redis.store().await;
    Stack {
        redis,
        store,
        _app: app,
        gws,
    }
}

/// The session cache's state on a gateway's private listener.
async fn cache_state(private: u16) -> Value {
    match client()
        .get(format!("http://127.0.0.1:{private}/health"))
        .send()
        .await
    {
        Ok(r) => json(r).await["session_cache"].clone(),
        Err(_) => Value::Null,
    }
}

/// What a sign-in just now proved: `amr`, its second factor last used at `mfa_time` (Unix
/// ms), and `roles`.
fn claims(amr: &[&str], mfa_time: Option<u64>, roles: &[&str]) -> Claims {
    let now = authflow_shared::now_ms();
    Claims {
        amr: amr.iter().map(|m| m.to_string()).collect(),
        auth_time: Some(now),
        idp: None,
        roles: roles.iter().map(|r| r.to_string()).collect(),
        mfa_time,
    }
}

impl Stack {
    fn gw(&self, i: usize) -> &Gateway {
        &self.gws[i].0
    }

    /// A session for the test browser (`UA` from 127.0.0.1) proving `claims`.
    async fn session(&self, user: &str, claims: Claims) -> String {
        let email = format!("{user}@example.com");
        let token = create_session_with(&self.store, user, Some(&email), "127.0.0.1", UA, |r| {
            r.claims = claims
        })
        .await;
        token.expose().to_owned()
    }

    /// A step-up as the auth service will write it: the record re-written with the second
    /// factor used now (compare-and-set, TTL kept), which every tracking gateway hears of.
    async fn step_up(&self, token: &str) {
        let id = authflow_shared::token::SessionToken::parse(token)
            .expect("token")
            .id();
        let now = authflow_shared::now_ms();
        let change = move |r: &mut SessionRecord| {
            if !r.claims.amr.iter().any(|m| m == "otp") {
                r.claims.amr.push("otp".into());
            }
            r.claims.mfa_time = Some(now);
        };
        let written = self.store.update(&id, &change, None).await.expect("update");
        assert!(written.is_some(), "the session was gone");
    }

    /// An API client's GET of `path` through gateway `gw`.
    async fn api(&self, gw: usize, path: &str, token: &str) -> reqwest::Response {
        get_with_session(self.gw(gw).url(path), token).await
    }

    async fn status(&self, gw: usize, path: &str, token: &str) -> u16 {
        self.api(gw, path, token).await.status().as_u16()
    }

    /// A browser's page load of `path` through gateway `gw`.
    async fn browser(&self, gw: usize, path: &str, token: &str) -> reqwest::Response {
        client()
            .get(self.gw(gw).url(path))
            .header("user-agent", UA)
            .header("accept", "text/html,application/xhtml+xml")
            .header("cookie", format!("sid={token}"))
            .send()
            .await
            .expect("request")
    }

    /// A forward-auth check from a trusted proxy (loopback) about `original` (or about the
    /// check request itself when `None`), with the check URL's `query`.
    async fn verify(
        &self,
        query: &str,
        original: Option<&str>,
        token: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut r = client()
            .get(self.gw(0).url(&format!("/verify{query}")))
            .header("user-agent", UA)
            .header("cookie", format!("sid={token}"));
        if let Some(uri) = original {
            r = r
                .header("x-forwarded-uri", uri)
                .header("x-forwarded-method", "GET");
        }
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.send().await.expect("verify")
    }

    /// Session reads by anyone (a gateway's cache misses are `MGET`s).
    async fn reads(&self) -> u64 {
        self.redis.command_calls("mget").await + self.redis.command_calls("get").await
    }
}

fn header<'a>(r: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A 401 step-up for an API client: the challenge (with `max_age`), the JSON body, the
/// cookie untouched.
async fn assert_step_up_401(r: reqwest::Response, max_age: Option<u64>) {
    assert_eq!(r.status(), 401);
    let want = match max_age {
        Some(s) => format!("{CHALLENGE}, max_age={s}"),
        None => CHALLENGE.to_owned(),
    };
    assert_eq!(header(&r, "www-authenticate"), Some(want.as_str()));
    assert!(header(&r, "set-cookie").is_none(), "the cookie was touched");
    assert_eq!(json(r).await, json!({"error": "mfa_required"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_session_is_asked_for_a_second_factor_and_one_with_otp_passes() {
    let s = stack(1).await;
    let now = authflow_shared::now_ms();
    let password = s.session("pat", claims(&["pwd"], None, &[])).await;

    // API client: 401 with the RFC 9470 challenge; `max_age` only where the route sets one.
    assert_step_up_401(s.api(0, "/secure/x", &password).await, None).await;
    assert_step_up_401(s.api(0, "/step/x", &password).await, Some(2)).await;
    // Browser: to the second-factor page, coming back to the path and query.
    let r = s.browser(0, "/secure/x?a=1&b=/c", &password).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        header(&r, "location"),
        Some("/auth/mfa?next=/secure/x%3Fa%3D1%26b%3D/c")
    );
    assert!(header(&r, "set-cookie").is_none(), "the cookie was touched");
    // The session stays good where no second factor is asked.
    assert_eq!(s.status(0, "/app/x", &password).await, 200);

    let otp = s
        .session("olga", claims(&["pwd", "otp"], Some(now), &[]))
        .await;
    let r = s.api(0, "/secure/x", &otp).await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["headers"]["x-user-id"], json!(["olga"]));
    assert_eq!(s.browser(0, "/secure/x", &otp).await.status(), 200);
    assert_eq!(s.status(0, "/step/x", &otp).await, 200);
    // Any second factor counts; a provider sign-in alone does not.
    let passkey = s.session("pia", claims(&["hwk"], None, &[])).await;
    assert_eq!(s.status(0, "/secure/x", &passkey).await, 200);
    let provider = s.session("fred", claims(&["fed"], None, &[])).await;
    assert_eq!(s.status(0, "/secure/x", &provider).await, 401);

    // Counted as its own decision and session outcome, and logged as such.
    let url = format!("http://127.0.0.1:{}/metrics", s.gws[0].1);
    let wanted = [
        "authflow_gateway_requests_total{decision=\"mfa_required\"} 4",
        "authflow_gateway_session_checks_total{outcome=\"mfa_required\"} 4",
        "authflow_gateway_requests_total{decision=\"forbidden\"} 0",
    ];
    assert_metric_lines(&scrape_until(&url, &wanted).await, &wanted);
    let log = s.gw(0).log.clone().expect("log");
    let access = poll(
        || async {
            std::fs::read_to_string(&log).ok().and_then(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .find(|v| v["target"] == "access" && v["path"] == "/step/x")
            })
        },
        Option::is_some,
    )
    .await
    .expect("an access log object for /step/x");
    assert_eq!(access["status"], 401, "{access}");
    assert_eq!(access["decision"], "mfa_required", "{access}");
    assert_eq!(access["session_check"], "mfa_required", "{access}");
    assert_eq!(access["route"], "/step/", "{access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_role_403_comes_before_any_second_factor_prompt() {
    let s = stack(1).await;
    let now = authflow_shared::now_ms();
    let neither = s.session("nina", claims(&["pwd"], None, &[])).await;
    let r = s.api(0, "/admin/x", &neither).await;
    assert_eq!(r.status(), 403);
    assert_eq!(json(r).await, json!({"error": "forbidden"}));
    assert_eq!(s.browser(0, "/admin/x", &neither).await.status(), 403);

    let admin = s.session("ada", claims(&["pwd"], None, &["admin"])).await;
    assert_step_up_401(s.api(0, "/admin/x", &admin).await, None).await;
    let both = s
        .session("bo", claims(&["pwd", "otp"], Some(now), &["admin"]))
        .await;
    assert_eq!(s.status(0, "/admin/x", &both).await, 200);
    let factor_only = s
        .session("fay", claims(&["pwd", "otp"], Some(now), &[]))
        .await;
    assert_eq!(s.status(0, "/admin/x", &factor_only).await, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_second_factor_is_asked_again_and_a_step_up_opens_the_next_request_on_two_gateways()
{
    let s = stack(2).await;
    let minute_ago = authflow_shared::now_ms() - 60_000;
    let token = s
        .session("sam", claims(&["pwd", "otp"], Some(minute_ago), &[]))
        .await;
    // Older than `/step/`'s 2 s; any age does for `/secure/`. Both gateways cache the record.
    for gw in 0..2 {
        assert_step_up_401(s.api(gw, "/step/x", &token).await, Some(2)).await;
        assert_eq!(s.status(gw, "/secure/x", &token).await, 200, "gateway {gw}");
        let r = s.browser(gw, "/step/x?q=1", &token).await;
        assert_eq!(r.status(), 302, "gateway {gw}");
        assert_eq!(
            header(&r, "location"),
            Some("/auth/mfa?next=/step/x%3Fq%3D1")
        );
    }
    for gw in 0..2 {
        let state = cache_state(s.gws[gw].1).await;
        assert_eq!(state["entries"], 1, "gateway {gw}: {state}");
    }
    // Answered from the warm caches: what opens the route next is the re-write, not a read.
    let before = s.reads().await;
    for gw in 0..2 {
        assert_eq!(s.status(gw, "/step/x", &token).await, 401, "gateway {gw}");
    }
    assert_eq!(s.reads().await, before, "a cached session was read again");

    s.step_up(&token).await;
    for gw in 0..2 {
        let r = s.api(gw, "/step/x", &token).await;
        assert_eq!(r.status(), 200, "gateway {gw} missed the step-up");
        assert_eq!(json(r).await["headers"]["x-user-id"], json!(["sam"]));
    }

    // Fresh for 2 s, then asked again, then a second step-up opens it again.
    tokio::time::sleep(Duration::from_millis(2_300)).await;
    for gw in 0..2 {
        assert_step_up_401(s.api(gw, "/step/x", &token).await, Some(2)).await;
        assert_eq!(s.status(gw, "/secure/x", &token).await, 200, "gateway {gw}");
    }
    s.step_up(&token).await;
    for gw in 0..2 {
        assert_eq!(s.status(gw, "/step/x", &token).await, 200, "gateway {gw}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_asks_for_a_second_factor_by_query_and_by_the_original_route() {
    let s = stack(1).await;
    let now = authflow_shared::now_ms();
    let password = s.session("vic", claims(&["pwd"], None, &[])).await;
    let otp = s
        .session("val", claims(&["pwd", "otp"], Some(now), &[]))
        .await;
    let stale = s
        .session("vera", claims(&["pwd", "otp"], Some(now - 60_000), &[]))
        .await;

    // `?mfa=1` from the proxy's config.
    assert_eq!(s.verify("", None, &password, &[]).await.status(), 200);
    assert_step_up_401(s.verify("?mfa=1", None, &password, &[]).await, None).await;
    let r = s.verify("?mfa=1", None, &otp, &[]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-user-id"), Some("val"));
    // `?mfa_max_age=`.
    let fresh_enough = "?mfa=1&mfa_max_age=2s";
    assert_step_up_401(s.verify(fresh_enough, None, &stale, &[]).await, Some(2)).await;
    assert_eq!(s.verify(fresh_enough, None, &otp, &[]).await.status(), 200);
    assert_eq!(s.verify("?mfa=1", None, &stale, &[]).await.status(), 200);

    // The original request's route: `/step/` asks for a factor of at most 2 s.
    let original = Some("/step/x?y=1");
    assert_step_up_401(s.verify("", original, &password, &[]).await, Some(2)).await;
    assert_step_up_401(s.verify("", original, &stale, &[]).await, Some(2)).await;
    assert_eq!(s.verify("", original, &otp, &[]).await.status(), 200);
    // A browser's: named for a proxy that redirects itself (nginx), or the redirect when
    // the caller asks for it, as for a missing session. The cookie stays.
    let html = [("accept", "text/html")];
    let r = s.verify("", original, &password, &html).await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        header(&r, "x-authflow-login"),
        Some("/auth/mfa?next=/step/x%3Fy%3D1")
    );
    assert_eq!(
        header(&r, "www-authenticate"),
        Some(format!("{CHALLENGE}, max_age=2").as_str())
    );
    let r = s.verify("?redirect=1", original, &password, &html).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        header(&r, "location"),
        Some("/auth/mfa?next=/step/x%3Fy%3D1")
    );
    assert!(header(&r, "set-cookie").is_none(), "the cookie was touched");

    // Roles first, from the query too; a check URL that cannot say what it asks fails.
    assert_eq!(
        s.verify("?roles=admin&mfa=1", None, &password, &[])
            .await
            .status(),
        403
    );
    for bad in ["?mfa_max_age=15m", "?mfa=maybe", "?mfa=1&mfa_max_age=soon"] {
        let r = s.verify(bad, None, &otp, &[]).await;
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(json(r).await["reason"], "bad_mfa", "{bad}");
    }
}

/// The shipped nginx example in front, unchanged, with the gateway's `/app/` asking for a
/// second factor: browsers land on the second-factor page through nginx's own redirect of
/// the 401 (`X-Authflow-Login`), API clients get the 401 with the challenge nginx copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_nginx_a_step_up_reaches_browsers_and_api_clients() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut cfg = config(&redis, &app);
    for r in &mut cfg.routes {
        if r.prefix == "/app/" {
            r.mfa = true;
        }
    }
    let gw = Gateway::start(cfg).await;
    let nginx = Nginx::start_example(&gw.url("").replace("http://", ""), &app.addr()).await;
    let store = redis.store().await;
    let session = |user: &'static str, c: Claims| {
        let store = &store;
        async move {
            let t = create_session_with(store, user, None, "127.0.0.1", UA, |r| r.claims = c);
            format!("sid={}", t.await.expose())
        }
    };
    let password = session("nic", claims(&["pwd"], None, &[])).await;
    let otp = session(
        "noa",
        claims(&["pwd", "otp"], Some(authflow_shared::now_ms()), &[]),
    )
    .await;
    let get = |path: &'static str, cookie: String, accept: &'static str| {
        client()
            .get(nginx.url(path))
            .header("user-agent", UA)
            .header("accept", accept)
            .header("cookie", cookie)
            .send()
    };

    let r = get("/app/x?y=1", password.clone(), "text/html")
        .await
        .expect("browser");
    assert_eq!(r.status(), 302);
    let location = header(&r, "location").expect("location");
    assert!(
        location.ends_with("/auth/mfa?next=/app/x%3Fy%3D1"),
        "{location}"
    );
    let r = get("/app/x", password, "application/json")
        .await
        .expect("api");
    assert_eq!(r.status(), 401);
    assert_eq!(header(&r, "www-authenticate"), Some(CHALLENGE));
    let r = get("/app/x", otp, "application/json").await.expect("api");
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["headers"]["x-user-id"], json!(["noa"]));
}
