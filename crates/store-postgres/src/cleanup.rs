//! The cleanup port on PostgreSQL. Each batch is one statement, or one
//! short transaction where two tables go together (a flow and its codes, a
//! message and its attempts). Batches pick their rows `FOR UPDATE SKIP
//! LOCKED`: rows a request is writing, or another server's cleanup has
//! picked, are left for later instead of waited on, so any number of
//! servers may clean one database at once, sharing the work, and a
//! cleanup never queues behind a user's request.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::store::{CleanupReport, CleanupStep, CleanupStore, StoreError};
use uuid::Uuid;

use crate::PgStore;
use crate::codec::backend;

/// Finished messages: delivered, or given up on.
const DONE: &str = "status IN ('sent', 'abandoned')";

impl PgStore {
    /// Runs one statement binding `before` (as `$1`) and `limit` (as `$2`);
    /// returns the rows it changed.
    async fn batch(&self, sql: &str, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    /// Locks the `parent` rows `pick` selects, deletes the rows of `child`
    /// whose `key` names one of them, then the parents, in one transaction.
    async fn batch_with_children(
        &self,
        parent: &str,
        child: &str,
        key: &str,
        pick: &str,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<(u64, u64), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let ids: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM {parent} WHERE {pick} LIMIT $2 FOR UPDATE SKIP LOCKED"
        )))
        .bind(before)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        if ids.is_empty() {
            return Ok((0, 0));
        }
        let children = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {child} WHERE {key} = ANY($1)")))
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let parents = sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {parent} WHERE id = ANY($1)")))
            .bind(&ids)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok((parents.rows_affected(), children.rows_affected()))
    }
}

#[async_trait]
impl CleanupStore for PgStore {
    async fn cleanup_batch(
        &self,
        step: CleanupStep,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<CleanupReport, StoreError> {
        let limit = i64::from(limit);
        let mut report = CleanupReport::default();
        match step {
            CleanupStep::Sessions => {
                report.sessions = self
                    .batch(
                        "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                         WHERE expires_at < $1 OR (NOT active AND updated_at < $1) \
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::Flows => {
                (report.flows, report.one_time_codes) = self
                    .batch_with_children(
                        "selfservice_flows",
                        "one_time_codes",
                        "flow_id",
                        "expires_at < $1",
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::OneTimeCodes => {
                report.one_time_codes = self
                    .batch(
                        "DELETE FROM one_time_codes WHERE id IN (SELECT id FROM one_time_codes \
                         WHERE expires_at < $1 OR used_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::CodeFailures => {
                report.code_failures = self
                    .batch(
                        "DELETE FROM code_failures WHERE id IN (SELECT id FROM code_failures \
                         WHERE at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::RateEvents => {
                // One event may sit in several windows under one id: the whole key names a row.
                report.rate_events = self
                    .batch(
                        "DELETE FROM rate_events WHERE (bucket, subject, at, id) IN \
                         (SELECT bucket, subject, at, id FROM rate_events WHERE at < $1 \
                         LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::CourierBodies => {
                // `updated_at` stays the delivery time, which the message's own deletion waits on.
                report.courier_bodies_cleared = self
                    .batch(
                        &format!(
                            "UPDATE courier_messages SET subject = '', body = '', html_body = NULL, \
                             code_expires_at = NULL WHERE id IN (SELECT id FROM courier_messages \
                             WHERE code_expires_at < $1 AND {DONE} LIMIT $2 FOR UPDATE SKIP LOCKED)"
                        ),
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::CourierMessages => {
                (report.courier_messages, report.courier_dispatches) = self
                    .batch_with_children(
                        "courier_messages",
                        "courier_dispatches",
                        "message_id",
                        &format!("{DONE} AND updated_at < $1"),
                        before,
                        limit,
                    )
                    .await?;
            }
            CleanupStep::FlowErrors => {
                report.flow_errors = self
                    .batch(
                        "DELETE FROM selfservice_errors WHERE id IN (SELECT id FROM selfservice_errors \
                         WHERE expires_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                        before,
                        limit,
                    )
                    .await?;
            }
        }
        Ok(report)
    }
}
