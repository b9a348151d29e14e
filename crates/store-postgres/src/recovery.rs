//! The recovery port on PostgreSQL: a code and the message announcing it are
//! written in one transaction; using a code is a conditional update, so of
//! two racing uses exactly one wins (the loser re-checks `used_at IS NULL`
//! after the winner commits and matches nothing).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::courier::Message;
use latchkey_domain::identity::Identity;
use latchkey_domain::store::{RecoveryCode, RecoveryStore, StoreError};
use sqlx::AssertSqlSafe;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, write_error};
use crate::courier::insert_message;
use crate::identities::{IDENTITY_COLUMNS, load};

fn code_from_row(row: &PgRow) -> Result<RecoveryCode, StoreError> {
    Ok(RecoveryCode {
        id: col(row, "id")?,
        flow_id: col(row, "flow_id")?,
        identity_id: col(row, "identity_id")?,
        address: col(row, "address")?,
        code_hmac: col(row, "code_hmac")?,
        expires_at: col(row, "expires_at")?,
        used_at: col(row, "used_at")?,
        created_at: col(row, "created_at")?,
    })
}

#[async_trait]
impl RecoveryStore for PgStore {
    async fn create_recovery_code(
        &self,
        code: &RecoveryCode,
        message: Option<&Message>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO recovery_codes (id, flow_id, identity_id, address, code_hmac, expires_at, used_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(code.id)
        .bind(code.flow_id)
        .bind(code.identity_id)
        .bind(&code.address)
        .bind(&code.code_hmac)
        .bind(code.expires_at)
        .bind(code.used_at)
        .bind(code.created_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        if let Some(message) = message {
            insert_message(&mut tx, message).await?;
        }
        tx.commit().await.map_err(write_error)
    }

    async fn live_recovery_codes(
        &self,
        flow_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<RecoveryCode>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, flow_id, identity_id, address, code_hmac, expires_at, used_at, created_at \
             FROM recovery_codes WHERE flow_id = $1 AND used_at IS NULL AND expires_at > $2 \
             ORDER BY created_at, id",
        )
        .bind(flow_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(code_from_row).collect()
    }

    async fn use_recovery_code(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_recovery_failure(&self, address: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO recovery_failures (id, address, at) VALUES ($1, $2, $3)")
            .bind(Uuid::new_v4())
            .bind(address)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn count_recovery_failures(&self, address: &str, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_failures WHERE address = $1 AND at >= $2")
                .bind(address)
                .bind(since)
                .fetch_one(&self.pool)
                .await
                .map_err(backend)?;
        u64::try_from(count).map_err(backend)
    }

    async fn identity_by_recovery_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let mut tx = self.snapshot().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = \
             (SELECT identity_id FROM identity_recovery_addresses WHERE via = $1 AND value = $2)"
        )))
        .bind(via)
        .bind(value)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut identities = load(&mut tx, rows).await?;
        tx.commit().await.map_err(backend)?;
        Ok(identities.pop())
    }
}
