//! Prometheus metrics of the request path, served with the detailed `/health` on the private
//! `metrics_listen` listener when configured.

pub mod traffic;

use crate::decision::Decision;
use prometheus::{register_histogram, register_int_counter_vec, Histogram, IntCounter};
use std::sync::LazyLock;

/// Requests by the gateway's decision (`forwarded`, `rate_limited`, `unauthenticated`, ...):
/// one counter per [`Decision`], registered up front so the request path does no label lookup
/// and every series exists from the first scrape.
static DECISIONS: LazyLock<Option<Vec<IntCounter>>> = LazyLock::new(|| {
    let vec = register_int_counter_vec!(
        "authflow_gateway_requests_total",
        "Requests by gateway decision",
        &["decision"]
    )
    .ok()?;
    Some(
        Decision::ALL
            .iter()
            .map(|d| vec.with_label_values(&[d.as_str()]))
            .collect(),
    )
});

/// Time spent in the session store lookup.
pub static SESSION_LOOKUP: LazyLock<Option<Histogram>> = LazyLock::new(|| {
    register_histogram!(
        "authflow_gateway_session_lookup_seconds",
        "Session store lookup latency",
        vec![0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1]
    )
    .ok()
});

/// Session cache lookups by outcome: `hit`, `miss` (read from Redis and kept), `bypass`
/// (cache off or its feed down: read from Redis, not kept).
static CACHE_LOOKUPS: LazyLock<Option<[IntCounter; 3]>> = LazyLock::new(|| {
    let vec = register_int_counter_vec!(
        "authflow_gateway_session_cache_lookups_total",
        "Session cache lookups by outcome",
        &["outcome"]
    )
    .ok()?;
    Some(["hit", "miss", "bypass"].map(|o| vec.with_label_values(&[o])))
});

/// Invalidations received from Redis, and full flushes (connection lost or regained).
static CACHE_EVENTS: LazyLock<Option<[IntCounter; 2]>> = LazyLock::new(|| {
    let vec = register_int_counter_vec!(
        "authflow_gateway_session_cache_events_total",
        "Session cache invalidations and flushes",
        &["event"]
    )
    .ok()?;
    Some(["invalidation", "flush"].map(|o| vec.with_label_values(&[o])))
});

/// 1 while the session cache is served (its tracking connection is up).
static CACHE_LIVE: LazyLock<Option<prometheus::IntGauge>> = LazyLock::new(|| {
    prometheus::register_int_gauge!(
        "authflow_gateway_session_cache_live",
        "1 while the session cache is kept coherent by Redis client tracking"
    )
    .ok()
});

/// Session checks by outcome (`ok`, `missing`, `unknown`, `expired_idle`, ...,
/// `store_error`: see `crate::session::outcome`).
static SESSION_CHECKS: LazyLock<Option<prometheus::IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "authflow_gateway_session_checks_total",
        "Session checks on protected routes and forward-auth, by outcome",
        &["outcome"]
    )
    .ok()
});

/// Creates the session-check series of every outcome, so each exists from the first scrape.
pub fn register_session_outcomes<'a>(outcomes: impl IntoIterator<Item = &'a str>) {
    if let Some(v) = SESSION_CHECKS.as_ref() {
        for o in outcomes {
            v.with_label_values(&[o]);
        }
    }
}

/// Counts one session check by its outcome label.
pub fn session_checked(outcome: &str) {
    if let Some(v) = SESSION_CHECKS.as_ref() {
        v.with_label_values(&[outcome]).inc();
    }
}

/// How a session was found.
#[derive(Debug, Clone, Copy)]
pub enum CacheOutcome {
    Hit = 0,
    Miss = 1,
    Bypass = 2,
}

pub fn cache_lookup(outcome: CacheOutcome) {
    if let Some(c) = CACHE_LOOKUPS.as_ref() {
        c[outcome as usize].inc();
    }
}

pub fn cache_invalidated() {
    if let Some(c) = CACHE_EVENTS.as_ref() {
        c[0].inc();
    }
}

pub fn cache_reset(live: bool) {
    if let Some(c) = CACHE_EVENTS.as_ref() {
        c[1].inc();
    }
    if let Some(g) = CACHE_LIVE.as_ref() {
        g.set(i64::from(live));
    }
}

pub fn count(decision: Decision) {
    if let Some(c) = DECISIONS.as_ref().and_then(|all| all.get(decision.index())) {
        c.inc();
    }
}

pub fn observe_lookup(seconds: f64) {
    if let Some(h) = SESSION_LOOKUP.as_ref() {
        h.observe(seconds);
    }
}

pub use authflow_shared::metrics::render;

/// Rate-limit decisions by rule and result.
static RATE_DECISIONS: LazyLock<Option<prometheus::IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "authflow_gateway_rate_limit_decisions_total",
        "Rate-limit rule decisions: allowed, limited, shadow_limited (would have been limited), exempt",
        &["rule", "result"]
    )
    .ok()
});

/// Shared (`scope = "global"`) decisions taken locally because Redis could not answer.
static RATE_FALLBACKS: LazyLock<Option<prometheus::IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "authflow_gateway_rate_limit_fallbacks_total",
        "Shared rate-limit decisions taken with local counters because Redis was unreachable",
        &["rule"]
    )
    .ok()
});

/// One rule's counters, looked up once when the rule is built.
#[derive(Clone)]
pub struct RuleCounters {
    pub allowed: IntCounter,
    pub limited: IntCounter,
    pub shadow_limited: IntCounter,
    pub exempt: IntCounter,
    pub fallback: IntCounter,
}

impl RuleCounters {
    pub fn for_rule(rule: &str) -> Option<Self> {
        let d = RATE_DECISIONS.as_ref()?;
        let f = RATE_FALLBACKS.as_ref()?;
        let c = |result: &str| d.with_label_values(&[rule, result]);
        Some(RuleCounters {
            allowed: c("allowed"),
            limited: c("limited"),
            shadow_limited: c("shadow_limited"),
            exempt: c("exempt"),
            fallback: f.with_label_values(&[rule]),
        })
    }
}

/// Config reloads by result, and the time of the last good one.
static RELOADS: LazyLock<Option<(IntCounter, IntCounter, prometheus::IntGauge)>> =
    LazyLock::new(|| {
        let vec = register_int_counter_vec!(
            "authflow_gateway_config_reloads_total",
            "Config reloads by result (ok, error: the running config stayed)",
            &["result"]
        )
        .ok()?;
        let last = prometheus::register_int_gauge!(
            "authflow_gateway_config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful reload (or of the start)"
        )
        .ok()?;
        last.set((authflow_shared::now_ms() / 1000) as i64);
        Some((
            vec.with_label_values(&["ok"]),
            vec.with_label_values(&["error"]),
            last,
        ))
    });

pub fn register_reloads() {
    LazyLock::force(&RELOADS);
}

pub fn reloaded(ok: bool) {
    if let Some((good, bad, last)) = RELOADS.as_ref() {
        if ok {
            good.inc();
            last.set((authflow_shared::now_ms() / 1000) as i64);
        } else {
            bad.inc();
        }
    }
}

/// `authflow_gateway_config_info{hash} 1` for the config in force (the hash changes with
/// each successful reload).
static CONFIG_INFO: LazyLock<Option<prometheus::IntGaugeVec>> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "authflow_gateway_config_info",
        "The config in force: its hash (first 12 hex digits of SHA-256 of the file)",
        &["hash"]
    )
    .ok()
});

/// Registers the request-path families, so that every one exists from the first scrape.
pub fn register_all() {
    LazyLock::force(&DECISIONS);
    LazyLock::force(&SESSION_LOOKUP);
    LazyLock::force(&CACHE_LOOKUPS);
    LazyLock::force(&CACHE_EVENTS);
    LazyLock::force(&CACHE_LIVE);
    LazyLock::force(&SESSION_CHECKS);
    traffic::register();
    LazyLock::force(&UPSTREAM_SERVER_UP);
    authflow_shared::metrics::build_info();
}

/// Marks `hash` as the config in force.
pub fn config_in_force(hash: &str) {
    if let Some(g) = CONFIG_INFO.as_ref() {
        g.reset();
        g.with_label_values(&[hash]).set(1);
    }
}

/// 1 for each upstream server in rotation, 0 for one marked down (by the active or the
/// passive check).
static UPSTREAM_SERVER_UP: LazyLock<Option<prometheus::IntGaugeVec>> = LazyLock::new(|| {
    prometheus::register_int_gauge_vec!(
        "authflow_gateway_upstream_server_up",
        "1 when an upstream server is in rotation, 0 when a health check or live traffic took it out",
        &["upstream", "server"]
    )
    .ok()
});

/// Replaces the upstream server gauges with `servers` (upstream, address, up).
pub fn upstream_servers<'a>(servers: impl Iterator<Item = (&'a str, String, bool)>) {
    if let Some(g) = UPSTREAM_SERVER_UP.as_ref() {
        g.reset();
        for (upstream, server, up) in servers {
            g.with_label_values(&[upstream, &server]).set(i64::from(up));
        }
    }
}
