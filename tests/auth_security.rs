//! The auth service against someone who knows a victim's address: a squatter who signed up
//! with it first, old links outliving a password change, guessing that would lock the owner
//! out, and addresses that look alike. End to end over HTTP against real Redis and SQLite
//! (and the gateway where the cookie is what matters).

mod support;

use authflow_auth::AuthConfig;
use serde_json::json;
use support::*;

const PW: &str = "correct horse battery";

/// The auth service on SQLite with [`auth_config`] changed by `adjust`.
async fn auth_service(redis: &Redis, adjust: impl FnOnce(&mut AuthConfig)) -> AuthService {
    let mut cfg = auth_config(&redis.url());
    adjust(&mut cfg);
    AuthService::start(cfg, &[]).await
}

/// The newest verification link in the outbox that is not one of `seen`.
async fn new_verification_link(svc: &AuthService, seen: &[String]) -> String {
    poll(
        || async {
            outbox_messages(&svc.outbox())
                .into_iter()
                .filter(|m| m.contains("verify-email"))
                .map(|m| link_token(&m))
                .rfind(|t| !seen.contains(t))
        },
        Option::is_some,
    )
    .await
    .expect("a new verification link")
}

async fn follow_verification(base: &str, token: &str) -> u16 {
    client()
        .get(format!(
            "{base}/api/v1/simple_auth/verify-email?token={token}"
        ))
        .send()
        .await
        .expect("verify")
        .status()
        .as_u16()
}

/// With `require_email_verification = false`, a squatter signs up with the owner's address
/// and signs in. The owner then signs up and follows the mailed link, which sets the
/// owner's password: the squatter's session must end with it (ASVS 5.0 7.4.3), through the
/// gateway as for any other request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_verification_ends_a_squatters_session() {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let auth = auth_service(&redis, |c| c.signup.require_email_verification = false).await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    let gw = Gateway::start(cfg).await;
    let base = gw.url("");
    let email = "victim@example.com";
    let squatter_pw = "the squatter's own password";

    let r = post_json(
        gw.url("/api/v1/simple_auth/signup"),
        json!({"email": email, "password": squatter_pw}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let squatters_link = new_verification_link(&auth, &[]).await;
    let r = sign_in_through(&base, email, squatter_pw).await;
    assert_eq!(r.status(), 200, "verification is not required to sign in");
    let squatter = session_cookie(&r).expect("the squatter's session");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &squatter).await.status(),
        200
    );

    let r = post_json(
        gw.url("/api/v1/simple_auth/signup"),
        json!({"email": email, "password": PW}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let owners_link = new_verification_link(&auth, &[squatters_link]).await;
    assert_eq!(follow_verification(&base, &owners_link).await, 200);

    let r = get_with_session(gw.url("/app/x"), &squatter).await;
    assert_eq!(
        r.status(),
        401,
        "the squatter's session outlived the owner's verification"
    );
    assert_eq!(
        sign_in_through(&base, email, squatter_pw).await.status(),
        401
    );
    let owner = session_cookie(&sign_in_through(&base, email, PW).await).expect("owner");
    assert_eq!(
        get_with_session(gw.url("/app/x"), &owner).await.status(),
        200
    );
}

/// A password change retires every open link of the account: a reset link asked for
/// before it, and the verification link of the sign-up (which would set the sign-up's
/// password back), both answer 400 afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_change_retires_earlier_reset_and_verification_links() {
    let redis = Redis::start().await;
    let svc = auth_service(&redis, |c| c.signup.require_email_verification = false).await;
    let email = "changer@example.com";
    let r = post_json(svc.api("signup"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 202);
    let verification = new_verification_link(&svc, &[]).await;
    let r = post_json(svc.api("forgot-password"), json!({"email": email})).await;
    assert_eq!(r.status(), 202);
    let reset = link_token(&wait_for_mail(&svc.outbox(), email, "reset-password").await);

    let r = post_json(svc.api("signin"), json!({"email": email, "password": PW})).await;
    let session = session_cookie(&r).expect("session");
    let new_pw = "a freshly changed password";
    let r = client()
        .post(svc.api("change-password"))
        .header("user-agent", UA)
        .header("cookie", format!("sid={session}"))
        .json(&json!({"old_password": PW, "new_password": new_pw}))
        .send()
        .await
        .expect("change");
    assert_eq!(r.status(), 200);

    let r = post_json(
        svc.api("reset-password/update"),
        json!({"token": reset, "new_password": "the attacker's reset password"}),
    )
    .await;
    assert_eq!(
        r.status(),
        400,
        "a reset link from before the change still worked"
    );
    assert_eq!(json(r).await["error"], "invalid_token");
    assert_eq!(
        follow_verification(&svc.url(""), &verification).await,
        400,
        "a verification link from before the change still worked"
    );
    let r = post_json(
        svc.api("signin"),
        json!({"email": email, "password": new_pw}),
    )
    .await;
    assert_eq!(r.status(), 200, "the changed password must hold");
    let r = post_json(svc.api("signin"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 401);
}

/// Addresses a person cannot tell apart are one account: with a zero-width space, a soft
/// hyphen or full-width letters they sign up (the owner is told, no second account) and
/// sign in as the same user. An address with a look-alike letter from another script is
/// refused with a 400 that says why, wherever it is typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn look_alike_addresses_are_one_account_or_refused() {
    let redis = Redis::start().await;
    let svc = auth_service(&redis, |_| {}).await;
    let email = "ann@example.com";
    let r = post_json(svc.api("signup"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 202);
    let link = new_verification_link(&svc, &[]).await;
    assert_eq!(follow_verification(&svc.url(""), &link).await, 200);
    let r = post_json(svc.api("signin"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 200);
    let user_id = json(r).await["user_id"].clone();

    let r = post_json(
        svc.api("signup"),
        json!({"email": "an\u{200B}n@Example.com", "password": "another person's password"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    wait_for_mail(&svc.outbox(), email, "tried to register").await;
    for spelling in [
        "a\u{00AD}nn@example.com",
        "an\u{200B}n@example.com",
        "\u{FF41}\u{FF4E}\u{FF4E}@example.com",
    ] {
        let r = post_json(
            svc.api("signin"),
            json!({"email": spelling, "password": PW}),
        )
        .await;
        assert_eq!(r.status(), 200, "{spelling:?}");
        assert_eq!(json(r).await["user_id"], user_id, "{spelling:?}");
    }
    assert!(
        !outbox_messages(&svc.outbox())
            .iter()
            .any(|m| m.contains("\u{200B}")),
        "a mail went to the zero-width spelling"
    );

    let cyrillic_a = "\u{0430}nn@example.com";
    for (endpoint, body) in [
        ("signup", json!({"email": cyrillic_a, "password": PW})),
        ("signin", json!({"email": cyrillic_a, "password": PW})),
        ("forgot-password", json!({"email": cyrillic_a})),
    ] {
        let r = post_json(svc.api(endpoint), body).await;
        assert_eq!(r.status(), 400, "{endpoint}");
        let body = json(r).await;
        assert_eq!(body["error"], "mixed_script_email", "{endpoint}: {body}");
        assert_eq!(body["field"], "email", "{endpoint}: {body}");
        assert!(
            body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("scripts")),
            "{endpoint}: {body}"
        );
    }
}

/// A sign-in from `client` as the gateway reports it (`X-Forwarded-For` from a trusted
/// proxy, which the harness's auth config makes loopback).
async fn sign_in_from(svc: &AuthService, client: &str, email: &str, password: &str) -> u16 {
    client_from(None)
        .post(svc.api("signin"))
        .header("user-agent", UA)
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("signin")
        .status()
        .as_u16()
}

/// An auth service with a tight throttle (locks from the 2nd failure, 1 s at most, a cap of 4
/// from new addresses) and a verified account that signed in once from `home`.
async fn owner_at_home(redis: &Redis, email: &str, home: &str) -> AuthService {
    let svc = auth_service(redis, |c| {
        c.throttle.lock_after = 2;
        c.throttle.max_lock = authflow_shared::config::HumanDuration::secs(1);
        c.throttle.hard_cap = 4;
    })
    .await;
    let r = post_json(svc.api("signup"), json!({"email": email, "password": PW})).await;
    assert_eq!(r.status(), 202);
    let link = new_verification_link(&svc, &[]).await;
    assert_eq!(follow_verification(&svc.url(""), &link).await, 200);
    assert_eq!(sign_in_from(&svc, home, email, PW).await, 200);
    svc
}

/// Slow guessing from addresses the owner never signed in from must not lock the owner
/// out: the attacker spreads guesses over several addresses until the account is past its
/// cap for new addresses, and is then refused (429) even with the right password, while the
/// owner, at the address they signed in from before, signs in. The attacker's own address
/// stays locked too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_from_elsewhere_does_not_lock_the_owner_out() {
    let redis = Redis::start().await;
    let (email, home) = ("owner@example.com", "198.51.100.7");
    let svc = owner_at_home(&redis, email, home).await;

    let mut answers = Vec::new();
    for i in 0..24 {
        let attacker = format!("203.0.113.{}", 10 + i % 6);
        answers.push(sign_in_from(&svc, &attacker, email, "guess after guess").await);
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    let checked = answers.iter().filter(|c| **c == 401).count();
    assert_eq!(
        checked, 4,
        "only hard_cap guesses are ever checked: {answers:?}"
    );
    assert!(
        answers.iter().all(|c| *c == 401 || *c == 429),
        "{answers:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        sign_in_from(&svc, "203.0.113.10", email, PW).await,
        429,
        "a new address must stay locked out past the cap, even with the password"
    );
    assert_eq!(
        sign_in_from(&svc, "192.0.2.99", email, PW).await,
        429,
        "so must any other new address"
    );
    assert_eq!(
        sign_in_from(&svc, home, email, PW).await,
        200,
        "the owner at a familiar address was locked out by someone else's guessing"
    );
    assert_eq!(
        sign_in_from(&svc, "203.0.113.11", email, "one more guess").await,
        429,
        "the attacker must still be throttled"
    );
}

/// A reset is what a locked-out owner is told to do: it must not make their own address new
/// again, or guessing from elsewhere locks them out once more, reset after reset. The address
/// the reset was completed from stays familiar.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reset_the_owners_address_is_still_theirs() {
    let redis = Redis::start().await;
    let (email, home) = ("resetter@example.com", "198.51.100.8");
    let svc = owner_at_home(&redis, email, home).await;

    let from_home = |endpoint: &'static str, body: serde_json::Value| {
        client_from(None)
            .post(svc.api(endpoint))
            .header("user-agent", UA)
            .header("x-forwarded-for", home)
            .json(&body)
            .send()
    };
    let r = from_home("forgot-password", json!({"email": email}))
        .await
        .expect("forgot");
    assert_eq!(r.status(), 202);
    let reset = link_token(&wait_for_mail(&svc.outbox(), email, "reset-password").await);
    let new_pw = "a brand new password after reset";
    let r = from_home(
        "reset-password/update",
        json!({"token": reset, "new_password": new_pw}),
    )
    .await
    .expect("reset");
    assert_eq!(r.status(), 200);

    for i in 0..24 {
        let attacker = format!("203.0.113.{}", 40 + i % 6);
        sign_in_from(&svc, &attacker, email, "guess after guess").await;
        tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(
        sign_in_from(&svc, "192.0.2.98", email, new_pw).await,
        429,
        "the account is past its cap for new addresses"
    );
    assert_eq!(
        sign_in_from(&svc, home, email, new_pw).await,
        200,
        "the reset made the owner's own address new again"
    );
}
