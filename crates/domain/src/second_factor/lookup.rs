//! Lookup secrets (backup recovery codes), as Kratos's `lookup_secret`
//! method has them: 12 codes of 8 lowercase letters and digits, revealable
//! later, each working once. The codes are sealed in the credential's
//! `config` under a random set id; which of them are spent is kept apart
//! (one row per spent code, written once), so a code is spent by one
//! conditional insert and never by rewriting the credential.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::SecondFactorError;
use super::cipher::SecretCipher;
use crate::identity::{Credential, CredentialType, Identity};
use crate::store::Store;
use crate::text;
use crate::time::Clock;
use crate::ui::{Group, Input, Node};

pub const CODES: usize = 12;
pub const CODE_LENGTH: usize = 8;
const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SET: &str = "set";
const SEALED_CODES: &str = "sealed_recovery_codes";

/// Whether a `lookup_secret` credential's config holds codes, used up or
/// not (what makes it a second factor, see `aal::available_aal`).
pub fn has_codes(config: &Value) -> bool {
    config.get(SEALED_CODES).and_then(Value::as_str).is_some_and(|s| !s.is_empty())
}

pub const NODE_REVEAL: &str = "lookup_secret_reveal";
pub const NODE_REGENERATE: &str = "lookup_secret_regenerate";
pub const NODE_CONFIRM: &str = "lookup_secret_confirm";
pub const NODE_DISABLE: &str = "lookup_secret_disable";
pub const NODE_CODES: &str = "lookup_secret_codes";

/// A fresh set of codes, uniformly random over the alphabet.
pub fn generate() -> Vec<String> {
    (0..CODES)
        .map(|_| {
            let mut code = String::with_capacity(CODE_LENGTH);
            while code.len() < CODE_LENGTH {
                let mut bytes = [0u8; 16];
                getrandom::fill(&mut bytes).expect("the OS random source is available");
                // 252 = 7 × 36: larger bytes would favour the first letters.
                for b in bytes.into_iter().filter(|b| *b < 252) {
                    if code.len() < CODE_LENGTH {
                        code.push(char::from(ALPHABET[usize::from(b % 36)]));
                    }
                }
            }
            code
        })
        .collect()
}

/// One code as the settings form lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShownCode {
    pub code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_at: Option<DateTime<Utc>>,
}

/// How a submitted code fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Right and unused: spent now.
    Accepted,
    /// One of the codes, spent before (Kratos: 4000012).
    AlreadyUsed,
    /// None of the codes (4000016).
    Wrong,
    /// The identity has no codes (4000014).
    NotSetUp,
}

fn credential_context(identity_id: Uuid, set: Uuid) -> String {
    format!("lookup_secret:{identity_id}:{set}")
}

/// The `lookup_secret` method: settings makes, reveals and removes the codes;
/// a later login step-up spends one with [`verify`](Self::verify).
#[derive(Clone)]
pub struct LookupSecrets {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cipher: Arc<SecretCipher>,
}

impl LookupSecrets {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, cipher: Arc<SecretCipher>) -> Self {
        Self { store, clock, cipher }
    }

    pub(crate) fn cipher(&self) -> &SecretCipher {
        &self.cipher
    }

    /// The identity's set id and codes, opened; `None` without codes.
    pub fn codes_of(&self, identity: &Identity) -> Result<Option<(Uuid, Vec<String>)>, SecondFactorError> {
        let Some(credential) = identity.credential(CredentialType::LookupSecret) else {
            return Ok(None);
        };
        let corrupt = || SecondFactorError::Corrupt("the lookup_secret credential is malformed");
        let set = credential
            .config
            .get(SET)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(corrupt)?;
        let sealed = credential.config.get(SEALED_CODES).and_then(Value::as_str).ok_or_else(corrupt)?;
        let plain = self.cipher.open(sealed, &credential_context(identity.id, set))?;
        let codes: Vec<String> = serde_json::from_slice(&plain).map_err(|_| corrupt())?;
        Ok(Some((set, codes)).filter(|(_, codes)| !codes.is_empty()))
    }

    /// The identity's codes with when each was spent, for revealing them.
    pub async fn shown(&self, identity: &Identity) -> Result<Option<Vec<ShownCode>>, SecondFactorError> {
        let Some((set, codes)) = self.codes_of(identity)? else {
            return Ok(None);
        };
        let used = self.store.used_lookup_codes(identity.id, set).await?;
        let shown = codes
            .into_iter()
            .enumerate()
            .map(|(n, code)| {
                let used_at = used.iter().find(|(position, _)| *position as usize == n).map(|(_, at)| *at);
                ShownCode { code, used_at }
            })
            .collect();
        Ok(Some(shown))
    }

    /// Checks `code` against the identity's codes and spends it if it is
    /// one of them and unused; of parallel submits of one code, one wins.
    pub async fn verify(&self, identity: &Identity, code: &str) -> Result<Verdict, SecondFactorError> {
        let Some((set, codes)) = self.codes_of(identity)? else {
            return Ok(Verdict::NotSetUp);
        };
        let given = code.trim().to_ascii_lowercase();
        // Every code is compared, in constant time, whichever matches.
        let mut found = None;
        for (n, candidate) in codes.iter().enumerate() {
            let matches: bool = candidate.as_bytes().ct_eq(given.as_bytes()).into();
            if matches && found.is_none() {
                found = Some(n);
            }
        }
        let Some(position) = found else {
            return Ok(Verdict::Wrong);
        };
        let at = self.clock.now();
        let spent = self.store.spend_lookup_code(identity.id, set, position as u32, at).await?;
        Ok(if spent { Verdict::Accepted } else { Verdict::AlreadyUsed })
    }

    /// Replaces the identity's codes with `codes`, all unused; false when
    /// the identity is gone.
    pub(crate) async fn save(
        &self,
        identity: &Identity,
        codes: &[String],
    ) -> Result<bool, SecondFactorError> {
        let at = self.clock.now();
        let set = Uuid::new_v4();
        let plain = serde_json::to_vec(codes).expect("strings serialise");
        let credential = Credential {
            id: Uuid::new_v4(),
            kind: CredentialType::LookupSecret,
            identifiers: vec![identity.id.to_string()],
            config: json!({
                SET: set,
                SEALED_CODES: self.cipher.seal(&plain, &credential_context(identity.id, set)),
            }),
            version: 0,
            created_at: at,
            updated_at: at,
        };
        Ok(self.store.set_credential(identity.id, &credential, at).await?)
    }
}

fn button(name: &str, label: text::Message) -> Node {
    Input {
        name,
        input_type: "submit",
        group: Group::LookupSecret,
        value: Some(Value::String("true".into())),
        required: false,
        autocomplete: None,
        label: Some(label),
    }
    .into_node()
}

/// The settings nodes before any action: reveal and disable for an identity
/// with codes, regenerate for one without.
pub fn initial_nodes(has_codes: bool) -> Vec<Node> {
    if has_codes {
        vec![button(NODE_REVEAL, text::lookup_reveal()), button(NODE_DISABLE, text::lookup_disable())]
    } else {
        vec![button(NODE_REGENERATE, text::lookup_regenerate())]
    }
}

/// After "reveal": the codes (filled in when shown), disable, regenerate.
pub fn revealed_nodes() -> Vec<Node> {
    vec![
        codes_node(&[]),
        button(NODE_DISABLE, text::lookup_disable()),
        button(NODE_REGENERATE, text::lookup_regenerate()),
    ]
}

/// After "regenerate": the new codes (filled in when shown) and confirm.
pub fn regenerated_nodes() -> Vec<Node> {
    vec![codes_node(&[]), button(NODE_CONFIRM, text::lookup_confirm())]
}

/// The list of codes, spent ones shown as "used", as Kratos lists them.
pub fn codes_node(codes: &[ShownCode]) -> Node {
    let shown: Vec<String> =
        codes.iter().map(|c| if c.used_at.is_some() { "used".into() } else { c.code.clone() }).collect();
    let each: Vec<text::Message> = codes
        .iter()
        .map(|c| match c.used_at {
            Some(at) => text::lookup_code_used(at),
            None => text::lookup_code(&c.code),
        })
        .collect();
    Node::text(Group::LookupSecret, NODE_CODES, text::lookup_codes(&shown, &each), text::lookup_codes_label())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_twelve_of_eight_lowercase_letters_and_digits() {
        let codes = generate();
        assert_eq!(codes.len(), CODES);
        for code in &codes {
            assert_eq!(code.len(), CODE_LENGTH);
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{code}");
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), CODES);
        // Every symbol turns up over many codes: none of the alphabet is lost.
        let many: String = (0..40).flat_map(|_| generate()).collect();
        assert!(ALPHABET.iter().all(|c| many.as_bytes().contains(c)));
    }

    #[test]
    fn the_list_shows_spent_codes_as_used() {
        let at = DateTime::from_timestamp(1_629_199_959, 0).unwrap();
        let node = codes_node(&[
            ShownCode { code: "abcd1234".into(), used_at: None },
            ShownCode { code: "efgh5678".into(), used_at: Some(at) },
        ]);
        let value = serde_json::to_value(&node).unwrap();
        assert_eq!(value["type"], "text");
        assert_eq!(value["group"], "lookup_secret");
        assert_eq!(value["attributes"]["id"], NODE_CODES);
        let list = &value["attributes"]["text"];
        assert_eq!(list["id"], 1050015);
        assert_eq!(list["text"], "abcd1234, used");
        assert_eq!(list["context"]["secrets"][0]["id"], 1050009);
        assert_eq!(list["context"]["secrets"][0]["context"]["secret"], "abcd1234");
        assert_eq!(list["context"]["secrets"][1]["id"], 1050014);
        assert_eq!(list["context"]["secrets"][1]["context"]["used_at_unix"], 1_629_199_959);
        assert_eq!(value["meta"]["label"]["id"], 1050010);
    }
}
