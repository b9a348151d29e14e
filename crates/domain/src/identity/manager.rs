//! Creating, replacing and patching identities: traits are validated by the
//! schema, credentials and addresses are derived from them, and the result
//! is written as one unit.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use latchkey_hash::{HashError, PasswordHasher, SecretPassword};
use serde_json::{Value, json};
use uuid::Uuid;

use super::model::{
    AddressStatus, Credential, CredentialType, Identity, IdentityState, RecoveryAddress, VerifiableAddress,
    Via,
};
use super::patch::{self, PatchError};
use crate::courier::{Message, RenderError};
use crate::schema::{SchemaError, SchemaRegistry, TraitFacts};
use crate::store::{IdentityQuery, Store, StoreError};
use crate::time::Clock;

/// How a password arrives: in clear (hashed here) or already hashed (import).
pub enum PasswordInput {
    Plain(SecretPassword),
    Hashed(String),
}

/// A verifiable address as an administrator states it, used to import
/// addresses that are already verified.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressClaim {
    pub via: Via,
    pub value: String,
    pub verified: bool,
    pub status: Option<AddressStatus>,
    pub verified_at: Option<DateTime<Utc>>,
}

/// The fields an administrator sets when creating an identity.
#[derive(Default)]
pub struct NewIdentity {
    /// Kept from another system when moving identities over; new otherwise.
    pub id: Option<Uuid>,
    /// When the identity was first made, likewise kept; now otherwise.
    pub created_at: Option<DateTime<Utc>>,
    pub schema_id: Option<String>,
    pub traits: Value,
    pub state: Option<IdentityState>,
    pub metadata_public: Option<Value>,
    pub metadata_admin: Option<Value>,
    pub external_id: Option<String>,
    pub password: Option<PasswordInput>,
    pub verifiable_addresses: Vec<AddressClaim>,
}

/// Makes the notices a change sends, from the identity before and after
/// it; an error stops the change.
pub type Notify<'a> = &'a (dyn Fn(&Identity, &Identity) -> Result<Vec<Message>, RenderError> + Send + Sync);

/// A wholesale replacement (PUT): metadata not given becomes null.
pub struct IdentityUpdate {
    pub schema_id: String,
    pub traits: Value,
    pub state: IdentityState,
    pub metadata_public: Option<Value>,
    pub metadata_admin: Option<Value>,
    pub external_id: Option<String>,
    pub password: Option<PasswordInput>,
    pub verifiable_addresses: Vec<AddressClaim>,
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("an identity with the same identifier already exists")]
    Conflict,
    #[error("identity not found")]
    NotFound,
    /// An imported hash is of an unknown format or too costly to verify.
    #[error("{0}")]
    InvalidHash(String),
    #[error("the password is longer than 72 bytes, which bcrypt cannot hash")]
    PasswordTooLong,
    #[error(transparent)]
    InvalidPatch(#[from] PatchError),
    /// Input no database can store as given (e.g. a NUL character).
    #[error("{0}")]
    InvalidInput(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("password hashing failed: {0}")]
    Hashing(#[source] HashError),
    /// A notice the change sends could not be made; the change is not saved.
    #[error("cannot write a notice: {0}")]
    Notice(#[source] RenderError),
    /// The identity has no credential of the type named.
    #[error("this identity has no {0} credential to remove")]
    NoSuchCredential(String),
    /// A credential the admin API may not remove; the text says why.
    #[error("{0}")]
    CredentialKept(String),
}

impl From<StoreError> for IdentityError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => IdentityError::Conflict,
            StoreError::NotFound => IdentityError::NotFound,
            other => IdentityError::Store(other),
        }
    }
}

impl From<HashError> for IdentityError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::PasswordTooLong => IdentityError::PasswordTooLong,
            HashError::UnknownFormat => {
                IdentityError::InvalidHash("The hashed password does not match any known hash format.".into())
            }
            HashError::CostTooHigh { .. } | HashError::Malformed(_) => {
                IdentityError::InvalidHash(format!("The hashed password is not acceptable: {e}"))
            }
            other => IdentityError::Hashing(other),
        }
    }
}

/// The identity use cases shared by the admin API and the self-service flows.
#[derive(Clone)]
pub struct IdentityManager {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    schemas: Arc<SchemaRegistry>,
    hasher: PasswordHasher,
}

impl IdentityManager {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        schemas: Arc<SchemaRegistry>,
        hasher: PasswordHasher,
    ) -> Self {
        Self { store, clock, schemas, hasher }
    }

    pub fn schemas(&self) -> &SchemaRegistry {
        &self.schemas
    }

    pub async fn create(&self, new: NewIdentity) -> Result<Identity, IdentityError> {
        check_storable(&new.traits, &new.metadata_public, &new.metadata_admin, &new.external_id)?;
        let schema_id = new.schema_id.unwrap_or_else(|| self.schemas.default_id().to_string());
        let facts = self.schemas.validate_traits(&schema_id, &new.traits)?;
        let hashed = self.hash(new.password).await?;
        let at = self.clock.now();
        let state = new.state.unwrap_or_default();
        let mut identity = Identity {
            id: new.id.unwrap_or_else(Uuid::new_v4),
            schema_id,
            state,
            state_changed_at: Some(at),
            traits: new.traits,
            metadata_public: new.metadata_public.filter(|v| !v.is_null()),
            metadata_admin: new.metadata_admin.filter(|v| !v.is_null()),
            external_id: new.external_id,
            credentials: BTreeMap::new(),
            verifiable_addresses: Vec::new(),
            recovery_addresses: Vec::new(),
            available_aal: Default::default(),
            created_at: new.created_at.unwrap_or(at),
            updated_at: at,
        };
        apply_facts(&mut identity, &facts, hashed, &new.verifiable_addresses, at);
        self.store.create_identity(&identity).await?;
        Ok(identity)
    }

    pub async fn get(&self, id: Uuid) -> Result<Identity, IdentityError> {
        self.store.get_identity(id).await?.ok_or(IdentityError::NotFound)
    }

    pub async fn list(&self, query: &IdentityQuery) -> Result<Vec<Identity>, IdentityError> {
        Ok(self.store.list_identities(query).await?)
    }

    pub async fn delete(&self, id: Uuid) -> Result<(), IdentityError> {
        if self.store.delete_identity(id).await? { Ok(()) } else { Err(IdentityError::NotFound) }
    }

    /// Removes the identity's credential of type `kind`, as Kratos's admin
    /// API does: second factors (`totp`, `lookup_secret`) go, so support can
    /// help someone who lost their device; the last first factor stays (the
    /// password is Latchkey's only one, so it always stays); other types
    /// cannot be removed this way.
    pub async fn remove_credential(&self, id: Uuid, kind: &str) -> Result<(), IdentityError> {
        let identity = self.get(id).await?;
        let missing = || IdentityError::NoSuchCredential(kind.to_string());
        let kind = kind.parse::<CredentialType>().map_err(|_| missing())?;
        if identity.credential(kind).is_none() {
            return Err(missing());
        }
        match kind {
            CredentialType::Totp | CredentialType::LookupSecret => {}
            CredentialType::Password | CredentialType::Oidc | CredentialType::Saml => {
                return Err(IdentityError::CredentialKept(
                    "The last first-factor credential cannot be removed.".into(),
                ));
            }
            other => {
                return Err(IdentityError::CredentialKept(format!(
                    "{other} credentials cannot be removed here."
                )));
            }
        }
        if self.store.remove_credential(id, kind, self.clock.now()).await? { Ok(()) } else { Err(missing()) }
    }

    /// Replaces traits, state and metadata; credentials stay unless a new
    /// password is given.
    pub async fn replace(&self, id: Uuid, update: IdentityUpdate) -> Result<Identity, IdentityError> {
        let current = self.get(id).await?;
        self.save_update(current, update, None).await
    }

    /// [`replace`](Self::replace), queueing the notices `notify` makes from
    /// the identity before and after the change in the same transaction as
    /// the change (self-service settings tell the owner what changed).
    pub async fn replace_and_notify(
        &self,
        id: Uuid,
        update: IdentityUpdate,
        notify: Notify<'_>,
    ) -> Result<Identity, IdentityError> {
        let current = self.get(id).await?;
        self.save_update(current, update, Some(notify)).await
    }

    /// Applies an RFC 6902 patch to the identity's JSON form.
    pub async fn patch(&self, id: Uuid, ops: &[Value]) -> Result<Identity, IdentityError> {
        let current = self.get(id).await?;
        let update = patch::apply(&current, ops)?;
        self.save_update(current, update, None).await
    }

    async fn save_update(
        &self,
        current: Identity,
        update: IdentityUpdate,
        notify: Option<Notify<'_>>,
    ) -> Result<Identity, IdentityError> {
        // Only what changes is checked, so identities stored before a check
        // existed (SQLite took NUL and long ids) stay editable in settings.
        fn changed<T: Clone + PartialEq>(new: &Option<T>, old: &Option<T>) -> Option<T> {
            if new == old { None } else { new.clone() }
        }
        let traits = if update.traits == current.traits { &Value::Null } else { &update.traits };
        check_storable(
            traits,
            &changed(&update.metadata_public, &current.metadata_public),
            &changed(&update.metadata_admin, &current.metadata_admin),
            &changed(&update.external_id, &current.external_id),
        )?;
        let facts = self.schemas.validate_traits(&update.schema_id, &update.traits)?;
        let hashed = self.hash(update.password).await?;
        let at = self.clock.now();
        let before = notify.is_some().then(|| current.clone());
        let mut identity = current;
        if identity.state != update.state {
            identity.state = update.state;
            identity.state_changed_at = Some(at);
        }
        identity.schema_id = update.schema_id;
        identity.traits = update.traits;
        identity.metadata_public = update.metadata_public.filter(|v| !v.is_null());
        identity.metadata_admin = update.metadata_admin.filter(|v| !v.is_null());
        identity.external_id = update.external_id;
        identity.updated_at = at;
        apply_facts(&mut identity, &facts, hashed, &update.verifiable_addresses, at);
        let notices = match (notify, &before) {
            (Some(notify), Some(before)) => notify(before, &identity).map_err(IdentityError::Notice)?,
            _ => Vec::new(),
        };
        self.store.update_identity_and_notify(&identity, &notices).await?;
        Ok(identity)
    }

    async fn hash(&self, password: Option<PasswordInput>) -> Result<Option<String>, IdentityError> {
        match password {
            None => Ok(None),
            Some(PasswordInput::Hashed(encoded)) => {
                latchkey_hash::validate_imported_hash(&encoded)?;
                Ok(Some(encoded))
            }
            Some(PasswordInput::Plain(password)) => Ok(Some(self.hasher.hash(password).await?)),
        }
    }
}

/// Far above any real external id (UUIDs, database keys, directory DNs).
const MAX_EXTERNAL_ID_BYTES: usize = 1024;

/// PostgreSQL cannot store NUL in text or JSON; refusing it everywhere keeps
/// both databases answering alike, with a 400 instead of a 500.
fn check_storable(
    traits: &Value,
    metadata_public: &Option<Value>,
    metadata_admin: &Option<Value>,
    external_id: &Option<String>,
) -> Result<(), IdentityError> {
    fn has_nul(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::Array(items) => items.iter().any(has_nul),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
            _ => false,
        }
    }
    let fields = [
        ("traits", Some(traits)),
        ("metadata_public", metadata_public.as_ref()),
        ("metadata_admin", metadata_admin.as_ref()),
    ];
    if let Some((name, _)) = fields.iter().find(|(_, v)| v.is_some_and(has_nul)) {
        return Err(IdentityError::InvalidInput(format!("`{name}` must not contain NUL characters.")));
    }
    if external_id.as_deref().is_some_and(|e| e.contains('\0')) {
        return Err(IdentityError::InvalidInput("`external_id` must not contain NUL characters.".into()));
    }
    // `external_id` is unique, so indexed: PostgreSQL refuses index entries
    // past about 2.7 KB (a 500 there, while SQLite took any length).
    if external_id.as_deref().is_some_and(|e| e.len() > MAX_EXTERNAL_ID_BYTES) {
        return Err(IdentityError::InvalidInput(format!(
            "`external_id` is limited to {MAX_EXTERNAL_ID_BYTES} bytes."
        )));
    }
    Ok(())
}

/// Brings credentials and addresses in line with what the traits now say,
/// keeping ids and verification state of addresses that did not change.
fn apply_facts(
    identity: &mut Identity,
    facts: &TraitFacts,
    hashed_password: Option<String>,
    claims: &[AddressClaim],
    at: DateTime<Utc>,
) {
    // As in Kratos, an identifier in the traits creates the password
    // credential (with an empty config) even before a password is set.
    let existing = identity.credentials.remove(&CredentialType::Password);
    let wanted = hashed_password.is_some() || !facts.password_identifiers.is_empty();
    let password = match (existing, hashed_password) {
        (Some(mut c), Some(hash)) => {
            c.config = json!({ "hashed_password": hash });
            c.updated_at = at;
            Some(c)
        }
        (Some(c), None) => Some(c),
        (None, hash) if wanted => Some(Credential {
            id: Uuid::new_v4(),
            kind: CredentialType::Password,
            identifiers: Vec::new(),
            config: hash.map_or_else(|| json!({}), |h| json!({ "hashed_password": h })),
            version: 0,
            created_at: at,
            updated_at: at,
        }),
        (None, _) => None,
    };
    if let Some(mut c) = password {
        if c.identifiers != facts.password_identifiers {
            c.identifiers = facts.password_identifiers.clone();
            c.updated_at = at;
        }
        identity.credentials.insert(CredentialType::Password, c);
    }
    apply_code_identifiers(identity, facts, at);

    let old = std::mem::take(&mut identity.verifiable_addresses);
    identity.verifiable_addresses = facts
        .verifiable_addresses
        .iter()
        .map(|a| {
            let mut address =
                old.iter().find(|o| o.via == a.via && o.value == a.value).cloned().unwrap_or_else(|| {
                    VerifiableAddress {
                        id: Uuid::new_v4(),
                        value: a.value.clone(),
                        verified: false,
                        via: a.via,
                        status: AddressStatus::Pending,
                        verified_at: None,
                        created_at: at,
                        updated_at: at,
                    }
                });
            let claim = claims
                .iter()
                .find(|c| c.via == a.via && crate::schema::normalize(&c.value, c.via) == a.value);
            if let Some(claim) = claim {
                // "completed" means verified; a claim cannot have one without the other.
                let status = if claim.verified {
                    AddressStatus::Completed
                } else {
                    match claim.status.unwrap_or(address.status) {
                        AddressStatus::Completed => AddressStatus::Pending,
                        other => other,
                    }
                };
                let verified_at = match (claim.verified, claim.verified_at, address.verified_at) {
                    (false, _, _) => None,
                    (true, Some(t), _) | (true, None, Some(t)) => Some(t),
                    (true, None, None) => Some(at),
                };
                if (claim.verified, status, verified_at)
                    != (address.verified, address.status, address.verified_at)
                {
                    address.verified = claim.verified;
                    address.status = status;
                    address.verified_at = verified_at;
                    address.updated_at = at;
                }
            }
            address
        })
        .collect();

    let old = std::mem::take(&mut identity.recovery_addresses);
    identity.recovery_addresses = facts
        .recovery_addresses
        .iter()
        .map(|a| {
            old.iter().find(|o| o.via == a.via && o.value == a.value).cloned().unwrap_or_else(|| {
                RecoveryAddress {
                    id: Uuid::new_v4(),
                    value: a.value.clone(),
                    via: a.via,
                    created_at: at,
                    updated_at: at,
                }
            })
        })
        .collect();
}

/// As in Kratos, traits marked `credentials.code.identifier` make the `code`
/// credential: its identifiers are the addresses, its config lists them
/// with their channel. Without such traits it goes.
fn apply_code_identifiers(identity: &mut Identity, facts: &TraitFacts, at: DateTime<Utc>) {
    let existing = identity.credentials.remove(&CredentialType::Code);
    if facts.code_identifiers.is_empty() {
        return;
    }
    let identifiers: Vec<String> = facts.code_identifiers.iter().map(|a| a.value.clone()).collect();
    let addresses: Vec<Value> = facts
        .code_identifiers
        .iter()
        .map(|a| json!({ "channel": a.via.as_str(), "address": a.value }))
        .collect();
    let config = json!({ "addresses": addresses });
    let mut credential = existing.unwrap_or_else(|| Credential {
        id: Uuid::new_v4(),
        kind: CredentialType::Code,
        identifiers: Vec::new(),
        config: json!({}),
        version: 1,
        created_at: at,
        updated_at: at,
    });
    if credential.identifiers != identifiers || credential.config != config {
        credential.identifiers = identifiers;
        credential.config = config;
        credential.updated_at = at;
    }
    identity.credentials.insert(CredentialType::Code, credential);
}
