//! Sign-in through an OpenID provider (issue 20), against a real one: panva's
//! `oidc-provider` under Node (tests/support/oidc.rs), walked over plain HTTP by a
//! cookie-keeping browser. A provider sign-in must end in the same session a password
//! sign-in makes, and every forged or misdirected answer must be refused with nothing left
//! half done.

mod support;

use authflow_auth::config::AuthConfig;
use authflow_auth::sso::config::ProviderConfig;
use authflow_gateway::config::AuthMode;
use authflow_shared::store::SessionStore;
use authflow_shared::token::SessionToken;
use serde_json::json;
use support::browser::{link_refuses_strangers, location, query_param, Browser, PUBLIC_URL};
use support::oidc::{BadIdToken, OidcAccount, OidcProvider, ALICE, BOB, EVE};
use support::*;

const PW: &str = "correct horse battery";

fn callback_uri(id: &str) -> String {
    format!("{PUBLIC_URL}/auth/sso/{id}/callback")
}

/// A generic provider table for the test provider.
fn provider(idp: &OidcProvider, id: &str) -> ProviderConfig {
    toml::from_str(&format!(
        "id = \"{id}\"\npreset = \"generic\"\nclient_id = \"{}\"\nissuer = \"{}\"\ndisplay_name = \"Test IdP\"\n",
        idp.client_id,
        idp.issuer()
    ))
    .expect("provider table")
}

struct Setup {
    redis: Redis,
    idp: OidcProvider,
    auth: AuthService,
}

async fn setup(change: impl FnOnce(&mut AuthConfig, &mut ProviderConfig)) -> Setup {
    let redis = Redis::start().await;
    let idp = OidcProvider::start(&callback_uri("test")).await;
    let mut cfg = auth_config(&redis.url());
    cfg.public_url = Some(PUBLIC_URL.into());
    cfg.mail.base_url = PUBLIC_URL.into();
    let mut p = provider(&idp, "test");
    change(&mut cfg, &mut p);
    cfg.identity.providers = vec![p];
    let secret = idp.client_secret.clone();
    let auth = AuthService::start(cfg, &[("AUTHFLOW_IDP_TEST_CLIENT_SECRET", &secret)]).await;
    Setup { redis, idp, auth }
}

impl Setup {
    fn browser(&self) -> Browser {
        Browser::new(&self.auth.url(""))
    }

    /// Starts at the auth service and signs in at the provider as `account`; the callback
    /// URL the provider sent the browser to.
    async fn to_callback(&self, b: &mut Browser, next: &str, account: OidcAccount) -> String {
        let r = b.get(&format!("/auth/sso/test?next={next}")).await;
        assert_eq!(r.status(), 302, "start");
        let authorize = location(&r);
        assert!(authorize.starts_with(&self.idp.issuer()), "{authorize}");
        for p in ["state", "nonce", "code_challenge"] {
            assert!(query_param(&authorize, p).is_some(), "{p} in {authorize}");
        }
        assert_eq!(
            query_param(&authorize, "code_challenge_method").as_deref(),
            Some("S256")
        );
        let back = self.idp.sign_in(&authorize, account).await;
        assert!(back.starts_with(&callback_uri("test")), "{back}");
        back
    }

    /// A whole sign-in; the callback's answer.
    async fn sign_in(
        &self,
        b: &mut Browser,
        next: &str,
        account: OidcAccount,
    ) -> reqwest::Response {
        let back = self.to_callback(b, next, account).await;
        b.get(&back).await
    }

    async fn claims(&self, token: &str) -> authflow_shared::session::SessionRecord {
        let id = SessionToken::parse(token).expect("token").id();
        self.redis
            .store()
            .await
            .lookup(&id)
            .await
            .expect("redis")
            .expect("a session record")
    }

    async fn register(&self, email: &str) {
        register_through(&self.auth.url(""), &self.auth.outbox(), email, PW).await;
    }
}

/// Where a refused callback sent the browser: the sign-in page's message code.
fn refusal(r: &reqwest::Response) -> String {
    assert_eq!(
        r.status(),
        303,
        "refused callbacks go back to the sign-in page"
    );
    let to = location(r);
    assert!(to.starts_with("/auth/signin?"), "{to}");
    query_param(&to, "error").expect("an error code")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_provider_sign_in_creates_the_account_and_a_normal_session() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/reports?x=1", ALICE).await;
    assert_eq!(r.status(), 302, "{:?}", r.headers());
    assert_eq!(location(&r), "/app/reports?x=1");
    let token = b.session().expect("a session cookie").to_owned();
    assert!(
        !b.jar.keys().any(|k| k.contains("authflow_sso_")),
        "the sign-in's cookie is dropped: {:?}",
        b.jar
    );
    let record = s.claims(&token).await;
    assert_eq!(record.email.as_deref(), Some(ALICE.email));
    assert_eq!(record.claims.amr, vec!["fed".to_string()]);
    assert_eq!(record.claims.idp.as_deref(), Some("test"));
    assert!(record.claims.auth_time.is_some());
    // The session is a session like any other: listed, and logout ends it.
    let r = b.get("/api/v1/simple_auth/sessions").await;
    assert_eq!(r.status(), 200);
    let r = b.post_json("/api/v1/simple_auth/logout", json!({})).await;
    assert_eq!(r.status(), 204);
    let r = b.get("/api/v1/simple_auth/sessions").await;
    assert_eq!(r.status(), 401);
    // Signing in again finds the same account (by its identity, not its address).
    let mut b2 = s.browser();
    let r = s.sign_in(&mut b2, "/app/", ALICE).await;
    assert_eq!(r.status(), 302);
    let again = s.claims(b2.session().expect("cookie")).await;
    assert_eq!(again.user_id, record.user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_signing_in_at_once_both_finish() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    let first = s.to_callback(&mut b, "/app/one", ALICE).await;
    let second = s.to_callback(&mut b, "/app/two", ALICE).await;
    let r = b.get(&second).await;
    assert_eq!(location(&r), "/app/two");
    let r = b.get(&first).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/app/one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_must_be_this_browsers_and_is_used_once() {
    let s = setup(|_, _| {}).await;
    // Another browser (the victim of a login CSRF) opens the attacker's callback URL.
    let mut attacker = s.browser();
    let back = s.to_callback(&mut attacker, "/app/", ALICE).await;
    let mut victim = s.browser();
    let r = victim.get(&back).await;
    assert_eq!(refusal(&r), "sso_bad_state");
    assert!(victim.session().is_none());
    // Without state at all.
    let no_state = back.split('?').next().expect("path").to_owned()
        + "?code="
        + &query_param(&back, "code").expect("code");
    let r = attacker.get(&no_state).await;
    assert_eq!(refusal(&r), "sso_bad_state");
    // The attacker's own browser still finishes (nothing was used up by the victim's try)...
    let r = attacker.get(&back).await;
    assert_eq!(r.status(), 302);
    // ...once: the callback replayed is refused.
    attacker.jar.remove("sid");
    let cookie_name = attacker
        .jar
        .keys()
        .find(|k| k.contains("authflow_sso_"))
        .cloned();
    assert!(cookie_name.is_none(), "the sign-in cookie is dropped");
    let r = attacker.get(&back).await;
    assert_eq!(refusal(&r), "sso_bad_state");
    assert!(attacker.session().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_id_tokens_are_refused() {
    let s = setup(|_, _| {}).await;
    // A good sign-in first: the replay forgeries reuse its token and nonce.
    let mut b = s.browser();
    assert_eq!(s.sign_in(&mut b, "/app/", ALICE).await.status(), 302);
    let forgeries = [
        BadIdToken::Hs256ClientSecret,
        BadIdToken::AlgNone,
        BadIdToken::UnknownKey,
        BadIdToken::WrongAudience,
        BadIdToken::WrongIssuer,
        BadIdToken::Expired,
        BadIdToken::WrongNonce,
        BadIdToken::PreviousNonce,
        BadIdToken::ReplayPrevious,
    ];
    for forgery in forgeries {
        let mut b = s.browser();
        let back = s.to_callback(&mut b, "/app/", ALICE).await;
        s.idp.next_id_token(forgery).await;
        let r = b.get(&back).await;
        assert_eq!(refusal(&r), "sso_token_rejected", "{forgery:?}");
        assert!(b.session().is_none(), "{forgery:?} made a session");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_signing_key_is_fetched_once_and_accepted() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    assert_eq!(s.sign_in(&mut b, "/app/", ALICE).await.status(), 302);
    let mut b = s.browser();
    let back = s.to_callback(&mut b, "/app/", ALICE).await;
    s.idp.next_id_token(BadIdToken::NewKey).await;
    let r = b.get(&back).await;
    assert_eq!(r.status(), 302, "{:?}", r.headers().get("location"));
    assert!(b.session().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_sign_in_says_so() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    let r = b.get("/auth/sso/test?next=/app/").await;
    let back = s.idp.cancel_sign_in(&location(&r)).await;
    assert_eq!(
        query_param(&back, "error").as_deref(),
        Some("access_denied")
    );
    let r = b.get(&back).await;
    assert_eq!(refusal(&r), "sso_provider_error");
    // The page shows a message for it.
    let page = b
        .get("/auth/signin?error=sso_provider_error")
        .await
        .text()
        .await
        .expect("page");
    assert!(page.contains("cancelled or refused"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_never_leaves_the_site() {
    let s = setup(|_, _| {}).await;
    for next in [
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
    ] {
        let mut b = s.browser();
        let encoded = authflow_shared::request::encode_query_value(next);
        let r = s.sign_in(&mut b, &encoded, ALICE).await;
        assert_eq!(r.status(), 302);
        assert_eq!(location(&r), "/app/", "{next}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_provider_email_never_links_or_duplicates() {
    let s = setup(|_, _| {}).await;
    s.register(EVE.email).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/", EVE).await;
    assert_eq!(refusal(&r), "sso_email_unverified");
    assert!(b.session().is_none());
    // A verified address from a provider configured not to trust it: the same.
    let s = setup(|_, p| p.trust_email_verified = false).await;
    s.register(ALICE.email).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/", ALICE).await;
    assert_eq!(refusal(&r), "sso_email_unverified");
    // And the forged `email_verified: false` for an existing account.
    let s = setup(|_, _| {}).await;
    s.register(ALICE.email).await;
    let mut b = s.browser();
    let back = s.to_callback(&mut b, "/app/", ALICE).await;
    s.idp.next_id_token(BadIdToken::EmailUnverified).await;
    let r = b.get(&back).await;
    assert_eq!(refusal(&r), "sso_email_unverified");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_account_is_linked_only_with_its_password() {
    let s = setup(|_, _| {}).await;
    s.register(BOB.email).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/after", BOB).await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/auth/link?provider=test");
    assert!(b.session().is_none(), "no session before the password");
    let mut other = s.browser();
    link_refuses_strangers(&mut b, &mut other, "test", "Test IdP").await;
    // The right one: linked and signed in, with both methods in amr.
    let r = b
        .post_form("/api/v1/simple_auth/sso/link", &[("password", PW)])
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/app/after");
    let record = s.claims(b.session().expect("session")).await;
    assert_eq!(
        record.claims.amr,
        vec!["pwd".to_string(), "fed".to_string()]
    );
    // From now on the provider alone signs in to that account.
    let mut b2 = s.browser();
    let r = s.sign_in(&mut b2, "/app/", BOB).await;
    assert_eq!(r.status(), 302);
    assert_eq!(
        s.claims(b2.session().expect("session")).await.user_id,
        record.user_id
    );
    // The identities list shows it; unlinking ends the sessions it started (not the
    // password-linked one's? that one was started by it too: both end).
    let r = b2.get("/api/v1/simple_auth/identities").await;
    let list = json(r).await;
    assert_eq!(list["identities"][0]["provider"], "test");
    let r = b2
        .post_json(
            "/api/v1/simple_auth/identities/unlink",
            json!({"provider": "test"}),
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(b2.get("/api/v1/simple_auth/sessions").await.status(), 401);
    assert_eq!(b.get("/api/v1/simple_auth/sessions").await.status(), 401);
    // Unlinked: the provider leads to the link page again.
    let mut b3 = s.browser();
    let r = s.sign_in(&mut b3, "/app/", BOB).await;
    assert_eq!(location(&r), "/auth/link?provider=test");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_not_created_when_the_provider_may_not() {
    let s = setup(|_, p| p.create_accounts = false).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/", ALICE).await;
    assert_eq!(refusal(&r), "sso_no_account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_domains_keep_others_out() {
    let s = setup(|_, p| p.allowed_domains = vec!["corp.example".into()]).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/", ALICE).await;
    assert_eq!(refusal(&r), "sso_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_are_listed_and_passwords_can_be_switched_off() {
    let s = setup(|c, _| c.identity.password = false).await;
    let mut b = s.browser();
    let r = b.get("/api/v1/simple_auth/providers").await;
    let body = json(r).await;
    assert_eq!(body["providers"][0]["id"], "test");
    assert_eq!(body["providers"][0]["display_name"], "Test IdP");
    assert_eq!(body["providers"][0]["start_url"], "/auth/sso/test");
    assert_eq!(body["password"], false);
    let r = b
        .post_json(
            "/api/v1/simple_auth/signin",
            json!({"email": ALICE.email, "password": PW}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let page = b
        .get("/auth/signin?next=/app/")
        .await
        .text()
        .await
        .expect("page")
        .replace("&#x2f;", "/");
    assert!(
        page.contains("href=\"/auth/sso/test?next=/app/\""),
        "{page}"
    );
    assert!(
        !page.contains("type=\"password\""),
        "the password form is hidden: {page}"
    );
    // An unknown provider id is a 404, not a crash.
    assert_eq!(b.get("/auth/sso/nope").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_session_passes_the_gateway() {
    let s = setup(|_, _| {}).await;
    let app = Upstream::start("app").await;
    let mut cfg = gateway_config(&s.redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, s.auth.port);
    // The pages and the provider legs, as conf/gateway.toml routes them.
    let mut pages = route("/auth/", "auth", AuthMode::Public);
    pages.auth_service = true;
    cfg.routes.push(pages);
    let gw = Gateway::start(cfg).await;
    // The browser talks to the gateway: the public address is the gateway's.
    let mut b = Browser::new(&gw.url(""));
    let r = s.sign_in(&mut b, "/app/me", ALICE).await;
    assert_eq!(r.status(), 302);
    let token = b.session().expect("session").to_owned();
    let r = b.get("/app/me").await;
    assert_eq!(r.status(), 200);
    let user = s.claims(&token).await.user_id;
    let seen = json(r).await;
    assert_eq!(seen["headers"]["x-user-id"][0], user, "{seen}");
    // Operator revocation works on it as on any other session.
    s.redis
        .store()
        .await
        .revoke_user(&user, None)
        .await
        .expect("revoke");
    // (How soon every gateway hears of it is tests/session_cache.rs's; here: that it does.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while b.get("/app/me").await.status() == 200 {
        assert!(
            std::time::Instant::now() < deadline,
            "still let in after the revocation"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authflow_up_signs_in_through_the_provider_its_flags_name() {
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let idp = OidcProvider::start(&format!("{public}/auth/sso/oidc/callback")).await;
    let issuer = idp.issuer();
    let up = Up::start_on(
        port,
        &[
            "--oidc-issuer",
            &issuer,
            "--oidc-client-id",
            &idp.client_id,
            "--oidc-name",
            "Test IdP",
        ],
        &[("AUTHFLOW_IDP_OIDC_CLIENT_SECRET", &idp.client_secret)],
    )
    .await;
    let mut b = Browser::new(&up.url(""));
    let page = b.get("/auth/signin").await.text().await.expect("page");
    assert!(page.contains("Sign in with Test IdP"), "{page}");
    let r = b.get("/auth/sso/oidc?next=/app/").await;
    assert_eq!(r.status(), 302);
    let back = idp.sign_in(&location(&r), ALICE).await;
    let back = back.replace(&public, &up.url(""));
    let r = b.get(&back).await;
    assert_eq!(r.status(), 302, "{:?}", r.headers().get("location"));
    assert_eq!(location(&r), "/app/");
    let r = b.get("/app/").await;
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_reload_with_the_config_and_sign_ins_in_flight_survive() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    // Begun before the reload, finished after it.
    let back = s.to_callback(&mut b, "/app/", ALICE).await;
    let path = s.auth.config_path();
    let text = std::fs::read_to_string(&path).expect("config");
    assert!(text.contains("Test IdP"), "{text}");
    std::fs::write(&path, text.replace("Test IdP", "Renamed IdP")).expect("write");
    let status = std::process::Command::new(authflow_bin())
        .args(["reload", "--pid", &s.auth.pid().to_string()])
        .status()
        .expect("authflow reload");
    assert!(status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let body = json(b.get("/api/v1/simple_auth/providers").await).await;
        if body["providers"][0]["display_name"] == "Renamed IdP" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not reloaded: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let r = b.get(&back).await;
    assert_eq!(r.status(), 302, "{:?}", r.headers().get("location"));
    assert!(b.session().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_ins_are_counted_by_provider_and_result() {
    let metrics_port = free_port();
    let s = setup(|c, _| c.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"))).await;
    let mut b = s.browser();
    assert_eq!(s.sign_in(&mut b, "/app/", ALICE).await.status(), 302);
    let mut b = s.browser();
    let back = s.to_callback(&mut b, "/app/", ALICE).await;
    s.idp.next_id_token(BadIdToken::Expired).await;
    assert_eq!(refusal(&b.get(&back).await), "sso_token_rejected");
    let wanted = [
        "authflow_auth_sso_sign_ins_total{provider=\"test\",result=\"ok\"} 1",
        "authflow_auth_sso_sign_ins_total{provider=\"test\",result=\"token_rejected\"} 1",
    ];
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    assert_metric_lines(&scrape_until(&url, &wanted).await, &wanted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_provider_address_never_reaches_upstreams() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/", EVE).await;
    assert_eq!(r.status(), 302, "a new account for an address nobody holds");
    let record = s.claims(b.session().expect("session")).await;
    assert_eq!(
        record.email, None,
        "eve's address is not verified: not in the session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_up_nobody_confirmed_cannot_block_a_verified_provider_sign_in() {
    let s = setup(|_, _| {}).await;
    // Someone signs up with alice's address and never confirms it.
    let r = client()
        .post(s.auth.api("signup"))
        .json(&json!({"email": ALICE.email, "password": "the squatter's password"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    // Alice signs in at her provider, which verified the address: the account is hers.
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/", ALICE).await;
    assert_eq!(r.status(), 302, "{:?}", r.headers().get("location"));
    let record = s.claims(b.session().expect("session")).await;
    assert_eq!(record.email.as_deref(), Some(ALICE.email));
    // The squatter's password is gone, and so is the link mailed to them.
    let r = client()
        .post(s.auth.api("signin"))
        .json(&json!({"email": ALICE.email, "password": "the squatter's password"}))
        .send()
        .await
        .expect("signin");
    assert_eq!(r.status(), 401);
    let mail = wait_for_mail(&s.auth.outbox(), ALICE.email, "verify-email").await;
    let r = client()
        .get(
            s.auth
                .api(&format!("verify-email?token={}", link_token(&mail))),
        )
        .send()
        .await
        .expect("verify");
    assert_eq!(r.status(), 400, "the squatter's verification link is void");
    assert_eq!(
        s.claims(b.session().expect("session")).await.user_id,
        record.user_id,
        "alice's session survives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_second_factor_counts_only_when_trusted() {
    for trusted in [false, true] {
        let s = setup(|_, p| p.trust_upstream_mfa = trusted).await;
        let mut b = s.browser();
        let back = s.to_callback(&mut b, "/app/", ALICE).await;
        s.idp.next_id_token(BadIdToken::UpstreamMfa).await;
        let r = b.get(&back).await;
        assert_eq!(r.status(), 302);
        let claims = s.claims(b.session().expect("session")).await.claims;
        assert_eq!(
            claims.amr.contains(&"mfa".to_string()),
            trusted,
            "{claims:?}"
        );
        assert_eq!(claims.mfa_time.is_some(), trusted, "{claims:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_holds_a_bounded_number_of_sign_ins_in_flight() {
    let s = setup(|_, _| {}).await;
    let mut b = s.browser();
    let in_flight = |b: &Browser| b.jar.keys().filter(|k| k.contains("authflow_sso_")).count();
    for _ in 0..30 {
        let r = b.get("/auth/sso/test?next=/app/").await;
        assert_eq!(r.status(), 302);
        assert!(in_flight(&b) <= 8, "{} sign-in cookies", in_flight(&b));
    }
    // The newest one still finishes.
    let r = b.get("/auth/sso/test?next=/app/").await;
    let back = s.idp.sign_in(&location(&r), ALICE).await;
    let r = b.get(&back).await;
    assert_eq!(r.status(), 302);
    assert!(b.session().is_some());
}
