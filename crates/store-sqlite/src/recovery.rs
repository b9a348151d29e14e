//! The recovery port on SQLite: a code and the message announcing it are
//! written in one `BEGIN IMMEDIATE` transaction; using a code is a
//! conditional update, so of two racing uses exactly one wins.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::courier::Message;
use latchkey_domain::identity::Identity;
use latchkey_domain::store::{RecoveryCode, RecoveryStore, StoreError};
use sqlx::AssertSqlSafe;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::*;
use crate::courier::insert_message;
use crate::identities::{IDENTITY_COLUMNS, load};

fn code_from_row(row: &SqliteRow) -> Result<RecoveryCode, StoreError> {
    Ok(RecoveryCode {
        id: uuid_col(row, "id")?,
        flow_id: uuid_col(row, "flow_id")?,
        identity_id: col::<Option<&str>>(row, "identity_id")?.map(parse_uuid).transpose()?,
        address: col(row, "address")?,
        code_hmac: col(row, "code_hmac")?,
        expires_at: time_col(row, "expires_at")?,
        used_at: opt_time_col(row, "used_at")?,
        created_at: time_col(row, "created_at")?,
    })
}

#[async_trait]
impl RecoveryStore for SqliteStore {
    async fn create_recovery_code(
        &self,
        code: &RecoveryCode,
        message: Option<&Message>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO recovery_codes (id, flow_id, identity_id, address, code_hmac, expires_at, used_at, \
             created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(code.id.to_string())
        .bind(code.flow_id.to_string())
        .bind(code.identity_id.map(|id| id.to_string()))
        .bind(&code.address)
        .bind(&code.code_hmac)
        .bind(time(code.expires_at))
        .bind(opt_time(code.used_at))
        .bind(time(code.created_at))
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
             FROM recovery_codes WHERE flow_id = ? AND used_at IS NULL AND expires_at > ? \
             ORDER BY created_at, id",
        )
        .bind(flow_id.to_string())
        .bind(time(now))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(code_from_row).collect()
    }

    async fn use_recovery_code(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE recovery_codes SET used_at = ? WHERE id = ? AND used_at IS NULL")
            .bind(time(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_recovery_failure(&self, address: &str, at: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO recovery_failures (id, address, at) VALUES (?, ?, ?)")
            .bind(Uuid::new_v4().to_string())
            .bind(address)
            .bind(time(at))
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn count_recovery_failures(&self, address: &str, since: DateTime<Utc>) -> Result<u64, StoreError> {
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM recovery_failures WHERE address = ? AND at >= ?")
                .bind(address)
                .bind(time(since))
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
        // One read transaction: the identity and its children see one snapshot.
        let mut conn = self.pool.begin().await.map_err(backend)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = \
             (SELECT identity_id FROM identity_recovery_addresses WHERE via = ? AND value = ?)"
        )))
        .bind(via)
        .bind(value)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        Ok(load(&mut conn, rows).await?.pop())
    }
}
