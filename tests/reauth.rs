//! `on_fingerprint_mismatch = "reauth"`: a browser update that changes the User-Agent does
//! not sign the person out for good. The request from the changed device is refused like a
//! missing session and the session is put aside (not deleted); signing in again from the
//! new device re-binds the same session there, and the old device is refused afterwards.
//! Nobody signing in again: the session is gone after `reauth_hold`.

mod support;

use authflow_gateway::config::MismatchPolicy;
use authflow_shared::config::HumanDuration;
use serde_json::{json, Value};
use support::*;

const PW: &str = "correct horse battery";
const NEW_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/2.0";

struct Stack {
    _redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gw: Gateway,
    /// The auth service's private `/metrics`.
    auth_metrics: String,
}

async fn stack(hold: HumanDuration) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&redis.url());
    auth_cfg.signup.require_email_verification = false;
    let metrics_port = free_port();
    auth_cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    cfg.session_check.on_fingerprint_mismatch = MismatchPolicy::Reauth;
    cfg.session_check.reauth_hold = hold;
    let gw = Gateway::start(cfg).await;
    let r = client()
        .post(auth.api("signup"))
        .json(&json!({"email": "ua@example.com", "password": PW}))
        .send()
        .await
        .expect("signup");
    assert!(r.status().is_success());
    Stack {
        _redis: redis,
        _app: app,
        auth,
        gw,
        auth_metrics: format!("http://127.0.0.1:{metrics_port}/metrics"),
    }
}

impl Stack {
    /// A sign-in from browser `ua`, presenting `cookie` if any; the session token set.
    async fn sign_in(&self, ua: &str, cookie: Option<&str>) -> String {
        let mut r = client()
            .post(self.gw.url("/api/v1/simple_auth/signin"))
            .header("user-agent", ua)
            .json(&json!({"email": "ua@example.com", "password": PW}));
        if let Some(c) = cookie {
            r = r.header("cookie", format!("sid={c}"));
        }
        let r = r.send().await.expect("signin");
        assert_eq!(r.status(), 200);
        session_cookie(&r).expect("cookie")
    }

    /// An API client's GET of `/app/x` from browser `ua`: status, and whether the answer
    /// cleared the cookie.
    async fn app(&self, ua: &str, token: &str) -> (u16, bool) {
        let r = client()
            .get(self.gw.url("/app/x"))
            .header("user-agent", ua)
            .header("cookie", format!("sid={token}"))
            .send()
            .await
            .expect("request");
        let cleared = r.headers().get("set-cookie").is_some();
        (r.status().as_u16(), cleared)
    }

    /// How many sessions `authflow sessions list` shows for the account.
    fn sessions(&self) -> usize {
        let out = std::process::Command::new(authflow_bin())
            .args([
                "sessions",
                "list",
                "--user",
                "ua@example.com",
                "--json",
                "--config",
            ])
            .arg(self.auth.config_path())
            .env("RUST_LOG", "error")
            .output()
            .expect("authflow sessions");
        assert!(out.status.success());
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        v["sessions"].as_array().map_or(0, Vec::len)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_agent_puts_the_session_aside_and_signing_in_again_rebinds_it() {
    let s = stack(HumanDuration::secs(600)).await;
    let token = s.sign_in(UA, None).await;
    assert_eq!(s.app(UA, &token).await, (200, false));

    // The browser updated itself: refused, the cookie kept, the session not deleted.
    assert_eq!(s.app(NEW_UA, &token).await, (401, false));
    assert_eq!(s.sessions(), 1);
    // Put aside for every device until its holder signs in again, the auth service's own
    // session endpoints included (black-box review: they still answered the old device).
    assert_eq!(s.app(UA, &token).await, (401, false));
    let listed = client()
        .get(s.gw.url("/api/v1/simple_auth/sessions"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("sessions");
    assert_eq!(listed.status(), 401);

    // Signing in again from the new browser gets the same session back, bound to it.
    let again = s.sign_in(NEW_UA, Some(&token)).await;
    assert_eq!(again, token, "the session was re-bound, not replaced");
    assert_eq!(s.sessions(), 1);
    assert_eq!(s.app(NEW_UA, &token).await, (200, false));
    // The old device lost it, and cannot put it aside again.
    assert_eq!(s.app(UA, &token).await.0, 401);
    assert_eq!(s.app(NEW_UA, &token).await, (200, false));
    let wanted = ["authflow_auth_session_rebinds_total 1"];
    assert_metric_lines(&scrape_until(&s.auth_metrics, &wanted).await, &wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_put_aside_is_gone_after_the_hold() {
    let s = stack(HumanDuration::secs(1)).await;
    let token = s.sign_in(UA, None).await;
    assert_eq!(s.app(NEW_UA, &token).await, (401, false));
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(s.sessions(), 0);
    assert_eq!(s.app(UA, &token).await.0, 401);
    // A sign-in now starts a new session.
    let fresh = s.sign_in(NEW_UA, Some(&token)).await;
    assert_ne!(fresh, token);
    assert_eq!(s.app(NEW_UA, &fresh).await, (200, false));
}
