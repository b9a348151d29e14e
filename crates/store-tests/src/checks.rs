//! The contract checks themselves. Each takes a migrated store, which other
//! checks may be using at the same time, and looks only at rows it created
//! (unique ids and addresses); the few that look further (the courier queue,
//! the cleanup, unfiltered session counts) are marked `[whole_store]` in
//! [`contract_checks!`](crate::contract_checks) and then run alone.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use futures_util::future::join_all;
use latchkey_domain::aal::Aal;
use latchkey_domain::cleanup::{self, CleanupSettings};
use latchkey_domain::flow::errors::FlowErrorRecord;
use latchkey_domain::flow::recovery::RecoveryState;
use latchkey_domain::flow::registration::RegistrationState;
use latchkey_domain::flow::{Flow, FlowRequest, FlowState, FlowType};
use latchkey_domain::identity::{
    AddressStatus, Credential, CredentialType, Identity, IdentityState, RecoveryAddress, VerifiableAddress,
    Via,
};
use latchkey_domain::session::{
    AuthenticationMethod, Device, LOGOUT_TOKEN_PREFIX, SESSION_TOKEN_PREFIX, Session, hash_token,
    random_token,
};
use latchkey_domain::store::{
    CleanupReport, CleanupStep, CodePurpose, CodeRequest, IdentityQuery, OneTimeCode, RateWindow,
    SessionQuery, Store, StoreError, StoredPassword, WindowCount,
};
use latchkey_domain::text;
use latchkey_domain::time::{Clock, SystemClock};
use latchkey_domain::ui::{Group, Node};
use serde_json::json;
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    SystemClock.now()
}

/// A native recovery flow whose code went to `address`, living `lifespan`.
pub fn sent_recovery_flow(address: &str, lifespan: Duration) -> Flow {
    let request = FlowRequest {
        flow_type: FlowType::Api,
        request_url: "http://127.0.0.1:4433/self-service/recovery/api".into(),
        return_to: None,
        after_verification_return_to: None,
        csrf_hash: None,
    };
    let state = RecoveryState::SentEmail { address: address.into(), admin_issued: false };
    Flow::new(&request, now(), lifespan, "http://127.0.0.1:4433", FlowState::Recovery(state))
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
        available_aal: Default::default(),
        created_at: at,
        updated_at: at,
    }
}

pub(crate) fn unique_email(tag: &str) -> String {
    format!("{tag}-{}@example.com", Uuid::new_v4().simple())
}

pub async fn migrations_are_all_applied(store: &dyn Store) {
    let status = store.migration_status().await.unwrap();
    assert!(!status.is_empty());
    assert!(status.iter().all(|m| m.applied), "{status:?}");
    store.ping().await.unwrap();
}

pub async fn identity_round_trips_with_children(store: &dyn Store) {
    let identity = sample_identity(&unique_email("roundtrip"));
    store.create_identity(&identity).await.unwrap();
    let loaded = store.get_identity(identity.id).await.unwrap().unwrap();
    assert_eq!(loaded, identity);
    assert!(store.get_identity(Uuid::new_v4()).await.unwrap().is_none());
}

pub async fn password_by_identifier_finds_the_owner_and_hash(store: &dyn Store) {
    let identity = sample_identity(&unique_email("password"));
    store.create_identity(&identity).await.unwrap();
    let email = &identity.verifiable_addresses[0].value;
    assert_eq!(
        store.password_by_identifier(email).await.unwrap(),
        Some(StoredPassword {
            identity_id: identity.id,
            hashed_password: Some("$2a$04$abcdefghijklmnopqrstuv".into()),
        })
    );
    assert_eq!(store.password_by_identifier(&unique_email("nobody")).await.unwrap(), None);

    // A password credential with identifiers but no hash yet (or a hash
    // that is not a string) has an owner and no hash.
    for config in [json!({}), json!({"hashed_password": 12})] {
        let mut unset = sample_identity(&unique_email("unset"));
        unset.credentials.get_mut(&CredentialType::Password).unwrap().config = config;
        store.create_identity(&unset).await.unwrap();
        let found = store.password_by_identifier(&unset.verifiable_addresses[0].value).await.unwrap();
        assert_eq!(found, Some(StoredPassword { identity_id: unset.id, hashed_password: None }));
    }

    // Only password identifiers count.
    let mut other = sample_identity(&unique_email("other"));
    let mut credential = other.credentials.remove(&CredentialType::Password).unwrap();
    credential.kind = CredentialType::Code;
    other.credentials.insert(CredentialType::Code, credential);
    store.create_identity(&other).await.unwrap();
    assert_eq!(store.password_by_identifier(&other.verifiable_addresses[0].value).await.unwrap(), None);
}

pub async fn duplicate_identifiers_conflict_and_write_nothing(store: &dyn Store) {
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

pub async fn update_replaces_children(store: &dyn Store) {
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

pub async fn list_pages_by_id_and_filters(store: &dyn Store) {
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

pub async fn delete_cascades(store: &dyn Store) {
    let identity = sample_identity(&unique_email("delete"));
    store.create_identity(&identity).await.unwrap();
    assert!(store.delete_identity(identity.id).await.unwrap());
    assert!(!store.delete_identity(identity.id).await.unwrap());
    assert!(store.get_identity(identity.id).await.unwrap().is_none());
    // Its identifier and addresses are free again.
    let again = Identity { id: Uuid::new_v4(), ..identity };
    store.create_identity(&again).await.unwrap();
}

pub async fn flow_round_trips(store: &dyn Store) {
    let request = FlowRequest {
        flow_type: FlowType::Browser,
        request_url: "http://127.0.0.1:4433/self-service/login/browser?return_to=%2Fwelcome".into(),
        return_to: Some("http://127.0.0.1:3000/welcome".into()),
        after_verification_return_to: Some("http://127.0.0.1:3000/verified".into()),
        csrf_hash: Some(hash_token("csrf-secret")),
    };
    // A state with data (registration's accepted traits) survives too.
    let traits = Some(json!({"email": "flow@example.com"}));
    let mut flow = Flow::new(
        &request,
        now(),
        Duration::minutes(10),
        "http://127.0.0.1:4433",
        FlowState::Registration(RegistrationState::ChooseMethod { traits }),
    );
    flow.ui.nodes.push(Node::submit(Group::Password, "password", text::label_sign_in_with_password()));
    flow.identity_id = Some(Uuid::new_v4());
    // Free-form JSON must survive a jsonb column: nesting, floats, nulls, non-ASCII.
    flow.transient_payload =
        Some(json!({"nested": {"ratio": 1.5, "list": [1, "two", null]}, "note": "Grüße ✓"}));
    store.create_flow(&flow).await.unwrap();
    assert_eq!(store.get_flow(flow.id).await.unwrap(), Some(flow.clone()));
    assert!(matches!(store.create_flow(&flow).await, Err(StoreError::Conflict(_))));

    flow.state = FlowState::Registration(RegistrationState::PassedChallenge);
    flow.active = Some("password".into());
    flow.refresh = true;
    flow.requested_aal = "aal2".into();
    flow.ui.add_message(Some("csrf_token"), text::invalid_credentials());
    flow.ui.add_message(None, text::validation_generic("something is off"));
    flow.expires_at += Duration::minutes(5);
    flow.updated_at = now();
    store.update_flow(&flow).await.unwrap();
    assert_eq!(store.get_flow(flow.id).await.unwrap(), Some(flow.clone()));

    let ghost = Flow { id: Uuid::new_v4(), ..flow };
    assert!(matches!(store.update_flow(&ghost).await, Err(StoreError::NotFound)));
    assert!(store.get_flow(ghost.id).await.unwrap().is_none());
}

/// An error kept for the error UI reads back whole, JSON and times alike;
/// ids are unique.
pub async fn flow_error_round_trips(store: &dyn Store) {
    let error = json!({
        "id": "security_csrf_violation", "code": 403, "status": "Forbidden",
        "reason": "Grüße ✓", "details": {"ratio": 1.5, "list": [1, null]}, "message": "m",
    });
    let record = FlowErrorRecord::new(error, now());
    store.create_flow_error(&record).await.unwrap();
    assert_eq!(store.get_flow_error(record.id).await.unwrap(), Some(record.clone()));
    assert!(matches!(store.create_flow_error(&record).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_flow_error(Uuid::new_v4()).await.unwrap(), None);
}

/// A fresh live session of `identity_id`, as the login flow issues it.
fn live_session(identity_id: Uuid) -> Session {
    let device = Device {
        id: Uuid::new_v4(),
        ip_address: Some("203.0.113.7".into()),
        user_agent: Some("Mozilla/5.0 (contract test)".into()),
        location: Some("Berlin, DE".into()),
    };
    latchkey_domain::session::issue(identity_id, "password", now(), Duration::hours(1), device).session
}

/// A session whose flag is still set but whose lifetime ran out a minute ago.
fn expired_session(identity_id: Uuid) -> Session {
    let mut session = live_session(identity_id);
    let at = now() - Duration::hours(2);
    session.issued_at = at;
    session.authenticated_at = at;
    session.expires_at = now() - Duration::minutes(1);
    session.authentication_methods[0].completed_at = at;
    session.created_at = at;
    session.updated_at = at;
    session
}

fn revoked_session(identity_id: Uuid) -> Session {
    Session { active: false, ..live_session(identity_id) }
}

fn session_query(identity_id: Option<Uuid>, active: Option<bool>) -> SessionQuery {
    SessionQuery { identity_id, active, limit: 1000, ..Default::default() }
}

fn sorted_by_id(mut sessions: Vec<Session>) -> Vec<Session> {
    sessions.sort_by_key(|s| s.id);
    sessions
}

/// An identity with no credentials, addresses or metadata.
fn bare_identity() -> Identity {
    Identity {
        credentials: BTreeMap::new(),
        verifiable_addresses: Vec::new(),
        recovery_addresses: Vec::new(),
        ..sample_identity(&unique_email("bare"))
    }
}

pub async fn session_by_token_joins_the_identity(store: &dyn Store) {
    // Several addresses of each kind, in the order every loader returns them:
    // by value, bytewise ("+" < "Z" < "a"), which a locale collation would not keep.
    let mut identity = sample_identity(&format!("ada-{}@example.com", Uuid::new_v4().simple()));
    let at = now();
    identity.verifiable_addresses.push(VerifiableAddress {
        id: Uuid::new_v4(),
        value: format!("Zoe-{}@example.com", Uuid::new_v4().simple()),
        verified: false,
        via: Via::Email,
        status: AddressStatus::Sent,
        verified_at: None,
        created_at: at,
        updated_at: at,
    });
    let phone = format!("+4915{}", &Uuid::new_v4().as_u128().to_string()[..9]);
    identity.verifiable_addresses.push(VerifiableAddress {
        id: Uuid::new_v4(),
        value: phone.clone(),
        verified: false,
        via: Via::Sms,
        status: AddressStatus::Pending,
        verified_at: None,
        created_at: at - Duration::days(3),
        updated_at: at,
    });
    identity.recovery_addresses.push(RecoveryAddress {
        id: Uuid::new_v4(),
        value: phone,
        via: Via::Sms,
        created_at: at,
        updated_at: at,
    });
    identity.verifiable_addresses.sort_by(|a, b| (&a.value, a.id).cmp(&(&b.value, b.id)));
    identity.recovery_addresses.sort_by(|a, b| (&a.value, a.id).cmp(&(&b.value, b.id)));
    store.create_identity(&identity).await.unwrap();

    let mut session = live_session(identity.id);
    session.aal = "aal2".into();
    session.authentication_methods.push(AuthenticationMethod {
        method: "totp".into(),
        aal: "aal2".into(),
        completed_at: now(),
    });
    session.devices.push(Device { id: Uuid::new_v4(), ip_address: None, user_agent: None, location: None });
    store.create_session(&session).await.unwrap();

    let (found, owner) = store.session_by_token(&session.token_hash).await.unwrap().unwrap();
    assert_eq!(found, session);
    let expected = Identity { credentials: BTreeMap::new(), ..identity.clone() };
    assert_eq!(owner, expected);
    let mut loaded = store.get_identity(identity.id).await.unwrap().unwrap();
    loaded.credentials.clear();
    assert_eq!(owner, loaded, "whoami and the identity loader agree");

    assert_eq!(
        store.session_by_logout_token(&session.logout_token_hash).await.unwrap(),
        Some(session.clone())
    );
    assert_eq!(store.get_session(session.id).await.unwrap(), Some(session.clone()));
    // The two tokens are not interchangeable.
    assert!(store.session_by_token(&session.logout_token_hash).await.unwrap().is_none());
    assert!(store.session_by_logout_token(&session.token_hash).await.unwrap().is_none());
    let unknown = hash_token(&random_token(SESSION_TOKEN_PREFIX));
    assert!(store.session_by_token(&unknown).await.unwrap().is_none());
    assert!(store.session_by_logout_token(&unknown).await.unwrap().is_none());
    assert!(store.get_session(Uuid::new_v4()).await.unwrap().is_none());

    // No addresses at all come back as empty lists.
    let bare = bare_identity();
    store.create_identity(&bare).await.unwrap();
    let session = live_session(bare.id);
    store.create_session(&session).await.unwrap();
    assert_eq!(store.session_by_token(&session.token_hash).await.unwrap(), Some((session, bare)));

    // The store does not judge liveness: revoked and expired sessions are
    // found, and the caller decides.
    let revoked = revoked_session(identity.id);
    let expired = expired_session(identity.id);
    for stale in [revoked, expired] {
        store.create_session(&stale).await.unwrap();
        let (found, _) = store.session_by_token(&stale.token_hash).await.unwrap().unwrap();
        assert!(!found.is_live(now()));
        assert_eq!(found, stale);
    }
}

pub async fn session_tokens_are_unique(store: &dyn Store) {
    let identity = bare_identity();
    store.create_identity(&identity).await.unwrap();
    let session = live_session(identity.id);
    store.create_session(&session).await.unwrap();

    let same_token = Session {
        id: Uuid::new_v4(),
        logout_token_hash: hash_token(&random_token(LOGOUT_TOKEN_PREFIX)),
        ..session.clone()
    };
    assert!(matches!(store.create_session(&same_token).await, Err(StoreError::Conflict(_))));
    assert!(store.get_session(same_token.id).await.unwrap().is_none());

    let same_logout_token = Session {
        id: Uuid::new_v4(),
        token_hash: hash_token(&random_token(SESSION_TOKEN_PREFIX)),
        ..session.clone()
    };
    assert!(matches!(store.create_session(&same_logout_token).await, Err(StoreError::Conflict(_))));
    assert!(store.get_session(same_logout_token.id).await.unwrap().is_none());

    let same_id = live_session(identity.id);
    assert!(matches!(
        store.create_session(&Session { id: session.id, ..same_id }).await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn list_and_count_sessions(store: &dyn Store) {
    let owner = bare_identity();
    let other = bare_identity();
    store.create_identity(&owner).await.unwrap();
    store.create_identity(&other).await.unwrap();
    let live: Vec<Session> = (0..3).map(|_| live_session(owner.id)).collect();
    let stale = vec![expired_session(owner.id), revoked_session(owner.id)];
    let elsewhere = live_session(other.id);
    for session in live.iter().chain(&stale).chain([&elsewhere]) {
        store.create_session(session).await.unwrap();
    }
    let all = sorted_by_id(live.iter().chain(&stale).cloned().collect());
    let live = sorted_by_id(live);
    let stale = sorted_by_id(stale);

    let by_owner = session_query(Some(owner.id), None);
    assert_eq!(store.list_sessions(&by_owner, now()).await.unwrap(), all);
    assert_eq!(store.list_sessions(&session_query(Some(owner.id), Some(true)), now()).await.unwrap(), live);
    assert_eq!(store.list_sessions(&session_query(Some(owner.id), Some(false)), now()).await.unwrap(), stale);
    assert_eq!(
        store.list_sessions(&session_query(Some(other.id), None), now()).await.unwrap(),
        vec![elsewhere.clone()]
    );
    assert!(store.list_sessions(&session_query(Some(Uuid::new_v4()), None), now()).await.unwrap().is_empty());

    // Unfiltered: every identity's sessions, still in id order.
    let everything = store.list_sessions(&session_query(None, None), now()).await.unwrap();
    assert!(everything.windows(2).all(|w| w[0].id < w[1].id), "ordered by id");
    assert!(all.iter().chain([&elsewhere]).all(|s| everything.contains(s)));
    let live_everywhere = store.list_sessions(&session_query(None, Some(true)), now()).await.unwrap();
    assert!(live_everywhere.iter().all(|s| s.is_live(now())));
    assert!(live_everywhere.contains(&elsewhere) && !live_everywhere.contains(&stale[0]));

    // Keyset pages of two walk the whole list once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page =
            store.list_sessions(&SessionQuery { after, limit: 2, ..by_owner.clone() }, now()).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        seen.extend(page);
    }
    assert_eq!(seen, all);
    let after_first = SessionQuery { after: Some(all[0].id), ..session_query(Some(owner.id), Some(true)) };
    let expected: Vec<Session> = live.iter().filter(|s| s.id > all[0].id).cloned().collect();
    assert_eq!(store.list_sessions(&after_first, now()).await.unwrap(), expected);

    // Offset and limit.
    let window = SessionQuery { offset: 1, limit: 2, ..by_owner.clone() };
    assert_eq!(store.list_sessions(&window, now()).await.unwrap(), all[1..3]);
    let past_the_end = SessionQuery { offset: 5, ..by_owner.clone() };
    assert!(store.list_sessions(&past_the_end, now()).await.unwrap().is_empty());

    // One session left out, as when listing a user's "other" sessions.
    let without_first = SessionQuery { exclude: Some(all[0].id), ..by_owner.clone() };
    assert_eq!(store.list_sessions(&without_first, now()).await.unwrap(), all[1..]);

    // Counts apply the same filters and ignore offset and limit.
    for query in [
        by_owner.clone(),
        session_query(Some(owner.id), Some(true)),
        session_query(Some(owner.id), Some(false)),
        session_query(Some(other.id), None),
        session_query(None, None),
        session_query(None, Some(false)),
        after_first.clone(),
        without_first.clone(),
    ] {
        let listed = store.list_sessions(&query, now()).await.unwrap().len() as u64;
        assert_eq!(store.count_sessions(&query, now()).await.unwrap(), listed, "{query:?}");
        assert_eq!(
            store
                .count_sessions(&SessionQuery { offset: 1, limit: 1, ..query.clone() }, now())
                .await
                .unwrap(),
            listed
        );
    }
    assert_eq!(store.count_sessions(&by_owner, now()).await.unwrap(), 5);
    // Liveness is judged at the time the caller gives: two hours on, every one has expired.
    let later = now() + Duration::hours(2);
    assert!(store.list_sessions(&session_query(Some(owner.id), Some(true)), later).await.unwrap().is_empty());
    assert_eq!(store.count_sessions(&session_query(Some(owner.id), Some(false)), later).await.unwrap(), 5);
}

pub async fn revoke_extend_and_delete_sessions(store: &dyn Store) {
    let owner = bare_identity();
    let other = bare_identity();
    store.create_identity(&owner).await.unwrap();
    store.create_identity(&other).await.unwrap();
    let live: Vec<Session> = (0..4).map(|_| live_session(owner.id)).collect();
    let expired = expired_session(owner.id);
    let revoked = revoked_session(owner.id);
    let elsewhere = live_session(other.id);
    for session in live.iter().chain([&expired, &revoked, &elsewhere]) {
        store.create_session(session).await.unwrap();
    }
    let live_of = |id| session_query(Some(id), Some(true));

    assert!(store.revoke_session(live[0].id, now()).await.unwrap());
    assert!(!store.get_session(live[0].id).await.unwrap().unwrap().active);
    let (found, _) = store.session_by_token(&live[0].token_hash).await.unwrap().unwrap();
    assert!(!found.active);
    assert!(!store.revoke_session(Uuid::new_v4(), now()).await.unwrap());
    assert_eq!(store.count_sessions(&live_of(owner.id), now()).await.unwrap(), 3);

    // Only live sessions are counted: the revoked ones and the expired one stay as they are.
    assert_eq!(store.revoke_sessions_of(owner.id, Some(live[1].id), now()).await.unwrap(), 2);
    assert_eq!(store.list_sessions(&live_of(owner.id), now()).await.unwrap(), vec![live[1].clone()]);
    assert!(!store.get_session(live[2].id).await.unwrap().unwrap().active);
    assert!(!store.get_session(live[3].id).await.unwrap().unwrap().active);
    assert!(store.get_session(expired.id).await.unwrap().unwrap().active);
    assert_eq!(store.list_sessions(&live_of(other.id), now()).await.unwrap(), vec![elsewhere.clone()]);
    assert_eq!(store.revoke_sessions_of(owner.id, None, now()).await.unwrap(), 1);
    assert_eq!(store.count_sessions(&live_of(owner.id), now()).await.unwrap(), 0);
    assert_eq!(store.revoke_sessions_of(owner.id, None, now()).await.unwrap(), 0);
    assert_eq!(store.revoke_sessions_of(Uuid::new_v4(), None, now()).await.unwrap(), 0);

    // Extending sets the new expiry exactly and can bring an expired session back.
    let until = now() + Duration::hours(24);
    assert!(store.extend_session(expired.id, until, now()).await.unwrap());
    let extended = store.get_session(expired.id).await.unwrap().unwrap();
    assert_eq!(extended.expires_at, until);
    assert!(extended.is_live(now()));
    assert_eq!(store.list_sessions(&live_of(owner.id), now()).await.unwrap(), vec![extended]);
    assert!(!store.extend_session(Uuid::new_v4(), until, now()).await.unwrap());

    assert_eq!(store.delete_sessions_of(owner.id).await.unwrap(), 6);
    assert_eq!(store.count_sessions(&session_query(Some(owner.id), None), now()).await.unwrap(), 0);
    assert!(store.get_session(live[1].id).await.unwrap().is_none());
    assert!(store.session_by_token(&live[1].token_hash).await.unwrap().is_none());
    assert_eq!(store.delete_sessions_of(owner.id).await.unwrap(), 0);
    assert_eq!(store.get_session(elsewhere.id).await.unwrap(), Some(elsewhere));
}

pub async fn second_factor_raises_the_session_and_appends_its_method(store: &dyn Store) {
    let owner = bare_identity();
    store.create_identity(&owner).await.unwrap();
    let session = live_session(owner.id);
    let expired = expired_session(owner.id);
    let revoked = revoked_session(owner.id);
    for s in [&session, &expired, &revoked] {
        store.create_session(s).await.unwrap();
    }
    let at = now();
    let until = at + Duration::hours(24);
    let method =
        |name: &str| AuthenticationMethod { method: name.into(), aal: "aal2".into(), completed_at: at };
    // Parallel completions each append: none is lost.
    let (totp, lookup) = (method("totp"), method("lookup_secret"));
    let done = join_all([
        store.complete_second_factor(session.id, &totp, until),
        store.complete_second_factor(session.id, &lookup, until),
    ])
    .await;
    assert!(done.into_iter().all(|d| d.unwrap()));
    let (raised, _) = store.session_by_token(&session.token_hash).await.unwrap().unwrap();
    assert_eq!(raised.aal, "aal2");
    assert_eq!((raised.authenticated_at, raised.expires_at, raised.updated_at), (at, until, at));
    assert_eq!(raised.authentication_methods.len(), session.authentication_methods.len() + 2);
    assert_eq!(
        raised.authentication_methods[..session.authentication_methods.len()],
        session.authentication_methods[..]
    );
    let added: Vec<_> = raised.authentication_methods[session.authentication_methods.len()..].to_vec();
    assert!(added.contains(&totp) && added.contains(&lookup));
    // Only live sessions step up.
    for gone in [expired.id, revoked.id, Uuid::new_v4()] {
        assert!(!store.complete_second_factor(gone, &totp, until).await.unwrap());
    }
    assert_eq!(store.get_session(expired.id).await.unwrap().unwrap().aal, expired.aal);
    assert_eq!(store.get_session(revoked.id).await.unwrap().unwrap().aal, revoked.aal);
}

pub async fn deleting_an_identity_deletes_its_sessions(store: &dyn Store) {
    let identity = sample_identity(&unique_email("session-cascade"));
    store.create_identity(&identity).await.unwrap();
    let sessions = [live_session(identity.id), revoked_session(identity.id)];
    for session in &sessions {
        store.create_session(session).await.unwrap();
    }
    assert!(store.delete_identity(identity.id).await.unwrap());
    for session in &sessions {
        assert!(store.get_session(session.id).await.unwrap().is_none());
        assert!(store.session_by_token(&session.token_hash).await.unwrap().is_none());
        assert!(store.session_by_logout_token(&session.logout_token_hash).await.unwrap().is_none());
    }
    assert_eq!(store.count_sessions(&session_query(Some(identity.id), None), now()).await.unwrap(), 0);
}

fn sample_message(recipient: &str) -> latchkey_domain::courier::Message {
    latchkey_domain::courier::Message::new(
        recipient,
        latchkey_domain::courier::Rendered {
            subject: "Your code: 123456".into(),
            text: "Use 123456.".into(),
            html: Some("<p>Use 123456.</p>".into()),
        },
        "recovery_code_valid",
        now(),
    )
}

/// The pool gauges the metrics read: a store that just answered has a
/// connection open, and never more than its maximum.
pub async fn pool_usage_is_plausible(store: &dyn Store) {
    store.ping().await.unwrap();
    let usage = store.pool_usage();
    assert!(usage.size >= 1, "{usage:?}");
    assert!(usage.idle <= usage.size && usage.size <= usage.max, "{usage:?}");
}

pub async fn outbox_claims_each_message_once(store: &dyn Store) {
    use latchkey_domain::courier::MessageStatus;
    // Claim whatever other checks left due, so the claims below are exact;
    // what waits for a retry stays queued, and is counted.
    let lease = now() + Duration::minutes(5);
    while !store.claim_messages(100, now(), lease).await.unwrap().is_empty() {}

    let first = sample_message(&unique_email("outbox-a"));
    let second = sample_message(&unique_email("outbox-b"));
    let drained = store.count_unsent().await.unwrap();
    store.enqueue_message(&first).await.unwrap();
    store.enqueue_message(&second).await.unwrap();
    assert!(matches!(store.enqueue_message(&first).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.count_unsent().await.unwrap().queued, drained.queued + 2);

    let claimed = store.claim_messages(1, now(), lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let unsent = store.count_unsent().await.unwrap();
    assert_eq!((unsent.queued, unsent.processing), (drained.queued + 1, drained.processing + 1));
    assert_eq!(claimed[0].status, MessageStatus::Processing);
    let rest = store.claim_messages(10, now(), lease).await.unwrap();
    assert_eq!(rest.len(), 1, "a claimed message is not handed out again");
    assert_ne!(rest[0].id, claimed[0].id);
    assert!(store.claim_messages(10, now(), lease).await.unwrap().is_empty());

    // A lapsed claim (a dispatcher died mid-send) makes the message due again.
    let lapsed = sample_message(&unique_email("outbox-c"));
    store.enqueue_message(&lapsed).await.unwrap();
    let taken = store.claim_messages(10, now(), now() - Duration::seconds(1)).await.unwrap();
    assert_eq!(taken.len(), 1);
    let again = store.claim_messages(10, now(), lease).await.unwrap();
    assert_eq!(again.iter().map(|m| m.id).collect::<Vec<_>>(), vec![lapsed.id]);
}

/// A message put back after a failure waits out its backoff: claims skip it
/// until its next attempt time, and its code's expiry is read back.
pub async fn outbox_holds_retries_until_their_time(store: &dyn Store) {
    use chrono::TimeZone;
    use latchkey_domain::courier::{Dispatch, Message, MessageStatus};
    let lease = now() + Duration::minutes(5);
    let expires = Utc.timestamp_opt(now().timestamp() + 900, 0).unwrap();
    let later = Message { code_expires_at: Some(expires), ..sample_message(&unique_email("outbox-later")) };
    let due = sample_message(&unique_email("outbox-due"));
    store.enqueue_message(&later).await.unwrap();
    store.enqueue_message(&due).await.unwrap();
    let mut claimed = Vec::new();
    loop {
        let batch = store.claim_messages(100, now(), lease).await.unwrap();
        if batch.is_empty() {
            break;
        }
        claimed.extend(batch);
    }
    let read = claimed.iter().find(|m| m.id == later.id).expect("claimed");
    assert_eq!(read.code_expires_at, Some(expires));
    assert!(claimed.iter().any(|m| m.id == due.id));

    let failed = |message_id| Dispatch {
        id: Uuid::new_v4(),
        message_id,
        status: "failed".into(),
        error: Some("421 try again later".into()),
        created_at: now(),
        updated_at: now(),
    };
    let in_an_hour = now() + Duration::hours(1);
    store.record_dispatch(&failed(later.id), MessageStatus::Queued, Some(in_an_hour)).await.unwrap();
    let a_second_ago = now() - Duration::seconds(1);
    store.record_dispatch(&failed(due.id), MessageStatus::Queued, Some(a_second_ago)).await.unwrap();
    let again: Vec<_> =
        store.claim_messages(100, now(), lease).await.unwrap().into_iter().map(|m| m.id).collect();
    assert!(again.contains(&due.id), "its time has come");
    assert!(!again.contains(&later.id), "not before its next attempt time");
    let (waiting, _) = store.get_message(later.id).await.unwrap().unwrap();
    assert_eq!((waiting.status, waiting.send_count), (MessageStatus::Queued, 1));
}

pub async fn outbox_records_dispatches_and_filters(store: &dyn Store) {
    use latchkey_domain::courier::{Dispatch, MessageStatus};
    use latchkey_domain::store::MessageQuery;
    let recipient = unique_email("outbox-d");
    let message = sample_message(&recipient);
    store.enqueue_message(&message).await.unwrap();
    let at = now();
    let failed = Dispatch {
        id: Uuid::new_v4(),
        message_id: message.id,
        status: "failed".into(),
        error: Some("connection refused".into()),
        created_at: at,
        updated_at: at,
    };
    store.record_dispatch(&failed, MessageStatus::Queued, None).await.unwrap();
    let later = at + Duration::milliseconds(5);
    let sent = Dispatch {
        id: Uuid::new_v4(),
        status: "success".into(),
        error: None,
        created_at: later,
        updated_at: later,
        ..failed.clone()
    };
    store.record_dispatch(&sent, MessageStatus::Sent, None).await.unwrap();

    let (loaded, dispatches) = store.get_message(message.id).await.unwrap().unwrap();
    assert_eq!(loaded.status, MessageStatus::Sent);
    assert_eq!(loaded.send_count, 2);
    assert_eq!(
        (loaded.subject.as_str(), loaded.html_body.as_deref()),
        ("Your code: 123456", Some("<p>Use 123456.</p>"))
    );
    assert_eq!(dispatches.len(), 2);
    assert_eq!(dispatches[0].error.as_deref(), Some("connection refused"));
    assert!(store.get_message(Uuid::new_v4()).await.unwrap().is_none());
    let ghost = Dispatch { id: Uuid::new_v4(), message_id: Uuid::new_v4(), ..sent };
    assert!(store.record_dispatch(&ghost, MessageStatus::Sent, None).await.is_err());

    let by_recipient = store
        .list_messages(&MessageQuery { recipient: Some(recipient.clone()), limit: 10, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(by_recipient.iter().map(|m| m.id).collect::<Vec<_>>(), vec![message.id]);
    let sent_only = store
        .list_messages(&MessageQuery { status: Some(MessageStatus::Sent), limit: 1000, ..Default::default() })
        .await
        .unwrap();
    assert!(
        sent_only.iter().all(|m| m.status == MessageStatus::Sent)
            && sent_only.iter().any(|m| m.id == message.id)
    );
}

/// Messages list newest first, as Kratos lists them, and pages follow on
/// from a message's time and id without gaps or repeats, same times included.
pub async fn messages_list_newest_first_in_pages(store: &dyn Store) {
    use latchkey_domain::courier::Message;
    use latchkey_domain::store::{MessageCursor, MessageQuery};
    let recipient = unique_email("pages");
    let base = now();
    let mut made = Vec::new();
    // Two share a time, so the id decides between them.
    for offset in [0, 1, 1, 2, 3] {
        let message = Message {
            id: Uuid::new_v4(),
            recipient: recipient.clone(),
            created_at: base + chrono::Duration::seconds(offset),
            updated_at: base,
            ..sample_message(&recipient)
        };
        store.enqueue_message(&message).await.unwrap();
        made.push(message);
    }
    let mut expected = made.clone();
    expected.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    let expected: Vec<Uuid> = expected.iter().map(|m| m.id).collect();
    let query =
        |after| MessageQuery { recipient: Some(recipient.clone()), after, limit: 2, ..Default::default() };
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_messages(&query(after)).await.unwrap();
        seen.extend(page.iter().map(|m| m.id));
        match page.last() {
            Some(last) if page.len() == 2 => {
                after = Some(MessageCursor { created_at: last.created_at, id: last.id });
            }
            _ => break,
        }
    }
    assert_eq!(seen, expected);
}

fn one_time_code(
    purpose: CodePurpose,
    flow_id: Uuid,
    identity_id: Option<Uuid>,
    address: &str,
) -> OneTimeCode {
    let at = now();
    OneTimeCode {
        id: Uuid::new_v4(),
        flow_id,
        purpose,
        identity_id,
        address: address.into(),
        code_hmac: format!("{:064x}", Uuid::new_v4().as_u128()),
        expires_at: at + Duration::minutes(15),
        used_at: None,
        created_at: at,
    }
}

fn recovery_code(flow_id: Uuid, identity_id: Option<Uuid>, address: &str) -> OneTimeCode {
    one_time_code(CodePurpose::Recovery, flow_id, identity_id, address)
}

pub async fn code_and_message_are_one_unit(store: &dyn Store) {
    let identity = sample_identity(&unique_email("code-unit"));
    store.create_identity(&identity).await.unwrap();
    let address = identity.recovery_addresses[0].value.clone();
    let flow_id = Uuid::new_v4();
    let code = recovery_code(flow_id, Some(identity.id), &address);
    let message = sample_message(&address);
    store.create_code(&code, Some(&message)).await.unwrap();
    let (stored, _) =
        store.get_message(message.id).await.unwrap().expect("the message is written with the code");
    assert_eq!(stored.recipient, address);
    assert_eq!(store.live_codes(flow_id, now()).await.unwrap(), vec![code.clone()]);

    // A duplicate code id fails the unit: its message is not written either,
    // and the code it clashed with is not retired.
    let orphan = sample_message(&address);
    let again = OneTimeCode { code_hmac: "other".into(), ..code.clone() };
    assert!(matches!(store.create_code(&again, Some(&orphan)).await, Err(StoreError::Conflict(_))));
    assert!(store.get_message(orphan.id).await.unwrap().is_none());
    assert_eq!(store.live_codes(flow_id, now()).await.unwrap(), vec![code.clone()]);

    // A duplicate message fails the unit too, after the code was inserted and
    // the earlier one retired: both are rolled back.
    let unsent = OneTimeCode {
        created_at: code.created_at + Duration::milliseconds(1),
        ..recovery_code(flow_id, Some(identity.id), &address)
    };
    assert!(matches!(store.create_code(&unsent, Some(&message)).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.live_codes(flow_id, now()).await.unwrap(), vec![code.clone()]);

    // No message, and no identity (an unknown address): the code alone.
    let unknown = recovery_code(flow_id, None, &unique_email("code-unknown"));
    let unknown = OneTimeCode { created_at: code.created_at + Duration::milliseconds(2), ..unknown };
    store.create_code(&unknown, None).await.unwrap();
    assert_eq!(store.live_codes(flow_id, now()).await.unwrap(), vec![unknown]);
}

pub async fn identity_change_and_notices_are_one_unit(store: &dyn Store) {
    let mut identity = sample_identity(&unique_email("notice-unit"));
    store.create_identity(&identity).await.unwrap();
    let old = identity.recovery_addresses[0].value.clone();
    identity.metadata_admin = Some(json!({"note": "moved"}));
    identity.updated_at = now();
    let notices = [sample_message(&old), sample_message(&unique_email("notice-second"))];
    store.update_identity_and_notify(&identity, &notices).await.unwrap();
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);
    for notice in &notices {
        let (stored, _) = store.get_message(notice.id).await.unwrap().expect("queued with the change");
        assert_eq!(stored.recipient, notice.recipient);
    }

    // A change that conflicts is not saved, and its notice is not queued.
    let taken = unique_email("notice-taken");
    store.create_identity(&sample_identity(&taken)).await.unwrap();
    let mut clash = identity.clone();
    clash.traits = json!({"email": taken});
    clash.credentials.get_mut(&CredentialType::Password).unwrap().identifiers = vec![taken.clone()];
    let orphan = sample_message(&old);
    let failed = store.update_identity_and_notify(&clash, std::slice::from_ref(&orphan)).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))));
    assert!(store.get_message(orphan.id).await.unwrap().is_none());
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    // A notice that cannot be written (its id is taken) undoes the change.
    let mut unsaid = identity.clone();
    unsaid.metadata_admin = Some(json!({"note": "never saved"}));
    let failed = store.update_identity_and_notify(&unsaid, &notices[..1]).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    let ghost = sample_identity(&unique_email("notice-ghost"));
    let orphan = sample_message(&old);
    let failed = store.update_identity_and_notify(&ghost, std::slice::from_ref(&orphan)).await;
    assert!(matches!(failed, Err(StoreError::NotFound)));
    assert!(store.get_message(orphan.id).await.unwrap().is_none());
}

pub async fn session_and_notices_are_one_unit(store: &dyn Store) {
    let identity = bare_identity();
    store.create_identity(&identity).await.unwrap();
    let session = live_session(identity.id);
    let notice = sample_message(&unique_email("recovered"));
    store.create_session_and_notify(&session, std::slice::from_ref(&notice)).await.unwrap();
    assert_eq!(store.get_session(session.id).await.unwrap(), Some(session.clone()));
    assert!(store.get_message(notice.id).await.unwrap().is_some(), "queued with the session");

    // A session that cannot be created queues nothing.
    let orphan = sample_message(&unique_email("recovered-orphan"));
    let same_id = Session { id: session.id, ..live_session(identity.id) };
    let failed = store.create_session_and_notify(&same_id, std::slice::from_ref(&orphan)).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))));
    assert!(store.get_message(orphan.id).await.unwrap().is_none());

    // A notice that cannot be written undoes the session.
    let unsaid = live_session(identity.id);
    let failed = store.create_session_and_notify(&unsaid, std::slice::from_ref(&notice)).await;
    assert!(matches!(failed, Err(StoreError::Conflict(_))));
    assert!(store.get_session(unsaid.id).await.unwrap().is_none());
}

pub async fn code_purpose_round_trips(store: &dyn Store) {
    for purpose in
        [CodePurpose::Recovery, CodePurpose::Verification, CodePurpose::Login, CodePurpose::Registration]
    {
        assert_eq!(purpose.as_str().parse::<CodePurpose>(), Ok(purpose));
        let identity = sample_identity(&unique_email(purpose.as_str()));
        store.create_identity(&identity).await.unwrap();
        let flow_id = Uuid::new_v4();
        let code =
            one_time_code(purpose, flow_id, Some(identity.id), &identity.verifiable_addresses[0].value);
        store.create_code(&code, Some(&sample_message(&code.address))).await.unwrap();
        assert_eq!(store.live_codes(flow_id, now()).await.unwrap(), vec![code]);
    }
    assert!("settings".parse::<CodePurpose>().is_err());
}

pub async fn creating_a_code_retires_the_flows_earlier_unused_codes(store: &dyn Store) {
    let address = unique_email("code-resend");
    let flow_id = Uuid::new_v4();
    let at = now();
    let first = OneTimeCode {
        created_at: at - Duration::seconds(3),
        ..one_time_code(CodePurpose::Verification, flow_id, None, &address)
    };
    let used = OneTimeCode {
        created_at: at - Duration::seconds(2),
        ..one_time_code(CodePurpose::Verification, flow_id, None, &address)
    };
    let other_flow = one_time_code(CodePurpose::Verification, Uuid::new_v4(), None, &address);
    store.create_code(&other_flow, None).await.unwrap();
    store.create_code(&first, None).await.unwrap();
    // Each code retires the unused one before it: only the newest is live.
    store.create_code(&used, None).await.unwrap();
    assert_eq!(store.live_codes(flow_id, at).await.unwrap(), vec![used.clone()]);
    assert!(!store.use_code(first.id, at).await.unwrap(), "a retired code is gone");
    assert!(store.use_code(used.id, at).await.unwrap());

    let resent = OneTimeCode {
        created_at: at - Duration::seconds(1),
        ..one_time_code(CodePurpose::Verification, flow_id, None, &address)
    };
    let message = sample_message(&address);
    store.create_code(&resent, Some(&message)).await.unwrap();
    assert_eq!(store.live_codes(flow_id, at).await.unwrap(), vec![resent.clone()]);
    assert!(store.get_message(message.id).await.unwrap().is_some());
    // Unused codes of other flows, even to the same address, are not retired.
    assert_eq!(store.live_codes(other_flow.flow_id, at).await.unwrap(), vec![other_flow.clone()]);

    // An expired code is retired too, so it never piles up.
    let flow_id = Uuid::new_v4();
    let expired = OneTimeCode {
        created_at: at - Duration::minutes(20),
        expires_at: at - Duration::minutes(5),
        ..recovery_code(flow_id, None, &address)
    };
    store.create_code(&expired, None).await.unwrap();
    let fresh = recovery_code(flow_id, None, &address);
    store.create_code(&fresh, None).await.unwrap();
    assert_eq!(
        store.live_codes(flow_id, expired.expires_at - Duration::minutes(1)).await.unwrap(),
        vec![fresh]
    );
}

pub async fn live_codes_exclude_used_and_expired(store: &dyn Store) {
    let address = unique_email("code-live");
    let at = now();

    // Expiry is strict: a code is dead at its `expires_at`, and live before.
    let flow_id = Uuid::new_v4();
    let expired = OneTimeCode {
        created_at: at - Duration::minutes(20),
        expires_at: at - Duration::seconds(1),
        ..recovery_code(flow_id, None, &address)
    };
    store.create_code(&expired, None).await.unwrap();
    assert!(store.live_codes(flow_id, at).await.unwrap().is_empty());
    assert!(store.live_codes(flow_id, expired.expires_at).await.unwrap().is_empty());
    let earlier = expired.expires_at - Duration::microseconds(1);
    assert_eq!(store.live_codes(flow_id, earlier).await.unwrap(), vec![expired]);

    // A used code is not live, whether it was used later or stored used.
    let flow_id = Uuid::new_v4();
    let code = recovery_code(flow_id, None, &address);
    store.create_code(&code, None).await.unwrap();
    assert_eq!(store.live_codes(flow_id, at).await.unwrap(), vec![code.clone()]);
    assert!(store.use_code(code.id, at).await.unwrap());
    assert!(store.live_codes(flow_id, at).await.unwrap().is_empty());
    let flow_id = Uuid::new_v4();
    let already = OneTimeCode { used_at: Some(at), ..recovery_code(flow_id, None, &address) };
    store.create_code(&already, None).await.unwrap();
    assert!(store.live_codes(flow_id, at).await.unwrap().is_empty());
    assert!(!store.use_code(already.id, at).await.unwrap());

    assert!(store.live_codes(Uuid::new_v4(), at).await.unwrap().is_empty());
}

pub async fn codes_work_once(store: &dyn Store) {
    let flow_id = Uuid::new_v4();
    let code = recovery_code(flow_id, None, &unique_email("code-once"));
    store.create_code(&code, None).await.unwrap();
    let at = now();
    assert!(store.use_code(code.id, at).await.unwrap());
    assert!(!store.use_code(code.id, at + Duration::seconds(1)).await.unwrap());
    assert!(!store.use_code(Uuid::new_v4(), at).await.unwrap(), "an unknown code is not usable");
    assert!(store.live_codes(flow_id, at).await.unwrap().is_empty());
}

pub async fn code_failures_count_per_address_and_window(store: &dyn Store) {
    let purpose = CodePurpose::Recovery;
    let address = unique_email("code-failures");
    let other = unique_email("code-failures-other");
    let at = now();
    assert_eq!(store.count_code_failures(purpose, &address, at - Duration::hours(1)).await.unwrap(), 0);
    store.record_code_failure(purpose, &address, at - Duration::minutes(30)).await.unwrap();
    store.record_code_failure(purpose, &address, at - Duration::minutes(5)).await.unwrap();
    store.record_code_failure(purpose, &address, at).await.unwrap();
    store.record_code_failure(purpose, &address, at).await.unwrap();
    store.record_code_failure(purpose, &other, at).await.unwrap();
    assert_eq!(store.count_code_failures(purpose, &address, at - Duration::hours(1)).await.unwrap(), 4);
    // The window includes its start.
    assert_eq!(store.count_code_failures(purpose, &address, at - Duration::minutes(5)).await.unwrap(), 3);
    assert_eq!(store.count_code_failures(purpose, &address, at).await.unwrap(), 2);
    assert_eq!(
        store.count_code_failures(purpose, &address, at + Duration::microseconds(1)).await.unwrap(),
        0
    );
    assert_eq!(store.count_code_failures(purpose, &other, at - Duration::hours(1)).await.unwrap(), 1);
}

pub async fn code_failures_count_per_purpose(store: &dyn Store) {
    let address = unique_email("code-failures-purpose");
    let at = now();
    let since = at - Duration::hours(1);
    store.record_code_failure(CodePurpose::Recovery, &address, at).await.unwrap();
    store.record_code_failure(CodePurpose::Recovery, &address, at).await.unwrap();
    assert_eq!(store.count_code_failures(CodePurpose::Recovery, &address, since).await.unwrap(), 2);
    assert_eq!(
        store.count_code_failures(CodePurpose::Verification, &address, since).await.unwrap(),
        0,
        "recovery failures do not count against verification"
    );
    store.record_code_failure(CodePurpose::Verification, &address, at).await.unwrap();
    assert_eq!(store.count_code_failures(CodePurpose::Verification, &address, since).await.unwrap(), 1);
    assert_eq!(store.count_code_failures(CodePurpose::Recovery, &address, since).await.unwrap(), 2);
}

pub async fn code_attempts_count_atomically_per_flow(store: &dyn Store) {
    let new_flow = || sent_recovery_flow("", Duration::minutes(10));
    let flow = new_flow();
    store.create_flow(&flow).await.unwrap();
    // Many at once: each gets its own number, none is lost.
    let counts = join_all((0..40).map(|_| store.count_code_attempt(flow.id))).await;
    let mut counts: Vec<u64> = counts.into_iter().map(Result::unwrap).collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
    // Writing back a copy of the flow read before those attempts keeps them.
    store.update_flow(&flow).await.unwrap();
    assert_eq!(store.count_code_attempt(flow.id).await.unwrap(), 41);
    // Counts are per flow.
    let other = new_flow();
    store.create_flow(&other).await.unwrap();
    assert_eq!(store.count_code_attempt(other.id).await.unwrap(), 1);
    assert!(matches!(store.count_code_attempt(Uuid::new_v4()).await, Err(StoreError::NotFound)));
}

pub async fn attempts_count_atomically_per_code(store: &dyn Store) {
    let address = unique_email("per-code-attempts");
    let flow_id = Uuid::new_v4();
    let code = one_time_code(CodePurpose::Verification, flow_id, None, &address);
    store.create_code(&code, None).await.unwrap();
    // Many at once: each gets its own number for the code, so exactly one
    // sees the first attempt.
    let results = join_all((0..40).map(|_| store.count_live_code_attempt(flow_id, now()))).await;
    let mut counts = Vec::new();
    for result in results {
        let live = result.unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].0, code, "the live code comes back whole");
        counts.push(live[0].1);
    }
    counts.sort_unstable();
    assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
    // Looking at the codes counts nothing; a taken-back attempt is one less.
    assert_eq!(store.live_codes(flow_id, now()).await.unwrap(), vec![code.clone()]);
    store.forget_code_attempt(code.id).await.unwrap();
    assert_eq!(store.count_live_code_attempt(flow_id, now()).await.unwrap(), vec![(code.clone(), 40)]);
    // Forgetting an unknown code's attempt is harmless.
    store.forget_code_attempt(Uuid::new_v4()).await.unwrap();

    // Taking back never goes below zero, so an attempt taken back twice
    // cannot hand a later one a second first try.
    let flow_id = Uuid::new_v4();
    let fresh = recovery_code(flow_id, None, &address);
    store.create_code(&fresh, None).await.unwrap();
    store.forget_code_attempt(fresh.id).await.unwrap();
    assert_eq!(store.count_live_code_attempt(flow_id, now()).await.unwrap(), vec![(fresh.clone(), 1)]);
    store.forget_code_attempt(fresh.id).await.unwrap();
    store.forget_code_attempt(fresh.id).await.unwrap();
    assert_eq!(store.count_live_code_attempt(flow_id, now()).await.unwrap(), vec![(fresh.clone(), 1)]);

    // A resend brings a new code, counted from zero.
    let resent = OneTimeCode {
        created_at: fresh.created_at + Duration::milliseconds(1),
        ..recovery_code(flow_id, None, &address)
    };
    store.create_code(&resent, None).await.unwrap();
    assert_eq!(store.count_live_code_attempt(flow_id, now()).await.unwrap(), vec![(resent, 1)]);
}

pub async fn code_attempts_only_count_live_codes(store: &dyn Store) {
    let address = unique_email("per-code-live");
    let at = now();
    // No codes, or an unknown flow: nothing to count, and no error.
    assert!(store.count_live_code_attempt(Uuid::new_v4(), at).await.unwrap().is_empty());
    // An expired code is not counted (expiry is strict, as for live_codes).
    let flow_id = Uuid::new_v4();
    let expired = OneTimeCode {
        created_at: at - Duration::minutes(20),
        expires_at: at,
        ..recovery_code(flow_id, None, &address)
    };
    store.create_code(&expired, None).await.unwrap();
    assert!(store.count_live_code_attempt(flow_id, at).await.unwrap().is_empty());
    let earlier = at - Duration::microseconds(1);
    assert_eq!(store.count_live_code_attempt(flow_id, earlier).await.unwrap(), vec![(expired, 1)]);
    // A used code is not counted.
    let flow_id = Uuid::new_v4();
    let code = recovery_code(flow_id, None, &address);
    store.create_code(&code, None).await.unwrap();
    assert_eq!(store.count_live_code_attempt(flow_id, at).await.unwrap(), vec![(code.clone(), 1)]);
    assert!(store.use_code(code.id, at).await.unwrap());
    assert!(store.count_live_code_attempt(flow_id, at).await.unwrap().is_empty());
    // Codes of other flows, even to the same address, are counted apart.
    let other = recovery_code(Uuid::new_v4(), None, &address);
    store.create_code(&other, None).await.unwrap();
    assert_eq!(store.count_live_code_attempt(other.flow_id, at).await.unwrap(), vec![(other, 1)]);
}

pub async fn address_attempts_count_atomically(store: &dyn Store) {
    let purpose = CodePurpose::Verification;
    let address = unique_email("address-attempts");
    let at = now();
    let since = at - Duration::hours(1);
    // An old failure outside the window does not count.
    store.record_code_failure(purpose, &address, since - Duration::seconds(1)).await.unwrap();
    let ids: Vec<Uuid> = (0..30).map(|_| Uuid::new_v4()).collect();
    let counts =
        join_all(ids.iter().map(|id| store.count_address_attempt(purpose, &address, *id, at, since))).await;
    let mut counts: Vec<u64> = counts.into_iter().map(Result::unwrap).collect();
    counts.sort_unstable();
    // Each concurrent attempt saw every one counted before it, so exactly
    // `limit` of them could see a count within any limit.
    assert_eq!(counts, (1..=30).collect::<Vec<u64>>());
    // Counted attempts are failures until taken back.
    assert_eq!(store.count_code_failures(purpose, &address, since).await.unwrap(), 30);
    store.forget_address_attempt(ids[0]).await.unwrap();
    assert_eq!(store.count_code_failures(purpose, &address, since).await.unwrap(), 29);
    assert_eq!(store.count_address_attempt(purpose, &address, Uuid::new_v4(), at, since).await.unwrap(), 30);
    // Forgetting an unknown attempt is harmless.
    store.forget_address_attempt(Uuid::new_v4()).await.unwrap();
    // Other purposes and addresses are counted apart.
    let recovery = store.count_address_attempt(CodePurpose::Recovery, &address, Uuid::new_v4(), at, since);
    assert_eq!(recovery.await.unwrap(), 1);
    let elsewhere = unique_email("address-attempts-other");
    assert_eq!(store.count_address_attempt(purpose, &elsewhere, Uuid::new_v4(), at, since).await.unwrap(), 1);
}

fn code_request(flow: &Flow, requested_at: DateTime<Utc>) -> CodeRequest {
    CodeRequest {
        id: Uuid::new_v4(),
        flow_id: flow.id,
        purpose: CodePurpose::Recovery,
        address: unique_email("code-request"),
        requested_at,
    }
}

pub async fn code_requests_are_recorded_with_their_flow(store: &dyn Store) {
    let mut flow = sent_recovery_flow("asked@example.com", Duration::hours(1));
    store.create_flow(&flow).await.unwrap();
    flow.ui.messages.push(text::recovery_code_sent());
    let request = code_request(&flow, now());
    store.record_code_request(&flow, &request).await.unwrap();
    let stored = store.get_flow(flow.id).await.unwrap().unwrap();
    assert_eq!(stored.ui.messages.len(), 1, "the flow is saved with its request");

    // An id taken already is a conflict; the flow is not saved either.
    flow.ui.messages.clear();
    assert!(matches!(store.record_code_request(&flow, &request).await, Err(StoreError::Conflict(_))));
    assert_eq!(store.get_flow(flow.id).await.unwrap().unwrap().ui.messages.len(), 1);
    // A flow that is gone takes no request, and nothing is written.
    let gone = sent_recovery_flow("asked@example.com", Duration::hours(1));
    let orphan = code_request(&gone, now());
    assert!(matches!(store.record_code_request(&gone, &orphan).await, Err(StoreError::NotFound)));
    assert!(!store.fulfil_code_request(orphan.id, None, None).await.unwrap());
    assert!(store.fulfil_code_request(request.id, None, None).await.unwrap(), "it was recorded");
}

pub async fn code_requests_are_ended_once(store: &dyn Store) {
    let identity = sample_identity(&unique_email("code-request-owner"));
    store.create_identity(&identity).await.unwrap();
    let flow = sent_recovery_flow("ended@example.com", Duration::hours(1));
    store.create_flow(&flow).await.unwrap();
    let at = now();
    let request = code_request(&flow, at);
    store.record_code_request(&flow, &request).await.unwrap();

    // Of several servers ending one request at once (a slow task and a
    // sweep), exactly one writes its code and mail.
    let codes: Vec<OneTimeCode> =
        (0..6).map(|_| recovery_code(flow.id, Some(identity.id), &request.address)).collect();
    let messages: Vec<_> = (0..6).map(|_| sample_message(&request.address)).collect();
    let ends = join_all(
        codes.iter().zip(&messages).map(|(c, m)| store.fulfil_code_request(request.id, Some(c), Some(m))),
    )
    .await;
    let won: Vec<usize> =
        ends.into_iter().enumerate().filter(|(_, e)| *e.as_ref().unwrap()).map(|(i, _)| i).collect();
    assert_eq!(won.len(), 1, "one end wins");
    let winner = won[0];
    assert_eq!(store.live_codes(flow.id, at).await.unwrap(), vec![codes[winner].clone()]);
    for (i, message) in messages.iter().enumerate() {
        assert_eq!(store.get_message(message.id).await.unwrap().is_some(), i == winner);
    }

    // A resend's code retires the earlier one; a capped request ends with nothing written.
    let resend = code_request(&flow, now());
    store.record_code_request(&flow, &resend).await.unwrap();
    let newer = OneTimeCode {
        created_at: codes[winner].created_at + Duration::milliseconds(1),
        ..recovery_code(flow.id, Some(identity.id), &resend.address)
    };
    assert!(store.fulfil_code_request(resend.id, Some(&newer), None).await.unwrap());
    assert_eq!(store.live_codes(flow.id, at).await.unwrap(), vec![newer.clone()]);
    let capped = code_request(&flow, now());
    store.record_code_request(&flow, &capped).await.unwrap();
    assert!(store.fulfil_code_request(capped.id, None, None).await.unwrap());
    assert_eq!(store.live_codes(flow.id, at).await.unwrap(), vec![newer]);
}

pub async fn stale_code_requests_are_claimed_once_and_go_with_their_flow(store: &dyn Store) {
    let at = now();
    let flow = sent_recovery_flow("stale@example.com", Duration::hours(1));
    store.create_flow(&flow).await.unwrap();
    let old = code_request(&flow, at - Duration::seconds(30));
    let older = code_request(&flow, at - Duration::seconds(40));
    let fresh = code_request(&flow, at);
    // Other checks' requests (a shared PostgreSQL keeps earlier runs' too)
    // may be stale as well: only this flow's are looked at.
    let pending = store.count_code_requests().await.unwrap();
    for request in [&old, &older, &fresh] {
        store.record_code_request(&flow, request).await.unwrap();
    }
    assert_eq!(store.count_code_requests().await.unwrap(), pending + 3);
    let ours = |claimed: Vec<CodeRequest>| -> Vec<CodeRequest> {
        claimed.into_iter().filter(|r| r.flow_id == flow.id).collect()
    };

    let before = at - Duration::seconds(5);
    let lease = at + Duration::minutes(1);
    let sweeps = join_all((0..4).map(|_| store.claim_stale_code_requests(before, 1000, at, lease))).await;
    let mut claimed = ours(sweeps.into_iter().flat_map(Result::unwrap).collect());
    claimed.sort_by_key(|r| r.requested_at);
    assert_eq!(claimed, vec![older.clone(), old.clone()], "each stale request goes to one sweep");
    // While claimed they are nobody else's; once the claims lapse, they are
    // stale again, oldest first.
    assert_eq!(ours(store.claim_stale_code_requests(before, 1000, at, lease).await.unwrap()), vec![]);
    let lapsed = store.claim_stale_code_requests(before, 1000, lease, lease + Duration::minutes(1)).await;
    assert_eq!(ours(lapsed.unwrap()), vec![older.clone(), old.clone()]);
    let limited =
        store.claim_stale_code_requests(at + Duration::seconds(1), 1, lease + Duration::minutes(2), lease);
    assert_eq!(limited.await.unwrap().len(), 1);

    // Requests go with their flow.
    let report = store.cleanup_batch(CleanupStep::Flows, flow.expires_at + Duration::seconds(1), 1000).await;
    assert!(report.unwrap().flows >= 1);
    for request in [&old, &older, &fresh] {
        assert!(!store.fulfil_code_request(request.id, None, None).await.unwrap(), "gone with the flow");
    }
}

pub async fn identity_found_by_recovery_address(store: &dyn Store) {
    let email = unique_email("recovery-owner");
    let identity = sample_identity(&email);
    store.create_identity(&identity).await.unwrap();
    let found = store.identity_by_recovery_address("email", &email).await.unwrap().expect("found by address");
    assert_eq!(found, identity, "the whole identity, with credentials and addresses");
    assert!(store.identity_by_recovery_address("email", &unique_email("nobody")).await.unwrap().is_none());
    assert!(store.identity_by_recovery_address("sms", &email).await.unwrap().is_none());
}

pub async fn identity_found_by_verifiable_address(store: &dyn Store) {
    // Different verifiable and recovery addresses, so each lookup is seen to
    // read its own table.
    let verifiable = unique_email("verifiable-owner");
    let recovery = unique_email("verifiable-owner-recovery");
    let mut identity = sample_identity(&verifiable);
    identity.recovery_addresses[0].value = recovery.clone();
    store.create_identity(&identity).await.unwrap();
    let found =
        store.identity_by_verifiable_address("email", &verifiable).await.unwrap().expect("found by address");
    assert_eq!(found, identity, "the whole identity, with credentials and addresses");
    assert!(store.identity_by_verifiable_address("email", &unique_email("nobody")).await.unwrap().is_none());
    assert!(store.identity_by_verifiable_address("sms", &verifiable).await.unwrap().is_none());
    assert!(store.identity_by_verifiable_address("email", &recovery).await.unwrap().is_none());
    assert!(store.identity_by_recovery_address("email", &verifiable).await.unwrap().is_none());
}

pub async fn deleting_an_identity_deletes_its_codes(store: &dyn Store) {
    let identity = sample_identity(&unique_email("code-cascade"));
    store.create_identity(&identity).await.unwrap();
    let address = identity.recovery_addresses[0].value.clone();
    let owned = recovery_code(Uuid::new_v4(), Some(identity.id), &address);
    let verifying = one_time_code(CodePurpose::Verification, Uuid::new_v4(), Some(identity.id), &address);
    let unowned = recovery_code(Uuid::new_v4(), None, &address);
    for code in [&owned, &verifying, &unowned] {
        store.create_code(code, None).await.unwrap();
        assert_eq!(store.live_codes(code.flow_id, now()).await.unwrap(), vec![code.clone()]);
    }
    assert!(store.delete_identity(identity.id).await.unwrap());
    assert!(store.live_codes(owned.flow_id, now()).await.unwrap().is_empty());
    assert!(store.live_codes(verifying.flow_id, now()).await.unwrap().is_empty());
    assert_eq!(store.live_codes(unowned.flow_id, now()).await.unwrap(), vec![unowned]);
    assert!(store.identity_by_recovery_address("email", &address).await.unwrap().is_none());
    assert!(store.identity_by_verifiable_address("email", &address).await.unwrap().is_none());
}

pub async fn set_address_status_moves_one_address(store: &dyn Store) {
    // A verified address and an unverified one, in the order the loaders return them.
    let mut identity = sample_identity(&unique_email("status-a"));
    let at = now();
    identity.verifiable_addresses.push(VerifiableAddress {
        id: Uuid::new_v4(),
        value: unique_email("status-b"),
        verified: false,
        via: Via::Email,
        status: AddressStatus::Sent,
        verified_at: None,
        created_at: at - Duration::days(1),
        updated_at: at - Duration::days(1),
    });
    store.create_identity(&identity).await.unwrap();
    let other = sample_identity(&unique_email("status-other"));
    store.create_identity(&other).await.unwrap();
    let verified_id = identity.verifiable_addresses[0].id;
    let unverified_id = identity.verifiable_addresses[1].id;
    let first_verified_at = identity.verifiable_addresses[0].verified_at;
    assert!(first_verified_at.is_some());

    // Completing sets `verified` and `verified_at`, and nothing else changes.
    let t1 = at + Duration::seconds(1);
    assert!(
        store.set_address_status(identity.id, unverified_id, AddressStatus::Completed, t1).await.unwrap()
    );
    let address = &mut identity.verifiable_addresses[1];
    (address.verified, address.status, address.verified_at, address.updated_at) =
        (true, AddressStatus::Completed, Some(t1), t1);
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    // Completing again keeps the first verification time.
    let t2 = at + Duration::seconds(2);
    assert!(
        store.set_address_status(identity.id, unverified_id, AddressStatus::Completed, t2).await.unwrap()
    );
    assert!(store.set_address_status(identity.id, verified_id, AddressStatus::Completed, t2).await.unwrap());
    identity.verifiable_addresses[1].updated_at = t2;
    identity.verifiable_addresses[0].updated_at = t2;
    assert_eq!(identity.verifiable_addresses[0].verified_at, first_verified_at);
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    // Any other status clears both.
    for (n, status) in [AddressStatus::Sent, AddressStatus::Pending].into_iter().enumerate() {
        let t = at + Duration::seconds(3 + n as i64);
        assert!(store.set_address_status(identity.id, verified_id, status, t).await.unwrap());
        let address = &mut identity.verifiable_addresses[0];
        (address.verified, address.status, address.verified_at, address.updated_at) =
            (false, status, None, t);
        assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);
    }

    // Another identity's address, an unknown address or an unknown identity:
    // nothing to move, and nothing moves.
    let foreign = other.verifiable_addresses[0].id;
    let later = at + Duration::seconds(10);
    assert!(!store.set_address_status(identity.id, foreign, AddressStatus::Pending, later).await.unwrap());
    assert!(
        !store.set_address_status(identity.id, Uuid::new_v4(), AddressStatus::Sent, later).await.unwrap()
    );
    assert!(
        !store
            .set_address_status(Uuid::new_v4(), verified_id, AddressStatus::Completed, later)
            .await
            .unwrap()
    );
    assert_eq!(store.get_identity(other.id).await.unwrap().unwrap(), other);
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);
}

pub async fn password_hash_is_swapped_only_while_unchanged(store: &dyn Store) {
    let mut identity = sample_identity(&unique_email("rehash"));
    let old = "$2a$04$olderhasholderhasholderhasholderhasholderhasholderhas".to_string();
    let credential = identity.credentials.get_mut(&CredentialType::Password).unwrap();
    // Other keys of the config stay as they are.
    credential.config = json!({"hashed_password": old, "use_password_migration_hook": false});
    store.create_identity(&identity).await.unwrap();
    // Another identity with the very same hash is not touched.
    let mut twin = sample_identity(&unique_email("rehash-twin"));
    twin.credentials.get_mut(&CredentialType::Password).unwrap().config = json!({"hashed_password": old});
    store.create_identity(&twin).await.unwrap();

    // A hash that is not the stored one swaps nothing.
    let at = now() + Duration::seconds(1);
    assert!(
        !store.replace_password_hash(identity.id, "$2a$04$someotherhash", "$argon2id$new", at).await.unwrap()
    );
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    // The verified hash is swapped: only that credential's hash and time change.
    let new = "$argon2id$v=19$m=1024,t=1,p=2$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U";
    assert!(store.replace_password_hash(identity.id, &old, new, at).await.unwrap());
    let credential = identity.credentials.get_mut(&CredentialType::Password).unwrap();
    credential.config = json!({"hashed_password": new, "use_password_migration_hook": false});
    credential.updated_at = at;
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);
    assert_eq!(store.get_identity(twin.id).await.unwrap().unwrap(), twin);
    // Swapping from the old hash again is a no-op: it is not stored any more.
    assert!(!store.replace_password_hash(identity.id, &old, "$argon2id$again", at).await.unwrap());

    // A login that verified `new`, then an admin who deactivated the identity
    // and set another password before the login's swap: the admin's write stands.
    let mut changed = identity.clone();
    changed.state = IdentityState::Inactive;
    changed.traits = json!({"email": identity.traits["email"], "name": "changed by an admin"});
    let credential = changed.credentials.get_mut(&CredentialType::Password).unwrap();
    credential.config =
        json!({"hashed_password": "$2a$04$setbyanadminsetbyanadminsetbyanadminsetbyanadminset"});
    store.update_identity(&changed).await.unwrap();
    assert!(!store.replace_password_hash(identity.id, new, "$argon2id$stale", at).await.unwrap());
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), changed);

    // No password credential, or no identity: nothing to swap.
    let mut passwordless = sample_identity(&unique_email("rehash-none"));
    passwordless.credentials.clear();
    store.create_identity(&passwordless).await.unwrap();
    assert!(!store.replace_password_hash(passwordless.id, &old, new, at).await.unwrap());
    assert!(!store.replace_password_hash(Uuid::new_v4(), &old, new, at).await.unwrap());
}

fn rate_window(bucket: &'static str, subject: &str, since: chrono::DateTime<chrono::Utc>) -> RateWindow {
    RateWindow { bucket, subject: subject.to_string(), since }
}

pub async fn rate_events_are_admitted_atomically(store: &dyn Store) {
    let subject = Uuid::new_v4().to_string();
    let at = now();
    let since = at - Duration::minutes(1);
    // An event before the window does not count.
    let old = [rate_window("test.atomic", &subject, since - Duration::hours(1))];
    let (admitted, _) =
        store.admit_event(&old, Uuid::new_v4(), since - Duration::seconds(1), &|_| true).await.unwrap();
    assert!(admitted);
    let windows = [rate_window("test.atomic", &subject, since)];
    let limit = 7;
    let rule = |counts: &[WindowCount]| counts[0].count < limit;
    let results = join_all((0..40).map(|_| store.admit_event(&windows, Uuid::new_v4(), at, &rule))).await;
    let results: Vec<(bool, Vec<WindowCount>)> = results.into_iter().map(Result::unwrap).collect();
    // Each caller saw every event admitted before it: exactly `limit` got through.
    assert_eq!(results.iter().filter(|(admitted, _)| *admitted).count() as u64, limit);
    let mut seen: Vec<u64> = results.iter().filter(|(a, _)| *a).map(|(_, c)| c[0].count).collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..limit).collect::<Vec<u64>>());
    let count = store.count_events(&windows[0]).await.unwrap();
    assert_eq!(count.count, limit);
    assert_eq!(count.newest.unwrap().timestamp_micros(), at.timestamp_micros());
    assert!(count.oldest.unwrap() >= since);
}

pub async fn rate_windows_count_apart_and_reset(store: &dyn Store) {
    let at = now();
    let since = at - Duration::hours(1);
    let (alice, bob) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
    let event = Uuid::new_v4();
    let both = [rate_window("test.identifier", &alice, since), rate_window("test.ip", &bob, since)];
    let (admitted, counts) = store.admit_event(&both, event, at, &|_| true).await.unwrap();
    assert!(admitted);
    assert_eq!(counts, vec![WindowCount::default(); 2]);
    let later = at + Duration::seconds(5);
    store.admit_event(&both[..1], Uuid::new_v4(), later, &|_| true).await.unwrap();
    let (_, counts) = store.admit_event(&both, Uuid::new_v4(), later, &|_| false).await.unwrap();
    // A refused event is not recorded; oldest and newest are exact.
    assert_eq!(counts[0].count, 2);
    assert_eq!(counts[1].count, 1);
    assert_eq!(counts[0].oldest.unwrap().timestamp_micros(), at.timestamp_micros());
    assert_eq!(counts[0].newest.unwrap().timestamp_micros(), later.timestamp_micros());
    // The same subject in another bucket is another window.
    assert_eq!(store.count_events(&rate_window("test.ip", &alice, since)).await.unwrap().count, 0);
    // Forgetting an event takes it out of every window it was in.
    store.forget_event(event).await.unwrap();
    assert_eq!(store.count_events(&both[0]).await.unwrap().count, 1);
    assert_eq!(store.count_events(&both[1]).await.unwrap().count, 0);
    store.forget_event(Uuid::new_v4()).await.unwrap();
    // A reset empties one window and leaves the others.
    store.admit_event(&both, Uuid::new_v4(), at, &|_| true).await.unwrap();
    assert_eq!(store.reset_events("test.identifier", &alice).await.unwrap(), 2);
    assert_eq!(store.count_events(&both[0]).await.unwrap().count, 0);
    assert_eq!(store.count_events(&both[1]).await.unwrap().count, 1);
}

/// Cleanup settings as a deployment might set them, with batches small
/// enough that every step takes several.
fn cleanup_settings(batch_size: u32) -> CleanupSettings {
    CleanupSettings {
        batch_size,
        sleep_tables: std::time::Duration::ZERO,
        keep_last: Duration::hours(1),
        code_failure_window: Duration::hours(24),
        rate_window: Duration::hours(1),
    }
}

/// Runs the cleanup as of `at`, as `latchkey cleanup sql` would then.
async fn clean_as_of(store: &dyn Store, at: DateTime<Utc>, batch_size: u32) -> CleanupReport {
    cleanup::run(store, &cleanup_settings(batch_size), at, &mut |_, _| {}).await.unwrap()
}

fn flow_expiring(at: DateTime<Utc>) -> Flow {
    let mut flow = sent_recovery_flow("", Duration::hours(1));
    flow.expires_at = at;
    flow
}

/// A session issued at `issued`, lasting until `expires`.
fn session_between(identity_id: Uuid, issued: DateTime<Utc>, expires: DateTime<Utc>) -> Session {
    let mut session = live_session(identity_id);
    session.issued_at = issued;
    session.authenticated_at = issued;
    session.created_at = issued;
    session.updated_at = issued;
    session.expires_at = expires;
    session
}

/// A message delivered (after one failed try) or abandoned at `at`.
async fn finish_message(
    store: &dyn Store,
    message: &latchkey_domain::courier::Message,
    status: latchkey_domain::courier::MessageStatus,
    at: DateTime<Utc>,
) {
    use latchkey_domain::courier::{Dispatch, MessageStatus};
    let failed = Dispatch {
        id: Uuid::new_v4(),
        message_id: message.id,
        status: "failed".into(),
        error: Some("connection refused".into()),
        created_at: at - Duration::minutes(5),
        updated_at: at - Duration::minutes(5),
    };
    store.record_dispatch(&failed, MessageStatus::Queued, None).await.unwrap();
    let last = Dispatch {
        id: Uuid::new_v4(),
        status: if status == MessageStatus::Sent { "success".into() } else { "failed".into() },
        created_at: at,
        updated_at: at,
        ..failed
    };
    store.record_dispatch(&last, status, None).await.unwrap();
}

/// What is due goes, in every table, and what anything still reads or
/// counts stays: live flows with their codes, live sessions, queued mail,
/// wrong codes and rate events inside their windows. Rows are dated a month
/// back and the cleanup runs as of then, so the other checks' rows (dated
/// now) are neither due nor counted.
pub async fn cleanup_removes_what_is_due_and_keeps_the_rest(store: &dyn Store) {
    use latchkey_domain::courier::MessageStatus;
    let t = now() - Duration::days(30);
    let ago = |minutes: i64| t - Duration::minutes(minutes);
    let ahead = |minutes: i64| t + Duration::minutes(minutes);
    let identity = sample_identity(&unique_email("cleanup"));
    store.create_identity(&identity).await.unwrap();
    let address = identity.recovery_addresses[0].value.clone();

    // Sessions: expired or revoked more than an hour before `t` go.
    let expired = session_between(identity.id, ago(300), ago(120));
    let recently_expired = session_between(identity.id, ago(300), ago(30));
    let revoked = Session { active: false, ..session_between(identity.id, ago(120), ahead(60)) };
    let recently_revoked = Session { active: false, ..session_between(identity.id, ago(10), ahead(60)) };
    // Live however old: it has not expired.
    let live = session_between(identity.id, ago(600), ahead(60));
    for s in [&expired, &recently_expired, &revoked, &recently_revoked, &live] {
        store.create_session(s).await.unwrap();
    }

    // Flows: an expired one goes with its codes, used or not; a live one stays with its code.
    let old_flow = flow_expiring(ago(120));
    let live_flow = flow_expiring(ahead(60));
    store.create_flow(&old_flow).await.unwrap();
    store.create_flow(&live_flow).await.unwrap();

    // Errors of the error flow: expired more than an hour before `t` go.
    let error_expiring = |at: DateTime<Utc>| FlowErrorRecord {
        expires_at: at,
        ..FlowErrorRecord::new(json!({"code": 403}), at - Duration::hours(1))
    };
    let old_error = error_expiring(ago(120));
    let recent_error = error_expiring(ago(30));
    for e in [&old_error, &recent_error] {
        store.create_flow_error(e).await.unwrap();
    }
    let used_in_old = OneTimeCode { expires_at: ahead(60), ..recovery_code(old_flow.id, None, &address) };
    store.create_code(&used_in_old, None).await.unwrap();
    assert!(store.use_code(used_in_old.id, ago(150)).await.unwrap());
    let unused_in_old = OneTimeCode { expires_at: ahead(60), ..recovery_code(old_flow.id, None, &address) };
    store.create_code(&unused_in_old, None).await.unwrap();
    let in_live = OneTimeCode { expires_at: ahead(30), ..recovery_code(live_flow.id, None, &address) };
    store.create_code(&in_live, None).await.unwrap();

    // Codes on their own: expired or used more than an hour before `t` go.
    let code_at = |expires: DateTime<Utc>| OneTimeCode {
        expires_at: expires,
        ..recovery_code(Uuid::new_v4(), Some(identity.id), &address)
    };
    let expired_code = code_at(ago(120));
    let used_code = code_at(ahead(60));
    let recently_used_code = code_at(ahead(60));
    let live_code = code_at(ahead(60));
    for c in [&expired_code, &used_code, &recently_used_code, &live_code] {
        store.create_code(c, None).await.unwrap();
    }
    assert!(store.use_code(used_code.id, ago(120)).await.unwrap());
    assert!(store.use_code(recently_used_code.id, ago(10)).await.unwrap());

    // Wrong codes: counted for 24 hours, whatever keep_last says.
    let failures = unique_email("cleanup-failures");
    store.record_code_failure(CodePurpose::Recovery, &failures, ago(25 * 60)).await.unwrap();
    store.record_code_failure(CodePurpose::Recovery, &failures, ago(23 * 60)).await.unwrap();

    // Rate events: five rows recorded before the longest window, one inside it.
    let subject = Uuid::new_v4().to_string();
    let window = |bucket| rate_window(bucket, &subject, ago(24 * 60));
    for minutes in [180, 150, 120] {
        store.admit_event(&[window("test.cleanup")], Uuid::new_v4(), ago(minutes), &|_| true).await.unwrap();
    }
    let twice = [window("test.cleanup"), window("test.cleanup.other")];
    store.admit_event(&twice, Uuid::new_v4(), ago(90), &|_| true).await.unwrap();
    store.admit_event(&[window("test.cleanup")], Uuid::new_v4(), ago(30), &|_| true).await.unwrap();

    // Mail: finished more than an hour ago goes, with its attempts; queued mail stays however old.
    let dated = |tag: &str| {
        let mut message = sample_message(&unique_email(tag));
        message.created_at = ago(400);
        message.updated_at = ago(400);
        message
    };
    let (sent, abandoned, recently_sent, queued) =
        (dated("sent"), dated("abandoned"), dated("recently-sent"), dated("queued"));
    for m in [&sent, &abandoned, &recently_sent, &queued] {
        store.enqueue_message(m).await.unwrap();
    }
    finish_message(store, &sent, MessageStatus::Sent, ago(120)).await;
    finish_message(store, &abandoned, MessageStatus::Abandoned, ago(90)).await;
    finish_message(store, &recently_sent, MessageStatus::Sent, ago(10)).await;

    // Mail announcing a code: blanked once delivered and the code is dead.
    let announce = |expires: DateTime<Utc>| {
        let code = code_at(expires);
        (dated("with-code"), code)
    };
    let (delivered_dead, dead_code) = announce(ago(5));
    let (delivered_live, live_code_2) = announce(ahead(30));
    let (queued_dead, queued_code) = announce(ago(5));
    for (m, c) in
        [(&delivered_dead, &dead_code), (&delivered_live, &live_code_2), (&queued_dead, &queued_code)]
    {
        store.create_code(c, Some(m)).await.unwrap();
    }
    finish_message(store, &delivered_dead, MessageStatus::Sent, ago(20)).await;
    finish_message(store, &delivered_live, MessageStatus::Sent, ago(20)).await;

    let report = clean_as_of(store, t, 2).await;
    assert_eq!(
        report,
        CleanupReport {
            sessions: 2,
            flows: 1,
            one_time_codes: 4,
            code_failures: 1,
            rate_events: 5,
            courier_messages: 2,
            courier_dispatches: 4,
            courier_bodies_cleared: 1,
            flow_errors: 1,
        }
    );
    assert!(store.get_flow_error(old_error.id).await.unwrap().is_none());
    assert!(store.get_flow_error(recent_error.id).await.unwrap().is_some());

    // Gone.
    for s in [&expired, &revoked] {
        assert!(store.get_session(s.id).await.unwrap().is_none());
    }
    assert!(store.get_flow(old_flow.id).await.unwrap().is_none());
    for m in [&sent, &abandoned] {
        assert!(store.get_message(m.id).await.unwrap().is_none());
    }
    // Kept, unchanged.
    for s in [&recently_expired, &recently_revoked, &live] {
        assert!(store.get_session(s.id).await.unwrap().is_some());
    }
    assert!(store.get_flow(live_flow.id).await.unwrap().is_some());
    assert_eq!(store.live_codes(live_flow.id, t).await.unwrap(), vec![in_live]);
    assert_eq!(store.live_codes(live_code.flow_id, t).await.unwrap(), vec![live_code]);
    assert_eq!(store.count_code_failures(CodePurpose::Recovery, &failures, ago(24 * 60)).await.unwrap(), 1);
    assert_eq!(store.count_code_failures(CodePurpose::Recovery, &failures, ago(48 * 60)).await.unwrap(), 1);
    assert_eq!(store.count_events(&window("test.cleanup")).await.unwrap().count, 1);
    assert_eq!(store.count_events(&window("test.cleanup.other")).await.unwrap().count, 0);
    for m in [&recently_sent, &queued, &delivered_live, &queued_dead] {
        let (kept, _) = store.get_message(m.id).await.unwrap().unwrap();
        assert_eq!((kept.subject.as_str(), kept.body.as_str()), (m.subject.as_str(), m.body.as_str()));
    }
    let (_, attempts) = store.get_message(recently_sent.id).await.unwrap().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(store.get_message(queued.id).await.unwrap().unwrap().0.status, MessageStatus::Queued);
    // Blanked, but kept as a record of what was sent to whom and when.
    let (blanked, attempts) = store.get_message(delivered_dead.id).await.unwrap().unwrap();
    assert_eq!((blanked.subject.as_str(), blanked.body.as_str(), blanked.html_body), ("", "", None));
    assert_eq!(
        (blanked.recipient.as_str(), blanked.status, attempts.len()),
        (delivered_dead.recipient.as_str(), MessageStatus::Sent, 2)
    );

    // Nothing is due twice.
    assert_eq!(clean_as_of(store, t, 2).await, CleanupReport::default());
    // Later, what was kept for keep_last is due too, and the blanked message goes.
    let later = clean_as_of(store, t + Duration::minutes(60), 100).await;
    assert!(later.sessions >= 2 && later.courier_messages >= 3, "{later:?}");
    assert!(store.get_message(delivered_dead.id).await.unwrap().is_none());
    assert!(store.get_session(live.id).await.unwrap().is_some());
}

/// Several cleanups at once (servers sharing a database) share the work:
/// none fails, and each due row is counted by exactly one of them.
pub async fn concurrent_cleanups_share_the_work(store: &dyn Store) {
    let t = now() - Duration::days(60);
    let flows: Vec<Flow> =
        (0..40).map(|i| flow_expiring(t - Duration::hours(2) - Duration::seconds(i))).collect();
    for flow in &flows {
        store.create_flow(flow).await.unwrap();
        store.create_code(&recovery_code(flow.id, None, "concurrent@example.com"), None).await.unwrap();
    }
    let reports = join_all((0..3).map(|_| clean_as_of(store, t, 3))).await;
    let mut total = CleanupReport::default();
    for report in reports {
        total += report;
    }
    assert_eq!((total.flows, total.one_time_codes), (40, 40), "{total:?}");
    for flow in &flows {
        assert!(store.get_flow(flow.id).await.unwrap().is_none());
    }
}

fn second_factor(kind: CredentialType, identity: &Identity, config: serde_json::Value) -> Credential {
    let at = now();
    Credential {
        id: Uuid::new_v4(),
        kind,
        identifiers: vec![identity.id.to_string()],
        config,
        version: 0,
        created_at: at,
        updated_at: at,
    }
}

pub async fn credentials_are_set_and_removed_alone(store: &dyn Store) {
    let mut identity = sample_identity(&unique_email("second-factor"));
    store.create_identity(&identity).await.unwrap();

    let at = now() + Duration::seconds(1);
    let totp = second_factor(CredentialType::Totp, &identity, json!({"sealed_totp_url": "xc20p1.a"}));
    assert!(store.set_credential(identity.id, &totp, at).await.unwrap());
    identity.credentials.insert(CredentialType::Totp, totp);
    identity.updated_at = at;
    identity.available_aal = Aal::Aal2;
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity, "the rest is untouched");

    // Setting it again replaces it: one credential per type.
    let later = at + Duration::seconds(1);
    let again = second_factor(CredentialType::Totp, &identity, json!({"sealed_totp_url": "xc20p1.b"}));
    assert!(store.set_credential(identity.id, &again, later).await.unwrap());
    identity.credentials.insert(CredentialType::Totp, again.clone());
    identity.updated_at = later;
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);
    let query = IdentityQuery {
        limit: 10,
        credentials_identifier: Some(identity.id.to_string()),
        ..IdentityQuery::default()
    };
    let found = store.list_identities(&query).await.unwrap();
    assert_eq!(found.iter().map(|i| i.id).collect::<Vec<_>>(), vec![identity.id]);

    // Identifiers stay unique per type.
    let other = sample_identity(&unique_email("second-factor-other"));
    store.create_identity(&other).await.unwrap();
    let clash = Credential { id: Uuid::new_v4(), ..again.clone() };
    assert!(matches!(store.set_credential(other.id, &clash, later).await, Err(StoreError::Conflict(_))));
    assert!(store.get_identity(other.id).await.unwrap().unwrap().credential(CredentialType::Totp).is_none());

    let last = later + Duration::seconds(1);
    assert!(store.remove_credential(identity.id, CredentialType::Totp, last).await.unwrap());
    assert!(!store.remove_credential(identity.id, CredentialType::Totp, last).await.unwrap());
    identity.credentials.remove(&CredentialType::Totp);
    identity.updated_at = last;
    identity.available_aal = Aal::Aal1;
    assert_eq!(store.get_identity(identity.id).await.unwrap().unwrap(), identity);

    assert!(!store.set_credential(Uuid::new_v4(), &again, last).await.unwrap(), "no such identity");
    assert!(!store.remove_credential(Uuid::new_v4(), CredentialType::Totp, last).await.unwrap());
}

pub async fn totp_steps_pass_only_forward_and_once(store: &dyn Store) {
    let identity = sample_identity(&unique_email("totp-steps"));
    store.create_identity(&identity).await.unwrap();
    assert!(!store.spend_totp_step(identity.id, 100).await.unwrap(), "no TOTP credential");
    let totp = second_factor(CredentialType::Totp, &identity, json!({}));
    assert!(store.set_credential(identity.id, &totp, now()).await.unwrap());

    assert!(store.spend_totp_step(identity.id, 100).await.unwrap());
    assert!(!store.spend_totp_step(identity.id, 100).await.unwrap(), "the same step twice");
    assert!(!store.spend_totp_step(identity.id, 99).await.unwrap(), "an earlier step");
    assert!(store.spend_totp_step(identity.id, 101).await.unwrap());

    let results = join_all((0..16).map(|_| store.spend_totp_step(identity.id, 200))).await;
    let passed = results.into_iter().map(Result::unwrap).filter(|ok| *ok).count();
    assert_eq!(passed, 1, "of parallel submits of one code, one gets in");

    // Another identity's steps are its own.
    let other = sample_identity(&unique_email("totp-steps-other"));
    store.create_identity(&other).await.unwrap();
    let totp = second_factor(CredentialType::Totp, &other, json!({}));
    assert!(store.set_credential(other.id, &totp, now()).await.unwrap());
    assert!(store.spend_totp_step(other.id, 150).await.unwrap());
}

pub async fn lookup_codes_are_spent_once_per_set(store: &dyn Store) {
    let identity = sample_identity(&unique_email("lookup-codes"));
    store.create_identity(&identity).await.unwrap();
    let set = Uuid::new_v4();
    assert!(!store.spend_lookup_code(identity.id, set, 0, now()).await.unwrap(), "no codes");
    let codes = second_factor(CredentialType::LookupSecret, &identity, json!({"set": set}));
    assert!(store.set_credential(identity.id, &codes, now()).await.unwrap());

    let at = now();
    assert!(store.spend_lookup_code(identity.id, set, 3, at).await.unwrap());
    assert!(!store.spend_lookup_code(identity.id, set, 3, at + Duration::seconds(1)).await.unwrap());
    assert!(store.spend_lookup_code(identity.id, set, 4, at).await.unwrap());
    assert!(
        !store.spend_lookup_code(identity.id, Uuid::new_v4(), 5, at).await.unwrap(),
        "not the current set"
    );
    let results = join_all((0..16).map(|_| store.spend_lookup_code(identity.id, set, 7, at))).await;
    assert_eq!(results.into_iter().map(Result::unwrap).filter(|ok| *ok).count(), 1);
    assert_eq!(store.used_lookup_codes(identity.id, set).await.unwrap(), vec![(3, at), (4, at), (7, at)]);

    // New codes start unspent, and the old set's marks are gone.
    let fresh = Uuid::new_v4();
    let codes = second_factor(CredentialType::LookupSecret, &identity, json!({"set": fresh}));
    assert!(store.set_credential(identity.id, &codes, now()).await.unwrap());
    assert!(store.used_lookup_codes(identity.id, set).await.unwrap().is_empty());
    assert!(!store.spend_lookup_code(identity.id, set, 0, at).await.unwrap());
    assert!(store.spend_lookup_code(identity.id, fresh, 3, at).await.unwrap());

    // Removed codes cannot be spent, and their marks go with them.
    assert!(store.remove_credential(identity.id, CredentialType::LookupSecret, now()).await.unwrap());
    assert!(store.used_lookup_codes(identity.id, fresh).await.unwrap().is_empty());
    assert!(!store.spend_lookup_code(identity.id, fresh, 1, at).await.unwrap());
}

pub async fn available_aal_follows_the_second_factors(store: &dyn Store) {
    let aal_of = |id: Uuid| async move { store.get_identity(id).await.unwrap().unwrap().available_aal };
    let mut identity = sample_identity(&unique_email("available-aal"));
    store.create_identity(&identity).await.unwrap();
    assert_eq!(aal_of(identity.id).await, Aal::Aal1, "a password is a first factor");
    let session = live_session(identity.id);
    store.create_session(&session).await.unwrap();

    let totp = second_factor(CredentialType::Totp, &identity, json!({"sealed_totp_url": "v1.key"}));
    assert!(store.set_credential(identity.id, &totp, now()).await.unwrap());
    assert_eq!(aal_of(identity.id).await, Aal::Aal2);
    // whoami's join reads it too, without the credentials.
    let (_, joined) = store.session_by_token(&session.token_hash).await.unwrap().unwrap();
    assert_eq!(joined.available_aal, Aal::Aal2);

    let codes = second_factor(
        CredentialType::LookupSecret,
        &identity,
        json!({"set": Uuid::new_v4(), "sealed_recovery_codes": "v1.codes"}),
    );
    assert!(store.set_credential(identity.id, &codes, now()).await.unwrap());
    assert!(store.remove_credential(identity.id, CredentialType::Totp, now()).await.unwrap());
    assert_eq!(aal_of(identity.id).await, Aal::Aal2, "the backup codes are left");
    assert!(store.remove_credential(identity.id, CredentialType::LookupSecret, now()).await.unwrap());
    assert_eq!(aal_of(identity.id).await, Aal::Aal1);

    // A whole write derives it from the credentials it writes, whatever the field says.
    identity.credentials.insert(CredentialType::Totp, totp);
    identity.available_aal = Aal::Aal1;
    store.update_identity(&identity).await.unwrap();
    assert_eq!(aal_of(identity.id).await, Aal::Aal2);
    identity.credentials.remove(&CredentialType::Totp);
    identity.available_aal = Aal::Aal2;
    store.update_identity(&identity).await.unwrap();
    assert_eq!(aal_of(identity.id).await, Aal::Aal1);

    let mut imported = sample_identity(&unique_email("available-aal-import"));
    let codes =
        second_factor(CredentialType::LookupSecret, &imported, json!({"sealed_recovery_codes": "v1.codes"}));
    imported.credentials.insert(CredentialType::LookupSecret, codes);
    store.create_identity(&imported).await.unwrap();
    assert_eq!(aal_of(imported.id).await, Aal::Aal2);
}
