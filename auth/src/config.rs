//! The auth service's configuration (`conf/auth.toml`): a typed tree parsed from TOML and
//! validated once. Secrets may come from the environment instead of the file.

use authflow_shared::config::{
    session_problems, ConfigError, ConfigProblem, ConfigSource, HumanDuration, RedisConfig,
};
use authflow_shared::fingerprint::FingerprintSpec;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;

/// Environment variables that override secrets in the file.
pub const ENV_DATABASE_URL: &str = "AUTHFLOW_DATABASE_URL";
pub const ENV_DATABASE_PASSWORD: &str = "AUTHFLOW_DATABASE_PASSWORD";
pub const ENV_SUPABASE_ANON_KEY: &str = "AUTHFLOW_SUPABASE_ANON_KEY";
pub const ENV_ENCRYPTION_KEY: &str = "AUTHFLOW_ENCRYPTION_KEY";
pub const ENV_SMTP_PASSWORD: &str = "AUTHFLOW_SMTP_PASSWORD";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Peers whose `X-Forwarded-For` and fingerprint header are believed: the gateway.
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default)]
    pub provider: Provider,
    #[serde(default)]
    pub redis: RedisConfig,
    #[serde(default)]
    pub session: SessionConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub mail: MailConfig,
    #[serde(default)]
    pub signup: SignupConfig,
    #[serde(default)]
    pub password: PasswordConfig,
    #[serde(default)]
    pub supabase: Option<SupabaseConfig>,
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

/// `[session]`: the cookie and the lifetimes of the sessions this service creates. Cookie
/// name, `Secure` and the fingerprint must match the gateway's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    pub cookie_name: String,
    /// `false` only for plain-HTTP development.
    pub cookie_secure: bool,
    pub idle_timeout: HumanDuration,
    pub absolute_timeout: HumanDuration,
    /// Used only when a request does not come through a trusted gateway.
    pub fingerprint: FingerprintSpec,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            cookie_name: "authflow_session".into(),
            cookie_secure: true,
            idle_timeout: HumanDuration::secs(3600),
            absolute_timeout: HumanDuration::secs(12 * 3600),
            fingerprint: FingerprintSpec::default(),
        }
    }
}

/// `[database]`: where built-in users live. `sqlite://path?mode=rwc` (default, a file
/// created on first start) or `postgres://user@host/db` (password may come from
/// `AUTHFLOW_DATABASE_PASSWORD`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/authflow.db?mode=rwc".into(),
            max_connections: 8,
        }
    }
}

impl DatabaseConfig {
    /// The URL with environment overrides applied.
    pub fn effective_url(&self) -> String {
        let url = std::env::var(ENV_DATABASE_URL)
            .ok()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| self.url.clone());
        match std::env::var(ENV_DATABASE_PASSWORD) {
            Ok(pw) if !pw.is_empty() && url.starts_with("postgres") => with_password(&url, &pw),
            _ => url,
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
    let enc: String = password
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{scheme}://{user}:{enc}@{host}")
}

/// `[mail]`: SMTP when `smtp_url` is set, otherwise one `.eml` file per message in
/// `outbox_dir` (the development default).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub outbox_dir: String,
    /// `smtp://host:port` or `smtps://user@host` (password from `AUTHFLOW_SMTP_PASSWORD`).
    pub smtp_url: Option<String>,
    pub from: String,
    /// Links in emails start with this, e.g. `https://example.com`.
    pub base_url: String,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            outbox_dir: "data/outbox".into(),
            smtp_url: None,
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

/// `[supabase]`: the GoTrue endpoint, e.g. `https://<project>.supabase.co/auth/v1`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupabaseConfig {
    pub url: String,
    /// May be empty here and come from `AUTHFLOW_SUPABASE_ANON_KEY`.
    #[serde(default)]
    pub anon_key: String,
    /// 32 bytes, base64; may come from `AUTHFLOW_ENCRYPTION_KEY`. Encrypts the Supabase tokens
    /// kept in sessions.
    #[serde(default)]
    pub encryption_key: String,
    #[serde(default = "default_supabase_timeout")]
    pub timeout: HumanDuration,
}

fn default_supabase_timeout() -> HumanDuration {
    HumanDuration::secs(10)
}

impl SupabaseConfig {
    pub fn effective_anon_key(&self) -> String {
        env_or(ENV_SUPABASE_ANON_KEY, &self.anon_key)
    }
    pub fn effective_encryption_key(&self) -> String {
        env_or(ENV_ENCRYPTION_KEY, &self.encryption_key)
    }
}

fn env_or(var: &str, fallback: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| fallback.to_owned())
}

impl AuthConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let src = ConfigSource::read(path)?;
        Self::from_source(&src)
    }

    pub fn from_source(src: &ConfigSource) -> Result<Self, ConfigError> {
        let cfg: AuthConfig = src.parse()?;
        let problems = cfg.problems(src);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError(problems))
        }
    }

    pub fn problems(&self, src: &ConfigSource) -> Vec<ConfigProblem> {
        let mut out = Vec::new();
        let mut bad = |key: &str, reason: String| out.push(src.problem(key, reason));
        if self.listen.parse::<SocketAddr>().is_err() {
            bad(
                "listen",
                format!("{:?} is not an address:port", self.listen),
            );
        }
        for (k, reason) in self.redis.problems() {
            bad(&format!("redis.{k}"), reason);
        }
        let s = &self.session;
        for (k, reason) in session_problems(
            &s.cookie_name,
            s.cookie_secure,
            s.idle_timeout,
            s.absolute_timeout,
        ) {
            bad(&format!("session.{k}"), reason);
        }
        if let Err((k, reason)) = s.fingerprint.validate() {
            bad(&format!("session.fingerprint.{k}"), reason);
        }
        let db = self.database.effective_url();
        if self.provider == Provider::Builtin
            && !(db.starts_with("sqlite:")
                || db.starts_with("postgres://")
                || db.starts_with("postgresql://"))
        {
            bad(
                "database.url",
                "must start with sqlite: or postgres://".into(),
            );
        }
        if self.database.max_connections == 0 {
            bad("database.max_connections", "must be at least 1".into());
        }
        if let Some(url) = &self.mail.smtp_url {
            if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
                bad(
                    "mail.smtp_url",
                    "must start with smtp:// or smtps://".into(),
                );
            }
        }
        if self.mail.from.parse::<lettre::message::Mailbox>().is_err() {
            bad(
                "mail.from",
                format!(
                    "{:?} is not a mailbox like \"Name <a@b.c>\"",
                    self.mail.from
                ),
            );
        }
        if !(self.mail.base_url.starts_with("http://")
            || self.mail.base_url.starts_with("https://"))
        {
            bad("mail.base_url", "must be an http(s) URL".into());
        }
        let p = &self.password;
        if p.argon2_memory_kib < 7168
            || (p.argon2_memory_kib as u64 * p.argon2_iterations as u64) < 19_456 * 2
        {
            bad(
                "password.argon2_memory_kib",
                "below the OWASP minimum (19456 KiB x 2 iterations, or an equivalent)".into(),
            );
        }
        if p.argon2_iterations == 0 || p.argon2_parallelism == 0 {
            bad(
                "password.argon2_iterations",
                "iterations and parallelism must be at least 1".into(),
            );
        }
        if p.reset_token_ttl.0.is_zero() {
            bad("password.reset_token_ttl", "must be greater than 0".into());
        }
        self.supabase_problems(&mut bad);
        out
    }

    fn supabase_problems(&self, bad: &mut impl FnMut(&str, String)) {
        match (&self.provider, &self.supabase) {
            (Provider::Supabase, None) => bad(
                "supabase",
                "provider = \"supabase\" needs a [supabase] section".into(),
            ),
            (_, Some(sb)) => {
                if !(sb.url.starts_with("http://") || sb.url.starts_with("https://")) {
                    bad("supabase.url", "must be an http(s) URL".into());
                }
                if self.provider == Provider::Supabase {
                    if sb.effective_anon_key().is_empty() {
                        bad(
                            "supabase.anon_key",
                            format!("missing (set it here or in {ENV_SUPABASE_ANON_KEY})"),
                        );
                    }
                    if let Err(e) =
                        crate::crypto::TokenCipher::from_base64(&sb.effective_encryption_key())
                    {
                        bad(
                            "supabase.encryption_key",
                            format!("{e} (set it here or in {ENV_ENCRYPTION_KEY})"),
                        );
                    }
                }
            }
            (Provider::Builtin, None) => {}
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

    fn check(text: &str) -> Result<AuthConfig, ConfigError> {
        AuthConfig::from_source(&ConfigSource {
            file: "auth.toml".into(),
            text: text.into(),
        })
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = check("").expect("valid");
        assert_eq!(cfg.provider, Provider::Builtin);
        assert!(cfg.signup.require_email_verification);
        assert_eq!(cfg.password.reset_token_ttl, HumanDuration::secs(1800));
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
