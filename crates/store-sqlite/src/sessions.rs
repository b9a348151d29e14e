//! The session port on SQLite. `session_by_token` is the `whoami` hot path:
//! one statement joins the session, its identity and the identity's
//! addresses through the unique token index.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::courier::Message;
use latchkey_domain::identity::Identity;
use latchkey_domain::session::{AuthenticationMethod, Session};
use latchkey_domain::store::{SessionQuery, SessionStore, StoreError};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqliteConnection};
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::*;
use crate::courier::insert_message;
use crate::identities::identity_from_row;

const SESSION_COLUMNS: &str = "s.id AS s_id, s.identity_id AS s_identity_id, s.token_hash AS s_token_hash, \
     s.logout_token_hash AS s_logout_token_hash, s.active AS s_active, s.issued_at AS s_issued_at, \
     s.expires_at AS s_expires_at, s.authenticated_at AS s_authenticated_at, s.aal AS s_aal, \
     s.authentication_methods AS s_methods, s.devices AS s_devices, s.created_at AS s_created_at, \
     s.updated_at AS s_updated_at";

/// The identity's addresses as JSON arrays in the domain's own serde shape.
const ADDRESS_COLUMNS: &str = "\
     (SELECT json_group_array(json_object('id', id, 'value', value, \
        'verified', json(CASE verified WHEN 1 THEN 'true' ELSE 'false' END), 'via', via, 'status', status, \
        'verified_at', verified_at, 'created_at', created_at, 'updated_at', updated_at)) \
      FROM (SELECT * FROM identity_verifiable_addresses WHERE identity_id = i.id ORDER BY value, id)) AS verifiable, \
     (SELECT json_group_array(json_object('id', id, 'value', value, 'via', via, \
        'created_at', created_at, 'updated_at', updated_at)) \
      FROM (SELECT * FROM identity_recovery_addresses WHERE identity_id = i.id ORDER BY value, id)) AS recovery";

fn session_from_row(row: &SqliteRow) -> Result<Session, StoreError> {
    Ok(Session {
        id: uuid_col(row, "s_id")?,
        identity_id: uuid_col(row, "s_identity_id")?,
        active: col(row, "s_active")?,
        issued_at: time_col(row, "s_issued_at")?,
        expires_at: time_col(row, "s_expires_at")?,
        authenticated_at: time_col(row, "s_authenticated_at")?,
        aal: col(row, "s_aal")?,
        authentication_methods: serde_json::from_value(json_col(row, "s_methods")?).map_err(backend)?,
        devices: serde_json::from_value(json_col(row, "s_devices")?).map_err(backend)?,
        token_hash: col(row, "s_token_hash")?,
        logout_token_hash: col(row, "s_logout_token_hash")?,
        created_at: time_col(row, "s_created_at")?,
        updated_at: time_col(row, "s_updated_at")?,
    })
}

/// Adds the filters of `query` (after `WHERE 1 = 1`).
fn push_filters(sql: &mut QueryBuilder<Sqlite>, query: &SessionQuery, now: &str) {
    if let Some(identity_id) = query.identity_id {
        sql.push(" AND s.identity_id = ").push_bind(identity_id.to_string());
    }
    match query.active {
        Some(true) => {
            sql.push(" AND s.active = 1 AND s.expires_at > ").push_bind(now.to_string());
        }
        Some(false) => {
            sql.push(" AND (s.active = 0 OR s.expires_at <= ").push_bind(now.to_string()).push(")");
        }
        None => {}
    }
    if let Some(exclude) = query.exclude {
        sql.push(" AND s.id != ").push_bind(exclude.to_string());
    }
    if let Some(after) = query.after {
        sql.push(" AND s.id > ").push_bind(after.to_string());
    }
}

/// Inserts one session on `conn`, which may be a transaction that queues
/// an email with it.
async fn insert_session(conn: &mut SqliteConnection, session: &Session) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, identity_id, token_hash, logout_token_hash, active, issued_at, expires_at, \
         authenticated_at, aal, authentication_methods, devices, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(session.id.to_string())
    .bind(session.identity_id.to_string())
    .bind(&session.token_hash)
    .bind(&session.logout_token_hash)
    .bind(session.active)
    .bind(time(session.issued_at))
    .bind(time(session.expires_at))
    .bind(time(session.authenticated_at))
    .bind(&session.aal)
    .bind(serde_json::to_string(&session.authentication_methods).map_err(backend)?)
    .bind(serde_json::to_string(&session.devices).map_err(backend)?)
    .bind(time(session.created_at))
    .bind(time(session.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    Ok(())
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_session(&mut conn, session).await
    }

    async fn create_session_and_notify(
        &self,
        session: &Session,
        notices: &[Message],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        insert_session(&mut tx, session).await?;
        for notice in notices {
            insert_message(&mut tx, notice, None).await?;
        }
        tx.commit().await.map_err(write_error)
    }

    async fn session_by_token(&self, token_hash: &str) -> Result<Option<(Session, Identity)>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS}, i.id, i.schema_id, i.state, i.state_changed_at, i.traits, \
             i.metadata_public, i.metadata_admin, i.external_id, i.available_aal, i.created_at, i.updated_at, {ADDRESS_COLUMNS} \
             FROM sessions s JOIN identities i ON i.id = s.identity_id WHERE s.token_hash = ?"
        );
        let Some(row) = sqlx::query(AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let session = session_from_row(&row)?;
        let mut identity = identity_from_row(&row)?;
        identity.verifiable_addresses =
            serde_json::from_value(json_col(&row, "verifiable")?).map_err(backend)?;
        identity.recovery_addresses = serde_json::from_value(json_col(&row, "recovery")?).map_err(backend)?;
        Ok(Some((session, identity)))
    }

    async fn session_by_logout_token(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.logout_token_hash = ?");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = ?");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(
        &self,
        query: &SessionQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError> {
        let now = time(now);
        let mut sql = QueryBuilder::new(format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE 1 = 1"));
        push_filters(&mut sql, query, &now);
        sql.push(" ORDER BY s.id LIMIT ").push_bind(i64::from(query.limit));
        sql.push(" OFFSET ").push_bind(query.offset as i64);
        let rows = sql.build().fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn count_sessions(&self, query: &SessionQuery, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let now = time(now);
        let mut sql = QueryBuilder::new("SELECT COUNT(*) FROM sessions s WHERE 1 = 1");
        push_filters(&mut sql, query, &now);
        let count: i64 = sql.build_query_scalar().fetch_one(&self.pool).await.map_err(backend)?;
        Ok(count as u64)
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE sessions SET active = 0, updated_at = ? WHERE id = ?")
            .bind(time(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_sessions_of(
        &self,
        identity_id: Uuid,
        keep: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now = time(at);
        let done = sqlx::query(
            "UPDATE sessions SET active = 0, updated_at = ? \
             WHERE identity_id = ? AND active = 1 AND expires_at > ? AND id != ?",
        )
        .bind(&now)
        .bind(identity_id.to_string())
        .bind(&now)
        .bind(keep.map(|k| k.to_string()).unwrap_or_default())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn delete_sessions_of(&self, identity_id: Uuid) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM sessions WHERE identity_id = ?")
            .bind(identity_id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn extend_session(
        &self,
        id: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE sessions SET expires_at = ?, updated_at = ? WHERE id = ?")
            .bind(time(expires_at))
            .bind(time(at))
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn complete_second_factor(
        &self,
        id: Uuid,
        method: &AuthenticationMethod,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let at = method.completed_at;
        // One statement: the append cannot lose a method written meanwhile.
        let done = sqlx::query(
            "UPDATE sessions SET aal = 'aal2', \
             authentication_methods = json_insert(authentication_methods, '$[#]', json(?)), \
             authenticated_at = ?, expires_at = ?, updated_at = ? \
             WHERE id = ? AND active = 1 AND expires_at > ?",
        )
        .bind(serde_json::to_string(method).map_err(backend)?)
        .bind(time(at))
        .bind(time(expires_at))
        .bind(time(at))
        .bind(id.to_string())
        .bind(time(at))
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }
}
