//! The `latchkey` binary's library: configuration, start-up and the CLI,
//! exposed so the HTTP tests can start the whole server in-process.

pub mod cli;
pub mod config;
pub mod import;
pub mod reload;
pub mod serve;
pub mod startup;
pub mod telemetry;
pub mod trace_export;
pub mod watch;
