//! Per-client-IP request limits (pingora-limits' count-min `Rate`, one per limit).
//!
//! Each limit counts requests in fixed windows of `per`. The estimator can over-count on hash
//! collisions, never under-count; it is sized from `estimator_slots` so that many distinct
//! clients under their limit do not collide into a false 429.

use crate::config::RateLimitConfig;
use ipnet::IpNet;
use pingora_limits::rate::Rate;
use std::net::IpAddr;
use std::time::Duration;

/// One limit: `requests` per `per`, counted per client key.
struct Limit {
    name: String,
    requests: isize,
    per: Duration,
    rate: Rate,
}

impl Limit {
    fn new(name: String, requests: u64, per: Duration, hashes: usize, slots: usize) -> Self {
        Limit {
            name,
            requests: requests.min(isize::MAX as u64) as isize,
            per,
            rate: Rate::new_with_estimator_config(per, hashes, slots),
        }
    }

    /// Seconds until the current window ends (at least 1).
    fn seconds_left(&self, key: &IpAddr) -> u64 {
        let fraction = self.rate.rate_with(key, |c| c.current_interval_fraction);
        let left = self.per.as_secs_f64() * (1.0 - fraction);
        (left.ceil() as u64).max(1)
    }
}

/// The limiter: a default limit and per-path-prefix rules (longest prefix wins).
pub struct RateLimiter {
    enabled: bool,
    ipv6_prefix: u8,
    default: Limit,
    /// Sorted by prefix length, longest first.
    rules: Vec<(String, Limit)>,
}

/// What the limiter says about one request.
pub enum RateDecision {
    Allow,
    Limited(Exceeded),
}

/// The limit a request went over, for the 429 and its `RateLimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    /// The limit's name in `RateLimit-Policy` (`default`, `rule0`, ...).
    pub policy: String,
    pub requests: u64,
    pub window_secs: u64,
    /// Seconds until the window ends.
    pub retry_after: u64,
}

impl RateLimiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        let (hashes, slots) = (cfg.estimator_hashes, cfg.estimator_slots);
        let mut rules: Vec<(String, Limit)> = cfg
            .rules
            .iter()
            .enumerate()
            .map(|(i, r)| {
                (
                    r.prefix.clone(),
                    Limit::new(format!("rule{i}"), r.requests, r.per.0, hashes, slots),
                )
            })
            .collect();
        rules.sort_by_key(|r| std::cmp::Reverse(r.0.len()));
        RateLimiter {
            enabled: cfg.enabled,
            ipv6_prefix: cfg.ipv6_prefix,
            default: Limit::new("default".into(), cfg.requests, cfg.per.0, hashes, slots),
            rules,
        }
    }

    /// Counts this request against the limit for `path` and says whether it may proceed.
    pub fn check(&self, client: IpAddr, path: &str) -> RateDecision {
        if !self.enabled {
            return RateDecision::Allow;
        }
        let key = self.client_key(client);
        let limit = self
            .rules
            .iter()
            .find(|(prefix, _)| starts_with_any_case(path, prefix))
            .map_or(&self.default, |(_, l)| l);
        let count = limit.rate.observe(&key, 1);
        if count <= limit.requests {
            return RateDecision::Allow;
        }
        RateDecision::Limited(Exceeded {
            policy: limit.name.clone(),
            requests: limit.requests as u64,
            window_secs: limit.per.as_secs(),
            retry_after: limit.seconds_left(&key),
        })
    }

    /// IPv6 clients are counted per prefix: one host usually controls a whole /64.
    fn client_key(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V6(_) => IpNet::new(ip, self.ipv6_prefix)
                .map(|n| n.network())
                .unwrap_or(ip),
            v4 => v4,
        }
    }
}

/// Rules match the canonical path in any ASCII case, as routes do by default, so `/API/...`
/// cannot slip past a rule written for `/api/...`.
fn starts_with_any_case(path: &str, prefix: &str) -> bool {
    path.get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RateRule;
    use authflow_shared::config::HumanDuration;

    fn limiter(requests: u64, rules: Vec<RateRule>) -> RateLimiter {
        RateLimiter::new(&RateLimitConfig {
            requests,
            per: HumanDuration::secs(60),
            rules,
            ..Default::default()
        })
    }

    fn allowed(d: RateDecision) -> bool {
        matches!(d, RateDecision::Allow)
    }

    #[test]
    fn trips_after_the_configured_count() {
        let l = limiter(3, vec![]);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for _ in 0..3 {
            assert!(allowed(l.check(ip, "/x")));
        }
        match l.check(ip, "/x") {
            RateDecision::Limited(e) => {
                assert!((1..=60).contains(&e.retry_after));
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
            RateDecision::Allow => panic!("4th request allowed"),
        }
        assert!(allowed(l.check("192.0.2.2".parse().expect("ip"), "/x")));
    }

    #[test]
    fn longest_rule_replaces_the_default() {
        let rule = |p: &str, n| RateRule {
            prefix: p.into(),
            requests: n,
            per: HumanDuration::secs(60),
        };
        let l = limiter(100, vec![rule("/api/", 50), rule("/api/signin", 1)]);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(allowed(l.check(ip, "/api/signin")));
        assert!(!allowed(l.check(ip, "/api/signin")));
        assert!(
            !allowed(l.check(ip, "/API/SignIn")),
            "other case, same rule"
        );
        assert!(allowed(l.check(ip, "/api/other")));
        assert!(allowed(l.check(ip, "/elsewhere")));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let l = limiter(1, vec![]);
        assert!(allowed(l.check("2001:db8::1".parse().expect("ip"), "/")));
        assert!(!allowed(l.check("2001:db8::2".parse().expect("ip"), "/")));
        assert!(allowed(
            l.check("2001:db8:0:1::1".parse().expect("ip"), "/")
        ));
    }

    /// With the default sizing, 2,000 clients each using its whole limit in one window see
    /// no false 429 (expected false positives: about 3e-7 per run).
    #[test]
    fn many_distinct_clients_at_their_limit_are_never_limited() {
        let l = limiter(20, vec![]);
        for round in 0..20 {
            for i in 0..2_000u32 {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                assert!(
                    allowed(l.check(ip, "/")),
                    "client {ip} limited in round {round}"
                );
            }
        }
    }

    /// The sizing matters: the same load through pingora-limits' default-sized estimator
    /// (4 x 1024) does produce false 429s, which is why the gateway sizes its own.
    #[test]
    fn default_sized_estimator_would_over_count() {
        let l = RateLimiter::new(&RateLimitConfig {
            requests: 20,
            per: HumanDuration::secs(60),
            estimator_hashes: 4,
            estimator_slots: 1024,
            ..Default::default()
        });
        let mut limited = 0;
        for _ in 0..20 {
            for i in 0..2_000u32 {
                let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
                limited += usize::from(!allowed(l.check(ip, "/")));
            }
        }
        assert!(limited > 0);
    }
}
