//! The part of the config that a reload replaces whole ([`crate::reload`]): routes and the
//! upstreams they name, rate-limit rules, trusted proxies, identity header rules, and how
//! sessions are judged. A request works with the policy it started with
//! (`RequestCtx::policy`), never a mix of two.

use crate::config::{AuthMode, GatewayConfig};
use crate::rate_limit::RateLimiter;
use crate::route::Router;
use crate::session::SessionRules;
use crate::upstream::Upstream;
use authflow_shared::cookie::CookieSpec;
use authflow_shared::fingerprint::FingerprintSpec;
use authflow_shared::store::SharedLimits;
use ipnet::IpNet;
use std::sync::Arc;

pub struct Policy {
    pub trusted_proxies: Vec<IpNet>,
    pub limiter: RateLimiter,
    pub router: Router,
    /// The upstreams routes point into (by index).
    pub upstreams: Vec<Upstream>,
    pub strip_headers: Vec<String>,
    pub session: SessionPolicy,
    /// Whether a route is protected (else Redis does not decide readiness).
    pub needs_store: bool,
}

/// How sessions are read and judged.
pub struct SessionPolicy {
    pub rules: SessionRules,
    pub cookie: CookieSpec,
    pub fingerprint: FingerprintSpec,
    pub login_url: String,
    /// Where browsers go for a second factor a route demands.
    pub mfa_url: String,
}

impl Policy {
    /// The policy of `cfg` over `upstreams` (built from `cfg.upstreams`, in that order);
    /// rate-limit rules unchanged from `previous` keep their counters.
    pub fn new(
        cfg: &GatewayConfig,
        upstreams: Vec<Upstream>,
        shared_limits: Option<Arc<dyn SharedLimits>>,
        previous: Option<&Policy>,
    ) -> Self {
        let router = Router::new(&cfg.routes, cfg.limits.max_body_bytes, |name| {
            upstreams.iter().position(|u| u.name == name)
        });
        Policy {
            trusted_proxies: cfg.trusted_proxies.clone(),
            limiter: RateLimiter::carrying_over(
                &cfg.rate_limit,
                shared_limits,
                previous.map(|p| &p.limiter),
            ),
            router,
            upstreams,
            strip_headers: cfg
                .identity
                .strip_headers
                .iter()
                .map(|h| h.to_ascii_lowercase().replace('_', "-"))
                .collect(),
            session: SessionPolicy {
                rules: SessionRules::new(&cfg.session, &cfg.session_check),
                cookie: cfg.session.cookie(),
                fingerprint: cfg.session.fingerprint.clone(),
                login_url: cfg.session_check.login_url.clone(),
                mfa_url: cfg.session_check.mfa_url.clone(),
            },
            needs_store: cfg.routes.iter().any(|r| r.auth == AuthMode::Required),
        }
    }
}
