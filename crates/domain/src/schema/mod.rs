//! Identity schemas: loading them from `identity.schemas`, checking them
//! against Kratos's rules at start, validating traits, and reading the
//! `ory.sh/kratos` extension that turns traits into identifiers and addresses.

mod extension;
mod meta;
mod registry;

pub use extension::{AddressRef, IdentifierTrait, TraitFacts, normalize};
pub use meta::SchemaProblem;
pub use registry::{IdentitySchema, ReadError, SchemaError, SchemaRegistry, SchemaSource};
