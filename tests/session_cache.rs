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
    stack_with(redis, gateways, |_| {}).await
}

/// The same, each gateway's config changed by `tweak` first.
async fn stack_with(
    redis: Redis,
    gateways: usize,
    tweak: impl Fn(&mut authflow_gateway::config::GatewayConfig),
) -> Stack {
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
        tweak(&mut cfg);
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
        self.auth.sign_up(email, PW).await;
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

/// Sends `n` requests to `/app/x`, each with a fresh random well-formed session cookie no
/// session has, from `source` (a loopback address), 16 at a time; their statuses.
async fn unknown_cookies(gw: &Gateway, n: usize, source: &str) -> Vec<u16> {
    let client = client_from(Some(source));
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (client, url) = (client.clone(), gw.url("/app/x"));
        workers.spawn(async move {
            let mut statuses = Vec::new();
            for _ in (w..n).step_by(16) {
                let token = authflow_shared::token::SessionToken::for_user("nobody");
                let r = client
                    .get(&url)
                    .header("user-agent", UA)
                    .header("cookie", format!("sid={}", token.expose()))
                    .send()
                    .await
                    .expect("request");
                statuses.push(r.status().as_u16());
            }
            statuses
        });
    }
    let mut all = Vec::new();
    while let Some(statuses) = workers.join_next().await {
        all.extend(statuses.expect("worker"));
    }
    all
}

/// No bound on unknown-cookie lookups and no rate limit, so every cookie reaches Redis.
fn unbounded(cfg: &mut authflow_gateway::config::GatewayConfig) {
    cfg.rate_limit.requests = 1_000_000;
    cfg.session_check.unknown_cookie_lookups = 0;
}

/// Issue 18: a flood of random well-formed cookies once grew Redis' client-tracking table by
/// two keys per request (every miss was read on the tracking connection), without bound.
/// Now misses are read untracked and only records that exist are tracked: 2,000 unknown
/// cookies that all reach Redis (1,000 through each of two gateways) leave
/// `tracking_total_keys` where it was, while a real session stays cached on both, and its
/// logout still reaches both caches at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cookies_do_not_grow_the_tracking_table() {
    let s = stack_with(Redis::start().await, 2, unbounded).await;
    let token = s.register_and_sign_in("real@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    assert_eq!(s.app(1, &token).await, 200);
    let tracked_before = s.redis.tracking_total_keys().await;
    assert!(tracked_before >= 1, "the real session is not tracked");
    let memory_before = s.redis.info_field("used_memory").await;
    let mgets_before = s.redis.command_calls("mget").await;

    let mut statuses = unknown_cookies(s.gw(0), 1_000, "127.0.0.1").await;
    statuses.extend(unknown_cookies(s.gw(1), 1_000, "127.0.0.1").await);
    assert!(statuses.iter().all(|c| *c == 401), "{statuses:?}");

    let mgets = s.redis.command_calls("mget").await - mgets_before;
    let tracked = s.redis.tracking_total_keys().await;
    let memory = s.redis.info_field("used_memory").await;
    eprintln!(
        "2000 unknown cookies: {mgets} MGETs, tracking_total_keys {tracked_before} -> {tracked}, \
         used_memory {memory_before} -> {memory}"
    );
    assert!(
        mgets >= 1_900,
        "the cookies did not reach Redis ({mgets} MGETs)"
    );
    assert!(
        tracked <= tracked_before + 2,
        "unknown cookies grew the tracking table: {tracked_before} -> {tracked}"
    );
    // The real session is still served from both caches, and its end reaches both at once.
    let reads = s.reads().await;
    assert_eq!(s.app(0, &token).await, 200);
    assert_eq!(s.app(1, &token).await, 200);
    assert_eq!(
        s.reads().await,
        reads,
        "the real session fell out of a cache"
    );
    assert_eq!(s.post("logout", json!({}), &token).await, 204);
    assert_eq!(
        s.app(0, &token).await,
        401,
        "gateway 0 served a logged-out session"
    );
    assert_eq!(
        s.app(1, &token).await,
        401,
        "gateway 1 served a logged-out session"
    );
}

/// The review's end-to-end symptom: with `maxmemory` and the default `noeviction`, a flood
/// of unknown cookies once filled Redis with tracking state until the next sign-in got 503.
/// Memory for 300 KB more than Redis used before the flood; a sign-in after it works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_cookies_leaves_room_for_the_next_sign_in() {
    let s = stack_with(Redis::start().await, 1, unbounded).await;
    let token = s.register_and_sign_in("first@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    let used = s.redis.info_field("used_memory").await;
    let admin = s.redis.client().await;
    let limit = (used + 300_000).to_string();
    let _: String = fred::interfaces::ClientLike::custom(
        &admin,
        fred::cmd!("CONFIG"),
        vec!["SET", "maxmemory", limit.as_str()],
    )
    .await
    .expect("CONFIG SET maxmemory");

    let statuses = unknown_cookies(s.gw(0), 2_000, "127.0.0.1").await;
    assert!(statuses.iter().all(|c| *c == 401), "{statuses:?}");
    let after = s.redis.info_field("used_memory").await;
    eprintln!("used_memory {used} -> {after} (maxmemory {limit})");
    let next = s.register_and_sign_in("next@example.com").await;
    assert_eq!(s.app(0, &next).await, 200);
}

/// A cookie Redis did not know is answered from a short negative cache when it comes back,
/// and every real session read is tracked, one key per session: the `seen:` key beside it
/// is read untracked, so activity never sends invalidations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_unknown_cookie_asks_redis_once_and_real_sessions_track_one_key() {
    let s = stack_with(Redis::start().await, 1, unbounded).await;
    let stale = authflow_shared::token::SessionToken::for_user("gone");
    let before = s.redis.command_calls("mget").await;
    for _ in 0..20 {
        assert_eq!(s.app(0, stale.expose()).await, 401);
    }
    assert_eq!(s.redis.command_calls("mget").await - before, 1);

    let tracked_before = s.redis.tracking_total_keys().await;
    let mut tokens = Vec::new();
    for i in 0..5 {
        let token = s.register_and_sign_in(&format!("t{i}@example.com")).await;
        assert_eq!(s.app(0, &token).await, 200);
        tokens.push(token);
    }
    let tracked = s.redis.tracking_total_keys().await;
    assert_eq!(
        tracked - tracked_before,
        5,
        "one tracked key per cached session"
    );
    // Revoking one of them reaches the cache at once; the others stay cached.
    assert_eq!(s.post("logout", json!({}), &tokens[0]).await, 204);
    assert_eq!(s.app(0, &tokens[0]).await, 401);
    let reads = s.reads().await;
    for t in &tokens[1..] {
        assert_eq!(s.app(0, t).await, 200);
    }
    assert_eq!(s.reads().await, reads);
}

/// Past `unknown_cookie_lookups` misses in the window, an address gets 429 for unknown
/// cookies without a Redis command, while its cached sessions and other addresses go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_cookie_lookups_are_bounded_per_address() {
    let s = stack_with(Redis::start().await, 1, |cfg| {
        cfg.rate_limit.requests = 1_000_000;
        cfg.session_check.unknown_cookie_lookups = 50;
        cfg.session_check.unknown_cookie_window = authflow_shared::config::HumanDuration::secs(60);
    })
    .await;
    let token = s.register_and_sign_in("near@example.com").await;
    assert_eq!(s.app(0, &token).await, 200);
    let before = s.redis.command_calls("mget").await;
    let statuses = unknown_cookies(s.gw(0), 2_000, "127.0.0.3").await;
    let mgets = s.redis.command_calls("mget").await - before;
    let refused = statuses.iter().filter(|c| **c == 429).count();
    eprintln!("2000 unknown cookies from one address: {mgets} MGETs, {refused} answered 429");
    assert!(
        statuses.iter().all(|c| [401, 429].contains(c)),
        "{statuses:?}"
    );
    // 50 in the burst, plus what the window refills while the flood runs (under a second
    // a lookup at 50 per 60 s; a slow machine may take a few seconds).
    assert!(mgets <= 55, "{mgets} lookups reached Redis");
    assert!(refused >= 1_900, "only {refused} refused");
    // A 429 for this address keeps the cookie: nothing is cleared.
    let r = client_from(Some("127.0.0.3"))
        .get(s.gw(0).url("/app/x"))
        .header("user-agent", UA)
        .header(
            "cookie",
            format!(
                "sid={}",
                authflow_shared::token::SessionToken::for_user("x").expose()
            ),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_some());
    assert!(r.headers().get("set-cookie").is_none());
    // Another address is not affected, nor a cached session.
    let other = unknown_cookies(s.gw(0), 10, "127.0.0.4").await;
    assert!(other.iter().all(|c| *c == 401), "{other:?}");
    assert_eq!(s.app(0, &token).await, 200);
}

/// Tracking is per node on a Redis Cluster: a found session is tracked on the node that
/// holds it (`CLIENT CACHING yes` and the read go there in one transaction), so every node
/// tracks exactly its own sessions; unknown cookies are tracked on none; and a logout still
/// reaches the cache at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cluster_each_node_tracks_its_own_sessions_and_no_unknown_cookie() {
    let cluster = Cluster::start().await;
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&cluster.url());
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[]).await;
    let mut cfg = gateway_config(&cluster.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let private = free_port();
    cfg.metrics_listen = Some(format!("127.0.0.1:{private}"));
    unbounded(&mut cfg);
    let gw = Gateway::start(cfg).await;
    wait_live(private).await;
    let tracked = || {
        cluster
            .ports
            .iter()
            .map(|p| support::redis::info_field_on(*p, "tracking_total_keys"))
            .collect::<Vec<_>>()
    };

    // At least 12 users, and more until every node holds a session (a user's slot is
    // random: 12 leave a node empty about once in 40 runs).
    let mut tokens = Vec::new();
    for i in 0..60 {
        if i >= 12 && cluster.keys_per_node("session:*").iter().all(|n| *n > 0) {
            break;
        }
        let email = format!("node{i}@example.com");
        let r = client()
            .post(auth.api("signup"))
            .json(&json!({"email": email, "password": PW}))
            .send()
            .await
            .expect("signup");
        assert!(r.status().is_success(), "signup {}", r.status());
        let r = sign_in_through(&gw.url(""), &email, PW).await;
        assert_eq!(r.status(), 200);
        let token = session_cookie(&r).expect("cookie");
        for _ in 0..2 {
            let status = get_with_session(gw.url("/app/x"), &token).await.status();
            assert_eq!(status, 200);
        }
        tokens.push(token);
    }
    let sessions = cluster.keys_per_node("session:*");
    assert!(sessions.iter().all(|n| *n > 0), "{sessions:?}");
    let per_node = tracked();
    assert_eq!(
        per_node.iter().map(|n| *n as usize).collect::<Vec<_>>(),
        sessions,
        "tracked keys per node vs sessions per node"
    );
    assert_eq!(cache_state(private).await["entries"], tokens.len());

    let statuses = unknown_cookies(&gw, 300, "127.0.0.1").await;
    assert!(statuses.iter().all(|c| *c == 401), "{statuses:?}");
    assert_eq!(tracked(), per_node, "unknown cookies were tracked");

    let r = client()
        .post(gw.url("/api/v1/simple_auth/logout"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={}", tokens[0]))
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), 204);
    let status = get_with_session(gw.url("/app/x"), &tokens[0])
        .await
        .status();
    assert_eq!(status, 401, "a logged-out session was served");
    let status = get_with_session(gw.url("/app/x"), &tokens[1])
        .await
        .status();
    assert_eq!(status, 200);
}
