//! The outbox port on PostgreSQL. Claims use `FOR UPDATE SKIP LOCKED`, so
//! any number of dispatchers (in `serve` processes or `courier watch`)
//! share the queue without taking the same message twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::courier::{Dispatch, Message, MessageStatus};
use latchkey_domain::store::{MessageQuery, OutboxStore, StoreError, Unsent};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, enum_col, write_error};

const COLUMNS: &str = "id, status, recipient, subject, body, html_body, template_type, send_count, code_expires_at, \
     created_at, updated_at";

fn message_from_row(row: &PgRow) -> Result<Message, StoreError> {
    Ok(Message {
        id: col(row, "id")?,
        status: enum_col(row, "status")?,
        recipient: col(row, "recipient")?,
        subject: col(row, "subject")?,
        body: col(row, "body")?,
        html_body: col(row, "html_body")?,
        template_type: col(row, "template_type")?,
        send_count: col(row, "send_count")?,
        code_expires_at: col(row, "code_expires_at")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}

/// Queues `message` on `conn`, which may be a transaction that writes
/// other rows with it (a recovery code and the message announcing it).
/// `code_expires_at` is when the code the message carries dies, if it
/// carries one: the cleanup blanks it after that, once it is delivered.
pub(crate) async fn insert_message(
    conn: &mut PgConnection,
    message: &Message,
    code_expires_at: Option<DateTime<Utc>>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO courier_messages (id, status, recipient, subject, body, html_body, template_type, \
         send_count, created_at, updated_at, code_expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(message.id)
    .bind(message.status.as_str())
    .bind(&message.recipient)
    .bind(&message.subject)
    .bind(&message.body)
    .bind(&message.html_body)
    .bind(&message.template_type)
    .bind(message.send_count)
    .bind(message.created_at)
    .bind(message.updated_at)
    .bind(code_expires_at)
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    Ok(())
}

#[async_trait]
impl OutboxStore for PgStore {
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE courier_messages SET status = 'processing', lease_until = $1, updated_at = $2 \
             WHERE id IN (SELECT id FROM courier_messages WHERE (status = 'queued' \
                AND (next_attempt_at IS NULL OR next_attempt_at <= $2)) OR (status = 'processing' AND lease_until < $2) \
                ORDER BY created_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) \
             RETURNING {COLUMNS}"
        )))
        .bind(lease_until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut claimed = rows.iter().map(message_from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by_key(|m| (m.created_at, m.id));
        Ok(claimed)
    }

    async fn record_dispatch(
        &self,
        dispatch: &Dispatch,
        status: MessageStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO courier_dispatches (id, message_id, status, error, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(dispatch.id)
        .bind(dispatch.message_id)
        .bind(&dispatch.status)
        .bind(&dispatch.error)
        .bind(dispatch.created_at)
        .bind(dispatch.updated_at)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        let done = sqlx::query(
            "UPDATE courier_messages SET status = $1, send_count = send_count + 1, lease_until = NULL, \
             next_attempt_at = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(status.as_str())
        .bind(next_attempt_at)
        .bind(dispatch.updated_at)
        .bind(dispatch.message_id)
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
            QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM courier_messages WHERE 1 = 1"));
        if let Some(status) = query.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(recipient) = &query.recipient {
            sql.push(" AND recipient = ").push_bind(recipient.clone());
        }
        if let Some(after) = query.after {
            sql.push(" AND (created_at < ").push_bind(after.created_at);
            sql.push(" OR (created_at = ").push_bind(after.created_at);
            sql.push(" AND id > ").push_bind(after.id).push("))");
        }
        sql.push(" ORDER BY created_at DESC, id LIMIT ").push_bind(i64::from(query.limit));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(message_from_row).collect()
    }

    async fn get_message(&self, id: Uuid) -> Result<Option<(Message, Vec<Dispatch>)>, StoreError> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM courier_messages WHERE id = $1")))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT id, message_id, status, error, created_at, updated_at FROM courier_dispatches \
             WHERE message_id = $1 ORDER BY created_at, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let dispatches = rows
            .iter()
            .map(|r| {
                Ok(Dispatch {
                    id: col(r, "id")?,
                    message_id: col(r, "message_id")?,
                    status: col(r, "status")?,
                    error: col(r, "error")?,
                    created_at: col(r, "created_at")?,
                    updated_at: col(r, "updated_at")?,
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
