//! The private admin listener (`metrics_listen`): Prometheus metrics and the probes with
//! every dependency's state. Its own module so that metrics, which the request path and the
//! session cache count into, never depend on health reporting.

use crate::health::{Health, Probe};
use crate::metrics::render;

/// The private listener: `GET /metrics` (Prometheus text), and `/livez`, `/readyz` and
/// `/health` with every dependency's state.
pub struct MetricsApp {
    health: Health,
}

impl MetricsApp {
    pub fn new(health: Health) -> Self {
        MetricsApp { health }
    }
}

#[async_trait::async_trait]
impl pingora::apps::http_app::ServeHttp for MetricsApp {
    async fn response(
        &self,
        session: &mut pingora::protocols::http::ServerSession,
    ) -> http::Response<Vec<u8>> {
        let (status, content_type, body) = match session.req_header().uri.path() {
            "/metrics" => {
                self.health.export_upstreams();
                (200, "text/plain; version=0.0.4", render().into_bytes())
            }
            path => match Probe::at(path) {
                Some(probe) => {
                    let report = self.health.report(probe, true).await;
                    (report.status, "application/json", report.body.to_vec())
                }
                None => (404, "text/plain", b"not found\n".to_vec()),
            },
        };
        http::Response::builder()
            .status(status)
            .header("content-type", content_type)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}
