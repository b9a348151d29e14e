//! Rate-limit windows on SQLite. Admitting an event reads its windows and
//! writes it in one `BEGIN IMMEDIATE` transaction: SQLite's single write
//! lock is taken before the counts are read, so concurrent callers take
//! turns and each counts every event admitted before it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::store::{AdmitRule, RateStore, RateWindow, StoreError, WindowCount};
use sqlx::sqlite::SqliteConnection;
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::{backend, parse_time, time, write_error};

async fn window_count(conn: &mut SqliteConnection, window: &RateWindow) -> Result<WindowCount, StoreError> {
    let (count, oldest, newest): (i64, Option<String>, Option<String>) = sqlx::query_as(
        "SELECT COUNT(*), MIN(at), MAX(at) FROM rate_events WHERE bucket = ? AND subject = ? AND at >= ?",
    )
    .bind(window.bucket)
    .bind(&window.subject)
    .bind(time(window.since))
    .fetch_one(conn)
    .await
    .map_err(backend)?;
    Ok(WindowCount {
        count: u64::try_from(count).map_err(backend)?,
        oldest: oldest.as_deref().map(parse_time).transpose()?,
        newest: newest.as_deref().map(parse_time).transpose()?,
    })
}

#[async_trait]
impl RateStore for SqliteStore {
    async fn admit_event(
        &self,
        windows: &[RateWindow],
        event: Uuid,
        at: DateTime<Utc>,
        admit: AdmitRule<'_>,
    ) -> Result<(bool, Vec<WindowCount>), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let mut counts = Vec::with_capacity(windows.len());
        for window in windows {
            counts.push(window_count(&mut tx, window).await?);
        }
        let admitted = admit(&counts);
        if admitted {
            for window in windows {
                sqlx::query("INSERT INTO rate_events (bucket, subject, at, id) VALUES (?, ?, ?, ?)")
                    .bind(window.bucket)
                    .bind(&window.subject)
                    .bind(time(at))
                    .bind(event.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(write_error)?;
            }
            tx.commit().await.map_err(write_error)?;
        }
        Ok((admitted, counts))
    }

    async fn count_events(&self, window: &RateWindow) -> Result<WindowCount, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        window_count(&mut conn, window).await
    }

    async fn reset_events(&self, bucket: &str, subject: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_events WHERE bucket = ? AND subject = ?")
            .bind(bucket)
            .bind(subject)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn forget_event(&self, event: Uuid) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM rate_events WHERE id = ?")
            .bind(event.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}
