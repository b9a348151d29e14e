//! TOTP (RFC 6238) as Kratos's `totp` method has it: HMAC-SHA1, 6 digits,
//! 30-second steps, 160-bit keys, handed to the app as an otpauth URL (QR
//! code and base32 key). Beyond Kratos, a code is accepted at most once:
//! the newest time step used is stored per identity and only a later one
//! passes, in one conditional write, so two parallel submits of one code
//! cannot both get in (RFC 6238 §5.2).

use std::fmt::Write as _;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::cipher::SecretCipher;
use super::{SecondFactorError, qr};
use crate::identity::{Credential, CredentialType, Identity};
use crate::store::Store;
use crate::text;
use crate::time::Clock;
use crate::ui::{Group, Input, Node};

pub const DIGITS: u32 = 6;
pub const PERIOD_SECONDS: i64 = 30;
/// Steps either side of now a code may come from (clock drift, typing time).
pub const SKEW_STEPS: i64 = 1;
/// 160 bits, RFC 4226's recommended key length (and Kratos's).
const KEY_BYTES: usize = 20;
/// Where the sealed otpauth URL sits in the credential's `config`.
const SEALED_URL: &str = "sealed_totp_url";

/// Whether a `totp` credential's config holds a linked key (what makes it
/// a second factor, see `aal::available_aal`).
pub fn is_linked(config: &Value) -> bool {
    config.get(SEALED_URL).and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

pub const NODE_QR: &str = "totp_qr";
pub const NODE_SECRET: &str = "totp_secret_key";
pub const NODE_CODE: &str = "totp_code";
pub const NODE_UNLINK: &str = "totp_unlink";

type HmacSha1 = Hmac<Sha1>;

/// HOTP (RFC 4226 §5.3): the counter's HMAC-SHA1, dynamically truncated to
/// `digits` decimal digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    let mut mac = HmacSha1::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(&counter.to_be_bytes());
    let hash = mac.finalize().into_bytes();
    let offset = usize::from(hash[hash.len() - 1] & 0x0f);
    let word = u32::from_be_bytes([hash[offset], hash[offset + 1], hash[offset + 2], hash[offset + 3]]);
    (word & 0x7fff_ffff) % 10u32.pow(digits)
}

/// The time step an instant falls in.
pub fn step_at(at: DateTime<Utc>) -> i64 {
    at.timestamp().div_euclid(PERIOD_SECONDS)
}

/// The code for one step, zero-padded.
pub fn code_at_step(key: &[u8], step: i64) -> String {
    format!("{:0width$}", hotp(key, step as u64, DIGITS), width = DIGITS as usize)
}

/// The step within the skew of `now` whose code `code` is. Every candidate
/// is compared, in constant time, so the timing tells nothing about which.
pub fn matching_step(key: &[u8], code: &str, now: DateTime<Utc>) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    let mut found = None;
    for step in current - SKEW_STEPS..=current + SKEW_STEPS {
        let matches: bool = code_at_step(key, step).as_bytes().ct_eq(code.as_bytes()).into();
        if matches && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// A TOTP key with the names the app shows beside its codes.
#[derive(Clone, PartialEq, Eq)]
pub struct TotpKey {
    key: Vec<u8>,
    url: String,
}

impl std::fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpKey([REDACTED])")
    }
}

impl TotpKey {
    pub fn generate(issuer: &str, account: &str) -> Self {
        let mut key = vec![0u8; KEY_BYTES];
        getrandom::fill(&mut key).expect("the OS random source is available");
        // Key URI format (Google Authenticator's wiki), the parameters in
        // the order Kratos's generator writes them. Neither name may hold a
        // colon, the label's separator, so both are escaped.
        let url = format!(
            "otpauth://totp/{}:{}?algorithm=SHA1&digits={DIGITS}&issuer={}&period={PERIOD_SECONDS}&secret={}",
            escape(issuer, "@"),
            escape(account, "@"),
            escape(issuer, ""),
            BASE32_NOPAD.encode(&key),
        );
        Self { key, url }
    }

    /// Reads back a URL [`generate`](Self::generate) made.
    pub fn from_url(url: &str) -> Option<Self> {
        let query = url.strip_prefix("otpauth://totp/")?.split_once('?')?.1;
        let secret = query.split('&').find_map(|pair| pair.strip_prefix("secret="))?;
        let key = BASE32_NOPAD.decode(secret.as_bytes()).ok().filter(|k| !k.is_empty())?;
        Some(Self { key, url: url.to_string() })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The key as apps take it typed in: base32, unpadded.
    pub fn secret(&self) -> String {
        BASE32_NOPAD.encode(&self.key)
    }

    pub fn matching_step(&self, code: &str, now: DateTime<Utc>) -> Option<i64> {
        matching_step(&self.key, code, now)
    }

    /// The code an app shows at `at`.
    pub fn code_at(&self, at: DateTime<Utc>) -> String {
        code_at_step(&self.key, step_at(at))
    }

    /// A key typed in as apps take it (base32), named nothing.
    pub fn from_secret(secret: &str) -> Option<Self> {
        Self::from_url(&format!("otpauth://totp/?secret={secret}"))
    }
}

/// Percent-encodes all but unreserved characters and `keep`.
fn escape(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What the credential's key is sealed against: its identity.
fn credential_context(identity_id: Uuid) -> String {
    format!("totp:{identity_id}")
}

/// The `totp` method: settings links a key to an identity, and a later
/// login step-up checks codes against it with [`verify`](Self::verify).
#[derive(Clone)]
pub struct Totp {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cipher: Arc<SecretCipher>,
    /// Named in the app beside the account (`selfservice.methods.totp.config.issuer`).
    issuer: String,
}

impl Totp {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cipher: Arc<SecretCipher>,
        issuer: String,
    ) -> Self {
        Self { store, clock, cipher, issuer }
    }

    pub(crate) fn cipher(&self) -> &SecretCipher {
        &self.cipher
    }

    /// A fresh key for `identity`, named by its schema's
    /// `totp.account_name` trait, else its id (as Kratos names it).
    pub fn new_key(&self, account: Option<&str>, identity: &Identity) -> TotpKey {
        let fallback = identity.id.to_string();
        TotpKey::generate(&self.issuer, account.filter(|a| !a.is_empty()).unwrap_or(&fallback))
    }

    /// The identity's linked key, opened.
    pub fn key_of(&self, identity: &Identity) -> Result<Option<TotpKey>, SecondFactorError> {
        let Some(credential) = identity.credential(CredentialType::Totp) else {
            return Ok(None);
        };
        let sealed = credential
            .config
            .get(SEALED_URL)
            .and_then(Value::as_str)
            .ok_or(SecondFactorError::Corrupt("the TOTP credential holds no sealed key"))?;
        let url = self.cipher.open(sealed, &credential_context(identity.id))?;
        let url =
            String::from_utf8(url).map_err(|_| SecondFactorError::Corrupt("the TOTP key is not text"))?;
        TotpKey::from_url(&url).map(Some).ok_or(SecondFactorError::Corrupt("the TOTP key URL is malformed"))
    }

    /// Checks `code` against the identity's key and spends it: true only for
    /// a right code of a time step later than any accepted before for this
    /// identity, and then no other submit of it (or of an earlier step) gets
    /// in. False too when the identity has no TOTP.
    pub async fn verify(&self, identity: &Identity, code: &str) -> Result<bool, SecondFactorError> {
        let Some(key) = self.key_of(identity)? else {
            return Ok(false);
        };
        let Some(step) = key.matching_step(code, self.clock.now()) else {
            return Ok(false);
        };
        Ok(self.store.spend_totp_step(identity.id, step).await?)
    }

    /// Links `key` to the identity, the code that proved it (`step`) counting
    /// as used; false when the identity is gone.
    pub(crate) async fn link(
        &self,
        identity: &Identity,
        key: &TotpKey,
        step: i64,
    ) -> Result<bool, SecondFactorError> {
        let at = self.clock.now();
        let credential = Credential {
            id: Uuid::new_v4(),
            kind: CredentialType::Totp,
            // As in Kratos: the method needs no identifier; the id keeps it unique.
            identifiers: vec![identity.id.to_string()],
            config: json!({ SEALED_URL: self.cipher.seal(key.url().as_bytes(), &credential_context(identity.id)) }),
            version: 0,
            created_at: at,
            updated_at: at,
        };
        if !self.store.set_credential(identity.id, &credential, at).await? {
            return Ok(false);
        }
        self.store.spend_totp_step(identity.id, step).await?;
        Ok(true)
    }
}

/// The settings nodes for an identity without TOTP: the QR code and the key
/// (filled in by [`fill_setup_nodes`] when shown, so the stored flow never
/// holds them), the code input and the save button.
pub fn setup_nodes() -> Vec<Node> {
    vec![
        Node::image(Group::Totp, NODE_QR, "", qr::SIDE, text::totp_qr_label()),
        Node::text(Group::Totp, NODE_SECRET, text::totp_secret(""), text::totp_secret_label()),
        Input {
            name: NODE_CODE,
            input_type: "text",
            group: Group::Totp,
            value: None,
            required: true,
            autocomplete: None,
            label: Some(text::label_verify_code()),
        }
        .into_node(),
        Node::submit(Group::Totp, "totp", text::label_save()),
    ]
}

/// Puts the key into the placeholders [`setup_nodes`] made.
pub fn fill_setup_nodes(nodes: &mut [Node], key: &TotpKey) {
    for node in nodes.iter_mut().filter(|n| n.group == Group::Totp) {
        match node.id() {
            Some(NODE_QR) => {
                node.attributes["src"] = Value::String(qr::data_url(key.url()).unwrap_or_default())
            }
            Some(NODE_SECRET) => node.attributes["text"] = json!(text::totp_secret(&key.secret())),
            _ => {}
        }
    }
}

/// The settings node for an identity with TOTP: unlink it.
pub fn unlink_node() -> Node {
    Input {
        name: NODE_UNLINK,
        input_type: "submit",
        group: Group::Totp,
        value: Some(Value::String("true".into())),
        required: true,
        autocomplete: None,
        label: Some(text::totp_unlink()),
    }
    .into_node()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238, Appendix B: the SHA-1 rows, 8 digits, key "12345678901234567890".
    #[test]
    fn rfc_6238_test_vectors() {
        let key = b"12345678901234567890";
        for (time, code) in [
            (59u64, 94287082u32),
            (1111111109, 7081804),
            (1111111111, 14050471),
            (1234567890, 89005924),
            (2000000000, 69279037),
            (20000000000, 65353130),
        ] {
            assert_eq!(hotp(key, time / 30, 8), code, "T = {time}");
        }
    }

    /// RFC 4226, Appendix D: HOTP values for counters 0 to 9.
    #[test]
    fn rfc_4226_test_vectors() {
        let expected = [755224, 287082, 359152, 969429, 338314, 254676, 287922, 162583, 399871, 520489];
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(hotp(b"12345678901234567890", counter as u64, 6), code);
        }
    }

    #[test]
    fn codes_match_within_one_step_either_way() {
        let key = b"12345678901234567890";
        let now = DateTime::from_timestamp(1_111_111_111, 0).unwrap();
        let step = step_at(now);
        for offset in -1..=1 {
            let code = code_at_step(key, step + offset);
            assert_eq!(matching_step(key, &code, now), Some(step + offset));
            assert_eq!(matching_step(key, &format!(" {code} "), now), Some(step + offset));
        }
        assert_eq!(matching_step(key, &code_at_step(key, step + 2), now), None);
        assert_eq!(matching_step(key, &code_at_step(key, step - 2), now), None);
        assert_eq!(matching_step(key, "12345", now), None);
        assert_eq!(matching_step(key, "12345a", now), None);
        assert_eq!(code_at_step(key, 1), "287082");
    }

    #[test]
    fn generated_keys_read_back_from_their_url() {
        let key = TotpKey::generate("Example Co: Accounts", "ada@example.com");
        assert!(
            key.url().starts_with("otpauth://totp/Example%20Co%3A%20Accounts:ada@example.com?algorithm=SHA1&digits=6&issuer=Example%20Co%3A%20Accounts&period=30&secret="),
            "{}",
            key.url()
        );
        assert_eq!(key.secret().len(), 32, "160 bits in base32");
        assert_eq!(TotpKey::from_url(key.url()), Some(key.clone()));
        assert_ne!(TotpKey::generate("a", "b").secret(), TotpKey::generate("a", "b").secret());
        assert_eq!(format!("{key:?}"), "TotpKey([REDACTED])");
        assert!(TotpKey::from_url("otpauth://totp/x?secret=").is_none());
    }
}
