//! The second factor end to end, through the gateway and the auth service together: a route
//! with `mfa = true` and `mfa_max_age` refuses a password-only session, lets it in once the
//! person enrols an authenticator (the confirmation counts as a factor), asks again when the
//! factor is older than the route allows, and admits the very next request after a step-up
//! made with the auth service's own endpoint. And `[mfa] required = "always"`: an account
//! without a factor must enrol before it gets any session.

mod support;

use authflow_auth::mfa::Required;
use authflow_gateway::config::AuthMode;
use authflow_shared::config::HumanDuration;
use serde_json::json;
use support::browser::Browser;
use support::*;
use totp_rs::{Algorithm, Secret, TOTP};

const PW: &str = "correct horse battery";
const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

/// The code an authenticator app shows for the base32 `secret` now.
fn code(secret: &str) -> String {
    let bytes = Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32");
    TOTP::new(Algorithm::SHA1, 6, 1, 30, bytes)
        .expect("totp")
        .generate(now())
}

/// Sleeps into the next 30-second step (a step's code is accepted once).
async fn next_step() {
    tokio::time::sleep(std::time::Duration::from_secs(30 - now() % 30 + 1)).await;
}

struct Stack {
    _redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gw: Gateway,
}

async fn stack(required: Required) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut acfg = auth_config(&redis.url());
    acfg.mfa.required = required;
    let auth = AuthService::start(acfg, &[("AUTHFLOW_MFA_KEY", KEY)]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let mut admin = route("/admin/", "app", AuthMode::Required);
    admin.mfa = true;
    admin.mfa_max_age = Some(HumanDuration::secs(3));
    cfg.routes.push(admin);
    let gw = Gateway::start(cfg).await;
    Stack {
        _redis: redis,
        _app: app,
        auth,
        gw,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_step_up_and_the_route_follows_on_the_next_request() {
    let s = stack(Required::Optional).await;
    register_through(&s.gw.url(""), &s.auth.outbox(), "ann@example.com", PW).await;
    let mut b = Browser::new(&s.gw.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": "ann@example.com", "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = b.get("/admin/").await;
    assert_eq!(r.status(), 401, "a password alone");
    assert_eq!(json(r).await["error"], "mfa_required");
    // Enrol through the gateway; the confirmation is a factor used now.
    let r = b
        .post_json("/api/v1/simple_auth/mfa/totp/enroll", json!({}))
        .await;
    let secret = json(r).await["secret"].as_str().expect("secret").to_owned();
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/confirm",
            json!({"code": code(&secret)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        b.get("/admin/").await.status(),
        200,
        "right after enrolling"
    );
    // Older than the route's 3 s: asked again; a step-up opens the next request.
    next_step().await;
    let r = b.get("/admin/").await;
    assert_eq!(r.status(), 401, "the factor is too old now");
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/verify",
            json!({"code": code(&secret)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        b.get("/admin/").await.status(),
        200,
        "the very next request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_required_always_an_account_enrols_before_any_session() {
    let s = stack(Required::Always).await;
    register_through(&s.gw.url(""), &s.auth.outbox(), "bo@example.com", PW).await;
    let mut b = Browser::new(&s.gw.url(""));
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": "bo@example.com", "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["methods"], json!(["totp_enroll"]), "{body}");
    assert!(b.session().is_none());
    assert_eq!(b.get("/app/").await.status(), 401, "no session yet");
    // A code cannot finish a sign-in that has no authenticator yet.
    let r = b
        .post_json("/api/v1/simple_auth/mfa/verify", json!({"code": "123456"}))
        .await;
    assert_eq!(r.status(), 409);
    let r = b
        .post_json("/api/v1/simple_auth/mfa/totp/enroll", json!({}))
        .await;
    assert_eq!(r.status(), 200);
    let secret = json(r).await["secret"].as_str().expect("secret").to_owned();
    let r = b
        .post_json(
            "/api/v1/simple_auth/mfa/totp/confirm",
            json!({"code": code(&secret)}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(b.session().is_some(), "the confirmation starts the session");
    assert_eq!(b.get("/admin/").await.status(), 200);
}
