//! The global subscriber: logging (`log.level` and `log.format`,
//! overridable with `RUST_LOG`) and, with `tracing.provider: otel`, the
//! layer that hands spans to the exporter (`trace_export`). Without a
//! provider that layer is not installed at all.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{Log, LogFormat, LogLevel, TracingConfig};

/// Our crates at the configured level; dependencies only from `warn`.
/// Kratos's level names (logrus's) map onto tracing's.
pub fn default_filter(level: LogLevel) -> String {
    let level = level.filter();
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
pub fn init(
    log: &Log,
    tracing_config: &TracingConfig,
) -> Result<Telemetry, crate::trace_export::ExportError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(log.level)));
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
    let provider = crate::trace_export::provider(tracing_config)?;
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
