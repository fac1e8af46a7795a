//! The pages and mails as an operator and a person meet them, against the real binary: the
//! language a browser asks for, mails in the language of the request that caused them,
//! branding, an override directory, static files, a broken template refused by
//! `authflow check` (with file and line) and by a reload (the old pages stay), and
//! `authflow pages export` as a starting point.

mod support;

use authflow_auth::AuthConfig;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use support::*;

const PW: &str = "correct horse battery";

async fn page(svc: &AuthService, path: &str, accept_language: &str) -> reqwest::Response {
    client()
        .get(svc.url(path))
        .header("accept-language", accept_language)
        .send()
        .await
        .expect("request")
}

/// `authflow check` on `cfg`, written into `dir`: (success, stdout + stderr).
fn check(cfg: &AuthConfig, dir: &Path) -> (bool, String) {
    let path = dir.join("auth.toml");
    std::fs::write(&path, toml::to_string(cfg).expect("toml")).expect("write");
    let out = Command::new(authflow_bin())
        .arg("check")
        .arg(&path)
        .output()
        .expect("authflow check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_and_mails_speak_the_language_of_the_request() {
    let redis = Redis::start().await;
    let svc = AuthService::start(auth_config(&redis.url()), &[]).await;

    let r = page(&svc, "/auth/signin?next=/app/", "de-CH, de;q=0.9, en;q=0.5").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-language"], "de");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .expect("csp")
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'; style-src 'self'; img-src 'self';"),
        "{csp}"
    );
    assert!(
        !csp.contains("script") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = r.text().await.expect("body");
    assert!(
        html.contains("<html lang=\"de\">") && html.contains("<h1>Anmelden</h1>"),
        "{html}"
    );
    assert!(
        html.contains("<label for=\"email\">E-Mail</label>"),
        "{html}"
    );
    let r = page(&svc, "/auth/signin", "fr, en;q=0.8").await;
    assert!(r.text().await.expect("body").contains("<h1>Sign in</h1>"));

    // The stylesheet the page links to is served, cacheable.
    let css_path = html
        .split("<link rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("stylesheet")
        .replace("&#x2f;", "/");
    let css = page(&svc, &css_path, "de").await;
    assert_eq!(css.status(), 200);
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    assert!(css.headers()["cache-control"]
        .to_str()
        .expect("cc")
        .starts_with("public, max-age="));

    // A sign-up from a German browser gets its mail in German, as text and HTML.
    let r = client()
        .post(svc.api("signup"))
        .header("accept-language", "de-DE,de;q=0.9")
        .json(&json!({"email": "grete@example.com", "password": PW}))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 202);
    let mail = wait_for_mail(&svc.outbox(), "grete@example.com", "verify-email").await;
    assert!(
        mail.contains("Subject: =?utf-8?") || mail.contains("Subject: Best"),
        "{mail}"
    );
    assert!(mail.contains("multipart/alternative"), "{mail}");
    assert!(
        mail.contains("Content-Type: text/plain; charset=utf-8"),
        "{mail}"
    );
    assert!(
        mail.contains("Content-Type: text/html; charset=utf-8"),
        "{mail}"
    );
    assert!(
        mail.contains("Bestätigen Sie Ihre E-Mail-Adresse, indem Sie"),
        "{mail}"
    );
    let link = mail
        .lines()
        .find(|l| l.starts_with("http://app.example.com/api/v1/simple_auth/verify-email?token="))
        .expect("a link alone on its line in the text part");
    assert_eq!(link_token(link), link_token(&mail));

    // An English request, an English mail; the outbox lists the files oldest first.
    let r = post_json(
        svc.api("forgot-password"),
        json!({"email": "grete@example.com"}),
    )
    .await;
    assert_eq!(r.status(), 202);
    let reset = wait_for_mail(&svc.outbox(), "grete@example.com", "reset-password").await;
    assert!(reset.contains("Subject: Reset your password"), "{reset}");
    assert!(reset.contains("valid for 30 minutes, once"), "{reset}");
    let mut names: Vec<String> = std::fs::read_dir(svc.outbox())
        .expect("outbox")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".eml"))
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    names.sort();
    let newest = std::fs::read_to_string(svc.outbox().join(&names[1])).expect("newest");
    assert!(
        newest.contains("reset-password"),
        "ls sorts by time: {names:?}"
    );
    let stamp = &names[0][..23];
    assert!(
        stamp.len() == 23 && stamp.as_bytes()[8] == b'T' && stamp.ends_with('Z'),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branding_and_static_files_come_from_the_config() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let assets = dir.path().join("static");
    std::fs::create_dir_all(&assets).expect("static");
    std::fs::write(
        assets.join("logo.svg"),
        "<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
    )
    .expect("logo");
    std::fs::write(dir.path().join("secret.txt"), "no").expect("outside");
    let mut cfg = auth_config(&redis.url());
    cfg.pages.product_name = "Acme <Shop>".into();
    cfg.pages.logo_url = Some("/auth/static/logo.svg".into());
    cfg.pages.primary_color = "#0b5e3b".into();
    cfg.pages.footer_text = Some("Acme Inc. & friends".into());
    cfg.pages.static_dir = Some(assets.display().to_string());
    let svc = AuthService::start(cfg, &[]).await;

    let html = page(&svc, "/auth/signup", "en")
        .await
        .text()
        .await
        .expect("body");
    assert!(
        html.contains("<title>Create an account · Acme &lt;Shop&gt;</title>"),
        "{html}"
    );
    assert!(html.contains("alt=\"Acme &lt;Shop&gt;\""), "{html}");
    assert!(html.contains("Acme Inc. &amp; friends"), "{html}");
    let logo = page(&svc, "/auth/static/logo.svg", "en").await;
    assert_eq!(logo.status(), 200);
    assert_eq!(logo.headers()["content-type"], "image/svg+xml");
    assert_eq!(logo.headers()["x-content-type-options"], "nosniff");
    assert_eq!(logo.headers()["cache-control"], "public, max-age=604800");
    for bad in [
        "/auth/static/../secret.txt",
        "/auth/static/%2e%2e/secret.txt",
        "/auth/static/",
        "/auth/static/nope.png",
    ] {
        assert_eq!(page(&svc, bad, "en").await.status(), 404, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_sqlite_url_creates_the_database_file() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("new/users.db");
    let mut cfg = auth_config(&redis.url());
    cfg.database.url = format!("sqlite://{}", file.display());
    let svc = AuthService::start(cfg, &[]).await;
    assert!(file.is_file());
    let r = post_json(
        svc.api("signup"),
        json!({"email": "a@example.com", "password": PW}),
    )
    .await;
    assert_eq!(r.status(), 202);
}

#[test]
fn check_renders_overrides_and_names_the_file_and_line_of_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    let out = Command::new(authflow_bin())
        .args(["pages", "export"])
        .arg(&templates)
        .output()
        .expect("export");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(templates.join("signin.html").is_file() && templates.join("i18n/de.toml").is_file());

    // Keep one template, change it, and add a language: check renders it all.
    for entry in std::fs::read_dir(&templates)
        .expect("dir")
        .filter_map(|e| e.ok())
    {
        let p = entry.path();
        if p.is_file() && p.file_name().is_some_and(|n| n != "signin.html") {
            std::fs::remove_file(p).expect("rm");
        }
    }
    std::fs::remove_dir_all(templates.join("mail")).expect("rm");
    std::fs::remove_file(templates.join("i18n/en.toml")).expect("rm");
    std::fs::remove_file(templates.join("i18n/de.toml")).expect("rm");
    std::fs::write(
        templates.join("i18n/fr.toml"),
        "[signin]\ntitle = \"Connexion\"\n",
    )
    .expect("fr");
    let mut cfg = auth_config("redis://127.0.0.1:6379");
    cfg.database.url = "sqlite://users.db".into();
    cfg.pages.templates_dir = Some(templates.display().to_string());
    let (ok, text) = check(&cfg, dir.path());
    assert!(ok, "{text}");
    assert!(
        text.contains("pages rendered in de, en, fr, overridden: signin.html"),
        "{text}"
    );
    assert!(
        text.contains("warning:")
            && text.contains("catalogue \"fr\" has no message \"signin.submit\""),
        "{text}"
    );

    // Broken: an undefined value on line 5 of the override.
    let signin = templates.join("signin.html");
    let good = std::fs::read_to_string(&signin).expect("signin");
    let broken = good.replacen(
        "{%- include \"_alerts.html\" %}",
        "{%- include \"_alerts.html\" %}\n{{ user.name }}",
        1,
    );
    assert_ne!(good, broken);
    std::fs::write(&signin, &broken).expect("write");
    let (ok, text) = check(&cfg, dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!("error: {}:5: undefined value", signin.display())),
        "{text}"
    );
    // A syntax error, too.
    std::fs::write(
        &signin,
        "{% extends \"layout.html\" %}\n{% block content %}{% for %}{% endblock %}\n",
    )
    .expect("write");
    let (ok, text) = check(&cfg, dir.path());
    assert!(
        !ok && text.contains(&format!("error: {}:2: syntax error", signin.display())),
        "{text}"
    );

    // Colours and the logo are validated where they enter.
    let mut bad = auth_config("redis://127.0.0.1:6379");
    bad.pages.primary_color = "red;background:url(x)".into();
    bad.pages.logo_url = Some("javascript:alert(1)".into());
    let (ok, text) = check(&bad, dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("pages.primary_color") && text.contains("pages.logo_url"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_with_a_broken_template_is_refused_and_the_old_pages_stay() {
    let redis = Redis::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let signin = dir.path().join("signin.html");
    let version = |title: &str| {
        format!("{{% extends \"layout.html\" %}}\n{{% block title %}}{title}{{% endblock %}}\n{{% block content %}}<p>{{{{ t(\"signin.forgot\") }}}}</p>{{% endblock %}}\n")
    };
    std::fs::write(&signin, version("Welcome back")).expect("write");
    let metrics_port = free_port();
    let mut cfg = auth_config(&redis.url());
    cfg.metrics_listen = Some(format!("127.0.0.1:{metrics_port}"));
    cfg.pages.templates_dir = Some(dir.path().display().to_string());
    let svc = AuthService::start(cfg, &[]).await;
    let title = |html: String| {
        html.split("<h1>")
            .nth(1)
            .and_then(|r| r.split("</h1>").next())
            .map(str::to_owned)
    };
    let now = || async {
        title(
            page(&svc, "/auth/signin", "en")
                .await
                .text()
                .await
                .expect("body"),
        )
    };
    assert_eq!(now().await.as_deref(), Some("Welcome back"));

    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics");
    std::fs::write(
        &signin,
        "{% extends \"layout.html\" %}\n{% block title %}{{ nope }}{% endblock %}\n",
    )
    .expect("write");
    reload(svc.pid());
    let wanted = ["authflow_auth_config_reloads_total{result=\"error\"} 1"];
    assert_metric_lines(&scrape_until(&metrics, &wanted).await, &wanted);
    assert_eq!(
        now().await.as_deref(),
        Some("Welcome back"),
        "the old pages stay"
    );

    std::fs::write(&signin, version("Hello again")).expect("write");
    reload(svc.pid());
    let wanted = ["authflow_auth_config_reloads_total{result=\"ok\"} 1"];
    assert_metric_lines(&scrape_until(&metrics, &wanted).await, &wanted);
    assert_eq!(now().await.as_deref(), Some("Hello again"));
}

fn reload(pid: u32) {
    let out = Command::new(authflow_bin())
        .args(["reload", "--pid", &pid.to_string()])
        .output()
        .expect("authflow reload");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
