//! Latency bookkeeping. Every worker keeps its raw durations in a `Vec`; the
//! vectors are merged and sorted once the scenario ends. A few hundred
//! thousand samples cost a few megabytes and an exact percentile, which beats
//! pulling in a histogram crate for a tool that runs for seconds.

use std::time::Duration;

/// What one worker (or, after merging, one scenario) saw.
#[derive(Debug, Default)]
pub struct Samples {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

impl Samples {
    pub fn ok(&mut self, latency: Duration) {
        self.latencies.push(latency);
    }

    pub fn error(&mut self, message: impl FnOnce() -> String) {
        self.errors += 1;
        // Only the first message is kept: under a broken server every request
        // fails the same way and formatting each one would slow the loop.
        if self.first_error.is_none() {
            self.first_error = Some(message());
        }
    }

    pub fn merge(&mut self, other: Samples) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    /// `window` is the measured time the rate is computed over.
    pub fn summarize(mut self, window: Duration) -> Summary {
        self.latencies.sort_unstable();
        let sorted = &self.latencies;
        Summary {
            ok: sorted.len() as u64,
            errors: self.errors,
            first_error: self.first_error,
            window,
            p50: percentile(sorted, 50.0),
            p99: percentile(sorted, 99.0),
            max: sorted.last().copied(),
        }
    }
}

/// One scenario's result. Latencies describe successful requests only: a
/// refused request is often fast, and mixing it in would flatter the numbers.
#[derive(Debug, Clone)]
pub struct Summary {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub window: Duration,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub max: Option<Duration>,
}

impl Summary {
    /// Successful requests per second of measured time.
    pub fn rate(&self) -> f64 {
        if self.window.is_zero() { 0.0 } else { self.ok as f64 / self.window.as_secs_f64() }
    }
}

/// Nearest-rank percentile of sorted data: the smallest sample with at least
/// `p` percent of the samples at or below it. Always an observed value, never
/// an interpolation, so p99 of a run is a latency some request really had.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let exact = p * sorted.len() as f64 / 100.0;
    // 99.9 has no exact binary form: without snapping, 99.9% of 1000 samples
    // would come out as rank 999.0000000000001 and round up to the maximum.
    let rank =
        if (exact - exact.round()).abs() <= 1e-9 * exact.max(1.0) { exact.round() } else { exact.ceil() };
    Some(sorted[(rank as usize).clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: impl IntoIterator<Item = u64>) -> Vec<Duration> {
        values.into_iter().map(Duration::from_millis).collect()
    }

    #[test]
    fn percentiles_of_one_to_a_hundred_are_the_ranks() {
        let data = ms(1..=100);
        assert_eq!(percentile(&data, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&data, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&data, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&data, 0.0), Some(Duration::from_millis(1)));
    }

    #[test]
    fn percentiles_round_up_to_an_observed_sample() {
        let data = ms([10, 20, 30, 40]);
        assert_eq!(percentile(&data, 50.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&data, 51.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&data, 99.0), Some(Duration::from_millis(40)));
        let thousand = ms(1..=1000);
        assert_eq!(percentile(&thousand, 99.0), Some(Duration::from_millis(990)));
        assert_eq!(percentile(&thousand, 99.9), Some(Duration::from_millis(999)));
    }

    #[test]
    fn percentiles_of_tiny_and_empty_data() {
        assert_eq!(percentile(&[], 50.0), None);
        let one = ms([7]);
        assert_eq!(percentile(&one, 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&one, 99.0), Some(Duration::from_millis(7)));
    }

    #[test]
    fn merged_workers_are_summarized_together_and_sorted() {
        let mut a = Samples::default();
        let mut b = Samples::default();
        for (i, latency) in ms((1..=100).rev()).into_iter().enumerate() {
            if i % 2 == 0 { a.ok(latency) } else { b.ok(latency) }
        }
        b.error(|| "first".into());
        b.error(|| unreachable!("only the first message is formatted"));
        a.error(|| "from a".into());
        let mut all = Samples::default();
        all.merge(a);
        all.merge(b);
        let summary = all.summarize(Duration::from_secs(4));
        assert_eq!((summary.ok, summary.errors), (100, 3));
        assert_eq!(summary.first_error.as_deref(), Some("from a"));
        assert_eq!(summary.p50, Some(Duration::from_millis(50)));
        assert_eq!(summary.p99, Some(Duration::from_millis(99)));
        assert_eq!(summary.max, Some(Duration::from_millis(100)));
        assert_eq!(summary.rate(), 25.0);
    }

    #[test]
    fn a_run_without_successes_has_no_latencies() {
        let mut samples = Samples::default();
        samples.error(|| "refused".into());
        let summary = samples.summarize(Duration::from_secs(1));
        assert_eq!((summary.ok, summary.errors, summary.p50, summary.max), (0, 1, None, None));
        assert_eq!(summary.rate(), 0.0);
        assert_eq!(Samples::default().summarize(Duration::ZERO).rate(), 0.0);
    }
}
