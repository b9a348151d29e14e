//! bcrypt in modular crypt form: `$2a$<cost>$<22-char salt><31-char digest>`,
//! using bcrypt's own base64 alphabet.
//!
//! We write `$2a$` (as Kratos does) and read `$2a$`, `$2b$`, `$2y$` and
//! `$2x$`, which differ only in how historic implementations handled
//! non-ASCII input and compute the same digest here. bcrypt ignores input
//! past 72 bytes, so longer passwords are refused instead of being truncated
//! into a weaker secret than the user typed.

use ::bcrypt::Version;
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::{HashError, InternalError, check_limit, ct_eq, parse_u32, random_bytes};

const PREFIXES: [&str; 4] = ["$2a$", "$2b$", "$2y$", "$2x$"];
const MAX_PASSWORD_LEN: usize = 72;
const MIN_COST: u32 = 4;
const MAX_COST: u32 = 31;
const MAX_IMPORT_COST: u32 = 15;
const SALT_CHARS: usize = 22;
const DIGEST_CHARS: usize = 31;

/// Go's bcrypt, and so Kratos, ignores the unused low bits of the last salt
/// character; the `bcrypt` crate rejects salts where they are set. Decoding
/// the salt ourselves keeps such imported hashes usable.
const LENIENT_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::BCRYPT,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

pub(crate) fn recognises(encoded: &str) -> bool {
    PREFIXES.iter().any(|p| encoded.starts_with(p))
}

fn check_length(password: &[u8]) -> Result<(), HashError> {
    if password.len() > MAX_PASSWORD_LEN { Err(HashError::PasswordTooLong) } else { Ok(()) }
}

/// Full `$2a$` string for `password` under `cost` and `salt`.
fn compute(password: &[u8], cost: u32, salt: [u8; 16]) -> Result<String, HashError> {
    Ok(::bcrypt::hash_with_salt(password, cost, salt)
        .map_err(|e| InternalError::Bcrypt(e.into()))?
        .format_for_version(Version::TwoA))
}

pub(crate) fn hash(password: &[u8], cost: u32) -> Result<String, HashError> {
    check_length(password)?;
    if !(MIN_COST..=MAX_COST).contains(&cost) {
        return Err(InternalError::BcryptCost { min: MIN_COST, max: MAX_COST }.into());
    }
    let mut salt = [0; 16];
    salt.copy_from_slice(&random_bytes(16)?);
    compute(password, cost, salt)
}

/// A parsed bcrypt hash, ready to verify against.
pub(crate) struct BcryptHash {
    cost: u32,
    salt: [u8; 16],
    /// Kept encoded: like Go's implementation we compare the encoded digest,
    /// so a stored digest with stray trailing bits never matches.
    digest: String,
}

impl BcryptHash {
    pub(crate) fn parse(encoded: &str) -> Result<Self, HashError> {
        let rest = PREFIXES.iter().find_map(|p| encoded.strip_prefix(p)).ok_or(HashError::UnknownFormat)?;
        let (cost, body) = rest
            .split_once('$')
            .ok_or_else(|| HashError::Malformed("bcrypt hash has no cost field".into()))?;
        if cost.len() != 2 {
            return Err(HashError::Malformed("bcrypt cost must be two digits".into()));
        }
        let cost = parse_u32(cost, "bcrypt cost")?;
        if !(MIN_COST..=MAX_COST).contains(&cost) {
            return Err(HashError::Malformed(format!(
                "bcrypt cost must be between {MIN_COST} and {MAX_COST}"
            )));
        }
        if body.len() != SALT_CHARS + DIGEST_CHARS || !body.is_ascii() {
            return Err(HashError::Malformed("bcrypt salt and digest must be 53 characters".into()));
        }
        let (salt, digest) = body.split_at(SALT_CHARS);
        let salt: [u8; 16] = LENIENT_B64
            .decode(salt)
            .ok()
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| HashError::Malformed("bcrypt salt is not valid".into()))?;
        if LENIENT_B64.decode(digest).is_err() {
            return Err(HashError::Malformed("bcrypt digest is not valid".into()));
        }
        Ok(Self { cost, salt, digest: digest.to_owned() })
    }

    pub(crate) fn cost(&self) -> u32 {
        self.cost
    }

    /// See `cost_class`: the cost alone (`$2a$`, `$2b$`, … do the same work).
    pub(crate) fn class(&self) -> String {
        format!("bcrypt:{}", self.cost)
    }

    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, HashError> {
        check_length(password)?;
        let candidate = compute(password, self.cost, self.salt)?;
        let candidate = &candidate.as_bytes()[candidate.len() - DIGEST_CHARS..];
        Ok(ct_eq(candidate, self.digest.as_bytes()))
    }

    pub(crate) fn check_import_limits(&self) -> Result<(), HashError> {
        check_limit(self.cost.into(), MAX_IMPORT_COST.into(), "bcrypt cost")
    }
}
