//! Logging set-up (`log.level` and `log.format`, overridable with
//! `RUST_LOG`) and, with `tracing.provider: otel`, span export over
//! OTLP/HTTP. Without a provider no exporter layer is installed at all.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Status, TracerProvider as _};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    span_processor_with_async_runtime::BatchSpanProcessor,
};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Log, LogFormat, TracingConfig};

/// Our crates at the configured level; dependencies only from `warn`.
/// Kratos's level names (logrus's) map onto tracing's.
pub fn default_filter(level: &str) -> String {
    let level = match level {
        "warning" => "warn",
        "fatal" | "panic" => "error",
        other => other,
    };
    let ours = ["latchkey", "latchkey_http", "latchkey_domain", "latchkey_hash", "latchkey_courier"];
    let mut filter = String::from("warn");
    for target in ours {
        filter.push_str(&format!(",{target}={level}"));
    }
    filter
}

/// Holds the span exporter, if any, until the process stops.
#[must_use = "dropping the guard does not flush; call shutdown"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (bounded by the export timeout) and
    /// stops the exporter.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        // The SDK blocks the calling thread while the runtime exports.
        let result = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(e)) = result {
            tracing::warn!(error = %e, "could not send the last spans to the trace collector");
        }
    }
}

/// Installs the global subscriber: the log output, and the span exporter
/// when `tracing.provider` is `otel`. Must run inside the tokio runtime.
pub fn init(log: &Log, tracing_config: &TracingConfig) -> Result<Telemetry, String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(&log.level)));
    let ansi = std::io::stderr().is_terminal();
    if !tracing_config.exports() {
        // Colour codes only for a person at a terminal, never into files or collectors.
        let builder =
            tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
        let _ = match log.format {
            // One JSON object per line; `spans` lists every open span, so a line
            // logged inside a store or hash call still names its request.
            LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
            LogFormat::Text => builder.try_init(),
        };
        return Ok(Telemetry { provider: None });
    }
    let provider = provider(tracing_config)?;
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().with_current_span(true).with_span_list(true).boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    // Each output has its own filter: the log keeps log.level while the
    // exporter sees the debug-level store and hash spans.
    let export = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("latchkey"))
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(export_filter());
    let _ = tracing_subscriber::registry().with(fmt.with_filter(filter)).with(export).try_init();
    tracing::info!(endpoint = %tracing_config.otlp_endpoint(), "exporting traces over OTLP/HTTP");
    Ok(Telemetry { provider: Some(provider) })
}

/// Which spans and events are exported: request spans (not the probes and
/// scrapes, which are at debug) and the courier's sends are roots; every
/// span and every warning or error inside one is exported with it, and
/// nothing outside one (the courier polling its outbox, say).
fn export_filter<S>() -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::filter::dynamic_filter_fn(|meta: &Metadata<'_>, cx: &Context<'_, S>| {
        (meta.is_span() && *meta.level() <= Level::INFO) || cx.lookup_current().is_some()
    })
    .with_callsite_filter(|meta: &'static Metadata<'static>| {
        let ours = meta.target().starts_with("latchkey");
        let wanted =
            if meta.is_span() { *meta.level() <= Level::DEBUG } else { *meta.level() <= Level::WARN };
        if ours && wanted { Interest::sometimes() } else { Interest::never() }
    })
}

/// Export batches at most this long; the last batch at shutdown too.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

fn provider(config: &TracingConfig) -> Result<SdkTracerProvider, String> {
    let otlp = &config.providers.otlp;
    let mut headers = std::collections::HashMap::new();
    if !otlp.authorization_header.is_empty() {
        headers.insert("authorization".to_string(), otlp.authorization_header.clone());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(EXPORT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("could not build the trace export client: {e}"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.otlp_endpoint())
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers)
        .build()
        .map_err(|e| format!("invalid configuration value at `tracing.providers.otlp`: {e}"))?;
    // Spans wait in a bounded queue and leave in batches from a runtime
    // task: a slow or absent collector costs requests nothing; spans
    // beyond the queue are dropped.
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(4096)
        .with_scheduled_delay(Duration::from_secs(2))
        .build();
    let processor = BatchSpanProcessor::builder(Reporting::new(exporter), opentelemetry_sdk::runtime::Tokio)
        .with_batch_config(batch)
        .build();
    let mut resource = Resource::builder().with_service_name(config.service_name().to_string());
    if !config.deployment_environment.is_empty() {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "deployment.environment.name",
            config.deployment_environment.clone(),
        ));
    }
    // Follow the caller's decision when a `traceparent` carries one.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
        config.providers.otlp.sampling.sampling_ratio,
    )));
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler)
        .with_resource(resource.build())
        .build())
}

/// Connects request spans to the exporter: the caller's W3C `traceparent`
/// becomes the parent, and the HTTP semantic-convention attributes are set
/// from the route template and status (never the raw path or query).
pub const SPAN_HOOKS: latchkey_http::SpanHooks =
    latchkey_http::SpanHooks { on_request: on_request_span, on_response: on_response_span };

fn on_request_span(request: &Request, span: &Span) {
    let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
    // Fails only when the span is not exported (filtered out).
    let _ = span.set_parent(parent);
    span.set_attribute("http.request.method", request.method().as_str().to_string());
    if let Some(route) = request.extensions().get::<axum::extract::MatchedPath>() {
        span.set_attribute("http.route", route.as_str().to_string());
    }
}

fn on_response_span(response: &Response, span: &Span) {
    let status = response.status();
    span.set_attribute("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.set_status(Status::error(status.to_string()));
    }
}

/// `traceparent` and `tracestate` from the request headers.
struct HeaderExtractor<'a>(&'a axum::http::HeaderMap);

impl opentelemetry::propagation::Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// How often a failing collector is reported.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// Reports export failures as warnings, at most one a minute with the
/// count of batches lost meanwhile, and says when exports work again.
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    failures: Mutex<Failures>,
}

#[derive(Debug, Default)]
struct Failures {
    last_report: Option<Instant>,
    unreported: u64,
    failing: bool,
}

impl<E> Reporting<E> {
    fn new(inner: E) -> Self {
        Self { inner, failures: Mutex::new(Failures::default()) }
    }

    fn note(&self, result: &OTelSdkResult, spans: usize) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) if f.failing => {
                *f = Failures::default();
                tracing::info!("trace export works again");
            }
            Ok(()) => {}
            Err(e) => {
                f.failing = true;
                f.unreported += 1;
                if f.last_report.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    tracing::warn!(
                        error = %e,
                        spans,
                        failed_batches = f.unreported,
                        "could not send spans to the trace collector; they are dropped \
                         (reported at most once a minute)"
                    );
                    f.last_report = Some(Instant::now());
                    f.unreported = 0;
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.note(&result, spans);
        result
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
