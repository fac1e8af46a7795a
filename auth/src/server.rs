//! Serves the service (built by [`crate::build`]) over HTTP/1.1 with hyper,
//! finishing in-flight requests on shutdown.

use crate::api::Api;
use crate::config::AuthConfig;
use crate::http::{uncached, ApiRequest, HttpResponse};
use arc_swap::ArcSwap;
use authflow_shared::otel;
use authflow_shared::trace::{self, TraceContext};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::Instrument;

pub use crate::build::{api_from_config, pages_from_config, users_from_config, StartError};

/// Serves `api` on `listen` until `shutdown` completes, then lets in-flight requests finish
/// (up to `grace`).
pub async fn serve(
    api: Arc<ArcSwap<Api>>,
    listen: &str,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<(), StartError> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| StartError::Listen(listen.to_owned(), e))?;
    serve_listener(api, listener, shutdown, grace).await;
    Ok(())
}

pub async fn serve_listener(
    api: Arc<ArcSwap<Api>>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let api = api.clone();
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(stream), service_fn(move |req| handle(api.clone(), req, peer)));
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
}

/// One request, served by the API in force when it arrived (a reload swaps it).
async fn handle(
    api: Arc<ArcSwap<Api>>,
    req: hyper::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Result<HttpResponse, std::convert::Infallible> {
    let api = api.load_full();
    let span = request_span(req.method(), req.headers(), req.uri().path());
    let response = async {
        match ApiRequest::read(req, peer).await {
            Ok(r) => api.handle(&r).await,
            Err(e) => crate::error::ApiError::from(e).response(),
        }
    };
    Ok(response.instrument(span).await)
}

/// The span every log line of a request is written in: its request id and the trace it
/// belongs to (the gateway's `traceparent`; a new trace when called directly), so the auth
/// service's lines join the gateway's access-log line of the same request.
fn request_span(method: &http::Method, headers: &http::HeaderMap, path: &str) -> tracing::Span {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let incoming = header(trace::TRACEPARENT)
        .and_then(|tp| TraceContext::parse(tp, header(trace::TRACESTATE)));
    let request_id = header("x-request-id")
        .filter(|id| id.len() <= 64 && id.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("-");
    // Every field that carries what the client sent is recorded as a string, never with
    // `%` (Display): the text log then quotes and escapes it, as the JSON log does, so a
    // path like `/x"user="admin` cannot forge a field of its own in the line.
    let name = format!("{method} {path}");
    let span = tracing::info_span!(
        "request",
        otel.name = name.as_str(),
        otel.kind = "server",
        request_id = request_id,
        trace_id = tracing::field::Empty,
        path = path,
    );
    if let Some(parent) = &incoming {
        otel::continue_trace(&span, parent);
    }
    // The exported span's trace when spans are exported, else the caller's or a new one.
    let trace = otel::context_of(&span)
        .or(incoming)
        .unwrap_or_else(TraceContext::start);
    span.record("trace_id", trace.trace_id_hex());
    span
}

/// Runs the service until Ctrl-C or SIGTERM, with its metrics listener when configured,
/// reloading `config_path` on `SIGHUP` when given.
pub async fn run(
    cfg: &AuthConfig,
    config_path: Option<&std::path::Path>,
) -> Result<(), StartError> {
    let api = Arc::new(api_from_config(cfg).await?);
    crate::metrics::register_all();
    if let Some(addr) = &cfg.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| StartError::Listen(addr.clone(), e))?;
        let active = crate::metrics::ActiveSessions::new(api.accounts.sessions.store.clone());
        tokio::spawn(serve_metrics(listener, Arc::new(active)));
    }
    tracing::info!(listen = %cfg.listen, provider = api.provider_name(), "auth service starting");
    let api = Arc::new(ArcSwap::new(api));
    if let Some(path) = config_path {
        tokio::spawn(
            crate::reload::Reloader {
                path: path.to_path_buf(),
                started: cfg.clone(),
                api: api.clone(),
            }
            .run(),
        );
    }
    serve(api, &cfg.listen, shutdown_signal(), Duration::from_secs(10)).await
}

/// The private listener: `GET /metrics` in Prometheus text format, nothing else.
pub async fn serve_metrics(listener: TcpListener, active: Arc<crate::metrics::ActiveSessions>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let active = active.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let active = active.clone();
            async move {
                let resp = if req.uri().path() == "/metrics" {
                    active.refresh().await;
                    uncached(
                        200,
                        Some("text/plain; version=0.0.4"),
                        crate::metrics::render().into(),
                    )
                } else {
                    uncached(404, Some("text/plain"), "not found\n".into())
                };
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
