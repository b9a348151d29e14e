//! Password hashing for Latchkey, compatible with the hashes Ory Kratos writes
//! and imports.
//!
//! New hashes are argon2id (PHC string) or bcrypt (`$2a$`), chosen by
//! [`HasherConfig`]. Verification understands those plus the legacy formats
//! Kratos accepts on identity import: argon2i, PBKDF2 (`$pbkdf2-<digest>$`)
//! and scrypt (`$scrypt$`). The functions here are synchronous and CPU-bound;
//! async code should go through [`PasswordHasher`], which runs them on its
//! own low-priority threads (not tokio's blocking pool) behind a concurrency
//! limit.
//!
//! ```
//! use latchkey_hash::{HasherConfig, hash_password, needs_rehash, verify_password};
//!
//! let cfg = HasherConfig::Bcrypt { cost: 4 };
//! let stored = hash_password(b"hunter2", &cfg)?;
//! assert!(stored.starts_with("$2a$04$"));
//! assert!(verify_password(b"hunter2", &stored)?);
//! assert!(!verify_password(b"hunter3", &stored)?);
//! assert!(!needs_rehash(&stored, &cfg));
//! # Ok::<(), latchkey_hash::HashError>(())
//! ```

mod argon2;
mod bcrypt;
mod legacy;
mod pool;
mod secret;

pub use pool::{PasswordHasher, WaitObserver};
pub use secret::SecretPassword;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Errors from hashing, verifying or parsing a password hash.
///
/// Messages never contain password material or the hash itself, so they are
/// safe to log and to return to API clients.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HashError {
    /// The string is not in any hash format we understand.
    #[error("the hash does not match any known hash format")]
    UnknownFormat,
    /// bcrypt only uses the first 72 bytes; longer passwords are refused
    /// rather than silently truncated.
    #[error("the password is too long for bcrypt (more than 72 bytes)")]
    PasswordTooLong,
    /// An imported hash asks for more work than we are willing to do.
    #[error("{what} exceeds the allowed maximum of {max}")]
    CostTooHigh {
        /// The parameter that is too high, e.g. `"bcrypt cost"`.
        what: &'static str,
        /// The largest accepted value.
        max: u64,
    },
    /// The format was recognised but the string is not well formed.
    #[error("malformed password hash: {0}")]
    Malformed(String),
    /// Something that should not fail did; the cause is kept for the log.
    #[error("internal password hashing error: {0}")]
    Internal(#[from] InternalError),
}

/// What went wrong inside hashing: the operator's configuration, the OS or
/// the hashing threads. Causes stay `Clone` (the pool caches a result).
#[derive(Debug, Clone, thiserror::Error)]
pub enum InternalError {
    #[error("invalid argon2 configuration: {0}")]
    Argon2Config(#[source] ::argon2::Error),
    #[error("invalid argon2 configuration: salt length must be at least {min} bytes")]
    Argon2SaltTooShort { min: usize },
    #[error("invalid bcrypt configuration: cost must be between {min} and {max}")]
    BcryptCost { min: u32, max: u32 },
    #[error("argon2 hashing failed: {0}")]
    Argon2(#[source] ::argon2::Error),
    #[error("bcrypt hashing failed: {0}")]
    Bcrypt(#[source] std::sync::Arc<::bcrypt::BcryptError>),
    #[error("scrypt hashing failed: {0}")]
    Scrypt(#[source] scrypt::errors::InvalidOutputLen),
    #[error("OS random number generator failed: {0}")]
    Random(#[source] getrandom::Error),
    #[error("password hasher is closed")]
    Closed,
    #[error("password hashing pool is gone")]
    PoolGone,
    #[error("password hashing task failed")]
    TaskFailed,
}

/// Which algorithm and parameters new hashes are made with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HasherConfig {
    /// argon2id, version 0x13.
    Argon2 {
        /// Memory cost in KiB (Kratos's `m`).
        memory_kib: u32,
        /// Number of passes (`t`).
        iterations: u32,
        /// Lanes (`p`).
        parallelism: u32,
        /// Salt length in bytes.
        salt_length: u32,
        /// Derived key length in bytes.
        key_length: u32,
    },
    /// bcrypt, emitted as `$2a$`.
    Bcrypt {
        /// log2 of the number of rounds, 4..=31.
        cost: u32,
    },
}

impl HasherConfig {
    /// Kratos's argon2 defaults: 128 MiB, 1 iteration, 2 lanes per CPU,
    /// 16-byte salt, 32-byte key.
    pub fn argon2_default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let parallelism = u32::try_from(cpus.saturating_mul(2)).unwrap_or(u32::MAX);
        Self::Argon2 { memory_kib: 128 * 1024, iterations: 1, parallelism, salt_length: 16, key_length: 32 }
    }

    /// Kratos's bcrypt default: cost 12.
    pub fn bcrypt_default() -> Self {
        Self::Bcrypt { cost: 12 }
    }

    /// The [`cost_class`] of every hash this configuration makes, and so of
    /// the dummy hash unknown identifiers are checked against.
    pub fn cost_class(&self) -> String {
        match *self {
            Self::Argon2 { memory_kib, iterations, parallelism, .. } => {
                format!("argon2id:v=19,m={memory_kib},t={iterations},p={parallelism}")
            }
            Self::Bcrypt { cost } => format!("bcrypt:{cost}"),
        }
    }
}

/// Hashes `password` with the configured algorithm and a fresh random salt.
///
/// argon2id yields `$argon2id$v=19$m=<KiB>,t=<it>,p=<par>$<salt>$<hash>`
/// (standard base64 without padding); bcrypt yields `$2a$<cost>$...` and
/// refuses passwords longer than 72 bytes.
pub fn hash_password(password: &[u8], cfg: &HasherConfig) -> Result<String, HashError> {
    match *cfg {
        HasherConfig::Argon2 { memory_kib, iterations, parallelism, salt_length, key_length } => {
            argon2::hash(password, memory_kib, iterations, parallelism, salt_length, key_length)
        }
        HasherConfig::Bcrypt { cost } => bcrypt::hash(password, cost),
    }
}

/// Checks `password` against a stored hash of any supported format.
///
/// Returns `Ok(false)` on a mismatch and an error only when the hash cannot
/// be used at all ([`HashError::UnknownFormat`], [`HashError::Malformed`]) or,
/// for bcrypt hashes, when the password is longer than 72 bytes. Digests are
/// compared in constant time.
pub fn verify_password(password: &[u8], encoded: &str) -> Result<bool, HashError> {
    match parse(encoded)? {
        Parsed::Argon2(h) => h.verify(password),
        Parsed::Bcrypt(h) => h.verify(password),
        Parsed::Pbkdf2(h) => Ok(h.verify(password)),
        Parsed::Scrypt(h) => h.verify(password),
    }
}

/// Checks that an imported hash is well formed and cheap enough to verify,
/// without verifying anything.
///
/// Bounds: bcrypt cost ≤ 15; argon2 memory ≤ 1 GiB, t ≤ 10, p ≤ 16; PBKDF2
/// iterations ≤ 10 000 000 and key ≤ 64 bytes (each extra digest block
/// repeats every iteration); scrypt N ≤ 2^17, r ≤ 8, p ≤ 10. Without them a
/// single imported identity could make every login attempt for it pin a CPU
/// or exhaust memory.
pub fn validate_imported_hash(encoded: &str) -> Result<(), HashError> {
    match parse(encoded)? {
        Parsed::Argon2(h) => h.check_import_limits(),
        Parsed::Bcrypt(h) => h.check_import_limits(),
        Parsed::Pbkdf2(h) => h.check_import_limits(),
        Parsed::Scrypt(h) => h.check_import_limits(),
    }
}

/// Whether a stored hash should be replaced after the next successful login
/// because it was not made with the configured algorithm and parameters.
/// Parameters that depend on the host rather than on the wanted strength
/// (argon2 parallelism, by default derived from the CPU count) are left out,
/// so moving to another machine does not rewrite every hash. Unparseable
/// hashes also report `true`.
pub fn needs_rehash(encoded: &str, cfg: &HasherConfig) -> bool {
    match (parse(encoded), cfg) {
        (
            Ok(Parsed::Argon2(h)),
            HasherConfig::Argon2 { memory_kib, iterations, salt_length, key_length, .. },
        ) => !h.matches(*memory_kib, *iterations, *salt_length, *key_length),
        (Ok(Parsed::Bcrypt(h)), HasherConfig::Bcrypt { cost }) => h.cost() != *cost,
        _ => true,
    }
}

/// What verifying `encoded` costs, as a name: its algorithm and the
/// parameters that set the work (`bcrypt:12`, `argon2id:v=19,m=65536,t=2,p=4`,
/// `pbkdf2-sha256:i=100000,l=32`, `scrypt:n=32768,r=8,p=1`). Hashes of one
/// class take about as long to verify, whatever their salt and password;
/// [`HasherConfig::cost_class`] names the class of the hashes a
/// configuration makes. `None` when the hash cannot be parsed.
pub fn cost_class(encoded: &str) -> Option<String> {
    Some(match parse(encoded).ok()? {
        Parsed::Argon2(h) => h.class(),
        Parsed::Bcrypt(h) => h.class(),
        Parsed::Pbkdf2(h) => h.class(),
        Parsed::Scrypt(h) => h.class(),
    })
}

enum Parsed {
    Argon2(argon2::Argon2Hash),
    Bcrypt(bcrypt::BcryptHash),
    Pbkdf2(legacy::Pbkdf2Hash),
    Scrypt(legacy::ScryptHash),
}

fn parse(encoded: &str) -> Result<Parsed, HashError> {
    if bcrypt::recognises(encoded) {
        bcrypt::BcryptHash::parse(encoded).map(Parsed::Bcrypt)
    } else if argon2::recognises(encoded) {
        argon2::Argon2Hash::parse(encoded).map(Parsed::Argon2)
    } else if legacy::recognises_pbkdf2(encoded) {
        legacy::Pbkdf2Hash::parse(encoded).map(Parsed::Pbkdf2)
    } else if legacy::recognises_scrypt(encoded) {
        legacy::ScryptHash::parse(encoded).map(Parsed::Scrypt)
    } else {
        Err(HashError::UnknownFormat)
    }
}

/// Standard-alphabet base64 that writes no padding but reads either form:
/// Kratos writes argon2 and PBKDF2 unpadded and scrypt padded, and exporters
/// from other systems are not consistent.
const B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn decode_b64(field: &str, what: &str) -> Result<Vec<u8>, HashError> {
    use base64::Engine as _;
    B64.decode(field).map_err(|_| HashError::Malformed(format!("{what} is not valid base64")))
}

fn encode_b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    B64.encode(bytes)
}

/// Parses an unsigned decimal strictly: `u32::from_str` would also take a
/// leading `+`, which no hash writer emits.
fn parse_u32(field: &str, what: &str) -> Result<u32, HashError> {
    if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HashError::Malformed(format!("{what} is not a number")));
    }
    field.parse().map_err(|_| HashError::Malformed(format!("{what} is out of range")))
}

/// Reads `key=<u32>` pairs in exactly the given order, comma separated.
fn parse_params<const N: usize>(
    field: &str,
    keys: [&'static str; N],
    algorithm: &str,
) -> Result<[u32; N], HashError> {
    let mut out = [0; N];
    let mut parts = field.split(',');
    for (slot, key) in out.iter_mut().zip(keys) {
        let value = parts
            .next()
            .and_then(|p| p.strip_prefix(key))
            .and_then(|p| p.strip_prefix('='))
            .ok_or_else(|| HashError::Malformed(format!("{algorithm} parameter `{key}` is missing")))?;
        *slot = parse_u32(value, &format!("{algorithm} parameter `{key}`"))?;
    }
    if parts.next().is_some() {
        return Err(HashError::Malformed(format!("{algorithm} has unexpected extra parameters")));
    }
    Ok(out)
}

fn check_limit(value: u64, max: u64, what: &'static str) -> Result<(), HashError> {
    if value > max { Err(HashError::CostTooHigh { what, max }) } else { Ok(()) }
}

fn random_bytes(len: usize) -> Result<Vec<u8>, HashError> {
    let mut buf = vec![0; len];
    getrandom::fill(&mut buf).map_err(InternalError::Random)?;
    Ok(buf)
}

/// Constant-time equality; only the (public) lengths may short-circuit.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const PW: &[u8] = b"correct horse battery staple";

    // Generated with Python 3: `bcrypt` 5.0 (hashpw), `argon2-cffi` 25.1
    // (low_level.hash_secret), and hashlib's pbkdf2_hmac / scrypt. Python
    // bcrypt writes `$2b$`; the `$2a$`/`$2y$` variants below are the same
    // digest under another prefix, which every bcrypt implementation treats
    // identically.
    const BCRYPT_2B: &str = "$2b$04$iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.";
    const BCRYPT_72X: &str = "$2b$04$zVoSGbug9AP5hVMZcSBp7etJ/OD8SrczoyMBBsuQQbZM6luSNg7kW";
    const ARGON2ID: &str =
        "$argon2id$v=19$m=1024,t=2,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu+48npParjw6tIQhYM";
    const ARGON2I: &str = "$argon2i$v=19$m=512,t=3,p=1$qHh5etwHAZtmyU7S$zcrlKKKeG65vnQYrJga+IChtGM/ezYil";
    const ARGON2ID_V16: &str = "$argon2id$v=16$m=256,t=1,p=1$TxJVdOg684UhmwI7LRBclw$Ry2LzHAHj9BbB0psgy0yGg";
    // The v=16 hash above with `v=` removed; argon2-cffi accepts it too,
    // because a missing version means 0x10 in the reference implementation.
    const ARGON2ID_NO_V: &str = "$argon2id$m=256,t=1,p=1$TxJVdOg684UhmwI7LRBclw$Ry2LzHAHj9BbB0psgy0yGg";
    const PBKDF2: [&str; 5] = [
        "$pbkdf2-sha1$i=1000,l=20$1CAkjklZ3rGo23J8rVbO1g$WL5aXNLzMA1o3a3mDnTOAtQ7/QI",
        "$pbkdf2-sha224$i=1000,l=28$Wh2OYGXbIT9deQdnT8JdmQ$bjbpJxj1070afD88pDVzWwDpbhgfiuuQiy0dng",
        "$pbkdf2-sha256$i=2000,l=32$oZrYRWlI1PZsdCDDdRvf4g$mQQCYumtVLHbdt0cyvO/dPlFfQjCwVUH0k44MoA1090",
        "$pbkdf2-sha384$i=1000,l=48$ia4J9UhUiyASckrGmyeEfw$n88CV0mVX/ouvt9u84Z/T6qZ0B9WC93PFwG78qR8iTovG3FzQH6e8k/GZaFuVTZ7",
        "$pbkdf2-sha512$i=1500,l=64$0075ugVAcfogln8KW0wm3w$PPqnEHROd2jFXvfwrmcjnvZbAHkCzx6sb0nolNZqX6z5uEFQumpzM2KTL2+xNeoYekrtuOLJ7eEP+CzU16UWOA",
    ];
    // Kratos's scrypt format: `ln` carries N itself, base64 is padded.
    const SCRYPT: &str = "$scrypt$ln=1024,r=8,p=1$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=";
    const SCRYPT_UNPADDED: &str = "$scrypt$ln=256,r=4,p=2$HeKVGiQkHkQORGcuO8j8dg$3P+FWN8WQu0i+a0shDzAI4ggXrw";

    fn fast_argon2() -> HasherConfig {
        HasherConfig::Argon2 {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 2,
            salt_length: 16,
            key_length: 32,
        }
    }

    fn is_b64_nopad(s: &str, min: usize) -> bool {
        s.len() >= min && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    }

    fn is_bcrypt_b64(s: &str) -> bool {
        s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    }

    fn flip_last_char(s: &str) -> String {
        let mut out = s.to_owned();
        let last = out.pop().unwrap();
        out.push(if last == 'A' { 'B' } else { 'A' });
        out
    }

    #[test]
    fn argon2_round_trip_and_format() {
        let cfg = fast_argon2();
        let h = hash_password(PW, &cfg).unwrap();
        let rest = h.strip_prefix("$argon2id$v=19$m=1024,t=1,p=2$").unwrap();
        let (salt, digest) = rest.split_once('$').unwrap();
        // 16 bytes -> 22 chars, 32 bytes -> 43 chars, no padding.
        assert_eq!(salt.len(), 22);
        assert_eq!(digest.len(), 43);
        assert!(is_b64_nopad(salt, 22) && is_b64_nopad(digest, 43));

        assert!(verify_password(PW, &h).unwrap());
        assert!(!verify_password(b"wrong", &h).unwrap());
        assert_ne!(h, hash_password(PW, &cfg).unwrap(), "salt must be random");
        assert!(!needs_rehash(&h, &cfg));
        validate_imported_hash(&h).unwrap();
    }

    #[test]
    fn argon2_honours_salt_and_key_length() {
        let cfg = HasherConfig::Argon2 {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            salt_length: 32,
            key_length: 64,
        };
        let h = hash_password(PW, &cfg).unwrap();
        let mut fields = h.rsplit('$');
        assert_eq!(fields.next().unwrap().len(), 86);
        assert_eq!(fields.next().unwrap().len(), 43);
        assert!(verify_password(PW, &h).unwrap());
    }

    #[test]
    fn bcrypt_round_trip_and_format() {
        let cfg = HasherConfig::Bcrypt { cost: 4 };
        let h = hash_password(PW, &cfg).unwrap();
        assert_eq!(h.len(), 60);
        let body = h.strip_prefix("$2a$04$").unwrap();
        assert!(body.len() == 53 && is_bcrypt_b64(body));
        assert!(verify_password(PW, &h).unwrap());
        assert!(!verify_password(b"wrong", &h).unwrap());
        assert!(!needs_rehash(&h, &cfg));
    }

    #[test]
    fn bcrypt_accepts_exactly_72_bytes_and_rejects_73() {
        let cfg = HasherConfig::Bcrypt { cost: 4 };
        let pw72 = [b'x'; 72];
        let h = hash_password(&pw72, &cfg).unwrap();
        assert!(verify_password(&pw72, &h).unwrap());

        let pw73 = [b'x'; 73];
        assert!(matches!(hash_password(&pw73, &cfg), Err(HashError::PasswordTooLong)));
        assert!(matches!(verify_password(&pw73, &h), Err(HashError::PasswordTooLong)));
    }

    #[test]
    fn bcrypt_known_vectors_all_prefixes() {
        let body = BCRYPT_2B.strip_prefix("$2b").unwrap();
        for prefix in ["$2a", "$2b", "$2y", "$2x"] {
            let h = format!("{prefix}{body}");
            assert!(verify_password(PW, &h).unwrap(), "{prefix}");
            assert!(!verify_password(b"correct horse battery stapler", &h).unwrap());
            validate_imported_hash(&h).unwrap();
        }
        assert!(verify_password(&[b'x'; 72], BCRYPT_72X).unwrap());
        assert!(!verify_password(&[b'x'; 71], BCRYPT_72X).unwrap());
        assert!(!verify_password(PW, &flip_last_char(BCRYPT_2B)).unwrap());
    }

    #[test]
    fn argon2_known_vectors() {
        for h in [ARGON2ID, ARGON2I, ARGON2ID_V16, ARGON2ID_NO_V] {
            assert!(verify_password(PW, h).unwrap(), "{h}");
            assert!(!verify_password(b"wrong", h).unwrap(), "{h}");
            validate_imported_hash(h).unwrap();
        }
        assert!(!verify_password(PW, &flip_last_char(ARGON2ID)).unwrap());
        // Same digest read as the other variant must not verify.
        let as_i = ARGON2ID.replacen("$argon2id$", "$argon2i$", 1);
        assert!(!verify_password(PW, &as_i).unwrap());
    }

    #[test]
    fn pbkdf2_known_vectors() {
        for h in PBKDF2 {
            assert!(verify_password(PW, h).unwrap(), "{h}");
            assert!(!verify_password(b"wrong", h).unwrap(), "{h}");
            validate_imported_hash(h).unwrap();
        }
        let sha256 = PBKDF2[2];
        assert!(!verify_password(PW, &flip_last_char(sha256)).unwrap());
        // Padded base64 is accepted as well (32-byte digest -> one `=`).
        let (head, digest) = sha256.rsplit_once('$').unwrap();
        let (head, salt) = head.rsplit_once('$').unwrap();
        let padded = format!("{head}${salt}==${digest}=");
        assert!(verify_password(PW, &padded).unwrap());
    }

    #[test]
    fn scrypt_known_vectors() {
        for h in [SCRYPT, SCRYPT_UNPADDED] {
            assert!(verify_password(PW, h).unwrap(), "{h}");
            assert!(!verify_password(b"wrong", h).unwrap(), "{h}");
            validate_imported_hash(h).unwrap();
        }
        let tampered = SCRYPT.replacen("QlJJ", "QlJK", 1);
        assert!(!verify_password(PW, &tampered).unwrap());
    }

    #[test]
    fn unknown_formats_are_rejected() {
        for h in [
            "",
            "plaintext",
            "$unknown$12$o6hx.Wog/wvFSkT/Bp/6DOxCtLRTDj7lm9on9suF/WaCGNVHbkfL6",
            "$argon2d$v=19$m=1024,t=2,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu",
            "$pbkdf2-md5$i=1000,l=16$1CAkjklZ3rGo23J8rVbO1g$WL5aXNLzMA1o3a3mDnTOAg",
            "$2z$04$iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.",
            "$6$rounds=5000$salt$hash",
        ] {
            assert!(matches!(verify_password(PW, h), Err(HashError::UnknownFormat)), "{h}");
            assert!(matches!(validate_imported_hash(h), Err(HashError::UnknownFormat)), "{h}");
            assert!(needs_rehash(h, &fast_argon2()));
        }
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        for h in [
            "$2a$04$short",
            "$2a$4$iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.",
            "$2a$03$iiCigTe6scRSMso87E.XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.",
            "$2a$04$iiCigTe6scRSMso87E+XEu2jZcbqkBbhmBFPE47PiBZRdeOAlCuo.",
            "$argon2id$v=18$m=1024,t=2,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu",
            "$argon2id$v=19$t=2,m=1024,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu",
            "$argon2id$v=19$m=1024,t=2,p=2$Fzm0ZNvaEsdZxbM033rnmg",
            "$argon2id$v=19$m=1024,t=2,p=2$$oQwabV8CGV0rstOj9EJhfOPDTu",
            "$argon2id$v=19$m=1024,t=0,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu",
            "$argon2id$v=19$m=1024,t=+2,p=2$Fzm0ZNvaEsdZxbM033rnmg$oQwabV8CGV0rstOj9EJhfOPDTu",
            "$pbkdf2-sha256$1jP+5Zxpxgtee/iPxGgOz0RfE9/KJuDElP1ley4VxXc$QJxzfvdbHYBpydCbHoFg3GJEqMFULwskiuqiJctoYpI",
            "$pbkdf2-sha256$i=0,l=32$oZrYRWlI1PZsdCDDdRvf4g$mQQCYumtVLHbdt0cyvO/dPlFfQjCwVUH0k44MoA1090",
            "$pbkdf2-sha256$I=2000,l=32$oZrYRWlI1PZsdCDDdRvf4g$mQQCYumtVLHbdt0cyvO/dPlFfQjCwVUH0k44MoA1090",
            "$pbkdf2-sha256$i=2000,l=32$oZrYRWlI1PZsdCDDdRvf4g$(mQQCYumtVLHbdt0cyvO/dPlFfQjCwVUH0k44MoA1090",
            "$scrypt$ln=1000,r=8,p=1$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
            "$scrypt$ln=abc,r=8,p=1$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
            "$scrypt$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
            "$scrypt$ln=1024,r=0,p=1$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
            // r·p past u32: scrypt's own check would overflow (or wrap to 0).
            "$scrypt$ln=1024,r=99999,p=99999$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
            "$scrypt$ln=1024,r=65536,p=65536$SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=$QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=",
        ] {
            assert!(
                matches!(verify_password(PW, h), Err(HashError::Malformed(_))),
                "{h}: {:?}",
                verify_password(PW, h)
            );
            assert!(matches!(validate_imported_hash(h), Err(HashError::Malformed(_))));
        }
    }

    #[test]
    fn import_cost_bounds() {
        let salt16 = "Fzm0ZNvaEsdZxbM033rnmg";
        let key = "oQwabV8CGV0rstOj9EJhfA";
        let bcrypt_body = BCRYPT_2B.strip_prefix("$2b$04").unwrap();
        let too_high = [
            (format!("$2a$16{bcrypt_body}"), "bcrypt cost", 15),
            (format!("$2b$31{bcrypt_body}"), "bcrypt cost", 15),
            (format!("$argon2id$v=19$m=1048577,t=1,p=1${salt16}${key}"), "argon2 memory (KiB)", 1 << 20),
            (format!("$argon2i$v=19$m=1024,t=11,p=1${salt16}${key}"), "argon2 iterations", 10),
            (format!("$argon2id$v=19$m=1024,t=1,p=17${salt16}${key}"), "argon2 parallelism", 16),
            (format!("$pbkdf2-sha256$i=10000001,l=16${salt16}${key}"), "pbkdf2 iterations", 10_000_000),
            (
                format!("$pbkdf2-sha1$i=1000,l=65${salt16}${}", "A".repeat(87)),
                "pbkdf2 key length (bytes)",
                64,
            ),
            (format!("$scrypt$ln=262144,r=8,p=1${salt16}${key}"), "scrypt N", 1 << 17),
            (format!("$scrypt$ln=1024,r=9,p=1${salt16}${key}"), "scrypt r", 8),
            (format!("$scrypt$ln=1024,r=8,p=11${salt16}${key}"), "scrypt p", 10),
        ];
        for (h, what, max) in too_high {
            let err = validate_imported_hash(&h).unwrap_err();
            assert!(
                matches!(err, HashError::CostTooHigh { what: w, max: m } if w == what && m == max),
                "{h}: {err:?}"
            );
            assert!(err.to_string().contains(&max.to_string()));
        }

        // Exactly at the bounds is fine.
        for h in [
            format!("$2a$15{bcrypt_body}"),
            format!("$argon2id$v=19$m=1048576,t=10,p=16${salt16}${key}"),
            format!("$pbkdf2-sha512$i=10000000,l=16${salt16}${key}"),
            format!("$scrypt$ln=131072,r=8,p=10${salt16}${key}"),
        ] {
            validate_imported_hash(&h).unwrap();
        }
    }

    #[test]
    fn cost_classes_name_algorithm_and_work() {
        // A configuration's class is the class of the hashes it makes.
        for cfg in [fast_argon2(), HasherConfig::Bcrypt { cost: 4 }] {
            let made = hash_password(PW, &cfg).unwrap();
            assert_eq!(cost_class(&made), Some(cfg.cost_class()), "{made}");
        }
        assert_eq!(fast_argon2().cost_class(), "argon2id:v=19,m=1024,t=1,p=2");
        // bcrypt's variants do the same work; salt and digest never count.
        assert_eq!(cost_class(BCRYPT_2B).as_deref(), Some("bcrypt:4"));
        assert_eq!(cost_class(&BCRYPT_2B.replacen("$2b$", "$2a$", 1)).as_deref(), Some("bcrypt:4"));
        assert_eq!(cost_class(BCRYPT_72X), cost_class(BCRYPT_2B));
        assert_eq!(cost_class(ARGON2ID).as_deref(), Some("argon2id:v=19,m=1024,t=2,p=2"));
        assert_eq!(cost_class(ARGON2I).as_deref(), Some("argon2i:v=19,m=512,t=3,p=1"));
        assert_eq!(cost_class(ARGON2ID_NO_V), cost_class(ARGON2ID_V16));
        assert_eq!(cost_class(PBKDF2[2]).as_deref(), Some("pbkdf2-sha256:i=2000,l=32"));
        assert_eq!(cost_class(SCRYPT).as_deref(), Some("scrypt:n=1024,r=8,p=1"));
        assert_eq!(cost_class("$md5$abc"), None);
        assert_eq!(cost_class("$2b$04$short"), None);
    }

    #[test]
    fn needs_rehash_cases() {
        let argon = fast_argon2();
        let bcrypt4 = HasherConfig::Bcrypt { cost: 4 };
        let own_argon = hash_password(PW, &argon).unwrap();
        let own_bcrypt = hash_password(PW, &bcrypt4).unwrap();

        assert!(!needs_rehash(&own_argon, &argon));
        assert!(!needs_rehash(&own_bcrypt, &bcrypt4));
        // Same algorithm, different parameters.
        assert!(needs_rehash(&own_bcrypt, &HasherConfig::Bcrypt { cost: 5 }));
        for other in [
            HasherConfig::Argon2 {
                memory_kib: 2048,
                iterations: 1,
                parallelism: 2,
                salt_length: 16,
                key_length: 32,
            },
            HasherConfig::Argon2 {
                memory_kib: 1024,
                iterations: 2,
                parallelism: 2,
                salt_length: 16,
                key_length: 32,
            },
            HasherConfig::Argon2 {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 2,
                salt_length: 32,
                key_length: 32,
            },
            HasherConfig::Argon2 {
                memory_kib: 1024,
                iterations: 1,
                parallelism: 2,
                salt_length: 16,
                key_length: 16,
            },
        ] {
            assert!(needs_rehash(&own_argon, &other), "{other:?}");
        }
        // Different algorithm.
        assert!(needs_rehash(&own_argon, &bcrypt4));
        assert!(needs_rehash(&own_bcrypt, &argon));
        // Legacy and non-default variants always upgrade.
        let argon_i_like = own_argon.replacen("$argon2id$", "$argon2i$", 1);
        assert!(needs_rehash(&argon_i_like, &argon));
        let v16 = own_argon.replacen("$v=19$", "$v=16$", 1);
        assert!(needs_rehash(&v16, &argon));
        for h in PBKDF2.into_iter().chain([SCRYPT]) {
            assert!(needs_rehash(h, &argon));
            assert!(needs_rehash(h, &bcrypt4));
        }
        // A `$2b$` hash with the configured cost is already fine.
        let as_2b = own_bcrypt.replacen("$2a$", "$2b$", 1);
        assert!(!needs_rehash(&as_2b, &bcrypt4));
    }

    #[test]
    fn parallelism_alone_never_asks_for_a_rehash() {
        // Made on a host with two lanes' worth of CPUs, checked on hosts of
        // one and of 64: the hash stays, and still verifies everywhere.
        let made = fast_argon2();
        let own = hash_password(PW, &made).unwrap();
        assert!(own.contains(",p=2$"), "{own}");
        for lanes in [1, 3, 64] {
            let HasherConfig::Argon2 { memory_kib, iterations, salt_length, key_length, .. } = made else {
                unreachable!("fast_argon2 is argon2")
            };
            let host =
                HasherConfig::Argon2 { memory_kib, iterations, parallelism: lanes, salt_length, key_length };
            assert!(!needs_rehash(&own, &host), "p={lanes}");
            // A real change of cost on that host still upgrades.
            let stronger = HasherConfig::Argon2 {
                memory_kib: memory_kib * 2,
                iterations,
                parallelism: lanes,
                salt_length,
                key_length,
            };
            assert!(needs_rehash(&own, &stronger), "p={lanes}");
        }
        assert!(verify_password(PW, &own).unwrap());
    }

    #[test]
    fn invalid_config_is_an_internal_error() {
        let bad_bcrypt = HasherConfig::Bcrypt { cost: 3 };
        assert!(matches!(hash_password(PW, &bad_bcrypt), Err(HashError::Internal(_))));
        let bad_argon = HasherConfig::Argon2 {
            memory_kib: 1024,
            iterations: 0,
            parallelism: 1,
            salt_length: 16,
            key_length: 32,
        };
        let err = hash_password(PW, &bad_argon).unwrap_err();
        assert!(matches!(err, HashError::Internal(InternalError::Argon2Config(_))), "{err:?}");
        // The argon2 crate's own error stays reachable for the log.
        let source = std::error::Error::source(&err).and_then(std::error::Error::source);
        assert!(source.is_some_and(|s| s.is::<::argon2::Error>()), "{err:?}");
    }

    #[test]
    fn defaults_match_kratos() {
        let HasherConfig::Argon2 { memory_kib, iterations, parallelism, salt_length, key_length } =
            HasherConfig::argon2_default()
        else {
            panic!("argon2_default must be argon2");
        };
        assert_eq!((memory_kib, iterations, salt_length, key_length), (131_072, 1, 16, 32));
        assert!(parallelism >= 2 && parallelism % 2 == 0);
        assert_eq!(HasherConfig::bcrypt_default(), HasherConfig::Bcrypt { cost: 12 });
    }

    #[test]
    fn error_messages_carry_no_secrets() {
        let h = "$pbkdf2-sha256$i=2000,l=32$oZrYRWlI1PZsdCDDdRvf4g$(secret";
        let msg = verify_password(b"hunter2", h).unwrap_err().to_string();
        assert!(!msg.contains("hunter2") && !msg.contains("secret") && !msg.contains("oZrY"));
    }
}
