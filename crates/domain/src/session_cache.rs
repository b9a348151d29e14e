//! A read-through cache for the `whoami` lookup. Every app request behind
//! Latchkey asks whoami, and a database round trip per ask dominates its
//! cost. [`CachingStore`] wraps any [`Store`]: hits skip the database, and
//! every write that could change a cached answer (revoking, extending or
//! deleting sessions; updating or deleting identities) evicts before and
//! after it, in this process, and nothing is cached while it runs. Other processes sharing a database evict through
//! [`SessionCache`]'s methods (PostgreSQL notifications drive them), and a
//! short time-to-live bounds staleness should a notification be lost.
//!
//! A lookup that misses reads the database and then caches what it read. If
//! an eviction happens in between, what it read may predate the write the
//! eviction announces, so every eviction bumps a generation counter and a
//! lookup only caches its row when the generation it saw before reading the
//! database is still current: a stale read is never cached after an eviction.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::courier::{Dispatch, Message, MessageStatus};
use crate::flow::Flow;
use crate::flow::errors::FlowErrorRecord;
use crate::identity::{AddressStatus, Credential, CredentialType, Identity};
use crate::metrics::{NoRecorder, Recorder};
use crate::session::{Session, SessionHit};
use crate::store::{
    AdmitRule, CleanupReport, CleanupStep, CleanupStore, CodePurpose, CodeRequest, CodeStore, Database,
    FlowStore, IdentityQuery, IdentityStore, MessageQuery, MigrationState, OneTimeCode, OutboxStore,
    PoolUsage, RateStore, RateWindow, SessionQuery, SessionStore, Store, StoreError, StoredPassword, Unsent,
    WindowCount,
};

struct Entry {
    hit: Arc<SessionHit>,
    cached_at: Instant,
}

struct Entries {
    by_token: HashMap<String, Entry>,
    /// Bumped by every eviction, under the write lock.
    generation: u64,
    /// Set while evictions from other processes may be missed (the
    /// notification listener lost its connection): nothing is cached then.
    suspended: bool,
    /// Local writes under way ([`Writing`] guards alive): nothing is cached
    /// then, so no entry a write is changing exists between its commit and
    /// its return.
    writes: usize,
}

/// The cache generation a lookup saw before it read the database; see
/// [`SessionCache::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// Token hash → the session and identity `whoami` answers with.
pub struct SessionCache {
    entries: RwLock<Entries>,
    capacity: usize,
    ttl: Duration,
}

impl SessionCache {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        let entries = Entries { by_token: HashMap::new(), generation: 0, suspended: false, writes: 0 };
        Self { entries: RwLock::new(entries), capacity, ttl }
    }

    /// A fresh cached answer, or the ticket to cache one read from the
    /// database with. A poisoned lock yields neither: the cache is off then.
    pub fn lookup(&self, token_hash: &str) -> Result<Arc<SessionHit>, Option<Ticket>> {
        let Ok(entries) = self.entries.read() else {
            return Err(None);
        };
        match entries.by_token.get(token_hash) {
            Some(entry) if entry.cached_at.elapsed() < self.ttl => Ok(Arc::clone(&entry.hit)),
            _ => Err((!entries.suspended).then_some(Ticket(entries.generation))),
        }
    }

    /// Caches a row read from the database after `ticket` was taken, unless
    /// an eviction happened since (the row may predate the write it
    /// announced) or a write is under way. Returns whether the row was cached.
    pub fn put(&self, ticket: Ticket, token_hash: &str, hit: Arc<SessionHit>) -> bool {
        let Ok(mut entries) = self.entries.write() else {
            return false;
        };
        if entries.suspended || entries.writes > 0 || entries.generation != ticket.0 {
            return false;
        }
        if entries.by_token.len() >= self.capacity {
            // Crude but bounded: a full cache starts over rather than track recency.
            entries.by_token.clear();
        }
        entries.by_token.insert(token_hash.to_string(), Entry { hit, cached_at: Instant::now() });
        true
    }

    /// Marks a local write to `scope` as under way until the guard drops:
    /// evicts what it may change now and again when it ends, and caches
    /// nothing meanwhile. A `whoami` that starts after the write committed
    /// therefore reads the database, even before the write has returned.
    pub fn writing(&self, scope: Scope) -> Writing<'_> {
        if let Ok(mut entries) = self.entries.write() {
            entries.writes += 1;
            entries.generation += 1;
            entries.by_token.retain(|_, e| !scope.covers(e));
        }
        Writing { cache: self, scope }
    }

    fn evict(&self, keep: impl Fn(&Entry) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.generation += 1;
            entries.by_token.retain(|_, e| keep(e));
        }
    }

    /// Forgets every cached session of an identity.
    pub fn evict_identity(&self, identity_id: Uuid) {
        self.evict(|e| e.hit.identity.id != identity_id);
    }

    /// Forgets one session, whatever its token.
    pub fn evict_session(&self, session_id: Uuid) {
        self.evict(|e| e.hit.session.id != session_id);
    }

    /// Forgets everything, e.g. when a notification could not be understood.
    pub fn clear(&self) {
        self.evict(|_| false);
    }

    /// Forgets everything and caches nothing until [`resume`](Self::resume):
    /// for while evictions from other processes may be missed.
    pub fn suspend(&self) {
        self.set_suspended(true);
    }

    /// Caches again, from empty; for once evictions are heard again.
    pub fn resume(&self) {
        self.set_suspended(false);
    }

    fn set_suspended(&self, suspended: bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.generation += 1;
            entries.by_token.clear();
            entries.suspended = suspended;
        }
    }
}

/// What a write may change.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    Session(Uuid),
    Identity(Uuid),
}

impl Scope {
    fn covers(&self, entry: &Entry) -> bool {
        match *self {
            Scope::Session(id) => entry.hit.session.id == id,
            Scope::Identity(id) => entry.hit.identity.id == id,
        }
    }
}

/// A local write under way; see [`SessionCache::writing`]. Dropping it, also
/// when the write fails or its caller gives up, ends the write.
pub struct Writing<'a> {
    cache: &'a SessionCache,
    scope: Scope,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if let Ok(mut entries) = self.cache.entries.write() {
            entries.writes = entries.writes.saturating_sub(1);
            // Lookups that read before the commit must not cache what they read.
            entries.generation += 1;
            entries.by_token.retain(|_, e| !self.scope.covers(e));
        }
    }
}

/// A [`Store`] whose `session_by_token` is served from a [`SessionCache`].
pub struct CachingStore {
    inner: Arc<dyn Store>,
    cache: Arc<SessionCache>,
    recorder: Arc<dyn Recorder>,
}

impl CachingStore {
    pub fn new(inner: Arc<dyn Store>, cache: Arc<SessionCache>) -> Self {
        Self { inner, cache, recorder: Arc::new(NoRecorder) }
    }

    /// Counts every lookup as a hit or a miss in `recorder`.
    pub fn with_recorder(mut self, recorder: Arc<dyn Recorder>) -> Self {
        self.recorder = recorder;
        self
    }
}

// Every store call gets a span (at debug, without arguments: they hold
// token digests and personal data), so traces show where a request waits.
#[async_trait]
impl SessionStore for CachingStore {
    // The span is the shared lookup's.
    async fn session_by_token(&self, token_hash: &str) -> Result<Option<(Session, Identity)>, StoreError> {
        let hit = self.shared_session_by_token(token_hash).await?;
        Ok(hit.map(|hit| (hit.session.clone(), hit.identity.clone())))
    }

    #[tracing::instrument(name = "store.session_by_token", level = "debug", skip_all)]
    async fn shared_session_by_token(&self, token_hash: &str) -> Result<Option<Arc<SessionHit>>, StoreError> {
        let ticket = match self.cache.lookup(token_hash) {
            Ok(hit) => {
                self.recorder.whoami_cache(true);
                return Ok(Some(hit));
            }
            Err(ticket) => ticket,
        };
        self.recorder.whoami_cache(false);
        let found = self.inner.shared_session_by_token(token_hash).await?;
        if let (Some(ticket), Some(hit)) = (ticket, &found) {
            self.cache.put(ticket, token_hash, Arc::clone(hit));
        }
        Ok(found)
    }

    #[tracing::instrument(name = "store.create_session", level = "debug", skip_all)]
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        self.inner.create_session(session).await
    }

    #[tracing::instrument(name = "store.create_session_and_notify", level = "debug", skip_all)]
    async fn create_session_and_notify(
        &self,
        session: &Session,
        notices: &[Message],
    ) -> Result<(), StoreError> {
        self.inner.create_session_and_notify(session, notices).await
    }

    #[tracing::instrument(name = "store.session_by_logout_token", level = "debug", skip_all)]
    async fn session_by_logout_token(&self, token_hash: &str) -> Result<Option<Session>, StoreError> {
        self.inner.session_by_logout_token(token_hash).await
    }

    #[tracing::instrument(name = "store.get_session", level = "debug", skip_all)]
    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        self.inner.get_session(id).await
    }

    #[tracing::instrument(name = "store.list_sessions", level = "debug", skip_all)]
    async fn list_sessions(
        &self,
        query: &SessionQuery,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError> {
        self.inner.list_sessions(query, now).await
    }

    #[tracing::instrument(name = "store.count_sessions", level = "debug", skip_all)]
    async fn count_sessions(&self, query: &SessionQuery, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.count_sessions(query, now).await
    }

    #[tracing::instrument(name = "store.revoke_session", level = "debug", skip_all)]
    async fn revoke_session(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let _writing = self.cache.writing(Scope::Session(id));
        self.inner.revoke_session(id, at).await
    }

    #[tracing::instrument(name = "store.revoke_sessions_of", level = "debug", skip_all)]
    async fn revoke_sessions_of(
        &self,
        identity_id: Uuid,
        keep: Option<Uuid>,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let _writing = self.cache.writing(Scope::Identity(identity_id));
        self.inner.revoke_sessions_of(identity_id, keep, at).await
    }

    #[tracing::instrument(name = "store.delete_sessions_of", level = "debug", skip_all)]
    async fn delete_sessions_of(&self, identity_id: Uuid) -> Result<u64, StoreError> {
        let _writing = self.cache.writing(Scope::Identity(identity_id));
        self.inner.delete_sessions_of(identity_id).await
    }

    #[tracing::instrument(name = "store.extend_session", level = "debug", skip_all)]
    async fn extend_session(
        &self,
        id: Uuid,
        expires_at: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _writing = self.cache.writing(Scope::Session(id));
        self.inner.extend_session(id, expires_at, at).await
    }

    #[tracing::instrument(name = "store.complete_second_factor", level = "debug", skip_all)]
    async fn complete_second_factor(
        &self,
        id: Uuid,
        method: &crate::session::AuthenticationMethod,
        expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _writing = self.cache.writing(Scope::Session(id));
        self.inner.complete_second_factor(id, method, expires_at).await
    }
}

#[async_trait]
impl IdentityStore for CachingStore {
    #[tracing::instrument(name = "store.create_identity", level = "debug", skip_all)]
    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        self.inner.create_identity(identity).await
    }

    #[tracing::instrument(name = "store.update_identity", level = "debug", skip_all)]
    async fn update_identity(&self, identity: &Identity) -> Result<(), StoreError> {
        let _writing = self.cache.writing(Scope::Identity(identity.id));
        self.inner.update_identity(identity).await
    }

    #[tracing::instrument(name = "store.update_identity_and_notify", level = "debug", skip_all)]
    async fn update_identity_and_notify(
        &self,
        identity: &Identity,
        notices: &[Message],
    ) -> Result<(), StoreError> {
        let _writing = self.cache.writing(Scope::Identity(identity.id));
        self.inner.update_identity_and_notify(identity, notices).await
    }

    #[tracing::instrument(name = "store.get_identity", level = "debug", skip_all)]
    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError> {
        self.inner.get_identity(id).await
    }

    #[tracing::instrument(name = "store.delete_identity", level = "debug", skip_all)]
    async fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError> {
        let _writing = self.cache.writing(Scope::Identity(id));
        self.inner.delete_identity(id).await
    }

    #[tracing::instrument(name = "store.list_identities", level = "debug", skip_all)]
    async fn list_identities(&self, query: &IdentityQuery) -> Result<Vec<Identity>, StoreError> {
        self.inner.list_identities(query).await
    }

    #[tracing::instrument(name = "store.password_by_identifier", level = "debug", skip_all)]
    async fn password_by_identifier(&self, identifier: &str) -> Result<Option<StoredPassword>, StoreError> {
        self.inner.password_by_identifier(identifier).await
    }

    #[tracing::instrument(name = "store.replace_password_hash", level = "debug", skip_all)]
    async fn replace_password_hash(
        &self,
        identity_id: Uuid,
        verified: &str,
        new_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // An identity write like any other.
        let _writing = self.cache.writing(Scope::Identity(identity_id));
        self.inner.replace_password_hash(identity_id, verified, new_hash, at).await
    }

    #[tracing::instrument(name = "store.set_address_status", level = "debug", skip_all)]
    async fn set_address_status(
        &self,
        identity_id: Uuid,
        address_id: Uuid,
        status: AddressStatus,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // whoami shows addresses, so this is an identity write like any other.
        let _writing = self.cache.writing(Scope::Identity(identity_id));
        self.inner.set_address_status(identity_id, address_id, status, at).await
    }

    #[tracing::instrument(name = "store.set_credential", level = "debug", skip_all)]
    async fn set_credential(
        &self,
        identity_id: Uuid,
        credential: &Credential,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The identity's `updated_at` changes, which whoami shows, and so may
        // its available AAL, which whoami judges the session by.
        let _writing = self.cache.writing(Scope::Identity(identity_id));
        self.inner.set_credential(identity_id, credential, at).await
    }

    #[tracing::instrument(name = "store.remove_credential", level = "debug", skip_all)]
    async fn remove_credential(
        &self,
        identity_id: Uuid,
        kind: CredentialType,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let _writing = self.cache.writing(Scope::Identity(identity_id));
        self.inner.remove_credential(identity_id, kind, at).await
    }

    #[tracing::instrument(name = "store.spend_totp_step", level = "debug", skip_all)]
    async fn spend_totp_step(&self, identity_id: Uuid, step: i64) -> Result<bool, StoreError> {
        // Nothing whoami shows.
        self.inner.spend_totp_step(identity_id, step).await
    }

    #[tracing::instrument(name = "store.spend_lookup_code", level = "debug", skip_all)]
    async fn spend_lookup_code(
        &self,
        identity_id: Uuid,
        set: Uuid,
        position: u32,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.spend_lookup_code(identity_id, set, position, at).await
    }

    #[tracing::instrument(name = "store.used_lookup_codes", level = "debug", skip_all)]
    async fn used_lookup_codes(
        &self,
        identity_id: Uuid,
        set: Uuid,
    ) -> Result<Vec<(u32, DateTime<Utc>)>, StoreError> {
        self.inner.used_lookup_codes(identity_id, set).await
    }
}

#[async_trait]
impl OutboxStore for CachingStore {
    #[tracing::instrument(name = "store.enqueue_message", level = "debug", skip_all)]
    async fn enqueue_message(&self, message: &Message) -> Result<(), StoreError> {
        self.inner.enqueue_message(message).await
    }

    #[tracing::instrument(name = "store.claim_messages", level = "debug", skip_all)]
    async fn claim_messages(
        &self,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<Message>, StoreError> {
        self.inner.claim_messages(limit, now, lease_until).await
    }

    #[tracing::instrument(name = "store.record_dispatch", level = "debug", skip_all)]
    async fn record_dispatch(
        &self,
        dispatch: &Dispatch,
        status: MessageStatus,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        self.inner.record_dispatch(dispatch, status, next_attempt_at).await
    }

    #[tracing::instrument(name = "store.list_messages", level = "debug", skip_all)]
    async fn list_messages(&self, query: &MessageQuery) -> Result<Vec<Message>, StoreError> {
        self.inner.list_messages(query).await
    }

    #[tracing::instrument(name = "store.get_message", level = "debug", skip_all)]
    async fn get_message(&self, id: Uuid) -> Result<Option<(Message, Vec<Dispatch>)>, StoreError> {
        self.inner.get_message(id).await
    }

    async fn count_unsent(&self) -> Result<Unsent, StoreError> {
        self.inner.count_unsent().await
    }
}

#[async_trait]
impl RateStore for CachingStore {
    #[tracing::instrument(name = "store.admit_event", level = "debug", skip_all)]
    async fn admit_event(
        &self,
        windows: &[RateWindow],
        event: Uuid,
        at: DateTime<Utc>,
        admit: AdmitRule<'_>,
    ) -> Result<(bool, Vec<WindowCount>), StoreError> {
        self.inner.admit_event(windows, event, at, admit).await
    }

    #[tracing::instrument(name = "store.count_events", level = "debug", skip_all)]
    async fn count_events(&self, window: &RateWindow) -> Result<WindowCount, StoreError> {
        self.inner.count_events(window).await
    }

    #[tracing::instrument(name = "store.reset_events", level = "debug", skip_all)]
    async fn reset_events(&self, bucket: &str, subject: &str) -> Result<u64, StoreError> {
        self.inner.reset_events(bucket, subject).await
    }

    #[tracing::instrument(name = "store.forget_event", level = "debug", skip_all)]
    async fn forget_event(&self, event: Uuid) -> Result<(), StoreError> {
        self.inner.forget_event(event).await
    }
}

#[async_trait]
impl CodeStore for CachingStore {
    #[tracing::instrument(name = "store.record_code_request", level = "debug", skip_all)]
    async fn record_code_request(&self, flow: &Flow, request: &CodeRequest) -> Result<(), StoreError> {
        self.inner.record_code_request(flow, request).await
    }

    #[tracing::instrument(name = "store.claim_stale_code_requests", level = "debug", skip_all)]
    async fn claim_stale_code_requests(
        &self,
        requested_before: DateTime<Utc>,
        limit: u32,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Vec<CodeRequest>, StoreError> {
        self.inner.claim_stale_code_requests(requested_before, limit, now, lease_until).await
    }

    #[tracing::instrument(name = "store.fulfil_code_request", level = "debug", skip_all)]
    async fn fulfil_code_request(
        &self,
        request_id: Uuid,
        code: Option<&OneTimeCode>,
        message: Option<&Message>,
    ) -> Result<bool, StoreError> {
        self.inner.fulfil_code_request(request_id, code, message).await
    }

    #[tracing::instrument(name = "store.count_code_requests", level = "debug", skip_all)]
    async fn count_code_requests(&self) -> Result<u64, StoreError> {
        self.inner.count_code_requests().await
    }

    #[tracing::instrument(name = "store.create_code", level = "debug", skip_all)]
    async fn create_code(&self, code: &OneTimeCode, message: Option<&Message>) -> Result<(), StoreError> {
        self.inner.create_code(code, message).await
    }

    #[tracing::instrument(name = "store.live_codes", level = "debug", skip_all)]
    async fn live_codes(&self, flow_id: Uuid, now: DateTime<Utc>) -> Result<Vec<OneTimeCode>, StoreError> {
        self.inner.live_codes(flow_id, now).await
    }

    #[tracing::instrument(name = "store.use_code", level = "debug", skip_all)]
    async fn use_code(&self, id: Uuid, at: DateTime<Utc>) -> Result<bool, StoreError> {
        self.inner.use_code(id, at).await
    }

    #[tracing::instrument(name = "store.count_code_attempt", level = "debug", skip_all)]
    async fn count_code_attempt(&self, flow_id: Uuid) -> Result<u64, StoreError> {
        self.inner.count_code_attempt(flow_id).await
    }

    #[tracing::instrument(name = "store.count_live_code_attempt", level = "debug", skip_all)]
    async fn count_live_code_attempt(
        &self,
        flow_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<(OneTimeCode, u64)>, StoreError> {
        self.inner.count_live_code_attempt(flow_id, now).await
    }

    #[tracing::instrument(name = "store.forget_code_attempt", level = "debug", skip_all)]
    async fn forget_code_attempt(&self, id: Uuid) -> Result<(), StoreError> {
        self.inner.forget_code_attempt(id).await
    }

    #[tracing::instrument(name = "store.count_address_attempt", level = "debug", skip_all)]
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

    #[tracing::instrument(name = "store.forget_address_attempt", level = "debug", skip_all)]
    async fn forget_address_attempt(&self, id: Uuid) -> Result<(), StoreError> {
        self.inner.forget_address_attempt(id).await
    }

    #[tracing::instrument(name = "store.record_code_failure", level = "debug", skip_all)]
    async fn record_code_failure(
        &self,
        purpose: CodePurpose,
        address: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.record_code_failure(purpose, address, at).await
    }

    #[tracing::instrument(name = "store.count_code_failures", level = "debug", skip_all)]
    async fn count_code_failures(
        &self,
        purpose: CodePurpose,
        address: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner.count_code_failures(purpose, address, since).await
    }

    #[tracing::instrument(name = "store.identity_by_recovery_address", level = "debug", skip_all)]
    async fn identity_by_recovery_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.inner.identity_by_recovery_address(via, value).await
    }

    #[tracing::instrument(name = "store.identity_by_verifiable_address", level = "debug", skip_all)]
    async fn identity_by_verifiable_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError> {
        self.inner.identity_by_verifiable_address(via, value).await
    }
}

#[async_trait]
impl CleanupStore for CachingStore {
    /// Nothing to evict: the cleanup deletes only sessions that are expired
    /// or revoked, which a cached answer already reports as not live, and
    /// `whoami` answers a missing session exactly as a dead one.
    #[tracing::instrument(name = "store.cleanup_batch", level = "debug", skip_all)]
    async fn cleanup_batch(
        &self,
        step: CleanupStep,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<CleanupReport, StoreError> {
        self.inner.cleanup_batch(step, before, limit).await
    }
}

#[async_trait]
impl FlowStore for CachingStore {
    #[tracing::instrument(name = "store.create_flow", level = "debug", skip_all)]
    async fn create_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        self.inner.create_flow(flow).await
    }

    #[tracing::instrument(name = "store.get_flow", level = "debug", skip_all)]
    async fn get_flow(&self, id: Uuid) -> Result<Option<Flow>, StoreError> {
        self.inner.get_flow(id).await
    }

    #[tracing::instrument(name = "store.update_flow", level = "debug", skip_all)]
    async fn update_flow(&self, flow: &Flow) -> Result<(), StoreError> {
        self.inner.update_flow(flow).await
    }

    #[tracing::instrument(name = "store.create_flow_error", level = "debug", skip_all)]
    async fn create_flow_error(&self, error: &FlowErrorRecord) -> Result<(), StoreError> {
        self.inner.create_flow_error(error).await
    }

    #[tracing::instrument(name = "store.get_flow_error", level = "debug", skip_all)]
    async fn get_flow_error(&self, id: Uuid) -> Result<Option<FlowErrorRecord>, StoreError> {
        self.inner.get_flow_error(id).await
    }
}

#[async_trait]
impl Database for CachingStore {
    #[tracing::instrument(name = "store.migrate", level = "debug", skip_all)]
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    #[tracing::instrument(name = "store.migration_status", level = "debug", skip_all)]
    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        self.inner.migration_status().await
    }

    #[tracing::instrument(name = "store.ping", level = "debug", skip_all)]
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    #[tracing::instrument(name = "store.close", level = "debug", skip_all)]
    async fn close(&self) {
        self.inner.close().await
    }

    fn pool_usage(&self) -> PoolUsage {
        self.inner.pool_usage()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::identity::IdentityState;
    use crate::time::{Clock, SystemClock};

    fn hit(identity_id: Uuid) -> Arc<SessionHit> {
        let at = SystemClock.now();
        let session = Session {
            id: Uuid::new_v4(),
            identity_id,
            active: true,
            issued_at: at,
            expires_at: at + chrono::Duration::hours(1),
            authenticated_at: at,
            aal: "aal1".into(),
            authentication_methods: Vec::new(),
            devices: Vec::new(),
            token_hash: String::new(),
            logout_token_hash: String::new(),
            created_at: at,
            updated_at: at,
        };
        let identity = Identity {
            id: identity_id,
            schema_id: "default".into(),
            state: IdentityState::Active,
            state_changed_at: None,
            traits: serde_json::json!({}),
            metadata_public: None,
            metadata_admin: None,
            external_id: None,
            credentials: BTreeMap::new(),
            verifiable_addresses: Vec::new(),
            recovery_addresses: Vec::new(),
            available_aal: Default::default(),
            created_at: at,
            updated_at: at,
        };
        Arc::new(SessionHit::new(session, identity))
    }

    fn cache() -> SessionCache {
        SessionCache::new(100, Duration::from_secs(60))
    }

    fn ticket(cache: &SessionCache, token: &str) -> Ticket {
        cache.lookup(token).err().flatten().expect("a miss hands out a ticket")
    }

    #[test]
    fn a_read_with_no_eviction_since_its_ticket_is_cached() {
        let cache = cache();
        let t = ticket(&cache, "a");
        let row = hit(Uuid::new_v4());
        assert!(cache.put(t, "a", row.clone()));
        assert_eq!(cache.lookup("a").unwrap().session.id, row.session.id);
    }

    #[test]
    fn a_read_that_started_before_a_session_eviction_is_not_cached() {
        let cache = cache();
        let row = hit(Uuid::new_v4());
        // The lookup misses and goes to the database...
        let t = ticket(&cache, "a");
        // ...the session is revoked and evicted meanwhile...
        cache.evict_session(row.session.id);
        // ...and the row it read, possibly from before the revocation, must not stick.
        assert!(!cache.put(t, "a", row));
        assert!(cache.lookup("a").is_err());
    }

    #[test]
    fn a_read_that_started_before_an_identity_eviction_is_not_cached() {
        let cache = cache();
        let row = hit(Uuid::new_v4());
        let t = ticket(&cache, "a");
        cache.evict_identity(row.identity.id);
        assert!(!cache.put(t, "a", row));
        assert!(cache.lookup("a").is_err());
    }

    #[test]
    fn any_eviction_invalidates_tickets_taken_before_it() {
        let cache = cache();
        let t = ticket(&cache, "a");
        // Unrelated ids: the check is deliberately coarse, costing only a miss.
        cache.evict_session(Uuid::new_v4());
        assert!(!cache.put(t, "a", hit(Uuid::new_v4())));
        let t = ticket(&cache, "a");
        cache.clear();
        assert!(!cache.put(t, "a", hit(Uuid::new_v4())));
    }

    #[test]
    fn a_read_that_started_after_the_eviction_is_cached() {
        let cache = cache();
        let row = hit(Uuid::new_v4());
        cache.evict_session(row.session.id);
        let t = ticket(&cache, "a");
        assert!(cache.put(t, "a", row));
        assert!(cache.lookup("a").is_ok());
    }

    #[test]
    fn evictions_drop_what_is_cached() {
        let cache = cache();
        let (one, two) = (hit(Uuid::new_v4()), hit(Uuid::new_v4()));
        let t = ticket(&cache, "one");
        assert!(cache.put(t, "one", one.clone()));
        assert!(cache.put(t, "two", two.clone()));
        cache.evict_session(one.session.id);
        assert!(cache.lookup("one").is_err());
        assert!(cache.lookup("two").is_ok());
        cache.evict_identity(two.identity.id);
        assert!(cache.lookup("two").is_err());
    }

    #[test]
    fn a_suspended_cache_serves_and_stores_nothing_until_resumed() {
        let cache = cache();
        let t = ticket(&cache, "a");
        assert!(cache.put(t, "a", hit(Uuid::new_v4())));
        let before = ticket(&cache, "b");
        cache.suspend();
        assert!(matches!(cache.lookup("a"), Err(None)), "no hit and no ticket while suspended");
        assert!(!cache.put(before, "b", hit(Uuid::new_v4())));
        cache.resume();
        // A read that started while evictions could be missed must not stick either.
        assert!(!cache.put(before, "b", hit(Uuid::new_v4())));
        assert!(cache.lookup("a").is_err(), "resuming starts from empty");
        let t = ticket(&cache, "b");
        assert!(cache.put(t, "b", hit(Uuid::new_v4())));
    }

    #[test]
    fn nothing_is_cached_while_a_write_is_under_way() {
        let cache = cache();
        let row = hit(Uuid::new_v4());
        let t = ticket(&cache, "a");
        assert!(cache.put(t, "a", row.clone()));
        let writing = cache.writing(Scope::Session(row.session.id));
        assert!(cache.lookup("a").is_err(), "the write's session is evicted when it starts");
        // A lookup during the write may read the row before or after the
        // commit: it is not cached, neither now nor once the write is done.
        let during = ticket(&cache, "a");
        assert!(!cache.put(during, "a", row.clone()));
        drop(writing);
        assert!(!cache.put(during, "a", row.clone()));
        let after = ticket(&cache, "a");
        assert!(cache.put(after, "a", row));
    }

    #[test]
    fn a_write_evicts_only_its_scope_and_hits_go_on_meanwhile() {
        let cache = cache();
        let (one, two) = (hit(Uuid::new_v4()), hit(Uuid::new_v4()));
        let t = ticket(&cache, "one");
        assert!(cache.put(t, "one", one.clone()));
        assert!(cache.put(t, "two", two.clone()));
        {
            let _writing = cache.writing(Scope::Identity(one.identity.id));
            assert!(cache.lookup("one").is_err());
            assert!(cache.lookup("two").is_ok());
            let _nested = cache.writing(Scope::Session(two.session.id));
            assert!(cache.lookup("two").is_err());
        }
        let t = ticket(&cache, "one");
        assert!(cache.put(t, "one", one), "caching resumes once every write is done");
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        // The TTL is measured on the monotonic clock (a bound on staleness,
        // not a rule of the domain): a zero TTL shows an entry past it.
        let fresh = SessionCache::new(100, Duration::from_secs(60));
        let t = ticket(&fresh, "a");
        assert!(fresh.put(t, "a", hit(Uuid::new_v4())));
        assert!(fresh.lookup("a").is_ok());
        let stale = SessionCache::new(100, Duration::ZERO);
        let t = ticket(&stale, "a");
        assert!(stale.put(t, "a", hit(Uuid::new_v4())));
        assert!(stale.lookup("a").is_err());
    }
}
