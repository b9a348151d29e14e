//! Logging set-up: `log.level` and `log.format` from the configuration,
//! overridable with `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

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

pub fn init(log: &Log) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter(&log.level)));
    // Colour codes only for a person at a terminal, never into files or collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match log.format {
        // One JSON object per line; `spans` lists every open span, so a line
        // logged inside a store or hash call still names its request.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
