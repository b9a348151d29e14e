//! The flow port on PostgreSQL: each flow is one row holding its state as a
//! jsonb document, written and read whole; so is each error kept for the
//! error UI.

use async_trait::async_trait;
use latchkey_domain::flow::Flow;
use latchkey_domain::flow::errors::FlowErrorRecord;
use latchkey_domain::store::{FlowStore, StoreError};
use sqlx::types::Json;
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, write_error};

#[async_trait]
impl FlowStore for PgStore {
    async fn create_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO selfservice_flows (id, kind, expires_at, data, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(flow.id)
        .bind(flow.kind().as_str())
        .bind(flow.expires_at)
        .bind(Json(flow))
        .bind(flow.created_at)
        .bind(flow.updated_at)
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn get_flow(&self, id: Uuid) -> Result<Option<Flow>, StoreError> {
        let data: Option<Json<Flow>> = sqlx::query_scalar("SELECT data FROM selfservice_flows WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(data.map(|Json(flow)| flow))
    }

    async fn update_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE selfservice_flows SET expires_at = $1, data = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(flow.expires_at)
        .bind(Json(flow))
        .bind(flow.updated_at)
        .bind(flow.id)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn create_flow_error(&self, error: &FlowErrorRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO selfservice_errors (id, error, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(error.id)
        .bind(Json(&error.error))
        .bind(error.created_at)
        .bind(error.updated_at)
        .bind(error.expires_at)
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn get_flow_error(&self, id: Uuid) -> Result<Option<FlowErrorRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, error, created_at, updated_at, expires_at FROM selfservice_errors WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| {
            let Json(error) = col(&row, "error")?;
            Ok(FlowErrorRecord {
                id: col(&row, "id")?,
                error,
                created_at: col(&row, "created_at")?,
                updated_at: col(&row, "updated_at")?,
                expires_at: col(&row, "expires_at")?,
            })
        })
        .transpose()
    }
}
