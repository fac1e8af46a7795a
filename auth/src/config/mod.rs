//! The auth service's configuration (`conf/auth.toml`): a typed tree parsed from TOML,
//! layered with the environment (secrets belong there) and validated once, through the
//! shared loader ([`authflow_shared::config::layers`]).

pub mod identity;
pub mod mfa;

use authflow_shared::config::{
    is_http_url, is_socket_addr, ConfigFile, EnvVar, HumanDuration, Problems, RedisConfig, Secret,
    Validate,
};
use authflow_shared::contract::SessionContract;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Environment variables that hold secrets (each also as `<NAME>_FILE`).
pub const ENV_SUPABASE_ANON_KEY: &str = "AUTHFLOW_SUPABASE_ANON_KEY";
pub const ENV_ENCRYPTION_KEY: &str = "AUTHFLOW_ENCRYPTION_KEY";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Where Prometheus scrapes `GET /metrics` (keep it private); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// `text` or `json` (one object per line).
    #[serde(default)]
    pub log_format: authflow_shared::config::LogFormat,
    /// Reload when this file changes (polled every second), besides on `SIGHUP`.
    #[serde(default)]
    pub watch: bool,
    /// Trace context and optional OTLP span export (same table as the gateway's).
    #[serde(default)]
    pub tracing: authflow_shared::config::TracingConfig,
    /// Peers whose `X-Forwarded-For` and fingerprint header are believed: the gateway.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub provider: Provider,
    /// Allow `session.cookie_secure = false` on a listener beyond loopback (development only).
    #[serde(default)]
    pub insecure_dev: bool,
    /// Sessions one user may hold at once; a sign-in beyond it ends the oldest (0: no cap).
    #[serde(default)]
    pub max_sessions_per_user: usize,
    #[serde(default)]
    pub redis: RedisConfig,
    /// The session contract shared with the gateway (same table in `gateway.toml`).
    #[serde(default)]
    pub session: SessionContract,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub mail: MailConfig,
    #[serde(default)]
    pub signup: SignupConfig,
    #[serde(default)]
    pub password: PasswordConfig,
    #[serde(default)]
    pub throttle: ThrottleConfig,
    #[serde(default)]
    pub supabase: Option<SupabaseConfig>,
    /// Branding, languages and operator overrides of the pages and mails.
    #[serde(default)]
    pub pages: PagesConfig,
    /// The public address of the gateway in front (`https://example.com`): provider
    /// redirect URIs (`<public_url>/auth/sso/<id>/callback`) and mail links start with it.
    /// `[mail] base_url` is its older name, used when this is unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_url: Option<String>,
    /// Password sign-in on or off, and the external providers.
    #[serde(default)]
    pub identity: identity::IdentityConfig,
    /// Second factors (TOTP, recovery codes): off, optional, or required of everyone.
    #[serde(default)]
    pub mfa: mfa::MfaConfig,
}

fn default_listen() -> String {
    "127.0.0.1:8001".into()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Users in our own database (SQLite or PostgreSQL).
    #[default]
    Builtin,
    /// Users in Supabase Auth (GoTrue), reached over HTTP.
    Supabase,
}

/// `[pages]`: what the sign-in pages and the mails look like and speak. Every value that
/// lands in an `href`, a `src` or the stylesheet is checked here, where it enters: HTML
/// escaping does not make a `javascript:` URL or a CSS expression safe.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PagesConfig {
    /// In titles, the logo's alt text and the mails' signature.
    pub product_name: String,
    /// `https://...` or a local path (`/auth/static/logo.svg`); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logo_url: Option<String>,
    /// Buttons and mail buttons (white text on it): `#rgb` or `#rrggbb`.
    pub primary_color: String,
    /// Behind the page's card: `#rgb` or `#rrggbb`.
    pub background_color: String,
    /// A "Help and support" link under every page and mail: `https://`, `http://` or `mailto:`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub support_url: Option<String>,
    /// A line under every page and mail (plain text).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub footer_text: Option<String>,
    /// Templates and catalogues (`i18n/<lang>.toml`) that replace or add to the embedded ones
    /// (`authflow pages export DIR` writes those out as a start).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub templates_dir: Option<String>,
    /// Files served under `/auth/static/` (CSS, images, fonts), cached by browsers for
    /// `static_max_age`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub static_dir: Option<String>,
    /// How long browsers may keep a static file (rename a file when it changes).
    pub static_max_age: HumanDuration,
    /// The language when `Accept-Language` names none we have.
    pub default_language: String,
}

impl Default for PagesConfig {
    fn default() -> Self {
        PagesConfig {
            product_name: "AuthFlow".into(),
            logo_url: None,
            primary_color: "#1f5fbf".into(),
            background_color: "#f6f7f9".into(),
            support_url: None,
            footer_text: None,
            templates_dir: None,
            static_dir: None,
            static_max_age: HumanDuration::secs(7 * 86_400),
            default_language: "en".into(),
        }
    }
}

/// Whether `s` is a CSS colour we accept: `#rgb` or `#rrggbb`, nothing else.
pub fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#')
        .is_some_and(|h| matches!(h.len(), 3 | 6) && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A local URL path safe in `src`/`href` as written: `/`, then letters, digits and
/// `-._~/`, never `//` (which a browser reads as another host).
pub fn is_local_path(s: &str) -> bool {
    s.starts_with('/')
        && !s.starts_with("//")
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~/".contains(&b))
}

/// `url` parsed, when it is an absolute URL of one of `schemes` with a host (for `mailto:`,
/// a path), no credentials, and nothing a browser would reinterpret.
pub fn parse_url(url: &str, schemes: &[&str]) -> Option<url::Url> {
    if url.len() > 2048 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return None;
    }
    let parsed = url::Url::parse(url).ok()?;
    let ok = schemes.contains(&parsed.scheme())
        && (parsed.scheme() == "mailto" || parsed.host_str().is_some_and(|h| !h.is_empty()))
        && parsed.username().is_empty()
        && parsed.password().is_none();
    ok.then_some(parsed)
}

/// The WCAG 2 contrast ratio of white text on `color` (`#rgb` / `#rrggbb`).
pub fn contrast_with_white(color: &str) -> Option<f64> {
    let hex = color.strip_prefix('#')?;
    let full: String = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_owned(),
        _ => return None,
    };
    let channel = |i: usize| -> Option<f64> {
        let v = f64::from(u8::from_str_radix(full.get(i..i + 2)?, 16).ok()?) / 255.0;
        Some(if v <= 0.04045 {
            v / 12.92
        } else {
            ((v + 0.055) / 1.055).powf(2.4)
        })
    };
    let l = 0.2126 * channel(0)? + 0.7152 * channel(2)? + 0.0722 * channel(4)?;
    Some(1.05 / (l + 0.05))
}

fn plain_text_problem(s: &str, max: usize) -> Option<String> {
    if s.chars().count() > max {
        Some(format!("longer than {max} characters"))
    } else if s.chars().any(char::is_control) {
        Some("must not contain control characters".into())
    } else {
        None
    }
}

impl Validate for PagesConfig {
    fn validate(&self, p: &mut Problems) {
        if self.product_name.trim().is_empty() {
            p.add("product_name", "must not be empty");
        } else if let Some(why) = plain_text_problem(&self.product_name, 100) {
            p.add("product_name", why);
        }
        if let Some(logo) = &self.logo_url {
            if !is_local_path(logo) && parse_url(logo, &["https"]).is_none() {
                p.add(
                    "logo_url",
                    format!("{logo:?} is neither an https:// URL nor a local path like /auth/static/logo.svg (letters, digits, -._~/)"),
                );
            }
        }
        for (key, value) in [
            ("primary_color", &self.primary_color),
            ("background_color", &self.background_color),
        ] {
            if !is_hex_color(value) {
                p.add(
                    key,
                    format!("{value:?} is not a colour like #1f5fbf or #15b"),
                );
            }
        }
        if let Some(url) = &self.support_url {
            if parse_url(url, &["https", "http", "mailto"]).is_none() {
                p.add(
                    "support_url",
                    format!("{url:?} is not an https://, http:// or mailto: URL"),
                );
            }
        }
        if let Some(why) = self
            .footer_text
            .as_deref()
            .and_then(|t| plain_text_problem(t, 500))
        {
            p.add("footer_text", why);
        }
        for (key, dir) in [
            ("templates_dir", &self.templates_dir),
            ("static_dir", &self.static_dir),
        ] {
            if let Some(dir) = dir {
                if !std::path::Path::new(dir).is_dir() {
                    p.add(key, format!("{dir:?} is not a directory"));
                }
            }
        }
        if !crate::pages::i18n::valid_tag(&self.default_language) {
            p.add(
                "default_language",
                format!(
                    "{:?} is not a language tag like \"en\" or \"pt-BR\"",
                    self.default_language
                ),
            );
        }
    }
}

/// `[database]`: where built-in users live. `sqlite://path` (default; the file is created on
/// first start, see [`crate::users::builtin::sqlite_creating`]) or `postgres://user@host/db`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    /// Put into a PostgreSQL URL; usually from `AUTHFLOW_DATABASE_PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    pub max_connections: u32,
    /// Longest wait for a database connection; past it the request answers 503 (keep it
    /// below the gateway's `read_timeout`).
    pub acquire_timeout: HumanDuration,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/authflow.db".into(),
            password: None,
            max_connections: 8,
            acquire_timeout: HumanDuration::secs(3),
        }
    }
}

impl DatabaseConfig {
    /// The URL to connect with: the password, if any, put into a PostgreSQL URL. Never log
    /// it; [`authflow_shared::config::redact_url`] is for that.
    pub fn connect_url(&self) -> String {
        match self.password.as_ref().filter(|p| !p.is_empty()) {
            Some(pw) if self.url.starts_with("postgres") => with_password(&self.url, pw.expose()),
            _ => self.url.clone(),
        }
    }
}

/// Puts `password` into a `postgres://user@host/db` URL (percent-encoded).
fn with_password(url: &str, password: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    let enc = percent_encoding::utf8_percent_encode(password, USERINFO);
    format!("{scheme}://{user}:{enc}@{host}")
}

/// Everything but unreserved characters is escaped in a URL's password.
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `[mail]`: SMTP when `smtp_url` is set, otherwise one `.eml` file per message in
/// `outbox_dir` (the development default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub outbox_dir: String,
    /// `smtp://host:port` or `smtps://user@host`.
    pub smtp_url: Option<String>,
    /// The SMTP user's password; usually from `AUTHFLOW_SMTP_PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smtp_password: Option<Secret>,
    pub from: String,
    /// Links in emails start with this, e.g. `https://example.com`.
    pub base_url: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            outbox_dir: "data/outbox".into(),
            smtp_url: None,
            smtp_password: None,
            from: "AuthFlow <no-reply@localhost>".into(),
            base_url: "http://localhost:8000".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignupConfig {
    /// Refuse sign-in (403) until the email address is verified.
    pub require_email_verification: bool,
    /// How long a verification link stays valid.
    pub verification_ttl: HumanDuration,
}

impl Default for SignupConfig {
    fn default() -> Self {
        SignupConfig {
            require_email_verification: true,
            verification_ttl: HumanDuration::secs(86_400),
        }
    }
}

/// `[password]`: hashing cost and reset-token lifetime.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Argon2id memory in KiB (OWASP minimum 19456 with 2 iterations).
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// How long a password-reset link stays valid.
    pub reset_token_ttl: HumanDuration,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        PasswordConfig {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            reset_token_ttl: HumanDuration::secs(1800),
        }
    }
}

/// `[throttle]`: the per-account sign-in throttle and the per-address mail cooldown.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    /// Unsuccessful sign-ins within `window` from which an address is locked at an account,
    /// and the account to new addresses (1 s, then doubling up to `max_lock`; see
    /// [`crate::throttle`]).
    pub lock_after: u32,
    /// The sliding window the attempts are counted in.
    pub window: HumanDuration,
    pub max_lock: HumanDuration,
    /// Unsuccessful sign-ins from new addresses after which only a password reset lets a
    /// new address in (a guess a minute cannot go on forever); addresses the account signed
    /// in from before are never capped.
    pub hard_cap: u32,
    /// At most one reset or "someone tried to register" mail per address this often.
    pub mail_cooldown: HumanDuration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            lock_after: 5,
            window: HumanDuration::secs(15 * 60),
            max_lock: HumanDuration::secs(15 * 60),
            hard_cap: 100,
            mail_cooldown: HumanDuration::secs(60),
        }
    }
}

impl ThrottleConfig {
    pub fn policy(&self) -> authflow_shared::store::ThrottlePolicy {
        authflow_shared::store::ThrottlePolicy {
            lock_after: self.lock_after,
            window: self.window.0,
            max_lock: self.max_lock.0,
            hard_cap: self.hard_cap,
        }
    }
}

impl Validate for ThrottleConfig {
    fn validate(&self, p: &mut Problems) {
        if self.lock_after == 0 {
            p.add("lock_after", "must be at least 1");
        }
        if self.hard_cap < self.lock_after {
            p.add("hard_cap", "must be at least lock_after");
        }
        for (k, d) in [("window", self.window), ("max_lock", self.max_lock)] {
            if d.0 < std::time::Duration::from_secs(1) {
                p.add(k, "must be at least 1s");
            }
        }
    }
}

/// `[supabase]`: the GoTrue endpoint, e.g. `https://<project>.supabase.co/auth/v1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupabaseConfig {
    pub url: String,
    /// May be empty here and come from `AUTHFLOW_SUPABASE_ANON_KEY`.
    #[serde(default)]
    pub anon_key: Secret,
    /// 32 bytes, base64; may come from `AUTHFLOW_ENCRYPTION_KEY`. Encrypts the Supabase tokens
    /// kept in sessions.
    #[serde(default)]
    pub encryption_key: Secret,
    #[serde(default = "default_supabase_timeout")]
    pub timeout: HumanDuration,
}

fn default_supabase_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

impl ConfigFile for AuthConfig {
    fn env_vars() -> Vec<EnvVar<Self>> {
        let mut vars = RedisConfig::env_vars(|c: &mut Self| &mut c.redis);
        vars.extend([
            EnvVar::new(
                "AUTHFLOW_DATABASE_URL",
                "database.url",
                |c: &mut Self, v| c.database.url = v,
            ),
            EnvVar::new(
                "AUTHFLOW_DATABASE_PASSWORD",
                "database.password",
                |c: &mut Self, v| c.database.password = Some(v.into()),
            ),
            EnvVar::new(
                "AUTHFLOW_SMTP_PASSWORD",
                "mail.smtp_password",
                |c: &mut Self, v| c.mail.smtp_password = Some(v.into()),
            ),
            EnvVar::new(
                ENV_SUPABASE_ANON_KEY,
                "supabase.anon_key",
                |c: &mut Self, v| {
                    if let Some(sb) = c.supabase.as_mut() {
                        sb.anon_key = v.into();
                    }
                },
            ),
            EnvVar::new(mfa::ENV_MFA_KEY, "mfa.key", |c: &mut Self, v| {
                c.mfa.key = v.into()
            }),
            EnvVar::new(
                "AUTHFLOW_MFA_WEBAUTHN_RP_ID",
                "mfa.webauthn.rp_id",
                |c: &mut Self, v| c.mfa.webauthn.rp_id = Some(v),
            ),
            EnvVar::new(
                ENV_ENCRYPTION_KEY,
                "supabase.encryption_key",
                |c: &mut Self, v| {
                    if let Some(sb) = c.supabase.as_mut() {
                        sb.encryption_key = v.into();
                    }
                },
            ),
        ]);
        vars
    }

    /// Each provider's client secret, `AUTHFLOW_IDP_<ID>_CLIENT_SECRET`.
    fn env_named_by_file(
        &mut self,
        read: &authflow_shared::config::EnvReader<'_>,
    ) -> Vec<(String, String)> {
        self.identity.read_secrets(read)
    }
}

impl Validate for AuthConfig {
    /// Each section's own checks, then the ones that depend on the provider.
    fn validate(&self, p: &mut Problems) {
        if !is_socket_addr(&self.listen) {
            p.add(
                "listen",
                format!("{:?} is not an address:port", self.listen),
            );
        }
        if let Some(m) = self.metrics_listen.as_ref().filter(|m| !is_socket_addr(m)) {
            p.add("metrics_listen", format!("{m:?} is not an address:port"));
        }
        p.section("redis", &self.redis);
        p.section("tracing", &self.tracing);
        p.section("session", &self.session);
        p.section("database", &self.database);
        p.section("mail", &self.mail);
        p.section("password", &self.password);
        p.section("throttle", &self.throttle);
        p.section("pages", &self.pages);
        p.section("identity", &self.identity);
        p.section("mfa", &self.mfa);
        self.public_url_problems(p);
        self.passkey_problems(p);
        if let Some(sb) = &self.supabase {
            p.section("supabase", sb);
        }
        self.provider_problems(p);
    }
}

impl AuthConfig {
    /// The gateway's public address (no trailing slash): `public_url`, else `[mail]
    /// base_url`.
    pub fn public_url(&self) -> &str {
        self.public_url
            .as_deref()
            .unwrap_or(&self.mail.base_url)
            .trim_end_matches('/')
    }

    /// `public_url` is an http(s) origin (https off loopback when providers redirect to it),
    /// and `[mail] base_url`, its alias, does not disagree with it.
    fn public_url_problems(&self, p: &mut Problems) {
        let Some(url) = &self.public_url else {
            if !self.identity.providers.is_empty() {
                identity::check_url(self.public_url(), "mail.base_url", p);
            }
            return;
        };
        if self.identity.providers.is_empty() {
            if !is_http_url(url) {
                p.add("public_url", "must be an http(s) URL");
            }
        } else {
            identity::check_url(url, "public_url", p);
        }
        let mail = self.mail.base_url.trim_end_matches('/');
        if mail != MailConfig::default().base_url && mail != url.trim_end_matches('/') {
            p.add(
                "mail.base_url",
                "is the older name of public_url and disagrees with it: set public_url only",
            );
        }
    }

    /// Passkeys are made on the pages, at `public_url`: its host must be the RP ID or below
    /// it, and when `origins` is left empty it is the origin, so http only on localhost.
    fn passkey_problems(&self, p: &mut Problems) {
        let w = &self.mfa.webauthn;
        let Some(rp_id) = w.rp_id.as_deref() else {
            return;
        };
        let url = self.public_url();
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        if !mfa::host_within(&host, rp_id) {
            p.add(
                "mfa.webauthn.rp_id",
                format!("{rp_id:?} does not match {host:?}, the host of public_url {url:?}: passkeys would not work on the pages"),
            );
        }
        if w.origins.is_empty()
            && url.starts_with("http://")
            && host != "localhost"
            && !host.ends_with(".localhost")
        {
            p.add(
                "mfa.webauthn.origins",
                format!("empty, so public_url {url:?} is the origin, and browsers run WebAuthn over http only on localhost"),
            );
        }
    }

    /// What the chosen provider needs from other sections.
    fn provider_problems(&self, p: &mut Problems) {
        self.session
            .check_secure_cookie(&[self.listen.as_str()], self.insecure_dev, p);
        match (self.provider, &self.supabase) {
            (Provider::Builtin, _) => {
                let db = &self.database.url;
                if !(db.starts_with("sqlite:")
                    || db.starts_with("postgres://")
                    || db.starts_with("postgresql://"))
                {
                    p.add("database.url", "must start with sqlite: or postgres://");
                }
            }
            (Provider::Supabase, _) if !self.identity.providers.is_empty() => p.add(
                "identity.providers",
                "provider sign-in keeps its identities in the built-in user store; with provider = \"supabase\" configure the providers in Supabase instead",
            ),
            (Provider::Supabase, _) if self.mfa.required != mfa::Required::Never => p.add(
                "mfa.required",
                "second factors are kept in the built-in user store; with provider = \"supabase\" use Supabase's own MFA",
            ),
            (Provider::Supabase, None) => p.add(
                "supabase",
                "provider = \"supabase\" needs a [supabase] section",
            ),
            (Provider::Supabase, Some(sb)) => {
                if sb.anon_key.is_empty() {
                    p.add(
                        "supabase.anon_key",
                        format!("missing (set it here or in {ENV_SUPABASE_ANON_KEY})"),
                    );
                }
                if let Err(e) = crate::crypto::TokenCipher::from_base64(sb.encryption_key.expose())
                {
                    p.add(
                        "supabase.encryption_key",
                        format!("{e} (set it here or in {ENV_ENCRYPTION_KEY})"),
                    );
                }
            }
        }
    }
}

impl Validate for DatabaseConfig {
    fn validate(&self, p: &mut Problems) {
        if self.max_connections == 0 {
            p.add("max_connections", "must be at least 1");
        }
        if self.acquire_timeout.0.is_zero() {
            p.add("acquire_timeout", "must be greater than 0");
        }
    }
}

impl Validate for MailConfig {
    fn validate(&self, p: &mut Problems) {
        if let Some(url) = &self.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                p.add("smtp_url", "must start with smtp:// or smtps://");
            }
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            p.add(
                "from",
                format!("{:?} is not a mailbox like \"Name <a@b.c>\"", self.from),
            );
        }
        if !is_http_url(&self.base_url) {
            p.add("base_url", "must be an http(s) URL");
        }
    }
}

impl Validate for PasswordConfig {
    fn validate(&self, p: &mut Problems) {
        if self.argon2_memory_kib < 7168
            || (self.argon2_memory_kib as u64 * self.argon2_iterations as u64) < 19_456 * 2
        {
            p.add(
                "argon2_memory_kib",
                "below the OWASP minimum (19456 KiB x 2 iterations, or an equivalent)",
            );
        }
        if self.argon2_iterations == 0 || self.argon2_parallelism == 0 {
            p.add(
                "argon2_iterations",
                "iterations and parallelism must be at least 1",
            );
        }
        if self.reset_token_ttl.0.is_zero() {
            p.add("reset_token_ttl", "must be greater than 0");
        }
    }
}

impl Validate for SupabaseConfig {
    fn validate(&self, p: &mut Problems) {
        if !is_http_url(&self.url) {
            p.add("url", "must be an http(s) URL");
        }
    }
}

/// Whether this TOML text looks like an auth-service config rather than a gateway one.
pub fn looks_like_auth_config(text: &str) -> bool {
    let Ok(table) = text.parse::<toml::Table>() else {
        return false;
    };
    [
        "provider", "database", "mail", "signup", "password", "supabase",
    ]
    .iter()
    .any(|k| table.contains_key(*k))
        && !table.contains_key("routes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use authflow_shared::config::{ConfigError, ConfigSource};

    fn check(text: &str) -> Result<AuthConfig, ConfigError> {
        let no_env: &[(&str, &str)] = &[];
        check_with(text, no_env)
    }

    fn check_with(text: &str, env: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        let src = ConfigSource {
            file: "auth.toml".into(),
            text: text.into(),
        };
        AuthConfig::from_source(&src, &env, |_, _| {})
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = check("").expect("valid");
        assert_eq!(cfg.provider, Provider::Builtin);
        assert!(cfg.signup.require_email_verification);
        assert_eq!(cfg.password.reset_token_ttl, HumanDuration::secs(1800));
    }

    #[test]
    fn the_passkey_rp_id_must_fit_public_url() {
        let ok = check(
            "public_url = \"http://localhost:8000\"\n[mfa.webauthn]\nrp_id = \"localhost\"\n",
        )
        .expect("localhost");
        assert_eq!(ok.mfa.webauthn.rp_id.as_deref(), Some("localhost"));
        check("public_url = \"https://login.example.com\"\n[mfa.webauthn]\nrp_id = \"example.com\"\norigins = [\"https://login.example.com\"]\n")
            .expect("a parent domain");
        let e = check(
            "public_url = \"https://example.org\"\n[mfa.webauthn]\nrp_id = \"example.com\"\n",
        )
        .expect_err("another host");
        assert_eq!(e.0[0].key, "mfa.webauthn.rp_id");
        let e = check(
            "public_url = \"http://app.example.com\"\n[mfa.webauthn]\nrp_id = \"example.com\"\n",
        )
        .expect_err("http off localhost");
        assert_eq!(e.0[0].key, "mfa.webauthn.origins");
        let e = check("public_url = \"https://example.com\"\n[mfa.webauthn]\nrp_id = \"example.com\"\norigins = [\"https://evil.org\"]\n")
            .expect_err("an origin elsewhere");
        assert_eq!(e.0[0].key, "mfa.webauthn.origins[0]");
        let cfg = check_with(
            "public_url = \"http://localhost:8000\"\n",
            &[("AUTHFLOW_MFA_WEBAUTHN_RP_ID", "localhost")],
        )
        .expect("from the environment");
        assert_eq!(cfg.mfa.webauthn.rp_id.as_deref(), Some("localhost"));
    }

    #[test]
    fn weak_argon2_parameters_are_refused() {
        let e = check("[password]\nargon2_memory_kib = 4096\n").expect_err("weak");
        assert_eq!(e.0[0].key, "password.argon2_memory_kib");
        assert_eq!(e.0[0].line, Some(2));
    }

    #[test]
    fn supabase_needs_its_section_and_secrets() {
        let e = check("provider = \"supabase\"\n").expect_err("no section");
        assert_eq!(e.0[0].key, "supabase");
        let e = check("provider = \"supabase\"\n[supabase]\nurl = \"https://x.supabase.co/auth/v1\"\nanon_key = \"k\"\nencryption_key = \"short\"\n")
            .expect_err("bad key");
        assert_eq!(e.0[0].key, "supabase.encryption_key");
        assert_eq!(e.0[0].line, Some(5));
    }

    #[test]
    fn bad_values_name_their_keys() {
        let e = check("listen = \"nowhere\"\n[database]\nurl = \"mysql://x\"\n[mail]\nfrom = \"not a mailbox\"\n").expect_err("bad");
        let keys: Vec<_> = e.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, vec!["listen", "database.url", "mail.from"]);
        let e = check("[signup]\nrequire_email_verification = \"yes\"\n").expect_err("bad type");
        assert_eq!(e.0[0].key, "signup.require_email_verification");
    }

    #[test]
    fn secrets_come_from_the_environment() {
        let cfg = check_with(
            "[database]\nurl = \"postgres://app@db/auth\"\n",
            &[
                ("AUTHFLOW_DATABASE_PASSWORD", "p@ss"),
                ("AUTHFLOW_SMTP_PASSWORD", "mail-pw"),
            ],
        )
        .expect("valid");
        assert_eq!(cfg.database.connect_url(), "postgres://app:p%40ss@db/auth");
        assert!(!format!("{cfg:?}").contains("p@ss"), "Debug shows a secret");
        let e = check_with(
            "provider = \"supabase\"\n[supabase]\nurl = \"https://x.supabase.co/auth/v1\"\n",
            &[(ENV_SUPABASE_ANON_KEY, "anon")],
        )
        .expect_err("no encryption key");
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].key, "supabase.encryption_key");
    }

    #[test]
    fn password_goes_into_postgres_url() {
        assert_eq!(
            with_password("postgres://app@db:5432/auth", "p@ss word"),
            "postgres://app:p%40ss%20word@db:5432/auth"
        );
    }

    #[test]
    fn tells_auth_configs_from_gateway_configs() {
        assert!(looks_like_auth_config("provider = \"builtin\"\n"));
        assert!(looks_like_auth_config("[database]\nurl = \"sqlite://x\"\n"));
        assert!(!looks_like_auth_config(
            "[[routes]]\nprefix = \"/\"\nupstream = \"a\"\nauth = \"public\"\n"
        ));
    }
}
