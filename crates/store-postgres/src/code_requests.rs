//! Code requests on PostgreSQL: the one row a recovery or verification
//! submit records, claimed by a sweep with a lease when its own server left
//! it (`SKIP LOCKED`, so servers sharing the database never take the same
//! one), and ended in the transaction that issues its code.

use chrono::{DateTime, Utc};
use latchkey_domain::courier::Message;
use latchkey_domain::flow::Flow;
use latchkey_domain::store::{CodeRequest, OneTimeCode, StoreError};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, enum_col, write_error};
use crate::codes::insert_code;

const COLUMNS: &str = "id, flow_id, purpose, address, requested_at";

fn request_from_row(row: &PgRow) -> Result<CodeRequest, StoreError> {
    Ok(CodeRequest {
        id: col(row, "id")?,
        flow_id: col(row, "flow_id")?,
        purpose: enum_col(row, "purpose")?,
        address: col(row, "address")?,
        requested_at: col(row, "requested_at")?,
    })
}

impl PgStore {
    pub(crate) async fn record_request(&self, flow: &Flow, request: &CodeRequest) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE selfservice_flows SET expires_at = $1, data = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(flow.expires_at)
        .bind(Json(flow))
        .bind(flow.updated_at)
        .bind(flow.id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        sqlx::query(
            "INSERT INTO code_requests (id, flow_id, purpose, address, requested_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(request.id)
        .bind(request.flow_id)
        .bind(request.purpose.as_str())
        .bind(&request.address)
        .bind(request.requested_at)
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
        // Looked for first without taking row locks: there is almost never
        // one, and every server sweeps every second.
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM code_requests WHERE requested_at < $1 \
             AND (claimed_until IS NULL OR claimed_until <= $2))",
        )
        .bind(requested_before)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        if !any {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE code_requests SET claimed_until = $1 WHERE id IN \
             (SELECT id FROM code_requests WHERE requested_at < $2 \
              AND (claimed_until IS NULL OR claimed_until <= $3) \
              ORDER BY requested_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}"
        )))
        .bind(lease_until)
        .bind(requested_before)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
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
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let flow_id: Option<Uuid> =
            sqlx::query_scalar("DELETE FROM code_requests WHERE id = $1 RETURNING flow_id")
                .bind(request_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let Some(flow_id) = flow_id else {
            return Ok(false);
        };
        if let Some(code) = code {
            // Two servers ending two requests of one flow take turns, so the
            // later code retires the earlier one.
            sqlx::query("SELECT 1 FROM selfservice_flows WHERE id = $1 FOR UPDATE")
                .bind(flow_id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
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
