//! An OTLP/HTTP receiver: accepts `POST /v1/traces` with JSON bodies (the OTLP/JSON
//! encoding the services export with) and keeps every span it was sent, as a collector would.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};

/// One received span, flattened from its resource and scope.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
}

pub struct OtlpReceiver {
    pub port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
    task: tokio::task::JoinHandle<()>,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let kept = kept.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| receive(kept.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        OtlpReceiver { port, spans, task }
    }

    /// The endpoint to configure (`/v1/traces` is appended by the services).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The spans of `trace_id` received so far.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans
            .lock()
            .map(|s| {
                s.iter()
                    .filter(|s| s.trace_id == trace_id)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    spans: Arc<Mutex<Vec<Span>>>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, std::convert::Infallible> {
    let path_ok = req.uri().path() == "/v1/traces" && req.method() == hyper::Method::POST;
    let json_body = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let status = match (path_ok, json_body, body) {
        (true, true, Ok(body)) => match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(v) => {
                if let Ok(mut all) = spans.lock() {
                    all.extend(flatten(&v));
                }
                200
            }
            Err(_) => 400,
        },
        _ => 400,
    };
    Ok(hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("response"))
}

/// The spans of an `ExportTraceServiceRequest` in OTLP/JSON.
fn flatten(v: &serde_json::Value) -> Vec<Span> {
    let mut out = Vec::new();
    let empty = vec![];
    for rs in v["resourceSpans"].as_array().unwrap_or(&empty) {
        let service = rs["resource"]["attributes"]
            .as_array()
            .unwrap_or(&empty)
            .iter()
            .find(|a| a["key"] == "service.name")
            .and_then(|a| a["value"]["stringValue"].as_str())
            .unwrap_or_default()
            .to_owned();
        for ss in rs["scopeSpans"].as_array().unwrap_or(&empty) {
            for s in ss["spans"].as_array().unwrap_or(&empty) {
                let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                out.push(Span {
                    service: service.clone(),
                    name: text("name"),
                    trace_id: text("traceId").to_ascii_lowercase(),
                    span_id: text("spanId").to_ascii_lowercase(),
                    parent_span_id: text("parentSpanId").to_ascii_lowercase(),
                });
            }
        }
    }
    out
}
