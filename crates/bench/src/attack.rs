//! `login-attack`: what login throttling costs an attacker and the person
//! attacked. One client address fires wrong passwords at one identifier as
//! fast as `--clients` connections allow (or at `--attack-rate`), while the
//! real user, from another address, tries the right password every 200 ms
//! until signed in, and comes back 5 s later to do it again. Reported: how
//! many of the attacker's attempts reached the hasher (answered 400, against
//! 429 for those refused unchecked) and how long each of the user's visits
//! was kept out.
//!
//! Both addresses travel in `X-Forwarded-For`, which a server believes only
//! from a proxy it trusts: the server must list the driver's address in
//! `serve.public.trusted_proxies` (`scripts/bench.sh` does), or attacker and
//! user share one address and the per-address limit stops both.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::api::{Api, CallError, Credentials, LoginAnswer};
use crate::scenarios::Line;
use crate::stats::Samples;
use crate::users::random_password;

/// The attacker's address (TEST-NET-3, RFC 5737).
pub const ATTACKER: &str = "203.0.113.66";
/// The real user's address (TEST-NET-2).
pub const USER: &str = "198.51.100.23";
/// How often the real user tries.
const USER_PERIOD: Duration = Duration::from_millis(200);
/// How long the user stays away after signing in before wanting in again.
const USER_AWAY: Duration = Duration::from_secs(5);
/// How long the user keeps trying after the attack before the run gives up on them.
const PATIENCE: Duration = Duration::from_secs(300);

/// One attacker connection's tally.
#[derive(Default)]
struct Tally {
    judged: u64,
    refused: u64,
    samples: Samples,
}

/// One of the real user's tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Try {
    SignedIn,
    Refused,
    /// Anything else: a 400 for the right password, or no answer.
    Failed,
}

/// How the attack is made.
#[derive(Debug, Clone, Copy)]
pub struct Attack {
    /// Wrong passwords sent in all.
    pub attempts: usize,
    /// Attempts per second across all connections; `None`: as fast as they go.
    pub rate: Option<f64>,
    /// Connections the attacker uses at once.
    pub clients: usize,
    pub password_length: usize,
}

pub async fn run(api: &Arc<Api>, attack: Attack) -> Result<Vec<Line>, String> {
    let Attack { attempts, rate, clients, password_length } = attack;
    let victim = Credentials::fresh(password_length);
    api.register(&victim).await.map_err(|e| format!("setup (registering the user): {e}"))?;
    // The user can sign in before the attack: nothing else is locking them out.
    api.login_from(&victim, Some(USER)).await.map_err(|e| format!("probe: {e}"))?;

    let started = Instant::now();
    let (ended_tx, ended) = watch::channel(None::<Instant>);
    let user = tokio::spawn(real_user(Arc::clone(api), victim.clone(), ended));
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..clients.min(attempts))
        .map(|_| {
            tokio::spawn(attacker(
                Arc::clone(api),
                victim.email.clone(),
                password_length,
                Schedule { attempts, rate, started },
                Arc::clone(&next),
            ))
        })
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        let one = worker.await.expect("attacker task panicked");
        tally.judged += one.judged;
        tally.refused += one.refused;
        tally.samples.merge(one.samples);
    }
    let attack_end = Instant::now();
    let _ = ended_tx.send(Some(attack_end));
    let log = user.await.expect("user task panicked");

    let took = attack_end - started;
    let failed = attempts as u64 - tally.judged - tally.refused;
    let mut attacker_line =
        Line::new("login-attack (attacker)", "attempts/s", clients, tally.samples.summarize(took));
    attacker_line.note = Some(format!(
        "{attempts} wrong passwords from {ATTACKER} in {:.2}s{}: {} reached the hasher (400), {} refused before \
         it (429), {failed} failed",
        took.as_secs_f64(),
        rate.map_or(String::new(), |r| format!(" (paced at {r}/s)")),
        tally.judged,
        tally.refused,
    ));

    let mut samples = Samples::default();
    for (_, latency, outcome) in &log.tries {
        match outcome {
            Ok(Try::SignedIn | Try::Refused) => samples.ok(*latency),
            Ok(Try::Failed) => samples.error(|| "the right password was answered 400".into()),
            Err(e) => samples.error(|| e.clone()),
        }
    }
    let span = log.tries.last().map_or(Duration::ZERO, |(at, latency, _)| (*at + *latency) - started);
    let refused = log.tries.iter().filter(|(_, _, t)| *t == Ok(Try::Refused)).count();
    let waits = Waits::of(&log.visits);
    let back_in = log.visits.iter().filter_map(|v| v.signed_in).find(|at| *at >= attack_end);
    let mut user_line = Line::new("login-attack (user)", "tries/s", 1, samples.summarize(span));
    user_line.note = Some(format!(
        "right password every {}ms from {USER}, back {}s after each sign-in: {} visits, {} tries ({refused} \
         refused, longest Retry-After {}s); kept out longest {:.1}s, median {:.1}s, {:.1}s in all; {}",
        USER_PERIOD.as_millis(),
        USER_AWAY.as_secs(),
        log.visits.len(),
        log.tries.len(),
        log.longest_retry_after,
        waits.longest.as_secs_f64(),
        waits.median.as_secs_f64(),
        waits.total.as_secs_f64(),
        match back_in {
            Some(at) => format!("signed in {:.1}s after the attack ended", (at - attack_end).as_secs_f64()),
            None => format!("still kept out {}s after the attack ended", PATIENCE.as_secs()),
        },
    ));
    Ok(vec![attacker_line, user_line])
}

/// When attempt `n` may go: at `started + n / rate`, or at once without a rate.
#[derive(Clone, Copy)]
struct Schedule {
    attempts: usize,
    rate: Option<f64>,
    started: Instant,
}

/// Takes attempt numbers until `attempts` are spoken for, each a fresh wrong
/// password sent at its time.
async fn attacker(
    api: Arc<Api>,
    email: String,
    password_length: usize,
    schedule: Schedule,
    next: Arc<AtomicUsize>,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= schedule.attempts {
            break;
        }
        if let Some(rate) = schedule.rate {
            tokio::time::sleep_until(schedule.started + Duration::from_secs_f64(n as f64 / rate)).await;
        }
        let guess = Credentials { email: email.clone(), password: random_password(password_length) };
        let began = Instant::now();
        match api.try_login(&guess, Some(ATTACKER)).await {
            Ok(LoginAnswer::Wrong { .. }) => {
                tally.judged += 1;
                tally.samples.ok(began.elapsed());
            }
            Ok(LoginAnswer::Refused { .. }) => {
                tally.refused += 1;
                tally.samples.ok(began.elapsed());
            }
            Ok(LoginAnswer::Session(_)) => tally.samples.error(|| "a random password signed in".into()),
            Err(e) => tally.samples.error(|| e.to_string()),
        }
    }
    tally
}

type Tried = (Instant, Duration, Result<Try, String>);

/// One time the user wanted in: from arriving to signing in (`None`: gave up).
#[derive(Debug, Clone, Copy)]
struct Visit {
    arrived: Instant,
    signed_in: Option<Instant>,
    left: Instant,
}

#[derive(Default)]
struct UserLog {
    tries: Vec<Tried>,
    visits: Vec<Visit>,
    longest_retry_after: u64,
}

/// The real user: arrives, tries the right password every [`USER_PERIOD`]
/// until signed in, goes away for [`USER_AWAY`] (a sign-in resets the
/// identifier's count, so a user signing in back to back would keep it
/// from ever growing), and comes back; once the attack has ended, comes
/// back at once and stops when signed in (or [`PATIENCE`] after the end).
async fn real_user(
    api: Arc<Api>,
    credentials: Credentials,
    mut ended: watch::Receiver<Option<Instant>>,
) -> UserLog {
    let mut log = UserLog::default();
    loop {
        let arrived = Instant::now();
        let mut tick = tokio::time::interval_at(arrived, USER_PERIOD);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let signed_in = loop {
            tick.tick().await;
            let at = Instant::now();
            let outcome = match api.try_login(&credentials, Some(USER)).await {
                Ok(LoginAnswer::Session(_)) => Ok(Try::SignedIn),
                Ok(LoginAnswer::Refused { retry_after, .. }) => {
                    log.longest_retry_after = log.longest_retry_after.max(retry_after.unwrap_or(0));
                    Ok(Try::Refused)
                }
                Ok(LoginAnswer::Wrong { .. }) => Ok(Try::Failed),
                Err(e) => Err(CallError::to_string(&e)),
            };
            let signed_in = outcome == Ok(Try::SignedIn);
            log.tries.push((at, at.elapsed(), outcome));
            if signed_in {
                break Some(at);
            }
            if ended.borrow().is_some_and(|end| at >= end + PATIENCE) {
                break None;
            }
        };
        log.visits.push(Visit { arrived, signed_in, left: Instant::now() });
        let end = *ended.borrow_and_update();
        match end {
            Some(end) if signed_in.is_none_or(|at| at >= end) => return log,
            Some(_) => {}
            None => {
                let _ = tokio::time::timeout(USER_AWAY, ended.changed()).await;
            }
        }
    }
}

/// How long the visits waited to sign in (a visit that gave up: until it left).
#[derive(Debug, Default, PartialEq)]
struct Waits {
    longest: Duration,
    median: Duration,
    total: Duration,
}

impl Waits {
    fn of(visits: &[Visit]) -> Self {
        let mut waits: Vec<Duration> =
            visits.iter().map(|v| v.signed_in.unwrap_or(v.left) - v.arrived).collect();
        waits.sort_unstable();
        Waits {
            longest: waits.last().copied().unwrap_or_default(),
            median: waits.get(waits.len().saturating_sub(1) / 2).copied().unwrap_or_default(),
            total: waits.iter().sum(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_run_from_arrival_to_sign_in() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let visit = |arrived, signed_in: Option<u64>, left| Visit {
            arrived: at(arrived),
            signed_in: signed_in.map(at),
            left: at(left),
        };
        let visits = [
            visit(0, Some(0), 10),
            visit(5_000, Some(6_200), 6_210),
            visit(12_000, Some(12_400), 12_410),
            // Gave up: counted until it left.
            visit(20_000, None, 23_000),
        ];
        let waits = Waits::of(&visits);
        assert_eq!(
            waits,
            Waits {
                longest: Duration::from_millis(3_000),
                median: Duration::from_millis(400),
                total: Duration::from_millis(4_600),
            }
        );
        assert_eq!(Waits::of(&[]), Waits::default());
    }
}
