//! Login throttling: how many failed password logins an identifier, an
//! identifier from one client address, and a client address may have before
//! further attempts are refused, and for how long. Every decision is one
//! atomic [`RateStore::admit_event`] over the three windows, taken before
//! any password hash is computed: a refused attempt costs a database round
//! trip, never a hash.
//!
//! The identifier's locks come in two scopes, so that a lock stops the
//! guesser without being a weapon against the owner:
//!
//! * From one client address (`identifier_per_ip`): the first
//!   `free_failures` failures in `window` pass freely; after that each
//!   attempt waits `delay(k)` after the newest failure, `k` failures past the
//!   free ones, `delay(k) = min(initial_delay · 2^(k-1), max_delay)`. This
//!   lock is long (up to 15 minutes by default) but only the guessing source
//!   sits behind it; the owner signing in from elsewhere does not.
//! * From every address together (`identifier`): the same arithmetic with a
//!   higher free count and a short cap (60 s). One source, paced by its own
//!   lock, stays below that free count within any window (about 17 failures
//!   an hour with the defaults), so only several sources together can lock
//!   the owner out, and then for a minute at a time.
//!
//! Client address (`ip`): at most `max_failures` failures in `window` across
//! identifiers, then refused until the oldest ages out; this is what stops
//! one source trying many accounts.
//!
//! An admitted attempt is recorded as a failure before its hash is checked,
//! so concurrent attempts count each other; a success resets the
//! identifier's failures (both scopes) and takes back its own event (the
//! address counts failures only). Refused attempts are not recorded:
//! hammering during a lock does not extend it. Windows hold digests, never
//! the identifier or the address itself.

use std::net::IpAddr;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::{RateWindow, Store, StoreError, WindowCount};
use crate::time::Clock;

/// Failed logins per normalised identifier.
pub const IDENTIFIER_BUCKET: &str = "login.identifier";
/// Failed logins per client address (IPv6: per /64).
pub const ADDRESS_BUCKET: &str = "login.ip";
/// Failed logins per normalised identifier from one client address.
pub const PAIR_BUCKET: &str = "login.identifier_ip";

/// `security.login_throttling`.
#[derive(Debug, Clone)]
pub struct LoginThrottleSettings {
    pub enabled: bool,
    /// The identifier, failures from every address together.
    pub identifier: IdentifierLimit,
    /// The identifier, failures from one client address.
    pub identifier_per_address: IdentifierLimit,
    pub address: AddressLimit,
}

#[derive(Debug, Clone, Copy)]
pub struct IdentifierLimit {
    /// Failures in `window` that cost nothing but the failure.
    pub free_failures: u64,
    pub window: Duration,
    /// The wait after the first failure past the free ones; it doubles with each further one.
    pub initial_delay: Duration,
    /// The longest wait, however many failures.
    pub max_delay: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct AddressLimit {
    /// Failures in `window` from one client address.
    pub max_failures: u64,
    pub window: Duration,
}

/// Which limit refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The identifier, from every address together.
    Identifier,
    /// The identifier, from this client address.
    IdentifierFromAddress,
    /// This client address, across identifiers.
    Address,
}

#[derive(Debug)]
pub enum Admission {
    /// Check the password; tell [`LoginThrottle::succeeded`] if it was right.
    Admitted(Ticket),
    /// Not checked; try again after `retry_after`.
    Refused { limit: Limit, retry_after: Duration },
}

/// An admitted attempt, recorded as a failure until it succeeds.
#[derive(Debug)]
#[must_use = "a success must be reported, or it counts as a failure"]
pub struct Ticket {
    /// `None` when throttling is off.
    event: Option<Uuid>,
    identifier: String,
    /// The identifier-from-address subject, when the address is known.
    pair: Option<String>,
}

#[derive(Clone)]
pub struct LoginThrottle {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<LoginThrottleSettings>,
}

impl LoginThrottle {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: LoginThrottleSettings) -> Self {
        Self { store, clock, settings: Arc::new(settings) }
    }

    /// Decides whether an attempt for `identifier` (already normalised) from
    /// `client_ip` may have its password checked, and if so records it as a
    /// failure, all in one step.
    pub async fn admit(&self, identifier: &str, client_ip: Option<&str>) -> Result<Admission, StoreError> {
        let pair =
            client_ip.and_then(address_key).map(|key| digest(PAIR_BUCKET, &format!("{key}\0{identifier}")));
        let identifier = identifier_subject(identifier);
        if !self.settings.enabled {
            return Ok(Admission::Admitted(Ticket { event: None, identifier, pair }));
        }
        let at = self.clock.now();
        let policy = Policy(&self.settings);
        let mut windows = vec![RateWindow {
            bucket: IDENTIFIER_BUCKET,
            subject: identifier.clone(),
            since: at - policy.0.identifier.window,
        }];
        if let (Some(address), Some(pair)) = (client_ip.and_then(address_subject), &pair) {
            windows.push(RateWindow {
                bucket: PAIR_BUCKET,
                subject: pair.clone(),
                since: at - policy.0.identifier_per_address.window,
            });
            windows.push(RateWindow {
                bucket: ADDRESS_BUCKET,
                subject: address,
                since: at - policy.0.address.window,
            });
        }
        let event = Uuid::new_v4();
        let rule = |counts: &[WindowCount]| policy.refusal(counts, at).is_none();
        let (admitted, counts) = self.store.admit_event(&windows, event, at, &rule).await?;
        if admitted {
            return Ok(Admission::Admitted(Ticket { event: Some(event), identifier, pair }));
        }
        let (limit, retry_after) =
            policy.refusal(&counts, at).unwrap_or((Limit::Identifier, Duration::seconds(1)));
        Ok(Admission::Refused { limit, retry_after })
    }

    /// The password was right: the identifier starts afresh and the attempt
    /// no longer counts against the address. A store error here is logged,
    /// not returned: it costs the bookkeeping (counts age out), not the login.
    pub async fn succeeded(&self, ticket: Ticket) {
        let Some(event) = ticket.event else { return };
        if let Err(e) = self.store.reset_events(IDENTIFIER_BUCKET, &ticket.identifier).await {
            tracing::warn!(error = %e, "could not reset an identifier's failed logins");
        }
        if let Some(pair) = &ticket.pair
            && let Err(e) = self.store.reset_events(PAIR_BUCKET, pair).await
        {
            tracing::warn!(error = %e, "could not reset an identifier's failed logins from an address");
        }
        if let Err(e) = self.store.forget_event(event).await {
            tracing::warn!(error = %e, "could not take back a successful login's throttling event");
        }
    }

    /// The password was never judged (the hasher failed): the attempt is
    /// taken back, as it told the client nothing.
    pub async fn not_judged(&self, ticket: Ticket) {
        let Some(event) = ticket.event else { return };
        if let Err(e) = self.store.forget_event(event).await {
            tracing::warn!(error = %e, "could not take back an unjudged login's throttling event");
        }
    }
}

/// The arithmetic, apart from storage so it can be checked on its own.
struct Policy<'a>(&'a LoginThrottleSettings);

impl Policy<'_> {
    /// `None` admits; otherwise the limit that refuses and how long until it
    /// would admit. `counts` are the identifier's window, then (when the
    /// client address is known) the identifier-from-address one and the
    /// address's.
    fn refusal(&self, counts: &[WindowCount], now: DateTime<Utc>) -> Option<(Limit, Duration)> {
        let limits = &self.0;
        let refusals = [
            counts.first().and_then(|c| lock_end(&limits.identifier, c)).map(|t| (Limit::Identifier, t)),
            counts
                .get(1)
                .and_then(|c| lock_end(&limits.identifier_per_address, c))
                .map(|t| (Limit::IdentifierFromAddress, t)),
            counts.get(2).and_then(|c| self.address_free_at(c)).map(|t| (Limit::Address, t)),
        ];
        // When several refuse, the latest end is the one worth waiting for.
        refusals
            .into_iter()
            .flatten()
            .filter(|(_, until)| *until > now)
            .max_by_key(|(_, until)| *until)
            .map(|(limit, until)| (limit, until - now))
    }

    /// When the address's oldest failure ages out, if it is at its limit.
    fn address_free_at(&self, count: &WindowCount) -> Option<DateTime<Utc>> {
        let limit = &self.0.address;
        if count.count < limit.max_failures {
            return None;
        }
        Some(count.oldest? + limit.window)
    }
}

/// When an identifier lock ends, if the window holds one.
fn lock_end(limit: &IdentifierLimit, count: &WindowCount) -> Option<DateTime<Utc>> {
    if count.count < limit.free_failures {
        return None;
    }
    Some(count.newest? + delay(limit, count.count - limit.free_failures + 1))
}

/// `min(initial_delay · 2^(k-1), max_delay)`, without overflowing.
fn delay(limit: &IdentifierLimit, k: u64) -> Duration {
    let doublings = u32::try_from(k.saturating_sub(1)).unwrap_or(u32::MAX).min(62);
    let millis = limit.initial_delay.num_milliseconds().saturating_mul(1i64 << doublings);
    Duration::milliseconds(millis).min(limit.max_delay)
}

/// The subject an identifier's failures are counted under in
/// [`IDENTIFIER_BUCKET`], from the normalised identifier.
pub fn identifier_subject(normalized: &str) -> String {
    digest(IDENTIFIER_BUCKET, normalized)
}

/// Hex SHA-256 of what a window counts against, with its bucket in front so
/// equal strings in different buckets do not share a digest. It keeps the
/// table free of readable identifiers and addresses; it is no secret (a
/// known identifier's digest can be recomputed), which is also what lets
/// every server sharing the database count alike without a shared key.
fn digest(bucket: &str, subject: &str) -> String {
    let digest = Sha256::new().chain_update(bucket).chain_update([0]).chain_update(subject).finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The address's window subject: IPv4 as it is (also when IPv4-mapped),
/// IPv6 by its /64, which one subscriber usually holds whole, so stepping
/// through it earns no fresh budget. Unparsable text counts as itself.
fn address_subject(ip: &str) -> Option<String> {
    address_key(ip).map(|key| digest(ADDRESS_BUCKET, &key))
}

/// What an address is counted as, before digesting (see [`address_subject`]).
fn address_key(ip: &str) -> Option<String> {
    let ip = ip.trim();
    if ip.is_empty() {
        return None;
    }
    let key = match ip.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Err(_) => ip.to_string(),
    };
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;

    fn settings() -> LoginThrottleSettings {
        LoginThrottleSettings {
            enabled: true,
            identifier: IdentifierLimit {
                free_failures: 5,
                window: Duration::hours(1),
                initial_delay: Duration::seconds(1),
                max_delay: Duration::seconds(60),
            },
            identifier_per_address: IdentifierLimit {
                free_failures: 3,
                window: Duration::hours(1),
                initial_delay: Duration::seconds(1),
                max_delay: Duration::minutes(15),
            },
            address: AddressLimit { max_failures: 30, window: Duration::minutes(15) },
        }
    }

    fn window(count: u64, oldest: DateTime<Utc>, newest: DateTime<Utc>) -> WindowCount {
        WindowCount { count, oldest: Some(oldest), newest: Some(newest) }
    }

    #[test]
    fn the_delay_doubles_from_the_first_failure_past_the_free_ones_and_is_capped() {
        let s = settings();
        let delays: Vec<i64> = (1..=9).map(|k| delay(&s.identifier, k).num_seconds()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        // Absurd counts neither overflow nor exceed the cap.
        assert_eq!(delay(&s.identifier, u64::MAX), Duration::seconds(60));
        assert_eq!(delay(&s.identifier, 64), Duration::seconds(60));
        assert_eq!(delay(&s.identifier_per_address, 64), Duration::minutes(15));
    }

    #[test]
    fn free_failures_pass_then_the_identifier_waits_after_its_newest_failure() {
        let s = settings();
        let policy = Policy(&s);
        let now = SystemClock.now();
        let newest = now - Duration::milliseconds(300);
        assert_eq!(policy.refusal(&[window(4, now - Duration::minutes(5), newest)], now), None);
        // The 6th attempt (5 failures so far) waits 1 s after the 5th.
        let refused = policy.refusal(&[window(5, now - Duration::minutes(5), newest)], now);
        assert_eq!(refused, Some((Limit::Identifier, Duration::milliseconds(700))));
        // The 7th waits 2 s after the 6th.
        let refused = policy.refusal(&[window(6, now - Duration::minutes(5), newest)], now);
        assert_eq!(refused, Some((Limit::Identifier, Duration::milliseconds(1700))));
        // Once the wait is over, one more attempt is admitted.
        assert_eq!(
            policy.refusal(&[window(6, now - Duration::minutes(5), now - Duration::seconds(2))], now),
            None
        );
        assert_eq!(policy.refusal(&[WindowCount::default()], now), None);
    }

    #[test]
    fn an_address_at_its_limit_waits_for_its_oldest_failure_to_age_out() {
        let s = settings();
        let policy = Policy(&s);
        let now = SystemClock.now();
        let quiet = WindowCount::default();
        let oldest = now - Duration::minutes(10);
        assert_eq!(policy.refusal(&[quiet, quiet, window(29, oldest, now)], now), None);
        assert_eq!(
            policy.refusal(&[quiet, quiet, window(30, oldest, now)], now),
            Some((Limit::Address, Duration::minutes(5)))
        );
        // Both refuse: the later one is reported.
        let locked = window(12, oldest, now);
        assert_eq!(
            policy.refusal(&[locked, quiet, window(30, oldest, now)], now),
            Some((Limit::Address, Duration::minutes(5)))
        );
        let soon = window(30, now - Duration::seconds(899), now);
        assert_eq!(
            policy.refusal(&[locked, quiet, soon], now),
            Some((Limit::Identifier, Duration::seconds(60)))
        );
    }

    #[test]
    fn one_address_meets_its_own_lock_long_before_the_identifiers() {
        let s = settings();
        let policy = Policy(&s);
        let now = SystemClock.now();
        let quiet = WindowCount::default();
        let newest = now - Duration::seconds(30);
        // Three failures from this address: the 4th waits here...
        let here = window(3, now - Duration::minutes(1), newest);
        assert_eq!(policy.refusal(&[here, here, quiet], now), None);
        let here = window(13, now - Duration::minutes(50), newest);
        let refused = policy.refusal(&[here, here, quiet], now);
        assert_eq!(refused, Some((Limit::IdentifierFromAddress, Duration::seconds(14 * 60 + 30))));
        // ...while another address, with the identifier's count the same, only
        // meets the identifier's short lock.
        let refused = policy.refusal(&[here, quiet, quiet], now);
        assert_eq!(refused, Some((Limit::Identifier, Duration::seconds(30))));
    }

    #[test]
    fn subjects_are_digests_and_ipv6_counts_per_64() {
        let a = digest(IDENTIFIER_BUCKET, "alice@example.com");
        assert_eq!(a.len(), 64);
        assert!(!a.contains("alice"));
        assert_ne!(a, digest(ADDRESS_BUCKET, "alice@example.com"));
        assert_eq!(address_subject("2001:db8:1:2:aaaa::1"), address_subject("2001:db8:1:2:bbbb::7"));
        assert_ne!(address_subject("2001:db8:1:2::1"), address_subject("2001:db8:1:3::1"));
        assert_eq!(address_subject("::ffff:192.0.2.1"), address_subject("192.0.2.1"));
        assert_ne!(address_subject("192.0.2.1"), address_subject("192.0.2.2"));
        assert_eq!(address_subject(" "), None);
    }
}
