//! The courier's model: messages waiting in the outbox, each attempt to
//! deliver one, and the [`Mailer`] port that delivers. Messages are written
//! in the same unit of work as whatever they announce (a code, a change), so
//! nothing is promised that is not sent, and a dispatcher sends them later,
//! retrying failures, so a restart or an SMTP outage loses nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::time::now;

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
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "queued" => Ok(Self::Queued),
            "processing" => Ok(Self::Processing),
            "sent" => Ok(Self::Sent),
            "abandoned" => Ok(Self::Abandoned),
            other => Err(format!("unknown message status `{other}`")),
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
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Message {
    pub fn new(recipient: &str, rendered: Rendered, template_type: &str) -> Message {
        let at = now();
        Message {
            id: Uuid::new_v4(),
            status: MessageStatus::Queued,
            recipient: recipient.to_string(),
            subject: rendered.subject,
            body: rendered.text,
            html_body: rendered.html,
            template_type: template_type.to_string(),
            send_count: 0,
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
#[error("{0}")]
pub struct MailError(pub String);

/// Delivers one message (SMTP in production).
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, message: &Message) -> Result<(), MailError>;
}

/// Sends what is due in the outbox: claims a batch, delivers each message,
/// records the attempt. A failed message is retried on a later round until
/// it has been tried `max_attempts` times, then abandoned.
#[derive(Clone)]
pub struct Dispatcher {
    store: std::sync::Arc<dyn crate::store::Store>,
    mailer: std::sync::Arc<dyn Mailer>,
    max_attempts: i32,
    /// How long a claim holds before another dispatcher may retry the message.
    lease: chrono::Duration,
    batch: u32,
    recorder: std::sync::Arc<dyn crate::metrics::Recorder>,
}

impl Dispatcher {
    pub fn new(
        store: std::sync::Arc<dyn crate::store::Store>,
        mailer: std::sync::Arc<dyn Mailer>,
        max_attempts: i32,
    ) -> Self {
        Self {
            store,
            mailer,
            max_attempts: max_attempts.max(1),
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

    /// One round; returns how many messages were attempted.
    pub async fn dispatch_due(&self) -> Result<usize, crate::store::StoreError> {
        let claimed = self.store.claim_messages(self.batch, now() + self.lease).await?;
        for message in &claimed {
            let result = self.mailer.send(message).await;
            let at = now();
            let (status, error) = match &result {
                Ok(()) => (MessageStatus::Sent, None),
                Err(e) if message.send_count + 1 >= self.max_attempts => {
                    (MessageStatus::Abandoned, Some(e.0.clone()))
                }
                Err(e) => (MessageStatus::Queued, Some(e.0.clone())),
            };
            if let Some(error) = &error {
                tracing::warn!(message_id = %message.id, attempt = message.send_count + 1, %error, "email delivery failed");
            }
            let dispatch = Dispatch {
                id: Uuid::new_v4(),
                message_id: message.id,
                status: if result.is_ok() { "success".into() } else { "failed".into() },
                error,
                created_at: at,
                updated_at: at,
            };
            self.store.record_dispatch(&dispatch, status).await?;
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
        }
        Ok(claimed.len())
    }

    /// Dispatches every `interval` (sooner while there is a backlog) until `stop` resolves.
    pub async fn run(&self, interval: std::time::Duration, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let busy = match self.dispatch_due().await {
                Ok(n) => n as u32 == self.batch,
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
    ) -> Result<Rendered, String>;
}
