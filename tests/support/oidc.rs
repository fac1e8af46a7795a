//! The test OpenID provider: panva's `oidc-provider` (OpenID certified), run by Node from
//! `tests/support/oidc/provider.mjs` on a free loopback port and killed on drop. Its packages
//! are pinned by `tests/support/oidc/package-lock.json` and installed by
//! `scripts/install-deps.sh` (`npm ci`); a missing install is a panic that says so, never a
//! skipped test.
//!
//! What the provider is (the script's header has the details):
//! - issuer `http://127.0.0.1:<port>`, discovery at `/.well-known/openid-configuration`, one
//!   RS256 key (kid `test-rs256`), code flow with PKCE S256 required, scopes
//!   `openid email profile`, the scope's claims in the ID token, `iss` in the authorization
//!   response (RFC 9207);
//! - one static confidential client ([`OidcProvider::client_id`],
//!   [`OidcProvider::client_secret`], `client_secret_basic`) with the redirect URIs given to
//!   [`OidcProvider::start`];
//! - the accounts [`ALICE`], [`BOB`] (verified emails) and [`EVE`] (unverified), signed in
//!   through the `devInteractions` login form (any password); consent is implied;
//! - a test-only queue of forged ID tokens ([`OidcProvider::next_id_token`], [`BadIdToken`]):
//!   the next code exchange answers the named forgery instead of the real ID token.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An account of the test provider. The login typed in the form is also the `sub`.
#[derive(Clone, Copy, Debug)]
pub struct OidcAccount {
    pub login: &'static str,
    pub sub: &'static str,
    pub email: &'static str,
    pub email_verified: bool,
}

pub const ALICE: OidcAccount = OidcAccount {
    login: "alice",
    sub: "alice",
    email: "alice@example.com",
    email_verified: true,
};
pub const BOB: OidcAccount = OidcAccount {
    login: "bob",
    sub: "bob",
    email: "bob@example.com",
    email_verified: true,
};
pub const EVE: OidcAccount = OidcAccount {
    login: "eve",
    sub: "eve",
    email: "eve@example.com",
    email_verified: false,
};

/// A forged ID token the provider answers at the next authorization-code exchange
/// (`POST /__test/next-id-token {"kind": ..}`). Each keeps the real token's other claims, so
/// only the named property is wrong; an RP that accepts it lacks that one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadIdToken {
    /// `alg: HS256`, keyed with the client secret (algorithm confusion).
    Hs256ClientSecret,
    /// `alg: none`, empty signature.
    AlgNone,
    /// RS256 by a key the JWKS does not publish (`kid: unknown-key`).
    UnknownKey,
    /// `aud` and `azp` `another-client`, validly signed.
    WrongAudience,
    /// `iss` `<issuer>/mix-up`, validly signed.
    WrongIssuer,
    /// `exp` an hour ago, validly signed.
    Expired,
    /// A random `nonce`, validly signed.
    WrongNonce,
    /// The `nonce` of the ID token answered before, in a fresh validly signed token.
    PreviousNonce,
    /// The ID token answered before, byte for byte.
    ReplayPrevious,
    /// `email_verified: false`, validly signed.
    EmailUnverified,
    /// RS256 by a new key (`kid: rotated-<n>`) published in the JWKS from now on: a rotation
    /// the RP has not fetched yet. Not an attack; the RP must accept it after one refetch.
    NewKey,
    /// `amr: ["pwd", "otp"]`, validly signed: the provider says it asked for a second factor.
    /// Not an attack (not in [`BadIdToken::ALL`]).
    UpstreamMfa,
}

impl BadIdToken {
    pub const ALL: [BadIdToken; 11] = [
        BadIdToken::Hs256ClientSecret,
        BadIdToken::AlgNone,
        BadIdToken::UnknownKey,
        BadIdToken::WrongAudience,
        BadIdToken::WrongIssuer,
        BadIdToken::Expired,
        BadIdToken::WrongNonce,
        BadIdToken::PreviousNonce,
        BadIdToken::ReplayPrevious,
        BadIdToken::EmailUnverified,
        BadIdToken::NewKey,
    ];

    /// The `kind` the provider's test endpoint takes.
    pub fn as_str(self) -> &'static str {
        match self {
            BadIdToken::Hs256ClientSecret => "hs256-client-secret",
            BadIdToken::AlgNone => "alg-none",
            BadIdToken::UnknownKey => "unknown-key",
            BadIdToken::WrongAudience => "wrong-audience",
            BadIdToken::WrongIssuer => "wrong-issuer",
            BadIdToken::Expired => "expired",
            BadIdToken::WrongNonce => "wrong-nonce",
            BadIdToken::PreviousNonce => "previous-nonce",
            BadIdToken::ReplayPrevious => "replay-previous",
            BadIdToken::EmailUnverified => "email-unverified",
            BadIdToken::NewKey => "new-key",
            BadIdToken::UpstreamMfa => "amr-otp",
        }
    }
}

/// The running provider.
pub struct OidcProvider {
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
    child: Child,
}

fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/oidc")
}

impl OidcProvider {
    /// Starts the provider with one static client allowed to redirect to `redirect_uri`
    /// (usually `<public_url>/auth/sso/<id>/callback`, so the auth service's port must be
    /// chosen first). The script binds port 0 itself and prints the port it got, so there is
    /// no race for a free port. Waits for its ready line (at most 20 s).
    pub async fn start(redirect_uri: &str) -> OidcProvider {
        Self::start_with(&[redirect_uri]).await
    }

    /// As [`OidcProvider::start`], with several redirect URIs for the one client.
    pub async fn start_with(redirect_uris: &[&str]) -> OidcProvider {
        let dir = script_dir();
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "{}/node_modules is missing: run ./scripts/install-deps.sh (npm ci of the test \
             OpenID provider)",
            dir.display()
        );
        let client_id = format!(
            "authflow-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let client_secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .current_dir(&dir)
            .env("OIDC_CLIENT_ID", &client_id)
            .env("OIDC_CLIENT_SECRET", &client_secret)
            .env("OIDC_REDIRECT_URIS", redirect_uris.join(","))
            .env("OIDC_PORT", "0")
            // Held open by `child` (its stdin is never taken): the script exits when it
            // closes, so even a test killed without unwinding leaves no node behind.
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("node (scripts/install-deps.sh installs Node 20)");
        // Output goes through eprintln!, so the test harness shows it only for a failed test.
        let stderr = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("oidc-provider: {line}");
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<u16>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                match line
                    .strip_prefix("oidc-provider ready port=")
                    .and_then(|p| p.trim().parse().ok())
                {
                    Some(port) => {
                        let _ = ready_tx.send(port);
                    }
                    None => eprintln!("oidc-provider: {line}"),
                }
            }
        });
        let port =
            tokio::task::spawn_blocking(move || ready_rx.recv_timeout(Duration::from_secs(20)))
                .await
                .expect("join");
        let port = match port {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!("the test OpenID provider never printed its ready line (exit: {status:?})");
            }
        };
        OidcProvider {
            port,
            client_id,
            client_secret,
            child,
        }
    }

    /// `http://127.0.0.1:<port>`, exactly as the `iss` claim and discovery say it.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer())
    }

    /// Queues a forged ID token for the next authorization-code exchange.
    pub async fn next_id_token(&self, forgery: BadIdToken) {
        let r = reqwest::Client::new()
            .post(self.url("/__test/next-id-token"))
            .json(&serde_json::json!({ "kind": forgery.as_str() }))
            .send()
            .await
            .expect("queue a forged ID token");
        assert_eq!(
            r.status(),
            204,
            "{}: {:?}",
            forgery.as_str(),
            r.text().await
        );
    }

    /// Every ID token the token endpoint answered so far, in order (forged ones included).
    pub async fn id_tokens(&self) -> Vec<String> {
        reqwest::get(self.url("/__test/id-tokens"))
            .await
            .expect("id tokens")
            .json()
            .await
            .expect("a JSON array")
    }

    /// Walks the provider's pages as a browser would, from an authorization URL (what the RP
    /// redirected to) until the provider redirects off its own origin: follows its redirects
    /// with its cookies, posts the `devInteractions` login form as `account`, and returns that
    /// last `Location` (the RP's redirect URI with `code`, `state` and `iss`, or with `error`).
    pub async fn sign_in(&self, authorization_url: &str, account: OidcAccount) -> String {
        self.walk(authorization_url, Some(account)).await
    }

    /// As [`OidcProvider::sign_in`], but presses the login page's cancel link, as a person who
    /// declines would: the RP gets `error=access_denied` with its `state`.
    pub async fn cancel_sign_in(&self, authorization_url: &str) -> String {
        self.walk(authorization_url, None).await
    }

    async fn walk(&self, authorization_url: &str, account: Option<OidcAccount>) -> String {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        let mut cookies: BTreeMap<String, String> = BTreeMap::new();
        let mut next = authorization_url.to_owned();
        let mut form: Option<(String, Vec<(&str, &str)>)> = None;
        for _ in 0..10 {
            let cookie = cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            let request = match form.take() {
                Some((action, fields)) => http.post(action).form(&fields),
                None => http.get(&next),
            };
            let r = request
                .header("cookie", cookie)
                .send()
                .await
                .expect("provider");
            for v in r.headers().get_all("set-cookie") {
                let pair = v.to_str().unwrap_or("").split(';').next().unwrap_or("");
                if let Some((k, v)) = pair.split_once('=') {
                    cookies.insert(k.trim().to_owned(), v.to_owned());
                }
            }
            if let Some(location) = r.headers().get("location") {
                let location = location.to_str().expect("location").to_owned();
                let absolute = if location.starts_with('/') {
                    self.url(&location)
                } else {
                    location
                };
                if !absolute.starts_with(&format!("{}/", self.issuer())) {
                    return absolute;
                }
                next = absolute;
                continue;
            }
            let status = r.status();
            let page = r.text().await.unwrap_or_default();
            let action = page
                .split("<form")
                .nth(1)
                .and_then(|f| f.split("action=\"").nth(1))
                .and_then(|a| a.split('"').next())
                .map(|a| a.replace("&amp;", "&"))
                .unwrap_or_else(|| panic!("{next}: {status}, no login form in {page}"));
            match account {
                Some(account) => {
                    form = Some((
                        action,
                        vec![
                            ("prompt", "login"),
                            ("login", account.login),
                            ("password", "any password"),
                        ],
                    ))
                }
                // The page's cancel link: the form's action plus `/abort`.
                None => next = format!("{action}/abort"),
            }
        }
        panic!("{authorization_url}: the provider never redirected off its origin");
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
