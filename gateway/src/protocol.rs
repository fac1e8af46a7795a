//! The protocol a request arrived in, for the access log and metrics.

use pingora::proxy::Session;
use prometheus::IntCounter;
use std::sync::LazyLock;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    H1 = 0,
    H2 = 1,
    /// An `Upgrade: websocket` request (over HTTP/1.1).
    WebSocket = 2,
    /// `application/grpc*`, in either HTTP version.
    Grpc = 3,
}

impl Protocol {
    pub const ALL: [Protocol; 4] = [
        Protocol::H1,
        Protocol::H2,
        Protocol::WebSocket,
        Protocol::Grpc,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::H1 => "h1",
            Protocol::H2 => "h2",
            Protocol::WebSocket => "ws",
            Protocol::Grpc => "grpc",
        }
    }

    /// What `session`'s request is.
    pub fn of(session: &Session) -> Protocol {
        let req = session.req_header();
        if crate::grpc::is_grpc(req) {
            Protocol::Grpc
        } else if session.is_http2() {
            Protocol::H2
        } else if req.headers.contains_key(http::header::UPGRADE)
            && crate::message::upgrade(&req.headers) == crate::message::Upgrade::WebSocket
        {
            Protocol::WebSocket
        } else {
            Protocol::H1
        }
    }
}

/// `authflow_gateway_requests_by_protocol_total{protocol}`, one counter each, made up front.
static REQUESTS: LazyLock<Option<Vec<IntCounter>>> = LazyLock::new(|| {
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

/// Registers the series, so that each exists from the first scrape.
pub fn register_metrics() {
    LazyLock::force(&REQUESTS);
}

/// Counts a request that arrived in `protocol`.
pub fn count(protocol: Protocol) {
    if let Some(c) = REQUESTS.as_ref().and_then(|all| all.get(protocol as usize)) {
        c.inc();
    }
}
