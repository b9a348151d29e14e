//! The storage contract, written once and run against every backend: each
//! store crate's `tests/contract.rs` calls [`run_all`] with a fresh, migrated
//! store.

use std::collections::BTreeMap;

use chrono::Duration;
use latchkey_domain::identity::{
    AddressStatus, Credential, CredentialType, Identity, IdentityState, RecoveryAddress, VerifiableAddress,
    Via,
};
use latchkey_domain::store::{IdentityQuery, Store, StoreError};
use latchkey_domain::time::now;
use serde_json::json;
use uuid::Uuid;

/// Runs every contract check in turn against `store`.
pub async fn run_all(store: &dyn Store) {
    migrations_are_all_applied(store).await;
    identity_round_trips_with_children(store).await;
    duplicate_identifiers_conflict_and_write_nothing(store).await;
    update_replaces_children(store).await;
    list_pages_by_id_and_filters(store).await;
    delete_cascades(store).await;
}

/// An identity with a password credential and one email address.
pub fn sample_identity(email: &str) -> Identity {
    let at = now();
    let mut credentials = BTreeMap::new();
    credentials.insert(
        CredentialType::Password,
        Credential {
            id: Uuid::new_v4(),
            kind: CredentialType::Password,
            identifiers: vec![email.to_string()],
            config: json!({"hashed_password": "$2a$04$abcdefghijklmnopqrstuv"}),
            version: 0,
            created_at: at,
            updated_at: at,
        },
    );
    Identity {
        id: Uuid::new_v4(),
        schema_id: "default".into(),
        state: IdentityState::Active,
        state_changed_at: Some(at),
        traits: json!({"email": email, "name": {"first": "Ada"}}),
        metadata_public: Some(json!({"plan": "free"})),
        metadata_admin: None,
        external_id: None,
        credentials,
        verifiable_addresses: vec![VerifiableAddress {
            id: Uuid::new_v4(),
            value: email.into(),
            verified: true,
            via: Via::Email,
            status: AddressStatus::Completed,
            verified_at: Some(at - Duration::minutes(1)),
            created_at: at,
            updated_at: at,
        }],
        recovery_addresses: vec![RecoveryAddress {
            id: Uuid::new_v4(),
            value: email.into(),
            via: Via::Email,
            created_at: at,
            updated_at: at,
        }],
        created_at: at,
        updated_at: at,
    }
}

fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::new_v4().simple())
}

async fn migrations_are_all_applied(store: &dyn Store) {
    let status = store.migration_status().await.unwrap();
    assert!(!status.is_empty());
    assert!(status.iter().all(|m| m.applied), "{status:?}");
    store.ping().await.unwrap();
}

async fn identity_round_trips_with_children(store: &dyn Store) {
    let identity = sample_identity(&unique_email("roundtrip"));
    store.create_identity(&identity).await.unwrap();
    let loaded = store.get_identity(identity.id).await.unwrap().unwrap();
    assert_eq!(loaded, identity);
    let found = store
        .find_identity_by_identifier(CredentialType::Password, &identity.verifiable_addresses[0].value)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, identity.id);
    assert!(store.get_identity(Uuid::new_v4()).await.unwrap().is_none());
    assert!(
        store
            .find_identity_by_identifier(CredentialType::Password, "nobody@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

async fn duplicate_identifiers_conflict_and_write_nothing(store: &dyn Store) {
    let email = unique_email("dup");
    store.create_identity(&sample_identity(&email)).await.unwrap();
    let twin = sample_identity(&email);
    match store.create_identity(&twin).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("expected a conflict, got {other:?}"),
    }
    // The identity row of the failed unit of work must not have survived.
    assert!(store.get_identity(twin.id).await.unwrap().is_none());

    // An address alone can conflict too.
    let mut other = sample_identity(&unique_email("dup2"));
    other.recovery_addresses[0].value = email.clone();
    assert!(matches!(store.create_identity(&other).await, Err(StoreError::Conflict(_))));
    assert!(store.get_identity(other.id).await.unwrap().is_none());
}

async fn update_replaces_children(store: &dyn Store) {
    let mut identity = sample_identity(&unique_email("update"));
    store.create_identity(&identity).await.unwrap();
    let new_email = unique_email("updated");
    identity.traits = json!({"email": new_email});
    identity.metadata_public = None;
    identity.metadata_admin = Some(json!({"note": "vip"}));
    identity.state = IdentityState::Inactive;
    identity.credentials.get_mut(&CredentialType::Password).unwrap().identifiers = vec![new_email.clone()];
    identity.verifiable_addresses[0].value = new_email.clone();
    identity.verifiable_addresses[0].verified = false;
    identity.verifiable_addresses[0].verified_at = None;
    identity.verifiable_addresses[0].status = AddressStatus::Pending;
    identity.recovery_addresses.clear();
    identity.updated_at = now();
    store.update_identity(&identity).await.unwrap();
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    // A conflicting update fails whole: the stored identity is unchanged.
    let taken = unique_email("taken");
    store.create_identity(&sample_identity(&taken)).await.unwrap();
    let mut clash = identity.clone();
    clash.traits = json!({"email": taken});
    clash.credentials.get_mut(&CredentialType::Password).unwrap().identifiers = vec![taken.clone()];
    assert!(matches!(store.update_identity(&clash).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    let ghost = sample_identity(&unique_email("ghost"));
    assert!(matches!(store.update_identity(&ghost).await, Err(StoreError::NotFound)));
}

async fn list_pages_by_id_and_filters(store: &dyn Store) {
    let mut created = Vec::new();
    for n in 0..5 {
        let identity = sample_identity(&unique_email(&format!("list{n}")));
        store.create_identity(&identity).await.unwrap();
        created.push(identity.id);
    }
    // Walk every page of two and check ordering and completeness.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page =
            store.list_identities(&IdentityQuery { after, limit: 2, ..Default::default() }).await.unwrap();
        assert!(page.len() <= 2);
        if page.is_empty() {
            break;
        }
        after = Some(page.last().unwrap().id);
        seen.extend(page.into_iter().map(|i| i.id));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages are ordered by id");
    assert!(created.iter().all(|id| seen.contains(id)));

    let target = store.get_identity(created[3]).await.unwrap().unwrap();
    let identifier = target.credentials[&CredentialType::Password].identifiers[0].clone();
    let filtered = store
        .list_identities(&IdentityQuery {
            credentials_identifier: Some(identifier),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(filtered, vec![target]);

    let by_ids = store
        .list_identities(&IdentityQuery { ids: created[..2].to_vec(), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_ids.len(), 2);
}

async fn delete_cascades(store: &dyn Store) {
    let identity = sample_identity(&unique_email("delete"));
    store.create_identity(&identity).await.unwrap();
    assert!(store.delete_identity(identity.id).await.unwrap());
    assert!(!store.delete_identity(identity.id).await.unwrap());
    assert!(store.get_identity(identity.id).await.unwrap().is_none());
    // Its identifier and addresses are free again.
    let again = Identity { id: Uuid::new_v4(), ..identity };
    store.create_identity(&again).await.unwrap();
}
