//! The courier's model: messages waiting in the outbox, each attempt to
//! deliver one, and the [`Mailer`] port that delivers. Messages are written
//! in the same unit of work as whatever they announce (a code, a change), so
//! nothing is promised that is not sent, and a dispatcher sends them later,
//! retrying transient failures with a growing, jittered pause (stored on the
//! message, so a restart keeps the schedule), until the message can no
//! longer help: its code expired, or the delivery horizon passed.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tracing::Instrument;
use uuid::Uuid;

use crate::time::Clock;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    Queued,
    Processing,
    Sent,
    Abandoned,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Queued => "queued",
            MessageStatus::Processing => "processing",
            MessageStatus::Sent => "sent",
            MessageStatus::Abandoned => "abandoned",
        }
    }
}

impl std::str::FromStr for MessageStatus {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(Self::Queued),
            "processing" => Ok(Self::Processing),
            "sent" => Ok(Self::Sent),
            "abandoned" => Ok(Self::Abandoned),
            other => Err(crate::UnknownValue::new("message status", other)),
        }
    }
}

/// One email in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub status: MessageStatus,
    pub recipient: String,
    pub subject: String,
    pub body: String,
    pub html_body: Option<String>,
    /// `recovery_code_valid`, `verification_code_invalid`, ...
    pub template_type: String,
    pub send_count: i32,
    /// When the code the message carries expires, if it carries one; the
    /// message is useless (and abandoned) after that.
    pub code_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Message {
    /// A message queued `at`.
    pub fn new(recipient: &str, rendered: Rendered, template_type: &str, at: DateTime<Utc>) -> Message {
        Message {
            id: Uuid::new_v4(),
            status: MessageStatus::Queued,
            recipient: recipient.to_string(),
            subject: rendered.subject,
            body: rendered.text,
            html_body: rendered.html,
            template_type: template_type.to_string(),
            send_count: 0,
            code_expires_at: None,
            created_at: at,
            updated_at: at,
        }
    }
}

/// A rendered template.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub id: Uuid,
    pub message_id: Uuid,
    /// `success` or `failed`.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a delivery failed; the text is for operators, never for end users.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct MailError {
    pub message: String,
    /// Retrying cannot help (an SMTP 5xx reply such as 550 unknown
    /// recipient, or an address that is not one): abandon at once.
    pub permanent: bool,
}

impl MailError {
    /// A failure worth retrying: 4xx replies, refused or dropped
    /// connections, timeouts, TLS handshakes.
    pub fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: true }
    }
}

/// When a failed message is tried again and when it is given up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The pause after the first failure; it doubles after each one.
    pub initial_backoff: std::time::Duration,
    /// The longest pause between two attempts.
    pub max_backoff: std::time::Duration,
    /// How long a message without a code is worth sending after it was queued.
    pub horizon: chrono::Duration,
    /// Attempts before a message is abandoned (`courier.message_retries`
    /// plus the first), or `None` to retry until the code expires or the
    /// horizon passes.
    pub max_attempts: Option<i32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: std::time::Duration::from_secs(1),
            max_backoff: std::time::Duration::from_secs(10 * 60),
            horizon: chrono::Duration::hours(24),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The pause before attempt `failures + 1`, after `failures` failed
    /// attempts (at least 1): `initial * 2^(failures-1)` capped at the
    /// maximum, then a random point in its upper half ("equal jitter"), so
    /// messages that failed together (a relay restart) do not return
    /// together, while each pause still grows.
    pub fn backoff(&self, failures: i32) -> std::time::Duration {
        let doublings = u32::try_from(failures.max(1) - 1).unwrap_or(0).min(32);
        let ceiling = self
            .initial_backoff
            .checked_mul(1 << doublings.min(31))
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff);
        let mut bytes = [0u8; 4];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        let fraction = f64::from(u32::from_le_bytes(bytes)) / f64::from(u32::MAX);
        ceiling / 2 + (ceiling / 2).mul_f64(fraction)
    }

    /// When `message` stops being worth sending: its code's expiry, or the
    /// horizon after it was queued.
    pub fn deadline(&self, message: &Message) -> DateTime<Utc> {
        message.code_expires_at.unwrap_or_else(|| message.created_at + self.horizon)
    }

    /// After a transient failure at `at` (the message's `failures`-th):
    /// when to try again, or `None` to give up. A pause that would end past
    /// the deadline is cut to half the time left, so the last attempts come
    /// while the message can still help; once less than the initial
    /// backoff is left, the message is abandoned.
    pub fn next_attempt(&self, message: &Message, failures: i32, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.max_attempts.is_some_and(|max| failures >= max) {
            return None;
        }
        let left = self.deadline(message) - at;
        let pause = chrono::Duration::from_std(self.backoff(failures)).unwrap_or(chrono::Duration::MAX);
        let initial = chrono::Duration::from_std(self.initial_backoff).unwrap_or(chrono::Duration::MAX);
        if pause < left {
            Some(at + pause)
        } else if left > initial {
            Some(at + left / 2)
        } else {
            None
        }
    }
}

/// Whether a send may start under a claim taken at `claimed_at` for
/// `lease`: only in the lease's first half, so that a send (at most a
/// minute) ends before the claim lapses and another dispatcher takes the
/// message up.
fn may_start_send(claimed_at: DateTime<Utc>, lease: chrono::Duration, at: DateTime<Utc>) -> bool {
    at <= claimed_at + lease / 2
}

/// What the admin API and the `--dev` mail viewer show of the outbox:
/// messages, and one message with its delivery attempts.
#[derive(Clone)]
pub struct Outbox {
    store: std::sync::Arc<dyn crate::store::Store>,
}

impl Outbox {
    pub fn new(store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        Self { store }
    }

    pub async fn list(
        &self,
        query: &crate::store::MessageQuery,
    ) -> Result<Vec<Message>, crate::store::StoreError> {
        self.store.list_messages(query).await
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<(Message, Vec<Dispatch>)>, crate::store::StoreError> {
        self.store.get_message(id).await
    }

    /// The newest `limit` messages, newest first.
    pub async fn newest(&self, limit: usize) -> Result<Vec<Message>, crate::store::StoreError> {
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        let query = crate::store::MessageQuery { status: None, recipient: None, after: None, limit };
        self.store.list_messages(&query).await
    }
}

/// How many messages one dispatcher sends at once; a mailer should keep as
/// many connections open.
pub const SENDS_AT_ONCE: usize = 8;

/// Delivers one message (SMTP in production).
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, message: &Message) -> Result<(), MailError>;
}

/// Sends what is due in the outbox: claims a batch, delivers each message,
/// records the attempt. A transient failure puts the message back with the
/// time of its next attempt ([`RetryPolicy`]); a permanent one, or a message
/// past its deadline, is abandoned.
#[derive(Clone)]
pub struct Dispatcher {
    store: std::sync::Arc<dyn crate::store::Store>,
    clock: std::sync::Arc<dyn Clock>,
    mailer: std::sync::Arc<dyn Mailer>,
    policy: RetryPolicy,
    /// How long a claim holds before another dispatcher may retry the
    /// message (a dispatcher killed mid-round leaves its claims behind).
    lease: chrono::Duration,
    batch: u32,
    recorder: std::sync::Arc<dyn crate::metrics::Recorder>,
}

impl Dispatcher {
    pub fn new(
        store: std::sync::Arc<dyn crate::store::Store>,
        clock: std::sync::Arc<dyn Clock>,
        mailer: std::sync::Arc<dyn Mailer>,
        policy: RetryPolicy,
    ) -> Self {
        let policy = RetryPolicy { max_attempts: policy.max_attempts.map(|m| m.max(1)), ..policy };
        Self {
            store,
            clock,
            mailer,
            policy,
            lease: chrono::Duration::minutes(5),
            batch: 32,
            recorder: std::sync::Arc::new(crate::metrics::NoRecorder),
        }
    }

    /// Counts deliveries, failures and abandoned messages in `recorder`.
    pub fn with_recorder(mut self, recorder: std::sync::Arc<dyn crate::metrics::Recorder>) -> Self {
        self.recorder = recorder;
        self
    }

    /// One round; returns how many messages were claimed.
    pub async fn dispatch_due(&self) -> Result<usize, crate::store::StoreError> {
        let claimed_at = self.clock.now();
        let claimed = self.store.claim_messages(self.batch, claimed_at, claimed_at + self.lease).await?;
        let late = std::sync::atomic::AtomicUsize::new(0);
        // Several recipients at once, each on its own pooled connection: one
        // SMTP exchange is a few round trips plus the relay's own delays, so
        // one message at a time leaves a backlog waiting on the network. One
        // recipient's messages go in the order they were queued, so a newer
        // code never arrives before the older one it replaced.
        // Indices, not references: a borrowed item type trips the `Send`
        // check of the task this future is spawned on.
        let mut by_recipient: Vec<Vec<usize>> = Vec::new();
        for (i, message) in claimed.iter().enumerate() {
            match by_recipient.iter_mut().find(|queue| claimed[queue[0]].recipient == message.recipient) {
                Some(queue) => queue.push(i),
                None => by_recipient.push(vec![i]),
            }
        }
        let outcomes: Vec<_> = futures_util::stream::iter(by_recipient)
            .map(|queue| async {
                for message in queue.into_iter().map(|i| &claimed[i]) {
                    // No send starts after half the lease: one send takes at
                    // most a minute, so each ends while the claim still holds
                    // and no other dispatcher can have taken the message over
                    // and sent it too. The rest wait for their claim to lapse.
                    if !may_start_send(claimed_at, self.lease, self.clock.now()) {
                        late.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    // One root span per send, so `courier watch` and `serve`
                    // export sends as traces (the outbox polling is not).
                    let span = tracing::info_span!(
                        "courier.send",
                        message_id = %message.id,
                        attempt = message.send_count + 1
                    );
                    self.deliver(message).instrument(span).await?;
                }
                Ok(())
            })
            .buffer_unordered(SENDS_AT_ONCE)
            .collect()
            .await;
        let late = late.into_inner();
        if late > 0 {
            tracing::warn!(
                left = late,
                "the mail relay is slow: the rest of this batch waits for its claim to lapse"
            );
        }
        outcomes.into_iter().collect::<Result<(), _>>()?;
        Ok(claimed.len())
    }

    /// One attempt at one claimed message, recorded.
    async fn deliver(&self, message: &Message) -> Result<(), crate::store::StoreError> {
        let attempt = message.send_count + 1;
        let too_late = self.clock.now() >= self.policy.deadline(message);
        let (outcome, next_attempt_at) = if too_late {
            // Never sent: a dead code or a stale notice helps nobody.
            let why = if message.code_expires_at.is_some() {
                "not sent: the code it carries expired before it could be delivered"
            } else {
                "not sent: the delivery horizon (courier.delivery_horizon) passed"
            };
            (Err(MailError::permanent(why)), None)
        } else {
            let result = self.mailer.send(message).await;
            let next = match &result {
                Err(e) if !e.permanent => self.policy.next_attempt(message, attempt, self.clock.now()),
                _ => None,
            };
            (result, next)
        };
        let status = match (&outcome, next_attempt_at) {
            (Ok(()), _) => MessageStatus::Sent,
            (Err(_), Some(_)) => MessageStatus::Queued,
            (Err(_), None) => MessageStatus::Abandoned,
        };
        let error = outcome.as_ref().err().map(|e| match status {
            _ if too_late => e.message.clone(),
            MessageStatus::Abandoned if e.permanent => format!("{e} (permanent failure: not retried)"),
            MessageStatus::Abandoned => {
                format!("{e} (given up: {})", self.give_up_reason(message, attempt))
            }
            _ => e.message.clone(),
        });
        if let Some(error) = &error {
            if status == MessageStatus::Abandoned {
                tracing::warn!(message_id = %message.id, attempt, %error, "email abandoned");
            } else {
                tracing::warn!(message_id = %message.id, attempt, %error, next_attempt_at = ?next_attempt_at, "email delivery failed; will retry");
            }
        }
        let at = self.clock.now();
        let dispatch = Dispatch {
            id: Uuid::new_v4(),
            message_id: message.id,
            status: if outcome.is_ok() { "success".into() } else { "failed".into() },
            error,
            created_at: at,
            updated_at: at,
        };
        self.store.record_dispatch(&dispatch, status, next_attempt_at).await?;
        match status {
            MessageStatus::Sent => {
                self.recorder.mail_sent((at - message.created_at).to_std().unwrap_or_default())
            }
            MessageStatus::Abandoned => {
                self.recorder.mail_failed();
                self.recorder.mail_abandoned();
            }
            _ => self.recorder.mail_failed(),
        }
        Ok(())
    }

    fn give_up_reason(&self, message: &Message, attempt: i32) -> String {
        match self.policy.max_attempts {
            Some(max) if attempt >= max => {
                format!("{attempt} attempts, courier.message_retries is {}", max - 1)
            }
            _ if message.code_expires_at.is_some() => {
                "the code it carries expires before another attempt".into()
            }
            _ => "the delivery horizon (courier.delivery_horizon) ends before another attempt".into(),
        }
    }

    /// Dispatches every `interval` (sooner while there is a backlog) until `stop` resolves.
    pub async fn run(&self, interval: std::time::Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let busy = match self.dispatch_due().await {
                Ok(n) => {
                    self.recorder.dispatch_round();
                    n as u32 == self.batch
                }
                Err(e) => {
                    tracing::error!(error = %e, "the courier could not read the outbox");
                    false
                }
            };
            let pause = if busy { std::time::Duration::ZERO } else { interval };
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Turns a template type and its data into an email (templates live with
/// the courier; flows only name what to send).
pub trait Renderer: Send + Sync {
    fn render(
        &self,
        template_type: &str,
        data: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Rendered, RenderError>;
}

/// An email that could not be rendered, with the renderer's own error.
#[derive(Debug, thiserror::Error)]
#[error("the {template_type} email: {source}")]
pub struct RenderError {
    pub template_type: String,
    pub source: crate::store::BoxError,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;
    use std::time::Duration;

    #[test]
    fn sends_start_only_in_the_first_half_of_a_claim() {
        let claimed_at = SystemClock.now();
        let lease = chrono::Duration::minutes(5);
        assert!(may_start_send(claimed_at, lease, claimed_at));
        assert!(may_start_send(claimed_at, lease, claimed_at + chrono::Duration::seconds(150)));
        assert!(!may_start_send(claimed_at, lease, claimed_at + chrono::Duration::seconds(151)));
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: None, ..RetryPolicy::default() }
    }

    fn message(code_expires_at: Option<DateTime<Utc>>) -> Message {
        let rendered = Rendered { subject: "s".into(), text: "t".into(), html: None };
        Message {
            code_expires_at,
            ..Message::new("a@example.com", rendered, "recovery_code_valid", SystemClock.now())
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_up_to_the_cap() {
        let p = policy();
        for failures in 1..=40 {
            let ceiling = Duration::from_secs(1 << (failures - 1).min(20)).min(p.max_backoff);
            for _ in 0..50 {
                let pause = p.backoff(failures);
                assert!(pause >= ceiling / 2 && pause <= ceiling, "failure {failures}: {pause:?}");
            }
        }
        // Seconds at first, minutes later, never more than the cap.
        assert!(p.backoff(1) <= Duration::from_secs(1));
        assert!(p.backoff(8) >= Duration::from_secs(64));
        assert!(p.backoff(1000) <= Duration::from_secs(600));
        assert!(p.backoff(0) <= Duration::from_secs(1), "no failure counts as the first");
    }

    #[test]
    fn jitter_spreads_the_pauses() {
        let p = policy();
        let pauses: std::collections::HashSet<_> = (0..20).map(|_| p.backoff(10)).collect();
        assert!(pauses.len() > 1, "pauses vary");
    }

    #[test]
    fn a_message_without_a_code_is_retried_until_the_horizon() {
        let p = policy();
        let m = message(None);
        let next = p.next_attempt(&m, 100, m.created_at).unwrap();
        assert!(next <= m.created_at + chrono::Duration::minutes(10));
        let late = m.created_at + chrono::Duration::hours(23) + chrono::Duration::minutes(59);
        let next = p.next_attempt(&m, 100, late).unwrap();
        assert!(next < p.deadline(&m), "the last attempts are moved before the deadline");
        let last = p.deadline(&m) - chrono::Duration::milliseconds(500);
        assert_eq!(p.next_attempt(&m, 100, last), None, "less than the initial backoff left");
    }

    #[test]
    fn a_code_message_is_given_up_when_its_code_expires() {
        let p = policy();
        let expires = SystemClock.now() + chrono::Duration::minutes(15);
        let m = message(Some(expires));
        assert_eq!(p.deadline(&m), expires);
        let at = expires - chrono::Duration::minutes(5);
        let next = p.next_attempt(&m, 12, at).unwrap();
        assert!(next > at && next < expires, "halfway to the expiry: {next}");
        assert_eq!(p.next_attempt(&m, 12, expires), None);
    }

    #[test]
    fn message_retries_caps_the_attempts() {
        let p = RetryPolicy { max_attempts: Some(3), ..policy() };
        let m = message(None);
        assert!(p.next_attempt(&m, 2, m.created_at).is_some());
        assert_eq!(p.next_attempt(&m, 3, m.created_at), None);
    }
}
