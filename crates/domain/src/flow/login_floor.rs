//! How soon a failed password login may answer.
//!
//! A verification costs what its hash's parameters cost: an identity
//! imported with bcrypt cost 12 while the hasher is configured for cost 8
//! takes sixteen times the work of the dummy hash that unknown identifiers
//! are checked against, and only a right password can rehash it. So every
//! failed password login answers no sooner than the *floor* after its
//! submission began: the slowest typical time, from a submission's start to
//! its password's verdict, among the cost classes
//! ([`latchkey_hash::cost_class`]) this process has verified, the
//! configured one included. Unknown identifiers, wrong passwords,
//! identities without a password, deactivated ones and imported hashes then
//! all answer at the floor. Successful logins are not held: the password
//! was right, there is nothing left to hide from its sender.
//!
//! Why a floor rather than the alternatives:
//! * Checking the dummy hash at the slowest class's parameters would spend a
//!   core and a hashing slot on every failed attempt; waiting on a timer
//!   holds neither.
//! * Holding each failure for a random draw from the slowest class's times
//!   would match that class without the extra latency, but then only the
//!   held answers would carry the timer's jitter. With a floor near the
//!   slowest class's 99th percentile nearly every failure, whatever its
//!   class, ends on the same timer.
//!
//! A class's typical time is the k-th largest of its last [`WINDOW`] times,
//! `k = 1 + n / 128`: about the 99th percentile once the window is full (so
//! about 1 % of the slowest class's failures outlast the floor), the
//! largest while it holds fewer than 128. A few one-off stalls do not move
//! it, and every time leaves as the window slides.
//!
//! What stays visible:
//! * the first verifications of a class the process has not seen since it
//!   started, e.g. the first attempts on an identity imported with costlier
//!   parameters: they take what their hash costs before the floor knows it;
//! * the tail of the slowest class: the ~1 % of its attempts slower than its
//!   typical time, and all of them while the load rises faster than its
//!   window follows;
//! * each process keeps its own floor, from the classes it has verified.
//!
//! The floor remembers up to [`MAX_CLASSES`] classes until the process
//! ends, so failed logins keep waiting for a class whose hashes have since
//! all been rehashed: a cost in latency, not a leak.
//!
//! Times are tokio's [`Instant`]s and the wait a tokio timer: a real wait,
//! not a rule about the time of day (see `time.rs`); tests pause tokio's
//! clock instead of waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Times kept per class.
pub const WINDOW: usize = 512;
/// Classes remembered; past this the cheapest is forgotten.
pub const MAX_CLASSES: usize = 32;
/// One more of a class's largest times is ignored per this many kept.
const IGNORED_PER: usize = 128;

/// The floor, shared by clones (one per process, kept across reloads).
#[derive(Clone, Default)]
pub struct FailureFloor {
    classes: Arc<Mutex<HashMap<String, Times>>>,
}

impl std::fmt::Debug for FailureFloor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FailureFloor").field("floor", &self.floor()).finish_non_exhaustive()
    }
}

impl FailureFloor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that an attempt checked against a hash of `class` had its
    /// verdict `took` after its submission began, right password or not.
    pub fn record(&self, class: &str, took: Duration) {
        let mut classes = self.classes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(times) = classes.get_mut(class) {
            times.push(took);
            return;
        }
        if classes.len() >= MAX_CLASSES {
            // The cheapest class sets the floor least; forgetting it costs
            // at most its own first verifications again.
            let cheapest = classes.iter().min_by_key(|(_, t)| t.typical()).map(|(c, _)| c.clone());
            if let Some(cheapest) = cheapest {
                classes.remove(&cheapest);
            }
        }
        classes.entry(class.to_string()).or_default().push(took);
    }

    /// The floor now: the slowest class's typical time; zero before the
    /// first verification.
    pub fn floor(&self) -> Duration {
        let classes = self.classes.lock().unwrap_or_else(PoisonError::into_inner);
        classes.values().map(Times::typical).max().unwrap_or_default()
    }

    /// Waits until the floor has passed since `started`, the start of the
    /// submission; at once if it already has.
    pub async fn wait(&self, started: Instant) {
        tokio::time::sleep_until(started + self.floor()).await;
    }
}

/// One class's latest times, in arrival order and sorted.
#[derive(Default)]
struct Times {
    arrived: VecDeque<Duration>,
    sorted: Vec<Duration>,
}

impl Times {
    fn push(&mut self, took: Duration) {
        if self.arrived.len() == WINDOW
            && let Some(oldest) = self.arrived.pop_front()
            && let Ok(at) = self.sorted.binary_search(&oldest)
        {
            self.sorted.remove(at);
        }
        self.arrived.push_back(took);
        let at = self.sorted.partition_point(|t| *t <= took);
        self.sorted.insert(at, took);
    }

    /// The `1 + n / 128`-th largest time kept.
    fn typical(&self) -> Duration {
        let n = self.sorted.len();
        n.checked_sub(1 + n / IGNORED_PER).map_or(Duration::ZERO, |at| self.sorted[at])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn no_verification_yet_means_no_floor() {
        assert_eq!(FailureFloor::new().floor(), Duration::ZERO);
    }

    #[test]
    fn a_few_times_set_the_floor_at_their_largest() {
        let floor = FailureFloor::new();
        for t in [13, 15, 12] {
            floor.record("bcrypt:8", ms(t));
        }
        assert_eq!(floor.floor(), ms(15));
    }

    #[test]
    fn a_full_window_sets_it_near_the_99th_percentile_and_ignores_one_off_stalls() {
        let floor = FailureFloor::new();
        for t in 1..=512 {
            floor.record("bcrypt:8", ms(t));
        }
        // k = 1 + 512 / 128 = 5: the fifth largest.
        assert_eq!(floor.floor(), ms(508));
        // Two stalls replace the two oldest times; the floor barely moves.
        floor.record("bcrypt:8", Duration::from_secs(3));
        floor.record("bcrypt:8", Duration::from_secs(5));
        assert_eq!(floor.floor(), ms(510));
        // 128 times and one stall: the stall is ignored, the largest other is not.
        let fresh = FailureFloor::new();
        for _ in 0..127 {
            fresh.record("bcrypt:8", ms(13));
        }
        fresh.record("bcrypt:8", ms(14));
        fresh.record("bcrypt:8", Duration::from_secs(2));
        assert_eq!(fresh.floor(), ms(14));
    }

    #[test]
    fn old_times_leave_as_the_window_slides() {
        let floor = FailureFloor::new();
        for _ in 0..WINDOW {
            floor.record("bcrypt:8", ms(50));
        }
        for _ in 0..WINDOW {
            floor.record("bcrypt:8", ms(20));
        }
        assert_eq!(floor.floor(), ms(20));
        let times = &floor.classes.lock().unwrap()["bcrypt:8"];
        assert_eq!((times.arrived.len(), times.sorted.len()), (WINDOW, WINDOW));
    }

    #[test]
    fn the_slowest_class_sets_the_floor_for_all() {
        let floor = FailureFloor::new();
        for _ in 0..200 {
            floor.record("bcrypt:8", ms(13));
        }
        assert_eq!(floor.floor(), ms(13));
        // One imported hash at cost 10 is verified: everyone waits for it.
        floor.record("bcrypt:10", ms(51));
        assert_eq!(floor.floor(), ms(51));
        for _ in 0..200 {
            floor.record("bcrypt:8", ms(14));
        }
        assert_eq!(floor.floor(), ms(51));
        // Clones share it.
        assert_eq!(floor.clone().floor(), ms(51));
    }

    #[test]
    fn past_the_class_limit_the_cheapest_class_is_forgotten() {
        let floor = FailureFloor::new();
        floor.record("slowest", ms(900));
        for n in 1..MAX_CLASSES as u64 {
            floor.record(&format!("class {n}"), ms(n));
        }
        floor.record("new", ms(5));
        let classes = floor.classes.lock().unwrap();
        assert_eq!(classes.len(), MAX_CLASSES);
        assert!(!classes.contains_key("class 1") && classes.contains_key("new"));
        drop(classes);
        assert_eq!(floor.floor(), ms(900));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_waits_until_the_floor_after_its_start() {
        let floor = FailureFloor::new();
        let started = Instant::now();
        // Nothing known yet: no wait.
        floor.wait(started).await;
        assert_eq!(started.elapsed(), Duration::ZERO);

        floor.record("bcrypt:10", ms(50));
        tokio::time::advance(ms(13)).await;
        floor.wait(started).await;
        let waited = started.elapsed();
        // The timer counts whole milliseconds.
        assert!(waited >= ms(50) && waited < ms(51), "{waited:?}");
        // Already past the floor: at once.
        floor.wait(started).await;
        assert_eq!(started.elapsed(), waited);
    }
}
