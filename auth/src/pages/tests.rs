use super::*;
use crate::config::PagesConfig;

fn pages_with(adjust: impl FnOnce(&mut PagesConfig)) -> Result<Pages, TemplateErrors> {
    let mut cfg = PagesConfig::default();
    adjust(&mut cfg);
    Pages::new(&cfg, "https://app.example.com")
}

fn pages() -> Pages {
    pages_with(|_| {}).expect("embedded pages")
}

fn headers(accept_language: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert(
        header::ACCEPT_LANGUAGE,
        HeaderValue::from_str(accept_language).expect("header"),
    );
    h
}

async fn body(resp: HttpResponse) -> String {
    use http_body_util::BodyExt;
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[test]
fn next_must_be_a_local_path() {
    assert_eq!(safe_next(Some("/app/x?y=1")), "/app/x?y=1");
    for bad in [
        "https://evil.example",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
        "/a\\b",
        "/a\nb",
    ] {
        assert_eq!(safe_next(Some(bad)), "/app/", "{bad}");
    }
    assert_eq!(safe_next(None), "/app/");
}

#[test]
fn every_page_renders_in_english_and_german() {
    let p = pages();
    assert_eq!(p.languages(), ["de", "en"]);
    let titles = [
        (Page::SignIn, "Sign in", "Anmelden"),
        (Page::SignUp, "Create an account", "Konto erstellen"),
        (
            Page::CheckEmail,
            "Check your email",
            "Sehen Sie in Ihr Postfach",
        ),
        (
            Page::ForgotPassword,
            "Forgot your password?",
            "Passwort vergessen?",
        ),
        (
            Page::ResetPassword,
            "Choose a new password",
            "Neues Passwort wählen",
        ),
        (
            Page::Verified,
            "Email confirmed",
            "E-Mail-Adresse bestätigt",
        ),
        (Page::SignedOut, "Signed out", "Abgemeldet"),
    ];
    for (page, en, de) in titles {
        for (lang, title) in [("en", en), ("de", de)] {
            let html = p
                .render_page(page, lang, Some("error=invalid_credentials"))
                .expect("render");
            assert!(
                html.contains(&format!("<html lang=\"{lang}\">")),
                "{page:?} {lang}"
            );
            assert!(
                html.contains(&format!("<h1>{title}</h1>")),
                "{page:?} {lang}: {html}"
            );
            assert!(
                html.contains(&format!("<title>{title} · AuthFlow</title>")),
                "{html}"
            );
        }
    }
    let de = p
        .render_devices(
            &fixture_sessions(),
            &[],
            5 * 86_400_000,
            "de",
            Some("notice=signed_out"),
        )
        .expect("devices");
    assert!(
        de.contains("<h1>Ihre Geräte</h1>") && de.contains("vor 5 Tagen"),
        "{de}"
    );
    assert!(de.contains("Dieses Gerät ist abgemeldet."), "{de}");
    let en = p
        .render_devices(&fixture_sessions(), &[], 61_000, "en", None)
        .expect("devices");
    assert!(
        en.contains("signed in 1 min ago · last active just now"),
        "{en}"
    );
    assert!(
        en.contains("address unknown") && en.contains("This device"),
        "{en}"
    );
}

#[test]
fn mails_render_in_both_languages_with_text_unescaped() {
    let p = pages_with(|c| c.product_name = "Ann & Bob's <Shop>".into()).expect("pages");
    let link = "https://app.example.com/api/v1/simple_auth/verify-email?token=abc&x=1";
    let en = p
        .mail(
            MailTemplate::Verification,
            "en",
            "ann@example.com",
            link,
            30,
        )
        .expect("mail");
    assert_eq!(en.subject, "Confirm your email address");
    assert!(en.text.contains(&format!("\n{link}\n")), "{}", en.text);
    assert!(
        en.text.contains("Ann & Bob's <Shop>"),
        "plain text is not escaped"
    );
    assert!(
        en.html.contains("token=abc&amp;x=1")
            && en.html.contains("Ann &amp; Bob&#x27;s &lt;Shop&gt;"),
        "{}",
        en.html
    );
    let de = p
        .mail(
            MailTemplate::PasswordReset,
            "de",
            "ann@example.com",
            link,
            1,
        )
        .expect("mail");
    assert_eq!(de.subject, "Setzen Sie Ihr Passwort zurück");
    assert!(de.text.contains("gültig für 1 Minute,"), "{}", de.text);
}

#[tokio::test]
async fn hostile_values_show_escaped() {
    let p = pages_with(|c| c.product_name = "<script>alert(1)</script>".into()).expect("pages");
    let resp = p
        .get(
            "/auth/signin",
            Some("next=/%22%3E%3Cscript%3Ex%3C/script%3E&error=%3Cscript%3E"),
            &headers("en"),
        )
        .expect("page");
    let text = body(resp).await;
    assert!(!text.contains("<script>"), "{text}");
    assert!(
        text.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "{text}"
    );
    assert!(
        text.contains("value=\"&#x2f;&quot;&gt;&lt;script&gt;x"),
        "{text}"
    );
    // The error code is never shown: only the message it names.
    assert!(text.contains("Something went wrong"), "{text}");
    let resp = p
        .get(
            "/auth/reset-password",
            Some("token=%22%3E%3Cscript%3E"),
            &headers("en"),
        )
        .expect("page");
    assert!(!body(resp).await.contains("<script>"));
    let mut sessions = fixture_sessions();
    sessions[1].device = "<img src=x onerror=alert(1)>".into();
    let html = p
        .render_devices(&sessions, &[], 0, "en", None)
        .expect("devices");
    assert!(
        !html.contains("<img src=x") && html.contains("&lt;img src=x"),
        "{html}"
    );
    let mail = p
        .mail(
            MailTemplate::Verification,
            "en",
            "\"<b>\"@example.com",
            "https://x.example/l",
            30,
        )
        .expect("mail");
    assert!(
        mail.html.contains("&quot;&lt;b&gt;&quot;@example.com"),
        "{}",
        mail.html
    );
}

#[tokio::test]
async fn the_language_follows_accept_language() {
    let p = pages();
    for (accept, lang, title) in [
        ("de-DE,de;q=0.9,en;q=0.8", "de", "Anmelden"),
        ("fr, en;q=0.5", "en", "Sign in"),
        ("en;q=0.4, de;q=0.6", "de", "Anmelden"),
    ] {
        let resp = p.get("/auth/signin", None, &headers(accept)).expect("page");
        assert_eq!(resp.headers()[header::CONTENT_LANGUAGE], lang);
        assert!(
            body(resp).await.contains(&format!("<h1>{title}</h1>")),
            "{accept}"
        );
    }
    let german = pages_with(|c| c.default_language = "de".into()).expect("pages");
    let resp = german
        .get("/auth/signin", None, &http::HeaderMap::new())
        .expect("page");
    assert_eq!(resp.headers()[header::CONTENT_LANGUAGE], "de");
}

#[tokio::test]
async fn branding_reaches_the_page_the_stylesheet_and_the_csp() {
    let p = pages_with(|c| {
        c.product_name = "Acme".into();
        c.logo_url = Some("https://cdn.acme.example:8443/logo.png".into());
        c.primary_color = "#0a7".into();
        c.footer_text = Some("Acme Inc.".into());
        c.support_url = Some("mailto:help@acme.example".into());
    })
    .expect("pages");
    let resp = p.get("/auth/signin", None, &headers("en")).expect("page");
    let csp = resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp")
        .to_owned();
    assert_eq!(
        csp,
        "default-src 'none'; style-src 'self'; img-src 'self' https://cdn.acme.example:8443; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    assert_eq!(resp.headers()[header::X_FRAME_OPTIONS], "DENY");
    let html = body(resp).await;
    assert!(html.contains("<img class=\"logo\" src=\"https:&#x2f;&#x2f;cdn.acme.example:8443&#x2f;logo.png\" alt=\"Acme\">"), "{html}");
    assert!(
        html.contains("<title>Sign in · Acme</title>") && html.contains("Acme Inc."),
        "{html}"
    );
    assert!(html.contains("href=\"mailto:help@acme.example\""), "{html}");
    let href = html
        .split("<link rel=\"stylesheet\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("stylesheet link")
        .replace("&#x2f;", "/");
    assert!(href.starts_with("/auth/static/authflow.css?v="), "{href}");
    let css = p
        .get("/auth/static/authflow.css", None, &headers("en"))
        .expect("css");
    assert_eq!(
        css.headers()[header::CONTENT_TYPE],
        "text/css; charset=utf-8"
    );
    assert_eq!(
        css.headers()[header::CACHE_CONTROL],
        "public, max-age=604800"
    );
    assert!(body(css).await.contains("background:#0a7;"));
    // The default look has no logo and allows images from this origin only.
    let resp = pages()
        .get("/auth/signin", None, &headers("en"))
        .expect("page");
    assert!(resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp")
        .contains("img-src 'self';"));
    assert!(!body(resp).await.contains("<img"));
}

#[test]
fn low_contrast_colours_are_warned_about() {
    assert!(pages().warnings().is_empty(), "{:?}", pages().warnings());
    let p = pages_with(|c| c.primary_color = "#ffd700".into()).expect("pages");
    assert!(
        p.warnings()[0].contains("below WCAG AA"),
        "{:?}",
        p.warnings()
    );
}

#[tokio::test]
async fn static_files_stay_inside_their_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("static");
    std::fs::create_dir_all(root.join("img")).expect("dirs");
    std::fs::write(root.join("img/logo.svg"), "<svg/>").expect("write");
    std::fs::write(root.join(".secret"), "x").expect("write");
    std::fs::write(dir.path().join("outside.txt"), "x").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path().join("outside.txt"), root.join("link.txt"))
        .expect("symlink");
    let p = pages_with(|c| c.static_dir = Some(root.display().to_string())).expect("pages");
    let resp = p
        .get("/auth/static/img/logo.svg", None, &headers("en"))
        .expect("file");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(resp.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(resp.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp")
        .ends_with("sandbox"));
    for bad in [
        "../outside.txt",
        "img/../../outside.txt",
        "%2e%2e/outside.txt",
        ".secret",
        "link.txt",
        "img",
        "img/",
        "",
        "nope.css",
    ] {
        let resp = p
            .get(&format!("/auth/static/{bad}"), None, &headers("en"))
            .expect("answer");
        assert_eq!(resp.status(), 404, "{bad}");
    }
}

#[test]
fn an_override_replaces_one_template_and_keeps_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("signin.html"),
        "{% extends \"layout.html\" %}{% block title %}Welcome back{% endblock %}{% block content %}<p>{{ t(\"signin.create_account\") }}</p>{% endblock %}",
    )
    .expect("write");
    std::fs::create_dir_all(dir.path().join("i18n")).expect("i18n");
    std::fs::write(
        dir.path().join("i18n/de.toml"),
        "[signin]\ncreate_account = \"Registrieren\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("i18n/fr.toml"),
        "[signin]\ntitle = \"Connexion\"\n",
    )
    .expect("write");
    let p =
        pages_with(|c| c.templates_dir = Some(dir.path().display().to_string())).expect("pages");
    assert_eq!(p.overridden(), ["signin.html"]);
    assert_eq!(p.languages(), ["de", "en", "fr"]);
    let signin = p.render_page(Page::SignIn, "de", None).expect("signin");
    assert!(
        signin.contains("<h1>Welcome back</h1>") && signin.contains("Registrieren"),
        "{signin}"
    );
    let signup = p.render_page(Page::SignUp, "de", None).expect("signup");
    assert!(signup.contains("<h1>Konto erstellen</h1>"), "{signup}");
    // French has one message: the rest falls back to English, and the gap is reported.
    let fr = p.render_page(Page::SignUp, "fr", None).expect("signup");
    assert!(fr.contains("<h1>Create an account</h1>"), "{fr}");
    assert!(
        p.warnings()
            .iter()
            .any(|w| w.contains("\"fr\" has no message \"signin.submit\"")),
        "{:?}",
        p.warnings()
    );
}

#[test]
fn a_broken_override_is_refused_with_its_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("signup.html"),
        "{% extends \"layout.html\" %}\n{% block content %}\n{% if %}\n{% endblock %}\n",
    )
    .expect("write");
    std::fs::write(dir.path().join("verified.html"), "{% extends \"layout.html\" %}\n{% block title %}x{% endblock %}\n{% block content %}\n\n{{ no_such_value }}\n{% endblock %}\n").expect("write");
    let e = pages_with(|c| c.templates_dir = Some(dir.path().display().to_string()))
        .expect_err("broken");
    let file = dir.path().join("signup.html").display().to_string();
    assert!(
        e.0.iter()
            .any(|l| l.starts_with(&format!("{file}:3: syntax error"))),
        "{e}"
    );
    // The syntax error stops the load before rendering; fixed, the undefined value shows.
    std::fs::remove_file(dir.path().join("signup.html")).expect("rm");
    let e = pages_with(|c| c.templates_dir = Some(dir.path().display().to_string()))
        .expect_err("broken");
    let file = dir.path().join("verified.html").display().to_string();
    assert!(
        e.0.iter()
            .any(|l| l.starts_with(&format!("{file}:5: undefined value"))),
        "{e}"
    );
    std::fs::create_dir_all(dir.path().join("i18n")).expect("i18n");
    std::fs::write(dir.path().join("i18n/de.toml"), "[signin]\ntitle = \n").expect("write");
    let e = pages_with(|c| c.templates_dir = Some(dir.path().display().to_string()))
        .expect_err("broken");
    assert!(
        e.0.iter().any(|l| l.contains("i18n/de.toml: line 2")),
        "{e}"
    );
}

#[test]
fn a_message_with_an_unknown_placeholder_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("i18n")).expect("i18n");
    std::fs::write(
        dir.path().join("i18n/en.toml"),
        "[signin]\ntitle = \"Hello {name}\"\n",
    )
    .expect("write");
    let e = pages_with(|c| c.templates_dir = Some(dir.path().display().to_string()))
        .expect_err("broken");
    assert!(
        e.0.iter()
            .any(|l| l.contains("uses {name}") && l.contains("signin.html")),
        "{e}"
    );
}

#[test]
fn export_writes_a_starting_point_that_loads_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let written = templates::export(dir.path()).expect("export");
    assert_eq!(
        written.len(),
        templates::EMBEDDED.len() + i18n::SHIPPED.len()
    );
    assert!(dir.path().join("mail/verification.txt").is_file());
    assert!(dir.path().join("i18n/de.toml").is_file());
    let p =
        pages_with(|c| c.templates_dir = Some(dir.path().display().to_string())).expect("pages");
    assert_eq!(p.overridden().len(), templates::EMBEDDED.len());
    assert!(templates::export(dir.path()).is_err(), "never overwrites");
}

#[tokio::test]
async fn only_pages_offering_passkeys_run_the_one_script() {
    let csp = |r: &HttpResponse| {
        r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .expect("csp")
            .to_owned()
    };
    let mut p = pages();
    let off = p.get("/auth/mfa", None, &headers("en")).expect("prompt");
    assert!(!csp(&off).contains("script"), "{}", csp(&off));
    assert!(!body(off).await.contains("<script"));

    p.set_passkeys(true, false);
    let on = p.get("/auth/mfa", None, &headers("en")).expect("prompt");
    let policy = csp(&on);
    assert!(
        policy.contains("script-src 'self'") && policy.contains("connect-src 'self'"),
        "{policy}"
    );
    let html = body(on).await;
    assert!(
        html.contains("<script src=\"/auth/static/passkey.js\" defer></script>")
            && html.contains("Use a passkey")
            && html.contains("data-start=\"/api/v1/simple_auth/mfa/webauthn/authenticate/start\""),
        "{html}"
    );
    let signin = p
        .get("/auth/signin", None, &headers("en"))
        .expect("sign in");
    assert!(
        !csp(&signin).contains("script"),
        "a password sign-in page runs nothing"
    );
    p.set_passkeys(true, true);
    let signin = p
        .get("/auth/signin", None, &headers("de"))
        .expect("sign in");
    assert!(csp(&signin).contains("script-src 'self'"));
    assert!(body(signin).await.contains("Mit einem Passkey anmelden"));

    let script = p
        .get("/auth/static/passkey.js", None, &headers("en"))
        .expect("js");
    assert_eq!(
        script.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(body(script).await.contains("navigator.credentials"));
}

#[test]
fn your_devices_lists_passkeys_with_a_form_each() {
    let mut p = pages();
    p.set_passkeys(true, false);
    let keys = vec![PasskeyView {
        id: "AAEC".into(),
        name: "<b>Laptop</b>".into(),
        created_at: 0,
        last_used_at: None,
    }];
    let html = p
        .render_devices(&fixture_sessions(), &keys, 120_000, "en", None)
        .expect("devices");
    assert!(html.contains("&lt;b&gt;Laptop"), "{html}");
    assert!(html.contains("added 2 min ago · last used never"), "{html}");
    assert!(html.contains("name=\"id\" value=\"AAEC\""), "{html}");
    assert!(html.contains("Add a passkey"), "{html}");
    let none = p
        .render_devices(&fixture_sessions(), &[], 0, "de", None)
        .expect("devices");
    assert!(none.contains("Noch keine Passkeys."), "{none}");
}
