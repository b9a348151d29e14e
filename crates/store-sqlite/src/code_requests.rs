//! Code requests on SQLite: the one row a recovery or verification submit
//! records, claimed by a sweep with a lease when its own server left it, and
//! ended in the transaction that issues its code. `BEGIN IMMEDIATE`
//! serialises the writers, so neither a claim nor an end happens twice.

use chrono::{DateTime, Utc};
use latchkey_domain::courier::Message;
use latchkey_domain::flow::Flow;
use latchkey_domain::store::{CodeRequest, OneTimeCode, StoreError};
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::*;
use crate::codes::insert_code;

const COLUMNS: &str = "id, flow_id, purpose, address, requested_at";

fn request_from_row(row: &SqliteRow) -> Result<CodeRequest, StoreError> {
    Ok(CodeRequest {
        id: uuid_col(row, "id")?,
        flow_id: uuid_col(row, "flow_id")?,
        purpose: enum_col(row, "purpose")?,
        address: col(row, "address")?,
        requested_at: time_col(row, "requested_at")?,
    })
}

impl SqliteStore {
    pub(crate) async fn record_request(&self, flow: &Flow, request: &CodeRequest) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let done =
            sqlx::query("UPDATE selfservice_flows SET expires_at = ?, data = ?, updated_at = ? WHERE id = ?")
                .bind(time(flow.expires_at))
                .bind(serde_json::to_string(flow).map_err(backend)?)
                .bind(time(flow.updated_at))
                .bind(flow.id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO code_requests (id, flow_id, purpose, address, requested_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(request.id.to_string())
        .bind(request.flow_id.to_string())
        .bind(request.purpose.as_str())
        .bind(&request.address)
        .bind(time(request.requested_at))
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        tx.commit().await.map_err(write_error)
    }

    pub(crate) async fn claim_stale_requests(
        &self,
        requested_before: DateTime<Utc>,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CodeRequest>, StoreError> {
        // Looked for first without a write lock: there is almost never one,
        // and the sweep runs every second.
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM code_requests WHERE requested_at < ? \
             AND (claimed_until IS NULL OR claimed_until <= ?))",
        )
        .bind(time(requested_before))
        .bind(time(now))
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        if !any {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE code_requests SET claimed_until = ?1 WHERE id IN \
             (SELECT id FROM code_requests WHERE requested_at < ?2 \
              AND (claimed_until IS NULL OR claimed_until <= ?3) ORDER BY requested_at LIMIT ?4) \
             RETURNING {COLUMNS}"
        )))
        .bind(time(lease_until))
        .bind(time(requested_before))
        .bind(time(now))
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(write_error)?;
        let mut requests = rows.iter().map(request_from_row).collect::<Result<Vec<_>, _>>()?;
        // RETURNING gives no order; a flow's requests are served oldest first.
        requests.sort_by_key(|r| r.requested_at);
        Ok(requests)
    }

    pub(crate) async fn fulfil_request(
        &self,
        request_id: Uuid,
        code: Option<&OneTimeCode>,
        message: Option<&Message>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let done = sqlx::query("DELETE FROM code_requests WHERE id = ?")
            .bind(request_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(code) = code {
            insert_code(&mut tx, code, message).await?;
        }
        tx.commit().await.map_err(write_error)?;
        Ok(true)
    }

    pub(crate) async fn count_requests(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM code_requests")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }
}
