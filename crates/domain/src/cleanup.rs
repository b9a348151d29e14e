//! The database cleanup (`latchkey cleanup sql`, and periodically inside
//! `serve`): deletes what nothing reads any more — expired flows with their
//! codes, used and expired codes, wrong-code and rate-limit records older
//! than every window that counts them, expired and revoked sessions,
//! delivered or abandoned mail, expired errors of the error flow — and
//! blanks delivered mail whose code has expired. It works table by table in small batches, each its own short
//! transaction, so it never holds a lock for long, and is safe to stop at
//! any point or to run from several servers at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::store::{CleanupReport, CleanupStep, CleanupStore, Store, StoreError};
use crate::time::Clock;

/// How a cleanup run goes.
#[derive(Debug, Clone)]
pub struct CleanupSettings {
    /// Rows per batch (Kratos's `database.cleanup.batch_size`).
    pub batch_size: u32,
    /// Pause between tables (Kratos's `database.cleanup.sleep.tables`).
    pub sleep_tables: Duration,
    /// What expired, was used, was revoked or was delivered less than this
    /// long ago is kept (Kratos's `--keep-last`, `database.cleanup.older_than`).
    pub keep_last: chrono::Duration,
    /// The window wrong codes are counted in: younger records still count.
    pub code_failure_window: chrono::Duration,
    /// The longest window any rate limit counts events in.
    pub rate_window: chrono::Duration,
}

impl CleanupSettings {
    /// The time `step` compares its rows with in a run at `now`. Counting
    /// records are kept for as long as any window counts them, whatever
    /// `keep_last` says; a message's code is dead once expired, so blanking
    /// waits for nothing else.
    pub fn before(&self, step: CleanupStep, now: DateTime<Utc>) -> DateTime<Utc> {
        let keep = match step {
            CleanupStep::CourierBodies => chrono::Duration::zero(),
            CleanupStep::CodeFailures => self.keep_last.max(self.code_failure_window),
            CleanupStep::RateEvents => self.keep_last.max(self.rate_window),
            CleanupStep::Sessions
            | CleanupStep::Flows
            | CleanupStep::OneTimeCodes
            | CleanupStep::CourierMessages
            | CleanupStep::FlowErrors => self.keep_last,
        };
        // Keeping for longer than dates go back keeps everything (and the
        // epoch is a time both databases store).
        now.checked_sub_signed(keep).unwrap_or(DateTime::<Utc>::UNIX_EPOCH).max(DateTime::<Utc>::UNIX_EPOCH)
    }
}

/// One full run at `now`: every step in turn, each repeated batch after
/// batch until nothing of it is due, with `sleep_tables` between steps.
/// `on_step` hears each step's total as it finishes. Unlike Kratos, which
/// deletes one batch per table and asks to be run again, a run leaves
/// nothing due behind.
pub async fn run<S: CleanupStore + ?Sized>(
    store: &S,
    settings: &CleanupSettings,
    now: DateTime<Utc>,
    on_step: &mut (dyn FnMut(CleanupStep, &CleanupReport) + Send),
) -> Result<CleanupReport, StoreError> {
    let limit = settings.batch_size.max(1);
    let mut total = CleanupReport::default();
    for (i, step) in CleanupStep::ALL.into_iter().enumerate() {
        if i > 0 && !settings.sleep_tables.is_zero() {
            tokio::time::sleep(settings.sleep_tables).await;
        }
        let before = settings.before(step, now);
        let mut done = CleanupReport::default();
        loop {
            let batch = store.cleanup_batch(step, before, limit).await?;
            done += batch;
            // `before` is fixed for the run, so this ends: rows that become
            // due meanwhile wait for the next run.
            if step.batch_rows(&batch) < u64::from(limit) {
                break;
            }
            // Between batches, others get the locks (SQLite has one writer).
            tokio::task::yield_now().await;
        }
        on_step(step, &done);
        total += done;
    }
    Ok(total)
}

/// Runs the cleanup every `interval` until `stop` resolves. The first run
/// comes at a random moment within the first `interval` (at most five
/// minutes in), so servers started together spread their runs and one
/// that restarts often still cleans. Stopping mid-run is safe: a batch cut
/// short rolls back.
pub async fn run_periodically(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: CleanupSettings,
    interval: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let first = interval.min(Duration::from_secs(300));
    let mut pause = first.mul_f64((uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0);
    loop {
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(pause) => {}
        }
        let mut quiet = |_: CleanupStep, _: &CleanupReport| {};
        let run = run(store.as_ref(), &settings, clock.now(), &mut quiet);
        tokio::select! {
            () = &mut stop => return,
            done = run => match done {
                Ok(report) if report.total() > 0 => {
                    let r = report;
                    tracing::info!(
                        sessions = r.sessions,
                        selfservice_flows = r.flows,
                        one_time_codes = r.one_time_codes,
                        code_failures = r.code_failures,
                        rate_events = r.rate_events,
                        courier_messages = r.courier_messages,
                        courier_dispatches = r.courier_dispatches,
                        courier_bodies_cleared = r.courier_bodies_cleared,
                        selfservice_errors = r.flow_errors,
                        "database cleanup removed expired records"
                    );
                }
                Ok(_) => tracing::debug!("database cleanup found nothing to remove"),
                Err(e) => tracing::warn!(error = %e, "database cleanup failed; it runs again later"),
            }
        }
        pause = interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;

    fn settings() -> CleanupSettings {
        CleanupSettings {
            batch_size: 100,
            sleep_tables: Duration::ZERO,
            keep_last: chrono::Duration::hours(1),
            code_failure_window: chrono::Duration::hours(24),
            rate_window: chrono::Duration::minutes(15),
        }
    }

    #[test]
    fn counting_records_outlive_every_window_that_counts_them() {
        let now = SystemClock.now();
        let s = settings();
        assert_eq!(s.before(CleanupStep::Flows, now), now - chrono::Duration::hours(1));
        assert_eq!(s.before(CleanupStep::Sessions, now), now - chrono::Duration::hours(1));
        // The failure window is longer than keep_last, the rate window shorter.
        assert_eq!(s.before(CleanupStep::CodeFailures, now), now - chrono::Duration::hours(24));
        assert_eq!(s.before(CleanupStep::RateEvents, now), now - chrono::Duration::hours(1));
        // An expired code is dead whatever keep_last says.
        assert_eq!(s.before(CleanupStep::CourierBodies, now), now);
    }

    #[test]
    fn reports_add_up_per_table() {
        let mut a = CleanupReport { sessions: 2, flows: 1, courier_dispatches: 3, ..Default::default() };
        a += CleanupReport { sessions: 1, rate_events: 4, ..Default::default() };
        assert_eq!((a.sessions, a.flows, a.rate_events, a.courier_dispatches), (3, 1, 4, 3));
        assert_eq!(a.total(), 11);
        assert_eq!(CleanupStep::Sessions.batch_rows(&a), 3);
        assert_eq!(CleanupStep::CourierMessages.batch_rows(&a), 0);
    }
}
