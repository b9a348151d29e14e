//! `login-attack`: what login throttling costs an attacker and the person
//! attacked. One client address fires wrong passwords at one identifier as
//! fast as `--clients` connections allow, while the real user, from another
//! address, tries the right password every 200 ms. Reported: how many of the
//! attacker's attempts reached the hasher (answered 400, against 429 for
//! those refused unchecked) and how long the real user was kept out.
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
    let (tries, longest_wait) = user.await.expect("user task panicked");

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
    for (_, latency, outcome) in &tries {
        match outcome {
            Ok(Try::SignedIn | Try::Refused) => samples.ok(*latency),
            Ok(Try::Failed) => samples.error(|| "the right password was answered 400".into()),
            Err(e) => samples.error(|| e.clone()),
        }
    }
    let span = tries.last().map_or(Duration::ZERO, |(at, latency, _)| (*at + *latency) - started);
    let kinds: Vec<(Instant, Try)> =
        tries.iter().map(|(at, _, outcome)| (*at, outcome.clone().unwrap_or(Try::Failed))).collect();
    let kept = kept_out(&kinds);
    let count = |kind| kinds.iter().filter(|(_, k)| *k == kind).count();
    let back_in = kinds.iter().find(|(at, kind)| *kind == Try::SignedIn && *at >= attack_end);
    let mut user_line = Line::new("login-attack (user)", "tries/s", 1, samples.summarize(span));
    user_line.note = Some(format!(
        "right password every {}ms from {USER}: {} tries, {} signed in, {} refused (429, longest Retry-After \
         {longest_wait}s); kept out {:.1}s in all, longest {:.1}s; {}",
        USER_PERIOD.as_millis(),
        kinds.len(),
        count(Try::SignedIn),
        count(Try::Refused),
        kept.total.as_secs_f64(),
        kept.longest.as_secs_f64(),
        match back_in {
            Some((at, _)) =>
                format!("signed in {:.1}s after the attack ended", (*at - attack_end).as_secs_f64()),
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

/// The right password every [`USER_PERIOD`], until signed in after the
/// attack ended (or [`PATIENCE`] after it).
async fn real_user(
    api: Arc<Api>,
    credentials: Credentials,
    ended: watch::Receiver<Option<Instant>>,
) -> (Vec<Tried>, u64) {
    let mut tick = tokio::time::interval(USER_PERIOD);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tries = Vec::new();
    let mut longest_wait = 0;
    loop {
        tick.tick().await;
        let at = Instant::now();
        let outcome = match api.try_login(&credentials, Some(USER)).await {
            Ok(LoginAnswer::Session(_)) => Ok(Try::SignedIn),
            Ok(LoginAnswer::Refused { retry_after, .. }) => {
                longest_wait = longest_wait.max(retry_after.unwrap_or(0));
                Ok(Try::Refused)
            }
            Ok(LoginAnswer::Wrong { .. }) => Ok(Try::Failed),
            Err(e) => Err(CallError::to_string(&e)),
        };
        let done = *ended.borrow();
        let signed_in = outcome == Ok(Try::SignedIn);
        tries.push((at, at.elapsed(), outcome));
        match done {
            Some(end) if signed_in && at >= end => break,
            Some(end) if at >= end + PATIENCE => break,
            _ => {}
        }
    }
    (tries, longest_wait)
}

#[derive(Debug, Default, PartialEq)]
struct KeptOut {
    total: Duration,
    longest: Duration,
}

/// Each run of refused tries counts from its first refusal to the sign-in
/// that ends it (or to the last try, if none does). Other failures neither
/// start nor end a run.
fn kept_out(tries: &[(Instant, Try)]) -> KeptOut {
    let mut kept = KeptOut::default();
    let mut since: Option<Instant> = None;
    let close = |from: Instant, to: Instant, kept: &mut KeptOut| {
        let spell = to - from;
        kept.total += spell;
        kept.longest = kept.longest.max(spell);
    };
    for &(at, kind) in tries {
        match kind {
            Try::Refused => {
                since.get_or_insert(at);
            }
            Try::SignedIn => {
                if let Some(from) = since.take() {
                    close(from, at, &mut kept);
                }
            }
            Try::Failed => {}
        }
    }
    if let (Some(from), Some((last, _))) = (since, tries.last()) {
        close(from, *last, &mut kept);
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_out_spans_run_from_the_first_refusal_to_the_next_sign_in() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let tries = [
            (at(0), Try::SignedIn),
            (at(200), Try::Refused),
            (at(400), Try::Failed),
            (at(600), Try::Refused),
            (at(800), Try::SignedIn),
            (at(1000), Try::SignedIn),
            (at(1200), Try::Refused),
            (at(1400), Try::SignedIn),
        ];
        let kept = kept_out(&tries);
        assert_eq!(kept, KeptOut { total: Duration::from_millis(800), longest: Duration::from_millis(600) });
        // Still refused at the end: counted up to the last try.
        let kept = kept_out(&[(at(0), Try::Refused), (at(1000), Try::Refused)]);
        assert_eq!(kept.total, Duration::from_millis(1000));
        assert_eq!(kept_out(&[]), KeptOut::default());
    }
}
