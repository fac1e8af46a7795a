//! Config primitives both services use, and the one way a config file is loaded.
//!
//! - [`source`]: a file's text, and problems that name its file, line and key.
//! - [`validate`]: the [`Validate`] trait every section implements, and [`Problems`].
//! - [`layers`]: defaults, then the file, then the environment, then the command line,
//!   validated once at the end ([`load`]); every environment variable is listed there.
//! - [`redis`]: the `[redis]` section both services have.

pub mod layers;
pub mod redis;
pub mod source;
pub mod tracing;
pub mod validate;
pub mod watch;

pub use layers::{
    load, load_file, ConfigFile, EnvReader, EnvVar, Environment, Overrides, ProcessEnv,
};
pub use redis::RedisConfig;
pub use source::{ConfigError, ConfigProblem, ConfigSource};
pub use tracing::{AcceptTraceparent, TracingConfig};
pub use validate::{Problems, Validate};

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// How the services write their logs: `text` for people, `json` (one object per line) for
/// log pipelines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// A duration written as `"500ms"`, `"1s"`, `"5m"`, `"1h"` or `"1d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
    pub const fn millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let bad = || {
            format!("invalid duration {s:?}: expected a number and a unit (ms, s, m, h, d), e.g. \"500ms\" or \"5m\"")
        };
        let n: u64 = num.parse().map_err(|_| bad())?;
        let ms = match unit {
            "ms" => Some(n),
            "s" => n.checked_mul(1000),
            "m" => n.checked_mul(60_000),
            "h" => n.checked_mul(3_600_000),
            "d" => n.checked_mul(86_400_000),
            _ => return Err(bad()),
        };
        ms.map(|ms| HumanDuration(Duration::from_millis(ms)))
            .ok_or_else(bad)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A secret from a config file or the environment (a password, a key). Its `Debug` and
/// `Display` never show the value, so it cannot leak into logs or error messages; read it
/// with [`Secret::expose`] where it is used.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(empty)"
        } else {
            "Secret(<redacted>)"
        })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Whether `s` parses as `address:port`.
pub fn is_socket_addr(s: &str) -> bool {
    s.parse::<std::net::SocketAddr>().is_ok()
}

/// Whether `s` is an `http://` or `https://` URL.
pub fn is_http_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_reject() {
        assert_eq!(
            "500ms".parse::<HumanDuration>(),
            Ok(HumanDuration::millis(500))
        );
        assert_eq!("1s".parse::<HumanDuration>(), Ok(HumanDuration::secs(1)));
        assert_eq!("5m".parse::<HumanDuration>(), Ok(HumanDuration::secs(300)));
        assert_eq!("1h".parse::<HumanDuration>(), Ok(HumanDuration::secs(3600)));
        for bad in [
            "",
            "5",
            "s",
            "1.5s",
            "-1s",
            "5 minutes",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<HumanDuration>().is_err(), "{bad}");
        }
        assert_eq!(HumanDuration::millis(1500).to_string(), "1500ms");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(
            format!("{s:?} {s}"),
            "Secret(<redacted>) Secret(<redacted>)"
        );
        assert_eq!(s.expose(), "hunter2");
    }
}

/// `scheme://user:password@host/...` with the password replaced by `***`, for anything
/// printed or logged. URLs without a password come back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None if scheme.starts_with("redis") || scheme == "valkey" => {
                // `redis://secret@host`: Redis URLs may carry a bare password.
                format!("{scheme}://***@{host}{tail}")
            }
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://app:s3cr%40t@db:5432/auth"),
            "postgres://app:***@db:5432/auth"
        );
        assert_eq!(redact_url("redis://:pw@r:6379/0"), "redis://:***@r:6379/0");
        assert_eq!(redact_url("redis://r:6379"), "redis://r:6379");
        assert_eq!(
            redact_url("sqlite://data/a.db?mode=rwc"),
            "sqlite://data/a.db?mode=rwc"
        );
    }
}
