//! The auth service, end to end against real Redis and real databases (SQLite always,
//! PostgreSQL from a temporary cluster): every endpoint and its error cases.

mod support;

use authflow_auth::AuthConfig;
use authflow_shared::config::HumanDuration;
use authflow_shared::keys;
use authflow_shared::token::SessionToken;
use fred::interfaces::{KeysInterface, SetsInterface};
use serde_json::json;
use std::time::Duration;
use support::*;

const PW: &str = "correct horse battery";

/// The auth service on SQLite with [`auth_config`] changed by `adjust`.
async fn sqlite_service(redis: &Redis, adjust: impl FnOnce(&mut AuthConfig)) -> AuthService {
    let mut cfg = auth_config(&redis.url());
    adjust(&mut cfg);
    AuthService::start(cfg, &[]).await
}

async fn post(url: String, body: serde_json::Value) -> reqwest::Response {
    post_json(url, body).await
}

async fn post_with_cookie(url: String, body: serde_json::Value, token: &str) -> reqwest::Response {
    client()
        .post(url)
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Signs up, follows the verification link from the outbox, and returns nothing: the
/// account is ready for sign-in.
async fn register(svc: &AuthService, email: &str) {
    let r = post(svc.api("signup"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 202);
    let mail = wait_for_mail(&svc.outbox(), email, "verify-email").await;
    let r = client()
        .get(svc.api(&format!("verify-email?token={}", link_token(&mail))))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

async fn sign_in(svc: &AuthService, email: &str, password: &str) -> reqwest::Response {
    post(
        svc.api("signin"),
        json!({"email": email, "password": password}),
    )
    .await
}

/// The full account life cycle; run against SQLite and PostgreSQL.
async fn account_life_cycle(redis: &Redis, svc: &AuthService) {
    let email = "ann@example.com";
    let r = post(
        svc.api("signup"),
        json!({"email": "Ann@Example.com", "password": PW}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let signup_body = r.text().await.expect("body");

    // Unverified: the right password gets 403, a wrong one the generic 401.
    let r = sign_in(svc, email, PW).await;
    assert_eq!(r.status(), 403);
    assert_eq!(json(r).await, json!({"error": "email_not_verified"}));
    let r = sign_in(svc, email, "wrong password!").await;
    assert_eq!(r.status(), 401);

    let mail = wait_for_mail(&svc.outbox(), email, "verify-email").await;
    assert!(
        mail.contains("http://app.example.com/api/v1/simple_auth/verify-email?token="),
        "{mail}"
    );
    let token = link_token(&mail);
    assert!(token.len() >= 43, "verification token too short");
    let r = client()
        .get(svc.api(&format!("verify-email?token={token}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    let r = client()
        .get(svc.api(&format!("verify-email?token={token}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400, "verification token reused");

    // Sign in: cookie only in Set-Cookie, record under the hashed id with its index keys.
    let r = sign_in(svc, email, PW).await;
    assert_eq!(r.status(), 200);
    let set_cookie = r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let session = session_cookie(&r).expect("session cookie");
    assert!(SessionToken::parse(&session).is_some());
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "dev config is plain HTTP");
    let body = json(r).await;
    assert_eq!(body["email"], email);
    assert!(body["expires_at"].as_u64().is_some());
    assert!(!body.to_string().contains(&session));
    let user_id = body["user_id"].as_str().expect("user id").to_owned();

    let id = SessionToken::parse(&session).expect("token").id();
    let c = redis.client().await;
    let raw: String = c.get(keys::session(&id)).await.expect("session record");
    assert!(!raw.contains(&session), "raw token stored in Redis");
    let record: authflow_shared::session::SessionRecord =
        serde_json::from_str(&raw).expect("record");
    assert_eq!(record.user_id, user_id);
    assert_eq!(record.fingerprint, fingerprint("127.0.0.1", UA));
    let members: Vec<String> = c
        .smembers(keys::user_sessions(&user_id))
        .await
        .expect("index");
    assert_eq!(members, vec![id.clone()]);
    let devices: Vec<String> = c.smembers(keys::device(&user_id)).await.expect("devices");
    assert_eq!(devices, vec![record.fingerprint.clone()]);
    let uid: String = c.get(keys::user_id(&id)).await.expect("user_id key");
    assert_eq!(uid, user_id);
    let ttl: i64 = c
        .ttl(keys::user_profile(&user_id))
        .await
        .expect("profile ttl");
    assert!((1..=1800).contains(&ttl), "profile ttl {ttl}");

    // Signing up again with the same address looks exactly the same, and mails the owner.
    let r = post(
        svc.api("signup"),
        json!({"email": email, "password": "another password"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.text().await.expect("body"), signup_body);
    wait_for_mail(&svc.outbox(), email, "Someone tried to create an account").await;

    // Three more sessions, then a reset revokes them all.
    let mut sessions = vec![session];
    for _ in 0..2 {
        sessions.push(session_cookie(&sign_in(svc, email, PW).await).expect("cookie"));
    }
    let r = post(svc.api("forgot-password"), json!({"email": email})).await;
    assert_eq!(r.status(), 202);
    let forgot_body = r.text().await.expect("body");
    let r = post(
        svc.api("forgot-password"),
        json!({"email": "nobody@example.com"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(
        r.text().await.expect("body"),
        forgot_body,
        "forgot-password reveals accounts"
    );
    let mail = wait_for_mail(&svc.outbox(), email, "reset-password").await;
    assert!(mail.contains("http://app.example.com/auth/reset-password?token="));
    let reset = link_token(&mail);

    let r = post(
        svc.api("reset-password/update"),
        json!({"token": reset, "new_password": "short"}),
    )
    .await;
    assert_eq!(r.status(), 422);
    assert_eq!(json(r).await["field"], "password");
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": "not-a-token", "new_password": "a new long password"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await, json!({"error": "invalid_token"}));
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": reset, "new_password": "a new long password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "no automatic sign-in after reset"
    );
    for s in &sessions {
        let id = SessionToken::parse(s).expect("token").id();
        let n: i64 = c.exists(keys::session(&id)).await.expect("exists");
        assert_eq!(n, 0, "a session survived the reset");
    }
    let n: i64 = c
        .exists(keys::user_sessions(&user_id))
        .await
        .expect("exists");
    assert_eq!(n, 0);
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": reset, "new_password": "yet another password"}),
    )
    .await;
    assert_eq!(r.status(), 400, "reset token reused");
    assert_eq!(sign_in(svc, email, PW).await.status(), 401);
    assert_eq!(
        sign_in(svc, email, "a new long password").await.status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_life_cycle_on_sqlite() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    account_life_cycle(&redis, &svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_life_cycle_on_postgresql() {
    let redis = Redis::start().await;
    let pg = Postgres::start().await;
    let mut cfg = auth_config(&redis.url());
    cfg.database.url = pg.url();
    let svc = AuthService::start(cfg, &[]).await;
    account_life_cycle(&redis, &svc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_4xx_with_a_json_body() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    let cases = [
        (
            json!({"email": "not-an-email", "password": PW}),
            422,
            "email",
        ),
        (
            json!({"email": "a@example.com", "password": "short"}),
            422,
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "x".repeat(129)}),
            422,
            "password",
        ),
        (
            json!({"email": "a@example.com", "password": "password123"}),
            422,
            "password",
        ),
    ];
    for (body, status, field) in cases {
        let r = post(svc.api("signup"), body.clone()).await;
        assert_eq!(r.status(), status, "{body}");
        let b = json(r).await;
        assert_eq!(b["error"], "validation_failed");
        assert_eq!(b["field"], field);
        assert!(b["reason"].as_str().is_some_and(|s| !s.is_empty()));
    }
    let r = client()
        .post(svc.api("signup"))
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    assert_eq!(json(r).await["error"], "invalid_json");
    let r = client()
        .post(svc.api("signup"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 415);
    let r = client()
        .post(svc.api("signin"))
        .json(&json!({"email": "a@example.com", "password": PW, "admin": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400, "unknown fields are refused");
    let r = client()
        .get(svc.api("signin"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let r = client()
        .post(svc.api("signup"))
        .header("content-type", "application/json")
        .body("x".repeat(20_000))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 413);
    let r = client().get(svc.api("nope")).send().await.expect("request");
    assert_eq!(r.status(), 404);
    assert_eq!(json(r).await, json!({"error": "not_found"}));
    let r = client()
        .get(svc.api("verify-email"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_and_unknown_email_look_the_same() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    register(&svc, "bob@example.com").await;
    let wrong = sign_in(&svc, "bob@example.com", "not the password").await;
    let unknown = sign_in(&svc, "nobody@example.com", "not the password").await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert_eq!(
        wrong.text().await.expect("body"),
        unknown.text().await.expect("body")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_revokes_a_presented_session_instead_of_adopting_it() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    register(&svc, "cat@example.com").await;
    let a = session_cookie(&sign_in(&svc, "cat@example.com", PW).await).expect("cookie a");
    let r = post_with_cookie(
        svc.api("signin"),
        json!({"email": "cat@example.com", "password": PW}),
        &a,
    )
    .await;
    assert_eq!(r.status(), 200);
    let b = session_cookie(&r).expect("cookie b");
    assert_ne!(a, b);
    let c = redis.client().await;
    let old: i64 = c
        .exists(keys::session(&SessionToken::parse(&a).expect("a").id()))
        .await
        .expect("exists");
    let new: i64 = c
        .exists(keys::session(&SessionToken::parse(&b).expect("b").id()))
        .await
        .expect("exists");
    assert_eq!((old, new), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_deletes_the_session_and_its_index_entries() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    register(&svc, "dan@example.com").await;
    let r = sign_in(&svc, "dan@example.com", PW).await;
    let token = session_cookie(&r).expect("cookie");
    let user_id = json(r).await["user_id"].as_str().expect("id").to_owned();
    let id = SessionToken::parse(&token).expect("token").id();
    let r = post_with_cookie(svc.api("logout"), json!({}), &token).await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        r.headers()["set-cookie"],
        "sid=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax"
    );
    let c = redis.client().await;
    let n: i64 = c
        .exists(vec![keys::session(&id), keys::user_id(&id)])
        .await
        .expect("exists");
    assert_eq!(n, 0);
    let member: bool = c
        .sismember(keys::user_sessions(&user_id), &id)
        .await
        .expect("sismember");
    assert!(!member);
    // Without a session (or with a dead one) logout still answers 204.
    assert_eq!(
        client()
            .post(svc.api("logout"))
            .send()
            .await
            .expect("request")
            .status(),
        204
    );
    assert_eq!(
        post_with_cookie(svc.api("logout"), json!({}), &token)
            .await
            .status(),
        204
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_tokens_expire() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| {
        c.password.reset_token_ttl = HumanDuration::secs(1)
    })
    .await;
    register(&svc, "eve@example.com").await;
    post(
        svc.api("forgot-password"),
        json!({"email": "eve@example.com"}),
    )
    .await;
    let token =
        link_token(&wait_for_mail(&svc.outbox(), "eve@example.com", "reset-password").await);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": token, "new_password": "a new long password"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    assert_eq!(
        sign_in(&svc, "eve@example.com", PW).await.status(),
        200,
        "password unchanged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verification_can_be_switched_off() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| c.signup.require_email_verification = false).await;
    assert_eq!(
        post(
            svc.api("signup"),
            json!({"email": "fay@example.com", "password": PW})
        )
        .await
        .status(),
        202
    );
    assert_eq!(sign_in(&svc, "fay@example.com", PW).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_each_dependency_and_fails_when_redis_is_down() {
    let mut redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    let r = client()
        .get(svc.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await,
        json!({"status": "ok", "redis": "up", "user_store": {"provider": "builtin", "state": "up"}})
    );
    redis.kill();
    let r = client()
        .get(svc.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["redis"], "down");
    let status = |path: &str| {
        let url = svc.url(path);
        async move {
            client()
                .get(url)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/readyz").await, 503, "/readyz is /health");
    assert_eq!(status("/livez").await, 200, "the process still serves");
    let r = sign_in(&svc, "x@example.com", PW).await;
    assert!(r.status() == 401 || r.status() == 503, "{}", r.status());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_smtp_when_configured() {
    let redis = Redis::start().await;
    let smtp = SmtpSink::start().await;
    let smtp_url = format!("smtp://127.0.0.1:{}", smtp.port);
    let svc = sqlite_service(&redis, |c| c.mail.smtp_url = Some(smtp_url)).await;
    let r = post(
        svc.api("signup"),
        json!({"email": "sam@example.com", "password": PW}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let mail = poll(
        || async { smtp.messages.lock().expect("lock").first().cloned() },
        Option::is_some,
    )
    .await
    .expect("a message over SMTP");
    assert!(mail.contains("To: sam@example.com"), "{mail}");
    assert!(
        mail.contains("Subject: Confirm your email address"),
        "{mail}"
    );
    assert!(
        outbox_messages(&svc.outbox()).is_empty(),
        "SMTP mode must not write the outbox"
    );
    // The link survives the transfer encoding and verifies the address.
    let decoded = if mail.contains("quoted-printable") {
        decode_qp(&mail)
    } else {
        mail.clone()
    };
    let token = link_token(&decoded);
    let r = client()
        .get(svc.api(&format!("verify-email?token={token}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "{decoded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failures_lock_the_account_whatever_the_password() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    register(&svc, "ted@example.com").await;
    for email in ["ted@example.com", "nobody@example.com"] {
        for i in 0..5 {
            assert_eq!(
                sign_in(&svc, email, "wrong password!").await.status(),
                401,
                "{email} attempt {i}"
            );
        }
        // Locked now: even the right password gets 429, and unknown addresses look the same.
        let r = sign_in(&svc, email, PW).await;
        assert_eq!(r.status(), 429, "{email}");
        let retry: u64 = r.headers()["retry-after"]
            .to_str()
            .expect("ascii")
            .parse()
            .expect("seconds");
        assert!(retry >= 1);
        assert_eq!(json(r).await, json!({"error": "too_many_attempts"}));
    }
    // A password reset keeps working during the lock.
    post(
        svc.api("forgot-password"),
        json!({"email": "ted@example.com"}),
    )
    .await;
    let reset =
        link_token(&wait_for_mail(&svc.outbox(), "ted@example.com", "reset-password").await);
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": reset, "new_password": "a new long password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    // The first lock lasts one second; then the right password works and resets the count.
    let r = poll(
        || sign_in(&svc, "ted@example.com", "a new long password"),
        |r| r.status() != 429,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        sign_in(&svc, "ted@example.com", "wrong password!")
            .await
            .status(),
        401
    );
}

/// A reset link for `email`, from the outbox.
async fn reset_link(svc: &AuthService, email: &str) -> String {
    let before = outbox_messages(&svc.outbox()).len();
    let r = post(svc.api("forgot-password"), json!({"email": email})).await;
    assert_eq!(r.status(), 202);
    let mail = poll(
        || async { outbox_messages(&svc.outbox()) },
        |m| m.len() > before,
    )
    .await;
    let last = mail.last().expect("a reset mail");
    assert!(last.contains("reset-password"), "{last}");
    link_token(last)
}

async fn session_alive(redis: &Redis, token: &str) -> bool {
    let id = SessionToken::parse(token).expect("token").id();
    let n: i64 = redis
        .client()
        .await
        .exists(keys::session(&id))
        .await
        .expect("exists");
    n == 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_while_redis_hangs_changes_nothing_and_the_link_still_works() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| c.redis.timeout = HumanDuration::millis(300)).await;
    register(&svc, "ria@example.com").await;
    let old = session_cookie(&sign_in(&svc, "ria@example.com", PW).await).expect("cookie");
    let link = reset_link(&svc, "ria@example.com").await;

    redis.pause();
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": link, "new_password": "another long password"}),
    )
    .await;
    redis.resume();
    assert_eq!(r.status(), 503);
    assert_eq!(json(r).await["error"], "session_store_unavailable");
    // The password did not change and the link is still usable. (The revoke that timed out
    // may still run once Redis wakes up: sessions ending is the safe side of a failure.)
    let again = sign_in(&svc, "ria@example.com", PW).await;
    assert_eq!(again.status(), 200, "the old password must still work");
    let again = session_cookie(&again).expect("cookie");
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": link, "new_password": "another long password"}),
    )
    .await;
    assert_eq!(r.status(), 200, "the link must still work");
    for token in [&old, &again] {
        assert!(
            !session_alive(&redis, token).await,
            "a session survived the reset"
        );
    }
    assert_eq!(sign_in(&svc, "ria@example.com", PW).await.status(), 401);
}

/// A sign-in with the old password raced against a password reset, many times: whichever
/// wins, no session made with the old password may survive the reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_racing_a_reset_never_survives_it() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| {
        c.throttle.lock_after = 1000;
        c.throttle.hard_cap = 1000;
    })
    .await;
    let email = "race@example.com";
    register(&svc, email).await;
    let mut password = PW.to_owned();
    let mut won = 0;
    for round in 0..12 {
        let link = reset_link(&svc, email).await;
        let next = format!("{PW} round {round}");
        let (signed_in, reset) = tokio::join!(
            sign_in(&svc, email, &password),
            post(
                svc.api("reset-password/update"),
                json!({"token": link, "new_password": next}),
            )
        );
        assert_eq!(reset.status(), 200, "round {round}");
        if let Some(token) = session_cookie(&signed_in) {
            won += 1;
            assert!(
                !session_alive(&redis, &token).await,
                "round {round}: a session made with the old password survived the reset"
            );
        } else {
            assert_eq!(signed_in.status(), 401, "round {round}");
        }
        password = next;
    }
    eprintln!("sign-ins that completed before losing to the reset: {won} of 12");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_every_session_cookie_presented() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    register(&svc, "two@example.com").await;
    let a = session_cookie(&sign_in(&svc, "two@example.com", PW).await).expect("cookie");
    let b = session_cookie(&sign_in(&svc, "two@example.com", PW).await).expect("cookie");
    let r = client()
        .post(svc.api("logout"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={a}; sid={b}"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 204);
    assert!(!session_alive(&redis, &a).await);
    assert!(!session_alive(&redis, &b).await);
}

/// Twenty wrong guesses at once: the check and the count are one step, so at most
/// `lock_after` of them are ever checked against the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_cannot_outrun_the_lock() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    register(&svc, "par@example.com").await;
    let guesses = (0..20).map(|i| {
        let url = svc.api("signin");
        async move {
            post(
                url,
                json!({"email": "par@example.com", "password": format!("guess number {i}")}),
            )
            .await
            .status()
            .as_u16()
        }
    });
    let codes = futures_join_all(guesses).await;
    let checked = codes.iter().filter(|c| **c == 401).count();
    let refused = codes.iter().filter(|c| **c == 429).count();
    assert_eq!(checked + refused, 20, "{codes:?}");
    assert!(checked <= 5, "{checked} guesses were checked: {codes:?}");
}

async fn futures_join_all<F: std::future::Future<Output = u16> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<u16> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_hard_cap_only_a_reset_unlocks() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| {
        c.throttle.lock_after = 2;
        c.throttle.max_lock = HumanDuration::secs(1);
        c.throttle.hard_cap = 4;
    })
    .await;
    register(&svc, "cap@example.com").await;
    // Guess until the cap has let four guesses be checked (however slowly this machine
    // runs them), then keep guessing for longer than any lock: none is checked again.
    let mut answers = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while answers.iter().filter(|c| **c == 401).count() < 4 {
        assert!(std::time::Instant::now() < deadline, "{answers:?}");
        answers.push(
            sign_in(&svc, "cap@example.com", "wrong password!")
                .await
                .status()
                .as_u16(),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let past_every_lock = std::time::Instant::now() + Duration::from_millis(3500);
    while std::time::Instant::now() < past_every_lock {
        let code = sign_in(&svc, "cap@example.com", "wrong password!")
            .await
            .status()
            .as_u16();
        answers.push(code);
        assert_eq!(code, 429, "{answers:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Long past any lock: still refused, even with the right password.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(sign_in(&svc, "cap@example.com", PW).await.status(), 429);
    let link = reset_link(&svc, "cap@example.com").await;
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": link, "new_password": "a brand new password"}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        sign_in(&svc, "cap@example.com", "a brand new password")
            .await
            .status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gets_at_most_one_account_mail_per_cooldown() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| {
        c.throttle.mail_cooldown = HumanDuration::secs(60)
    })
    .await;
    register(&svc, "bomb@example.com").await;
    let before = outbox_messages(&svc.outbox()).len();
    for _ in 0..5 {
        let r = post(
            svc.api("forgot-password"),
            json!({"email": "bomb@example.com"}),
        )
        .await;
        assert_eq!(r.status(), 202);
        let r = post(
            svc.api("signup"),
            json!({"email": "bomb@example.com", "password": PW}),
        )
        .await;
        assert_eq!(r.status(), 202);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_bomb: Vec<String> = outbox_messages(&svc.outbox())
        .into_iter()
        .skip(before)
        .filter(|m| m.contains("To: bomb@example.com"))
        .collect();
    let resets = to_bomb
        .iter()
        .filter(|m| m.contains("reset-password"))
        .count();
    let registered = to_bomb
        .iter()
        .filter(|m| m.contains("tried to register"))
        .count();
    assert_eq!(
        (resets, registered, to_bomb.len()),
        (1, 1, 2),
        "{to_bomb:?}"
    );
}

/// The medians of 15 interleaved timings of `a` and `b` (round `i` runs `a(i)` then `b(i)`),
/// in seconds, and `b`'s over `a`'s. Interleaving spreads a noisy neighbour over both.
async fn median_ratio<FA, FB>(
    mut a: impl FnMut(usize) -> FA,
    mut b: impl FnMut(usize) -> FB,
) -> (f64, f64, f64)
where
    FA: std::future::Future<Output = ()>,
    FB: std::future::Future<Output = ()>,
{
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..15 {
        let t = std::time::Instant::now();
        a(i).await;
        ta.push(t.elapsed());
        let t = std::time::Instant::now();
        b(i).await;
        tb.push(t.elapsed());
    }
    ta.sort();
    tb.sort();
    let (ma, mb) = (ta[7].as_secs_f64(), tb[7].as_secs_f64());
    (ma, mb, mb / ma)
}

/// An unknown address costs a password check too (against a dummy hash), so the time of an
/// answer does not tell whether an account exists. Medians of interleaved attempts, with a
/// margin wide enough for a noisy 2-core machine and far too narrow for a skipped argon2
/// (which would answer ~50x faster).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_email_and_wrong_password_take_the_same_time() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |c| {
        c.throttle.lock_after = 1000;
        c.throttle.hard_cap = 1000;
    })
    .await;
    register(&svc, "timed@example.com").await;
    let svc = &svc;
    let (k, u, ratio) = median_ratio(
        |_| async move {
            assert_eq!(
                sign_in(svc, "timed@example.com", "not the password")
                    .await
                    .status(),
                401
            );
        },
        |i| async move {
            let nobody = format!("nobody{i}@example.com");
            assert_eq!(
                sign_in(svc, &nobody, "not the password").await.status(),
                401
            );
        },
    )
    .await;
    eprintln!("median wrong password {k:.4}s, unknown email {u:.4}s, ratio {ratio:.2}");
    assert!(
        (0.5..2.0).contains(&ratio),
        "ratio {ratio:.2}: timing tells accounts apart"
    );
}

/// Forwards connections to `port`, holding each of the server's replies `delay`: an SMTP
/// server slow to answer, as a remote one under load is (every command of a mail waits).
async fn slow_relay(port: u16, delay: Duration) -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let relay_port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let Ok(outbound) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await else {
                continue;
            };
            let (mut client_r, mut client_w) = inbound.into_split();
            let (mut server_r, mut server_w) = outbound.into_split();
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut client_r, &mut server_w).await;
            });
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n @ 1..) = server_r.read(&mut buf).await {
                    tokio::time::sleep(delay).await;
                    if client_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (relay_port, task)
}

/// A sign-up answers the same for a new and a registered address, in what it says and in
/// time (ASVS 5.0 6.3.8): both hash the password, make the same write, ask the mail
/// cooldown once and hand one mail to the queue, which sends it after the answer. The test
/// makes the difference a mail would make plain: with an SMTP server that takes 100 ms per
/// reply and a cooldown that keeps the registered address from getting a mail on every try,
/// a sign-up that waited for its mail would take several times as long for new addresses
/// (measured: 13x before the queue; 2.1x with a slow greeting only, as lettre pools its
/// connections). Measured as the sign-in timing test above measures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_registered_addresses_sign_up_in_the_same_time() {
    let redis = Redis::start().await;
    let smtp = SmtpSink::start().await;
    let (relay, _relay) = slow_relay(smtp.port, Duration::from_millis(100)).await;
    let svc = sqlite_service(&redis, |c| {
        c.mail.smtp_url = Some(format!("smtp://127.0.0.1:{relay}"));
        c.throttle.mail_cooldown = HumanDuration::secs(60);
    })
    .await;
    let taken = "taken@example.com";
    let r = post(svc.api("signup"), json!({"email": taken, "password": PW})).await;
    assert_eq!(r.status(), 202);
    let mail = poll(
        || async { smtp.messages.lock().expect("lock").first().cloned() },
        Option::is_some,
    )
    .await
    .expect("the verification mail");
    let r = client()
        .get(svc.api(&format!(
            "verify-email?token={}",
            link_token(&decode_qp(&mail))
        )))
        .send()
        .await
        .expect("verify");
    assert_eq!(r.status(), 200);

    let svc = &svc;
    let bodies = std::sync::Mutex::new(std::collections::BTreeSet::new());
    let bodies = &bodies;
    let sign_up = |email: String| async move {
        let r = post(svc.api("signup"), json!({"email": email, "password": PW})).await;
        assert_eq!(r.status(), 202);
        let body = r.text().await.expect("body");
        bodies.lock().expect("lock").insert(body);
    };
    let (registered, new, ratio) = median_ratio(
        |_| sign_up(taken.to_owned()),
        |i| sign_up(format!("fresh{i}@example.com")),
    )
    .await;
    eprintln!("median sign-up registered {registered:.4}s, new {new:.4}s, ratio {ratio:.2}");
    assert_eq!(bodies.lock().expect("lock").len(), 1, "the answers differ");
    assert!(
        (0.5..2.0).contains(&ratio),
        "ratio {ratio:.2}: sign-up timing tells registered addresses apart"
    );
}

/// Someone signs up first with another person's address and a password of their choosing.
/// When the owner then signs up, their own link confirms their own password; the earlier
/// link no longer confirms anything, and the first password never opens the account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_up_first_with_someone_elses_address_does_not_capture_the_account() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    let email = "owner@example.com";
    let attacker_pw = "attacker chosen password";
    let r = post(
        svc.api("signup"),
        json!({"email": email, "password": attacker_pw}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let first = link_token(&wait_for_mail(&svc.outbox(), email, "verify-email").await);
    let r = post(svc.api("signup"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 202);
    let second = poll(
        || async {
            outbox_messages(&svc.outbox())
                .into_iter()
                .filter(|m| m.contains("verify-email"))
                .map(|m| link_token(&m))
                .find(|t| *t != first)
        },
        Option::is_some,
    )
    .await
    .expect("the owner's own verification link");
    let verify = |t: String| {
        let url = svc.api(&format!("verify-email?token={t}"));
        async move { client().get(url).send().await.expect("request").status() }
    };
    assert_eq!(
        verify(first.clone()).await,
        400,
        "the earlier link must be dead"
    );
    assert_eq!(verify(second).await, 200);
    assert_eq!(sign_in(&svc, email, attacker_pw).await.status(), 401);
    assert_eq!(sign_in(&svc, email, PW).await.status(), 200);
    assert_eq!(verify(first).await, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let redis = Redis::start().await;
    let svc = sqlite_service(&redis, |_| {}).await;
    let answers = [
        client()
            .get(svc.url("/auth/signin"))
            .send()
            .await
            .expect("page"),
        client().get(svc.url("/nowhere")).send().await.expect("404"),
        post(svc.api("signin"), json!({"email": "x@example.com"})).await,
        client().post(svc.api("logout")).send().await.expect("204"),
    ];
    for r in answers {
        let status = r.status();
        assert_eq!(r.headers()["x-content-type-options"], "nosniff", "{status}");
        assert_eq!(r.headers()["referrer-policy"], "no-referrer", "{status}");
        assert_eq!(r.headers()["cache-control"], "no-store", "{status}");
    }
}
