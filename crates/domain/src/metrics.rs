//! The events the domain reports for operators' metrics. The domain only
//! calls these hooks; the HTTP layer's Prometheus registry implements them,
//! so the domain needs no metrics library and tests can ignore them.

use std::time::Duration;

/// Receives what the domain counts. Every method defaults to doing nothing.
pub trait Recorder: Send + Sync {
    /// A `whoami` session lookup was answered from the cache (`hit`) or
    /// had to read the database.
    fn whoami_cache(&self, _hit: bool) {}
    /// An email was delivered, `latency` after it was queued.
    fn mail_sent(&self, _latency: Duration) {}
    /// A delivery attempt failed (the message may be retried).
    fn mail_failed(&self) {}
    /// A message was given up for good.
    fn mail_abandoned(&self) {}
    /// The dispatcher finished a round: it claimed what was due in the
    /// outbox (a batch at most) and tried each message.
    fn dispatch_round(&self) {}
}

/// Records nothing: the default until a registry is attached.
pub struct NoRecorder;

impl Recorder for NoRecorder {}
