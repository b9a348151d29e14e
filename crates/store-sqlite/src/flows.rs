//! The flow port on SQLite: each flow is one row holding its state as JSON,
//! and so is each error kept for the error UI.

use async_trait::async_trait;
use latchkey_domain::flow::Flow;
use latchkey_domain::flow::errors::FlowErrorRecord;
use latchkey_domain::store::{FlowStore, StoreError};
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::*;

#[async_trait]
impl FlowStore for SqliteStore {
    async fn create_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO selfservice_flows (id, kind, expires_at, data, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(flow.id.to_string())
        .bind(flow.kind().as_str())
        .bind(time(flow.expires_at))
        .bind(serde_json::to_string(flow).map_err(backend)?)
        .bind(time(flow.created_at))
        .bind(time(flow.updated_at))
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn get_flow(&self, id: Uuid) -> Result<Option<Flow>, StoreError> {
        let data: Option<String> = sqlx::query_scalar("SELECT data FROM selfservice_flows WHERE id = ?")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        data.map(|d| serde_json::from_str(&d).map_err(backend)).transpose()
    }

    async fn update_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        let done =
            sqlx::query("UPDATE selfservice_flows SET expires_at = ?, data = ?, updated_at = ? WHERE id = ?")
                .bind(time(flow.expires_at))
                .bind(serde_json::to_string(flow).map_err(backend)?)
                .bind(time(flow.updated_at))
                .bind(flow.id.to_string())
                .execute(&self.pool)
                .await
                .map_err(backend)?;
        if done.rows_affected() == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn create_flow_error(&self, error: &FlowErrorRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO selfservice_errors (id, error, created_at, updated_at, expires_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(error.id.to_string())
        .bind(error.error.to_string())
        .bind(time(error.created_at))
        .bind(time(error.updated_at))
        .bind(time(error.expires_at))
        .execute(&self.pool)
        .await
        .map_err(write_error)?;
        Ok(())
    }

    async fn get_flow_error(&self, id: Uuid) -> Result<Option<FlowErrorRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, error, created_at, updated_at, expires_at FROM selfservice_errors WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|row| {
            Ok(FlowErrorRecord {
                id: uuid_col(&row, "id")?,
                error: json_col(&row, "error")?,
                created_at: time_col(&row, "created_at")?,
                updated_at: time_col(&row, "updated_at")?,
                expires_at: time_col(&row, "expires_at")?,
            })
        })
        .transpose()
    }
}
