//! The HTML pages a person uses (sign in, sign up, forgot and reset password, check your
//! email, email verified, signed out, your devices), the mails the flows send, and the
//! static files under `/auth/static/`. Each page is a template ([`templates`]) filled with
//! the branding of `[pages]`, in the language the request asks for ([`i18n`]); the forms
//! post to the JSON API's endpoints and work without JavaScript.
//!
//! A [`Pages`] is built whole from the config and checked (every page and mail rendered in
//! every language) before it is used: a broken template stops a start or a reload, never a
//! person opening the page.

pub mod i18n;
pub mod templates;

use crate::config::PagesConfig;
use crate::endpoint::{Endpoint, Page, PAGE_PREFIX};
use crate::http::{json_response, see_other, uncached, HttpResponse};
use crate::sessions::SessionView;
use crate::views::{Enrolment, PasskeyView};
use authflow_shared::request::{encode_query_value as encode, query_param as param};
use bytes::Bytes;
use http::header::{self, HeaderValue};
use minijinja::{context, Value};
use serde::Serialize;
use std::path::{Path, PathBuf};
use templates::{TemplateErrors, Templates};

/// Static files live below this path.
pub const STATIC_PREFIX: &str = "/auth/static/";
/// The pages' own stylesheet (the `authflow.css` template), served from memory.
const STYLESHEET: &str = "authflow.css";
/// The passkey ceremonies' script, served from memory; the one script the pages run (on
/// the pages that offer passkeys, whose CSP then allows scripts of this origin).
const PASSKEY_SCRIPT: &str = "passkey.js";
const PASSKEY_JS: &str = include_str!("passkey.js");
/// Largest file served from `static_dir`.
const MAX_STATIC_FILE: u64 = 8 * 1024 * 1024;

/// HTML-escapes `s` (minijinja's escaper), for the demo app's few lines of HTML.
pub fn escape(s: &str) -> String {
    minijinja::HtmlEscape(s).to_string()
}

/// `next` is honoured only when it is a local path: no scheme, no `//host`, no backslash
/// tricks, no control characters. Anything else becomes `/app/` (no open redirect). This is
/// what makes it safe in the sign-in form and the redirect; escaping only keeps it text.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control()) =>
        {
            n.to_owned()
        }
        _ => "/app/".to_owned(),
    }
}

/// A fixed enrolment for rendering the setup page in `check`.
fn fixture_enrolment() -> Enrolment {
    Enrolment {
        secret: "JBSWY3DPEHPK3PXP".into(),
        otpauth_uri: "otpauth://totp/AuthFlow:ann%40example.com?secret=JBSWY3DPEHPK3PXP".into(),
        qr_svg: "<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>".into(),
    }
}

/// The catalogue key of the message for an `?error=` code (and its `field`).
fn error_message(error: &str, field: Option<&str>) -> &'static str {
    match error {
        "invalid_credentials" => "error.invalid_credentials",
        "email_not_verified" => "error.email_not_verified",
        "invalid_token" => "error.invalid_token",
        "rate_limited" | "too_many_attempts" => "error.too_many_attempts",
        "validation_failed" => match field {
            Some("password") | Some("new_password") => "error.invalid_password",
            Some("email") => "error.invalid_email",
            _ => "error.validation_failed",
        },
        "not_found" => "error.not_found",
        "session_store_unavailable" | "user_store_unavailable" => "error.unavailable",
        "sso_provider_error" => "error.sso_provider_error",
        "sso_bad_state" => "error.sso_bad_state",
        "sso_exchange_failed" | "sso_token_rejected" => "error.sso_rejected",
        "sso_provider_unavailable" => "error.sso_provider_unavailable",
        "sso_not_allowed" => "error.sso_not_allowed",
        "sso_email_unverified" => "error.sso_email_unverified",
        "sso_no_account" => "error.sso_no_account",
        "sso_no_email" => "error.sso_no_email",
        "sso_link_other_way" => "error.sso_link_other_way",
        "sso_link_expired" => "error.sso_link_expired",
        "invalid_code" => "error.invalid_code",
        "second_factor_state" => "error.second_factor_state",
        _ => "error.other",
    }
}

/// The catalogue key of the message for a `?notice=` code; unknown codes show nothing.
fn notice_message(notice: &str) -> Option<&'static str> {
    Some(match notice {
        "password_updated" => "notice.password_updated",
        "verified" => "notice.verified",
        "signed_out" => "notice.signed_out",
        "others_signed_out" => "notice.others_signed_out",
        "password_changed" => "notice.password_changed",
        "mfa_disabled" => "notice.mfa_disabled",
        "passkey_deleted" => "notice.passkey_deleted",
        "passkey_added" => "notice.passkey_added",
        "step_up" => "notice.step_up",
        _ => return None,
    })
}

/// The branding every template gets as `brand`, from `[pages]` (validated there).
#[derive(Debug, Clone, Serialize)]
struct Brand {
    product_name: String,
    logo_url: Option<String>,
    /// The logo for mails: a local path made absolute with `mail.base_url`.
    logo_absolute_url: Option<String>,
    primary_color: String,
    background_color: String,
    support_url: Option<String>,
    footer_text: Option<String>,
    /// The stylesheet's URL, with a version that changes with its content.
    stylesheet: String,
}

/// Every path a template links to or posts to (`paths.signin`, `paths.signin_action`...),
/// from the one list in [`crate::endpoint`]. Our own constants, so marked safe: the HTML
/// shows `/auth/signin`, not its escaped `&#x2f;auth&#x2f;signin`.
fn paths() -> Value {
    let pages = [
        ("signin", Page::SignIn),
        ("signup", Page::SignUp),
        ("forgot_password", Page::ForgotPassword),
        ("sessions", Page::Devices),
        ("mfa", Page::MfaPrompt),
        ("mfa_setup", Page::MfaSetup),
    ]
    .map(|(k, p)| (k, p.path()));
    let actions = [
        ("signin_action", Endpoint::SignIn),
        ("signup_action", Endpoint::SignUp),
        ("forgot_password_action", Endpoint::ForgotPassword),
        ("reset_password_action", Endpoint::ResetPassword),
        ("change_password_action", Endpoint::ChangePassword),
        ("revoke", Endpoint::SessionRevoke),
        ("revoke_others", Endpoint::SessionRevokeOthers),
        ("revoke_all", Endpoint::SessionRevokeAll),
        ("link_action", Endpoint::SsoLink),
        ("mfa_verify_action", Endpoint::MfaVerify),
        ("totp_confirm_action", Endpoint::TotpConfirm),
        ("totp_disable_action", Endpoint::TotpDisable),
        ("recovery_regenerate_action", Endpoint::RecoveryRegenerate),
        ("passkey_register_start", Endpoint::PasskeyRegisterStart),
        ("passkey_register_finish", Endpoint::PasskeyRegisterFinish),
        ("passkey_delete_action", Endpoint::PasskeyDelete),
        ("passkey_auth_start", Endpoint::PasskeyAuthStart),
        ("passkey_auth_finish", Endpoint::PasskeyAuthFinish),
    ]
    .map(|(k, e)| (k, e.path()));
    let script = ("passkey_script", format!("{STATIC_PREFIX}{PASSKEY_SCRIPT}"));
    pages
        .into_iter()
        .chain(actions)
        .chain([script])
        .map(|(k, path)| (k, Value::from_safe_string(path)))
        .collect::<std::collections::BTreeMap<_, _>>()
        .into()
}

/// A mail the flows send; each is `mail/<name>.txt` and `mail/<name>.html`, with the
/// subject from the catalogue (`mail.<name>.subject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailTemplate {
    Verification,
    AlreadyRegistered,
    PasswordReset,
    RecoveryCodeUsed,
    FactorsChanged,
}

impl MailTemplate {
    pub const ALL: [MailTemplate; 5] = [
        MailTemplate::Verification,
        MailTemplate::AlreadyRegistered,
        MailTemplate::PasswordReset,
        MailTemplate::RecoveryCodeUsed,
        MailTemplate::FactorsChanged,
    ];

    fn name(self) -> &'static str {
        match self {
            MailTemplate::Verification => "verification",
            MailTemplate::AlreadyRegistered => "already_registered",
            MailTemplate::PasswordReset => "password_reset",
            MailTemplate::RecoveryCodeUsed => "recovery_code_used",
            MailTemplate::FactorsChanged => "factors_changed",
        }
    }
}

/// A mail rendered in one language: its subject and both parts.
#[derive(Debug, Clone)]
pub struct MailParts {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The pages, mails and static files of one config: templates loaded and checked, the
/// stylesheet rendered, the headers computed.
pub struct Pages {
    templates: Templates,
    brand: Brand,
    paths: Value,
    csp: HeaderValue,
    /// The same, allowing this origin's scripts (and `fetch` to it): for the pages that
    /// offer passkeys.
    csp_script: HeaderValue,
    stylesheet: Bytes,
    static_dir: Option<PathBuf>,
    static_cache: HeaderValue,
    warnings: Vec<String>,
    /// The ways to sign in the sign-in page offers ([`Pages::set_sign_in`]).
    sign_in: SignInOptions,
    /// Whether passkeys are offered ([`Pages::set_passkeys`]).
    passkeys: PasskeyOptions,
}

/// Where the pages offer passkeys: the code prompt and "Your devices" when they are on,
/// the sign-in page too when a passkey alone signs in.
#[derive(Debug, Clone, Copy, Default)]
struct PasskeyOptions {
    enabled: bool,
    passwordless: bool,
}

/// What the sign-in page offers: a button per provider (above) and the password form.
#[derive(Debug, Clone, Serialize)]
struct SignInOptions {
    password: bool,
    providers: Vec<ProviderButton>,
}

#[derive(Debug, Clone, Serialize)]
struct ProviderButton {
    id: String,
    name: String,
    /// `/auth/sso/<id>`; the page adds `?next=`.
    url: String,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("templates", &self.templates)
            .finish()
    }
}

impl Pages {
    /// Loads the templates and catalogues of `cfg` (its `templates_dir` first), renders
    /// every page and mail in every language against a fixture, and refuses the lot on any
    /// error, naming each file and line. `base_url` makes a local logo absolute in mails.
    pub fn new(cfg: &PagesConfig, base_url: &str) -> Result<Pages, TemplateErrors> {
        let templates = Templates::load(
            cfg.templates_dir.as_deref().map(Path::new),
            &cfg.default_language,
        )?;
        let logo_origin = cfg
            .logo_url
            .as_deref()
            .and_then(|u| crate::config::parse_url(u, &["https"]))
            .map(|u| u.origin().ascii_serialization());
        let mut brand = Brand {
            product_name: cfg.product_name.clone(),
            logo_url: cfg.logo_url.clone(),
            logo_absolute_url: cfg.logo_url.as_ref().map(|u| {
                if u.starts_with('/') {
                    format!("{}{u}", base_url.trim_end_matches('/'))
                } else {
                    u.clone()
                }
            }),
            primary_color: cfg.primary_color.clone(),
            background_color: cfg.background_color.clone(),
            support_url: cfg.support_url.clone(),
            footer_text: cfg.footer_text.clone(),
            stylesheet: String::new(),
        };
        let lang = templates.catalogues().default_language().to_owned();
        let css = templates
            .render(STYLESHEET, context! { lang => lang, brand => &brand })
            .map_err(|e| TemplateErrors(vec![e]))?;
        let version = authflow_shared::digest::hash_hex(css.as_bytes());
        brand.stylesheet = format!("{STATIC_PREFIX}{STYLESHEET}?v={}", &version[..12]);
        // No scripts at all; styles, images and fonts from this origin only (and the logo's
        // host); forms post here only; no framing, no <base>.
        let img = match &logo_origin {
            Some(o) => format!("'self' {o}"),
            None => "'self'".to_owned(),
        };
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src {img}; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        );
        // Pages offering passkeys run one script, /auth/static/passkey.js, which posts JSON
        // here: scripts and fetch from this origin, still no inline script or handler.
        let csp_script = csp.replacen(
            "default-src 'none';",
            "default-src 'none'; script-src 'self'; connect-src 'self';",
            1,
        );
        let static_dir = match cfg.static_dir.as_deref() {
            Some(d) => Some(
                std::fs::canonicalize(d)
                    .map_err(|e| TemplateErrors(vec![format!("pages.static_dir: {d}: {e}")]))?,
            ),
            None => None,
        };
        let mut pages = Pages {
            templates,
            brand,
            paths: paths(),
            csp: HeaderValue::from_str(&csp)
                .map_err(|_| TemplateErrors(vec!["pages.logo_url: not usable in a CSP".into()]))?,
            csp_script: HeaderValue::from_str(&csp_script)
                .map_err(|_| TemplateErrors(vec!["pages.logo_url: not usable in a CSP".into()]))?,
            stylesheet: Bytes::from(css),
            static_dir,
            static_cache: HeaderValue::from_str(&format!(
                "public, max-age={}",
                cfg.static_max_age.0.as_secs()
            ))
            .unwrap_or(HeaderValue::from_static("no-cache")),
            warnings: Vec::new(),
            sign_in: SignInOptions {
                password: true,
                providers: vec![ProviderButton {
                    id: "fixture".into(),
                    name: "Fixture".into(),
                    url: "/auth/sso/fixture".into(),
                }],
            },
            passkeys: PasskeyOptions {
                enabled: true,
                passwordless: true,
            },
        };
        let errors = pages.check();
        pages.sign_in.providers.clear();
        pages.passkeys = PasskeyOptions::default();
        if !errors.is_empty() {
            return Err(TemplateErrors(errors));
        }
        pages.warnings = pages
            .templates
            .catalogues()
            .missing_keys()
            .into_iter()
            .map(|(lang, key)| {
                format!("pages: catalogue {lang:?} has no message {key:?} (English is used)")
            })
            .collect();
        if let Some(ratio) = crate::config::contrast_with_white(&cfg.primary_color) {
            if ratio < 4.5 {
                pages.warnings.push(format!(
                    "pages.primary_color: white button text on {} has a contrast of {ratio:.1}:1, below WCAG AA's 4.5:1",
                    cfg.primary_color
                ));
            }
        }
        Ok(pages)
    }

    /// The ways the sign-in page offers: `password` (the form; `[identity] password`) and a
    /// button per provider, (id, label), in the config's order.
    pub fn set_sign_in(&mut self, password: bool, providers: Vec<(String, String)>) {
        self.sign_in = SignInOptions {
            password,
            providers: providers
                .into_iter()
                .map(|(id, name)| ProviderButton {
                    url: format!("{PAGE_PREFIX}/sso/{id}"),
                    id,
                    name,
                })
                .collect(),
        };
    }

    /// Whether the pages offer passkeys (`[mfa.webauthn]` on), and a passkey alone signs in.
    pub fn set_passkeys(&mut self, enabled: bool, passwordless: bool) {
        self.passkeys = PasskeyOptions {
            enabled,
            passwordless: enabled && passwordless,
        };
    }

    /// Whether `page` runs the passkey script.
    fn runs_script(&self, page: Page) -> bool {
        match page {
            Page::MfaPrompt | Page::Devices => self.passkeys.enabled,
            Page::SignIn => self.passkeys.passwordless,
            _ => false,
        }
    }

    /// What `check` and the log should say without refusing the config.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The languages there are catalogues for.
    pub fn languages(&self) -> Vec<String> {
        self.templates
            .catalogues()
            .languages()
            .map(str::to_owned)
            .collect()
    }

    /// The embedded templates `templates_dir` replaces.
    pub fn overridden(&self) -> &[String] {
        self.templates.overridden()
    }

    /// The language to answer in, from the request's `Accept-Language`.
    pub fn language(&self, headers: &http::HeaderMap) -> String {
        let accept = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok());
        self.templates.catalogues().negotiate(accept).to_owned()
    }

    /// GET on a path under `/auth/`: a page or a static file; `None` when the path is not
    /// under `/auth/`. "Your devices" needs the session: the API renders it with
    /// [`Pages::devices`]; here it redirects to sign in.
    pub fn get(
        &self,
        path: &str,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> Option<HttpResponse> {
        if let Some(rest) = path.strip_prefix(STATIC_PREFIX) {
            return Some(self.static_file(rest));
        }
        if !path.starts_with(&format!("{PAGE_PREFIX}/")) {
            return None;
        }
        let Some(page) = Page::from_path(path) else {
            return Some(json_response(
                404,
                &serde_json::json!({"error": "not_found"}),
            ));
        };
        if page == Page::Devices || page == Page::MfaSetup {
            return Some(see_other(&format!(
                "{}?next={}",
                Page::SignIn.path(),
                encode(&page.path())
            )));
        }
        let lang = self.language(headers);
        let html = self.render_page(page, &lang, query);
        Some(self.respond_page(&lang, html, self.runs_script(page)))
    }

    /// "Your devices": every session of the signed-in user, each but this one with a button
    /// to sign it out, then "sign out all other devices", "sign out everywhere" and a
    /// password change. Plain forms, no script.
    pub fn devices(
        &self,
        list: &[SessionView],
        passkeys: &[PasskeyView],
        now_ms: u64,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> HttpResponse {
        let lang = self.language(headers);
        let html = self.render_devices(list, passkeys, now_ms, &lang, query);
        self.respond_page(&lang, html, self.runs_script(Page::Devices))
    }

    /// The HTML of `page` (not "Your devices") in `lang` for `query`.
    pub fn render_page(
        &self,
        page: Page,
        lang: &str,
        query: Option<&str>,
    ) -> Result<String, String> {
        let (template, ctx) = match page {
            Page::SignIn => (
                "signin.html",
                context! {
                    next => safe_next(param(query, "next").as_deref()),
                    password => self.sign_in.password,
                    providers => &self.sign_in.providers,
                    passwordless => self.passkeys.passwordless,
                },
            ),
            Page::Link => {
                let id = param(query, "provider");
                let provider = self
                    .sign_in
                    .providers
                    .iter()
                    .find(|p| Some(&p.id) == id.as_ref())
                    .map(|p| p.name.clone())
                    .unwrap_or_default();
                ("link.html", context! { provider => provider })
            }
            Page::MfaPrompt => (
                "mfa.html",
                context! {
                    next => safe_next(param(query, "next").as_deref()),
                    recovery => param(query, "recovery").is_some(),
                    passkeys => self.passkeys.enabled,
                },
            ),
            Page::MfaSetup => {
                return self.render_mfa_setup(&fixture_enrolment(), lang, query);
            }
            Page::SignUp => ("signup.html", context! {}),
            Page::CheckEmail => (
                "check_email.html",
                context! { reset => param(query, "reset").is_some() },
            ),
            Page::ForgotPassword => ("forgot_password.html", context! {}),
            Page::ResetPassword => (
                "reset_password.html",
                context! { token => param(query, "token").unwrap_or_default() },
            ),
            Page::Verified => ("verified.html", context! {}),
            Page::SignedOut => ("signed_out.html", context! {}),
            Page::Devices => return self.render_devices(&[], &[], 0, lang, query),
        };
        self.templates
            .render(template, self.context(lang, query, ctx))
    }

    /// "Set up an authenticator" for `enrolment`, answered to the request.
    pub fn mfa_setup(
        &self,
        enrolment: &Enrolment,
        query: Option<&str>,
        headers: &http::HeaderMap,
    ) -> HttpResponse {
        let lang = self.language(headers);
        self.respond(&lang, self.render_mfa_setup(enrolment, &lang, query))
    }

    fn render_mfa_setup(
        &self,
        e: &Enrolment,
        lang: &str,
        query: Option<&str>,
    ) -> Result<String, String> {
        self.templates.render(
            "mfa_setup.html",
            self.context(
                lang,
                query,
                context! {
                    // Rectangles the qrcode crate drew from the URI: no text of anyone's.
                    qr_svg => Value::from_safe_string(e.qr_svg.clone()),
                    secret => &e.secret,
                    next => safe_next(param(query, "next").as_deref()),
                },
            ),
        )
    }

    /// The recovery codes, shown once, then on to `next`.
    pub fn recovery_codes(
        &self,
        codes: &[String],
        next: &str,
        headers: &http::HeaderMap,
    ) -> HttpResponse {
        let lang = self.language(headers);
        let html = self.templates.render(
            "recovery_codes.html",
            self.context(
                &lang,
                None,
                context! { codes => codes, next => safe_next(Some(next)) },
            ),
        );
        self.respond(&lang, html)
    }

    /// The HTML of "Your devices" for `list` in `lang`.
    pub fn render_devices(
        &self,
        list: &[SessionView],
        passkeys: &[PasskeyView],
        now_ms: u64,
        lang: &str,
        query: Option<&str>,
    ) -> Result<String, String> {
        let sessions: Vec<Value> = list
            .iter()
            .map(|s| {
                context! {
                    handle => &s.handle,
                    device => &s.device,
                    ip => &s.ip,
                    current => s.current,
                    signed_in => ago(now_ms, s.created_at),
                    last_active => ago(now_ms, s.last_seen_at),
                }
            })
            .collect();
        let keys: Vec<Value> = passkeys
            .iter()
            .map(|k| {
                context! {
                    id => &k.id,
                    name => &k.name,
                    created => ago(now_ms, k.created_at.max(0) as u64),
                    last_used => k.last_used_at.map(|t| ago(now_ms, t.max(0) as u64)),
                }
            })
            .collect();
        let passkeys = self.passkeys.enabled.then(|| context! { list => keys });
        self.templates.render(
            "devices.html",
            self.context(
                lang,
                query,
                context! { sessions => sessions, passkeys => passkeys },
            ),
        )
    }

    /// What every page gets: the language, branding, paths, and the notice and alert the
    /// query names (as catalogue keys, never as text from the query).
    fn context(&self, lang: &str, query: Option<&str>, page: Value) -> Value {
        let alert =
            param(query, "error").map(|e| error_message(&e, param(query, "field").as_deref()));
        let notice = param(query, "notice").and_then(|n| notice_message(&n));
        context! {
            lang => lang,
            brand => &self.brand,
            paths => &self.paths,
            alert => alert,
            notice => notice,
            ..page
        }
    }

    /// A rendered page as a response with the pages' security headers, or a 500 (logged)
    /// when rendering failed.
    fn respond(&self, lang: &str, html: Result<String, String>) -> HttpResponse {
        self.respond_page(lang, html, false)
    }

    /// As [`Pages::respond`]; `script`: the page runs the passkey script.
    fn respond_page(&self, lang: &str, html: Result<String, String>, script: bool) -> HttpResponse {
        let html = match html {
            Ok(h) => h,
            Err(e) => {
                tracing::error!(error = %e, "page could not be rendered");
                return uncached(
                    500,
                    Some("text/plain; charset=utf-8"),
                    Bytes::from_static(b"This page is unavailable. Try again shortly.\n"),
                );
            }
        };
        let mut resp = uncached(200, Some("text/html; charset=utf-8"), Bytes::from(html));
        let h = resp.headers_mut();
        let csp = if script { &self.csp_script } else { &self.csp };
        h.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(header::VARY, HeaderValue::from_static("Accept-Language"));
        if let Ok(v) = HeaderValue::from_str(lang) {
            h.insert(header::CONTENT_LANGUAGE, v);
        }
        resp
    }

    /// A mail in `lang`: `link` is what it asks the person to open.
    pub fn mail(
        &self,
        which: MailTemplate,
        lang: &str,
        to: &str,
        link: &str,
        valid_minutes: u64,
    ) -> Result<MailParts, String> {
        let name = which.name();
        let subject = self
            .templates
            .message(lang, &format!("mail.{name}.subject"))?;
        let ctx = context! {
            lang => lang,
            brand => &self.brand,
            subject => &subject,
            email => to,
            link => link,
            valid_minutes => valid_minutes,
        };
        Ok(MailParts {
            text: self
                .templates
                .render(&format!("mail/{name}.txt"), ctx.clone())?,
            html: self.templates.render(&format!("mail/{name}.html"), ctx)?,
            subject,
        })
    }

    /// Renders every page and mail in every language against a fixture (with and without
    /// an alert and notice); one line per error, naming the template file and line.
    fn check(&self) -> Vec<String> {
        let fixture = Some(
            "error=invalid_credentials&notice=verified&next=/app/&token=fixture-token&reset=1",
        );
        let sessions = fixture_sessions();
        let mut errors = Vec::new();
        for lang in self.languages() {
            let mut results = Vec::new();
            for page in Page::ALL.into_iter().filter(|p| *p != Page::Devices) {
                results.push(self.render_page(page, &lang, fixture));
                results.push(self.render_page(page, &lang, None));
            }
            results.push(self.render_devices(
                &sessions,
                &fixture_passkeys(),
                7_200_000,
                &lang,
                fixture,
            ));
            results.push(self.templates.render(
                "recovery_codes.html",
                self.context(
                    &lang,
                    None,
                    context! { codes => ["ABCDE-FGHIJ"], next => "/app/" },
                ),
            ));
            results.push(self.render_devices(&sessions, &[], 7_200_000, &lang, None));
            for mail in MailTemplate::ALL {
                results.push(
                    self.mail(
                        mail,
                        &lang,
                        "ann@example.com",
                        "https://example.com/link?token=fixture",
                        30,
                    )
                    .map(|_| String::new()),
                );
            }
            for e in results.into_iter().filter_map(Result::err) {
                let line = format!("{e} (language {lang})");
                if !errors.contains(&line) {
                    errors.push(line);
                }
            }
        }
        errors
    }

    /// A file under `/auth/static/`: the pages' stylesheet, or one from `static_dir`.
    fn static_file(&self, rest: &str) -> HttpResponse {
        if rest == STYLESHEET {
            return self.static_response("text/css; charset=utf-8", self.stylesheet.clone());
        }
        if rest == PASSKEY_SCRIPT {
            return self.static_response(
                "text/javascript; charset=utf-8",
                Bytes::from_static(PASSKEY_JS.as_bytes()),
            );
        }
        let not_found = || json_response(404, &serde_json::json!({"error": "not_found"}));
        let Some(root) = &self.static_dir else {
            return not_found();
        };
        match read_static(root, rest) {
            Some(bytes) => self.static_response(content_type(rest), Bytes::from(bytes)),
            None => not_found(),
        }
    }

    fn static_response(&self, content_type: &'static str, body: Bytes) -> HttpResponse {
        let mut resp = uncached(200, Some(content_type), body);
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, self.static_cache.clone());
        // An SVG opened on its own must not run script in this origin.
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self'; font-src 'self'; sandbox",
            ),
        );
        resp
    }
}

/// The bytes of `root/rest` when `rest` names a regular file inside `root`: segments of
/// letters, digits, `-_.` (no dot first: no `..`, no hidden files), no symlink leading out.
fn read_static(root: &Path, rest: &str) -> Option<Vec<u8>> {
    let safe = !rest.is_empty()
        && rest.len() <= 200
        && rest.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
    if !safe {
        return None;
    }
    let path = std::fs::canonicalize(root.join(rest)).ok()?;
    let meta = std::fs::metadata(&path).ok()?;
    if !path.starts_with(root) || !meta.is_file() || meta.len() > MAX_STATIC_FILE {
        return None;
    }
    std::fs::read(&path).ok()
}

/// The media type of a static file, by extension; unknown types are served as bytes.
fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("css") => "text/css; charset=utf-8",
        Some("png") => "image/png",
        Some("jpg") | Some("jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("webp") => "image/webp",
        Some("avif") => "image/avif",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// "5 min ago", coarse on purpose: the catalogue key and the count.
fn ago(now_ms: u64, then_ms: u64) -> Value {
    let secs = now_ms.saturating_sub(then_ms) / 1000;
    let (key, count) = match secs {
        0..=59 => ("time.just_now", 0),
        60..=3599 => ("time.minutes_ago", secs / 60),
        3600..=86_399 => ("time.hours_ago", secs / 3600),
        _ => ("time.days_ago", secs / 86_400),
    };
    context! { key => key, count => count }
}

/// Two passkeys, one never used, for checking the devices template.
fn fixture_passkeys() -> Vec<PasskeyView> {
    let key = |id: &str, name: &str, last_used_at| PasskeyView {
        id: id.into(),
        name: name.into(),
        created_at: 0,
        last_used_at,
    };
    vec![
        key("AAEC", "Laptop", Some(3_600_000)),
        key("AwQF", "Phone", None),
    ]
}

/// Two sessions, this one and another, for checking the devices template.
pub fn fixture_sessions() -> Vec<SessionView> {
    let view = |handle: &str, device: &str, ip: Option<&str>, current| SessionView {
        handle: handle.into(),
        device: device.into(),
        ip: ip.map(str::to_owned),
        created_at: 0,
        last_seen_at: 3_600_000,
        expires_at: 43_200_000,
        current,
    };
    vec![
        view(
            "0123456789abcdef",
            "Firefox on Linux",
            Some("203.0.113.x"),
            true,
        ),
        view("fedcba9876543210", "Safari on iPhone", None, false),
    ]
}

#[cfg(test)]
mod tests;
