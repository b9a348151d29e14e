//! What operators ask of a running server besides its flows: whether the
//! database answers (readiness), and the readings a metrics scrape reports
//! (the courier's queue, pending code requests, the connection pool).

use std::sync::Arc;

use crate::store::{PoolUsage, Store, StoreError, Unsent};

#[derive(Clone)]
pub struct Health {
    store: Arc<dyn Store>,
}

impl Health {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// A round trip to the database.
    pub async fn check_database(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Messages waiting in the outbox, by state.
    pub async fn unsent(&self) -> Result<Unsent, StoreError> {
        self.store.count_unsent().await
    }

    /// Code requests not yet served (see `flow::code_requests`).
    pub async fn code_requests_pending(&self) -> Result<u64, StoreError> {
        self.store.count_code_requests().await
    }

    pub fn pool_usage(&self) -> PoolUsage {
        self.store.pool_usage()
    }
}
