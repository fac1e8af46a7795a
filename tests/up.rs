//! `authflow up`: the whole stack in one process on embedded defaults, walked the way a
//! browser without JavaScript does (forms, redirects, cookies).

mod support;

use support::*;

/// A form post as a browser sends it from one of our own pages.
async fn form(
    up: &Up,
    path: &str,
    fields: &[(&str, &str)],
    cookie: Option<&str>,
) -> reqwest::Response {
    let body: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    let mut r = client()
        .post(up.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("origin", format!("http://127.0.0.1:{}", up.gateway_port))
        .header("accept", "text/html")
        .header("user-agent", UA)
        .body(body.join("&"));
    if let Some(c) = cookie {
        r = r.header("cookie", format!("authflow_session={c}"));
    }
    r.send().await.expect("request")
}

fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

fn cookie_of(r: &reqwest::Response) -> Option<String> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| {
            let v = c.strip_prefix("authflow_session=")?.split(';').next()?;
            (!v.is_empty()).then(|| v.to_owned())
        })
}

async fn page(up: &Up, path: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut r = client()
        .get(up.url(path))
        .header("accept", "text/html")
        .header("user-agent", UA);
    if let Some(c) = cookie {
        r = r.header("cookie", format!("authflow_session={c}"));
    }
    r.send().await.expect("request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_works_without_javascript_and_ctrl_c_stops_cleanly() {
    let mut up = Up::start(&[]).await;
    let email = "kim@example.com";

    let r = page(&up, "/app/", None).await;
    assert_eq!(r.status(), 302);
    assert_eq!(location(&r), "/auth/signin?next=/app/");
    let r = page(&up, "/auth/signin?next=/app/", None).await;
    assert_eq!(r.status(), 200);
    // The templates escape `/` in values as `&#x2f;` (which the browser reads as `/`).
    let html = r.text().await.expect("html").replace("&#x2f;", "/");
    assert!(
        html.contains("action=\"/api/v1/simple_auth/signin\"") && html.contains("value=\"/app/\""),
        "{html}"
    );
    assert!(html.contains("<label for=\"email\">"));

    let r = form(
        &up,
        "/api/v1/simple_auth/signup",
        &[("email", email), ("password", "short")],
        None,
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (
            303,
            "/auth/signup?error=validation_failed&field=password".into()
        )
    );
    let r = form(
        &up,
        "/api/v1/simple_auth/signup",
        &[("email", email), ("password", "correct horse battery")],
        None,
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/auth/check-email".into())
    );

    let mail = wait_for_mail(&up.outbox(), email, "verify-email").await;
    let link = format!(
        "http://localhost:{}/api/v1/simple_auth/verify-email?token=",
        up.gateway_port
    );
    assert!(mail.contains(&link), "{mail}");
    let r = page(
        &up,
        &format!(
            "/api/v1/simple_auth/verify-email?token={}",
            link_token(&mail)
        ),
        None,
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/auth/verified".into())
    );

    let r = form(
        &up,
        "/api/v1/simple_auth/signin",
        &[
            ("email", email),
            ("password", "wrong password"),
            ("next", "/app/"),
        ],
        None,
    )
    .await;
    assert_eq!(
        location(&r),
        "/auth/signin?error=invalid_credentials&next=/app/"
    );
    let r = form(
        &up,
        "/api/v1/simple_auth/signin",
        &[
            ("email", email),
            ("password", "correct horse battery"),
            ("next", "/app/page?x=1"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/app/page?x=1".into())
    );
    let session = cookie_of(&r).expect("session cookie");

    let r = page(&up, "/app/", Some(&session)).await;
    assert_eq!(r.status(), 200);
    let html = r.text().await.expect("html");
    assert!(
        html.contains("Signed in as <strong>kim@example.com</strong>"),
        "{html}"
    );

    let r = form(&up, "/api/v1/simple_auth/logout", &[], Some(&session)).await;
    assert_eq!(
        (r.status().as_u16(), location(&r)),
        (303, "/auth/signed-out".into())
    );
    assert!(r.headers()["set-cookie"]
        .to_str()
        .expect("ascii")
        .contains("Max-Age=0"));
    assert_eq!(page(&up, "/app/", Some(&session)).await.status(), 302);

    let (status, stdout, stderr) = up.interrupt();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(
        stdout.contains("http://localhost:") && stdout.contains("/app/"),
        "{stdout}"
    );
    assert!(stderr.contains("stopped."), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_and_open_redirects_are_refused() {
    let up = Up::start(&[]).await;
    for (header, value) in [
        ("origin", "https://evil.example"),
        ("sec-fetch-site", "cross-site"),
        ("origin", "null"),
    ] {
        let r = client()
            .post(up.url("/api/v1/simple_auth/signin"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header(header, value)
            .body("email=a%40example.com&password=whatever123")
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 403, "{header}: {value}");
        assert_eq!(json(r).await["error"], "cross_site_request");
    }
    let r = form(
        &up,
        "/api/v1/simple_auth/signup",
        &[
            ("email", "lee@example.com"),
            ("password", "correct horse battery"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status(), 303);
    let mail = wait_for_mail(&up.outbox(), "lee@example.com", "verify-email").await;
    page(
        &up,
        &format!(
            "/api/v1/simple_auth/verify-email?token={}",
            link_token(&mail)
        ),
        None,
    )
    .await;
    for next in [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
    ] {
        let r = form(
            &up,
            "/api/v1/simple_auth/signin",
            &[
                ("email", "lee@example.com"),
                ("password", "correct horse battery"),
                ("next", next),
            ],
            None,
        )
        .await;
        assert_eq!(location(&r), "/app/", "{next}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_can_use_real_redis_and_postgres() {
    let redis = Redis::start().await;
    let pg = Postgres::start().await;
    let up = Up::start(&["--redis-url", &redis.url(), "--database-url", &pg.url()]).await;
    // The gateway's public /health names no dependency; the auth service's own does.
    let r = client()
        .get(format!("http://127.0.0.1:{}/health", up.auth_port))
        .send()
        .await
        .expect("request");
    assert_eq!(json(r).await["redis"], "up");
    let r = form(
        &up,
        "/api/v1/simple_auth/signup",
        &[
            ("email", "max@example.com"),
            ("password", "correct horse battery"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status(), 303);
    wait_for_mail(&up.outbox(), "max@example.com", "verify-email").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_port_is_a_clear_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = busy.local_addr().expect("addr").port().to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(authflow_bin())
        .args(["up", "--auth-port", &port, "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&format!("port 127.0.0.1:{port} is already in use")));
}
