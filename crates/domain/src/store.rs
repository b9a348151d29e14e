//! The storage ports. Each database crate implements [`Store`]; the domain
//! only ever calls these units of work, so it never handles transactions and
//! nothing is left half-written when a step fails.

use async_trait::async_trait;
use uuid::Uuid;

use crate::courier::{Dispatch, Message, MessageStatus};
use crate::flow::Flow;
use crate::flow::errors::FlowErrorRecord;
use crate::identity::{AddressStatus, Credential, CredentialType, Identity};
use crate::session::Session;

/// What can go wrong in storage, in terms the domain can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique identifier, address or external id is already taken.
    #[error("conflicts with an existing record: {0}")]
    Conflict(String),
    #[error("record not found")]
    NotFound,
    /// The database failed. The cause is for logs, never for clients: it is
    /// kept whole (a driver's error can be downcast from it), and its text is
    /// part of this error's, so a log line of this error alone says what
    /// failed.
    #[error("database error: {0}")]
    Backend(#[source] BoxError),
}

/// Any error, kept as a cause.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl StoreError {
    /// A database failure caused by `cause` (a driver's error, or a message
    /// when there is nothing more to keep).
    pub fn backend(cause: impl Into<BoxError>) -> Self {
        StoreError::Backend(cause.into())
    }
}

/// A page request over identities, ordered by id (keyset pagination).
#[derive(Debug, Clone, Default)]
pub struct IdentityQuery {
    /// Return identities whose id sorts after this one.
    pub after: Option<Uuid>,
    pub limit: u32,
    /// Only the identity holding this exact credential identifier.
    pub credentials_identifier: Option<String>,
    /// Only these identities.
    pub ids: Vec<Uuid>,
}

/// A password identifier's owner and stored hash (see
/// [`IdentityStore::password_by_identifier`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPassword {
    pub identity_id: Uuid,
    /// `None` when the credential has no password set yet.
    pub hashed_password: Option<String>,
}

/// How busy a store's connection pool is, read when metrics are scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUsage {
    /// Connections open now, idle or in use.
    pub size: u32,
    pub idle: u32,
    /// The most it may open.
    pub max: u32,
}

/// Messages not yet delivered, by state: the courier's queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsent {
    /// Waiting for a dispatcher (including ones waiting to be retried).
    pub queued: u64,
    /// Claimed by a dispatcher that is sending them.
    pub processing: u64,
}

impl Unsent {
    /// From the `(status, count)` rows of a `GROUP BY status` over the
    /// queued and processing messages.
    pub fn from_counts(rows: impl IntoIterator<Item = (String, i64)>) -> Self {
        let mut unsent = Unsent::default();
        for (status, count) in rows {
            let count = u64::try_from(count).unwrap_or_default();
            match status.as_str() {
                "queued" => unsent.queued = count,
                _ => unsent.processing = count,
            }
        }
        unsent
    }
}

/// One applied or pending migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub version: i64,
    pub description: String,
    pub applied: bool,
}

#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// Inserts the identity with its credentials and addresses in one transaction.
    async fn create_identity(&self, identity: &Identity) -> Result<(), StoreError>;
    /// Replaces the identity row and all its credentials and addresses.
    async fn update_identity(&self, identity: &Identity) -> Result<(), StoreError>;
    /// [`update_identity`](Self::update_identity), and queues `notices` (the
    /// emails telling the owner about this change) in the same transaction:
    /// a change is never saved without its notices, nor a notice sent for a
    /// change that failed.
    async fn update_identity_and_notify(
        &self,
        identity: &Identity,
        notices: &[Message],
    ) -> Result<(), StoreError>;
    async fn get_identity(&self, id: Uuid) -> Result<Option<Identity>, StoreError>;
    /// Returns false when there was nothing to delete.
    async fn delete_identity(&self, id: Uuid) -> Result<bool, StoreError>;
    async fn list_identities(&self, query: &IdentityQuery) -> Result<Vec<Identity>, StoreError>;
    /// What a password login checks a password against: the identity that
    /// holds `identifier` (normalised) as a password identifier, and that
    /// credential's hash. One statement that yields one row whether or not
    /// the identifier exists, so the lookup costs the same either way and a
    /// login's timing cannot tell them apart; the whole identity is read
    /// only once the password is right.
    async fn password_by_identifier(&self, identifier: &str) -> Result<Option<StoredPassword>, StoreError>;
    /// Replaces the identity's password hash with `new_hash`, but only while
    /// the stored one is still `verified` (compare-and-swap), and touches
    /// nothing else: a login upgrading the hash it just checked can never
    /// undo a password change, a deactivation or any other write made since
    /// it read the identity. False when the hash changed meanwhile or there
    /// is no password credential.
    async fn replace_password_hash(
        &self,
        identity_id: Uuid,
        verified: &str,
        new_hash: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
    /// Moves one verifiable address along its lifecycle without touching the
    /// rest of the identity: `verified` follows from `Completed`, and
    /// `verified_at` is kept only while verified. False when there is no
    /// such address on that identity.
    async fn set_address_status(
        &self,
        identity_id: Uuid,
        address_id: Uuid,
        status: AddressStatus,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
    /// Puts `credential` in place of the identity's credential of its type
    /// (a second factor set up) and stamps the identity `updated_at` = `at`,
    /// touching nothing else. A new `lookup_secret` forgets which of the old
    /// codes were spent. False when there is no such identity.
    async fn set_credential(
        &self,
        identity_id: Uuid,
        credential: &Credential,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
    /// Removes the identity's credential of `kind` (with, for
    /// `lookup_secret`, the record of spent codes) and stamps the identity;
    /// false when it had none.
    async fn remove_credential(
        &self,
        identity_id: Uuid,
        kind: CredentialType,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
    /// Records TOTP time step `step` as used by the identity, but only if it
    /// is later than every step recorded before and the identity has a TOTP
    /// credential: one conditional write, so of parallel calls with one
    /// step exactly one returns true.
    async fn spend_totp_step(&self, identity_id: Uuid, step: i64) -> Result<bool, StoreError>;
    /// Marks code `position` of the identity's lookup codes `set` used `at`,
    /// but only if it was not and `set` is still the identity's current one:
    /// of parallel calls for one code exactly one returns true.
    async fn spend_lookup_code(
        &self,
        identity_id: Uuid,
        set: Uuid,
        position: u32,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
    /// The spent codes of the identity's lookup codes `set`: position and when.
    async fn used_lookup_codes(
        &self,
        identity_id: Uuid,
        set: Uuid,
    ) -> Result<Vec<(u32, chrono::DateTime<chrono::Utc>)>, StoreError>;
}

/// Schema management and health, shared by every backend.
#[async_trait]
pub trait Database: Send + Sync {
    /// Applies every pending migration.
    async fn migrate(&self) -> Result<(), StoreError>;
    /// Every migration this build knows, and whether it is applied.
    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError>;
    /// Cheap round trip used by `/health/ready`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Closes the pool, letting in-flight queries finish.
    async fn close(&self);
    /// The connection pool's use right now; cheap, no query.
    fn pool_usage(&self) -> PoolUsage;
}

#[async_trait]
pub trait FlowStore: Send + Sync {
    async fn create_flow(&self, flow: &Flow) -> Result<(), StoreError>;
    async fn get_flow(&self, id: Uuid) -> Result<Option<Flow>, StoreError>;
    /// Fails with `NotFound` when the flow is gone.
    async fn update_flow(&self, flow: &Flow) -> Result<(), StoreError>;
    /// Keeps an error for the error UI (`selfservice_errors`).
    async fn create_flow_error(&self, error: &FlowErrorRecord) -> Result<(), StoreError>;
    /// The error with this id, expired or not (the cleanup removes it).
    async fn get_flow_error(&self, id: Uuid) -> Result<Option<FlowErrorRecord>, StoreError>;
}

/// Which sessions to list.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    pub identity_id: Option<Uuid>,
    /// `Some(true)`: only live (active and unexpired) sessions; `Some(false)`: only the others.
    pub active: Option<bool>,
    /// Keyset: sessions whose id sorts after this one.
    pub after: Option<Uuid>,
    /// Leave this session out (the caller's own, when listing "other" sessions).
    pub exclude: Option<Uuid>,
    pub offset: u64,
    pub limit: u32,
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError>;
    /// Creates the session and queues `notices` in the same transaction (an
    /// account recovery's session and the email telling the owner of it).
    async fn create_session_and_notify(
        &self,
        session: &Session,
        notices: &[Message],
    ) -> Result<(), StoreError>;
    /// The hot path behind `whoami`: the session and its identity (without
    /// credentials) in one indexed read, no writes.
    async fn session_by_token(&self, token_hash: &str) -> Result<Option<(Session, Identity)>, StoreError>;
    /// The same read, shared: a cache hands out its entry without copying
    /// the identity. Stores without a cache wrap a fresh read.
    async fn shared_session_by_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<std::sync::Arc<crate::session::SessionHit>>, StoreError> {
        let found = self.session_by_token(token_hash).await?;
        Ok(found.map(|(session, identity)| {
            std::sync::Arc::new(crate::session::SessionHit::new(session, identity))
        }))
    }
    async fn session_by_logout_token(&self, token_hash: &str) -> Result<Option<Session>, StoreError>;
    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StoreError>;
    /// Sessions matching `query`; "live" means active and unexpired at `now`.
    async fn list_sessions(
        &self,
        query: &SessionQuery,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Session>, StoreError>;
    async fn count_sessions(
        &self,
        query: &SessionQuery,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError>;
    /// Marks a session inactive at `at`; false when there is no such session.
    async fn revoke_session(&self, id: Uuid, at: chrono::DateTime<chrono::Utc>) -> Result<bool, StoreError>;
    /// Marks every session of the identity that is live at `at` inactive
    /// except `keep`; returns how many.
    async fn revoke_sessions_of(
        &self,
        identity_id: Uuid,
        keep: Option<Uuid>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError>;
    async fn delete_sessions_of(&self, identity_id: Uuid) -> Result<u64, StoreError>;
    /// Sets a new expiry, changed `at`; false when there is no such session.
    async fn extend_session(
        &self,
        id: Uuid,
        expires_at: chrono::DateTime<chrono::Utc>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
    /// A second factor completed on a live session: in one statement the
    /// session becomes `aal2`, `method` is appended to its methods, and it
    /// counts as authenticated at `method.completed_at` until `expires_at`.
    /// False when the session is gone, revoked or expired.
    async fn complete_second_factor(
        &self,
        id: Uuid,
        method: &crate::session::AuthenticationMethod,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<bool, StoreError>;
}

/// Which outbox messages to list, newest last (keyset by id).
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub status: Option<MessageStatus>,
    pub recipient: Option<String>,
    /// The last message of the previous page: messages list newest first
    /// (as Kratos lists them), ties by id.
    pub after: Option<MessageCursor>,
    pub limit: u32,
}

/// Where a page of messages ends: its last message's creation time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageCursor {
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub id: Uuid,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn enqueue_message(&self, message: &Message) -> Result<(), StoreError>;
    /// Takes up to `limit` messages that are queued and due (their next
    /// attempt time, if any, has come by `now`), or whose earlier claim
    /// lapsed (a dispatcher died mid-send), marks them `processing` until
    /// `lease_until`, and returns them. Concurrent dispatchers never get the
    /// same message.
    async fn claim_messages(
        &self,
        limit: u32,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Message>, StoreError>;
    /// Records an attempt, counts it, and moves the message to `status`;
    /// a message put back in the queue is not claimed before `next_attempt_at`.
    async fn record_dispatch(
        &self,
        dispatch: &Dispatch,
        status: MessageStatus,
        next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Result<(), StoreError>;
    async fn list_messages(&self, query: &MessageQuery) -> Result<Vec<Message>, StoreError>;
    async fn get_message(&self, id: Uuid) -> Result<Option<(Message, Vec<Dispatch>)>, StoreError>;
    /// Counts the messages not yet sent or abandoned (an index lookup).
    async fn count_unsent(&self) -> Result<Unsent, StoreError>;
}

/// What a one-time code is for; wrong guesses are counted per purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodePurpose {
    Recovery,
    Verification,
    /// Sign-up by code: the address belongs to no identity yet.
    Registration,
    /// Signing in with an emailed code (passwordless, or as a second factor).
    Login,
}

impl CodePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CodePurpose::Recovery => "recovery",
            CodePurpose::Verification => "verification",
            CodePurpose::Registration => "registration",
            CodePurpose::Login => "login",
        }
    }
}

impl std::str::FromStr for CodePurpose {
    type Err = crate::UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "recovery" => Ok(CodePurpose::Recovery),
            "verification" => Ok(CodePurpose::Verification),
            "registration" => Ok(CodePurpose::Registration),
            "login" => Ok(CodePurpose::Login),
            other => Err(crate::UnknownValue::new("code purpose", other)),
        }
    }
}

/// A one-time code (recovery or verification) as stored: only its keyed
/// hash, never the code.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTimeCode {
    pub id: Uuid,
    pub flow_id: Uuid,
    pub purpose: CodePurpose,
    /// The identity the code proves; `None` for codes sent to unknown addresses.
    pub identity_id: Option<Uuid>,
    /// The normalised address the code was sent to.
    pub address: String,
    /// Hex HMAC-SHA256 of the code.
    pub code_hmac: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub used_at: Option<chrono::DateTime<chrono::Utc>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// A code mail asked for by address (a recovery or verification submit),
/// as recorded on the request path. What the address leads to (an
/// identity, a code, a mail or nothing) is worked out afterwards, off the
/// request path: see `flow::code_requests`.
#[derive(Debug, Clone, PartialEq)]
pub struct CodeRequest {
    pub id: Uuid,
    pub flow_id: Uuid,
    pub purpose: CodePurpose,
    /// The normalised address the code is asked for.
    pub address: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
}

#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Saves `flow` and records `request` in one transaction, so a flow in
    /// `sent_email` always has its request behind it. Fails with `NotFound`
    /// when the flow is gone.
    async fn record_code_request(&self, flow: &Flow, request: &CodeRequest) -> Result<(), StoreError>;
    /// Claims, until `lease_until`, up to `limit` requests made before
    /// `requested_before` that no sweep holds a claim on at `now` (their
    /// server stopped before serving them, or its task failed), oldest
    /// first. Concurrent sweeps never get the same request.
    async fn claim_stale_code_requests(
        &self,
        requested_before: chrono::DateTime<chrono::Utc>,
        limit: u32,
        now: chrono::DateTime<chrono::Utc>,
        lease_until: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CodeRequest>, StoreError>;
    /// Ends request `request_id` in one transaction: deletes it and, with a
    /// `code`, stores the code and its `message` as [`CodeStore::create_code`]
    /// does (the flow's earlier codes retired, so the code served last is
    /// the one that works, and its mail the last queued). Requests of one
    /// flow are ended one at a time. False, with nothing written, when the
    /// request was already ended.
    async fn fulfil_code_request(
        &self,
        request_id: Uuid,
        code: Option<&OneTimeCode>,
        message: Option<&Message>,
    ) -> Result<bool, StoreError>;
    /// Requests not yet ended (an index-free count of a small table).
    async fn count_code_requests(&self) -> Result<u64, StoreError>;
    /// Stores a code and, in the same transaction, the message announcing it;
    /// the flow's earlier unused codes are deleted (a resend retires them).
    async fn create_code(&self, code: &OneTimeCode, message: Option<&Message>) -> Result<(), StoreError>;
    /// The flow's codes that are neither used nor expired at `now`.
    async fn live_codes(
        &self,
        flow_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<OneTimeCode>, StoreError>;
    /// Marks a code used; false when it already was (codes work once, even under races).
    async fn use_code(&self, id: Uuid, at: chrono::DateTime<chrono::Utc>) -> Result<bool, StoreError>;
    /// Counts one more code attempt on the flow and returns the count, this
    /// attempt included, from one atomic statement: of N concurrent callers
    /// each gets a different number, so at most `limit` see one `<= limit`.
    /// Kept apart from the flow document (which `update_flow` writes whole),
    /// and never reset, so attempts carry over across resends. Fails with
    /// `NotFound` when the flow is gone.
    async fn count_code_attempt(&self, flow_id: Uuid) -> Result<u64, StoreError>;
    /// Counts one more attempt against each of the flow's live codes (neither
    /// used nor expired at `now`) and returns them, oldest first, each with
    /// its count, this attempt included, from one atomic statement: of N
    /// concurrent callers each gets a different count for a code, so exactly
    /// one sees 1 (past the per-address budget only that first attempt on a
    /// code is judged). Never reset; a resend brings a code counted from 0.
    async fn count_live_code_attempt(
        &self,
        flow_id: Uuid,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<(OneTimeCode, u64)>, StoreError>;
    /// Takes back one attempt counted on the code (never below zero): a right
    /// code that was only looked at, not spent.
    async fn forget_code_attempt(&self, id: Uuid) -> Result<(), StoreError>;
    /// Counts an attempt against an address across flows before its code is
    /// compared: records it under `id` (a wrong guess, unless taken back with
    /// [`CodeStore::forget_address_attempt`]) and returns how many were
    /// recorded for the purpose and address since `since`, this one
    /// included. Concurrent callers for one address are serialised, so each
    /// sees every attempt counted before it.
    async fn count_address_attempt(
        &self,
        purpose: CodePurpose,
        address: &str,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError>;
    /// Takes back an attempt that turned out to be a right code.
    async fn forget_address_attempt(&self, id: Uuid) -> Result<(), StoreError>;
    /// Counts a wrong code against an address, across flows.
    async fn record_code_failure(
        &self,
        purpose: CodePurpose,
        address: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), StoreError>;
    async fn count_code_failures(
        &self,
        purpose: CodePurpose,
        address: &str,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError>;
    /// The identity owning a recovery address (normalised value).
    async fn identity_by_recovery_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError>;
    /// The identity owning a verifiable address (normalised value).
    async fn identity_by_verifiable_address(
        &self,
        via: &str,
        value: &str,
    ) -> Result<Option<Identity>, StoreError>;
}

/// One counting window of a rate limit: the events recorded under
/// `bucket` and `subject` at or after `since`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateWindow {
    /// What is counted, e.g. `login.identifier` or `send.address`.
    pub bucket: &'static str,
    /// Whom it is counted against; callers pass a digest, never the raw
    /// identifier, address or IP, so the table holds no personal data.
    pub subject: String,
    pub since: chrono::DateTime<chrono::Utc>,
}

/// What a window held when an event asked to be admitted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCount {
    pub count: u64,
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
    pub newest: Option<chrono::DateTime<chrono::Utc>>,
}

/// Decides from the windows' counts (in the order given) whether an event
/// is admitted.
pub type AdmitRule<'a> = &'a (dyn Fn(&[WindowCount]) -> bool + Send + Sync);

/// Events counted in time windows, shared by every server on the database:
/// the ground truth of login throttling and send limits.
#[async_trait]
pub trait RateStore: Send + Sync {
    /// Reads every window's count and, only when `admit` accepts them,
    /// records the event (id `event`, time `at`) in each, all as one step:
    /// concurrent callers on a window take turns, so each sees every event
    /// admitted before it and no more than a limit's worth get through.
    /// Returns whether it was admitted and the counts `admit` saw.
    async fn admit_event(
        &self,
        windows: &[RateWindow],
        event: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        admit: AdmitRule<'_>,
    ) -> Result<(bool, Vec<WindowCount>), StoreError>;
    /// The window's count without recording anything.
    async fn count_events(&self, window: &RateWindow) -> Result<WindowCount, StoreError>;
    /// Forgets every event recorded under `bucket` and `subject` (a success
    /// resets a count); returns how many.
    async fn reset_events(&self, bucket: &str, subject: &str) -> Result<u64, StoreError>;
    /// Takes one event back from every window it was recorded in.
    async fn forget_event(&self, event: Uuid) -> Result<(), StoreError>;
}

/// One step of the database cleanup: which rows it removes, and what its
/// `before` time is compared with. Every step works on rows that nothing
/// reads any more, so running it early, late or twice changes no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupStep {
    /// Sessions that expired before `before`, and revoked (inactive) ones
    /// last changed before it.
    Sessions,
    /// Flows that expired before `before`, with the one-time codes issued
    /// in them (an expired flow takes no code).
    Flows,
    /// One-time codes that expired, or were used, before `before`.
    OneTimeCodes,
    /// Wrong-code records (`code_failures`) made before `before`.
    CodeFailures,
    /// Rate-limit events (`rate_events`) recorded before `before`.
    RateEvents,
    /// Delivered or abandoned messages whose code expired before `before`:
    /// their subject and bodies are blanked, so old mail holds no codes.
    CourierBodies,
    /// Delivered or abandoned messages last changed before `before`, with
    /// their delivery attempts.
    CourierMessages,
    /// Errors kept for the error UI that expired before `before`.
    FlowErrors,
}

impl CleanupStep {
    /// Every step, in the order a run takes them.
    pub const ALL: [CleanupStep; 8] = [
        CleanupStep::CourierBodies,
        CleanupStep::Sessions,
        CleanupStep::Flows,
        CleanupStep::OneTimeCodes,
        CleanupStep::CodeFailures,
        CleanupStep::RateEvents,
        CleanupStep::CourierMessages,
        CleanupStep::FlowErrors,
    ];

    /// A short name for progress reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupStep::Sessions => "expired and revoked sessions",
            CleanupStep::Flows => "expired flows",
            CleanupStep::OneTimeCodes => "expired and used codes",
            CleanupStep::CodeFailures => "old wrong-code records",
            CleanupStep::RateEvents => "old rate-limit events",
            CleanupStep::CourierBodies => "delivered mail with expired codes (blanked)",
            CleanupStep::CourierMessages => "delivered and abandoned mail",
            CleanupStep::FlowErrors => "expired errors of the error flow",
        }
    }

    /// How many rows of a batch's report count towards its size: a batch
    /// that touched fewer than asked was the last one due.
    pub fn batch_rows(self, report: &CleanupReport) -> u64 {
        match self {
            CleanupStep::Sessions => report.sessions,
            CleanupStep::Flows => report.flows,
            CleanupStep::OneTimeCodes => report.one_time_codes,
            CleanupStep::CodeFailures => report.code_failures,
            CleanupStep::RateEvents => report.rate_events,
            CleanupStep::CourierBodies => report.courier_bodies_cleared,
            CleanupStep::CourierMessages => report.courier_messages,
            CleanupStep::FlowErrors => report.flow_errors,
        }
    }
}

/// Rows a cleanup deleted per table (and message bodies it blanked).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub sessions: u64,
    /// `selfservice_flows`.
    pub flows: u64,
    pub one_time_codes: u64,
    pub code_failures: u64,
    pub rate_events: u64,
    pub courier_messages: u64,
    pub courier_dispatches: u64,
    /// Messages whose subject and bodies were blanked (kept, not deleted).
    pub courier_bodies_cleared: u64,
    /// `selfservice_errors`.
    pub flow_errors: u64,
}

impl CleanupReport {
    /// Each count under its table's name, for reports.
    pub fn rows(&self) -> [(&'static str, u64); 9] {
        [
            ("sessions", self.sessions),
            ("selfservice_flows", self.flows),
            ("one_time_codes", self.one_time_codes),
            ("code_failures", self.code_failures),
            ("rate_events", self.rate_events),
            ("courier_messages", self.courier_messages),
            ("courier_dispatches", self.courier_dispatches),
            ("courier_messages (bodies cleared)", self.courier_bodies_cleared),
            ("selfservice_errors", self.flow_errors),
        ]
    }

    pub fn total(&self) -> u64 {
        self.rows().iter().map(|(_, n)| n).sum()
    }
}

impl std::ops::AddAssign for CleanupReport {
    fn add_assign(&mut self, other: Self) {
        self.sessions += other.sessions;
        self.flows += other.flows;
        self.one_time_codes += other.one_time_codes;
        self.code_failures += other.code_failures;
        self.rate_events += other.rate_events;
        self.courier_messages += other.courier_messages;
        self.courier_dispatches += other.courier_dispatches;
        self.courier_bodies_cleared += other.courier_bodies_cleared;
        self.flow_errors += other.flow_errors;
    }
}

/// Removes what nothing reads any more, a little at a time (see
/// [`crate::cleanup`] for what is due when).
#[async_trait]
pub trait CleanupStore: Send + Sync {
    /// One batch of `step`: at most `limit` of its rows due before
    /// `before`, in one short transaction of its own, so no lock is held
    /// for long. Rows another cleaner is working on are skipped, not
    /// waited for, so concurrent runs (several servers on one PostgreSQL)
    /// share the work harmlessly. Returns what the batch touched.
    async fn cleanup_batch(
        &self,
        step: CleanupStep,
        before: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> Result<CleanupReport, StoreError>;
}

/// Everything Latchkey persists, as one handle for wiring.
pub trait Store:
    IdentityStore + FlowStore + SessionStore + OutboxStore + CodeStore + RateStore + CleanupStore + Database
{
}
impl<
    T: IdentityStore + FlowStore + SessionStore + OutboxStore + CodeStore + RateStore + CleanupStore + Database,
> Store for T
{
}
