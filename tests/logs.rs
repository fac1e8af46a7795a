//! What the services write to their logs, with everything turned up to `debug`: a whole
//! account life (sign-up, verification, sign-in, a protected request, a reset, a wrong
//! password, a malformed body, logout) through the gateway, then both logs searched for every
//! secret that passed by. None may appear: no password, session token, verification or
//! reset token, and no full email address.

mod support;

use serde_json::json;
use std::time::Duration;
use support::*;

const EMAIL: &str = "log.secret.person@example.com";
const PASSWORD: &str = "first secret passphrase";
const NEW_PASSWORD: &str = "second secret passphrase";
const WRONG_PASSWORD: &str = "third wrong passphrase";
const NUMERIC_PASSWORD: i64 = 987_654_321_012;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_either_log_at_debug_level() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let auth = AuthService::start_logging(auth_config(&redis.url()), "debug").await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start_logging(cfg, "debug").await;
    let api = |e: &str| gw.url(&format!("/api/v1/simple_auth/{e}"));
    let post = |url: String, body: serde_json::Value, cookie: Option<String>| async move {
        let mut r = client().post(url).header("user-agent", UA).json(&body);
        if let Some(c) = cookie {
            r = r.header("cookie", format!("sid={c}"));
        }
        r.send().await.expect("request")
    };

    let r = post(
        api("signup"),
        json!({"email": EMAIL, "password": PASSWORD}),
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    let verify = link_token(&wait_for_mail(&auth.outbox(), EMAIL, "verify-email").await);
    let r = client()
        .get(api(&format!("verify-email?token={verify}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = post(
        api("signin"),
        json!({"email": EMAIL, "password": PASSWORD}),
        None,
    )
    .await;
    let session = session_cookie(&r).expect("session cookie");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &session).await.status(),
        200
    );

    let r = post(api("forgot-password"), json!({"email": EMAIL}), None).await;
    assert_eq!(r.status(), 202);
    let reset = link_token(&wait_for_mail(&auth.outbox(), EMAIL, "reset-password").await);
    let r = post(
        api("reset-password/update"),
        json!({"token": reset, "new_password": NEW_PASSWORD}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        api("signin"),
        json!({"email": EMAIL, "password": WRONG_PASSWORD}),
        None,
    )
    .await;
    assert_eq!(r.status(), 401);
    let r = post(
        api("signin"),
        json!({"email": EMAIL, "password": NUMERIC_PASSWORD}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    assert!(!r
        .text()
        .await
        .expect("body")
        .contains(&NUMERIC_PASSWORD.to_string()));
    let r = post(
        api("signin"),
        json!({"email": EMAIL, "password": NEW_PASSWORD}),
        None,
    )
    .await;
    let second = session_cookie(&r).expect("session cookie");
    let r = post(api("logout"), json!({}), Some(second.clone())).await;
    assert_eq!(r.status(), 204);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let secrets = [
        ("password", PASSWORD.to_owned()),
        ("new password", NEW_PASSWORD.to_owned()),
        ("wrong password", WRONG_PASSWORD.to_owned()),
        ("numeric password", NUMERIC_PASSWORD.to_string()),
        ("session token", session),
        ("second session token", second),
        ("verification token", verify),
        ("reset token", reset),
        ("email address", EMAIL.to_owned()),
    ];
    for (service, log) in [("gateway", &gw.log), ("auth", &auth.log)] {
        let text = std::fs::read_to_string(log.as_ref().expect("log")).expect("read log");
        assert!(
            text.lines().count() > 10,
            "{service}: the log is too short to mean anything:\n{text}"
        );
        for (what, secret) in &secrets {
            if let Some(line) = text.lines().find(|l| l.contains(secret.as_str())) {
                panic!("{service} logged the {what}: {line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_give_one_access_object_per_request() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    cfg.log_format = authflow_shared::config::LogFormat::Json;
    let gw = Gateway::start_logging(cfg, "info").await;
    let r = client()
        .get(gw.url("/app/x"))
        .header("cookie", "sid=not-a-real-session-token-value")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 401);
    let path = gw.log.clone().expect("log");
    let access = poll(
        || async {
            std::fs::read_to_string(&path).ok().and_then(|text| {
                text.lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| v["target"] == "access" && v["path"] == "/app/x")
            })
        },
        Option::is_some,
    )
    .await
    .expect("an access log object");
    assert_eq!(access["status"], 401, "{access}");
    assert_eq!(access["decision"], "unauthenticated");
    assert_eq!(access["route"], "/app/");
    assert_eq!(access["protocol"], "h1");
    assert!(access["request_id"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(access["elapsed_ms"].is_u64());
    let text = std::fs::read_to_string(&path).expect("log");
    assert!(
        !text.contains("not-a-real-session-token-value"),
        "a cookie reached the log"
    );
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "not one JSON object per line: {line}"
        );
    }
}

/// A path is the client's text: the auth service's text log quotes and escapes it (as the
/// JSON log does), so a `"` in a path cannot end the field early and forge another one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auth_text_log_escapes_paths() {
    let redis = Redis::start().await;
    let auth = AuthService::start_logging(auth_config(&redis.url()), "info").await;
    let forged = r#"/api/v1/simple_auth/nope"user="admin"#;
    let answer = raw_request(
        auth.port,
        &format!("GET {forged} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    let path = auth.log.clone().expect("log");
    let text = poll(
        || async { without_ansi(&std::fs::read_to_string(&path).unwrap_or_default()) },
        |t| t.contains("request refused"),
    )
    .await;
    let line = text
        .lines()
        .find(|l| l.contains("request refused"))
        .expect("the refusal is logged");
    assert!(
        line.contains(r#"path="/api/v1/simple_auth/nope\"user=\"admin""#),
        "the path is not quoted and escaped: {line}"
    );
    assert!(
        !text.contains(r#"nope"user"#),
        "a raw quote from the path reached the log:\n{text}"
    );
}

/// `text` without ANSI colour sequences (`ESC [ ... m`).
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
