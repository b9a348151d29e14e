//! HTTP-level tests: each starts the whole server on random ports, on a
//! fresh SQLite file or a fresh PostgreSQL database, and drives it as a
//! client would.

mod helpers;

mod aal;
mod attacks;
mod browser;
mod cleanup;
mod code_lockout;
mod code_login;
mod code_races;
mod code_registration;
mod code_requests;
mod config;
mod cors;
mod courier;
mod elements;
mod error_flow;
mod errors;
mod health;
mod hostile;
mod identities;
mod import;
mod login_failures;
mod login_throttling;
mod logs;
mod metrics;
mod native;
mod notices;
mod pages;
mod parity;
mod recovery;
mod refused;
mod rehash;
mod reload;
mod return_to;
mod review_findings;
mod revocation;
mod second_factors;
mod send_limits;
mod sessions;
mod settings;
mod several_servers;
mod startup;
mod step_up;
mod tracing_export;
mod verification;
