//! Plain-text output: one line per scenario as it finishes, then a table and
//! the ratios. Ratios are the numbers worth comparing between machines and
//! commits; absolute rates mostly measure the machine.

use std::fmt::Write;
use std::time::Duration;

use crate::scenarios::Line;

/// One finished scenario, for the running log.
pub fn line(line: &Line) -> String {
    let s = &line.summary;
    let mut out = format!(
        "{}: {} ok in {:.2}s = {:.1} {}, p50 {}, p99 {}, max {}, {} errors ({} clients)",
        line.label,
        s.ok,
        s.window.as_secs_f64(),
        s.rate(),
        line.unit,
        latency(s.p50),
        latency(s.p99),
        latency(s.max),
        s.errors,
        line.clients,
    );
    if let Some(note) = &line.note {
        let _ = write!(out, "\n  {note}");
    }
    if let Some(error) = &s.first_error {
        let _ = write!(out, "\n  first error: {error}");
    }
    out
}

/// The closing table: measured rows, then scenarios that could not start.
pub fn table(lines: &[Line], failed: &[(&str, String)]) -> String {
    let mut out = format!(
        "{:<22} {:>7} {:>12} {:<16} {:>9} {:>9} {:>9} {:>8}\n",
        "scenario", "clients", "rate", "", "p50", "p99", "max", "errors"
    );
    for line in lines {
        let s = &line.summary;
        let _ = writeln!(
            out,
            "{:<22} {:>7} {:>12.1} {:<16} {:>9} {:>9} {:>9} {:>8}",
            line.label,
            line.clients,
            s.rate(),
            line.unit,
            latency(s.p50),
            latency(s.p99),
            latency(s.max),
            s.errors
        );
    }
    for (name, why) in failed {
        let _ = writeln!(out, "{name:<22} FAILED: {why}");
    }
    out
}

/// `whoami/health` and, when measured, whoami under login against whoami alone.
pub fn ratios(lines: &[Line]) -> String {
    let mut out = String::new();
    ratio(&mut out, "whoami/health", rate(lines, "whoami"), rate(lines, "health"), "health and whoami");
    if rate(lines, "whoami (under login)").is_some() {
        let under = rate(lines, "whoami (under login)");
        ratio(&mut out, "whoami under login/alone", under, rate(lines, "whoami"), "whoami alone");
    }
    out
}

fn ratio(out: &mut String, name: &str, numerator: Option<f64>, denominator: Option<f64>, needs: &str) {
    let _ = match (numerator, denominator) {
        (Some(n), Some(d)) if d > 0.0 => writeln!(out, "{name:<26} {:>7.3}  ({n:.1} / {d:.1} req/s)", n / d),
        _ => writeln!(out, "{name:<26} {:>7}  (needs {needs} measured with successes)", "n/a"),
    };
}

fn rate(lines: &[Line], label: &str) -> Option<f64> {
    lines.iter().find(|line| line.label == label).map(|line| line.summary.rate())
}

/// Milliseconds throughout, so columns compare at a glance; precision
/// shrinks as values grow.
pub fn latency(value: Option<Duration>) -> String {
    let Some(value) = value else { return "-".into() };
    let ms = value.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.3}ms")
    } else if ms < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{ms:.0}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Samples;

    fn row(label: &'static str, unit: &'static str, per_second: u64, latency_ms: u64) -> Line {
        let mut samples = Samples::default();
        for _ in 0..per_second * 2 {
            samples.ok(Duration::from_millis(latency_ms));
        }
        Line::new(label, unit, 4, samples.summarize(Duration::from_secs(2)))
    }

    #[test]
    fn latencies_are_milliseconds_with_shrinking_precision() {
        assert_eq!(latency(None), "-");
        assert_eq!(latency(Some(Duration::from_micros(181))), "0.181ms");
        assert_eq!(latency(Some(Duration::from_micros(12_345))), "12.3ms");
        assert_eq!(latency(Some(Duration::from_millis(1500))), "1500ms");
    }

    #[test]
    fn a_line_names_rate_unit_percentiles_and_errors() {
        let mut line = row("login", "logins/s", 50, 40);
        line.summary.errors = 2;
        line.summary.first_error = Some("POST /self-service/login answered 400 Bad Request: {}".into());
        assert_eq!(
            super::line(&line),
            "login: 100 ok in 2.00s = 50.0 logins/s, p50 40.0ms, p99 40.0ms, max 40.0ms, 2 errors (4 clients)\n  \
             first error: POST /self-service/login answered 400 Bad Request: {}"
        );
    }

    #[test]
    fn ratios_compare_rates_from_the_same_run() {
        let lines = [
            row("health", "req/s", 1000, 1),
            row("whoami", "req/s", 400, 2),
            row("whoami (under login)", "req/s", 100, 8),
        ];
        let out = ratios(&lines);
        assert!(out.contains("whoami/health                0.400  (400.0 / 1000.0 req/s)"), "{out}");
        assert!(out.contains("whoami under login/alone     0.250  (100.0 / 400.0 req/s)"), "{out}");
        let only_health = ratios(&lines[..1]);
        assert!(only_health.starts_with("whoami/health                  n/a  (needs health and whoami"));
        assert!(!only_health.contains("under login"));
    }

    #[test]
    fn the_table_lists_rows_then_failures() {
        let out = table(&[row("health", "req/s", 1000, 1)], &[("login", "probe: 404".into())]);
        let rows: Vec<_> = out.lines().collect();
        assert_eq!(rows.len(), 3, "{out}");
        assert!(rows[0].starts_with("scenario") && rows[0].ends_with("errors"));
        assert!(rows[1].starts_with("health") && rows[1].contains("1000.0 req/s"), "{out}");
        assert_eq!(rows[2], format!("{:<22} FAILED: probe: 404", "login"));
    }
}
