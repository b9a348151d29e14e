//! The identity port on SQLite: an identity and its credentials and
//! addresses are written in one `BEGIN IMMEDIATE` transaction.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::aal::{Aal, available_aal};
use latchkey_domain::courier::Message;
use latchkey_domain::identity::{
    AddressStatus, Credential, CredentialType, Identity, RecoveryAddress, VerifiableAddress,
};
use latchkey_domain::store::{IdentityQuery, IdentityStore, StoreError, StoredPassword};
use sqlx::sqlite::SqliteRow;
use sqlx::{AssertSqlSafe, SqliteConnection};
use uuid::Uuid;

use crate::SqliteStore;
use crate::codec::*;
use crate::courier::insert_message;

pub(crate) const IDENTITY_COLUMNS: &str = "id, schema_id, state, state_changed_at, traits, metadata_public, \
     metadata_admin, external_id, available_aal, created_at, updated_at";

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO identities (id, schema_id, state, state_changed_at, traits, metadata_public, \
             metadata_admin, external_id, available_aal, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(identity.id.to_string())
        .bind(&identity.schema_id)
        .bind(identity.state.as_str())
        .bind(opt_time(identity.state_changed_at))
        .bind(json(&identity.traits))
        .bind(opt_json(&identity.metadata_public))
        .bind(opt_json(&identity.metadata_admin))
        .bind(&identity.external_id)
        .bind(available_aal_of(identity).as_str())
        .bind(time(identity.created_at))
        .bind(time(identity.updated_at))
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        insert_children(&mut tx, identity).await?;
        tx.commit().await.map_err(write_error)
    }

    async fn update_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        self.update_identity_and_notify(identity, &[]).await
    }

    async fn update_identity_and_notify(
        &self,
        identity: &Identity,
        notices: &[Message],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let id = identity.id.to_string();
        let updated = sqlx::query(
            "UPDATE identities SET schema_id = ?, state = ?, state_changed_at = ?, traits = ?, \
             metadata_public = ?, metadata_admin = ?, external_id = ?, available_aal = ?, updated_at = ? \
             WHERE id = ?",
        )
        .bind(&identity.schema_id)
        .bind(identity.state.as_str())
        .bind(opt_time(identity.state_changed_at))
        .bind(json(&identity.traits))
        .bind(opt_json(&identity.metadata_public))
        .bind(opt_json(&identity.metadata_admin))
        .bind(&identity.external_id)
        .bind(available_aal_of(identity).as_str())
        .bind(time(identity.updated_at))
        .bind(&id)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        for table in ["identity_credentials", "identity_verifiable_addresses", "identity_recovery_addresses"]
        {
            sqlx::query(AssertSqlSafe(format!("DELETE FROM {table} WHERE identity_id = ?")))
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        insert_children(&mut tx, identity).await?;
        for notice in notices {
            insert_message(&mut tx, notice, None).await?;
        }
        tx.commit().await.map_err(write_error)
    }

    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError> {
        // One read transaction: the four queries see one snapshot.
        let mut conn = self.pool.begin().await.map_err(backend)?;
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = ?")))
                .bind(id.to_string())
                .fetch_all(&mut *conn)
                .await
                .map_err(backend)?;
        Ok(load(&mut conn, rows).await?.pop())
    }

    async fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM identities WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_identities(&self, query: &IdentityQuery) -> Result<Vec<Identity>, StoreError> {
        let mut sql = format!("SELECT {IDENTITY_COLUMNS} FROM identities i WHERE 1 = 1");
        if query.after.is_some() {
            sql.push_str(" AND i.id > ?");
        }
        if query.credentials_identifier.is_some() {
            sql.push_str(
                " AND i.id IN (SELECT identity_id FROM identity_credential_identifiers WHERE identifier = ?)",
            );
        }
        if !query.ids.is_empty() {
            sql.push_str(&format!(" AND i.id IN ({})", placeholders(query.ids.len())));
        }
        sql.push_str(" ORDER BY i.id LIMIT ?");
        let mut q = sqlx::query(AssertSqlSafe(sql));
        if let Some(after) = query.after {
            q = q.bind(after.to_string());
        }
        if let Some(identifier) = &query.credentials_identifier {
            q = q.bind(identifier.clone());
        }
        for id in &query.ids {
            q = q.bind(id.to_string());
        }
        let mut conn = self.pool.begin().await.map_err(backend)?;
        let rows = q.bind(i64::from(query.limit)).fetch_all(&mut *conn).await.map_err(backend)?;
        load(&mut conn, rows).await
    }

    async fn password_by_identifier(&self, identifier: &str) -> Result<Option<StoredPassword>, StoreError> {
        // Outer joins from a one-row table: an unknown identifier reads
        // the same index and decodes a row of NULLs, never an empty result.
        let row = sqlx::query(
            "SELECT i.identity_id, CASE WHEN json_type(c.config, '$.hashed_password') = 'text' \
             THEN json_extract(c.config, '$.hashed_password') END AS hashed_password \
             FROM (SELECT 1) AS one \
             LEFT JOIN identity_credential_identifiers i ON i.identifier = ? AND i.type = ? \
             LEFT JOIN identity_credentials c ON c.id = i.credential_id",
        )
        .bind(identifier)
        .bind(CredentialType::Password.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let hashed_password: Option<String> = col(&row, "hashed_password")?;
        let owner: Option<String> = col(&row, "identity_id")?;
        Ok(match owner {
            Some(id) => Some(StoredPassword { identity_id: parse_uuid(&id)?, hashed_password }),
            None => None,
        })
    }

    async fn replace_password_hash(
        &self,
        identity_id: Uuid,
        verified: &str,
        new_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One conditional statement under the write lock: the hash is
        // swapped only if it is still the verified one, and the rest of the
        // credential's config is kept.
        let done = sqlx::query(
            "UPDATE identity_credentials SET config = json_set(config, '$.hashed_password', ?), updated_at = ? \
             WHERE identity_id = ? AND type = ? AND json_extract(config, '$.hashed_password') = ?",
        )
        .bind(new_hash)
        .bind(time(at))
        .bind(identity_id.to_string())
        .bind(CredentialType::Password.as_str())
        .bind(verified)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_address_status(
        &self,
        identity_id: Uuid,
        address_id: Uuid,
        status: AddressStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One statement, so no transaction: `verified` follows the status and
        // a re-verified address keeps the time it was first verified.
        let verified = status == AddressStatus::Completed;
        let done = sqlx::query(
            "UPDATE identity_verifiable_addresses SET verified = ?, status = ?, \
             verified_at = CASE WHEN ? THEN COALESCE(verified_at, ?) ELSE NULL END, updated_at = ? \
             WHERE id = ? AND identity_id = ?",
        )
        .bind(verified)
        .bind(status.as_str())
        .bind(verified)
        .bind(time(at))
        .bind(time(at))
        .bind(address_id.to_string())
        .bind(identity_id.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }
    async fn set_credential(
        &self,
        identity_id: Uuid,
        credential: &Credential,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = identity_id.to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let stamped = sqlx::query("UPDATE identities SET updated_at = ? WHERE id = ?")
            .bind(time(at))
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if stamped.rows_affected() == 0 {
            return Ok(false);
        }
        // The identifiers go with the old row (ON DELETE CASCADE).
        sqlx::query("DELETE FROM identity_credentials WHERE identity_id = ? AND type = ?")
            .bind(&id)
            .bind(credential.kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        forget_spent_codes(&mut tx, &id, credential.kind).await?;
        insert_credential(&mut tx, &id, credential).await?;
        refresh_available_aal(&mut tx, &id).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(true)
    }

    async fn remove_credential(
        &self,
        identity_id: Uuid,
        kind: CredentialType,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let id = identity_id.to_string();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let removed = sqlx::query("DELETE FROM identity_credentials WHERE identity_id = ? AND type = ?")
            .bind(&id)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if removed.rows_affected() == 0 {
            return Ok(false);
        }
        forget_spent_codes(&mut tx, &id, kind).await?;
        sqlx::query("UPDATE identities SET updated_at = ? WHERE id = ?")
            .bind(time(at))
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        refresh_available_aal(&mut tx, &id).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(true)
    }

    async fn spend_totp_step(&self, identity_id: Uuid, step: i64) -> Result<bool, StoreError> {
        // One statement, so SQLite's write lock makes it atomic: the upsert
        // only writes a step later than the stored one.
        let done = sqlx::query(
            "INSERT INTO totp_used_steps (identity_id, step) SELECT ?, ? \
             WHERE EXISTS (SELECT 1 FROM identity_credentials WHERE identity_id = ? AND type = ?) \
             ON CONFLICT (identity_id) DO UPDATE SET step = excluded.step WHERE totp_used_steps.step < excluded.step",
        )
        .bind(identity_id.to_string())
        .bind(step)
        .bind(identity_id.to_string())
        .bind(CredentialType::Totp.as_str())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn spend_lookup_code(
        &self,
        identity_id: Uuid,
        set: Uuid,
        position: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO lookup_secret_uses (identity_id, set_id, position, used_at) SELECT ?, ?, ?, ? \
             WHERE EXISTS (SELECT 1 FROM identity_credentials WHERE identity_id = ? AND type = ? \
                           AND json_extract(config, '$.set') = ?) \
             ON CONFLICT DO NOTHING",
        )
        .bind(identity_id.to_string())
        .bind(set.to_string())
        .bind(i64::from(position))
        .bind(time(at))
        .bind(identity_id.to_string())
        .bind(CredentialType::LookupSecret.as_str())
        .bind(set.to_string())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() == 1)
    }

    async fn used_lookup_codes(
        &self,
        identity_id: Uuid,
        set: Uuid,
    ) -> Result<Vec<(u32, DateTime<Utc>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT position, used_at FROM lookup_secret_uses WHERE identity_id = ? AND set_id = ? ORDER BY position",
        )
        .bind(identity_id.to_string())
        .bind(set.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let position: i64 = col(row, "position")?;
                Ok((u32::try_from(position).map_err(backend)?, time_col(row, "used_at")?))
            })
            .collect()
    }
}

/// A lookup-secret credential replaced or removed takes the record of its
/// spent codes along.
async fn forget_spent_codes(
    conn: &mut SqliteConnection,
    identity_id: &str,
    kind: CredentialType,
) -> Result<(), StoreError> {
    if kind == CredentialType::LookupSecret {
        sqlx::query("DELETE FROM lookup_secret_uses WHERE identity_id = ?")
            .bind(identity_id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// The available AAL of an identity about to be written whole.
fn available_aal_of(identity: &Identity) -> Aal {
    available_aal(identity.credentials.values().map(|c| (c.kind, &c.config)))
}

/// Derives the identity's available AAL again from the credentials it has
/// now, in the transaction that changed one of them.
async fn refresh_available_aal(conn: &mut SqliteConnection, identity_id: &str) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT type, config FROM identity_credentials WHERE identity_id = ?")
        .bind(identity_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let credentials = rows
        .iter()
        .map(|row| Ok((enum_col::<CredentialType>(row, "type")?, json_col(row, "config")?)))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let aal = available_aal(credentials.iter().map(|(kind, config)| (*kind, config)));
    sqlx::query("UPDATE identities SET available_aal = ? WHERE id = ?")
        .bind(aal.as_str())
        .bind(identity_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

async fn insert_children(conn: &mut SqliteConnection, identity: &Identity) -> Result<(), StoreError> {
    let identity_id = identity.id.to_string();
    for credential in identity.credentials.values() {
        insert_credential(conn, &identity_id, credential).await?;
    }
    for a in &identity.verifiable_addresses {
        sqlx::query(
            "INSERT INTO identity_verifiable_addresses (id, identity_id, via, value, verified, status, \
             verified_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.to_string())
        .bind(&identity_id)
        .bind(a.via.as_str())
        .bind(&a.value)
        .bind(a.verified)
        .bind(a.status.as_str())
        .bind(opt_time(a.verified_at))
        .bind(time(a.created_at))
        .bind(time(a.updated_at))
        .execute(&mut *conn)
        .await
        .map_err(write_error)?;
    }
    for a in &identity.recovery_addresses {
        sqlx::query(
            "INSERT INTO identity_recovery_addresses (id, identity_id, via, value, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.to_string())
        .bind(&identity_id)
        .bind(a.via.as_str())
        .bind(&a.value)
        .bind(time(a.created_at))
        .bind(time(a.updated_at))
        .execute(&mut *conn)
        .await
        .map_err(write_error)?;
    }
    Ok(())
}

async fn insert_credential(
    conn: &mut SqliteConnection,
    identity_id: &str,
    credential: &Credential,
) -> Result<(), StoreError> {
    let credential_id = credential.id.to_string();
    sqlx::query(
        "INSERT INTO identity_credentials (id, identity_id, type, config, version, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&credential_id)
    .bind(identity_id)
    .bind(credential.kind.as_str())
    .bind(json(&credential.config))
    .bind(credential.version)
    .bind(time(credential.created_at))
    .bind(time(credential.updated_at))
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    for (position, identifier) in credential.identifiers.iter().enumerate() {
        sqlx::query(
            "INSERT INTO identity_credential_identifiers (credential_id, identity_id, type, identifier, position) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&credential_id)
        .bind(identity_id)
        .bind(credential.kind.as_str())
        .bind(identifier)
        .bind(position as i64)
        .execute(&mut *conn)
        .await
        .map_err(write_error)?;
    }
    Ok(())
}

/// Turns identity rows into full aggregates with three more queries in all,
/// however many identities there are.
pub(crate) async fn load(
    conn: &mut SqliteConnection,
    rows: Vec<SqliteRow>,
) -> Result<Vec<Identity>, StoreError> {
    let mut identities = rows.iter().map(identity_from_row).collect::<Result<Vec<_>, _>>()?;
    if identities.is_empty() {
        return Ok(identities);
    }
    let ids: Vec<String> = identities.iter().map(|i| i.id.to_string()).collect();
    let index: BTreeMap<Uuid, usize> = identities.iter().enumerate().map(|(n, i)| (i.id, n)).collect();
    let fetch = |sql: String| {
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for id in &ids {
            q = q.bind(id.clone());
        }
        q
    };
    let marks = placeholders(ids.len());

    let rows = fetch(format!(
        "SELECT c.id, c.identity_id, c.type, c.config, c.version, c.created_at, c.updated_at, \
         (SELECT json_group_array(identifier) FROM (SELECT identifier FROM identity_credential_identifiers \
          WHERE credential_id = c.id ORDER BY position)) AS identifiers \
         FROM identity_credentials c WHERE c.identity_id IN ({marks})"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for row in rows {
        let owner = uuid_col(&row, "identity_id")?;
        let credential = Credential {
            id: uuid_col(&row, "id")?,
            kind: enum_col(&row, "type")?,
            identifiers: serde_json::from_value(json_col(&row, "identifiers")?).map_err(backend)?,
            config: json_col(&row, "config")?,
            version: col(&row, "version")?,
            created_at: time_col(&row, "created_at")?,
            updated_at: time_col(&row, "updated_at")?,
        };
        identities[index[&owner]].credentials.insert(credential.kind, credential);
    }

    let rows = fetch(format!(
        "SELECT id, identity_id, via, value, verified, status, verified_at, created_at, updated_at \
         FROM identity_verifiable_addresses WHERE identity_id IN ({marks}) ORDER BY value, id"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for row in rows {
        let owner = uuid_col(&row, "identity_id")?;
        identities[index[&owner]].verifiable_addresses.push(VerifiableAddress {
            id: uuid_col(&row, "id")?,
            value: col(&row, "value")?,
            verified: col(&row, "verified")?,
            via: enum_col(&row, "via")?,
            status: enum_col(&row, "status")?,
            verified_at: opt_time_col(&row, "verified_at")?,
            created_at: time_col(&row, "created_at")?,
            updated_at: time_col(&row, "updated_at")?,
        });
    }

    let rows = fetch(format!(
        "SELECT id, identity_id, via, value, created_at, updated_at \
         FROM identity_recovery_addresses WHERE identity_id IN ({marks}) ORDER BY value, id"
    ))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for row in rows {
        let owner = uuid_col(&row, "identity_id")?;
        identities[index[&owner]].recovery_addresses.push(RecoveryAddress {
            id: uuid_col(&row, "id")?,
            value: col(&row, "value")?,
            via: enum_col(&row, "via")?,
            created_at: time_col(&row, "created_at")?,
            updated_at: time_col(&row, "updated_at")?,
        });
    }
    Ok(identities)
}

pub(crate) fn identity_from_row(row: &SqliteRow) -> Result<Identity, StoreError> {
    Ok(Identity {
        id: uuid_col(row, "id")?,
        schema_id: col(row, "schema_id")?,
        state: enum_col(row, "state")?,
        state_changed_at: opt_time_col(row, "state_changed_at")?,
        traits: json_col(row, "traits")?,
        metadata_public: opt_json_col(row, "metadata_public")?,
        metadata_admin: opt_json_col(row, "metadata_admin")?,
        external_id: col(row, "external_id")?,
        credentials: BTreeMap::new(),
        verifiable_addresses: Vec::new(),
        recovery_addresses: Vec::new(),
        available_aal: enum_col(row, "available_aal")?,
        created_at: time_col(row, "created_at")?,
        updated_at: time_col(row, "updated_at")?,
    })
}
