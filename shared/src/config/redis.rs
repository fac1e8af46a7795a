//! `[redis]`: the section both services have.

use super::layers::EnvVar;
use super::validate::{Problems, Validate};
use super::{HumanDuration, Secret};
use serde::{Deserialize, Serialize};

/// `[redis]`: where sessions live and how long a command may take before the caller gives
/// up (then protected routes answer 503, fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`; `rediss://` for TLS.
    pub url: String,
    /// Overrides the URL's password; usually from `AUTHFLOW_REDIS_PASSWORD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// Upper bound on one Redis round trip on the request path.
    pub timeout: HumanDuration,
    /// Connections per worker thread (each thread has its own pool; see the store).
    pub pool_size: usize,
    /// With a `rediss://` URL (also `rediss-cluster://`, `rediss-sentinel://`): the PEM file
    /// of the CA that signed the server's certificate. Unset, the system's roots are used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            password: None,
            timeout: HumanDuration::millis(50),
            pool_size: 2,
            ca_file: None,
        }
    }
}

const SCHEMES: [&str; 8] = [
    "redis://",
    "rediss://",
    "redis-cluster://",
    "rediss-cluster://",
    "redis-sentinel://",
    "rediss-sentinel://",
    "redis+unix://",
    "valkey://",
];

impl Validate for RedisConfig {
    fn validate(&self, p: &mut Problems) {
        if !SCHEMES.iter().any(|s| self.url.starts_with(s)) {
            p.add(
                "url",
                format!("must start with one of {}", SCHEMES.join(", ")),
            );
        } else if let Err(e) = fred::types::config::Config::from_url(&self.url) {
            p.add("url", format!("not a valid Redis URL: {}", e.details()));
        }
        if self.timeout.0.is_zero() {
            p.add("timeout", "must be greater than 0");
        }
        if self.pool_size == 0 || self.pool_size > 256 {
            p.add("pool_size", "must be between 1 and 256");
        }
        if self.ca_file.is_some() && !self.uses_tls() {
            p.add("ca_file", "only meaningful with a rediss:// URL");
        }
    }
}

impl RedisConfig {
    /// Whether the URL asks for TLS (`rediss://`, `rediss-cluster://`, `rediss-sentinel://`).
    pub fn uses_tls(&self) -> bool {
        self.url.starts_with("rediss")
    }

    /// The environment variables of a `[redis]` section, for any config file that has one;
    /// `section` finds it in the file's root.
    pub fn env_vars<T: 'static>(section: fn(&mut T) -> &mut RedisConfig) -> Vec<EnvVar<T>> {
        vec![
            EnvVar::new("AUTHFLOW_REDIS_URL", "redis.url", move |c, v| {
                section(c).url = v
            }),
            EnvVar::new("AUTHFLOW_REDIS_PASSWORD", "redis.password", move |c, v| {
                section(c).password = Some(v.into())
            }),
        ]
    }

    /// The URL with any password replaced by `***`, for logs and banners.
    pub fn redacted_url(&self) -> String {
        crate::config::redact_url(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::problems_of;

    #[test]
    fn redis_section_checks() {
        let mut r = RedisConfig::default();
        assert!(problems_of(&r).is_empty());
        r.url = "http://nope".into();
        r.timeout = HumanDuration::millis(0);
        let keys: Vec<_> = problems_of(&r).into_iter().map(|p| p.0).collect();
        assert_eq!(keys, vec!["url", "timeout"]);
    }
}
