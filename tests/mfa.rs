//! A second factor (issue 21) against real Redis and the real auth service: enrolment with
//! the code an authenticator app would show, sign-in that waits for the code, one use per
//! code (also across two auth instances), the drift window, the throttle on parallel
//! guesses, recovery codes (single use, mailed), disabling, a reset voiding a pending step,
//! and step-up. Passkeys as far as they go without an authenticator (the ceremonies with
//! Chromium's virtual one are in tests/browser.rs): the challenges, and no garbage answered
//! with a 5xx.

mod support;

use authflow_auth::config::AuthConfig;
use authflow_auth::mfa::Required;
use authflow_shared::store::SessionStore;
use authflow_shared::token::SessionToken;
use serde_json::{json, Value};
use support::browser::{location, Browser};
use support::*;
use totp_rs::{Algorithm, Secret, TOTP};

const PW: &str = "correct horse battery";
/// 32 bytes, base64.
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn mfa_config(redis: &Redis, change: impl FnOnce(&mut AuthConfig)) -> AuthConfig {
    let mut cfg = auth_config(&redis.url());
    cfg.mfa.required = Required::Optional;
    change(&mut cfg);
    cfg
}

async fn start(cfg: AuthConfig) -> AuthService {
    AuthService::start(cfg, &[("AUTHFLOW_MFA_KEY", KEY)]).await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// The authenticator app: codes for the base32 secret the service showed.
struct App(TOTP);

impl App {
    fn new(secret_b32: &str) -> App {
        let bytes = Secret::Encoded(secret_b32.to_owned())
            .to_bytes()
            .expect("base32");
        App(TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes).expect("totp"))
    }

    /// The code `steps` steps from now.
    fn code(&self, steps: i64) -> String {
        self.0.generate((now() as i64 + steps * 30) as u64)
    }
}

/// Waits until the next 30-second step has begun with at least `margin` seconds left in it,
/// so a test's codes do not straddle a step boundary.
async fn fresh_step(margin: u64) {
    let into = now() % 30;
    if 30 - into < margin {
        tokio::time::sleep(std::time::Duration::from_secs(30 - into + 1)).await;
    }
}

/// A registered account signed in by password, with an authenticator enrolled; the app and
/// the recovery codes.
async fn enrolled(svc: &AuthService, email: &str) -> (Browser, App, Vec<String>) {
    enrolled_with(svc, email, 0).await
}

/// As [`enrolled`], confirming with the code `offset` steps from now.
async fn enrolled_with(svc: &AuthService, email: &str, offset: i64) -> (Browser, App, Vec<String>) {
    register_through(&svc.url(""), &svc.outbox(), email, PW).await;
    let mut b = Browser::new(&svc.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": email, "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = b
        .post_json("/api/v1/simple_auth/mfa/totp/enroll", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let e = json(r).await;
    let uri = e["otpauth_uri"].as_str().expect("uri");
    assert!(uri.starts_with("otpauth://totp/"), "{uri}");
    assert!(e["qr_svg"].as_str().expect("svg").contains("<svg"));
    let app = App::new(e["secret"].as_str().expect("secret"));
    // Nothing counts before the confirmation: a sign-in elsewhere needs no code yet.
    let mut other = Browser::new(&svc.url(""));
    let r = other
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": email, "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(other.session().is_some());
    // A wrong code does not confirm.
    let wrong = if app.code(0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/confirm",
            json!({"code": wrong}),
        )
        .await;
    assert_eq!(r.status(), 401);
    fresh_step(8).await;
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/confirm",
            json!({"code": app.code(offset)}),
        )
        .await;
    assert_eq!(
        r.status(),
        200,
        "confirmed with the code {offset} step(s) from now"
    );
    let codes: Vec<String> =
        serde_json::from_value(json(r).await["recovery_codes"].clone()).expect("codes");
    assert_eq!(codes.len(), 10);
    (b, app, codes)
}

/// A password sign-in that must now wait: the pending cookie and the methods.
async fn password_step(svc: &AuthService, email: &str) -> (Browser, Value) {
    let mut b = Browser::new(&svc.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": email, "password": PW}),
        )
        .await;
    let status = r.status();
    let body = json(r).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "mfa_required", "{body}");
    assert!(b.session().is_none(), "no session before the second factor");
    assert!(b.jar.contains_key("authflow_mfa"), "{:?}", b.jar);
    (b, body)
}

async fn record(redis: &Redis, token: &str) -> authflow_shared::session::SessionRecord {
    let id = SessionToken::parse(token).expect("token").id();
    redis
        .store()
        .await
        .lookup(&id)
        .await
        .expect("redis")
        .expect("record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_finishes_the_sign_in_once_and_never_again_on_any_instance() {
    let redis = Redis::start().await;
    // Two instances on one Redis and one users database.
    let dir = tempfile::tempdir().expect("dir");
    let db = format!("sqlite://{}/users.db?mode=rwc", dir.path().display());
    let svc = start(mfa_config(&redis, |c| c.database.url = db.clone())).await;
    let second = start(mfa_config(&redis, |c| c.database.url = db.clone())).await;
    let (_, app, _) = enrolled(&svc, "ann@example.com").await;
    // The confirmation used this step's code: wait for the next step.
    tokio::time::sleep(std::time::Duration::from_secs(30 - now() % 30 + 1)).await;
    let (mut b, body) = password_step(&svc, "ann@example.com").await;
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    let code = app.code(0);
    let r = b
        .post_json("/api/v1/simple_auth/mfa/verify", json!({"code": code}))
        .await;
    assert_eq!(r.status(), 200);
    let token = b.session().expect("a session").to_owned();
    assert!(
        !b.jar.contains_key("authflow_mfa"),
        "the pending cookie is dropped"
    );
    let rec = record(&redis, &token).await;
    assert_eq!(rec.claims.amr, vec!["pwd".to_string(), "otp".to_string()]);
    assert!(rec.claims.mfa_time.is_some());
    // The same code again, on this instance and on the other: refused.
    for instance in [&svc, &second] {
        let (mut b, _) = password_step(instance, "ann@example.com").await;
        let r = b
            .post_json("/api/v1/simple_auth/mfa/verify", json!({"code": code}))
            .await;
        assert_eq!(r.status(), 401, "a used code");
        assert!(b.session().is_none());
    }
    // The pending step is single use and bound to this browser's cookie.
    let r = Browser::new(&svc.url(""))
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": app.code(1)}),
        )
        .await;
    assert_eq!(
        r.status(),
        401,
        "no pending cookie, no session: unauthenticated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_one_step_old_pass_and_two_steps_old_do_not() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    // The confirmation itself takes the code one step old.
    let (_, app, _) = enrolled_with(&svc, "bo@example.com", -1).await;
    let (mut b, _) = password_step(&svc, "bo@example.com").await;
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": app.code(-2)}),
        )
        .await;
    assert_eq!(r.status(), 401, "two steps old");
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": app.code(2)}),
        )
        .await;
    assert_eq!(r.status(), 401, "two steps ahead");
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": app.code(1)}),
        )
        .await;
    assert_eq!(r.status(), 200, "one step ahead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_wrong_codes_are_throttled_per_account() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |c| c.throttle.lock_after = 5)).await;
    let (b, app, _) = enrolled(&svc, "cy@example.com").await;
    let token = b.session().expect("session").to_owned();
    let good = app.code(0);
    let wrong: Vec<String> = (0..20)
        .map(|i| format!("{:06}", (i * 7919 + 12345) % 1_000_000))
        .filter(|c| *c != good && *c != app.code(-1) && *c != app.code(1))
        .collect();
    let tasks: Vec<_> = wrong
        .iter()
        .map(|code| {
            let url = svc.api("mfa/verify");
            let (code, token) = (code.clone(), token.clone());
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("user-agent", UA)
                    .header("cookie", format!("sid={token}"))
                    .json(&json!({"code": code}))
                    .send()
                    .await
                    .expect("verify")
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.expect("task"));
    }
    let checked = codes.iter().filter(|c| **c == 401).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(checked + refused, codes.len(), "{codes:?}");
    assert!(checked <= 5, "{checked} codes were checked: {codes:?}");
    assert!(refused > 0, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_code_works_once_and_its_owner_is_told() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    let (_, _, codes) = enrolled(&svc, "di@example.com").await;
    let (mut b, _) = password_step(&svc, "di@example.com").await;
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"recovery_code": codes[3].to_lowercase()}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let rec = record(&redis, b.session().expect("session")).await;
    assert_eq!(rec.claims.amr, vec!["pwd".to_string(), "mfa".to_string()]);
    wait_for_mail(&svc.outbox(), "di@example.com", "recovery code").await;
    let (mut b, _) = password_step(&svc, "di@example.com").await;
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"recovery_code": codes[3]}),
        )
        .await;
    assert_eq!(r.status(), 401, "used once already");
    let r = b.get("/api/v1/simple_auth/mfa").await;
    assert_eq!(r.status(), 401, "still no session");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabling_needs_the_password_and_a_code_and_ends_other_sessions() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    let (mut b, _, codes) = enrolled(&svc, "ed@example.com").await;
    let (mut other, _) = password_step(&svc, "ed@example.com").await;
    let r = other
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"recovery_code": codes[0]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/disable",
            json!({"password": "wrong password!", "recovery_code": codes[1]}),
        )
        .await;
    assert_eq!(r.status(), 401);
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/disable",
            json!({"password": PW}),
        )
        .await;
    assert_eq!(r.status(), 422, "a code is needed too");
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/disable",
            json!({"password": PW, "recovery_code": codes[2]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // The other browser's (the one `enrolled` signed in before the confirmation was signed
    // out by the confirmation itself).
    assert_eq!(json(r).await["revoked"], 1);
    assert_eq!(
        other.get("/api/v1/simple_auth/sessions").await.status(),
        401
    );
    // Off: a password alone signs in again.
    let mut c = Browser::new(&svc.url(""));
    let r = c
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": "ed@example.com", "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(c.session().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_voids_a_sign_in_waiting_for_its_code() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    let (_, app, _) = enrolled(&svc, "fa@example.com").await;
    let (mut b, _) = password_step(&svc, "fa@example.com").await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let r = client()
        .post(svc.api("forgot-password"))
        .json(&json!({"email": "fa@example.com"}))
        .send()
        .await
        .expect("forgot");
    assert_eq!(r.status(), 202);
    let mail = wait_for_mail(&svc.outbox(), "fa@example.com", "reset-password").await;
    let r = client()
        .post(svc.api("reset-password/update"))
        .json(&json!({"token": link_token(&mail), "new_password": "a brand new password"}))
        .send()
        .await
        .expect("reset");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_secs(30 - now() % 30 + 1)).await;
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": app.code(0)}),
        )
        .await;
    assert_eq!(
        r.status(),
        401,
        "the reset came after the password was checked"
    );
    assert_eq!(
        json(r).await["error"],
        "invalid_credentials",
        "refused by the reset, not by the code"
    );
    assert!(b.session().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_steps_up_with_a_fresh_code() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    let (mut b, app, _) = enrolled(&svc, "gu@example.com").await;
    let token = b.session().expect("session").to_owned();
    let before = record(&redis, &token)
        .await
        .claims
        .mfa_time
        .expect("the confirmation counts");
    tokio::time::sleep(std::time::Duration::from_secs(30 - now() % 30 + 1)).await;
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": app.code(0)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["status"], "stepped_up");
    let after = record(&redis, &token).await.claims;
    assert!(after.mfa_time.expect("mfa_time") > before);
    assert!(after.amr.contains(&"otp".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_work_without_javascript() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    register_through(&svc.url(""), &svc.outbox(), "hu@example.com", PW).await;
    let mut b = Browser::new(&svc.url(""));
    let r = b
        .post_form(
            "/api/v1/simple_auth/signin",
            &[
                ("email", "hu@example.com"),
                ("password", PW),
                ("next", "/app/x"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    let page = b
        .get("/auth/mfa/setup?next=/app/x")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("<svg"), "the QR code inline: {page}");
    let secret = page
        .split("<code class=\"secret\">")
        .nth(1)
        .and_then(|s| s.split('<').next())
        .expect("the secret on the page")
        .to_owned();
    // The page shows the same secret until it is confirmed.
    let again = b.get("/auth/mfa/setup").await.text().await.expect("page");
    assert!(again.contains(&secret));
    let app = App::new(&secret);
    fresh_step(8).await;
    let r = b
        .post_form(
            "/api/v1/simple_auth/mfa/totp/confirm",
            &[("code", &app.code(0)), ("next", "/app/x")],
        )
        .await;
    assert_eq!(r.status(), 200);
    let page = r.text().await.expect("codes page");
    assert_eq!(page.matches("<li><code>").count(), 10, "{page}");
    // Signing in through the form now stops at the code prompt.
    let mut c = Browser::new(&svc.url(""));
    let r = c
        .post_form(
            "/api/v1/simple_auth/signin",
            &[
                ("email", "hu@example.com"),
                ("password", PW),
                ("next", "/app/x"),
            ],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/auth/mfa?next=/app/x");
    let prompt = c.get(&location(&r)).await.text().await.expect("prompt");
    assert!(prompt.contains("one-time-code"), "{prompt}");
    tokio::time::sleep(std::time::Duration::from_secs(30 - now() % 30 + 1)).await;
    let r = c
        .post_form(
            "/api/v1/simple_auth/mfa/verify",
            &[("code", &app.code(0)), ("next", "/app/x")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app/x");
    assert!(c.session().is_some());
}

/// A service with passkeys on (`rp_id` localhost, the origin its public URL).
async fn passkey_service(redis: &Redis, passwordless: bool) -> AuthService {
    start(mfa_config(redis, |c| {
        c.mail.base_url = "http://localhost:8000".into();
        c.mfa.webauthn.rp_id = Some("localhost".into());
        c.mfa.webauthn.passwordless = passwordless;
    }))
    .await
}

/// A well-formed answer from no authenticator at all: random bytes where the signature and
/// the authenticator's data would be.
fn forged_assertion() -> Value {
    json!({
        "id": "AAECAwQFBgc",
        "rawId": "AAECAwQFBgc",
        "type": "public-key",
        "response": {
            "clientDataJSON": "eyJ0eXBlIjoid2ViYXV0aG4uZ2V0In0",
            "authenticatorData": "SZYN5YgOjGh0NBcPZHZgW4_krrmihjLHmVzzuoMdl2MFAAAAAQ",
            "signature": "MEUCIQD",
            "userHandle": null
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passkey_ceremonies_answer_challenges_and_garbage_is_a_4xx() {
    let redis = Redis::start().await;
    let svc = passkey_service(&redis, false).await;
    register_through(&svc.url(""), &svc.outbox(), "pa@example.com", PW).await;
    let mut b = Browser::new(&svc.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": "pa@example.com", "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 200, "no factor yet: a session");

    // Registration: a challenge for this account, user verification required.
    let r = b
        .post_json("/api/v1/simple_auth/mfa/webauthn/register/start", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let c = json(r).await;
    let ceremony = c["ceremony"].as_str().expect("ceremony id").to_owned();
    let pk = &c["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost", "{c}");
    assert_eq!(pk["user"]["name"], "pa@example.com");
    assert!(
        pk["challenge"].as_str().expect("challenge").len() >= 43,
        "{c}"
    );
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_ne!(pk["authenticatorSelection"]["residentKey"], "required");

    // A finish that is no credential at all, then one no authenticator made: 4xx, JSON.
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/register/finish",
            json!({"ceremony": ceremony, "name": "Laptop", "credential": {"hello": 1}}),
        )
        .await;
    assert_eq!(r.status(), 422);
    assert_eq!(json(r).await["field"], "credential");
    let r = b
        .post_json("/api/v1/simple_auth/mfa/webauthn/register/start", json!({}))
        .await;
    let ceremony = json(r).await["ceremony"].as_str().expect("id").to_owned();
    let forged = json!({
        "id": "AAECAwQFBgc", "rawId": "AAECAwQFBgc", "type": "public-key",
        "response": {"clientDataJSON": "e30", "attestationObject": "oA"}
    });
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/register/finish",
            json!({"ceremony": ceremony, "name": "Laptop", "credential": forged}),
        )
        .await;
    assert_eq!(r.status(), 401);
    assert_eq!(json(r).await["error"], "invalid_code");
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/register/finish",
            json!({"ceremony": ceremony, "name": "Laptop", "credential": forged}),
        )
        .await;
    assert_eq!(r.status(), 400, "a ceremony is used once");
    assert_eq!(json(r).await["error"], "invalid_token");
    let r = b.get("/api/v1/simple_auth/mfa/webauthn").await;
    assert_eq!(
        json(r).await["passkeys"],
        json!([]),
        "nothing was registered"
    );

    // Authentication: nothing to authenticate with yet; garbage and unknown ceremonies.
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/authenticate/start",
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 409);
    for body in [
        json!({"ceremony": "nope", "credential": {}}),
        json!({"ceremony": "nope", "credential": forged_assertion()}),
        json!({"ceremony": "", "credential": forged_assertion()}),
        json!({"credential": forged_assertion()}),
        json!([1, 2, 3]),
    ] {
        let r = b
            .post_json(
                "/api/v1/simple_auth/mfa/webauthn/authenticate/finish",
                body.clone(),
            )
            .await;
        let status = r.status().as_u16();
        let answer = json(r).await;
        assert!((400..500).contains(&status), "{body} -> {status} {answer}");
        assert!(answer["error"].is_string(), "{answer}");
    }
    // Without a session or a pending sign-in, and passwordless off: nobody to start for.
    let r = client()
        .post(svc.api("mfa/webauthn/authenticate/start"))
        .json(&json!({}))
        .send()
        .await
        .expect("start");
    assert_eq!(r.status(), 401);
    // Removing a passkey wants a fresh second factor, which a password alone is not.
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/delete",
            json!({"id": "AAECAwQFBgc"}),
        )
        .await;
    assert_eq!(r.status(), 409);
    let r = b
        .post_form(
            "/api/v1/simple_auth/mfa/webauthn/delete",
            &[("id", "AAECAwQFBgc")],
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/auth/mfa?notice=step_up&next=/auth/sessions");
    // The devices page offers them, with the script its CSP allows.
    let r = b.get("/auth/sessions").await;
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let page = r.text().await.expect("page");
    assert!(
        page.contains("Add a passkey") && page.contains("No passkeys yet."),
        "{page}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwordless_starts_a_discoverable_ceremony_for_anyone() {
    let redis = Redis::start().await;
    let svc = passkey_service(&redis, true).await;
    let mut b = Browser::new(&svc.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/authenticate/start",
            json!({}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let c = json(r).await;
    assert!(c["publicKey"]["challenge"].is_string(), "{c}");
    assert_eq!(c["publicKey"]["userVerification"], "required", "{c}");
    assert!(
        c["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "the authenticator chooses: {c}"
    );
    assert!(c.get("mediation").is_none(), "a button, not autofill: {c}");
    // An answer naming no passkey anyone has: refused, and no session.
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/webauthn/authenticate/finish",
            json!({"ceremony": c["ceremony"], "credential": forged_assertion()}),
        )
        .await;
    let status = r.status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    assert!(b.session().is_none());
    // Passkeys made here must be discoverable, so that they can name their account.
    register_through(&svc.url(""), &svc.outbox(), "pl@example.com", PW).await;
    b.post_json(
        "/api/v1/simple_auth/signin",
        json!({"email": "pl@example.com", "password": PW}),
    )
    .await;
    let r = b
        .post_json("/api/v1/simple_auth/mfa/webauthn/register/start", json!({}))
        .await;
    let c = json(r).await;
    let sel = &c["publicKey"]["authenticatorSelection"];
    assert_eq!(sel["residentKey"], "required", "{c}");
    assert_eq!(sel["requireResidentKey"], true, "{c}");
    let page = b.get("/auth/signin").await.text().await.expect("page");
    assert!(page.contains("Sign in with a passkey"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrolment_belongs_to_the_session_that_began_it() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |_| {})).await;
    register_through(&svc.url(""), &svc.outbox(), "ivy@example.com", PW).await;
    let sign_in = || async {
        let mut b = Browser::new(&svc.url(""));
        let r = b
            .post_json(
                "/api/v1/simple_auth/signin",
                json!({"email": "ivy@example.com", "password": PW}),
            )
            .await;
        assert_eq!(r.status(), 200);
        b
    };
    let mut owner = sign_in().await;
    // Someone else holding the password, signed in before the owner turns the factor on.
    let mut thief = sign_in().await;
    let r = owner
        .post_json("/api/v1/simple_auth/mfa/totp/enroll", json!({}))
        .await;
    let secret = json(r).await["secret"].as_str().expect("secret").to_owned();
    // The thief sees another secret, never the owner's, and cannot replace it.
    let page = thief
        .get("/auth/mfa/setup")
        .await
        .text()
        .await
        .expect("page");
    assert!(
        !page.contains(&secret),
        "the owner's secret leaked to another session"
    );
    let r = thief
        .post_json("/api/v1/simple_auth/mfa/totp/enroll", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let app = App::new(&secret);
    fresh_step(8).await;
    let r = thief
        .post_json(
            "/api/v1/simple_auth/mfa/totp/confirm",
            json!({"code": app.code(0)}),
        )
        .await;
    assert_eq!(
        r.status(),
        401,
        "the owner's code does not confirm the thief's enrolment"
    );
    let r = owner
        .post_json(
            "/api/v1/simple_auth/mfa/totp/confirm",
            json!({"code": app.code(0)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    // Turning the factor on signed the thief out, and the owner is told.
    assert_eq!(
        thief.get("/api/v1/simple_auth/sessions").await.status(),
        401
    );
    wait_for_mail(&svc.outbox(), "ivy@example.com", "second factors").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_that_must_enrol_is_bound_to_its_device() {
    let redis = Redis::start().await;
    let svc = start(mfa_config(&redis, |c| c.mfa.required = Required::Always)).await;
    register_through(&svc.url(""), &svc.outbox(), "jo@example.com", PW).await;
    let mut b = Browser::new(&svc.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": "jo@example.com", "password": PW}),
        )
        .await;
    assert_eq!(json(r).await["methods"], json!(["totp_enroll"]));
    let pending = b.jar.get("authflow_mfa").expect("pending cookie").clone();
    // The cookie carried to another device: refused, and used up.
    let r = client()
        .post(svc.api("mfa/totp/enroll"))
        .header("user-agent", "Another Device/9")
        .header("cookie", format!("authflow_mfa={pending}"))
        .json(&json!({}))
        .send()
        .await
        .expect("enroll");
    assert_eq!(r.status(), 400);
    let r = b
        .post_json("/api/v1/simple_auth/mfa/totp/enroll", json!({}))
        .await;
    assert_eq!(r.status(), 401, "the pending sign-in is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_factors_work_on_postgresql_too() {
    let redis = Redis::start().await;
    let pg = Postgres::start().await;
    let svc = start(mfa_config(&redis, |c| c.database.url = pg.url())).await;
    let (_, _, codes) = enrolled(&svc, "kim@example.com").await;
    let (mut b, body) = password_step(&svc, "kim@example.com").await;
    assert_eq!(body["methods"], json!(["totp", "recovery_code"]));
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"recovery_code": codes[0]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/disable",
            json!({"password": PW, "recovery_code": codes[0]}),
        )
        .await;
    assert_eq!(r.status(), 401, "a used code, on PostgreSQL too");
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/recovery/regenerate",
            json!({"password": PW, "recovery_code": codes[1]}),
        )
        .await;
    assert_eq!(r.status(), 200);
}
