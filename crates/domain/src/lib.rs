//! Latchkey's domain: identities, identity schemas and the ports that storage
//! implements. Nothing here knows about HTTP or SQL, so every rule can be
//! exercised by the store contract tests and the HTTP tests alike.

pub mod cleanup;
pub mod courier;
pub mod email;
pub mod flow;
pub mod identity;
pub mod metrics;
pub mod notice;
pub mod password_policy;
pub mod schema;
pub mod send_limits;
pub mod session;
pub mod session_cache;
pub mod store;
pub mod text;
pub mod time;
pub mod ui;

pub use identity::{Identity, IdentityError, IdentityManager};
pub use schema::{SchemaError, SchemaRegistry};
pub use store::{Store, StoreError};
