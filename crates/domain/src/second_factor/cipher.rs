//! Second-factor secrets at rest: TOTP keys and lookup codes must be read
//! back (to check a code, to reveal the codes), so they cannot be hashed;
//! they are sealed with XChaCha20-Poly1305 under `secrets.cipher` instead,
//! so a database dump alone gives none of them away.
//!
//! The first secret seals and every listed secret opens, as Kratos rotates
//! `secrets.cipher`. A secret's key is its SHA-256, so any 32 characters
//! (Kratos's rule for the key) make a full 256-bit key, whatever their
//! encoding. Each sealed value is bound to what it belongs to (`context`:
//! the identity and the kind of secret), so a value copied onto another
//! identity's row does not open there.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use sha2::{Digest, Sha256};

/// Marks the format, so another one can follow.
const PREFIX: &str = "xc20p1.";
const NONCE_LEN: usize = 24;

#[derive(Clone)]
pub struct SecretCipher {
    keys: Vec<XChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretCipher({} keys)", self.keys.len())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the sealed value is malformed")]
    Malformed,
    /// Sealed under a secret `secrets.cipher` no longer lists, altered, or
    /// moved from where it was sealed.
    #[error("no key in secrets.cipher opens the sealed value")]
    NoKey,
}

impl SecretCipher {
    /// `None` without secrets: nothing can be sealed.
    pub fn new(secrets: &[String]) -> Option<Self> {
        let keys: Vec<_> = secrets
            .iter()
            .map(|s| {
                let key: [u8; 32] = Sha256::digest(s.as_bytes()).into();
                XChaCha20Poly1305::new(&key.into())
            })
            .collect();
        (!keys.is_empty()).then_some(Self { keys })
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        // 192-bit nonces: random ones never repeat in practice.
        getrandom::fill(&mut nonce).expect("the OS random source is available");
        let sealed = self.keys[0]
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: context.as_bytes() })
            .expect("XChaCha20-Poly1305 seals any message this small");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<Vec<u8>, OpenError> {
        let bytes = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .filter(|b| b.len() > NONCE_LEN)
            .ok_or(OpenError::Malformed)?;
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = XNonce::try_from(nonce).map_err(|_| OpenError::Malformed)?;
        self.keys
            .iter()
            .find_map(|key| key.decrypt(&nonce, Payload { msg: body, aad: context.as_bytes() }).ok())
            .ok_or(OpenError::NoKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher(secrets: &[&str]) -> SecretCipher {
        SecretCipher::new(&secrets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_a_listed_key_and_their_context() {
        let old = cipher(&["0123456789abcdef0123456789abcdef"]);
        let sealed = old.seal(b"JBSWY3DPEHPK3PXP", "totp:a");
        assert!(sealed.starts_with(PREFIX));
        assert!(!sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_ne!(sealed, old.seal(b"JBSWY3DPEHPK3PXP", "totp:a"), "a fresh nonce each time");
        assert_eq!(old.open(&sealed, "totp:a").unwrap(), b"JBSWY3DPEHPK3PXP");
        assert!(matches!(old.open(&sealed, "totp:b"), Err(OpenError::NoKey)));

        // Rotation: a new first secret seals, the old one still opens.
        let rotated = cipher(&["fedcba9876543210fedcba9876543210", "0123456789abcdef0123456789abcdef"]);
        assert_eq!(rotated.open(&sealed, "totp:a").unwrap(), b"JBSWY3DPEHPK3PXP");
        let resealed = rotated.seal(b"x", "c");
        assert!(matches!(old.open(&resealed, "c"), Err(OpenError::NoKey)));

        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(old.open(&tampered, "totp:a").is_err());
        assert!(matches!(old.open("plain", "totp:a"), Err(OpenError::Malformed)));
        assert!(SecretCipher::new(&[]).is_none());
    }
}
