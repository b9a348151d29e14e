//! The storage ports. Each database crate implements [`Store`]; the domain
//! only ever calls these units of work, so it never handles transactions and
//! nothing is left half-written when a step fails.

use async_trait::async_trait;
use uuid::Uuid;

use crate::identity::{CredentialType, Identity};

/// What can go wrong in storage, in terms the domain can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique identifier, address or external id is already taken.
    #[error("conflicts with an existing record: {0}")]
    Conflict(String),
    #[error("record not found")]
    NotFound,
    /// The database failed; the text is for logs, never for clients.
    #[error("database error: {0}")]
    Backend(String),
}

/// A page request over identities, ordered by id (keyset pagination).
#[derive(Debug, Clone, Default)]
pub struct IdentityQuery {
    /// Return identities whose id sorts after this one.
    pub after: Option<Uuid>,
    pub limit: u32,
    /// Only the identity holding this exact credential identifier.
    pub credentials_identifier: Option<String>,
    /// Only these identities.
    pub ids: Vec<Uuid>,
}

/// One applied or pending migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Inserts the identity with its credentials and addresses in one transaction.
    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError>;
    /// Replaces the identity row and all its credentials and addresses.
    async fn update_identity(&self, identity: &Identity) -> Result<(), StoreError>;
    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError>;
    /// Returns false when there was nothing to delete.
    async fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError>;
    async fn list_identities(&self, query: &IdentityQuery) -> Result<Vec<Identity>, StoreError>;
    async fn find_identity_by_identifier(
        &self,
        kind: CredentialType,
        identifier: &str,
    ) -> Result<Option<Identity>, StoreError>;
}

/// Schema management and health, shared by every backend.
#[async_trait]
pub trait Database: Send + Sync {
    /// Applies every pending migration.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Every migration this build knows, and whether it is applied.
    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError>;
    /// Cheap round trip used by `/health/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pool, letting in-flight queries finish.
    async fn close(&self);
}

/// Everything Latchkey persists, as one handle for wiring.
pub trait Store: IdentityStore + Database {}
impl<T: IdentityStore + Database> Store for T {}
