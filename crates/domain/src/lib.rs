//! Latchkey's domain: identities and their schemas, the self-service flows,
//! sessions, the courier's outbox and dispatcher, and the ports that storage
//! and mail implement. Nothing here knows about HTTP or SQL (CI checks the
//! dependency tree), so every rule is the same whichever adapter calls it.

pub mod aal;
pub mod cleanup;
pub mod courier;
pub mod email;
pub mod flow;
pub mod health;
pub mod identity;
pub mod metrics;
pub mod notice;
pub mod password_policy;
pub mod schema;
pub mod second_factor;
pub mod send_limits;
pub mod session;
pub mod session_cache;
pub mod session_service;
pub mod store;
pub mod text;
pub mod time;
pub mod ui;

/// Text that names none of an enumeration's values (a stored column, a
/// query parameter): which enumeration, and the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

impl UnknownValue {
    pub fn new(what: &'static str, value: &str) -> Self {
        Self { what, value: value.to_string() }
    }
}

pub use identity::{Identity, IdentityError, IdentityManager};
pub use schema::{SchemaError, SchemaRegistry};
pub use store::{Store, StoreError};
