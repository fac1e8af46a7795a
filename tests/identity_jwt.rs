//! The signed identity for upstreams (`[identity] jwt = true`): `X-Authflow-Jwt` reaches the
//! app on a protected route and verifies, with an independent library (`jsonwebtoken`),
//! against the JWKS the gateway serves; it expires after `jwt_ttl`; it is absent when off,
//! and a client's own is never passed.

mod support;

use authflow_gateway::config::GatewayConfig;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use std::time::Duration;
use support::*;

const PW: &str = "correct horse battery";

struct Stack {
    _redis: Redis,
    _app: Upstream,
    _auth: AuthService,
    _key_dir: tempfile::TempDir,
    gw: Gateway,
}

/// A P-256 key made by OpenSSL, as an operator would make it.
fn p256_key(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("identity.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&path)
        .status()
        .expect("openssl");
    assert!(ok.success());
    path
}

async fn stack(tune: impl FnOnce(&mut GatewayConfig, &std::path::Path)) -> Stack {
    let redis = Redis::start().await;
    let app = Upstream::start("app").await;
    let mut auth_cfg = auth_config(&redis.url());
    auth_cfg.signup.require_email_verification = false;
    let auth = AuthService::start(auth_cfg, &[]).await;
    let key_dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = gateway_config(&redis.url(), &[app.addr()]);
    with_auth_service(&mut cfg, auth.port);
    tune(&mut cfg, &p256_key(key_dir.path()));
    let gw = Gateway::start(cfg).await;
    let r = client()
        .post(auth.api("signup"))
        .json(&json!({"email": "jo@example.com", "password": PW}))
        .send()
        .await
        .expect("signup");
    assert!(r.status().is_success());
    Stack {
        _redis: redis,
        _app: app,
        _auth: auth,
        _key_dir: key_dir,
        gw,
    }
}

impl Stack {
    async fn token(&self) -> String {
        let r = sign_in_through(&self.gw.url(""), "jo@example.com", PW).await;
        assert_eq!(r.status(), 200);
        session_cookie(&r).expect("cookie")
    }

    /// The app's view of `/app/x` with the session (and a forged JWT from the client).
    async fn app_headers(&self, token: &str) -> Value {
        let r = client()
            .get(self.gw.url("/app/x"))
            .header("user-agent", UA)
            .header("cookie", format!("sid={token}"))
            .header("x-authflow-jwt", "forged.by.client")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 200);
        json(r).await["headers"].clone()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_signed_identity_verifies_against_the_served_jwks_and_expires() {
    let s = stack(|cfg, key| {
        cfg.identity.jwt = true;
        cfg.identity.jwt_key_file = Some(key.to_path_buf());
        cfg.identity.jwt_ttl = authflow_shared::config::HumanDuration::secs(1);
    })
    .await;
    let token = s.token().await;
    let headers = s.app_headers(&token).await;
    let jwts = headers["x-authflow-jwt"].as_array().expect("one jwt");
    assert_eq!(jwts.len(), 1, "{headers}");
    let jwt = jwts[0].as_str().expect("jwt");
    assert_ne!(jwt, "forged.by.client");

    let r = client()
        .get(s.gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(r.status(), 200);
    let set: JwkSet = r.json().await.expect("jwks json");
    let kid = decode_header(jwt).expect("header").kid.expect("kid");
    let jwk = set.find(&kid).expect("the token's key is served");
    let key = DecodingKey::from_jwk(jwk).expect("key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.leeway = 0;
    let claims = decode::<Value>(jwt, &key, &validation)
        .expect("verifies")
        .claims;
    assert_eq!(claims["email"], "jo@example.com");
    assert_eq!(claims["sub"], headers["x-user-id"][0]);
    assert_eq!(claims["amr"], json!(["pwd"]));
    assert_eq!(claims["roles"], json!([]));
    assert_eq!(
        claims["exp"].as_u64().expect("exp") - claims["iat"].as_u64().expect("iat"),
        1
    );

    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let err = decode::<Value>(jwt, &key, &validation).expect_err("expired");
    assert_eq!(
        err.kind(),
        &jsonwebtoken::errors::ErrorKind::ExpiredSignature
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jwt_there_is_no_signed_identity_and_no_jwks() {
    let s = stack(|_, _| {}).await;
    let token = s.token().await;
    let headers = s.app_headers(&token).await;
    assert!(headers.get("x-authflow-jwt").is_none(), "{headers}");
    let r = client()
        .get(s.gw.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("jwks");
    assert_eq!(r.status(), 404);
}
