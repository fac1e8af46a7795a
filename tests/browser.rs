//! A person's flow in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini), against `authflow up`. Open /app/ → sent to sign in → sign up
//! → follow the verification link from the outbox → sign in → the app shows the user → "Your
//! devices" lists this one → sign out → /app/ sends you to sign in again. Then the sign-in
//! page with the default branding, with a logo and colour of the operator's, and in German,
//! with a template carrying an inline script that the Content-Security-Policy must stop. Then
//! sign-in through an OpenID provider (the test `oidc-provider`, another site): /app/ → the
//! sign-in page's "Sign in with Test IdP" → the provider's login form → back on /app/ signed
//! in. Then passkeys with Chromium's virtual authenticator (WebDriver's WebAuthn extension):
//! add one on "Your devices", sign out, sign in with the password, "Use a passkey" at the
//! code prompt, signed in; with user verification failing, the prompt refuses. A screenshot
//! of each page is kept in `target/screenshots/`.

mod support;

use fantoccini::{ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::oidc::{OidcProvider, ALICE};
use support::*;

struct ChromeDriver {
    port: u16,
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> ChromeDriver {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver not found: run scripts/install-deps.sh (Debian packages chromium, chromium-driver)");
    assert!(
        wait_for_port(port, Duration::from_secs(20)).await,
        "chromedriver did not start"
    );
    ChromeDriver {
        port,
        child,
        _profile: tempfile::tempdir().expect("tempdir"),
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

struct Browser {
    c: fantoccini::Client,
    base: String,
    shots: PathBuf,
}

impl Browser {
    async fn shot(&self, name: &str) {
        let png = self.c.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("write screenshot");
    }

    async fn path(&self) -> String {
        let url = self.c.current_url().await.expect("url");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    async fn fill(&self, css: &str, text: &str) {
        self.c
            .find(Locator::Css(css))
            .await
            .expect(css)
            .send_keys(text)
            .await
            .expect("type");
    }

    async fn submit(&self) {
        self.c
            .find(Locator::Css("button[type=submit]"))
            .await
            .expect("submit button")
            .click()
            .await
            .expect("click");
    }

    async fn wait_for_path(&self, prefix: &str) -> String {
        for _ in 0..100 {
            let p = self.path().await;
            if p.starts_with(prefix) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("never reached {prefix}; at {}", self.path().await);
    }

    async fn text(&self) -> String {
        self.c
            .find(Locator::Css("main"))
            .await
            .expect("main")
            .text()
            .await
            .expect("text")
    }
}

/// A WebDriver session in headless Chromium whose requests say `Accept-Language: {langs}`.
async fn connect(driver: &ChromeDriver, langs: &str) -> fantoccini::Client {
    connect_with(driver, langs, false).await
}

/// As [`connect`]; `webauthn`: the session may add virtual authenticators.
async fn connect_with(driver: &ChromeDriver, langs: &str, webauthn: bool) -> fantoccini::Client {
    let profile = driver
        ._profile
        .path()
        .join(uuid::Uuid::new_v4().to_string());
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=900,760", format!("--user-data-dir={}", profile.display()),
                     format!("--lang={}", langs.split(',').next().unwrap_or("en"))],
            "prefs": { "intl.accept_languages": langs }
        }
    }))
    .expect("caps");
    let mut caps = caps;
    if webauthn {
        caps.insert(
            "webauthn:virtualAuthenticators".into(),
            serde_json::Value::Bool(true),
        );
    }
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("webdriver session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_verifies_signs_in_and_out_in_chromium() {
    let up = Up::start(&[]).await;
    let driver = chromedriver().await;
    let c = connect(&driver, "en-US,en").await;
    let b = Browser {
        c,
        base: format!("http://localhost:{}", up.gateway_port),
        shots: screenshots_dir(),
    };
    let email = "nora@example.com";

    b.c.goto(&format!("{}/app/", b.base)).await.expect("goto");
    assert_eq!(
        b.wait_for_path("/auth/signin").await,
        "/auth/signin?next=/app/"
    );
    b.shot("01-sign-in").await;

    b.c.find(Locator::LinkText("Create an account"))
        .await
        .expect("signup link")
        .click()
        .await
        .expect("click");
    b.wait_for_path("/auth/signup").await;
    b.shot("02-sign-up").await;
    b.fill("#email", email).await;
    b.fill("#password", "correct horse battery").await;
    b.submit().await;
    b.wait_for_path("/auth/check-email").await;
    assert!(b.text().await.contains("We sent you a link"));
    b.shot("03-check-email").await;

    let mail = wait_for_mail(&up.outbox(), email, "verify-email").await;
    let link = mail
        .lines()
        .find(|l| l.starts_with(&b.base) && l.contains("verify-email?token="))
        .expect("link line")
        .trim()
        .to_owned();
    b.c.goto(&link).await.expect("goto link");
    b.wait_for_path("/auth/verified").await;
    assert!(b.text().await.contains("confirmed"));
    b.shot("04-email-verified").await;

    b.c.find(Locator::LinkText("Sign in"))
        .await
        .expect("sign in link")
        .click()
        .await
        .expect("click");
    b.wait_for_path("/auth/signin").await;
    b.fill("#email", email).await;
    b.fill("#password", "correct horse battery").await;
    b.submit().await;
    b.wait_for_path("/app/").await;
    let text = b.text().await;
    assert!(text.contains(&format!("Signed in as {email}")), "{text}");
    b.shot("05-app-signed-in").await;

    b.c.find(Locator::LinkText("Your devices"))
        .await
        .expect("devices link")
        .click()
        .await
        .expect("click");
    b.wait_for_path("/auth/sessions").await;
    let text = b.text().await;
    assert!(text.contains("This device"), "{text}");
    assert!(text.contains("127.0.0.x"), "{text}");
    b.shot("06-your-devices").await;
    b.submit().await; // "Sign out all other devices": there are none, this one stays
    b.wait_for_path("/auth/sessions?notice=others_signed_out")
        .await;
    assert!(b.text().await.contains("Every other device is signed out"));
    b.c.goto(&format!("{}/app/", b.base)).await.expect("goto");
    b.wait_for_path("/app/").await;

    b.submit().await; // the app's "Sign out" button
    b.wait_for_path("/auth/signed-out").await;
    b.shot("07-signed-out").await;

    b.c.goto(&format!("{}/app/", b.base)).await.expect("goto");
    assert_eq!(
        b.wait_for_path("/auth/signin").await,
        "/auth/signin?next=/app/"
    );
    b.shot("08-sign-in-again").await;
    b.c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sign_in_page_is_branded_translated_and_runs_no_inline_script_in_chromium() {
    let redis = Redis::start().await;
    let plain = AuthService::start(auth_config(&redis.url()), &[]).await;

    // The operator's logo, colour and name, and a template that tries to run script.
    let dir = tempfile::tempdir().expect("tempdir");
    let assets = dir.path().join("static");
    let templates = dir.path().join("templates");
    std::fs::create_dir_all(&assets).expect("static");
    std::fs::create_dir_all(&templates).expect("templates");
    std::fs::write(
        assets.join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"180\" height=\"48\" viewBox=\"0 0 180 48\">\
         <rect width=\"48\" height=\"48\" rx=\"10\" fill=\"#0b5e3b\"/><text x=\"60\" y=\"33\" font-family=\"sans-serif\" \
         font-size=\"26\" font-weight=\"700\" fill=\"#0b5e3b\">Acme</text></svg>",
    )
    .expect("logo");
    std::fs::write(
        templates.join("_alerts.html"),
        "<script>document.title = 'inline script ran'</script>\
         <img src=\"/nowhere\" alt=\"\" hidden onerror=\"document.title = 'inline handler ran'\">",
    )
    .expect("hostile template");
    let mut cfg = auth_config(&redis.url());
    cfg.pages.product_name = "Acme".into();
    cfg.pages.logo_url = Some("/auth/static/logo.svg".into());
    cfg.pages.primary_color = "#0b5e3b".into();
    cfg.pages.background_color = "#eef3f0".into();
    cfg.pages.footer_text = Some("Acme Inc.".into());
    cfg.pages.static_dir = Some(assets.display().to_string());
    cfg.pages.templates_dir = Some(templates.display().to_string());
    let branded = AuthService::start(cfg, &[]).await;

    let driver = chromedriver().await;
    let shots = screenshots_dir();
    let english = Browser {
        c: connect(&driver, "en-US,en").await,
        base: plain.url(""),
        shots: shots.clone(),
    };
    english
        .c
        .goto(&plain.url("/auth/signin?next=/app/"))
        .await
        .expect("goto");
    assert!(english.text().await.contains("Forgot password?"));
    english.shot("10-sign-in-default-branding").await;

    english
        .c
        .goto(&branded.url("/auth/signin?next=/app/"))
        .await
        .expect("goto");
    let title = english.c.title().await.expect("title");
    assert_eq!(title, "Sign in · Acme", "an inline script or handler ran");
    let logo_width = english
        .c
        .execute(
            "return document.querySelector('img.logo').naturalWidth",
            vec![],
        )
        .await
        .expect("logo");
    assert_eq!(logo_width, serde_json::json!(180), "the logo did not load");
    let button = english
        .c
        .execute(
            "return getComputedStyle(document.querySelector('button')).backgroundColor",
            vec![],
        )
        .await
        .expect("style");
    assert_eq!(button, serde_json::json!("rgb(11, 94, 59)"));
    english.shot("11-sign-in-custom-logo-and-colour").await;
    let csp = client()
        .get(branded.url("/auth/signin"))
        .send()
        .await
        .expect("page")
        .headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none';") && !csp.contains("script"),
        "{csp}"
    );
    english.c.close().await.expect("close");

    let german = Browser {
        c: connect(&driver, "de-DE,de").await,
        base: plain.url(""),
        shots,
    };
    german
        .c
        .goto(&plain.url("/auth/signin?next=/app/"))
        .await
        .expect("goto");
    let text = german.text().await;
    assert!(
        text.contains("Anmelden") && text.contains("Passwort vergessen?"),
        "{text}"
    );
    assert_eq!(
        german.c.title().await.expect("title"),
        "Anmelden · AuthFlow"
    );
    german.shot("12-sign-in-german").await;
    german.c.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_through_an_openid_provider_in_chromium() {
    // The gateway's port first: the provider must know the redirect URI before `up` runs.
    // `localhost` throughout, as `up` advertises it, so the gateway's cookies stay on one host;
    // the provider is 127.0.0.1:<its port>, another site, as a real provider is.
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let idp = OidcProvider::start(&format!("{base}/auth/sso/oidc/callback")).await;
    let _up = Up::start_on(
        port,
        &[
            "--oidc-issuer",
            &idp.issuer(),
            "--oidc-client-id",
            &idp.client_id,
            "--oidc-name",
            "Test IdP",
        ],
        &[("AUTHFLOW_IDP_OIDC_CLIENT_SECRET", &idp.client_secret)],
    )
    .await;
    let driver = chromedriver().await;
    let b = Browser {
        c: connect(&driver, "en-US,en").await,
        base,
        shots: screenshots_dir(),
    };

    b.c.goto(&format!("{}/app/", b.base)).await.expect("goto");
    assert_eq!(
        b.wait_for_path("/auth/signin").await,
        "/auth/signin?next=/app/"
    );
    let text = b.text().await;
    assert!(text.contains("Sign in with Test IdP"), "{text}");
    b.shot("20-sign-in-with-provider").await;

    b.c.find(Locator::LinkText("Sign in with Test IdP"))
        .await
        .expect("provider button")
        .click()
        .await
        .expect("click");
    // The provider's devInteractions login form, on the provider's own origin.
    let login =
        b.c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("input[name=login]"))
            .await
            .expect("the provider's login form");
    let at = b.c.current_url().await.expect("url");
    assert_eq!(
        at.origin().ascii_serialization(),
        idp.issuer(),
        "not on the provider: {at}"
    );
    assert!(at.path().starts_with("/interaction/"), "{at}");
    login.send_keys(ALICE.login).await.expect("type login");
    b.fill("input[name=password]", "any password").await;
    b.shot("21-provider-login").await;
    b.c.find(Locator::Css("button.login-submit"))
        .await
        .expect("the provider's sign-in button")
        .click()
        .await
        .expect("click");

    // Consent is implied for the test client: the provider sends the browser straight back
    // through the callback to where it started.
    b.wait_for_path("/app/").await;
    let at = b.c.current_url().await.expect("url");
    assert_eq!(at.as_str(), format!("{}/app/", b.base));
    let text = b.text().await;
    assert!(
        text.contains(&format!("Signed in as {}", ALICE.email)),
        "{text}"
    );
    b.shot("22-app-signed-in-through-provider").await;
    b.c.close().await.expect("close");
}

/// A command of the W3C WebDriver WebAuthn extension (fantoccini has none of its own:
/// jonhoo/fantoccini#179): `POST /session/{id}/webauthn/{path}` with a JSON body.
#[derive(Debug)]
struct WebAuthnCommand {
    path: String,
    body: serde_json::Value,
}

impl fantoccini::wd::WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/webauthn/{}", self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// Adds a virtual CTAP2 platform authenticator that holds discoverable credentials and
/// verifies its user (as a fingerprint reader would); its id.
async fn add_authenticator(c: &fantoccini::Client) -> String {
    let id = c
        .issue_cmd(WebAuthnCommand {
            path: "authenticator".into(),
            body: serde_json::json!({
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": true,
                "hasUserVerification": true,
                "isUserVerified": true,
                "automaticPresenceSimulation": true,
            }),
        })
        .await
        .expect("virtual authenticator");
    id.as_str().expect("authenticator id").to_owned()
}

/// From now on the authenticator's user verification succeeds (`true`) or fails.
async fn set_user_verified(c: &fantoccini::Client, authenticator: &str, verified: bool) {
    c.issue_cmd(WebAuthnCommand {
        path: format!("authenticator/{authenticator}/uv"),
        body: serde_json::json!({ "isUserVerified": verified }),
    })
    .await
    .expect("set user verified");
}

impl Browser {
    async fn click(&self, css: &str) {
        self.c
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css(css))
            .await
            .expect(css)
            .click()
            .await
            .expect("click");
    }

    async fn sign_in_with_password(&self, email: &str) {
        self.c
            .goto(&format!("{}/auth/signin?next=/app/", self.base))
            .await
            .expect("goto");
        self.fill("#email", email).await;
        self.fill("#password", "correct horse battery").await;
        self.submit().await;
    }

    async fn sign_out(&self) {
        self.c
            .goto(&format!("{}/app/", self.base))
            .await
            .expect("goto");
        self.wait_for_path("/app/").await;
        self.submit().await; // the app's "Sign out" button
        self.wait_for_path("/auth/signed-out").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passkey_is_added_and_signs_in_as_the_second_factor_in_chromium() {
    // `localhost`, as `up` advertises it: the RP ID, and a secure context over http.
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let up = Up::start_on(port, &[], &[("AUTHFLOW_MFA_WEBAUTHN_RP_ID", "localhost")]).await;
    let email = "pia@example.com";
    register_through(&up.url(""), &up.outbox(), email, "correct horse battery").await;
    let driver = chromedriver().await;
    let b = Browser {
        c: connect_with(&driver, "en-US,en", true).await,
        base,
        shots: screenshots_dir(),
    };
    let authenticator = add_authenticator(&b.c).await;

    // No second factor yet: the password signs in. Then "Add a passkey" on Your devices.
    b.sign_in_with_password(email).await;
    b.wait_for_path("/app/").await;
    b.c.goto(&format!("{}/auth/sessions", b.base))
        .await
        .expect("goto");
    b.wait_for_path("/auth/sessions").await;
    let text = b.text().await;
    assert!(
        text.contains("No passkeys yet.") && text.contains("Add a passkey"),
        "{text}"
    );
    b.fill("#passkey_name", "Virtual laptop").await;
    b.shot("30-your-devices-add-a-passkey").await;
    b.click("button[data-passkey-go]").await;
    // The account's first factor: its recovery codes, shown once, on the page.
    b.c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("[data-passkey-codes] li code"))
        .await
        .expect("the recovery codes");
    let codes =
        b.c.find_all(Locator::Css("[data-passkey-codes] li code"))
            .await
            .expect("codes");
    assert_eq!(codes.len(), 10);
    b.shot("31-passkey-added-recovery-codes").await;
    b.click("[data-passkey-codes] a.button").await;
    b.wait_for_path("/auth/sessions?notice=passkey_added").await;
    let text = b.text().await;
    assert!(
        text.contains("Virtual laptop") && text.contains("last used never"),
        "{text}"
    );
    b.shot("32-your-devices-with-a-passkey").await;

    // Signed out, the password alone no longer signs in: the prompt, where the passkey does.
    b.sign_out().await;
    b.sign_in_with_password(email).await;
    assert_eq!(b.wait_for_path("/auth/mfa").await, "/auth/mfa?next=/app/");
    b.c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(
            "div.passkey:not([hidden]) button[data-passkey-go]",
        ))
        .await
        .expect("the script shows the passkey button");
    assert!(b.text().await.contains("Use a passkey"));
    b.shot("33-code-prompt-use-a-passkey").await;
    b.click("button[data-passkey-go]").await;
    b.wait_for_path("/app/").await;
    let text = b.text().await;
    assert!(text.contains(&format!("Signed in as {email}")), "{text}");
    b.shot("34-app-signed-in-with-a-passkey").await;
    b.c.goto(&format!("{}/auth/sessions", b.base))
        .await
        .expect("goto");
    b.wait_for_path("/auth/sessions").await;
    let text = b.text().await;
    assert!(
        !text.contains("last used never"),
        "the use is recorded: {text}"
    );

    // The authenticator can no longer verify its user: the passkey is refused.
    b.sign_out().await;
    set_user_verified(&b.c, &authenticator, false).await;
    b.sign_in_with_password(email).await;
    b.wait_for_path("/auth/mfa").await;
    b.click("button[data-passkey-go]").await;
    let alert =
        b.c.wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("[data-passkey-alert]:not([hidden])"))
            .await
            .expect("the refusal");
    let said = alert.text().await.expect("text");
    assert!(said.contains("The passkey was not accepted"), "{said}");
    assert!(
        b.path().await.starts_with("/auth/mfa"),
        "still at the prompt"
    );
    b.shot("35-passkey-refused-without-user-verification").await;
    let cookies = b.c.get_all_cookies().await.expect("cookies");
    assert!(
        !cookies.iter().any(|c| c.name().contains("session")),
        "no session: {cookies:?}"
    );
    b.c.close().await.expect("close");
}
