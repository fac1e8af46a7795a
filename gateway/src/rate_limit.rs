//! Rate-limit rules ([`crate::config::RateRule`]) applied to a request.
//!
//! Every rule that matches a request applies (the top-level limit is the rule `default`,
//! matching everything); the request passes only if each enforcing rule allows it, and of
//! the rules that refuse, the one with the longest wait decides the 429. Rules counted by
//! `user` run after the session check, the others before it. Each rule is a GCRA
//! ([`crate::gcra`]) per client key; a refused request costs no budget, but the rules that
//! allowed it have counted it (as nginx's `limit_req` zones do).
//!
//! `scope = "global"` rules keep their state in Redis ([`SharedLimits`]): one script per
//! decision, a local memory of keys already refused (so a flood from one client costs about
//! one Redis call per wait), and when Redis cannot answer, the rule's local table decides
//! (fail open to local limits; the session check, unlike this, fails closed).

use crate::config::{KeyPart, LimitMode, RateHeaders, RateLimitConfig, RateRule, Scope};
use crate::gcra::{Gcra, Outcome, Table};
use crate::metrics::RuleCounters;
use authflow_shared::store::SharedLimits;
use http::HeaderMap;
use ipnet::IpNet;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

/// Keyed once per process (so nobody can choose colliding keys) and shared by every
/// generation of rules, so a rule kept across a reload finds its clients again.
static HASHER: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// After Redis failed to answer, shared rules decide locally for this long before trying
/// it again (a request never waits for a Redis that is known to be away).
const SHARED_RETRY: Duration = Duration::from_secs(1);

/// What is asked about one request.
pub struct Request<'a> {
    pub client: IpAddr,
    pub method: &'a http::Method,
    /// Canonical path.
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub headers: &'a HeaderMap,
    /// The signed-in user, once the session check has found one.
    pub user: Option<&'a str>,
}

/// Which rules a check runs: those not keyed by `user` (before the session check) or those
/// that are (after it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    BeforeSession,
    AfterSession,
}

/// What the limiter says about one request.
#[derive(Debug)]
pub enum RateDecision {
    /// Allowed; with `headers = "always"`, the quota of the tightest rule that counted it.
    Allow(Option<Quota>),
    Limited(Exceeded),
}

/// What is left of the tightest rule's quota, for `RateLimit-*` on an allowed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quota {
    pub policy: String,
    pub requests: u64,
    pub window_secs: u64,
    /// Requests that would pass right now.
    pub remaining: u64,
    /// Whole seconds until the quota is full again.
    pub reset_secs: u64,
}

/// The rule a request went over, for the 429 and its `RateLimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The rule's name in `RateLimit-Policy`.
    pub policy: String,
    pub requests: u64,
    pub window_secs: u64,
    /// Whole seconds until a request conforms again (at least 1).
    pub retry_after: u64,
}

/// A rule's counters, kept across reloads while its name and parameters stay the same.
pub struct RuleState {
    /// Name and every parameter that changes what is counted.
    signature: String,
    table: Table,
    /// Shared rules: client keys refused by Redis, and until when (ns on `table`'s clock).
    refused: Mutex<HashMap<u64, u64>>,
    /// Shared rules: Redis is not asked before this (ns on `table`'s clock).
    shared_down_until: AtomicU64,
}

struct Rule {
    name: String,
    /// Lower case, no trailing `/` (except the root).
    prefix: String,
    methods: Vec<http::Method>,
    host: Option<String>,
    key: Vec<KeyPart>,
    gcra: Gcra,
    requests: u64,
    per: Duration,
    shadow: bool,
    shared: bool,
    exempt: Vec<IpNet>,
    state: Arc<RuleState>,
    counters: Option<RuleCounters>,
}

/// Every rule of one configuration.
pub struct RateLimiter {
    enabled: bool,
    ipv6_prefix: u8,
    exempt: Vec<IpNet>,
    /// `headers = "always"`: allowed requests report the tightest quota too.
    headers_always: bool,
    rules: Vec<Rule>,
    has_user_rules: bool,
    shared: Option<Arc<dyn SharedLimits>>,
}

impl RateLimiter {
    pub fn new(cfg: &RateLimitConfig, shared: Option<Arc<dyn SharedLimits>>) -> Self {
        Self::carrying_over(cfg, shared, None)
    }

    /// Built for `cfg`, keeping the counters of `previous`'s rules whose name and
    /// parameters did not change.
    pub fn carrying_over(
        cfg: &RateLimitConfig,
        shared: Option<Arc<dyn SharedLimits>>,
        previous: Option<&RateLimiter>,
    ) -> Self {
        let kept: HashMap<&str, &Arc<RuleState>> = previous
            .map(|p| {
                p.rules
                    .iter()
                    .map(|r| (r.state.signature.as_str(), &r.state))
                    .collect()
            })
            .unwrap_or_default();
        let rules: Vec<Rule> = std::iter::once(cfg.default_rule())
            .chain(cfg.rules.iter().cloned())
            .map(|r| Rule::new(&r, cfg, &kept))
            .collect();
        RateLimiter {
            enabled: cfg.enabled,
            ipv6_prefix: cfg.ipv6_prefix,
            exempt: cfg.exempt.clone(),
            headers_always: cfg.headers == RateHeaders::Always,
            has_user_rules: rules.iter().any(|r| r.key.contains(&KeyPart::User)),
            rules,
            shared,
        }
    }

    /// Whether any rule runs after the session check.
    pub fn has_user_rules(&self) -> bool {
        self.has_user_rules
    }

    /// How many rules kept their counters from the previous generation (for the reload log).
    pub fn kept_from(&self, previous: &RateLimiter) -> usize {
        self.rules
            .iter()
            .filter(|r| {
                previous
                    .rules
                    .iter()
                    .any(|p| Arc::ptr_eq(&p.state, &r.state))
            })
            .count()
    }

    /// Counts the request against every rule of `phase` that matches it.
    pub async fn check(&self, req: &Request<'_>, phase: Phase) -> RateDecision {
        if !self.enabled {
            return RateDecision::Allow(None);
        }
        let client = self.client_key(req.client);
        let globally_exempt = self.exempt.iter().any(|n| n.contains(&req.client));
        let mut worst: Option<(Duration, &Rule)> = None;
        let mut tightest: Option<(u64, Duration, &Rule)> = None;
        for rule in &self.rules {
            if rule.key.contains(&KeyPart::User) != (phase == Phase::AfterSession)
                || !rule.matches(req)
            {
                continue;
            }
            if globally_exempt || rule.exempt.iter().any(|n| n.contains(&req.client)) {
                rule.count(|c| &c.exempt);
                continue;
            }
            let Some(hash) = rule.key_hash(req, client) else {
                continue;
            };
            match self.decide(rule, hash, req, client).await {
                Outcome::Allowed { remaining, reset } => {
                    rule.count(|c| &c.allowed);
                    let tighter = tightest.is_none_or(|(r, _, _)| remaining < r);
                    if self.headers_always && !rule.shadow && tighter {
                        tightest = Some((remaining, reset, rule));
                    }
                }
                Outcome::Limited { retry_after } if rule.shadow => {
                    rule.count(|c| &c.shadow_limited);
                    tracing::info!(rule = %rule.name, client = %req.client, retry_after_ms = retry_after.as_millis() as u64, "rate limit exceeded (shadow: not refused)");
                }
                Outcome::Limited { retry_after } => {
                    rule.count(|c| &c.limited);
                    if worst.is_none_or(|(w, _)| retry_after > w) {
                        worst = Some((retry_after, rule));
                    }
                }
            }
        }
        match worst {
            None => RateDecision::Allow(tightest.map(|(remaining, reset, rule)| Quota {
                policy: rule.name.clone(),
                requests: rule.requests,
                window_secs: rule.window_secs(),
                remaining,
                reset_secs: reset.as_secs_f64().ceil() as u64,
            })),
            Some((wait, rule)) => RateDecision::Limited(Exceeded {
                policy: rule.name.clone(),
                requests: rule.requests,
                window_secs: rule.window_secs(),
                retry_after: wait.as_secs_f64().ceil().max(1.0) as u64,
            }),
        }
    }

    /// The rule's decision for one client key: locally, or in Redis for a shared rule (with
    /// its local fallback).
    async fn decide(&self, rule: &Rule, hash: u64, req: &Request<'_>, client: IpAddr) -> Outcome {
        let state = &rule.state;
        let Some(shared) = self.shared.as_ref().filter(|_| rule.shared) else {
            return state.table.check(hash, &rule.gcra);
        };
        let now = state.table.now();
        if let Some(until) = state.refused_until(hash, now) {
            return Outcome::Limited {
                retry_after: Duration::from_nanos(until - now),
            };
        }
        if state.shared_down_until.load(Ordering::Relaxed) > now {
            rule.count(|c| &c.fallback);
            return state.table.check(hash, &rule.gcra);
        }
        let (interval, tolerance) = rule.gcra.micros();
        let material = rule.key_material(req, client).unwrap_or_default();
        let redis_key = authflow_shared::keys::rate_limit(&rule.name, &shared_key(&material));
        match shared.gcra(&redis_key, interval, tolerance).await {
            Ok(d) if d.allowed => Outcome::Allowed {
                remaining: d.remaining,
                reset: rule.gcra.full_after(d.remaining),
            },
            Ok(d) => {
                let wait = Duration::from_micros(d.wait_us.max(1));
                state.remember_refusal(hash, now + wait.as_nanos() as u64);
                Outcome::Limited { retry_after: wait }
            }
            Err(e) => {
                tracing::warn!(rule = %rule.name, error = %e, "shared rate limit unreachable: deciding locally");
                state
                    .shared_down_until
                    .store(now + SHARED_RETRY.as_nanos() as u64, Ordering::Relaxed);
                rule.count(|c| &c.fallback);
                state.table.check(hash, &rule.gcra)
            }
        }
    }

    /// IPv6 clients are counted per prefix: one host usually controls a whole /64.
    fn client_key(&self, ip: IpAddr) -> IpAddr {
        authflow_shared::client_ip::network(ip, self.ipv6_prefix)
    }
}

impl Rule {
    /// The window in whole seconds, as `RateLimit-Policy` states it (at least 1).
    fn window_secs(&self) -> u64 {
        self.per.as_secs_f64().ceil().max(1.0) as u64
    }

    fn new(r: &RateRule, cfg: &RateLimitConfig, kept: &HashMap<&str, &Arc<RuleState>>) -> Self {
        let mode = r.mode.unwrap_or(cfg.mode);
        let signature = format!(
            "{}|{}|{:?}|{:?}|{:?}|{}|{:?}|{}|{:?}|{}",
            r.name,
            r.prefix,
            r.methods,
            r.host,
            r.key,
            r.requests,
            r.per.0,
            r.burst(),
            r.scope,
            cfg.max_clients
        );
        let state = kept.get(signature.as_str()).map_or_else(
            || {
                Arc::new(RuleState {
                    signature,
                    table: Table::new(cfg.max_clients + cfg.max_clients / 4),
                    refused: Mutex::new(HashMap::new()),
                    shared_down_until: AtomicU64::new(0),
                })
            },
            |s| Arc::clone(s),
        );
        let prefix = r.prefix.to_ascii_lowercase();
        Rule {
            name: r.name.clone(),
            prefix: if prefix.len() > 1 {
                prefix.trim_end_matches('/').to_owned()
            } else {
                prefix
            },
            methods: r
                .methods
                .iter()
                .filter_map(|m| http::Method::from_bytes(m.as_bytes()).ok())
                .collect(),
            host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            key: r.key.clone(),
            gcra: Gcra::new(r.requests, r.per.0, r.burst()),
            requests: r.requests,
            per: r.per.0,
            shadow: mode == LimitMode::Shadow,
            shared: r.scope == Scope::Global,
            exempt: r.exempt.clone(),
            counters: RuleCounters::for_rule(&r.name),
            state,
        }
    }

    fn matches(&self, req: &Request<'_>) -> bool {
        (self.methods.is_empty() || self.methods.contains(req.method))
            && self
                .host
                .as_ref()
                .is_none_or(|h| req.host.is_some_and(|rh| rh.eq_ignore_ascii_case(h)))
            && crate::route::prefix_matches(&self.prefix, req.path, false)
    }

    /// Writes what this rule counts by, for this request, to `write`; `None` when a part is
    /// missing (no session for `user`, no such header): the rule does not apply.
    fn key_parts(
        &self,
        req: &Request<'_>,
        client: IpAddr,
        mut write: impl FnMut(&[u8]),
    ) -> Option<()> {
        for part in &self.key {
            match part {
                KeyPart::Ip => match client {
                    IpAddr::V4(v4) => write(&v4.octets()),
                    IpAddr::V6(v6) => write(&v6.octets()),
                },
                KeyPart::User => write(req.user?.as_bytes()),
                KeyPart::Header(name) => write(req.headers.get(name.as_str())?.as_bytes()),
            }
            write(&[0xff]);
        }
        Some(())
    }

    /// The client key as this process's keyed hash, without allocating (every request
    /// passes here for the `default` rule).
    fn key_hash(&self, req: &Request<'_>, client: IpAddr) -> Option<u64> {
        let mut h = HASHER.build_hasher();
        self.key_parts(req, client, |b| h.write(b))?;
        Some(h.finish())
    }

    /// The client key's bytes, for the Redis key of a shared rule.
    fn key_material(&self, req: &Request<'_>, client: IpAddr) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(48);
        self.key_parts(req, client, |b| key.extend_from_slice(b))?;
        Some(key)
    }

    fn count(&self, which: impl Fn(&RuleCounters) -> &prometheus::IntCounter) {
        if let Some(c) = &self.counters {
            which(c).inc();
        }
    }
}

impl RuleState {
    /// Until when (ns) `key` is known to be refused by the shared store.
    fn refused_until(&self, key: u64, now: u64) -> Option<u64> {
        let map = self.refused.lock().ok()?;
        map.get(&key).copied().filter(|until| *until > now)
    }

    fn remember_refusal(&self, key: u64, until: u64) {
        if let Ok(mut map) = self.refused.lock() {
            // Bounded: past 10,000 refused clients, forget the ones whose wait is over, and
            // if that is not enough, all of them (they are asked about in Redis again).
            if map.len() >= 10_000 {
                let now = self.table.now();
                map.retain(|_, u| *u > now);
                if map.len() >= 10_000 {
                    map.clear();
                }
            }
            map.insert(key, until);
        }
    }
}

/// The Redis form of a client key: the same for every gateway (unlike [`HASHER`]).
fn shared_key(material: &[u8]) -> String {
    let mut hex = authflow_shared::digest::hash_hex(material);
    hex.truncate(32);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateRule;
    use authflow_shared::config::HumanDuration;

    fn rule(name: &str, prefix: &str, requests: u64) -> RateRule {
        RateRule {
            name: name.into(),
            prefix: prefix.into(),
            methods: Vec::new(),
            host: None,
            key: vec![KeyPart::Ip],
            requests,
            per: HumanDuration::secs(60),
            burst: None,
            scope: Scope::Local,
            mode: None,
            exempt: Vec::new(),
        }
    }

    fn limiter(requests: u64, rules: Vec<RateRule>) -> RateLimiter {
        RateLimiter::new(
            &RateLimitConfig {
                requests,
                per: HumanDuration::secs(60),
                rules,
                ..Default::default()
            },
            None,
        )
    }

    fn get(path: &str) -> (http::Method, HeaderMap, String) {
        (http::Method::GET, HeaderMap::new(), path.to_owned())
    }

    async fn check(l: &RateLimiter, ip: &str, path: &str) -> RateDecision {
        check_with(l, ip, &http::Method::GET, path, &HeaderMap::new(), None).await
    }

    async fn check_with(
        l: &RateLimiter,
        ip: &str,
        method: &http::Method,
        path: &str,
        headers: &HeaderMap,
        user: Option<&str>,
    ) -> RateDecision {
        let req = Request {
            client: ip.parse().expect("ip"),
            method,
            path,
            host: Some("example.com"),
            headers,
            user,
        };
        match l.check(&req, Phase::BeforeSession).await {
            RateDecision::Allow(_) if user.is_some() => l.check(&req, Phase::AfterSession).await,
            other => other,
        }
    }

    fn allowed(d: &RateDecision) -> bool {
        matches!(d, RateDecision::Allow(_))
    }

    #[tokio::test]
    async fn trips_after_the_burst_with_a_gcra_retry_after() {
        let l = limiter(3, vec![]);
        for _ in 0..3 {
            assert!(allowed(&check(&l, "192.0.2.1", "/x").await));
        }
        match check(&l, "192.0.2.1", "/x").await {
            RateDecision::Limited(e) => {
                // 3 per minute: the next one conforms 20 s after the first.
                assert!((19..=20).contains(&e.retry_after), "{e:?}");
                assert_eq!(
                    (e.policy.as_str(), e.requests, e.window_secs),
                    ("default", 3, 60)
                );
                let r = crate::response::LocalResponse::too_many_requests(&e);
                assert_eq!(r.status, 429);
                assert_eq!(
                    r.header_value("retry-after"),
                    Some(e.retry_after.to_string().as_str())
                );
                assert_eq!(
                    r.header_value("ratelimit-policy"),
                    Some("\"default\";q=3;w=60")
                );
            }
            RateDecision::Allow(_) => panic!("4th request allowed"),
        }
        assert!(allowed(&check(&l, "192.0.2.2", "/x").await));
    }

    #[tokio::test]
    async fn every_matching_rule_applies_on_segment_boundaries() {
        let l = limiter(
            100,
            vec![rule("api", "/api/", 50), rule("signin", "/api/signin", 1)],
        );
        let ip = "192.0.2.1";
        assert!(allowed(&check(&l, ip, "/api/signin").await));
        match check(&l, ip, "/API/SignIn").await {
            RateDecision::Limited(e) => assert_eq!(e.policy, "signin", "other case, same rule"),
            RateDecision::Allow(_) => panic!("second sign-in allowed"),
        }
        assert!(
            allowed(&check(&l, ip, "/api/signin-help").await),
            "not below /api/signin"
        );
        assert!(allowed(&check(&l, ip, "/api/other").await));
        assert!(!allowed(&check(&l, ip, "/api/signin/x").await));
    }

    #[tokio::test]
    async fn methods_hosts_headers_users_shadow_and_exempt() {
        let mut exempt = rule("exempt", "/", 1);
        exempt.exempt = vec!["198.51.100.0/24".parse().expect("net")];
        let l = limiter(1000, vec![exempt]);
        let (m, h, _) = get("/");
        // `exempt` refuses a second request from elsewhere, not from its exempt network.
        assert!(allowed(&check(&l, "198.51.100.7", "/").await));
        assert!(allowed(&check(&l, "198.51.100.7", "/").await), "exempt");
        assert!(allowed(&check(&l, "192.0.2.1", "/").await));
        match check(&l, "192.0.2.1", "/").await {
            RateDecision::Limited(e) => assert_eq!(e.policy, "exempt"),
            RateDecision::Allow(_) => panic!("not limited"),
        }
        // Keyed by header: two keys from one address are two clients; no header, no rule.
        let mut by_key = rule("apikey", "/", 1);
        by_key.key = vec![KeyPart::Header("x-api-key".into())];
        let mut by_user = rule("user", "/u", 1);
        by_user.key = vec![KeyPart::User];
        let mut post_only = rule("post", "/p", 1);
        post_only.methods = vec!["POST".into()];
        let l = limiter(1000, vec![by_key, by_user, post_only]);
        let with_key = |k: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", k.parse().expect("value"));
            h
        };
        let ip = "192.0.2.9";
        for k in ["a", "b"] {
            assert!(allowed(
                &check_with(&l, ip, &m, "/k", &with_key(k), None).await
            ));
        }
        assert!(!allowed(
            &check_with(&l, ip, &m, "/k", &with_key("a"), None).await
        ));
        assert!(
            allowed(&check_with(&l, ip, &m, "/k", &h, None).await),
            "no key, no rule"
        );
        assert!(allowed(&check_with(&l, ip, &m, "/k", &h, None).await));
        // Keyed by user: after the session check only.
        assert!(allowed(&check_with(&l, ip, &m, "/u", &h, Some("u1")).await));
        assert!(!allowed(
            &check_with(&l, ip, &m, "/u", &h, Some("u1")).await
        ));
        assert!(allowed(&check_with(&l, ip, &m, "/u", &h, Some("u2")).await));
        assert!(allowed(&check_with(&l, ip, &m, "/u", &h, None).await));
        // Methods.
        assert!(allowed(&check_with(&l, ip, &m, "/p", &h, None).await));
        assert!(
            allowed(&check_with(&l, ip, &m, "/p", &h, None).await),
            "GET is not counted"
        );
        let post = http::Method::POST;
        assert!(allowed(&check_with(&l, ip, &post, "/p", &h, None).await));
        assert!(!allowed(&check_with(&l, ip, &post, "/p", &h, None).await));
        // Shadow: counted, never refused; hosts: only theirs.
        let mut shadow = rule("shadow_test", "/", 1);
        shadow.mode = Some(LimitMode::Shadow);
        let mut other_host = rule("elsewhere", "/", 1);
        other_host.host = Some("other.example.com".into());
        let l = limiter(1000, vec![shadow, other_host]);
        for _ in 0..5 {
            assert!(allowed(&check(&l, ip, "/").await));
        }
        let c = RuleCounters::for_rule("shadow_test").expect("counters");
        assert!(c.shadow_limited.get() >= 4);
    }

    #[tokio::test]
    async fn ipv6_clients_share_their_64() {
        let l = limiter(1, vec![]);
        assert!(allowed(&check(&l, "2001:db8::1", "/").await));
        assert!(!allowed(&check(&l, "2001:db8::2", "/").await));
        assert!(allowed(&check(&l, "2001:db8:0:1::1", "/").await));
    }

    #[tokio::test]
    async fn unchanged_rules_keep_their_counters_across_a_reload() {
        let cfg = RateLimitConfig {
            requests: 1000,
            per: HumanDuration::secs(60),
            rules: vec![rule("keep", "/a", 1), rule("change", "/b", 1)],
            ..Default::default()
        };
        let old = RateLimiter::new(&cfg, None);
        assert!(allowed(&check(&old, "192.0.2.1", "/a").await));
        assert!(allowed(&check(&old, "192.0.2.1", "/b").await));
        let mut next = cfg.clone();
        next.rules[1].requests = 2;
        let new = RateLimiter::carrying_over(&next, None, Some(&old));
        assert_eq!(new.kept_from(&old), 2, "default and keep");
        assert!(
            !allowed(&check(&new, "192.0.2.1", "/a").await),
            "counter lost"
        );
        assert!(
            allowed(&check(&new, "192.0.2.1", "/b").await),
            "a changed rule starts afresh"
        );
    }

    /// 2,000 clients each using its whole budget see no false 429: the table holds them all.
    #[tokio::test]
    async fn many_distinct_clients_at_their_limit_are_never_limited() {
        let l = limiter(20, vec![]);
        for round in 0..20 {
            for i in 0..2_000u32 {
                let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
                assert!(
                    allowed(&check(&l, &ip, "/").await),
                    "client {ip} limited in round {round}"
                );
            }
        }
    }
}
