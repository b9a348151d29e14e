//! Rate-limit windows on PostgreSQL. Under READ COMMITTED two transactions
//! would not see each other's uncommitted events, so both could count below
//! a limit: admitting an event first takes a transaction-scoped advisory
//! lock per window (in a fixed order, so two callers never wait on each
//! other crosswise), then counts and writes. Each count runs after every
//! earlier admission committed. A hash collision only makes two subjects
//! take turns.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::store::{AdmitRule, RateStore, RateWindow, StoreError, WindowCount};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, write_error};

async fn window_count(conn: &mut PgConnection, window: &RateWindow) -> Result<WindowCount, StoreError> {
    let (count, oldest, newest): (i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at), MAX(at) FROM rate_events WHERE bucket = $1 AND subject = $2 AND at >= $3",
    )
    .bind(window.bucket)
    .bind(&window.subject)
    .bind(window.since)
    .fetch_one(conn)
    .await
    .map_err(backend)?;
    Ok(WindowCount { count: u64::try_from(count).map_err(backend)?, oldest, newest })
}

#[async_trait]
impl RateStore for PgStore {
    async fn admit_event(
        &self,
        windows: &[RateWindow],
        event: Uuid,
        at: DateTime<Utc>,
        admit: AdmitRule<'_>,
    ) -> Result<(bool, Vec<WindowCount>), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut locks: Vec<(&str, &str)> = windows.iter().map(|w| (w.bucket, w.subject.as_str())).collect();
        locks.sort_unstable();
        locks.dedup();
        for (bucket, subject) in locks {
            sqlx::query(
                "SELECT pg_advisory_xact_lock(hashtextextended('latchkey rate ' || $1 || ' ' || $2, 0))",
            )
            .bind(bucket)
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let mut counts = Vec::with_capacity(windows.len());
        for window in windows {
            counts.push(window_count(&mut tx, window).await?);
        }
        let admitted = admit(&counts);
        if admitted {
            for window in windows {
                sqlx::query("INSERT INTO rate_events (bucket, subject, at, id) VALUES ($1, $2, $3, $4)")
                    .bind(window.bucket)
                    .bind(&window.subject)
                    .bind(at)
                    .bind(event)
                    .execute(&mut *tx)
                    .await
                    .map_err(write_error)?;
            }
        }
        tx.commit().await.map_err(write_error)?;
        Ok((admitted, counts))
    }

    async fn count_events(&self, window: &RateWindow) -> Result<WindowCount, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        window_count(&mut conn, window).await
    }

    async fn reset_events(&self, bucket: &str, subject: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_events WHERE bucket = $1 AND subject = $2")
            .bind(bucket)
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn forget_event(&self, event: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM rate_events WHERE id = $1")
            .bind(event)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
