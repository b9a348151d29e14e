//! Notices to the owner (OWASP ASVS 2.2.3, 2.5.5): emails telling a person
//! that something happened to their account — the password changed, the
//! account was recovered, an address was changed or removed — so that an
//! owner who did not do it finds out. A notice says what, when and from
//! which device, and carries no code or link that signs in: a leaked or
//! forwarded notice gives nobody access. Callers queue notices in the same
//! store transaction as the change they announce.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{Map, json};

use crate::courier::{Message, RenderError, Renderer};
use crate::identity::{Identity, Via};
use crate::session::Device;

/// The password of the account changed (settings).
pub const PASSWORD_CHANGED: &str = "password_changed";
/// A recovery code signed someone in (self-service or admin-issued code).
pub const ACCOUNT_RECOVERED: &str = "account_recovered";
/// An address that reached the owner was replaced by a new one (settings).
pub const ADDRESS_CHANGED: &str = "address_changed";
/// An address that reached the owner was removed, none added (settings).
pub const ADDRESS_REMOVED: &str = "address_removed";

/// The user agent is the client's own text, quoted into a mail to the
/// owner: kept to one short line so it cannot pose as the message.
const MAX_USER_AGENT_CHARS: usize = 160;

/// Renders notice `template` to `to` about `identity` (as it is after the
/// change), done at `at` from `device`.
///
/// The data are `To`, `Identity` (`id`, `traits`), `OccurredAt` (e.g.
/// `2030-01-02 03:04 UTC`), `IPAddress` and `UserAgent` (empty when
/// unknown), and `Device` (both in one phrase, or "an unknown device").
pub fn render(
    renderer: &dyn Renderer,
    template: &str,
    to: &str,
    identity: &Identity,
    device: &Device,
    at: DateTime<Utc>,
) -> Result<Message, RenderError> {
    let ip = device.ip_address.clone().unwrap_or_default();
    let agent = device.user_agent.as_deref().map(one_line).unwrap_or_default();
    let described = match (ip.is_empty(), agent.is_empty()) {
        (false, false) => format!("IP address {ip}, \"{agent}\""),
        (false, true) => format!("IP address {ip}"),
        (true, false) => format!("\"{agent}\""),
        (true, true) => "an unknown device".to_string(),
    };
    let mut data = Map::new();
    data.insert("To".into(), json!(to));
    data.insert("Identity".into(), json!({ "id": identity.id, "traits": identity.traits }));
    data.insert("OccurredAt".into(), json!(at.format("%Y-%m-%d %H:%M UTC").to_string()));
    data.insert("IPAddress".into(), json!(ip));
    data.insert("UserAgent".into(), json!(agent));
    data.insert("Device".into(), json!(described));
    let rendered = renderer.render(template, &data)?;
    Ok(Message::new(to, rendered, template, at))
}

/// Where account-wide notices (password changed) go: the first verified
/// email address, else the first email recovery address, else the first
/// email verifiable address; so the address proven to be the owner's wins.
pub fn owner_address(identity: &Identity) -> Option<&str> {
    let verifiable = || identity.verifiable_addresses.iter().filter(|a| a.via == Via::Email);
    let verified = verifiable().filter(|a| a.verified).map(|a| &a.value);
    let recovery = identity.recovery_addresses.iter().filter(|a| a.via == Via::Email).map(|a| &a.value);
    verified
        .chain(recovery)
        .chain(verifiable().map(|a| &a.value))
        .map(String::as_str)
        .find(|v| v.contains('@'))
}

/// The email addresses that reached the owner before a change and lost
/// their role in it, each with the notice it gets (`address_changed` when
/// the change also brought in a new address, else `address_removed`).
///
/// An address reaches the owner when it is a verified verifiable address,
/// or a recovery address that is not also a never-verified verifiable one
/// (recovery-only addresses cannot be verified, yet receive recovery codes).
/// A never-verified address gets nothing: nobody showed it is the owner's,
/// and it is often a typo that reaches a stranger. SMS addresses get nothing
/// either, as Latchkey sends email only.
pub fn lost_addresses(before: &Identity, after: &Identity) -> Vec<(String, &'static str)> {
    let (old_verifiable, old_verified, old_recovery) = emails(before);
    let (new_verifiable, _, new_recovery) = emails(after);
    let reached_owner = old_verified
        .iter()
        .chain(old_recovery.iter().filter(|a| !old_verifiable.contains(*a) || old_verified.contains(*a)));
    let lost: BTreeSet<&str> = reached_owner
        .filter(|a| {
            (old_verified.contains(*a) && !new_verifiable.contains(*a))
                || (old_recovery.contains(*a) && !new_recovery.contains(*a))
        })
        .copied()
        .collect();
    let added = new_verifiable
        .iter()
        .chain(&new_recovery)
        .any(|a| !old_verifiable.contains(a) && !old_recovery.contains(a));
    let template = if added { ADDRESS_CHANGED } else { ADDRESS_REMOVED };
    lost.into_iter().map(|a| (a.to_string(), template)).collect()
}

/// The email addresses of `identity`: verifiable, verified, recovery.
fn emails(identity: &Identity) -> (BTreeSet<&str>, BTreeSet<&str>, BTreeSet<&str>) {
    let verifiable = identity.verifiable_addresses.iter().filter(|a| a.via == Via::Email);
    let recovery = identity.recovery_addresses.iter().filter(|a| a.via == Via::Email);
    (
        verifiable.clone().map(|a| a.value.as_str()).collect(),
        verifiable.filter(|a| a.verified).map(|a| a.value.as_str()).collect(),
        recovery.map(|a| a.value.as_str()).collect(),
    )
}

/// `text` on one line (control characters and runs of white space become
/// one space), at most [`MAX_USER_AGENT_CHARS`] long.
fn one_line(text: &str) -> String {
    let spaced: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let line = spaced.split_whitespace().collect::<Vec<_>>().join(" ");
    line.chars().take(MAX_USER_AGENT_CHARS).collect::<String>().trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use uuid::Uuid;

    use super::*;
    use crate::identity::{AddressStatus, IdentityState, RecoveryAddress, VerifiableAddress};
    use crate::time::{Clock, SystemClock};

    fn identity(verifiable: &[(&str, bool)], recovery: &[&str]) -> Identity {
        let at = SystemClock.now();
        Identity {
            id: Uuid::nil(),
            schema_id: "default".into(),
            state: IdentityState::Active,
            state_changed_at: None,
            traits: json!({}),
            metadata_public: None,
            metadata_admin: None,
            external_id: None,
            credentials: BTreeMap::new(),
            verifiable_addresses: verifiable
                .iter()
                .map(|(value, verified)| VerifiableAddress {
                    id: Uuid::new_v4(),
                    value: value.to_string(),
                    verified: *verified,
                    via: Via::Email,
                    status: if *verified { AddressStatus::Completed } else { AddressStatus::Pending },
                    verified_at: None,
                    created_at: at,
                    updated_at: at,
                })
                .collect(),
            recovery_addresses: recovery
                .iter()
                .map(|value| RecoveryAddress {
                    id: Uuid::new_v4(),
                    value: value.to_string(),
                    via: Via::Email,
                    created_at: at,
                    updated_at: at,
                })
                .collect(),
            available_aal: Default::default(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn addresses_that_reached_the_owner_are_told_when_they_go() {
        // A verified address (also for recovery) replaced by a new one.
        let before = identity(&[("old@x.co", true)], &["old@x.co"]);
        let after = identity(&[("new@x.co", false)], &["new@x.co"]);
        assert_eq!(lost_addresses(&before, &after), [("old@x.co".to_string(), ADDRESS_CHANGED)]);
        // A recovery-only address dropped, nothing added.
        let before = identity(&[("main@x.co", false)], &["main@x.co", "backup@x.co"]);
        let after = identity(&[("main@x.co", false)], &["main@x.co"]);
        assert_eq!(lost_addresses(&before, &after), [("backup@x.co".to_string(), ADDRESS_REMOVED)]);
        // A verified, verification-only address removed.
        let before = identity(&[("a@x.co", true), ("b@x.co", true)], &[]);
        let after = identity(&[("a@x.co", true)], &[]);
        assert_eq!(lost_addresses(&before, &after), [("b@x.co".to_string(), ADDRESS_REMOVED)]);
    }

    #[test]
    fn never_verified_and_kept_addresses_are_not_told() {
        // Never verified (even though it was for recovery): no notice.
        let before = identity(&[("typo@x.co", false)], &["typo@x.co"]);
        let after = identity(&[("fixed@x.co", false)], &["fixed@x.co"]);
        assert!(lost_addresses(&before, &after).is_empty());
        // Nothing lost: other traits changed, or an address was added.
        let before = identity(&[("same@x.co", true)], &["same@x.co"]);
        assert!(lost_addresses(&before, &before.clone()).is_empty());
        let after = identity(&[("same@x.co", true), ("more@x.co", false)], &["same@x.co"]);
        assert!(lost_addresses(&before, &after).is_empty());
    }

    #[test]
    fn account_notices_prefer_the_verified_address() {
        let both = identity(&[("a@x.co", false), ("b@x.co", true)], &["a@x.co", "c@x.co"]);
        assert_eq!(owner_address(&both), Some("b@x.co"));
        let unverified = identity(&[("a@x.co", false)], &["c@x.co"]);
        assert_eq!(owner_address(&unverified), Some("c@x.co"));
        assert_eq!(owner_address(&identity(&[("a@x.co", false)], &[])), Some("a@x.co"));
        assert_eq!(owner_address(&identity(&[], &[])), None);
    }

    #[test]
    fn user_agents_are_one_short_line() {
        let long = format!("Mozilla/5.0\r\nBcc: x@y {}", "a".repeat(500));
        let line = one_line(&long);
        assert!(!line.contains('\n') && !line.contains('\r'));
        assert_eq!(line.chars().count(), MAX_USER_AGENT_CHARS);
        assert!(line.starts_with("Mozilla/5.0 Bcc: x@y aaa"));
    }
}
