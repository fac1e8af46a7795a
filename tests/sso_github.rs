//! Sign in with GitHub (issue 20), against the GitHub stand-in (tests/support/github.rs):
//! OAuth 2 with PKCE, then who signed in read from the REST API. GitHub has no ID token, so
//! what these tests hold the service to is what it reads: the numeric id as the subject
//! (logins can be renamed), the primary address only when GitHub has verified it (never a
//! verified secondary one), and organization membership when `allowed_orgs` asks for it.

mod support;

use authflow_auth::sso::config::ProviderConfig;
use authflow_shared::session::SessionRecord;
use authflow_shared::store::SessionStore;
use authflow_shared::token::SessionToken;
use serde_json::json;
use support::browser::{link_refuses_strangers, location, query_param, Browser, PUBLIC_URL};
use support::github::{GitHub, GitHubCall, GitHubUser};
use support::*;

const PW: &str = "correct horse battery";

/// The provider id the tests configure (its secret: `AUTHFLOW_IDP_GH_CLIENT_SECRET`).
const ID: &str = "gh";

fn callback_uri() -> String {
    format!("{PUBLIC_URL}/auth/sso/{ID}/callback")
}

/// A GitHub provider table pointing at the stand-in.
fn provider(gh: &GitHub) -> ProviderConfig {
    serde_json::from_value(json!({
        "id": ID,
        "preset": "github",
        "client_id": gh.client_id,
        "display_name": "GitHub",
        "authorize_url": gh.authorize_url(),
        "token_url": gh.token_url(),
        "api_url": gh.api_url(),
    }))
    .expect("provider table")
}

struct Setup {
    redis: Redis,
    gh: GitHub,
    auth: AuthService,
}

/// The auth service with one GitHub provider; `users[0]` is the one signed in at GitHub.
async fn setup(users: Vec<GitHubUser>, change: impl FnOnce(&mut ProviderConfig)) -> Setup {
    let redis = Redis::start().await;
    let gh = GitHub::start(&callback_uri(), users).await;
    let mut cfg = auth_config(&redis.url());
    cfg.public_url = Some(PUBLIC_URL.into());
    cfg.mail.base_url = PUBLIC_URL.into();
    let mut p = provider(&gh);
    change(&mut p);
    cfg.identity.providers = vec![p];
    let secret = gh.client_secret.clone();
    let auth = AuthService::start(cfg, &[("AUTHFLOW_IDP_GH_CLIENT_SECRET", &secret)]).await;
    Setup { redis, gh, auth }
}

/// One sign-in up to the callback: the authorize URL the service sent the browser to, and
/// the callback URL GitHub sent it back to.
struct ToCallback {
    authorize: String,
    back: String,
}

impl Setup {
    fn browser(&self) -> Browser {
        Browser::new(&self.auth.url(""))
    }

    /// Starts at the auth service and passes GitHub's authorize step as whoever is signed in
    /// there (or is refused there, with `set_deny`).
    async fn to_callback(&self, b: &mut Browser, next: &str) -> ToCallback {
        let r = b.get(&format!("/auth/sso/{ID}?next={next}")).await;
        assert_eq!(r.status(), 302, "start");
        let authorize = location(&r);
        assert!(
            authorize.starts_with(&self.gh.authorize_url()),
            "{authorize}"
        );
        for p in ["state", "code_challenge"] {
            assert!(query_param(&authorize, p).is_some(), "{p} in {authorize}");
        }
        assert_eq!(
            query_param(&authorize, "code_challenge_method").as_deref(),
            Some("S256")
        );
        let r = client().get(&authorize).send().await.expect("authorize");
        assert_eq!(r.status(), 302, "GitHub's authorize step");
        let back = location(&r);
        assert!(back.starts_with(&callback_uri()), "{back}");
        ToCallback { authorize, back }
    }

    /// A whole sign-in as whoever is signed in at GitHub; the callback's answer.
    async fn sign_in(&self, b: &mut Browser, next: &str) -> reqwest::Response {
        let to = self.to_callback(b, next).await;
        b.get(&to.back).await
    }

    /// A whole sign-in as GitHub user `id`, in a fresh browser, expected to succeed: the
    /// session it made.
    async fn signed_in_as(&self, id: u64) -> SessionRecord {
        self.gh.sign_in_as(id);
        let mut b = self.browser();
        let r = self.sign_in(&mut b, "/app/").await;
        assert_eq!(r.status(), 302, "GitHub user {id}: {:?}", r.headers());
        assert_eq!(location(&r), "/app/");
        self.claims(b.session().expect("a session cookie")).await
    }

    async fn claims(&self, token: &str) -> SessionRecord {
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

    /// A browser signed in to `email`'s account with its password.
    async fn password_browser(&self, email: &str) -> Browser {
        let mut b = self.browser();
        let r = b
            .post_json(
                "/api/v1/simple_auth/signin",
                json!({"email": email, "password": PW}),
            )
            .await;
        assert_eq!(r.status(), 200, "password sign-in");
        assert!(b.session().is_some());
        b
    }

    /// The providers linked to the account `b` is signed in to.
    async fn linked_providers(&self, b: &mut Browser) -> Vec<String> {
        let r = b.get("/api/v1/simple_auth/identities").await;
        assert_eq!(r.status(), 200);
        let list = json(r).await;
        list["identities"]
            .as_array()
            .expect("identities")
            .iter()
            .map(|i| i["provider"].as_str().expect("provider").to_owned())
            .collect()
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

/// A refused sign-in as whoever is signed in at GitHub: its code, after checking that it
/// left no session and no link waiting for a password.
async fn refused_sign_in(s: &Setup) -> String {
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/").await;
    let code = refusal(&r);
    assert!(b.session().is_none(), "{code} made a session");
    assert!(
        !b.jar.keys().any(|k| k.contains("authflow_link")),
        "{code} left a link waiting: {:?}",
        b.jar
    );
    code
}

/// The PKCE S256 challenge of `verifier` (RFC 7636 §4.2).
fn s256(verifier: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier))
}

/// A form-encoded request body's field.
fn form_field(call: &GitHubCall, name: &str) -> Option<String> {
    form_urlencoded::parse(call.body.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_primary_email_creates_the_account_with_the_exchanged_token() {
    let s = setup(
        vec![GitHubUser::verified(101, "octo", "octo@example.com").email(
            "octo@old-work.example",
            false,
            true,
        )],
        |_| {},
    )
    .await;
    let mut b = s.browser();
    let to = s.to_callback(&mut b, "/app/reports?x=1").await;
    let r = b.get(&to.back).await;
    assert_eq!(r.status(), 302, "{:?}", r.headers());
    assert_eq!(location(&r), "/app/reports?x=1");
    let token = b.session().expect("a session cookie").to_owned();
    assert!(
        !b.jar.keys().any(|k| k.contains("authflow_sso_")),
        "the sign-in's cookie is dropped: {:?}",
        b.jar
    );
    let record = s.claims(&token).await;
    assert_eq!(record.email.as_deref(), Some("octo@example.com"));
    assert_eq!(record.claims.amr, vec!["fed".to_string()]);
    assert_eq!(record.claims.idp.as_deref(), Some(ID));
    assert!(record.claims.auth_time.is_some());

    // One exchange, of the code GitHub gave, with the verifier of the challenge sent.
    let exchanges = s.gh.calls_to("/login/oauth/access_token");
    assert_eq!(exchanges.len(), 1, "{exchanges:?}");
    let exchange = &exchanges[0];
    assert_eq!(exchange.method, "POST");
    assert_eq!(
        form_field(exchange, "code"),
        query_param(&to.back, "code"),
        "the code from the callback"
    );
    assert_eq!(form_field(exchange, "redirect_uri"), Some(callback_uri()));
    let verifier = form_field(exchange, "code_verifier").expect("a PKCE verifier");
    assert!(
        (43..=128).contains(&verifier.len()),
        "RFC 7636 verifier length: {verifier}"
    );
    assert_eq!(
        Some(s256(&verifier)),
        query_param(&to.authorize, "code_challenge"),
        "the verifier is the challenge's"
    );
    assert!(
        exchange
            .accept
            .as_deref()
            .is_some_and(|a| a.contains("application/json")),
        "{exchange:?}"
    );

    // Every API call carried one bearer token, with a User-Agent as GitHub requires...
    let api_calls = s.gh.calls_to("/user");
    let paths: Vec<&str> = api_calls.iter().map(|c| c.path.as_str()).collect();
    assert!(paths.contains(&"/user"), "{paths:?}");
    assert!(paths.contains(&"/user/emails"), "{paths:?}");
    let bearer = api_calls[0]
        .authorization
        .clone()
        .expect("an Authorization header");
    let access_token = bearer
        .strip_prefix("Bearer ")
        .expect("a bearer token")
        .to_owned();
    for call in &api_calls {
        assert_eq!(
            call.authorization.as_deref(),
            Some(bearer.as_str()),
            "{call:?}"
        );
        assert!(
            call.user_agent.as_deref().is_some_and(|u| !u.is_empty()),
            "{call:?}"
        );
    }
    // ...and it is the token that one exchange issued: GitHub knows it as this user's
    // (the stand-in issues tokens only from an exchange, and there was one).
    let me = client()
        .get(format!("{}/user", s.gh.api_url()))
        .bearer_auth(&access_token)
        .header("user-agent", UA)
        .send()
        .await
        .expect("user");
    assert_eq!(me.status(), 200);
    assert_eq!(json(me).await["id"], 101);
    // The token stays server-side: not in the browser's redirect or cookies.
    assert!(!location(&r).contains(&access_token));
    assert!(!b.jar.values().any(|v| v.contains(&access_token)));

    // Signing in again finds the same account.
    assert_eq!(s.signed_in_as(101).await.user_id, record.user_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unverified_primary_email_is_never_used() {
    let s = setup(
        vec![
            GitHubUser::primary_unverified(201, "pat", "pat@example.com"),
            GitHubUser::only_secondary_verified(202, "una", "una@example.com", "una@work.example"),
        ],
        |_| {},
    )
    .await;
    // No usable address, so no account can be made.
    assert_eq!(refused_sign_in(&s).await, "sso_no_email");
    // A verified secondary address does not stand in for the primary.
    s.gh.sign_in_as(202);
    assert_eq!(refused_sign_in(&s).await, "sso_no_email");
    // An account holding the unverified address is neither signed in to nor linked.
    s.register("pat@example.com").await;
    s.gh.sign_in_as(201);
    assert_eq!(refused_sign_in(&s).await, "sso_no_email");
    let mut owner = s.password_browser("pat@example.com").await;
    assert!(s.linked_providers(&mut owner).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_secondary_email_neither_signs_in_nor_links() {
    let s = setup(
        vec![GitHubUser::only_secondary_verified(
            301,
            "sam",
            "sam@example.com",
            "sam@work.example",
        )],
        |_| {},
    )
    .await;
    // The secondary address is an existing account's: still no email, and no link page.
    s.register("sam@work.example").await;
    assert_eq!(refused_sign_in(&s).await, "sso_no_email");
    let mut owner = s.password_browser("sam@work.example").await;
    assert!(s.linked_providers(&mut owner).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_verified_email_at_all_is_refused() {
    let s = setup(
        vec![GitHubUser::none_verified(
            401,
            "nia",
            &["nia@example.com", "nia@other.example"],
        )],
        |_| {},
    )
    .await;
    assert_eq!(refused_sign_in(&s).await, "sso_no_email");
    // The emails were read (the refusal is about them, not about an unreachable API).
    assert!(!s.gh.calls_to("/user/emails").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renamed_login_is_the_same_person() {
    let s = setup(
        vec![
            GitHubUser::verified(501, "octo", "octo@example.com"),
            GitHubUser::verified(502, "someone", "someone@example.com"),
        ],
        |_| {},
    )
    .await;
    let first = s.signed_in_as(501).await;
    s.gh.rename(501, "octo-renamed");
    let again = s.signed_in_as(501).await;
    assert_eq!(
        again.user_id, first.user_id,
        "the subject is the numeric id"
    );
    // Whoever takes the freed login is someone else.
    s.gh.rename(502, "octo");
    let other = s.signed_in_as(502).await;
    assert_ne!(other.user_id, first.user_id);
    assert_eq!(other.email.as_deref(), Some("someone@example.com"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_orgs_let_in_active_members_only_whatever_the_case() {
    let s = setup(
        vec![
            GitHubUser::verified(601, "ada", "ada@example.com").member_of("acme", false),
            GitHubUser::verified(602, "bo", "bo@example.com").member_of("ACME", false),
            GitHubUser::verified(603, "cy", "cy@example.com").member_of("acme-labs", true),
            GitHubUser::verified(604, "di", "di@example.com"),
        ],
        |p| {
            p.allowed_orgs = vec!["acme".into()];
            p.role_map = [("acme".to_string(), "staff".to_string())].into();
        },
    )
    .await;
    // A private membership is seen: the authorize step asked for read:org.
    let ada = s.signed_in_as(601).await;
    assert_eq!(ada.claims.roles, vec!["staff".to_string()]);
    let memberships = s.gh.calls_to("/user/memberships/orgs/");
    assert!(!memberships.is_empty(), "membership checked");
    // GitHub's logins ignore case: `ACME` is `acme`, and the group keeps the config's spelling.
    let bo = s.signed_in_as(602).await;
    assert_eq!(bo.claims.roles, vec!["staff".to_string()]);
    // A member of another org (even one whose name starts the same), or of none: refused.
    s.gh.sign_in_as(603);
    assert_eq!(refused_sign_in(&s).await, "sso_not_allowed");
    s.gh.sign_in_as(604);
    assert_eq!(refused_sign_in(&s).await, "sso_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_orgs_compare_without_case_in_the_config_too() {
    let s = setup(
        vec![GitHubUser::verified(651, "ada", "ada@example.com").member_of("acme", false)],
        |p| p.allowed_orgs = vec!["Acme".into()],
    )
    .await;
    let ada = s.signed_in_as(651).await;
    assert_eq!(ada.claims.idp.as_deref(), Some(ID));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_denies_the_app_is_sent_back_with_a_message() {
    let s = setup(
        vec![GitHubUser::verified(701, "octo", "octo@example.com")],
        |_| {},
    )
    .await;
    s.gh.set_deny(true);
    let mut b = s.browser();
    let to = s.to_callback(&mut b, "/app/").await;
    assert_eq!(
        query_param(&to.back, "error").as_deref(),
        Some("access_denied")
    );
    let r = b.get(&to.back).await;
    assert_eq!(refusal(&r), "sso_provider_error");
    assert!(b.session().is_none());
    assert!(
        s.gh.calls_to("/login/oauth/access_token").is_empty(),
        "no exchange without a code"
    );
    // Allowed the next time: signs in.
    s.gh.set_deny(false);
    s.signed_in_as(701).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_account_is_linked_only_with_its_password() {
    let s = setup(
        vec![GitHubUser::verified(801, "lin", "lin@example.com")],
        |_| {},
    )
    .await;
    s.register("lin@example.com").await;
    let mut b = s.browser();
    let r = s.sign_in(&mut b, "/app/after").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("/auth/link?provider={ID}"));
    assert!(b.session().is_none(), "no session before the password");
    let mut other = s.browser();
    link_refuses_strangers(&mut b, &mut other, ID, "GitHub").await;
    // The right one: linked and signed in, with both methods in amr.
    let r = b
        .post_json("/api/v1/simple_auth/sso/link", json!({"password": PW}))
        .await;
    assert_eq!(r.status(), 200);
    let body = json(r).await;
    assert_eq!(body["next"], "/app/after");
    let record = s.claims(b.session().expect("session")).await;
    assert_eq!(body["user_id"], record.user_id.as_str());
    assert_eq!(
        record.claims.amr,
        vec!["pwd".to_string(), "fed".to_string()]
    );
    assert_eq!(record.claims.idp.as_deref(), Some(ID));
    assert_eq!(s.linked_providers(&mut b).await, vec![ID.to_string()]);
    // From now on GitHub alone signs in to that account.
    let again = s.signed_in_as(801).await;
    assert_eq!(again.user_id, record.user_id);
    assert_eq!(again.claims.amr, vec!["fed".to_string()]);
}
