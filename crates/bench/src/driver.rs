//! The load loop. Each client is a task that sends its next request as soon
//! as the previous one is answered (closed loop, like a pool of app servers),
//! from the start of the warm-up to the deadline. One continuous loop, rather
//! than a warm-up run followed by a measured run, keeps connections and
//! in-flight work steady across the boundary; only requests that start after
//! the warm-up are recorded. A request still in flight at the deadline is
//! abandoned and counted neither way, so every scenario ends on time.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, timeout_at};

use crate::api::CallError;
use crate::stats::{Samples, Summary};

/// The time line of one scenario.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    measure_from: Instant,
    deadline: Instant,
}

impl Window {
    pub fn starting_now(warmup: Duration, duration: Duration) -> Self {
        let measure_from = Instant::now() + warmup;
        Window { measure_from, deadline: measure_from + duration }
    }

    pub fn measured(&self) -> Duration {
        self.deadline - self.measure_from
    }
}

/// Runs `clients` workers over `window`; `request(client)` makes one request
/// for worker number `client`.
pub async fn run<F, Fut>(clients: usize, window: Window, request: F) -> Summary
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), CallError>> + Send + 'static,
{
    let request = Arc::new(request);
    let workers: Vec<_> =
        (0..clients).map(|client| tokio::spawn(worker(client, window, Arc::clone(&request)))).collect();
    let mut all = Samples::default();
    for worker in workers {
        all.merge(worker.await.expect("benchmark worker panicked"));
    }
    all.summarize(window.measured())
}

async fn worker<F, Fut>(client: usize, window: Window, request: Arc<F>) -> Samples
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<(), CallError>>,
{
    let mut samples = Samples::default();
    loop {
        let started = Instant::now();
        if started >= window.deadline {
            break;
        }
        let Ok(outcome) = timeout_at(window.deadline, request(client)).await else { break };
        if started < window.measure_from {
            continue;
        }
        match outcome {
            Ok(()) => samples.ok(started.elapsed()),
            Err(error) => samples.error(|| error.to_string()),
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    // Real time rather than tokio's paused clock: `test-util` would change
    // tokio's features for every crate built alongside this one.

    #[tokio::test]
    async fn only_requests_after_the_warmup_count_and_the_deadline_is_kept() {
        let calls = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&calls);
        let window = Window::starting_now(Duration::from_millis(100), Duration::from_millis(400));
        let begun = Instant::now();
        // Every request takes 20 ms; every fifth fails.
        let summary = run(2, window, move |_| {
            let n = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if n % 5 == 4 {
                    Err(CallError::Body { call: "test", problem: format!("request {n}") })
                } else {
                    Ok(())
                }
            }
        })
        .await;
        let took = begun.elapsed();
        assert!(took >= Duration::from_millis(500) && took < Duration::from_millis(900), "{took:?}");
        let recorded = summary.ok + summary.errors;
        // At most 20 measured requests fit in 400 ms per worker; the warm-up's
        // (at least the one at 0 ms per worker) and the abandoned last ones are not recorded.
        assert!(recorded > 0 && recorded <= 2 * 20, "{recorded}");
        assert!(calls.load(Ordering::Relaxed) >= recorded + 2);
        assert!(summary.errors > 0 && summary.errors < summary.ok, "{summary:?}");
        assert_eq!(summary.window, Duration::from_millis(400));
        assert!(summary.p50 >= Some(Duration::from_millis(20)));
        assert!(summary.first_error.as_deref().is_some_and(|e| e.starts_with("test: request ")));
    }

    #[tokio::test]
    async fn a_hung_request_cannot_outlive_the_deadline() {
        let window = Window::starting_now(Duration::ZERO, Duration::from_millis(300));
        let begun = Instant::now();
        let summary = run(3, window, |_| std::future::pending::<Result<(), CallError>>()).await;
        let took = begun.elapsed();
        assert!(took >= Duration::from_millis(300) && took < Duration::from_millis(700), "{took:?}");
        assert_eq!((summary.ok, summary.errors, summary.p50), (0, 0, None));
    }
}
