//! The error flow: an error a browser cannot be shown on a form (a CSRF
//! violation, a flow that is gone, a server failure) is kept here for a
//! while, and the browser is sent to the error UI with its id; the UI reads
//! it back (`GET /self-service/errors?id=`). Kratos's `stub:500` id answers
//! a canned error, so an error UI can be built without provoking one.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::store::{Store, StoreError};
use crate::time::Clock;

/// How long an error can be read after it happened: the browser goes
/// straight to the error UI, so minutes would do; an hour allows reloads.
pub const LIFESPAN_MINUTES: i64 = 60;

/// The id the error UI is given for a canned 500, as in Kratos.
pub const STUB_500: &str = "stub:500";

/// One stored error: `error` is the Kratos error object (`code`, `status`,
/// `reason`, `message`, …) as the request that failed would have been
/// answered with it.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowErrorRecord {
    pub id: Uuid,
    pub error: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl FlowErrorRecord {
    /// A new record of `error`, happening `now`.
    pub fn new(error: Value, now: DateTime<Utc>) -> Self {
        Self {
            id: Uuid::new_v4(),
            error,
            created_at: now,
            updated_at: now,
            expires_at: now + Duration::minutes(LIFESPAN_MINUTES),
        }
    }
}

/// Keeps errors for the error UI and reads them back; handlers call this,
/// never the store.
#[derive(Clone)]
pub struct FlowErrors {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl FlowErrors {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Stores `error` and returns the id the error UI is given.
    pub async fn record(&self, error: Value) -> Result<Uuid, StoreError> {
        let record = FlowErrorRecord::new(error, self.clock.now());
        self.store.create_flow_error(&record).await?;
        Ok(record.id)
    }

    /// The error an id names: a stored one until it expires, or the stub.
    /// An id that is not a UUID names nothing.
    pub async fn find(&self, id: &str) -> Result<Option<FlowErrorRecord>, StoreError> {
        let now = self.clock.now();
        if id == STUB_500 {
            return Ok(Some(FlowErrorRecord::new(stub_500(), now)));
        }
        let Ok(id) = Uuid::parse_str(id) else {
            return Ok(None);
        };
        Ok(self.store.get_flow_error(id).await?.filter(|record| record.expires_at > now))
    }
}

/// Kratos's canned internal server error.
fn stub_500() -> Value {
    json!({
        "code": 500,
        "status": "Internal Server Error",
        "reason": "This is a stub error.",
        "message": "An internal server error occurred, please contact the system administrator",
    })
}
