//! The gateway's session cache, kept coherent by Redis client tracking: hits cost no Redis
//! command, and every way a session ends (logout, password reset, sign-in that replaces a
//! cookie, deletion by anyone) is refused on the very next request, also with a warm cache,
//! also through another gateway on the same Redis. A lost tracking connection empties the
//! cache, so a Redis that comes back without the session can never be outvoted by it.

mod support;

use serde_json::json;
use support::*;

const PW: &str = "correct horse battery";

/// Redis, an echo app, the auth service and `gateways` gateways in front of both, each with
/// a private listener for its cache state.
struct Stack {
    redis: Redis,
    _app: Upstream,
    auth: AuthService,
    gws: Vec<(Gateway, u16)>,
}

async fn stack(redis: Redis, gateways: usize) -> Stack {
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&redis.url());
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut gws = Vec::new();
    for _ in 0..gateways {
        let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
        with_auth_service(&mut cfg, auth.port);
        let private = free_port();
        cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
        let gw = Gateway::start(cfg).await;
        wait_live(private).await;
        gws.push((gw, private));
    }
    Stack {
        redis,
        _app: app,
        auth,
        gws,
    }
}

/// The cache state on a gateway's private listener.
async fn cache_state(private: u16) -> serde_json::Value {
    let resp = client()
        .get(format!("http://127.0.0.1:{private}/health"))
        .send()
        .await;
    match resp {
        Ok(r) => json(r).await["session_cache"].clone(),
        Err(_) => serde_json::Value::Null,
    }
}

async fn wait_live(private: u16) {
    let state = poll(|| cache_state(private), |s| s["live"] == true).await;
    assert_eq!(state["live"], true, "the cache never went live: {state}");
}

impl Stack {
    fn gw(&self, i: usize) -> &Gateway {
        &self.gws[i].0
    }

    async fn register_and_sign_in(&self, email: &str) -> String {
        let r = client()
            .post(self.auth.api("signup"))
            .json(&json!({"email": email, "password": PW}))
            .send()
            .await
            .expect("signup");
        assert!(r.status().is_success(), "signup {}", r.status());
        let r = sign_in_through(&self.gw(0).url(""), email, PW).await;
        assert_eq!(r.status(), 200);
        session_cookie(&r).expect("cookie")
    }

    async fn app(&self, gw: usize, token: &str) -> u16 {
        get_with_session(self.gw(gw).url("/app/x"), token)
            .await
            .status()
            .as_u16()
    }

    async fn post(&self, endpoint: &str, body: serde_json::Value, token: &str) -> u16 {
        client()
            .post(self.gw(0).url(&format!("/api/v1/simple_auth/{endpoint}")))
            .header("user-agent", UA)
            .header("cookie", format!("sid={token}"))
            .json(&body)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// Session reads by anyone (the gateway's misses are `MGET`s).
    async fn reads(&self) -> u64 {
        self.redis.command_calls("mget").await + self.redis.command_calls("get").await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_cache_serves_protected_requests_without_asking_redis() {
    let s = stack(Redis::start().await, 1).await;
    let token = s.register_and_sign_in("warm@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    let before = s.reads().await;
    for _ in 0..50 {
        assert_eq!(s.app(0, &token).await, 200);
    }
    assert_eq!(s.reads().await, before, "a cached session was read again");
    let state = cache_state(s.gws[0].1).await;
    assert_eq!(state["entries"], 1, "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_is_refused_on_the_next_request_while_the_cache_is_warm() {
    let s = stack(Redis::start().await, 1).await;
    let token = s.register_and_sign_in("bye@example.com").await;
    for _ in 0..3 {
        assert_eq!(s.app(0, &token).await, 200);
    }
    assert_eq!(s.post("logout", json!({}), &token).await, 204);
    assert_eq!(
        s.app(0, &token).await,
        401,
        "a logged-out session was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_reset_is_refused_on_the_next_request_while_the_cache_is_warm() {
    let s = stack(Redis::start().await, 1).await;
    let email = "reset@example.com";
    let token = s.register_and_sign_in(email).await;
    assert_eq!(s.app(0, &token).await, 200);
    let r = client()
        .post(s.auth.api("forgot-password"))
        .json(&json!({"email": email}))
        .send()
        .await
        .expect("forgot");
    assert_eq!(r.status(), 202);
    let link = link_token(&wait_for_mail(&s.auth.outbox(), email, "reset-password").await);
    let r = client()
        .post(s.auth.api("reset-password/update"))
        .json(&json!({"token": link, "new_password": "a brand new password"}))
        .send()
        .await
        .expect("reset");
    assert!(r.status().is_success(), "reset {}", r.status());
    assert_eq!(s.app(0, &token).await, 401, "a session outlived a reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_over_a_cookie_revokes_it_at_once() {
    let s = stack(Redis::start().await, 1).await;
    let email = "again@example.com";
    let old = s.register_and_sign_in(email).await;
    assert_eq!(s.app(0, &old).await, 200);
    let r = client()
        .post(s.gw(0).url("/api/v1/simple_auth/signin"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={old}"))
        .json(&json!({"email": email, "password": PW}))
        .send()
        .await
        .expect("signin");
    assert_eq!(r.status(), 200);
    let new = session_cookie(&r).expect("cookie");
    assert_eq!(s.app(0, &old).await, 401, "the replaced session was served");
    assert_eq!(s.app(0, &new).await, 200);
}

/// A deletion made by anyone (an operator's `DEL`, a script) reaches the cache too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_deleted_in_redis_is_refused_at_once() {
    let s = stack(Redis::start().await, 1).await;
    let token = s.register_and_sign_in("ops@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    let id = authflow_shared::token::SessionToken::parse(&token)
        .expect("token")
        .id();
    let _: i64 = fred::interfaces::KeysInterface::del(
        &s.redis.client().await,
        authflow_shared::keys::session(&id),
    )
    .await
    .expect("del");
    assert_eq!(s.app(0, &token).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_on_one_redis_both_see_a_logout_made_through_either() {
    let s = stack(Redis::start().await, 2).await;
    for (email, logout_via) in [("a@example.com", 1usize), ("b@example.com", 0)] {
        let token = s.register_and_sign_in(email).await;
        for gw in [0, 1, 0, 1] {
            assert_eq!(s.app(gw, &token).await, 200, "gateway {gw}");
        }
        let status = client()
            .post(s.gw(logout_via).url("/api/v1/simple_auth/logout"))
            .header("user-agent", UA)
            .header("cookie", format!("sid={token}"))
            .send()
            .await
            .expect("logout")
            .status();
        assert_eq!(status, 204);
        assert_eq!(
            s.app(0, &token).await,
            401,
            "gateway 0 after logout via {logout_via}"
        );
        assert_eq!(
            s.app(1, &token).await,
            401,
            "gateway 1 after logout via {logout_via}"
        );
    }
}

/// Activity is recorded apart from the record, so one gateway's touch does not empty the
/// other's cache, and a session active on one gateway is not idle on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_do_not_invalidate_other_gateways_caches() {
    let s = stack(Redis::start().await, 2).await;
    let token = s.register_and_sign_in("busy@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    assert_eq!(s.app(1, &token).await, 200);
    let id = authflow_shared::token::SessionToken::parse(&token)
        .expect("token")
        .id();
    // A touch, as any gateway writes it after touch_interval.
    let store = s.redis.store().await;
    authflow_shared::store::SessionStore::touch(
        &store,
        &id,
        authflow_shared::now_ms(),
        std::time::Duration::from_secs(3600),
    )
    .await
    .expect("touch");
    let before = s.reads().await;
    assert_eq!(s.app(0, &token).await, 200);
    assert_eq!(s.app(1, &token).await, 200);
    assert_eq!(s.reads().await, before, "a touch emptied a cache");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_empties_the_cache_and_the_gateway_fails_closed_meanwhile() {
    let mut s = stack(Redis::start().await, 1).await;
    let token = s.register_and_sign_in("restart@example.com").await;
    for _ in 0..3 {
        assert_eq!(s.app(0, &token).await, 200);
    }
    s.redis.kill();
    let down = poll(|| s.app(0, &token), |c| *c == 503).await;
    assert_eq!(down, 503, "a cached session was served with Redis down");
    // Redis comes back empty (no persistence): the session is gone, and the cache that
    // held it must not say otherwise.
    s.redis.restart().await;
    wait_live(s.gws[0].1).await;
    assert_eq!(
        s.app(0, &token).await,
        401,
        "a session Redis no longer has was served"
    );
    // And the cache works again: a new session is cached and served.
    let fresh = s.register_and_sign_in("restart2@example.com").await;
    assert_eq!(s.app(0, &fresh).await, 200);
    let before = s.reads().await;
    assert_eq!(s.app(0, &fresh).await, 200);
    assert_eq!(s.reads().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_persistence_sessions_survive_a_restart_and_the_cache_refills() {
    let mut s = stack(Redis::start_persistent().await, 1).await;
    let token = s.register_and_sign_in("durable@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    s.redis.restart().await;
    let back = poll(|| s.app(0, &token), |c| *c == 200).await;
    assert_eq!(back, 200);
    wait_live(s.gws[0].1).await;
    assert_eq!(s.app(0, &token).await, 200);
    let before = s.reads().await;
    assert_eq!(s.app(0, &token).await, 200);
    assert_eq!(s.reads().await, before, "the cache did not refill");
}
