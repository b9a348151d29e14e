//! Logging set-up: `log.level` and `log.format` from the configuration,
//! overridable with `RUST_LOG`.

use tracing_subscriber::EnvFilter;

use crate::config::{Log, LogFormat};

pub fn init(log: &Log) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // Our crates at the configured level; chatty dependencies one step quieter.
        EnvFilter::new(format!("warn,latchkey={0},latchkey_http={0},latchkey_domain={0}", log.level))
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
