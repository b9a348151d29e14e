//! The session port on PostgreSQL. `session_by_token` is the `whoami` hot
//! path: one statement reads the session through its unique token index and
//! joins the identity, with the identity's addresses aggregated as JSON in
//! the domain's own serde shape.

use std::sync::LazyLock;

use async_trait::async_trait;
use latchkey_domain::courier::Message;
use latchkey_domain::identity::{Identity, RecoveryAddress, VerifiableAddress};
use latchkey_domain::session::{AuthenticationMethod, Device, Session};
use latchkey_domain::store::{SessionQuery, SessionStore, StoreError};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, write_error};
use crate::courier::insert_message;
use crate::identities::identity_from_row;

/// Prefixed so that the identity's columns can share a row with them.
const SESSION_COLUMNS: &str = "s.id AS s_id, s.identity_id AS s_identity_id, s.token_hash AS s_token_hash, \
     s.logout_token_hash AS s_logout_token_hash, s.active AS s_active, s.issued_at AS s_issued_at, \
     s.expires_at AS s_expires_at, s.authenticated_at AS s_authenticated_at, s.aal AS s_aal, \
     s.authentication_methods AS s_methods, s.devices AS s_devices, s.created_at AS s_created_at, \
     s.updated_at AS s_updated_at";

/// A timestamptz as RFC 3339 in UTC with microseconds. `to_json` would
/// follow the connection's `TimeZone`, which a DSN or role can change.
fn utc_text(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// Addresses are ordered as the identity loader orders them (value in the
/// "C" collation, then id), so `whoami` and the admin API list them alike.
static SESSION_BY_TOKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SESSION_COLUMNS}, i.id, i.schema_id, i.state, i.state_changed_at, i.traits, \
         i.metadata_public, i.metadata_admin, i.external_id, i.available_aal, i.created_at, i.updated_at, \
         (SELECT COALESCE(json_agg(json_build_object('id', a.id, 'value', a.value, 'verified', a.verified, \
            'via', a.via, 'status', a.status, 'verified_at', {}, 'created_at', {}, 'updated_at', {}) \
            ORDER BY a.value COLLATE \"C\", a.id), '[]') \
          FROM identity_verifiable_addresses a WHERE a.identity_id = i.id) AS verifiable, \
         (SELECT COALESCE(json_agg(json_build_object('id', a.id, 'value', a.value, 'via', a.via, \
            'created_at', {}, 'updated_at', {}) ORDER BY a.value COLLATE \"C\", a.id), '[]') \
          FROM identity_recovery_addresses a WHERE a.identity_id = i.id) AS recovery \
         FROM sessions s JOIN identities i ON i.id = s.identity_id WHERE s.token_hash = $1",
        utc_text("a.verified_at"),
        utc_text("a.created_at"),
        utc_text("a.updated_at"),
        utc_text("a.created_at"),
        utc_text("a.updated_at"),
    )
});

fn session_from_row(row: &PgRow) -> Result<Session, StoreError> {
    let Json(authentication_methods) = col::<Json<Vec<AuthenticationMethod>>>(row, "s_methods")?;
    let Json(devices) = col::<Json<Vec<Device>>>(row, "s_devices")?;
    Ok(Session {
        id: col(row, "s_id")?,
        identity_id: col(row, "s_identity_id")?,
        active: col(row, "s_active")?,
        issued_at: col(row, "s_issued_at")?,
        expires_at: col(row, "s_expires_at")?,
        authenticated_at: col(row, "s_authenticated_at")?,
        aal: col(row, "s_aal")?,
        authentication_methods,
        devices,
        token_hash: col(row, "s_token_hash")?,
        logout_token_hash: col(row, "s_logout_token_hash")?,
        created_at: col(row, "s_created_at")?,
        updated_at: col(row, "s_updated_at")?,
    })
}

/// Adds the filters of `query` (after `WHERE TRUE`). Liveness is judged by
/// the application's clock, as `Session::is_live` does, not the database's.
fn push_filters(sql: &mut QueryBuilder<Postgres>, query: &SessionQuery, now: DateTime<Utc>) {
    if let Some(identity_id) = query.identity_id {
        sql.push(" AND s.identity_id = ").push_bind(identity_id);
    }
    match query.active {
        Some(true) => {
            sql.push(" AND s.active AND s.expires_at > ").push_bind(now);
        }
        Some(false) => {
            sql.push(" AND (NOT s.active OR s.expires_at <= ").push_bind(now).push(")");
        }
        None => {}
    }
    if let Some(exclude) = query.exclude {
        sql.push(" AND s.id != ").push_bind(exclude);
    }
    if let Some(after) = query.after {
        sql.push(" AND s.id > ").push_bind(after);
    }
}

/// Inserts one session on `conn`, which may be a transaction that queues
/// an email with it.
async fn insert_session(conn: &mut PgConnection, session: &Session) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, identity_id, token_hash, logout_token_hash, active, issued_at, expires_at, \
         authenticated_at, aal, authentication_methods, devices, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(session.id)
    .bind(session.identity_id)
    .bind(&session.token_hash)
    .bind(&session.logout_token_hash)
    .bind(session.active)
    .bind(session.issued_at)
    .bind(session.expires_at)
    .bind(session.authenticated_at)
    .bind(&session.aal)
    .bind(Json(&session.authentication_methods))
    .bind(Json(&session.devices))
    .bind(session.created_at)
    .bind(session.updated_at)
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    Ok(())
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        insert_session(&mut conn, session).await
    }

    async fn create_session_and_notify(
        &self,
        session: &Session,
        notices: &[Message],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        insert_session(&mut tx, session).await?;
        for notice in notices {
            insert_message(&mut tx, notice, None).await?;
        }
        tx.commit().await.map_err(write_error)
    }

    async fn session_by_token(&self, token_hash: &str) -> Result<Option<(Session, Identity)>, StoreError> {
        let Some(row) = sqlx::query(AssertSqlSafe(SESSION_BY_TOKEN.as_str()))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let session = session_from_row(&row)?;
        let mut identity = identity_from_row(&row)?;
        let Json(verifiable) = col::<Json<Vec<VerifiableAddress>>>(&row, "verifiable")?;
        let Json(recovery) = col::<Json<Vec<RecoveryAddress>>>(&row, "recovery")?;
        identity.verifiable_addresses = verifiable;
        identity.recovery_addresses = recovery;
        Ok(Some((session, identity)))
    }

    async fn session_by_logout_token(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.logout_token_hash = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE s.id = $1");
        let row =
            sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await.map_err(backend)?;
        row.as_ref().map(session_from_row).transpose()
    }

    async fn list_sessions(
        &self,
        query: &SessionQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError> {
        let mut sql = QueryBuilder::new(format!("SELECT {SESSION_COLUMNS} FROM sessions s WHERE TRUE"));
        push_filters(&mut sql, query, now);
        sql.push(" ORDER BY s.id LIMIT ").push_bind(i64::from(query.limit));
        // OFFSET is a bigint; anything past it skips every row anyway.
        sql.push(" OFFSET ").push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let rows = sql.build().fetch_all(&self.pool).await.map_err(backend)?;
        rows.iter().map(session_from_row).collect()
    }

    async fn count_sessions(&self, query: &SessionQuery, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut sql = QueryBuilder::new("SELECT COUNT(*) FROM sessions s WHERE TRUE");
        push_filters(&mut sql, query, now);
        let count: i64 = sql.build_query_scalar().fetch_one(&self.pool).await.map_err(backend)?;
        Ok(count as u64)
    }

    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = self
            .execute_announced(
                sqlx::query("UPDATE sessions SET active = false, updated_at = $1 WHERE id = $2")
                    .bind(at)
                    .bind(id),
                format!("s:{id}"),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Only live sessions count, as in the SQLite store: expired ones are
    /// already unusable and are left as they are.
    async fn revoke_sessions_of(
        &self,
        identity_id: Uuid,
        keep: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let done = self
            .execute_announced(
                sqlx::query(
                    "UPDATE sessions SET active = false, updated_at = $1 \
             WHERE identity_id = $2 AND active AND expires_at > $1 AND id IS DISTINCT FROM $3",
                )
                .bind(at)
                .bind(identity_id)
                .bind(keep),
                format!("i:{identity_id}"),
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn delete_sessions_of(&self, identity_id: Uuid) -> Result<u64, StoreError> {
        let done = self
            .execute_announced(
                sqlx::query("DELETE FROM sessions WHERE identity_id = $1").bind(identity_id),
                format!("i:{identity_id}"),
            )
            .await?;
        Ok(done.rows_affected())
    }

    async fn extend_session(
        &self,
        id: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = self
            .execute_announced(
                sqlx::query("UPDATE sessions SET expires_at = $1, updated_at = $2 WHERE id = $3")
                    .bind(expires_at)
                    .bind(at)
                    .bind(id),
                format!("s:{id}"),
            )
            .await?;
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
        let done = self
            .execute_announced(
                sqlx::query(
                    "UPDATE sessions SET aal = 'aal2', \
                     authentication_methods = authentication_methods || jsonb_build_array($1::jsonb), \
                     authenticated_at = $2, expires_at = $3, updated_at = $2 \
                     WHERE id = $4 AND active AND expires_at > $2",
                )
                .bind(Json(method))
                .bind(at)
                .bind(expires_at)
                .bind(id),
                format!("s:{id}"),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
