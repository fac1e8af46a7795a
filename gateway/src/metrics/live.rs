//! Metrics of the protocols requests arrive in and of the long-lived connections closed
//! with their session ([`crate::live`]).

use crate::live::{CloseReason, LiveKind};
use crate::protocol::Protocol;
use prometheus::{IntCounter, IntGauge};
use std::sync::LazyLock;

/// Requests by protocol (`h1`, `h2`, `ws`, `grpc`), one counter each, made up front.
static PROTOCOLS: LazyLock<Option<Vec<IntCounter>>> = LazyLock::new(|| {
    let vec = prometheus::register_int_counter_vec!(
        "authflow_gateway_requests_by_protocol_total",
        "Requests by protocol: h1, h2, ws (WebSocket upgrade), grpc",
        &["protocol"]
    )
    .ok()?;
    Some(
        Protocol::ALL
            .iter()
            .map(|p| vec.with_label_values(&[p.as_str()]))
            .collect(),
    )
});

static LIVE: LazyLock<Option<Vec<IntGauge>>> = LazyLock::new(|| {
    let vec = prometheus::register_int_gauge_vec!(
        "authflow_gateway_live_connections",
        "Open long-lived connections watched for their session's end, by kind (ws, sse)",
        &["kind"]
    )
    .ok()?;
    Some(
        LiveKind::ALL
            .iter()
            .map(|k| vec.with_label_values(&[k.as_str()]))
            .collect(),
    )
});

static CLOSED: LazyLock<Option<Vec<IntCounter>>> = LazyLock::new(|| {
    let vec = prometheus::register_int_counter_vec!(
        "authflow_gateway_live_connections_closed_total",
        "Long-lived connections the gateway closed because their session ended, by reason",
        &["reason"]
    )
    .ok()?;
    Some(
        CloseReason::ALL
            .iter()
            .map(|r| vec.with_label_values(&[r.as_str()]))
            .collect(),
    )
});

pub fn register() {
    LazyLock::force(&PROTOCOLS);
    LazyLock::force(&LIVE);
    LazyLock::force(&CLOSED);
}

pub fn protocol(p: Protocol) {
    if let Some(c) = PROTOCOLS.as_ref().and_then(|all| all.get(p as usize)) {
        c.inc();
    }
}

pub fn opened(kind: LiveKind) {
    if let Some(g) = LIVE.as_ref().and_then(|all| all.get(kind as usize)) {
        g.inc();
    }
}

pub fn ended(kind: LiveKind) {
    if let Some(g) = LIVE.as_ref().and_then(|all| all.get(kind as usize)) {
        g.dec();
    }
}

pub fn closed(reason: CloseReason) {
    if let Some(c) = CLOSED.as_ref().and_then(|all| all.get(reason as usize)) {
        c.inc();
    }
}
