//! Gateway and auth service together: sign in through the gateway, reach a protected
//! route, log out, refused. The fingerprint the auth service stores is the one the gateway
//! computes for the real client.

mod support;

use serde_json::json;
use support::*;

const PW: &str = "correct horse battery";

struct Stack {
    redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gw: Gateway,
}

async fn stack() -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let auth = AuthService::start(auth_config(&redis.url()), &[]).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    Stack {
        redis,
        _app: app,
        auth,
        gw,
    }
}

impl Stack {
    async fn post(
        &self,
        path: &str,
        body: serde_json::Value,
        ua: &str,
        cookie: Option<&str>,
    ) -> reqwest::Response {
        let mut r = client()
            .post(self.gw.url(path))
            .header("user-agent", ua)
            .json(&body);
        if let Some(c) = cookie {
            r = r.header("cookie", format!("sid={c}"));
        }
        r.send().await.expect("request")
    }

    async fn get_app(&self, ua: &str, cookie: &str) -> reqwest::Response {
        client()
            .get(self.gw.url("/app/me"))
            .header("user-agent", ua)
            .header("cookie", format!("sid={cookie}"))
            .send()
            .await
            .expect("request")
    }

    async fn register(&self, email: &str) {
        register_through(&self.gw.url(""), &self.auth.outbox(), email, PW).await;
    }

    async fn sign_in(&self, email: &str, ua: &str) -> (String, String) {
        let r = self
            .post(
                "/api/v1/simple_auth/signin",
                json!({"email": email, "password": PW}),
                ua,
                None,
            )
            .await;
        assert_eq!(r.status(), 200);
        let token = session_cookie(&r).expect("cookie");
        (
            token,
            json(r).await["user_id"].as_str().expect("id").to_owned(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_through_the_gateway_reach_the_app_log_out_and_be_refused() {
    let s = stack().await;
    s.register("hal@example.com").await;
    let (token, user_id) = s.sign_in("hal@example.com", UA).await;

    let r = s.get_app(UA, &token).await;
    assert_eq!(r.status(), 200);
    let echo = json(r).await;
    assert_eq!(echo["headers"]["x-user-id"], json!([user_id]));
    assert_eq!(echo["headers"]["x-user-email"], json!(["hal@example.com"]));
    assert!(echo["headers"].get("cookie").is_none());

    let r = s
        .post("/api/v1/simple_auth/logout", json!({}), UA, Some(&token))
        .await;
    assert_eq!(r.status(), 204);
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    assert_eq!(s.get_app(UA, &token).await.status(), 401);
    let r = client()
        .get(s.gw.url("/app/me"))
        .header("accept", "text/html")
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 302);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_from_the_gateway_is_bound_to_the_signing_in_browser() {
    let s = stack().await;
    s.register("ida@example.com").await;
    let (token, _) = s.sign_in("ida@example.com", UA).await;
    let stolen = s.get_app("Other Browser/2.0", &token).await;
    assert_eq!(stolen.status(), 401);
    // The mismatch revoked the session: the rightful browser signs in again.
    assert_eq!(s.get_app(UA, &token).await.status(), 401);
    let (token, _) = s.sign_in("ida@example.com", UA).await;
    assert_eq!(s.get_app(UA, &token).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_choose_their_fingerprint() {
    let s = stack().await;
    s.register("jo@example.com").await;
    // Through the gateway, a client-sent fingerprint header is replaced by the real one.
    let forged = fingerprint("127.0.0.1", "Attacker/1.0");
    let r = client()
        .post(s.gw.url("/api/v1/simple_auth/signin"))
        .header("user-agent", UA)
        .header("x-authflow-fingerprint", &forged)
        .json(&json!({"email": "jo@example.com", "password": PW}))
        .send()
        .await
        .expect("request");
    let token = session_cookie(&r).expect("cookie");
    assert_eq!(s.get_app(UA, &token).await.status(), 200);

    // Straight to the auth service from an untrusted address, the header is ignored too.
    let r = client_from(Some("127.0.0.2"))
        .post(s.auth.api("signin"))
        .header("user-agent", UA)
        .header("x-authflow-fingerprint", &forged)
        .json(&json!({"email": "jo@example.com", "password": PW}))
        .send()
        .await
        .expect("request");
    let token = session_cookie(&r).expect("cookie");
    let id = authflow_shared::token::SessionToken::parse(&token)
        .expect("token")
        .id();
    use fred::interfaces::KeysInterface;
    let raw: String = s
        .redis
        .client()
        .await
        .get(authflow_shared::keys::session(&id))
        .await
        .expect("record");
    let record: authflow_shared::session::SessionRecord = serde_json::from_str(&raw).expect("json");
    assert_eq!(record.fingerprint, fingerprint("127.0.0.2", UA));
}
