//! CSRF protection for browser flows: a random secret in an HttpOnly cookie,
//! and a masked copy of it (fresh one-time pad per response, so it never
//! repeats in a page) in the form's `csrf_token` node. A submit must carry a
//! token that unmasks to the cookie's secret, and the flow remembers the
//! hash of the cookie it was created for.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const SECRET_LEN: usize = 32;

/// The cookie value: base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_LEN];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    STANDARD.encode(bytes)
}

fn decode_secret(cookie: &str) -> Option<[u8; SECRET_LEN]> {
    STANDARD.decode(cookie).ok()?.try_into().ok()
}

/// True when the cookie holds a secret we could have issued.
pub fn is_valid_secret(cookie: &str) -> bool {
    decode_secret(cookie).is_some()
}

/// base64(pad ‖ pad ⊕ secret) with a fresh pad.
pub fn mask(cookie: &str) -> String {
    let Some(secret) = decode_secret(cookie) else {
        return String::new();
    };
    let mut out = [0u8; 2 * SECRET_LEN];
    getrandom::fill(&mut out[..SECRET_LEN]).expect("the OS random source is available");
    for i in 0..SECRET_LEN {
        out[SECRET_LEN + i] = out[i] ^ secret[i];
    }
    STANDARD.encode(out)
}

/// Whether a submitted token unmasks to the cookie's secret, in constant time.
pub fn verify(cookie: &str, submitted: &str) -> bool {
    let (Some(secret), Ok(raw)) = (decode_secret(cookie), STANDARD.decode(submitted)) else {
        return false;
    };
    if raw.len() != 2 * SECRET_LEN {
        return false;
    }
    let unmasked: Vec<u8> = (0..SECRET_LEN).map(|i| raw[i] ^ raw[SECRET_LEN + i]).collect();
    unmasked.ct_eq(&secret).into()
}

/// What a flow stores to recognise the cookie it was created for.
pub fn hash(cookie: &str) -> String {
    Sha256::digest(cookie.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `csrf_token_<hex(sha256(public base URL))>`, as Kratos names the cookie.
pub fn cookie_name(public_base_url: &str) -> String {
    format!("csrf_token_{}", hash(public_base_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_but_verify() {
        let secret = new_secret();
        let (a, b) = (mask(&secret), mask(&secret));
        assert_ne!(a, b);
        assert!(verify(&secret, &a) && verify(&secret, &b));
        assert!(!verify(&new_secret(), &a));
        assert!(!verify(&secret, "garbage"));
        assert!(!verify(&secret, &secret));
        assert_eq!(cookie_name("http://127.0.0.1:4433/").len(), "csrf_token_".len() + 64);
    }
}
