//! Where the domain's time comes from. Every rule that depends on the time
//! (expiry, lifespans, windows, backoff) asks a [`Clock`] it was given, so
//! tests move time forward instead of sleeping through it.

use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Duration, SubsecRound, Utc};

/// The source of the current time, in the precision both databases keep.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        truncated(Utc::now())
    }
}

/// The wall clock plus an offset a test sets: time keeps passing as usual
/// (ordering by `created_at` still works) and can also jump ahead, past a
/// lifespan or window, at once. Share it in an `Arc`.
#[derive(Debug, Default)]
pub struct TestClock {
    offset_micros: AtomicI64,
}

impl TestClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock `by` into the future, for every holder at once.
    pub fn advance(&self, by: std::time::Duration) {
        let micros = i64::try_from(by.as_micros()).expect("an advance fits in i64 microseconds");
        self.offset_micros.fetch_add(micros, Ordering::SeqCst);
    }

    /// From now on reads the wall clock plus `offset` (negative: behind it),
    /// for a test whose other half runs on the wall clock.
    pub fn set_offset(&self, offset: Duration) {
        let micros = offset.num_microseconds().expect("an offset fits in i64 microseconds");
        self.offset_micros.store(micros, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        truncated(Utc::now()) + Duration::microseconds(self.offset_micros.load(Ordering::SeqCst))
    }
}

/// Truncated to microseconds, the precision PostgreSQL keeps, so a value
/// read back from either database equals the one written.
fn truncated(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_keep_microseconds_only() {
        assert_eq!(SystemClock.now().timestamp_subsec_nanos() % 1_000, 0);
        assert_eq!(TestClock::new().now().timestamp_subsec_nanos() % 1_000, 0);
    }

    #[test]
    fn a_test_clock_jumps_ahead_by_what_it_is_advanced() {
        let clock = TestClock::new();
        let before = SystemClock.now();
        clock.advance(std::time::Duration::from_secs(3600));
        let moved = clock.now();
        assert!(moved >= before + Duration::hours(1));
        assert!(moved < SystemClock.now() + Duration::hours(1) + Duration::seconds(1));
    }

    #[test]
    fn a_test_clock_can_run_behind_the_wall_clock() {
        let clock = TestClock::new();
        clock.advance(std::time::Duration::from_secs(60));
        clock.set_offset(-Duration::minutes(30));
        assert!(clock.now() <= SystemClock.now() - Duration::minutes(30));
    }
}
