//! The identity port on PostgreSQL: an identity and its credentials and
//! addresses are written in one transaction, and read back from one
//! snapshot with a fixed number of queries however many identities a page
//! holds.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use latchkey_domain::aal::{Aal, available_aal};
use latchkey_domain::courier::Message;
use latchkey_domain::identity::{
    AddressStatus, Credential, CredentialType, Identity, RecoveryAddress, VerifiableAddress,
};
use latchkey_domain::store::{IdentityQuery, IdentityStore, StoreError, StoredPassword};
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, PgConnection, Postgres, Transaction};
use uuid::Uuid;

use crate::PgStore;
use crate::codec::{backend, col, enum_col, write_error};
use crate::courier::insert_message;

pub(crate) const IDENTITY_COLUMNS: &str = "id, schema_id, state, state_changed_at, traits, metadata_public, \
     metadata_admin, external_id, available_aal, created_at, updated_at";

impl PgStore {
    /// Reads run in a read-only repeatable-read transaction: an aggregate is
    /// assembled from four queries, and without one snapshot a concurrent
    /// update could be seen half applied (old credentials, new addresses).
    /// Read-only snapshots never fail with serialization errors.
    pub(crate) async fn snapshot(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(backend)
    }
}

#[async_trait]
impl IdentityStore for PgStore {
    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(
            "INSERT INTO identities (id, schema_id, state, state_changed_at, traits, metadata_public, \
             metadata_admin, external_id, available_aal, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(identity.id)
        .bind(&identity.schema_id)
        .bind(identity.state.as_str())
        .bind(identity.state_changed_at)
        .bind(&identity.traits)
        .bind(&identity.metadata_public)
        .bind(&identity.metadata_admin)
        .bind(&identity.external_id)
        .bind(available_aal_of(identity).as_str())
        .bind(identity.created_at)
        .bind(identity.updated_at)
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
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // The UPDATE also locks the row, so concurrent replacements of one
        // identity take turns instead of interleaving their children.
        let updated = sqlx::query(
            "UPDATE identities SET schema_id = $1, state = $2, state_changed_at = $3, traits = $4, \
             metadata_public = $5, metadata_admin = $6, external_id = $7, available_aal = $8, updated_at = $9 \
             WHERE id = $10",
        )
        .bind(&identity.schema_id)
        .bind(identity.state.as_str())
        .bind(identity.state_changed_at)
        .bind(&identity.traits)
        .bind(&identity.metadata_public)
        .bind(&identity.metadata_admin)
        .bind(&identity.external_id)
        .bind(available_aal_of(identity).as_str())
        .bind(identity.updated_at)
        .bind(identity.id)
        .execute(&mut *tx)
        .await
        .map_err(write_error)?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Credential identifiers go with their credentials (ON DELETE CASCADE).
        for sql in [
            "DELETE FROM identity_credentials WHERE identity_id = $1",
            "DELETE FROM identity_verifiable_addresses WHERE identity_id = $1",
            "DELETE FROM identity_recovery_addresses WHERE identity_id = $1",
        ] {
            sqlx::query(sql).bind(identity.id).execute(&mut *tx).await.map_err(backend)?;
        }
        insert_children(&mut tx, identity).await?;
        for notice in notices {
            insert_message(&mut tx, notice, None).await?;
        }
        crate::announce(&mut tx, format!("i:{}", identity.id)).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(())
    }

    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError> {
        let mut tx = self.snapshot().await?;
        let rows =
            sqlx::query(AssertSqlSafe(format!("SELECT {IDENTITY_COLUMNS} FROM identities WHERE id = $1")))
                .bind(id)
                .fetch_all(&mut *tx)
                .await
                .map_err(backend)?;
        let mut identities = load(&mut tx, rows).await?;
        tx.commit().await.map_err(backend)?;
        Ok(identities.pop())
    }

    async fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError> {
        let done = self
            .execute_announced(
                sqlx::query("DELETE FROM identities WHERE id = $1").bind(id),
                format!("i:{id}"),
            )
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_identities(&self, query: &IdentityQuery) -> Result<Vec<Identity>, StoreError> {
        // Only the filters in use appear in the SQL, so each combination gets
        // a plan made for it; every filter takes exactly one parameter, bound
        // below in the same order.
        let mut filters = Vec::new();
        if query.after.is_some() {
            filters.push(format!("id > ${}", filters.len() + 1));
        }
        if query.credentials_identifier.is_some() {
            filters.push(format!(
                "id IN (SELECT identity_id FROM identity_credential_identifiers WHERE identifier = ${})",
                filters.len() + 1
            ));
        }
        if !query.ids.is_empty() {
            filters.push(format!("id = ANY(${})", filters.len() + 1));
        }
        let limit = filters.len() + 1;
        let filters =
            if filters.is_empty() { String::new() } else { format!(" WHERE {}", filters.join(" AND ")) };
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "SELECT {IDENTITY_COLUMNS} FROM identities{filters} ORDER BY id LIMIT ${limit}"
        )));
        if let Some(after) = query.after {
            q = q.bind(after);
        }
        if let Some(identifier) = &query.credentials_identifier {
            q = q.bind(identifier);
        }
        if !query.ids.is_empty() {
            q = q.bind(&query.ids);
        }
        let mut tx = self.snapshot().await?;
        let rows = q.bind(i64::from(query.limit)).fetch_all(&mut *tx).await.map_err(backend)?;
        let identities = load(&mut tx, rows).await?;
        tx.commit().await.map_err(backend)?;
        Ok(identities)
    }

    async fn password_by_identifier(&self, identifier: &str) -> Result<Option<StoredPassword>, StoreError> {
        // Outer joins from a one-row table: an unknown identifier reads
        // the same index and decodes a row of NULLs, never an empty result.
        let row = sqlx::query(
            "SELECT i.identity_id, CASE WHEN jsonb_typeof(c.config -> 'hashed_password') = 'string' \
             THEN c.config ->> 'hashed_password' END AS hashed_password \
             FROM (SELECT 1) AS one \
             LEFT JOIN identity_credential_identifiers i ON i.identifier = $1 AND i.type = $2 \
             LEFT JOIN identity_credentials c ON c.id = i.credential_id",
        )
        .bind(identifier)
        .bind(CredentialType::Password.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let hashed_password: Option<String> = col(&row, "hashed_password")?;
        let owner: Option<Uuid> = col(&row, "identity_id")?;
        Ok(owner.map(|identity_id| StoredPassword { identity_id, hashed_password }))
    }

    async fn replace_password_hash(
        &self,
        identity_id: Uuid,
        verified: &str,
        new_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // One conditional statement: a concurrent write to the row makes this
        // one wait and then re-check the condition against the committed
        // row, so a hash changed meanwhile is never overwritten. The rest of
        // the credential's config is kept.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE identity_credentials SET config = jsonb_set(config, '{hashed_password}', to_jsonb($1::text)), \
             updated_at = $2 WHERE identity_id = $3 AND type = $4 AND config ->> 'hashed_password' = $5",
        )
        .bind(new_hash)
        .bind(at)
        .bind(identity_id)
        .bind(CredentialType::Password.as_str())
        .bind(verified)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // Announced in the same transaction, so other servers hear of it as it commits.
        crate::announce(&mut tx, format!("i:{identity_id}")).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn set_address_status(
        &self,
        identity_id: Uuid,
        address_id: Uuid,
        status: AddressStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // `verified` follows the status and a re-verified address keeps the
        // time it was first verified. The transaction carries the announcement.
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = sqlx::query(
            "UPDATE identity_verifiable_addresses SET verified = $1, status = $2, \
             verified_at = CASE WHEN $1 THEN COALESCE(verified_at, $3) ELSE NULL END, updated_at = $3 \
             WHERE id = $4 AND identity_id = $5",
        )
        .bind(status == AddressStatus::Completed)
        .bind(status.as_str())
        .bind(at)
        .bind(address_id)
        .bind(identity_id)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        // whoami shows addresses: cached answers about this identity are stale.
        crate::announce(&mut tx, format!("i:{identity_id}")).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }
    async fn set_credential(
        &self,
        identity_id: Uuid,
        credential: &Credential,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // Stamping the identity first locks its row: writers of one
        // identity's credentials take their turns.
        let stamped = sqlx::query("UPDATE identities SET updated_at = $1 WHERE id = $2")
            .bind(at)
            .bind(identity_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if stamped.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM identity_credentials WHERE identity_id = $1 AND type = $2")
            .bind(identity_id)
            .bind(credential.kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        forget_spent_codes(&mut tx, identity_id, credential.kind).await?;
        insert_credential(&mut tx, identity_id, credential).await?;
        refresh_available_aal(&mut tx, identity_id).await?;
        // whoami shows the identity's `updated_at` and judges its available AAL.
        crate::announce(&mut tx, format!("i:{identity_id}")).await?;
        tx.commit().await.map_err(write_error)?;
        Ok(true)
    }

    async fn remove_credential(
        &self,
        identity_id: Uuid,
        kind: CredentialType,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let removed = sqlx::query("DELETE FROM identity_credentials WHERE identity_id = $1 AND type = $2")
            .bind(identity_id)
            .bind(kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        if removed.rows_affected() == 0 {
            return Ok(false);
        }
        forget_spent_codes(&mut tx, identity_id, kind).await?;
        sqlx::query("UPDATE identities SET updated_at = $1 WHERE id = $2")
            .bind(at)
            .bind(identity_id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        refresh_available_aal(&mut tx, identity_id).await?;
        crate::announce(&mut tx, format!("i:{identity_id}")).await?;
        tx.commit().await.map_err(backend)?;
        Ok(true)
    }

    async fn spend_totp_step(&self, identity_id: Uuid, step: i64) -> Result<bool, StoreError> {
        // One statement: a parallel upsert of the same identity waits for
        // this one's row and then re-checks the condition against it, so a
        // step passes once.
        let done = sqlx::query(
            "INSERT INTO totp_used_steps (identity_id, step) SELECT $1, $2 \
             WHERE EXISTS (SELECT 1 FROM identity_credentials WHERE identity_id = $1 AND type = $3) \
             ON CONFLICT (identity_id) DO UPDATE SET step = EXCLUDED.step \
             WHERE totp_used_steps.step < EXCLUDED.step",
        )
        .bind(identity_id)
        .bind(step)
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
            "INSERT INTO lookup_secret_uses (identity_id, set_id, position, used_at) SELECT $1, $2, $3, $4 \
             WHERE EXISTS (SELECT 1 FROM identity_credentials WHERE identity_id = $1 AND type = $5 \
                           AND config ->> 'set' = $2::text) \
             ON CONFLICT DO NOTHING",
        )
        .bind(identity_id)
        .bind(set)
        .bind(i32::try_from(position).map_err(backend)?)
        .bind(at)
        .bind(CredentialType::LookupSecret.as_str())
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
            "SELECT position, used_at FROM lookup_secret_uses WHERE identity_id = $1 AND set_id = $2 \
             ORDER BY position",
        )
        .bind(identity_id)
        .bind(set)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let position: i32 = col(row, "position")?;
                Ok((u32::try_from(position).map_err(backend)?, col(row, "used_at")?))
            })
            .collect()
    }
}

async fn insert_credential(
    conn: &mut PgConnection,
    identity_id: Uuid,
    credential: &Credential,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO identity_credentials (id, identity_id, type, config, version, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(credential.id)
    .bind(identity_id)
    .bind(credential.kind.as_str())
    .bind(&credential.config)
    .bind(credential.version)
    .bind(credential.created_at)
    .bind(credential.updated_at)
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    if credential.identifiers.is_empty() {
        return Ok(());
    }
    // All of a credential's identifiers in one round trip, positions
    // counted from zero as in the SQLite store.
    sqlx::query(
        "INSERT INTO identity_credential_identifiers (credential_id, identity_id, type, identifier, position) \
         SELECT $1, $2, $3, t.identifier, (t.n - 1)::integer \
         FROM unnest($4::text[]) WITH ORDINALITY AS t (identifier, n)",
    )
    .bind(credential.id)
    .bind(identity_id)
    .bind(credential.kind.as_str())
    .bind(&credential.identifiers)
    .execute(&mut *conn)
    .await
    .map_err(write_error)?;
    Ok(())
}

/// A lookup-secret credential replaced or removed takes the record of its
/// spent codes along.
async fn forget_spent_codes(
    conn: &mut PgConnection,
    identity_id: Uuid,
    kind: CredentialType,
) -> Result<(), StoreError> {
    if kind == CredentialType::LookupSecret {
        sqlx::query("DELETE FROM lookup_secret_uses WHERE identity_id = $1")
            .bind(identity_id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

async fn insert_children(conn: &mut PgConnection, identity: &Identity) -> Result<(), StoreError> {
    for credential in identity.credentials.values() {
        insert_credential(conn, identity.id, credential).await?;
    }
    for a in &identity.verifiable_addresses {
        sqlx::query(
            "INSERT INTO identity_verifiable_addresses (id, identity_id, via, value, verified, status, \
             verified_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(a.id)
        .bind(identity.id)
        .bind(a.via.as_str())
        .bind(&a.value)
        .bind(a.verified)
        .bind(a.status.as_str())
        .bind(a.verified_at)
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&mut *conn)
        .await
        .map_err(write_error)?;
    }
    for a in &identity.recovery_addresses {
        sqlx::query(
            "INSERT INTO identity_recovery_addresses (id, identity_id, via, value, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a.id)
        .bind(identity.id)
        .bind(a.via.as_str())
        .bind(&a.value)
        .bind(a.created_at)
        .bind(a.updated_at)
        .execute(&mut *conn)
        .await
        .map_err(write_error)?;
    }
    Ok(())
}

/// Turns identity rows into full aggregates with three more queries in all,
/// however many identities there are. Addresses are ordered by value in the
/// "C" collation, bytewise like SQLite, so both stores return them alike
/// whatever the database's default collation.
pub(crate) async fn load(conn: &mut PgConnection, rows: Vec<PgRow>) -> Result<Vec<Identity>, StoreError> {
    let mut identities = rows.iter().map(identity_from_row).collect::<Result<Vec<_>, _>>()?;
    if identities.is_empty() {
        return Ok(identities);
    }
    let ids: Vec<Uuid> = identities.iter().map(|i| i.id).collect();
    let index: HashMap<Uuid, usize> = ids.iter().enumerate().map(|(n, id)| (*id, n)).collect();
    let owner = |row: &PgRow| col::<Uuid>(row, "identity_id").map(|id| index[&id]);

    let rows = sqlx::query(
        "SELECT c.id, c.identity_id, c.type, c.config, c.version, c.created_at, c.updated_at, \
         ARRAY(SELECT i.identifier FROM identity_credential_identifiers i \
               WHERE i.credential_id = c.id ORDER BY i.position) AS identifiers \
         FROM identity_credentials c WHERE c.identity_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for row in &rows {
        let credential = Credential {
            id: col(row, "id")?,
            kind: enum_col(row, "type")?,
            identifiers: col(row, "identifiers")?,
            config: col(row, "config")?,
            version: col(row, "version")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        };
        identities[owner(row)?].credentials.insert(credential.kind, credential);
    }

    let rows = sqlx::query(
        "SELECT id, identity_id, via, value, verified, status, verified_at, created_at, updated_at \
         FROM identity_verifiable_addresses WHERE identity_id = ANY($1) ORDER BY value COLLATE \"C\", id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for row in &rows {
        identities[owner(row)?].verifiable_addresses.push(VerifiableAddress {
            id: col(row, "id")?,
            value: col(row, "value")?,
            verified: col(row, "verified")?,
            via: enum_col(row, "via")?,
            status: enum_col(row, "status")?,
            verified_at: col(row, "verified_at")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        });
    }

    let rows = sqlx::query(
        "SELECT id, identity_id, via, value, created_at, updated_at \
         FROM identity_recovery_addresses WHERE identity_id = ANY($1) ORDER BY value COLLATE \"C\", id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    for row in &rows {
        identities[owner(row)?].recovery_addresses.push(RecoveryAddress {
            id: col(row, "id")?,
            value: col(row, "value")?,
            via: enum_col(row, "via")?,
            created_at: col(row, "created_at")?,
            updated_at: col(row, "updated_at")?,
        });
    }
    Ok(identities)
}

/// The available AAL of an identity about to be written whole.
fn available_aal_of(identity: &Identity) -> Aal {
    available_aal(identity.credentials.values().map(|c| (c.kind, &c.config)))
}

/// Derives the identity's available AAL again from the credentials it has
/// now, in the transaction that changed one of them (which holds the
/// identity's row lock, so concurrent changes take turns).
async fn refresh_available_aal(conn: &mut PgConnection, identity_id: Uuid) -> Result<(), StoreError> {
    let rows = sqlx::query("SELECT type, config FROM identity_credentials WHERE identity_id = $1")
        .bind(identity_id)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
    let credentials = rows
        .iter()
        .map(|row| {
            Ok((enum_col::<CredentialType>(row, "type")?, col::<sqlx::types::JsonValue>(row, "config")?))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    let aal = available_aal(credentials.iter().map(|(kind, config)| (*kind, config)));
    sqlx::query("UPDATE identities SET available_aal = $1 WHERE id = $2")
        .bind(aal.as_str())
        .bind(identity_id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Shared with the session join in `whoami`, which selects the same unprefixed
/// columns next to its prefixed session ones.
pub(crate) fn identity_from_row(row: &PgRow) -> Result<Identity, StoreError> {
    Ok(Identity {
        id: col(row, "id")?,
        schema_id: col(row, "schema_id")?,
        state: enum_col(row, "state")?,
        state_changed_at: col(row, "state_changed_at")?,
        traits: col(row, "traits")?,
        metadata_public: col(row, "metadata_public")?,
        metadata_admin: col(row, "metadata_admin")?,
        external_id: col(row, "external_id")?,
        credentials: BTreeMap::new(),
        verifiable_addresses: Vec::new(),
        recovery_addresses: Vec::new(),
        available_aal: enum_col(row, "available_aal")?,
        created_at: col(row, "created_at")?,
        updated_at: col(row, "updated_at")?,
    })
}
