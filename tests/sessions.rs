//! People seeing and ending their own sessions, through the gateway as a browser would:
//! list (with a handle that opens nothing), sign out one, all others, everywhere; the cap on
//! sessions per user. Every ending is checked on the very next request through the gateway
//! (whose session cache must hear of it at once).

mod support;

use serde_json::{json, Value};
use support::*;

const PW: &str = "correct horse battery";
const PHONE: &str =
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/130.0 Mobile Safari/537.36";

struct Stack {
    _redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gw: Gateway,
    /// The auth service's private `/metrics`.
    auth_metrics: String,
}

async fn stack(max_sessions: usize) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut acfg = auth_config(&redis.url());
    acfg.max_sessions_per_user = max_sessions;
    let metrics_port = free_port();
    acfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let auth = AuthService::start(acfg, &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    Stack {
        _redis: redis,
        _app: app,
        auth,
        gw,
        auth_metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
    }
}

impl Stack {
    async fn register(&self, email: &str) {
        register_through(&self.gw.url(""), &self.auth.outbox(), email, PW).await;
    }

    /// A sign-in from the browser `ua`; its session token.
    async fn sign_in(&self, email: &str, ua: &str) -> String {
        let r = client()
            .post(self.gw.url("/api/v1/simple_auth/signin"))
            .header("user-agent", ua)
            .json(&json!({"email": email, "password": PW}))
            .send()
            .await
            .expect("signin");
        assert_eq!(r.status(), 200);
        session_cookie(&r).expect("cookie")
    }

    /// The protected app's status for this browser and session.
    async fn app(&self, ua: &str, token: &str) -> u16 {
        client()
            .get(self.gw.url("/app/x"))
            .header("user-agent", ua)
            .header("cookie", format!("sid={token}"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    async fn call(
        &self,
        method: &str,
        endpoint: &str,
        ua: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> reqwest::Response {
        let url = self.gw.url(&format!("/api/v1/simple_auth/{endpoint}"));
        let mut r = match method {
            "GET" => client().get(url),
            _ => client().post(url),
        }
        .header("user-agent", ua);
        if let Some(t) = token {
            r = r.header("cookie", format!("sid={t}"));
        }
        if let Some(b) = body {
            r = r.json(&b);
        }
        r.send().await.expect("request")
    }

    async fn list(&self, ua: &str, token: &str) -> Vec<Value> {
        let r = self.call("GET", "sessions", ua, Some(token), None).await;
        assert_eq!(r.status(), 200);
        json(r).await["sessions"].as_array().expect("list").clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_lists_their_devices_without_seeing_any_secret() {
    let s = stack(0).await;
    s.register("sam@example.com").await;
    let laptop = s.sign_in("sam@example.com", UA).await;
    let phone = s.sign_in("sam@example.com", PHONE).await;
    let r = s.call("GET", "sessions", UA, Some(&laptop), None).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    for secret in [&laptop, &phone] {
        assert!(!text.contains(secret.as_str()), "a token is in the list");
    }
    let body: Value = serde_json::from_str(&text).expect("json");
    let list = body["sessions"].as_array().expect("list");
    assert_eq!(list.len(), 2, "{body}");
    // Newest first: the phone, then this laptop.
    assert_eq!(list[0]["device"], "Chrome on Android");
    assert_eq!(list[0]["current"], false);
    assert_eq!(list[1]["current"], true);
    assert_eq!(list[1]["ip"], "127.0.0.x");
    for v in list {
        let handle = v["handle"].as_str().expect("handle");
        assert_eq!(handle.len(), 16);
        assert!(!text.contains(&format!("session:{handle}")));
        assert!(v["created_at"].as_u64().is_some() && v["last_seen_at"].as_u64().is_some());
    }
    // Nobody else's: a second account sees only its own.
    s.register("tia@example.com").await;
    let other = s.sign_in("tia@example.com", UA).await;
    assert_eq!(s.list(UA, &other).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_one_device_ends_it_on_the_next_request() {
    let s = stack(0).await;
    s.register("uma@example.com").await;
    let laptop = s.sign_in("uma@example.com", UA).await;
    let phone = s.sign_in("uma@example.com", PHONE).await;
    assert_eq!(
        s.app(PHONE, &phone).await,
        200,
        "the phone's session is cached"
    );
    let list = s.list(UA, &laptop).await;
    let handle = list
        .iter()
        .find(|v| v["current"] == false)
        .and_then(|v| v["handle"].as_str())
        .expect("the phone's handle");
    let r = s
        .call(
            "POST",
            "sessions/revoke",
            UA,
            Some(&laptop),
            Some(json!({ "handle": handle })),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        s.app(PHONE, &phone).await,
        401,
        "the signed-out phone got in"
    );
    assert_eq!(s.app(UA, &laptop).await, 200);
    // A handle that is not one of mine: 404, and nothing ends.
    let r = s
        .call(
            "POST",
            "sessions/revoke",
            UA,
            Some(&laptop),
            Some(json!({ "handle": "0123456789abcdef" })),
        )
        .await;
    assert_eq!(r.status(), 404);
    let r = s
        .call(
            "POST",
            "sessions/revoke",
            UA,
            Some(&laptop),
            Some(json!({"h": 1})),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"], "invalid_json");
    assert_eq!(s.app(UA, &laptop).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_out_all_others_then_everywhere() {
    let s = stack(0).await;
    s.register("val@example.com").await;
    let a = s.sign_in("val@example.com", UA).await;
    let b = s.sign_in("val@example.com", PHONE).await;
    let c = s.sign_in("val@example.com", "Tablet/1.0").await;
    for (ua, t) in [(UA, &a), (PHONE, &b), ("Tablet/1.0", &c)] {
        assert_eq!(s.app(ua, t).await, 200);
    }
    let r = s
        .call("POST", "sessions/revoke-others", UA, Some(&a), None)
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["revoked"], 2);
    assert_eq!(s.app(PHONE, &b).await, 401);
    assert_eq!(s.app("Tablet/1.0", &c).await, 401);
    assert_eq!(s.app(UA, &a).await, 200);
    assert_eq!(s.list(UA, &a).await.len(), 1);

    let r = s
        .call("POST", "sessions/revoke-all", UA, Some(&a), None)
        .await;
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    assert_eq!(s.app(UA, &a).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_valid_session_nothing_is_listed_or_ended() {
    let s = stack(0).await;
    s.register("wes@example.com").await;
    let token = s.sign_in("wes@example.com", UA).await;
    let r = s.call("GET", "sessions", UA, None, None).await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["error"], "unauthenticated");
    // Another browser with the stolen cookie: refused like at the gateway.
    let r = s.call("GET", "sessions", PHONE, Some(&token), None).await;
    assert_eq!(r.status(), 401);
    let r = s
        .call("POST", "sessions/revoke-all", PHONE, Some(&token), None)
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(s.app(UA, &token).await, 200, "a stranger ended the session");
    // A cross-site form post is refused before anything is read.
    let r = client()
        .post(s.gw.url("/api/v1/simple_auth/sessions/revoke-all"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .header("sec-fetch-site", "cross-site")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 403);
    assert_eq!(s.app(UA, &token).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_the_oldest_session_ends() {
    let s = stack(2).await;
    s.register("xia@example.com").await;
    let first = s.sign_in("xia@example.com", UA).await;
    assert_eq!(s.app(UA, &first).await, 200);
    let second = s.sign_in("xia@example.com", UA).await;
    let third = s.sign_in("xia@example.com", UA).await;
    assert_eq!(
        s.app(UA, &first).await,
        401,
        "the oldest session outlived the cap"
    );
    assert_eq!(s.app(UA, &second).await, 200);
    assert_eq!(s.app(UA, &third).await, 200);
    assert_eq!(s.list(UA, &third).await.len(), 2);
}

/// `authflow sessions ...` against the running stack's auth config; (exit ok, stdout, stderr).
fn operator(s: &Stack, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(authflow_bin())
        .arg("sessions")
        .args(args)
        .arg("--config")
        .arg(s.auth.dir.path().join("auth.toml"))
        .env("RUST_LOG", "error")
        .output()
        .expect("run authflow sessions");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_end_a_users_sessions_from_the_command_line() {
    let s = stack(0).await;
    s.register("yan@example.com").await;
    let laptop = s.sign_in("yan@example.com", UA).await;
    let phone = s.sign_in("yan@example.com", PHONE).await;

    let (ok, out, err) = operator(&s, &["list", "--user", "yan@example.com", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(out.trim()).expect("json");
    let user_id = listed["user_id"].as_str().expect("id").to_owned();
    let list = listed["sessions"].as_array().expect("sessions");
    assert_eq!(list.len(), 2);
    for secret in [&laptop, &phone] {
        assert!(!out.contains(secret.as_str()));
    }
    // The table names the devices; the same user by id.
    let (ok, table, err) = operator(&s, &["list", "--user", &user_id]);
    assert!(ok, "{err}");
    assert!(
        table.contains("Chrome on Android") && table.contains("127.0.0.x"),
        "{table}"
    );

    let phone_handle = list
        .iter()
        .find(|v| v["device"] == "Chrome on Android")
        .and_then(|v| v["handle"].as_str())
        .expect("phone");
    let (ok, _, err) = operator(
        &s,
        &["revoke", "--user", &user_id, "--session", phone_handle],
    );
    assert!(ok, "{err}");
    assert_eq!(
        s.app(PHONE, &phone).await,
        401,
        "the revoked session got in"
    );
    assert_eq!(s.app(UA, &laptop).await, 200);

    let (ok, _, err) = operator(
        &s,
        &[
            "revoke",
            "--user",
            &user_id,
            "--session",
            "ffffffffffffffff",
        ],
    );
    assert!(!ok);
    assert!(err.contains("no session with handle"), "{err}");
    let (ok, _, err) = operator(&s, &["list", "--user", "nobody@example.com"]);
    assert!(!ok);
    assert!(err.contains("no account has the address"), "{err}");

    let (ok, out, err) = operator(&s, &["revoke", "--user", "yan@example.com", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(out.trim()).expect("json")["revoked"],
        1
    );
    assert_eq!(s.app(UA, &laptop).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_password_needs_the_old_one_and_ends_every_other_session() {
    let s = stack(0).await;
    s.register("zoe@example.com").await;
    let laptop = s.sign_in("zoe@example.com", UA).await;
    let phone = s.sign_in("zoe@example.com", PHONE).await;
    assert_eq!(s.app(PHONE, &phone).await, 200);
    let change = |old: &str, new: &str| json!({ "old_password": old, "new_password": new });
    let r = s
        .call(
            "POST",
            "change-password",
            UA,
            Some(&laptop),
            Some(change("wrong password here", "a brand new passphrase")),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(
        s.app(PHONE, &phone).await,
        200,
        "a failed change ended sessions"
    );
    let r = s
        .call(
            "POST",
            "change-password",
            UA,
            Some(&laptop),
            Some(change(PW, "short")),
        )
        .await;
    assert_eq!(r.status(), 422);
    let r = s
        .call(
            "POST",
            "change-password",
            UA,
            None,
            Some(change(PW, "a brand new passphrase")),
        )
        .await;
    assert_eq!(r.status(), 401);

    let r = s
        .call(
            "POST",
            "change-password",
            UA,
            Some(&laptop),
            Some(change(PW, "a brand new passphrase")),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["revoked"], 1);
    assert_eq!(
        s.app(PHONE, &phone).await,
        401,
        "another session outlived the change"
    );
    assert_eq!(
        s.app(UA, &laptop).await,
        200,
        "the changing session was ended"
    );
    // The new password signs in; the old one no longer does.
    let r = client()
        .post(s.gw.url("/api/v1/simple_auth/signin"))
        .json(&json!({"email": "zoe@example.com", "password": PW}))
        .send()
        .await
        .expect("signin");
    assert_eq!(r.status(), 401);
    let r = client()
        .post(s.gw.url("/api/v1/simple_auth/signin"))
        .json(&json!({"email": "zoe@example.com", "password": "a brand new passphrase"}))
        .send()
        .await
        .expect("signin");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_metrics_count_sign_ins_revocations_by_cause_and_active_sessions() {
    let s = stack(2).await;
    s.register("zoe@example.com").await;
    let a = s.sign_in("zoe@example.com", UA).await;
    let b = s.sign_in("zoe@example.com", PHONE).await;
    let _c = s.sign_in("zoe@example.com", "Tablet/1.0").await; // over the cap of 2: `a` ends
    assert_eq!(s.app(UA, &a).await, 401);
    let wrong = s
        .call(
            "POST",
            "signin",
            UA,
            None,
            Some(json!({"email": "zoe@example.com", "password": "not the password"})),
        )
        .await;
    assert_eq!(wrong.status(), 401);
    let r = s
        .call("POST", "sessions/revoke-others", PHONE, Some(&b), None)
        .await;
    assert_eq!(r.status(), 200);
    // The first scrape counts the live sessions: only the phone's is left.
    let wanted = [
        "authflow_auth_sign_ins_total{result=\"ok\"} 3",
        "authflow_auth_sign_ins_total{result=\"invalid_credentials\"} 1",
        "authflow_auth_sign_ups_total{result=\"accepted\"} 1",
        "authflow_auth_session_revocations_total{cause=\"cap_evicted\"} 1",
        "authflow_auth_session_revocations_total{cause=\"owner_others\"} 1",
        "authflow_auth_session_revocations_total{cause=\"password_reset\"} 0",
        "authflow_auth_mail_total{result=\"sent\"} 1",
        "authflow_auth_active_sessions 1",
        "authflow_auth_argon2_queue_depth 0",
    ];
    let text = scrape_until(&s.auth_metrics, &wanted).await;
    assert_metric_lines(&text, &wanted);
    assert!(
        text.contains("authflow_auth_argon2_seconds_count"),
        "{text}"
    );
    let r = s.call("POST", "logout", PHONE, Some(&b), None).await;
    assert_eq!(r.status(), 204);
    let wanted = ["authflow_auth_session_revocations_total{cause=\"sign_out\"} 1"];
    assert_metric_lines(&scrape_until(&s.auth_metrics, &wanted).await, &wanted);
    // Not on the public listeners.
    assert_eq!(
        client()
            .get(s.auth.url("/metrics"))
            .send()
            .await
            .expect("request")
            .status(),
        404
    );
}
