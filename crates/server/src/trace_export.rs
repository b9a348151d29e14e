//! Span export over OTLP/HTTP (`tracing.provider: otel`): the exporter and
//! its batch, the hooks that tie request spans to a caller's trace, and the
//! reporting of a collector that is down.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::response::Response;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::Status;
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, Sampler, SdkTracerProvider, SpanData, SpanExporter,
    span_processor_with_async_runtime::BatchSpanProcessor,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TracingConfig;

/// Export batches at most this long; the last batch at shutdown too.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the span exporter could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("could not build the trace export client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("invalid configuration value at `tracing.providers.otlp`: {0}")]
    Exporter(#[source] opentelemetry_otlp::ExporterBuildError),
}

pub fn provider(config: &TracingConfig) -> Result<SdkTracerProvider, ExportError> {
    let otlp = &config.providers.otlp;
    let mut headers = std::collections::HashMap::new();
    if !otlp.authorization_header.is_empty() {
        headers.insert("authorization".to_string(), otlp.authorization_header.clone());
    }
    let client = reqwest::Client::builder()
        .connect_timeout(EXPORT_TIMEOUT)
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(ExportError::Client)?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(Client(client))
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(config.otlp_endpoint())
        .with_timeout(EXPORT_TIMEOUT)
        .with_headers(headers)
        .build()
        .map_err(ExportError::Exporter)?;
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

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A collector's answer is small; anything longer is cut off.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// reqwest 0.12 as the exporter's HTTP client.
#[derive(Debug)]
struct Client(reqwest::Client);

#[async_trait::async_trait]
impl HttpClient for Client {
    async fn send_bytes(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, HttpError> {
        let mut response = self.0.execute(request.try_into()?).await?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        }
        let mut answer = axum::http::Response::new(Bytes::from(body));
        *answer.status_mut() = response.status();
        *answer.headers_mut() = std::mem::take(response.headers_mut());
        Ok(answer)
    }
}
