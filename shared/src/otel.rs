//! Optional OTLP export of spans, for both services: a `tracing` layer that turns spans into
//! OpenTelemetry spans and sends them in batches over OTLP/HTTP (JSON) from a thread of its
//! own, so the request path only records. The batch processor is the SDK's own, started on
//! the first span (see [`LazyBatch`]). Also the bridge between a span and the W3C
//! context of [`crate::trace`]: a span continues a caller's trace, and a span's ids are what
//! the next hop is told.

use crate::config::TracingConfig;
use crate::trace::TraceContext;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanData, SpanProcessor};
use tracing_opentelemetry::OpenTelemetrySpanExt;

#[derive(Debug, thiserror::Error)]
#[error("tracing.otlp_endpoint: cannot build the OTLP exporter: {0}")]
pub struct ExportError(String);

/// The running exporter; dropping it flushes the spans still queued.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: spans not flushed at exit: {e}");
        }
    }
}

/// The layer that exports spans to `cfg`'s collector as `service` (unless
/// `cfg.service_name` says otherwise), and the exporter to keep alive; `None` without an
/// endpoint.
pub fn layer<S>(
    cfg: &TracingConfig,
    service: &str,
) -> Result<Option<(impl tracing_subscriber::Layer<S> + Send + Sync, Exporter)>, ExportError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    let Some(url) = cfg.traces_url() else {
        return Ok(None);
    };
    url.parse::<http::Uri>()
        .map_err(|e| ExportError(format!("{url}: {e}")))?;
    let name = cfg
        .service_name
        .clone()
        .unwrap_or_else(|| service.to_owned());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(name)
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(LazyBatch::new(url))
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("authflow");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Exporter { provider })))
}

/// The batch processor and its HTTP client, made when the first span ends rather than at
/// start: both run threads of their own, and the gateway's `--daemon` forks after start,
/// which would leave them behind in the parent.
#[derive(Debug)]
struct LazyBatch {
    url: String,
    resource: Option<opentelemetry_sdk::Resource>,
    started: std::sync::OnceLock<Option<BatchSpanProcessor>>,
}

impl LazyBatch {
    fn new(url: String) -> Self {
        LazyBatch {
            url,
            resource: None,
            started: std::sync::OnceLock::new(),
        }
    }

    /// The running processor; `None` when the exporter could not be built (logged once).
    fn get(&self) -> Option<&BatchSpanProcessor> {
        self.started
            .get_or_init(|| {
                let exporter = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpJson)
                    .with_endpoint(self.url.clone())
                    .with_timeout(std::time::Duration::from_secs(5))
                    .build();
                match exporter {
                    Ok(exporter) => {
                        let mut batch = BatchSpanProcessor::builder(exporter).build();
                        if let Some(r) = &self.resource {
                            batch.set_resource(r);
                        }
                        Some(batch)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "OTLP exporter not built: spans are not exported");
                        None
                    }
                }
            })
            .as_ref()
    }
}

impl SpanProcessor for LazyBatch {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if let Some(batch) = self.get() {
            batch.on_end(span);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match self.started.get() {
            Some(Some(batch)) => batch.force_flush(),
            _ => Ok(()),
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        match self.started.get() {
            Some(Some(batch)) => batch.shutdown_with_timeout(timeout),
            _ => Ok(()),
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = Some(resource.clone());
    }
}

/// Makes `span` a child of the caller's span in `parent` (same trace).
pub fn continue_trace(span: &tracing::Span, parent: &TraceContext) {
    let state = parent
        .state
        .as_deref()
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        TraceFlags::new(parent.flags),
        true,
        state,
    );
    let cx = opentelemetry::Context::new().with_remote_span_context(remote);
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = %e, "span could not continue the caller's trace");
    }
}

/// The ids `span` was given by the exporter, as the context to pass on; `None` when no
/// exporter records spans.
pub fn context_of(span: &tracing::Span) -> Option<TraceContext> {
    let cx = span.context();
    let otel = cx.span();
    let sc = otel.span_context();
    if !sc.is_valid() {
        return None;
    }
    let state = sc.trace_state().header();
    Some(TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        flags: sc.trace_flags().to_u8(),
        state: (!state.is_empty()).then_some(state),
    })
}
