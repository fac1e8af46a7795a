//! Traffic series: requests by route, method class and status class, request duration by
//! route, and upstream response time by upstream. Each route and upstream looks its series
//! up once when it is built (again on reload; same labels give the same series), so the
//! request path only bumps a counter it already holds. Label values are bounded by the
//! config: route labels are the configured `host` + `prefix`, methods outside the common
//! set count as `other`, statuses count by class.

use prometheus::{register_histogram_vec, register_int_counter_vec, Histogram, IntCounter};
use std::sync::{LazyLock, OnceLock};

/// The method classes of `authflow_gateway_http_requests_total`.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// Status classes; `none` when the client left before any response was written.
const STATUSES: [&str; 6] = ["1xx", "2xx", "3xx", "4xx", "5xx", "none"];

/// Request-duration buckets: from a cache-hit local answer to a slow upstream.
const DURATION_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The route label of requests that matched no route (404s, probes, early refusals).
pub const NO_ROUTE: &str = "none";

static REQUESTS: LazyLock<Option<prometheus::IntCounterVec>> = LazyLock::new(|| {
    register_int_counter_vec!(
        "authflow_gateway_http_requests_total",
        "Requests by route (host + prefix, or none), method class and status class",
        &["route", "method", "status"]
    )
    .ok()
});

static REQUEST_DURATION: LazyLock<Option<prometheus::HistogramVec>> = LazyLock::new(|| {
    register_histogram_vec!(
        "authflow_gateway_request_duration_seconds",
        "Time from the request's arrival to the end of its logging, by route",
        &["route"],
        DURATION_BUCKETS.to_vec()
    )
    .ok()
});

static UPSTREAM_DURATION: LazyLock<Option<prometheus::HistogramVec>> = LazyLock::new(|| {
    register_histogram_vec!(
        "authflow_gateway_upstream_response_seconds",
        "Time from choosing an upstream server to its response header (connect included), by upstream",
        &["upstream"],
        DURATION_BUCKETS.to_vec()
    )
    .ok()
});

/// One route's series. Counters are made on first use, so a route shows only the method
/// and status classes it has served.
pub struct RouteMetrics {
    label: String,
    requests: [OnceLock<Option<IntCounter>>; METHODS.len() * STATUSES.len()],
    duration: Option<Histogram>,
}

impl std::fmt::Debug for RouteMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteMetrics")
            .field("label", &self.label)
            .finish()
    }
}

impl RouteMetrics {
    /// The series of the route labelled `label`.
    pub fn new(label: String) -> Self {
        let duration = REQUEST_DURATION
            .as_ref()
            .map(|h| h.with_label_values(&[&label]));
        RouteMetrics {
            label,
            requests: std::array::from_fn(|_| OnceLock::new()),
            duration,
        }
    }

    /// The series of requests that matched no route.
    pub fn unrouted() -> &'static RouteMetrics {
        static UNROUTED: LazyLock<RouteMetrics> =
            LazyLock::new(|| RouteMetrics::new(NO_ROUTE.to_owned()));
        &UNROUTED
    }

    /// Counts one finished request (`status` 0: no response was written).
    pub fn observe(&self, method: &http::Method, status: u16, seconds: f64) {
        let (m, s) = (method_class(method), status_class(status));
        let cell = &self.requests[m * STATUSES.len() + s];
        let counter = cell.get_or_init(|| {
            REQUESTS
                .as_ref()
                .map(|v| v.with_label_values(&[&self.label, METHODS[m], STATUSES[s]]))
        });
        if let Some(c) = counter {
            c.inc();
        }
        if let Some(h) = &self.duration {
            h.observe(seconds);
        }
    }
}

/// The upstream-response histogram of `upstream`.
pub fn upstream_duration(upstream: &str) -> Option<Histogram> {
    UPSTREAM_DURATION
        .as_ref()
        .map(|h| h.with_label_values(&[upstream]))
}

/// The route label: `host` + `prefix` (`api.example.com/app/`), or the prefix alone.
pub fn route_label(host: Option<&str>, prefix: &str) -> String {
    match host {
        Some(h) => format!("{h}{prefix}"),
        None => prefix.to_owned(),
    }
}

fn method_class(method: &http::Method) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|m| *m == method.as_str())
        .unwrap_or(METHODS.len() - 1)
}

fn status_class(status: u16) -> usize {
    match status {
        100..=599 => usize::from(status / 100) - 1,
        _ => STATUSES.len() - 1,
    }
}

/// Registers the traffic families, so they exist from the first scrape.
pub fn register() {
    LazyLock::force(&REQUESTS);
    LazyLock::force(&REQUEST_DURATION);
    LazyLock::force(&UPSTREAM_DURATION);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_bounded() {
        assert_eq!(METHODS[method_class(&http::Method::GET)], "GET");
        assert_eq!(METHODS[method_class(&http::Method::DELETE)], "DELETE");
        let odd = http::Method::from_bytes(b"PROPFIND").unwrap();
        assert_eq!(METHODS[method_class(&odd)], "other");
        assert_eq!(STATUSES[status_class(204)], "2xx");
        assert_eq!(STATUSES[status_class(429)], "4xx");
        assert_eq!(STATUSES[status_class(599)], "5xx");
        assert_eq!(STATUSES[status_class(0)], "none");
        assert_eq!(STATUSES[status_class(600)], "none");
    }

    #[test]
    fn route_labels_name_host_and_prefix() {
        assert_eq!(
            route_label(Some("api.example.com"), "/app/"),
            "api.example.com/app/"
        );
        assert_eq!(route_label(None, "/"), "/");
    }
}
