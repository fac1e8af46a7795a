//! `[rate_limit]`: request limits in the shape nginx, Envoy and Traefik users know: named
//! rules matched by path prefix (on segment boundaries), methods and host, keyed by client
//! address, user or a header, GCRA with a burst, enforced or in shadow, local or shared
//! across instances through Redis.

use authflow_shared::config::{HumanDuration, Problems, Validate};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::time::Duration;

/// `[rate_limit]`. The top-level `requests`/`per`/`burst` form the rule named `default`,
/// which applies to every request; `[[rate_limit.rules]]` add to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// `enforce` (answer 429) or `shadow` (count, log and expose; never refuse).
    pub mode: LimitMode,
    /// Client networks no rule applies to (each rule may add its own).
    pub exempt: Vec<IpNet>,
    /// The clients each rule keeps track of at once; sizes each rule's table (16 bytes a
    /// client, plus headroom). Beyond it the least constrained client starts afresh.
    pub max_clients: usize,
    /// IPv6 clients are counted per prefix of this length (one host usually holds a /64).
    pub ipv6_prefix: u8,
    /// The `default` rule: `requests` per `per` per client address...
    pub requests: u64,
    pub per: HumanDuration,
    /// ...up to `burst` at once (default: `requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// When `RateLimit-Policy` and `RateLimit` are sent: `limited` (on 429 only) or `always`
    /// (also on allowed responses, for the tightest rule that counted the request).
    pub headers: RateHeaders,
    pub rules: Vec<RateRule>,
}

/// When the `RateLimit-*` headers are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateHeaders {
    #[default]
    Limited,
    Always,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            mode: LimitMode::Enforce,
            exempt: Vec::new(),
            max_clients: 100_000,
            ipv6_prefix: 64,
            requests: 100,
            per: HumanDuration::secs(1),
            burst: None,
            headers: RateHeaders::Limited,
            rules: Vec::new(),
        }
    }
}

/// Whether a rule refuses or only reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitMode {
    #[default]
    Enforce,
    Shadow,
}

/// Where a rule's counters live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// In this process.
    #[default]
    Local,
    /// In Redis, shared by every gateway on it.
    Global,
}

/// One `[[rate_limit.rules]]` entry. Every rule that matches a request applies; the request
/// passes only if each allows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateRule {
    /// In metrics, logs and the `RateLimit-Policy` header.
    pub name: String,
    /// Path prefix on a segment boundary (`/api/signin` matches `/api/signin` and
    /// `/api/signin/x`, not `/api/signin-help`), any ASCII case.
    #[serde(default = "root")]
    pub prefix: String,
    /// Only these methods (empty: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Only this host (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// What is counted: `ip`, `user`, `header:<name>`, or a combination.
    #[serde(default = "by_ip")]
    pub key: Vec<KeyPart>,
    pub requests: u64,
    pub per: HumanDuration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    #[serde(default)]
    pub scope: Scope,
    /// Overrides `[rate_limit] mode` for this rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LimitMode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exempt: Vec<IpNet>,
}

fn root() -> String {
    "/".into()
}

fn by_ip() -> Vec<KeyPart> {
    vec![KeyPart::Ip]
}

impl RateRule {
    /// The bucket size: `burst`, else `requests`.
    pub fn burst(&self) -> u64 {
        self.burst.unwrap_or(self.requests)
    }
}

/// One part of a rule's key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeyPart {
    /// The client address (IPv6: its `ipv6_prefix`).
    Ip,
    /// The signed-in user; the rule applies only to requests with a valid session.
    User,
    /// A request header, lower case; the rule applies only to requests that send it.
    Header(String),
}

impl TryFrom<String> for KeyPart {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "ip" => Ok(KeyPart::Ip),
            "user" => Ok(KeyPart::User),
            other => match other.strip_prefix("header:") {
                Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => {
                    Ok(KeyPart::Header(h.to_ascii_lowercase()))
                }
                _ => Err(format!(
                    "unknown key kind {other:?} (ip, user or header:<name>)"
                )),
            },
        }
    }
}

impl From<KeyPart> for String {
    fn from(k: KeyPart) -> String {
        match k {
            KeyPart::Ip => "ip".into(),
            KeyPart::User => "user".into(),
            KeyPart::Header(h) => format!("header:{h}"),
        }
    }
}

impl RateLimitConfig {
    /// The top-level limit as a rule: `default`, every path, keyed by address.
    pub fn default_rule(&self) -> RateRule {
        RateRule {
            name: "default".into(),
            prefix: root(),
            methods: Vec::new(),
            host: None,
            key: by_ip(),
            requests: self.requests,
            per: self.per,
            burst: self.burst,
            scope: Scope::Local,
            mode: None,
            exempt: Vec::new(),
        }
    }
}

/// At least one request, a window of at least 1 ms, a burst of at least 1.
fn limit_problems(requests: u64, per: HumanDuration, burst: Option<u64>, p: &mut Problems) {
    if requests == 0 {
        p.add("requests", "must be at least 1");
    }
    if per.0 < Duration::from_millis(1) {
        p.add("per", "must be at least 1ms");
    }
    if burst == Some(0) {
        p.add("burst", "must be at least 1");
    }
}

impl Validate for RateLimitConfig {
    fn validate(&self, p: &mut Problems) {
        limit_problems(self.requests, self.per, self.burst, p);
        p.each("rules", &self.rules);
        let mut names = HashSet::from(["default"]);
        for (i, r) in self.rules.iter().enumerate() {
            if !names.insert(r.name.as_str()) {
                p.add(
                    format!("rules[{i}].name"),
                    format!(
                        "{:?} is used twice (\"default\" is the top-level limit)",
                        r.name
                    ),
                );
            }
        }
        if self.ipv6_prefix == 0 || self.ipv6_prefix > 128 {
            p.add("ipv6_prefix", "must be between 1 and 128");
        }
        if !(64..=50_000_000).contains(&self.max_clients) {
            p.add("max_clients", "must be between 64 and 50000000");
        }
    }
}

impl Validate for RateRule {
    fn validate(&self, p: &mut Problems) {
        limit_problems(self.requests, self.per, self.burst, p);
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            p.add("name", "must be 1-64 letters, digits, '_' or '-'");
        }
        if !self.prefix.starts_with('/') {
            p.add("prefix", "must start with /");
        }
        for (i, m) in self.methods.iter().enumerate() {
            if http::Method::from_bytes(m.as_bytes()).is_err() || m.to_ascii_uppercase() != *m {
                p.add(
                    format!("methods[{i}]"),
                    format!("{m:?} is not a method in capitals"),
                );
            }
        }
        if self.key.is_empty() {
            p.add("key", "must name at least one of ip, user, header:<name>");
        }
        if self.key.iter().collect::<HashSet<_>>().len() != self.key.len() {
            p.add("key", "names a part twice");
        }
        if self.host.as_deref().is_some_and(str::is_empty) {
            p.add("host", "must not be empty (leave it out for any host)");
        }
    }
}
