//! Imported password hashes (`POST /admin/identities` with
//! `credentials.password.config.hashed_password`): checked against the
//! import bounds, then verified as a login would verify them.
//!
//! Hashes inside the bounds can still legitimately take seconds (bcrypt
//! cost 15, argon2 with 1 GiB), which would only slow the fuzzer down, so
//! only cheap ones are verified; a timeout on one of those is a finding.
#![no_main]

use latchkey_hash::{HashError, HasherConfig, needs_rehash, validate_imported_hash, verify_password};
use libfuzzer_sys::fuzz_target;

/// The password the seed hashes were made from.
const PASSWORD: &[u8] = b"correct horse battery staple";

/// Rough work units above which a hash is not verified here (about a
/// millisecond of hashing each at most).
const MAX_WORK: u128 = 1 << 14;

fuzz_target!(|data: &[u8]| {
    let Ok(encoded) = std::str::from_utf8(data) else {
        return;
    };
    for cfg in [HasherConfig::Bcrypt { cost: 4 }, HasherConfig::argon2_default()] {
        let _ = needs_rehash(encoded, &cfg);
    }
    if validate_imported_hash(encoded).is_err() || work(encoded) > MAX_WORK {
        return;
    }
    // An accepted import that can never be verified would fail every login
    // for that identity with a server error.
    let result = verify_password(PASSWORD, encoded);
    assert!(
        !matches!(result, Err(HashError::Internal(_))),
        "{encoded:?} imported but cannot be verified: {result:?}"
    );
});

/// An upper estimate of the hashing work `encoded` asks for, read from its
/// `key=value` parameters; anything unreadable counts as too much.
fn work(encoded: &str) -> u128 {
    if let Some(rest) = ["$2a$", "$2b$", "$2y$", "$2x$"].iter().find_map(|p| encoded.strip_prefix(p)) {
        return match rest.get(..2).and_then(|c| c.parse::<u32>().ok()) {
            Some(cost) if cost < 64 => 1u128 << cost.saturating_add(6),
            _ => u128::MAX,
        };
    }
    let param = |key: &str| -> u128 {
        encoded
            .split(['$', ','])
            .filter_map(|piece| piece.split_once('='))
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.parse::<u128>().unwrap_or(u128::MAX))
            .max()
            .unwrap_or(u128::MAX)
    };
    let product = |keys: &[&str]| keys.iter().map(|k| param(k)).fold(1u128, u128::saturating_mul);
    if encoded.starts_with("$argon2") {
        // KiB times passes; lanes only split the same memory.
        product(&["m", "t"]).saturating_mul(param("p").min(64).max(1)) / 4
    } else if encoded.starts_with("$pbkdf2-") {
        // Iterations times output blocks (at most 64 bytes, 20 per SHA-1 block).
        product(&["i"]).saturating_mul(param("l").div_ceil(20))
    } else if encoded.starts_with("$scrypt$") {
        product(&["ln", "r", "p"]) / 8
    } else {
        u128::MAX
    }
}
