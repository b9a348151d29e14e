//! Sessions: who is signed in, since when, how, and from where. Tokens are
//! random bearer secrets stored only as SHA-256 hashes, so a database leak
//! does not leak sessions, and a lookup costs one hash.

use std::sync::OnceLock;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const SESSION_TOKEN_PREFIX: &str = "ory_st_";
pub const LOGOUT_TOKEN_PREFIX: &str = "ory_lo_";

/// How a session was (re)authenticated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuthenticationMethod {
    pub method: String,
    pub aal: String,
    pub completed_at: DateTime<Utc>,
}

/// Where a session was used from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: Uuid,
    // Unknown values are left out on the wire, as the API's schema has no `null` strings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub identity_id: Uuid,
    /// False once revoked; whether it is live also depends on `expires_at`.
    pub active: bool,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub authenticated_at: DateTime<Utc>,
    pub aal: String,
    pub authentication_methods: Vec<AuthenticationMethod>,
    pub devices: Vec<Device>,
    pub token_hash: String,
    pub logout_token_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Session {
    /// Active and not expired at `now` (the identity's state is checked by the caller).
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.active && self.expires_at > now
    }
}

/// A session found by its token, with its identity: what `whoami` answers
/// with. Shared (behind an `Arc`) by the whoami cache, which replaces an
/// entry rather than change it, so an answer rendered from it once stays
/// right for as long as the entry lives.
#[derive(Debug)]
pub struct SessionHit {
    pub session: Session,
    pub identity: crate::identity::Identity,
    rendered: OnceLock<Vec<u8>>,
}

impl SessionHit {
    pub fn new(session: Session, identity: crate::identity::Identity) -> Self {
        Self { session, identity, rendered: OnceLock::new() }
    }

    /// The answer for this session, rendered by `render` the first time it
    /// is asked for and kept with the entry (an adapter's serialised view:
    /// rendering it is most of a cached whoami's cost).
    pub fn rendered(&self, render: impl FnOnce(&Session, &crate::identity::Identity) -> Vec<u8>) -> &[u8] {
        self.rendered.get_or_init(|| render(&self.session, &self.identity))
    }
}

/// A new session plus the secrets only its holder ever sees.
pub struct IssuedSession {
    pub session: Session,
    pub token: String,
    pub logout_token: String,
}

/// Creates a session for `identity_id`, authenticated `at` by `method`.
pub fn issue(
    identity_id: Uuid,
    method: &str,
    at: DateTime<Utc>,
    lifespan: Duration,
    device: Device,
) -> IssuedSession {
    let token = random_token(SESSION_TOKEN_PREFIX);
    let logout_token = logout_token_for(&token);
    let session = Session {
        id: Uuid::new_v4(),
        identity_id,
        active: true,
        issued_at: at,
        expires_at: at + lifespan,
        authenticated_at: at,
        aal: "aal1".into(),
        authentication_methods: vec![AuthenticationMethod {
            method: method.into(),
            aal: "aal1".into(),
            completed_at: at,
        }],
        devices: vec![device],
        token_hash: hash_token(&token),
        logout_token_hash: hash_token(&logout_token),
        created_at: at,
        updated_at: at,
    };
    IssuedSession { session, token, logout_token }
}

/// A refresh sign-in's new session keeps what the signed-in one proved:
/// Kratos adds the refreshed method to that same session, so an `aal2`
/// session stays `aal2` rather than being sent to its second factor again.
pub fn carry_over(new: &mut Session, current: &Session) {
    let mut methods = current.authentication_methods.clone();
    methods.append(&mut new.authentication_methods);
    new.authentication_methods = methods;
    new.aal.clone_from(&current.aal);
}

/// `prefix` + 32 characters from [A-Za-z0-9]: about 190 bits from the OS CSPRNG.
pub fn random_token(prefix: &str) -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(prefix.len() + 32);
    out.push_str(prefix);
    while out.len() < prefix.len() + 32 {
        let mut bytes = [0u8; 64];
        getrandom::fill(&mut bytes).expect("the OS random source is available");
        // Rejection sampling keeps every character equally likely.
        for b in bytes.iter().filter(|b| **b < 248) {
            if out.len() == prefix.len() + 32 {
                break;
            }
            out.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    out
}

/// The session's logout token, derived from its session token so that a
/// browser holding the session cookie can be handed it again without the
/// database ever storing it: `ory_lo_` + 32 characters of a domain-separated
/// SHA-256.
pub fn logout_token_for(session_token: &str) -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut hasher = Sha256::new();
    hasher.update(b"latchkey logout token\0");
    hasher.update(session_token.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::from(LOGOUT_TOKEN_PREFIX);
    // 32 bytes map to 32 characters; the slight modulo bias is irrelevant
    // for a value that is only ever compared, never guessed cheaper than the session token.
    out.extend(digest.iter().map(|b| ALPHABET[(*b % 62) as usize] as char));
    out
}

/// The stored form of a token: lower-case hex SHA-256.
pub fn hash_token(token: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(token.as_bytes());
    // Every request with a session hashes its token: no formatter per byte.
    let mut hex = String::with_capacity(digest.len() * 2);
    for b in digest {
        hex.push(HEX[usize::from(b >> 4)] as char);
        hex.push(HEX[usize::from(b & 0xf)] as char);
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Clock;

    #[test]
    fn token_hashes_are_lowercase_hex_sha256() {
        // FIPS 180-2's test vector: stored hashes must stay comparable with old rows.
        assert_eq!(hash_token("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tokens_are_prefixed_random_and_stored_hashed() {
        let a = random_token(SESSION_TOKEN_PREFIX);
        let b = random_token(SESSION_TOKEN_PREFIX);
        assert_ne!(a, b);
        assert_eq!(a.len(), 39);
        assert!(a.starts_with("ory_st_") && a[7..].chars().all(|c| c.is_ascii_alphanumeric()));
        let at = crate::time::SystemClock.now();
        let issued = issue(
            Uuid::new_v4(),
            "password",
            at,
            Duration::hours(1),
            Device { id: Uuid::new_v4(), ip_address: None, user_agent: None, location: None },
        );
        assert_eq!(issued.session.token_hash, hash_token(&issued.token));
        assert_eq!(issued.session.token_hash.len(), 64);
        assert!(!issued.session.token_hash.contains(&issued.token));
        assert!(issued.session.is_live(at));
        assert_eq!(issued.logout_token, logout_token_for(&issued.token));
        assert!(issued.logout_token.starts_with("ory_lo_") && issued.logout_token.len() == 39);
        assert_eq!(issued.session.logout_token_hash, hash_token(&issued.logout_token));
    }
}
