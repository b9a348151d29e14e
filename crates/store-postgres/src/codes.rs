//! One-time codes (recovery and verification) on PostgreSQL, and the
//! address lookups that decide whom a code is for. A code, the retirement of
//! its flow's earlier unused codes and the message announcing it are written
//! in one transaction; using a code is a conditional update, so of two racing
//! uses exactly one wins (the loser re-checks `used_at IS NULL` after the
//! winner commits and matches nothing); attempts on a code are counted the
//! same way, one `UPDATE … RETURNING` each.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::courier::Message;
use latchkey_domain::flow::Flow;
use latchkey_domain::identity::Identity;
use latchkey_domain::store::{CodePurpose, CodeRequest, CodeStore, OneTimeCode, StoreError};
use sqlx::AssertSqlSafe;
use sqlx::PgConnection;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, enum_col, write_error};
use crate::courier::insert_message;
use crate::identities::{IDENTITY_COLUMNS, load};

fn code_from_row(row: &PgRow) -> Result<OneTimeCode, StoreError> {
    Ok(OneTimeCode {
        id: col(row, "id")?,
        flow_id: col(row, "flow_id")?,
        purpose: enum_col(row, "purpose")?,
        identity_id: col(row, "identity_id")?,
        address: col(row, "address")?,
        code_hmac: col(row, "code_hmac")?,
        expires_at: col(row, "expires_at")?,
        used_at: col(row, "used_at")?,
        created_at: col(row, "created_at")?,
    })
}

impl PgStore {
    /// The identity owning the address `via`/`value` in `table`, read from
    /// one snapshot.
    async fn identity_by_address(
        &self,
        table: &str,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        let mut tx = self.snapshot().await?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = \
             (SELECT identity_id FROM {table} WHERE via = $1 AND value = $2)"
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

/// Stores `code` and its `message`, retiring the flow's earlier unused codes.
pub(crate) async fn insert_code(
    conn: &mut PgConnection,
    code: &OneTimeCode,
    message: Option<&Message>,
) -> Result<(), StoreError> {
    // Inserted first, so a clashing id fails before anything is retired.
    sqlx::query(
        "INSERT INTO one_time_codes (id, flow_id, purpose, identity_id, address, code_hmac, expires_at, \
         used_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(code.id)
    .bind(code.flow_id)
    .bind(code.purpose.as_str())
    .bind(code.identity_id)
    .bind(&code.address)
    .bind(&code.code_hmac)
    .bind(code.expires_at)
    .bind(code.used_at)
    .bind(code.created_at)
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    // A resend retires the codes sent before it; used ones stay as a record.
    sqlx::query("DELETE FROM one_time_codes WHERE flow_id = $1 AND used_at IS NULL AND id <> $2")
        .bind(code.flow_id)
        .bind(code.id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    if let Some(message) = message {
        insert_message(conn, message, Some(code.expires_at)).await?;
    }
    Ok(())
}

#[async_trait]
impl CodeStore for PgStore {
    async fn record_code_request(&self, flow: &Flow, request: &CodeRequest) -> Result<(), StoreError> {
        self.record_request(flow, request).await
    }

    async fn claim_stale_code_requests(
        &self,
        requested_before: DateTime<Utc>,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CodeRequest>, StoreError> {
        self.claim_stale_requests(requested_before, limit, now, lease_until).await
    }

    async fn fulfil_code_request(
        &self,
        request_id: Uuid,
        code: Option<&OneTimeCode>,
        message: Option<&Message>,
    ) -> Result<bool, StoreError> {
        self.fulfil_request(request_id, code, message).await
    }

    async fn count_code_requests(&self) -> Result<u64, StoreError> {
        self.count_requests().await
    }

    async fn create_code(&self, code: &OneTimeCode, message: Option<&Message>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        insert_code(&mut tx, code, message).await?;
        tx.commit().await.map_err(write_error)
    }

    async fn live_codes(&self, flow_id: Uuid, now: DateTime<Utc>) -> Result<Vec<OneTimeCode>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, flow_id, purpose, identity_id, address, code_hmac, expires_at, used_at, created_at \
             FROM one_time_codes WHERE flow_id = $1 AND used_at IS NULL AND expires_at > $2 \
             ORDER BY created_at, id",
        )
        .bind(flow_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter().map(code_from_row).collect()
    }

    async fn use_code(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE one_time_codes SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_code_attempt(&self, flow_id: Uuid) -> Result<u64, StoreError> {
        // A concurrent update of the same row waits for its lock and then
        // re-reads the committed row (READ COMMITTED re-checks the newest
        // version), so no increment is lost and each caller gets its own number.
        let count: Option<i64> = sqlx::query_scalar(
            "UPDATE selfservice_flows SET code_attempts = code_attempts + 1 WHERE id = $1 \
             RETURNING code_attempts",
        )
        .bind(flow_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        u64::try_from(count.ok_or(StoreError::NotFound)?).map_err(backend)
    }

    async fn count_live_code_attempt(
        &self,
        flow_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<(OneTimeCode, u64)>, StoreError> {
        // As for the flow's count: a concurrent update of a code waits for
        // its row lock and then re-reads the committed row (re-checking that
        // it is still unused), so no increment is lost and each caller gets
        // its own number. A flow normally has one live code (a resend
        // retires the others), so there is one row lock to take.
        let rows = sqlx::query(
            "UPDATE one_time_codes SET attempts = attempts + 1 \
             WHERE flow_id = $1 AND used_at IS NULL AND expires_at > $2 \
             RETURNING id, flow_id, purpose, identity_id, address, code_hmac, expires_at, used_at, \
             created_at, attempts",
        )
        .bind(flow_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(write_error)?;
        let mut codes = rows
            .iter()
            .map(|row| {
                Ok((code_from_row(row)?, u64::try_from(col::<i64>(row, "attempts")?).map_err(backend)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // RETURNING promises no order.
        codes.sort_by_key(|(code, _)| (code.created_at, code.id));
        Ok(codes)
    }

    async fn forget_code_attempt(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("UPDATE one_time_codes SET attempts = attempts - 1 WHERE id = $1 AND attempts > 0")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn count_address_attempt(
        &self,
        purpose: CodePurpose,
        address: &str,
        id: Uuid,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // Under READ COMMITTED two transactions would not see each other's
        // uncommitted inserts, so both could count below the limit. A
        // transaction-scoped advisory lock on (purpose, address) makes them
        // take turns: the count runs after every earlier attempt committed
        // (each statement takes a fresh snapshot), so the k-th sees the k-1
        // before it and only `limit` of them see a count within the limit.
        // A hash collision only makes two addresses wait for each other.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('latchkey code attempts ' || $1 || ' ' || $2, 0))",
        )
        .bind(purpose.as_str())
        .bind(address)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        sqlx::query("INSERT INTO code_failures (id, purpose, address, at) VALUES ($1, $2, $3, $4)")
            .bind(id)
            .bind(purpose.as_str())
            .bind(address)
            .bind(at)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM code_failures WHERE purpose = $1 AND address = $2 AND at >= $3",
        )
        .bind(purpose.as_str())
        .bind(address)
        .bind(since)
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(write_error)?;
        u64::try_from(count).map_err(backend)
    }

    async fn forget_address_attempt(&self, id: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM code_failures WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn record_code_failure(
        &self,
        purpose: CodePurpose,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO code_failures (id, purpose, address, at) VALUES ($1, $2, $3, $4)")
            .bind(Uuid::new_v4())
            .bind(purpose.as_str())
            .bind(address)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    async fn count_code_failures(
        &self,
        purpose: CodePurpose,
        address: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM code_failures WHERE purpose = $1 AND address = $2 AND at >= $3",
        )
        .bind(purpose.as_str())
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
        self.identity_by_address("identity_recovery_addresses", via, value).await
    }

    async fn identity_by_verifiable_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.identity_by_address("identity_verifiable_addresses", via, value).await
    }
}
