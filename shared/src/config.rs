//! Config primitives both services use: human durations, the Redis section, and config errors
//! that name the file, the line and the key.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// `[redis]`: where sessions live and how long a command may take before the caller gives
/// up (then protected routes answer 503, fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port/db`; `rediss://` for TLS. A password may also come
    /// from `AUTHFLOW_REDIS_PASSWORD`.
    pub url: String,
    /// Upper bound on one Redis round trip on the request path.
    pub timeout: HumanDuration,
    /// Connections per worker thread (each thread has its own pool; see the store).
    pub pool_size: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".into(),
            timeout: HumanDuration::millis(50),
            pool_size: 2,
        }
    }
}

impl RedisConfig {
    /// Problems with this section as (key, reason).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        const SCHEMES: [&str; 6] = [
            "redis://",
            "rediss://",
            "redis-cluster://",
            "redis-sentinel://",
            "redis+unix://",
            "valkey://",
        ];
        if !SCHEMES.iter().any(|s| self.url.starts_with(s)) {
            out.push((
                "url",
                format!("must start with one of {}", SCHEMES.join(", ")),
            ));
        } else if let Err(e) = fred::types::config::Config::from_url(&self.url) {
            out.push(("url", format!("not a valid Redis URL: {}", e.details())));
        }
        if self.timeout.0.is_zero() {
            out.push(("timeout", "must be greater than 0".into()));
        }
        if self.pool_size == 0 || self.pool_size > 256 {
            out.push(("pool_size", "must be between 1 and 256".into()));
        }
        out
    }
}

/// Problems with the session settings both services share (cookie name and flags,
/// lifetimes), as (key under `[session]`, reason).
pub fn session_problems(
    cookie_name: &str,
    secure: bool,
    idle: HumanDuration,
    absolute: HumanDuration,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !crate::cookie::valid_name(cookie_name) {
        out.push((
            "cookie_name",
            format!("{cookie_name:?} is not a valid cookie name"),
        ));
    }
    if cookie_name.starts_with("__Host-") && !secure {
        out.push(("cookie_secure", "a __Host- cookie must be Secure".into()));
    }
    if idle.0.is_zero() {
        out.push(("idle_timeout", "must be greater than 0".into()));
    }
    if absolute < idle {
        out.push((
            "absolute_timeout",
            "must not be shorter than idle_timeout".into(),
        ));
    }
    out
}

/// One problem in a config file. Displays as `file:line: key: reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigProblem {
    pub file: PathBuf,
    pub line: Option<usize>,
    /// Dotted path of the key, e.g. `routes[1].upstream`.
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.key.is_empty() {
            write!(f, ": {}", self.reason)
        } else {
            write!(f, ": {}: {}", self.key, self.reason)
        }
    }
}

/// Every problem found in a config file; a config with any problem is refused whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// A config file's text, kept so that problems found after parsing can still be pinned to
/// the line of the key they are about.
pub struct ConfigSource {
    pub file: PathBuf,
    pub text: String,
}

impl ConfigSource {
    /// Reads `path`; an unreadable file is a [`ConfigError`] naming it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        std::fs::read_to_string(path)
            .map(|text| ConfigSource {
                file: path.to_owned(),
                text,
            })
            .map_err(|e| {
                ConfigError(vec![ConfigProblem {
                    file: path.to_owned(),
                    line: None,
                    key: String::new(),
                    reason: format!("cannot read config file: {e}"),
                }])
            })
    }

    /// Deserializes the text into `T`, reporting the key path and line of the first error
    /// (syntax, unknown key, wrong type, bad duration...).
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let de = toml::Deserializer::new(&self.text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let line = inner.span().map(|s| self.line_of(s.start));
            let key = if key == "." { String::new() } else { key };
            ConfigError(vec![ConfigProblem {
                file: self.file.clone(),
                line,
                key,
                reason: inner.message().trim().to_owned(),
            }])
        })
    }

    /// A problem about `key` (a path like `routes[1].upstream`), pinned to its line.
    pub fn problem(&self, key: &str, reason: impl Into<String>) -> ConfigProblem {
        ConfigProblem {
            file: self.file.clone(),
            line: self.locate(key),
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// The 1-based line where `key` is written, or where its nearest written parent is.
    pub fn locate(&self, key: &str) -> Option<usize> {
        let doc = toml_edit::ImDocument::parse(self.text.as_str()).ok()?;
        let mut item = doc.as_item();
        let mut best = None;
        for seg in segments(key) {
            let next = match seg {
                Segment::Key(k) => {
                    if let Some((key, _)) = item.as_table_like().and_then(|t| t.get_key_value(k)) {
                        best = key.span().or(best);
                    }
                    item.get(k)
                }
                Segment::Index(i) => item.get(i),
            };
            match next {
                Some(n) => {
                    item = n;
                    best = n
                        .span()
                        .or_else(|| n.as_table().and_then(|t| t.span()))
                        .or(best);
                }
                None => break,
            }
        }
        best.map(|s| self.line_of(s.start))
    }

    fn line_of(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())]
            .matches('\n')
            .count()
            + 1
    }
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

/// Splits `routes[1].upstream` into `routes`, `1`, `upstream`.
fn segments(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        if let Some(open) = rest.find('[') {
            if open > 0 {
                out.push(Segment::Key(&rest[..open]));
            }
            rest = &rest[open..];
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(close) = stripped.find(']') else {
                    break;
                };
                if let Ok(i) = stripped[..close].parse() {
                    out.push(Segment::Index(i));
                }
                rest = &stripped[close + 1..];
            }
        } else if !rest.is_empty() {
            out.push(Segment::Key(rest));
        }
    }
    out
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

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        #[serde(default)]
        items: Vec<Item>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        d: HumanDuration,
    }

    fn src(text: &str) -> ConfigSource {
        ConfigSource {
            file: "x.toml".into(),
            text: text.into(),
        }
    }

    #[test]
    fn parse_errors_name_key_and_line() {
        let e = src("a = 1\n\n[[items]]\nd = \"1s\"\n[[items]]\nd = \"soon\"\n")
            .parse::<T>()
            .unwrap_err();
        let p = &e.0[0];
        assert_eq!(p.key, "items[1].d");
        assert_eq!(p.line, Some(6));
        assert!(p.reason.contains("invalid duration"), "{}", p.reason);
        assert!(e.to_string().starts_with("x.toml:6: items[1].d: "), "{e}");

        let e = src("a = 1\nb = 2\n").parse::<T>().unwrap_err();
        assert_eq!(e.0[0].line, Some(2));
        assert!(e.0[0].reason.contains("unknown field"), "{}", e.0[0].reason);
    }

    #[test]
    fn locate_finds_nested_keys() {
        let s = src("a = 1\n[[items]]\nd = \"1s\"\n\n[[items]]\n# c\nd = \"2s\"\n");
        assert_eq!(s.locate("a"), Some(1));
        assert_eq!(s.locate("items[1].d"), Some(7));
        assert_eq!(s.locate("items[0]"), Some(2));
        assert_eq!(
            s.problem("items[1].d", "bad").to_string(),
            "x.toml:7: items[1].d: bad"
        );
    }

    #[test]
    fn redis_section_checks() {
        let mut r = RedisConfig::default();
        assert!(r.problems().is_empty());
        r.url = "http://nope".into();
        r.timeout = HumanDuration::millis(0);
        let keys: Vec<_> = r.problems().into_iter().map(|p| p.0).collect();
        assert_eq!(keys, vec!["url", "timeout"]);
    }
}
