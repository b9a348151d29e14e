//! The outbox port on SQLite. Claims run in a `BEGIN IMMEDIATE`
//! transaction, which SQLite serialises, so two dispatchers never take the
//! same message.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::courier::{Dispatch, Message, MessageStatus};
use latchkey_domain::store::{MessageQuery, OutboxStore, StoreError, Unsent};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::*;

const COLUMNS: &str = "id, status, recipient, subject, body, html_body, template_type, send_count, code_expires_at, \
     created_at, updated_at";

fn message_from_row(row: &SqliteRow) -> Result<Message, StoreError> {
    Ok(Message {
        id: uuid_col(row, "id")?,
        status: enum_col(row, "status")?,
        recipient: col(row, "recipient")?,
        subject: col(row, "subject")?,
        body: col(row, "body")?,
        html_body: col(row, "html_body")?,
        template_type: col(row, "template_type")?,
        send_count: col(row, "send_count")?,
        code_expires_at: opt_time_col(row, "code_expires_at")?,
        created_at: time_col(row, "created_at")?,
        updated_at: time_col(row, "updated_at")?,
    })
}

/// Queues `message` on `conn`, which may be a transaction that writes
/// other rows with it (a recovery code and the message announcing it).
/// `code_expires_at` is when the code the message carries dies, if it
/// carries one: the cleanup blanks it after that, once it is delivered.
pub(crate) async fn insert_message(
    conn: &mut SqliteConnection,
    message: &Message,
    code_expires_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO courier_messages (id, status, recipient, subject, body, html_body, template_type, \
         send_count, created_at, updated_at, code_expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(message.id.to_string())
    .bind(message.status.as_str())
    .bind(&message.recipient)
    .bind(&message.subject)
    .bind(&message.body)
    .bind(&message.html_body)
    .bind(&message.template_type)
    .bind(message.send_count)
    .bind(time(message.created_at))
    .bind(time(message.updated_at))
    .bind(opt_time(code_expires_at))
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn enqueue_message(&self, message: &Message) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_message(&mut conn, message, message.code_expires_at).await
    }

    async fn claim_messages(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Message>, StoreError> {
        let now = time(now);
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM courier_messages WHERE (status = 'queued' \
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?)) OR (status = 'processing' AND lease_until < ?) ORDER BY created_at, id LIMIT ?"
        )))
        .bind(&now)
        .bind(&now)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let mut claimed = rows.iter().map(message_from_row).collect::<Result<Vec<_>, _>>()?;
        for message in &mut claimed {
            sqlx::query(
                "UPDATE courier_messages SET status = 'processing', lease_until = ?, updated_at = ? WHERE id = ?",
            )
            .bind(time(lease_until))
            .bind(&now)
            .bind(message.id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
            message.status = MessageStatus::Processing;
        }
        tx.commit().await.map_err(backend)?;
        Ok(claimed)
    }

    async fn record_dispatch(
        &self,
        dispatch: &Dispatch,
        status: MessageStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO courier_dispatches (id, message_id, status, error, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(dispatch.id.to_string())
        .bind(dispatch.message_id.to_string())
        .bind(&dispatch.status)
        .bind(&dispatch.error)
        .bind(time(dispatch.created_at))
        .bind(time(dispatch.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        let done = sqlx::query(
            "UPDATE courier_messages SET status = ?, send_count = send_count + 1, lease_until = NULL, \
             next_attempt_at = ?, updated_at = ? WHERE id = ?",
        )
        .bind(status.as_str())
        .bind(opt_time(next_attempt_at))
        .bind(time(dispatch.updated_at))
        .bind(dispatch.message_id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await.map_err(backend)
    }

    async fn list_messages(&self, query: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        let mut sql =
            QueryBuilder::<Sqlite>::new(format!("SELECT {COLUMNS} FROM courier_messages WHERE 1 = 1"));
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(recipient) = &query.recipient {
            sql.push(" AND recipient = ").push_bind(recipient.clone());
        }
        if let Some(after) = query.after {
            let at = time(after.created_at);
            sql.push(" AND (created_at < ").push_bind(at.clone());
            sql.push(" OR (created_at = ").push_bind(at);
            sql.push(" AND id > ").push_bind(after.id.to_string()).push("))");
        }
        sql.push(" ORDER BY created_at DESC, id LIMIT ").push_bind(i64::from(query.limit));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn get_message(&self, id: Uuid) -> Result<Option<(Message, Vec<Dispatch>)>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM courier_messages WHERE id = ?")))
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT id, message_id, status, error, created_at, updated_at FROM courier_dispatches \
             WHERE message_id = ? ORDER BY created_at, id",
        )
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(backend)?;
        let dispatches = rows
            .iter()
            .map(|r| {
                Ok(Dispatch {
                    id: uuid_col(r, "id")?,
                    message_id: uuid_col(r, "message_id")?,
                    status: col(r, "status")?,
                    error: col(r, "error")?,
                    created_at: time_col(r, "created_at")?,
                    updated_at: time_col(r, "updated_at")?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Some((message_from_row(&row)?, dispatches)))
    }

    async fn count_unsent(&self) -> Result<Unsent, StoreError> {
        // Served by the (status, created_at) index, whatever the sent history.
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, COUNT(*) FROM courier_messages \
             WHERE status IN ('queued', 'processing') GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        Ok(Unsent::from_counts(rows))
    }
}
