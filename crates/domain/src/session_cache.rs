//! A read-through cache for the `whoami` lookup. Every app request behind
//! Latchkey asks whoami, and a database round trip per ask dominates its
//! cost. [`CachingStore`] wraps any [`Store`]: hits skip the database, and
//! every write that could change a cached answer (revoking, extending or
//! deleting sessions; updating or deleting identities) evicts before and
//! after it, in this process. Other processes sharing a database evict through
//! [`SessionCache`]'s methods (PostgreSQL notifications drive them), and a
//! short time-to-live bounds staleness should a notification be lost.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::courier::{Dispatch, Message, MessageStatus};
use crate::flow::Flow;
use crate::identity::{AddressStatus, CredentialType, Identity};
use crate::session::Session;
use crate::store::{
    CodePurpose, CodeStore, Database, FlowStore, IdentityQuery, IdentityStore, MessageQuery, MigrationState,
    OneTimeCode, OutboxStore, SessionQuery, SessionStore, Store, StoreError,
};

struct Entry {
    hit: Arc<(Session, Identity)>,
    cached_at: Instant,
}

/// Token hash → the session and identity `whoami` answers with.
pub struct SessionCache {
    entries: RwLock<HashMap<String, Entry>>,
    capacity: usize,
    ttl: Duration,
}

impl SessionCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self { entries: RwLock::new(HashMap::new()), capacity, ttl }
    }

    fn get(&self, token_hash: &str) -> Option<Arc<(Session, Identity)>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(token_hash)?;
        (entry.cached_at.elapsed() < self.ttl).then(|| Arc::clone(&entry.hit))
    }

    fn put(&self, token_hash: &str, hit: (Session, Identity)) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity {
            // Crude but bounded: a full cache starts over rather than track recency.
            entries.clear();
        }
        entries.insert(token_hash.to_string(), Entry { hit: Arc::new(hit), cached_at: Instant::now() });
    }

    /// Forgets every cached session of an identity.
    pub fn evict_identity(&self, identity_id: Uuid) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.hit.1.id != identity_id);
        }
    }

    /// Forgets one session, whatever its token.
    pub fn evict_session(&self, session_id: Uuid) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, e| e.hit.0.id != session_id);
        }
    }

    /// Forgets everything, e.g. when notifications from other processes may have been missed.
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.write() {
            entries.clear();
        }
    }
}

/// A [`Store`] whose `session_by_token` is served from a [`SessionCache`].
pub struct CachingStore {
    inner: Arc<dyn Store>,
    cache: Arc<SessionCache>,
}

impl CachingStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<SessionCache>) -> Self {
        Self { inner, cache }
    }
}

#[async_trait]
impl SessionStore for CachingStore {
    async fn session_by_token(&self, token_hash: &str) -> Result<Option<(Session, Identity)>, StoreError> {
        if let Some(hit) = self.cache.get(token_hash) {
            return Ok(Some((hit.0.clone(), hit.1.clone())));
        }
        let found = self.inner.session_by_token(token_hash).await?;
        if let Some(hit) = &found {
            self.cache.put(token_hash, hit.clone());
        }
        Ok(found)
    }

    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.create_session(session).await
    }

    async fn session_by_logout_token(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        self.inner.session_by_logout_token(token_hash).await
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        self.inner.get_session(id).await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<Vec<Session>, StoreError> {
        self.inner.list_sessions(query).await
    }

    async fn count_sessions(&self, query: &SessionQuery) -> Result<u64, StoreError> {
        self.inner.count_sessions(query).await
    }

    async fn revoke_session(&self, id: Uuid) -> Result<bool, StoreError> {
        self.cache.evict_session(id);
        let result = self.inner.revoke_session(id).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_session(id);
        result
    }

    async fn revoke_sessions_of(&self, identity_id: Uuid, keep: Option<Uuid>) -> Result<u64, StoreError> {
        self.cache.evict_identity(identity_id);
        let result = self.inner.revoke_sessions_of(identity_id, keep).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_identity(identity_id);
        result
    }

    async fn delete_sessions_of(&self, identity_id: Uuid) -> Result<u64, StoreError> {
        self.cache.evict_identity(identity_id);
        let result = self.inner.delete_sessions_of(identity_id).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_identity(identity_id);
        result
    }

    async fn extend_session(&self, id: Uuid, expires_at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.cache.evict_session(id);
        let result = self.inner.extend_session(id, expires_at).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_session(id);
        result
    }
}

#[async_trait]
impl IdentityStore for CachingStore {
    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        self.inner.create_identity(identity).await
    }

    async fn update_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        self.cache.evict_identity(identity.id);
        let result = self.inner.update_identity(identity).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_identity(identity.id);
        result
    }

    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError> {
        self.inner.get_identity(id).await
    }

    async fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError> {
        self.cache.evict_identity(id);
        let result = self.inner.delete_identity(id).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_identity(id);
        result
    }

    async fn list_identities(&self, query: &IdentityQuery) -> Result<Vec<Identity>, StoreError> {
        self.inner.list_identities(query).await
    }

    async fn find_identity_by_identifier(
        &self,
        kind: CredentialType,
        identifier: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.inner.find_identity_by_identifier(kind, identifier).await
    }

    async fn replace_password_hash(
        &self,
        identity_id: Uuid,
        verified: &str,
        new_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // An identity write like any other: cached answers about it go.
        self.cache.evict_identity(identity_id);
        let result = self.inner.replace_password_hash(identity_id, verified, new_hash, at).await;
        // Again after the write: a lookup racing it may have cached the old row.
        self.cache.evict_identity(identity_id);
        result
    }

    async fn set_address_status(
        &self,
        identity_id: Uuid,
        address_id: Uuid,
        status: AddressStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // whoami shows addresses, so this is an identity write like any other.
        self.cache.evict_identity(identity_id);
        let result = self.inner.set_address_status(identity_id, address_id, status, at).await;
        self.cache.evict_identity(identity_id);
        result
    }
}

#[async_trait]
impl OutboxStore for CachingStore {
    async fn enqueue_message(&self, message: &Message) -> Result<(), StoreError> {
        self.inner.enqueue_message(message).await
    }

    async fn claim_messages(
        &self,
        limit: u32,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Message>, StoreError> {
        self.inner.claim_messages(limit, lease_until).await
    }

    async fn record_dispatch(&self, dispatch: &Dispatch, status: MessageStatus) -> Result<(), StoreError> {
        self.inner.record_dispatch(dispatch, status).await
    }

    async fn list_messages(&self, query: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        self.inner.list_messages(query).await
    }

    async fn get_message(&self, id: Uuid) -> Result<Option<(Message, Vec<Dispatch>)>, StoreError> {
        self.inner.get_message(id).await
    }
}

#[async_trait]
impl CodeStore for CachingStore {
    async fn create_code(&self, code: &OneTimeCode, message: Option<&Message>) -> Result<(), StoreError> {
        self.inner.create_code(code, message).await
    }

    async fn live_codes(&self, flow_id: Uuid, now: DateTime<Utc>) -> Result<Vec<OneTimeCode>, StoreError> {
        self.inner.live_codes(flow_id, now).await
    }

    async fn use_code(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.use_code(id, at).await
    }

    async fn count_code_attempt(&self, flow_id: Uuid) -> Result<u64, StoreError> {
        self.inner.count_code_attempt(flow_id).await
    }

    async fn count_address_attempt(
        &self,
        purpose: CodePurpose,
        address: &str,
        id: Uuid,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.count_address_attempt(purpose, address, id, at, since).await
    }

    async fn forget_address_attempt(&self, id: Uuid) -> Result<(), StoreError> {
        self.inner.forget_address_attempt(id).await
    }

    async fn record_code_failure(
        &self,
        purpose: CodePurpose,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.record_code_failure(purpose, address, at).await
    }

    async fn count_code_failures(
        &self,
        purpose: CodePurpose,
        address: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.count_code_failures(purpose, address, since).await
    }

    async fn identity_by_recovery_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.inner.identity_by_recovery_address(via, value).await
    }

    async fn identity_by_verifiable_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.inner.identity_by_verifiable_address(via, value).await
    }
}

#[async_trait]
impl FlowStore for CachingStore {
    async fn create_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        self.inner.create_flow(flow).await
    }

    async fn get_flow(&self, id: Uuid) -> Result<Option<Flow>, StoreError> {
        self.inner.get_flow(id).await
    }

    async fn update_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        self.inner.update_flow(flow).await
    }
}

#[async_trait]
impl Database for CachingStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        self.inner.migration_status().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn close(&self) {
        self.inner.close().await
    }
}
