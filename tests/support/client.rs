//! HTTP from the test's side: clients that do not follow redirects, raw requests, and
//! helpers for reading responses.

use std::net::IpAddr;
use std::time::Duration;

/// A client that does not follow redirects, optionally bound to a source address.
pub fn client_from(source: Option<&str>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0);
    if let Some(ip) = source {
        b = b.local_address(ip.parse::<IpAddr>().expect("ip"));
    }
    b.build().expect("client")
}

pub fn client() -> reqwest::Client {
    client_from(None)
}

pub const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0";

/// Sends raw bytes and returns the raw response head and body (for requests a URL library
/// would normalize first).
pub async fn raw_request(port: u16, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code and the whole raw answer of a raw HTTP/1.1 exchange.
pub async fn raw_status(port: u16, request: &str) -> (u16, String) {
    let raw = raw_request(port, request).await;
    let code = raw
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {raw:?}"));
    (code, raw)
}

/// A POST of `body` as JSON to `url` from the test browser (`UA`).
pub async fn post_json(url: String, body: serde_json::Value) -> reqwest::Response {
    client()
        .post(url)
        .header("user-agent", UA)
        .json(&body)
        .send()
        .await
        .expect("request")
}

pub async fn json(resp: reqwest::Response) -> serde_json::Value {
    resp.json().await.expect("json body")
}

/// A GET of `url` from the test browser (`UA`) carrying session cookie `sid=<token>`.
pub async fn get_with_session(url: String, token: &str) -> reqwest::Response {
    client()
        .get(url)
        .header("user-agent", UA)
        .header("cookie", format!("sid={token}"))
        .send()
        .await
        .expect("request")
}

/// The session token from a `Set-Cookie: sid=...` header.
pub fn session_cookie(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let v = c.strip_prefix("sid=")?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_owned())
        })
}

/// Signs `email` up through `base` (e.g. `gw.url("")`) and follows the verification link the
/// auth service wrote to `outbox`, as a person would.
pub async fn register_through(base: &str, outbox: &std::path::Path, email: &str, password: &str) {
    let r = client()
        .post(format!("{base}/api/v1/simple_auth/signup"))
        .header("user-agent", UA)
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    let mail = super::mail::wait_for_mail(outbox, email, "verify-email").await;
    let r = client()
        .get(format!(
            "{base}/api/v1/simple_auth/verify-email?token={}",
            super::mail::link_token(&mail)
        ))
        .send()
        .await
        .expect("verify");
    assert_eq!(r.status(), 200);
}

/// A sign-in through the gateway at `base` (e.g. `gw.url("")`), as the test browser (`UA`).
pub async fn sign_in_through(base: &str, email: &str, password: &str) -> reqwest::Response {
    client()
        .post(format!("{base}/api/v1/simple_auth/signin"))
        .header("user-agent", UA)
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .expect("signin")
}

/// Scrapes the Prometheus text at `url` until it holds every line of `wanted` (counts land
/// just after a response is sent) or about 2.5 s pass; the last text either way.
pub async fn scrape_until(url: &str, wanted: &[&str]) -> String {
    let mut text = String::new();
    for _ in 0..50 {
        text = client()
            .get(url)
            .send()
            .await
            .expect("scrape")
            .text()
            .await
            .expect("body");
        if wanted.iter().all(|w| text.lines().any(|l| l == *w)) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    text
}

/// Asserts that the scraped `text` has each of the exact lines `wanted`.
pub fn assert_metric_lines(text: &str, wanted: &[&str]) {
    for w in wanted {
        assert!(text.lines().any(|l| l == *w), "no line {w:?} in:\n{text}");
    }
}
