//! The auth service with `provider = "supabase"` against a GoTrue test server that follows
//! GoTrue's documented HTTP contract (the real Supabase cannot be reached here).

mod support;

use authflow_shared::keys;
use authflow_shared::token::SessionToken;
use fred::interfaces::KeysInterface;
use serde_json::json;
use support::gotrue::GoTrue;
use support::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const PW: &str = "correct horse battery";

async fn start(redis: &Redis, gotrue: &GoTrue) -> AuthService {
    let cfg = supabase_auth_config(&redis.url(), &gotrue.url(), "anon-test-key");
    // The encryption key comes from the environment, as a secret should.
    AuthService::start(cfg, &[("AUTHFLOW_ENCRYPTION_KEY", KEY)]).await
}

/// The recovery token GoTrue "emailed" (it is sent after our 202, so wait for it).
async fn recovery_token(gotrue: &GoTrue, email: &str) -> String {
    poll(
        || async {
            gotrue
                .state
                .lock()
                .expect("lock")
                .otp_for(email, "recovery")
        },
        Option::is_some,
    )
    .await
    .expect("recovery otp")
}

async fn post(url: String, body: serde_json::Value, cookie: Option<&str>) -> reqwest::Response {
    let mut r = client().post(url).header("user-agent", UA).json(&body);
    if let Some(c) = cookie {
        r = r.header("cookie", format!("sid={c}"));
    }
    r.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_sign_up_sign_in_logout_and_reset() {
    let redis = Redis::start().await;
    let gotrue = GoTrue::start().await;
    let svc = start(&redis, &gotrue).await;
    let email = "gil@example.com";

    let r = post(
        svc.api("signup"),
        json!({"email": email, "password": PW}),
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    let signup_body = r.text().await.expect("body");
    {
        let st = gotrue.state.lock().expect("lock");
        assert!(st.users.contains_key(email));
        let call = &st.calls_to("/signup")[0];
        assert_eq!(call.apikey.as_deref(), Some("anon-test-key"));
    }
    // Unconfirmed at Supabase: 403 after the password checked out.
    let r = post(
        svc.api("signin"),
        json!({"email": email, "password": PW}),
        None,
    )
    .await;
    assert_eq!(r.status(), 403);

    // Confirm through our verify-email endpoint (GoTrue /verify, type email).
    let confirm = gotrue
        .state
        .lock()
        .expect("lock")
        .otp_for(email, "email")
        .expect("confirmation otp");
    let r = client()
        .get(svc.api(&format!("verify-email?token={confirm}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);

    // Registering again looks the same (GoTrue answers with an obfuscated user).
    let r = post(
        svc.api("signup"),
        json!({"email": email, "password": PW}),
        None,
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), r.text().await.expect("body")),
        (202, signup_body)
    );

    let wrong = post(
        svc.api("signin"),
        json!({"email": email, "password": "wrong password"}),
        None,
    )
    .await;
    let unknown = post(
        svc.api("signin"),
        json!({"email": "nobody@example.com", "password": "wrong password"}),
        None,
    )
    .await;
    assert_eq!(
        (wrong.status(), unknown.status()),
        (
            reqwest::StatusCode::UNAUTHORIZED,
            reqwest::StatusCode::UNAUTHORIZED
        )
    );
    assert_eq!(
        wrong.text().await.expect("body"),
        unknown.text().await.expect("body")
    );

    let before: Vec<String> = gotrue
        .state
        .lock()
        .expect("lock")
        .sessions
        .keys()
        .cloned()
        .collect();
    let r = post(
        svc.api("signin"),
        json!({"email": email, "password": PW}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    let token = session_cookie(&r).expect("cookie");
    let access = {
        let st = gotrue.state.lock().expect("lock");
        st.sessions
            .keys()
            .find(|k| !before.contains(k))
            .cloned()
            .expect("gotrue session of the sign-in")
    };
    let body = json(r).await;
    let user_id = gotrue.state.lock().expect("lock").users[email].id.clone();
    assert_eq!(body["user_id"], user_id.as_str());
    assert!(
        !body.to_string().contains("at-"),
        "supabase tokens leaked to the client"
    );

    // The GoTrue tokens sit in our session, encrypted.
    let c = redis.client().await;
    let id = SessionToken::parse(&token).expect("token").id();
    let raw: String = c.get(keys::session(&id)).await.expect("record");
    assert!(
        !raw.contains(&access) && !raw.contains("rt-"),
        "tokens stored in clear: {raw}"
    );

    // Logout: our session goes at once, and GoTrue's session is revoked with its own token.
    let r = post(svc.api("logout"), json!({}), Some(&token)).await;
    assert_eq!(r.status(), 204);
    let n: i64 = c.exists(keys::session(&id)).await.expect("exists");
    assert_eq!(n, 0);
    {
        let st = gotrue.state.lock().expect("lock");
        let logout = st.calls_to("/logout?scope=local");
        assert_eq!(logout.len(), 1);
        assert_eq!(logout[0].bearer.as_deref(), Some(access.as_str()));
        assert!(!st.sessions.contains_key(&access));
    }

    // Reset: two live sessions, a recovery link, then every session of the user is gone.
    let s1 = session_cookie(
        &post(
            svc.api("signin"),
            json!({"email": email, "password": PW}),
            None,
        )
        .await,
    )
    .expect("s1");
    let s2 = session_cookie(
        &post(
            svc.api("signin"),
            json!({"email": email, "password": PW}),
            None,
        )
        .await,
    )
    .expect("s2");
    let r = post(svc.api("forgot-password"), json!({"email": email}), None).await;
    assert_eq!(r.status(), 202);
    let recovery = recovery_token(&gotrue, email).await;
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": recovery, "new_password": PW}),
        None,
    )
    .await;
    assert_eq!(r.status(), 422, "same password is refused with a reason");
    assert_eq!(json(r).await["field"], "password");

    // That attempt burned the recovery token at GoTrue: ask again.
    post(svc.api("forgot-password"), json!({"email": email}), None).await;
    let recovery = recovery_token(&gotrue, email).await;
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": recovery, "new_password": "a brand new password"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    for s in [&s1, &s2] {
        let n: i64 = c
            .exists(keys::session(&SessionToken::parse(s).expect("t").id()))
            .await
            .expect("exists");
        assert_eq!(n, 0, "session survived the reset");
    }
    {
        let st = gotrue.state.lock().expect("lock");
        assert_eq!(st.calls_to("/logout?scope=global").len(), 1);
        assert!(
            st.sessions.values().all(|(u, _)| *u != user_id),
            "GoTrue sessions survived the reset"
        );
    }
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": recovery, "new_password": "another new password"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400, "recovery token reused");
    let r = post(
        svc.api("signin"),
        json!({"email": email, "password": "a brand new password"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_health_and_bad_tokens() {
    let redis = Redis::start().await;
    let gotrue = GoTrue::start().await;
    let svc = start(&redis, &gotrue).await;
    let r = client()
        .get(svc.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        json(r).await["user_store"],
        json!({"provider": "supabase", "state": "up"})
    );
    let r = client()
        .get(svc.api("verify-email?token=bogus"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 400);
    let r = post(
        svc.api("reset-password/update"),
        json!({"token": "bogus", "new_password": "a long password"}),
        None,
    )
    .await;
    assert_eq!(r.status(), 400);
    gotrue.state.lock().expect("lock").down = true;
    let r = client()
        .get(svc.url("/health"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 503);
}

/// A confirmed Supabase account for `email` with password [`PW`].
async fn confirmed_account(svc: &AuthService, gotrue: &GoTrue, email: &str) {
    let r = post(
        svc.api("signup"),
        json!({"email": email, "password": PW}),
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    let confirm = gotrue
        .state
        .lock()
        .expect("lock")
        .otp_for(email, "email")
        .expect("confirmation otp");
    let r = client()
        .get(svc.api(&format!("verify-email?token={confirm}")))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_password_change_while_signed_in_ends_other_sessions() {
    let redis = Redis::start().await;
    let gotrue = GoTrue::start().await;
    let svc = start(&redis, &gotrue).await;
    let email = "hal@example.com";
    confirmed_account(&svc, &gotrue, email).await;
    let sign_in = |password: &'static str| {
        let url = svc.api("signin");
        async move {
            let r = post(url, json!({"email": email, "password": password}), None).await;
            (r.status().as_u16(), session_cookie(&r))
        }
    };
    let (_, here) = sign_in(PW).await;
    let (_, there) = sign_in(PW).await;
    let (here, there) = (here.expect("cookie"), there.expect("cookie"));
    let change = |old: &'static str, new: &'static str| {
        post(
            svc.api("change-password"),
            json!({"old_password": old, "new_password": new}),
            Some(&here),
        )
    };
    let r = change("not my password", "a brand new password").await;
    assert_eq!(
        r.status(),
        401,
        "a wrong old password must not change anything"
    );
    let r = change(PW, "a brand new password").await;
    assert_eq!(r.status(), 200);
    assert_eq!(json(r).await["revoked"], 1);
    let r = change("a brand new password", "a brand new password").await;
    assert_eq!(
        r.status(),
        422,
        "GoTrue's same_password is a validation error"
    );
    let c = redis.client().await;
    let exists = |token: &str| {
        let key = keys::session(&SessionToken::parse(token).expect("t").id());
        let c = c.clone();
        async move { c.exists::<i64, _>(key).await.expect("exists") }
    };
    assert_eq!(exists(&there).await, 0, "the other session survived");
    assert_eq!(exists(&here).await, 1, "the changing session must stay");
    assert_eq!(
        sign_in(PW).await.0,
        401,
        "the old password still works at GoTrue"
    );
    assert_eq!(sign_in("a brand new password").await.0, 200);
    let st = gotrue.state.lock().expect("lock");
    assert_eq!(
        st.calls_to("/logout?scope=local").len(),
        2,
        "each old-password check's GoTrue session must be logged out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_roles_come_from_app_metadata_at_sign_in() {
    let redis = Redis::start().await;
    let gotrue = GoTrue::start().await;
    let svc = start(&redis, &gotrue).await;
    let app = Upstream::start("app").await;
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, svc.port);
    let mut admin = route(
        "/admin/",
        "app",
        authflow_gateway::config::AuthMode::Required,
    );
    admin.roles = vec!["admin".into()];
    cfg.routes.push(admin);
    let gw = Gateway::start(cfg).await;
    let email = "sup@example.com";
    let r = post(
        svc.api("signup"),
        json!({"email": email, "password": PW}),
        None,
    )
    .await;
    assert_eq!(r.status(), 202);
    {
        let mut st = gotrue.state.lock().expect("lock");
        st.confirm(email);
        let user = st.users.get_mut(email).expect("user");
        user.roles = vec!["ops".into(), "admin".into(), "not a role".into()];
    }
    let r = sign_in_through(&gw.url(""), email, PW).await;
    assert_eq!(r.status(), 200);
    let token = session_cookie(&r).expect("cookie");
    let r = get_with_session(gw.url("/admin/x"), &token).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        json(r).await["headers"]["x-user-roles"],
        json!(["admin,ops"])
    );

    // Taken away at the provider: the next sign-in carries it to every live session.
    gotrue
        .state
        .lock()
        .expect("lock")
        .users
        .get_mut(email)
        .expect("user")
        .roles = vec!["ops".into()];
    let r = sign_in_through(&gw.url(""), email, PW).await;
    assert_eq!(r.status(), 200);
    let other = session_cookie(&r).expect("cookie");
    assert_eq!(
        get_with_session(gw.url("/admin/x"), &other).await.status(),
        403
    );
    assert_eq!(
        get_with_session(gw.url("/admin/x"), &token).await.status(),
        403
    );
}
