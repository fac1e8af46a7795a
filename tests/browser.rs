//! A person's flow in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver + fantoccini), against `authflow up`. Open /app/ → sent to sign in → sign up
//! → follow the verification link from the outbox → sign in → the app shows the user → "Your
//! devices" lists this one → sign out → /app/ sends you to sign in again. A screenshot of
//! each page is kept in `target/screenshots/`.

mod support;

use fantoccini::{ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_verifies_signs_in_and_out_in_chromium() {
    let up = Up::start(&[]).await;
    let driver = chromedriver().await;
    let profile = driver._profile.path().display().to_string();
    let caps: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=900,760", format!("--user-data-dir={profile}")]
        }
    }))
    .expect("caps");
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("webdriver session");
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
