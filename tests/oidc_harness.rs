//! The harness of the external sign-in tests (issue 20) proves itself: the real OpenID
//! provider walks a whole code + PKCE flow over plain HTTP and its ID tokens verify against
//! its JWKS; each forged ID token is what it says; the GitHub stand-in answers its documented
//! contract for each kind of account. No AuthFlow code is involved; a relying party is played
//! by the test itself.

mod support;

use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use sha2::Digest;
use support::github::{GitHub, GitHubUser};
use support::oidc::{BadIdToken, OidcAccount, OidcProvider, ALICE, EVE};

/// Where the provider sends the browser back; nothing listens there, the test reads the
/// `Location` header instead.
const REDIRECT_URI: &str = "http://127.0.0.1:9/auth/sso/test/callback";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// One relying-party sign-in attempt: what it sent and what it got back.
struct Flow {
    state: String,
    nonce: String,
    verifier: String,
    callback: String,
}

impl Flow {
    fn new() -> Flow {
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Flow {
            state: random(),
            nonce: random(),
            verifier: random() + &random(),
            callback: String::new(),
        }
    }

    fn authorization_url(&self, op: &OidcProvider) -> String {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(sha2::Sha256::digest(self.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", op.client_id.as_str()),
                ("response_type", "code"),
                ("scope", "openid email profile"),
                ("redirect_uri", REDIRECT_URI),
                ("state", &self.state),
                ("nonce", &self.nonce),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .finish();
        op.url(&format!("/auth?{query}"))
    }

    /// Signs `account` in and returns the code from the callback.
    async fn code(&mut self, op: &OidcProvider, account: OidcAccount) -> String {
        self.callback = op.sign_in(&self.authorization_url(op), account).await;
        assert!(self.callback.starts_with(REDIRECT_URI), "{}", self.callback);
        let q = query_of(&self.callback);
        assert_eq!(q.get("state"), Some(&self.state), "{}", self.callback);
        assert_eq!(q.get("iss"), Some(&op.issuer()), "RFC 9207 iss");
        q.get("code").cloned().expect("code")
    }

    async fn exchange(&self, op: &OidcProvider, code: &str, verifier: &str) -> Value {
        no_redirects()
            .post(op.url("/token"))
            .basic_auth(&op.client_id, Some(&op.client_secret))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
            ])
            .send()
            .await
            .expect("token endpoint")
            .json()
            .await
            .expect("JSON")
    }

    /// A whole sign-in; returns the ID token.
    async fn id_token(&mut self, op: &OidcProvider, account: OidcAccount) -> String {
        let code = self.code(op, account).await;
        let tokens = self.exchange(op, &code, &self.verifier.clone()).await;
        tokens["id_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no id_token in {tokens}"))
            .to_owned()
    }
}

async fn jwks(op: &OidcProvider) -> JwkSet {
    reqwest::get(op.url("/jwks"))
        .await
        .expect("jwks")
        .json()
        .await
        .expect("a JWK set")
}

/// Verifies `jwt` as a strict RP would (RS256 by a published key, issuer, audience, expiry).
async fn verify(op: &OidcProvider, jwt: &str) -> Result<Value, String> {
    let header = jsonwebtoken::decode_header(jwt).map_err(|e| e.to_string())?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("alg {:?}", header.alg));
    }
    let keys = jwks(op).await;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = keys
        .find(&kid)
        .ok_or(format!("kid {kid} not in the JWKS"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&op.client_id]);
    validation.set_issuer(&[op.issuer()]);
    validation.leeway = 0;
    jsonwebtoken::decode::<Value>(jwt, &key, &validation)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn provider_discovery_names_its_issuer_and_endpoints() {
    let op = OidcProvider::start(REDIRECT_URI).await;
    let d: Value = reqwest::get(op.url("/.well-known/openid-configuration"))
        .await
        .expect("discovery")
        .json()
        .await
        .expect("JSON");
    assert_eq!(d["issuer"], op.issuer());
    for (key, path) in [
        ("authorization_endpoint", "/auth"),
        ("token_endpoint", "/token"),
        ("jwks_uri", "/jwks"),
        ("userinfo_endpoint", "/me"),
    ] {
        assert_eq!(d[key], op.url(path), "{key}");
    }
    assert_eq!(
        d["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    let algs = d["id_token_signing_alg_values_supported"].to_string();
    assert!(algs.contains("RS256"), "{algs}");
    let keys = jwks(&op).await;
    assert!(
        keys.find("test-rs256").is_some(),
        "the signing key is published"
    );
}

#[tokio::test]
async fn code_flow_with_pkce_yields_verified_id_tokens_for_each_account() {
    let op = OidcProvider::start(REDIRECT_URI).await;
    for account in [ALICE, EVE] {
        let mut flow = Flow::new();
        let jwt = flow.id_token(&op, account).await;
        let claims = verify(&op, &jwt)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", account.login));
        assert_eq!(claims["sub"], account.sub);
        assert_eq!(claims["email"], account.email);
        assert_eq!(claims["email_verified"], account.email_verified);
        assert_eq!(claims["nonce"], flow.nonce.as_str());
        assert_eq!(claims["aud"], op.client_id.as_str());
    }
    assert_eq!(op.id_tokens().await.len(), 2);
}

#[tokio::test]
async fn provider_refuses_a_flow_without_pkce_a_wrong_verifier_and_a_spent_code() {
    let op = OidcProvider::start(REDIRECT_URI).await;
    let flow = Flow::new();
    let without_pkce = flow
        .authorization_url(&op)
        .replace("code_challenge", "ignored_challenge");
    let r = no_redirects()
        .get(&without_pkce)
        .send()
        .await
        .expect("authorize");
    let location = r
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(
        query_of(&location).get("error").map(String::as_str),
        Some("invalid_request"),
        "{location}"
    );

    let mut flow = Flow::new();
    let code = flow.code(&op, ALICE).await;
    let answer = flow
        .exchange(
            &op,
            &code,
            "a-verifier-that-is-wrong-but-long-enough-43chars",
        )
        .await;
    assert_eq!(answer["error"], "invalid_grant", "{answer}");
    // oidc-provider does not spend a code on a wrong verifier: the right one still works,
    // once; a second exchange of the same code (a replayed callback) is refused.
    let answer = flow.exchange(&op, &code, &flow.verifier).await;
    assert!(answer["id_token"].is_string(), "{answer}");
    let answer = flow.exchange(&op, &code, &flow.verifier).await;
    assert_eq!(answer["error"], "invalid_grant", "{answer}");
}

#[tokio::test]
async fn a_cancelled_sign_in_and_an_unknown_login_come_back_as_errors() {
    let op = OidcProvider::start(REDIRECT_URI).await;
    let flow = Flow::new();
    let callback = op.cancel_sign_in(&flow.authorization_url(&op)).await;
    assert!(callback.starts_with(REDIRECT_URI), "{callback}");
    let q = query_of(&callback);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{callback}"
    );
    assert_eq!(q.get("state"), Some(&flow.state));

    let mallory = OidcAccount {
        login: "mallory",
        sub: "mallory",
        email: "mallory@example.com",
        email_verified: true,
    };
    let flow = Flow::new();
    let callback = op.sign_in(&flow.authorization_url(&op), mallory).await;
    let q = query_of(&callback);
    assert_eq!(
        q.get("error").map(String::as_str),
        Some("access_denied"),
        "{callback}"
    );
    assert!(!q.contains_key("code"), "{callback}");
    assert_eq!(q.get("state"), Some(&flow.state));
}

#[tokio::test]
async fn each_forged_id_token_is_what_it_says() {
    let op = OidcProvider::start(REDIRECT_URI).await;
    let r = reqwest::Client::new()
        .post(op.url("/__test/next-id-token"))
        .json(&serde_json::json!({"kind": "no-such-kind"}))
        .send()
        .await
        .expect("test endpoint");
    assert_eq!(r.status(), 400);

    let mut previous = Flow::new();
    let mut previous_jwt = previous.id_token(&op, ALICE).await;
    verify(&op, &previous_jwt).await.expect("a genuine token");
    for forgery in BadIdToken::ALL {
        let kind = forgery.as_str();
        op.next_id_token(forgery).await;
        let mut flow = Flow::new();
        let jwt = flow.id_token(&op, ALICE).await;
        let header = jsonwebtoken::decode_header(&jwt);
        let claims = claims_of(&jwt);
        let verified = verify(&op, &jwt).await;
        match forgery {
            BadIdToken::Hs256ClientSecret => {
                assert_eq!(header.expect(kind).alg, Algorithm::HS256, "{kind}");
                let key = DecodingKey::from_secret(op.client_secret.as_bytes());
                let mut v = Validation::new(Algorithm::HS256);
                v.set_audience(&[&op.client_id]);
                jsonwebtoken::decode::<Value>(&jwt, &key, &v).expect("keyed with the secret");
            }
            BadIdToken::AlgNone => {
                let head: Value = serde_json::from_slice(
                    &base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(jwt.split('.').next().expect("header"))
                        .expect("base64url"),
                )
                .expect("JSON");
                assert_eq!(head["alg"], "none", "{kind}");
                assert!(jwt.ends_with('.'), "{kind}: empty signature");
            }
            BadIdToken::UnknownKey => {
                assert_eq!(header.expect(kind).kid.as_deref(), Some("unknown-key"));
                assert!(verified.expect_err(kind).contains("not in the JWKS"));
            }
            BadIdToken::WrongAudience => {
                assert_eq!(claims["aud"], "another-client", "{kind}");
                assert!(verified.expect_err(kind).contains("Audience"));
            }
            BadIdToken::WrongIssuer => {
                assert_eq!(claims["iss"], format!("{}/mix-up", op.issuer()), "{kind}");
                assert!(verified.expect_err(kind).contains("Issuer"));
            }
            BadIdToken::Expired => {
                assert!(verified.expect_err(kind).contains("Expired"));
            }
            BadIdToken::WrongNonce => {
                let claims = verified.expect(kind);
                assert_ne!(claims["nonce"], flow.nonce.as_str(), "{kind}");
                assert_ne!(claims["nonce"], previous.nonce.as_str(), "{kind}");
            }
            BadIdToken::PreviousNonce => {
                assert_eq!(
                    verified.expect(kind)["nonce"],
                    claims_of(&previous_jwt)["nonce"]
                );
                assert_ne!(claims["nonce"], flow.nonce.as_str(), "{kind}");
            }
            BadIdToken::ReplayPrevious => {
                assert_eq!(jwt, previous_jwt, "{kind}");
            }
            BadIdToken::EmailUnverified => {
                let claims = verified.expect(kind);
                assert_eq!(claims["email_verified"], false, "{kind}");
                assert_eq!(claims["nonce"], flow.nonce.as_str(), "{kind}");
            }
            BadIdToken::NewKey => {
                assert_eq!(header.expect(kind).kid.as_deref(), Some("rotated-1"));
                assert_eq!(verified.expect(kind)["nonce"], flow.nonce.as_str());
            }
            BadIdToken::UpstreamMfa => unreachable!("not in ALL"),
        }
        previous = flow;
        previous_jwt = jwt;
    }
    // Only the queued exchanges were forged: the next one is genuine again.
    let mut flow = Flow::new();
    let jwt = flow.id_token(&op, ALICE).await;
    assert_eq!(
        verify(&op, &jwt).await.expect("genuine")["nonce"],
        flow.nonce.as_str()
    );
}

// ---- GitHub ----

const GITHUB_CALLBACK: &str = "http://127.0.0.1:9/auth/sso/github/callback";

/// A GitHub sign-in as the auth service will make it: authorize with PKCE, exchange asking
/// for JSON, then read `/user` and `/user/emails` with a User-Agent. Returns (user, emails).
async fn github_sign_in(gh: &GitHub, scope: &str) -> (String, Value, Value) {
    let verifier = uuid::Uuid::new_v4().simple().to_string() + "-pkce-verifier";
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let authorize = format!(
        "{}?{}",
        gh.authorize_url(),
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", gh.client_id.as_str()),
                ("redirect_uri", GITHUB_CALLBACK),
                ("scope", scope),
                ("state", "st-1"),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
            ])
            .finish()
    );
    let r = no_redirects()
        .get(&authorize)
        .send()
        .await
        .expect("authorize");
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with(GITHUB_CALLBACK), "{location}");
    let q = query_of(&location);
    assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
    let code = q.get("code").expect("code").clone();
    let tokens: Value = no_redirects()
        .post(gh.token_url())
        .header("accept", "application/json")
        .form(&[
            ("client_id", gh.client_id.as_str()),
            ("client_secret", gh.client_secret.as_str()),
            ("code", &code),
            ("redirect_uri", GITHUB_CALLBACK),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON when asked for JSON");
    assert_eq!(tokens["token_type"], "bearer", "{tokens}");
    let token = tokens["access_token"].as_str().expect("token").to_owned();
    let get = |path: &str| {
        no_redirects()
            .get(format!("{}{path}", gh.api_url()))
            .bearer_auth(&token)
            .header("user-agent", "authflow-test")
            .header("accept", "application/vnd.github+json")
            .send()
    };
    let user: Value = get("/user")
        .await
        .expect("user")
        .json()
        .await
        .expect("JSON");
    let emails: Value = get("/user/emails")
        .await
        .expect("emails")
        .json()
        .await
        .expect("JSON");
    (token, user, emails)
}

/// The address the rule accepts: primary and verified, or none.
fn usable_email(emails: &Value) -> Option<String> {
    emails.as_array()?.iter().find_map(|e| {
        (e["primary"] == true && e["verified"] == true)
            .then(|| e["email"].as_str().map(str::to_owned))?
    })
}

#[tokio::test]
async fn github_stand_in_answers_each_kind_of_account() {
    let gh = GitHub::start(
        GITHUB_CALLBACK,
        vec![
            GitHubUser::verified(101, "octo", "octo@example.com").member_of("authflow-org", false),
            GitHubUser::primary_unverified(102, "pat", "pat@example.com"),
            GitHubUser::only_secondary_verified(103, "sam", "sam@example.com", "sam@work.example"),
            GitHubUser::none_verified(104, "nia", &["nia@example.com", "nia@other.example"]),
        ],
    )
    .await;
    let cases = [
        (101, "octo", Some("octo@example.com")),
        (102, "pat", None),
        (103, "sam", None),
        (104, "nia", None),
    ];
    for (id, login, email) in cases {
        gh.sign_in_as(id);
        let (_, user, emails) = github_sign_in(&gh, "read:user user:email").await;
        assert_eq!(user["id"], id, "{login}");
        assert_eq!(user["login"], login);
        assert_eq!(usable_email(&emails).as_deref(), email, "{login}: {emails}");
    }
    let secondary = {
        gh.sign_in_as(103);
        github_sign_in(&gh, "user:email").await.2
    };
    assert!(secondary
        .as_array()
        .expect("list")
        .iter()
        .any(|e| e["email"] == "sam@work.example"
            && e["verified"] == true
            && e["primary"] == false));

    // A renamed login keeps its id.
    gh.rename(101, "octo-renamed");
    gh.sign_in_as(101);
    let (token, user, _) = github_sign_in(&gh, "read:user user:email read:org").await;
    assert_eq!(
        (user["id"].clone(), user["login"].clone()),
        (101.into(), "octo-renamed".into())
    );

    // Org checks: a private membership shows only with read:org.
    let api = |path: &str, token: &str| {
        no_redirects()
            .get(format!("{}{path}", gh.api_url()))
            .bearer_auth(token)
            .header("user-agent", "authflow-test")
            .send()
    };
    let orgs: Value = api("/user/orgs", &token)
        .await
        .expect("orgs")
        .json()
        .await
        .expect("JSON");
    assert_eq!(orgs[0]["login"], "authflow-org", "{orgs}");
    let m = api("/user/memberships/orgs/authflow-org", &token)
        .await
        .expect("membership");
    assert_eq!(m.status(), 200);
    assert_eq!(m.json::<Value>().await.expect("JSON")["state"], "active");
    let m = api("/user/memberships/orgs/other-org", &token)
        .await
        .expect("membership");
    assert_eq!(m.status(), 404);
    let (no_org_scope, _, _) = github_sign_in(&gh, "read:user user:email").await;
    let orgs: Value = api("/user/orgs", &no_org_scope)
        .await
        .expect("orgs")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        orgs,
        serde_json::json!([]),
        "a private membership without read:org"
    );
    let m = api("/user/memberships/orgs", &no_org_scope)
        .await
        .expect("memberships");
    assert_eq!(m.status(), 403);
    gh.sign_in_as(102);
    let (pat, _, _) = github_sign_in(&gh, "read:user user:email read:org").await;
    let orgs: Value = api("/user/orgs", &pat)
        .await
        .expect("orgs")
        .json()
        .await
        .expect("JSON");
    assert_eq!(orgs, serde_json::json!([]), "not a member");

    // The documented refusals.
    let r = no_redirects()
        .get(format!("{}/user", gh.api_url()))
        .bearer_auth(&pat)
        .send()
        .await
        .expect("user");
    assert_eq!(r.status(), 403, "no User-Agent");
    let r = api("/user", "gho_not-a-token").await.expect("user");
    assert_eq!(r.status(), 401);
    let (no_email_scope, _, emails) = github_sign_in(&gh, "read:user").await;
    assert_eq!(emails["message"], "Not Found", "emails need user:email");
    assert!(!no_email_scope.is_empty());

    // Token endpoint errors answer 200 with `error`, form-encoded unless JSON is asked for.
    let form = no_redirects()
        .post(gh.token_url())
        .form(&[
            ("client_id", gh.client_id.as_str()),
            ("client_secret", gh.client_secret.as_str()),
            ("code", "spent-or-made-up"),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(form.status(), 200);
    let body = form.text().await.expect("body");
    assert!(body.starts_with("error=bad_verification_code"), "{body}");
    let wrong_secret: Value = no_redirects()
        .post(gh.token_url())
        .header("accept", "application/json")
        .form(&[
            ("client_id", gh.client_id.as_str()),
            ("client_secret", "nope"),
            ("code", "x"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON");
    assert_eq!(wrong_secret["error"], "incorrect_client_credentials");

    // Denied, and a foreign redirect URI.
    gh.set_deny(true);
    let r = no_redirects()
        .get(format!(
            "{}?client_id={}&state=s",
            gh.authorize_url(),
            gh.client_id
        ))
        .send()
        .await
        .expect("authorize");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert_eq!(
        query_of(&location).get("error").map(String::as_str),
        Some("access_denied")
    );
    gh.set_deny(false);
    let r = no_redirects()
        .get(format!(
            "{}?client_id={}&state=s&redirect_uri=http://evil.example/cb",
            gh.authorize_url(),
            gh.client_id
        ))
        .send()
        .await
        .expect("authorize");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(location.starts_with(GITHUB_CALLBACK), "{location}");
    assert_eq!(
        query_of(&location).get("error").map(String::as_str),
        Some("redirect_uri_mismatch")
    );

    // Every call was recorded.
    let exchanges = gh.calls_to("/login/oauth/access_token");
    assert!(exchanges.iter().all(|c| c.method == "POST"));
    assert!(gh
        .calls_to("/user/emails")
        .iter()
        .all(|c| c.user_agent.as_deref() == Some("authflow-test")));
}
