//! Send limits: how many code emails one address receives, and how many
//! flows and code requests one client address starts, counted in the
//! database's rate windows so every server sharing it sees the same counts.
//!
//! * Per address and purpose (recovery, verification, sign-up): at most `max` code
//!   mails within `window`. A request past the cap is answered exactly as a
//!   sent one, and as soon: the cap is applied after the answer, where no
//!   code and no mail are written, so nothing tells anybody whether an
//!   address is being flooded, or exists.
//! * Per client address: flows started and codes asked for per minute.
//!   Those are refused openly (429 with a `Retry-After`): the client learns
//!   only about its own traffic.
//!
//! Subjects are SHA-256 digests of the normalised address or of the client
//! address (an IPv6 client by its /64, the block one host usually holds), so
//! the table holds no address itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::store::{CodePurpose, RateWindow, Store, StoreError, WindowCount};
use crate::time::Clock;

/// `security.send_limits` (defaults and their reasons: the server's config and README).
#[derive(Debug, Clone)]
pub struct SendLimitSettings {
    /// Off: nothing is counted or refused.
    pub enabled: bool,
    /// Code mails per address and purpose within `address_window`.
    pub address_max: u64,
    pub address_window: Duration,
    /// Self-service flows started per client address per minute.
    pub flows_per_minute: u64,
    /// Code mails asked for (recovery and verification submits that send a
    /// code) per client address per minute.
    pub codes_per_minute: u64,
}

/// A per-client limit's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// Over the limit; the next request is admitted after this long.
    Refused {
        retry_after: std::time::Duration,
    },
}

#[derive(Clone)]
pub struct SendLimits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: Arc<SendLimitSettings>,
    refusals: Arc<Refusals>,
}

const PER_MINUTE: Duration = Duration::minutes(1);

/// Clients this server refused, and until when. Refused events are not
/// recorded and the oldest admitted one only ages out at that time, so the
/// database would refuse them too until then: a client hammering past its
/// limit costs no database work, and cannot make everyone else's requests
/// queue behind its window's lock.
#[derive(Default)]
struct Refusals(Mutex<HashMap<(&'static str, String), DateTime<Utc>>>);

/// Enough for every client refused within a minute on a busy server; past
/// it, refusals are asked of the database again.
const MAX_REMEMBERED_REFUSALS: usize = 10_000;

impl Refusals {
    fn until(&self, key: &(&'static str, String), at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let refusals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        refusals.get(key).copied().filter(|until| *until > at)
    }

    fn remember(&self, key: (&'static str, String), until: DateTime<Utc>, at: DateTime<Utc>) {
        let mut refusals = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if refusals.len() >= MAX_REMEMBERED_REFUSALS {
            refusals.retain(|_, until| *until > at);
        }
        if refusals.len() < MAX_REMEMBERED_REFUSALS {
            refusals.insert(key, until);
        }
    }
}

impl SendLimits {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: SendLimitSettings) -> Self {
        Self { store, clock, settings: Arc::new(settings), refusals: Arc::default() }
    }

    /// Whether a code mail for `purpose` may go to `address` (normalised).
    /// Admitted mails are counted in the same atomic step, so of many
    /// parallel requests exactly `max` get through.
    ///
    /// Asked after the answer (see `flow::code_requests`): the request
    /// path is the same for a capped address and a mailed one, so neither
    /// its answer nor its timing tells them apart.
    pub async fn admit_code_mail(&self, purpose: CodePurpose, address: &str) -> Result<bool, StoreError> {
        if !self.settings.enabled {
            return Ok(true);
        }
        let at = self.clock.now();
        let window = RateWindow {
            bucket: address_bucket(purpose),
            subject: digest(address.as_bytes()),
            since: at - self.settings.address_window,
        };
        let max = self.settings.address_max;
        let rule = move |counts: &[WindowCount]| counts[0].count < max;
        let (admitted, _) = self.store.admit_event(&[window], Uuid::new_v4(), at, &rule).await?;
        if !admitted {
            tracing::info!(purpose = purpose.as_str(), "code mail not sent: the address reached its limit");
        }
        Ok(admitted)
    }

    /// Counts a flow started by `client`, or refuses it.
    pub async fn admit_flow(&self, client: Option<IpAddr>) -> Result<Verdict, StoreError> {
        self.admit_from(client, "flow.ip", self.settings.flows_per_minute).await
    }

    /// Counts a code requested by `client`, or refuses it.
    pub async fn admit_code_request(&self, client: Option<IpAddr>) -> Result<Verdict, StoreError> {
        self.admit_from(client, "send.ip", self.settings.codes_per_minute).await
    }

    /// At most `per_minute` events per client in any minute; refused ones
    /// are not recorded, so hammering does not push the end further out.
    async fn admit_from(
        &self,
        client: Option<IpAddr>,
        bucket: &'static str,
        per_minute: u64,
    ) -> Result<Verdict, StoreError> {
        // No client address is known only off the network (in-process calls).
        let Some(client) = client.filter(|_| self.settings.enabled) else {
            return Ok(Verdict::Allowed);
        };
        let at = self.clock.now();
        let key = (bucket, client_subject(client));
        if let Some(until) = self.refusals.until(&key, at) {
            return Ok(Verdict::Refused { retry_after: wait(until, at) });
        }
        let window = RateWindow { bucket, subject: key.1.clone(), since: at - PER_MINUTE };
        let rule = move |counts: &[WindowCount]| counts[0].count < per_minute;
        let (admitted, counts) = self.store.admit_event(&[window], Uuid::new_v4(), at, &rule).await?;
        if admitted {
            return Ok(Verdict::Allowed);
        }
        let until = counts[0].oldest.map_or(at, |oldest| oldest + PER_MINUTE);
        self.refusals.remember(key, until, at);
        Ok(Verdict::Refused { retry_after: wait(until, at) })
    }
}

/// From `at` until `until`, at least a second: a client told to retry
/// right away would be refused again.
fn wait(until: DateTime<Utc>, at: DateTime<Utc>) -> std::time::Duration {
    (until - at).to_std().unwrap_or_default().max(std::time::Duration::from_secs(1))
}

fn address_bucket(purpose: CodePurpose) -> &'static str {
    match purpose {
        CodePurpose::Recovery => "send.address.recovery",
        CodePurpose::Verification => "send.address.verification",
        CodePurpose::Registration => "send.address.registration",
        CodePurpose::Login => "send.address.login",
    }
}

/// An IPv4 client by its address, an IPv6 one by its /64: one host or
/// network usually holds a whole /64 and could rotate through it.
fn client_subject(client: IpAddr) -> String {
    match client.to_canonical() {
        IpAddr::V4(v4) => digest(format!("v4 {v4}").as_bytes()),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) >> 64;
            digest(format!("v6 {prefix:016x}/64").as_bytes())
        }
    }
}

fn digest(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SystemClock;

    #[test]
    fn clients_are_counted_by_address_or_ipv6_block() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(client_subject(ip("203.0.113.7")), client_subject(ip("::ffff:203.0.113.7")));
        assert_ne!(client_subject(ip("203.0.113.7")), client_subject(ip("203.0.113.8")));
        assert_eq!(client_subject(ip("2001:db8:1:2::1")), client_subject(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(client_subject(ip("2001:db8:1:2::1")), client_subject(ip("2001:db8:1:3::1")));
        let subject = client_subject(ip("203.0.113.7"));
        assert!(subject.len() == 64 && !subject.contains("203"), "a digest, not the address");
    }

    #[test]
    fn waits_are_at_least_a_second() {
        let at = SystemClock.now();
        assert_eq!(wait(at + Duration::seconds(20), at), std::time::Duration::from_secs(20));
        assert_eq!(wait(at - Duration::seconds(5), at), std::time::Duration::from_secs(1));
    }

    #[test]
    fn refusals_are_remembered_until_they_end_and_bounded() {
        let refusals = Refusals::default();
        let at = SystemClock.now();
        let key = |n: usize| ("flow.ip", format!("{n}"));
        refusals.remember(key(0), at + Duration::seconds(30), at);
        assert_eq!(refusals.until(&key(0), at), Some(at + Duration::seconds(30)));
        assert_eq!(refusals.until(&key(0), at + Duration::seconds(30)), None, "over at its end");
        assert_eq!(refusals.until(&("send.ip", "0".into()), at), None, "per bucket");
        for n in 1..MAX_REMEMBERED_REFUSALS + 10 {
            refusals.remember(key(n), at + Duration::seconds(1), at);
        }
        assert_eq!(refusals.0.lock().unwrap().len(), MAX_REMEMBERED_REFUSALS);
        // Once they lapsed, room is made for new ones.
        let later = at + Duration::seconds(2);
        refusals.remember(key(0), later + Duration::seconds(1), later);
        assert_eq!(refusals.0.lock().unwrap().len(), 1);
    }
}
