//! Import-only formats: PBKDF2 and scrypt as Kratos encodes them. We verify
//! these but never write them; `needs_rehash` always asks for an upgrade.
//!
//! - PBKDF2: `$pbkdf2-<sha1|sha224|sha256|sha384|sha512>$i=<iterations>,l=<keylen>$<salt>$<digest>`.
//!   As in Kratos, `l` must be present but the decoded digest's length is
//!   what is derived and compared.
//! - scrypt: `$scrypt$ln=<N>,r=<r>,p=<p>$<salt>$<digest>`. Despite its name,
//!   Kratos's `ln` carries N itself (e.g. `ln=16384`), not log2 N as in
//!   passlib's format; we follow Kratos, so N must be a power of two.
//!
//! Salt and digest are standard base64, padded or not.

use crate::{HashError, InternalError, check_limit, ct_eq, decode_b64, parse_params};

const PBKDF2_PREFIX: &str = "$pbkdf2-";
const SCRYPT_PREFIX: &str = "$scrypt$";

/// Import limits (see `validate_imported_hash`).
const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;
/// Each extra digest-sized block of output repeats all iterations, so the
/// key length multiplies the iteration bound; 64 bytes is a full SHA-512
/// output, the most any of these digests yields in one block.
const MAX_PBKDF2_KEY_LEN: usize = 64;
const MAX_SCRYPT_N: u32 = 1 << 17;
const MAX_SCRYPT_R: u32 = 8;
const MAX_SCRYPT_P: u32 = 10;

pub(crate) fn recognises_pbkdf2(encoded: &str) -> bool {
    encoded.starts_with(PBKDF2_PREFIX)
}

pub(crate) fn recognises_scrypt(encoded: &str) -> bool {
    encoded.starts_with(SCRYPT_PREFIX)
}

/// Splits `<params>$<salt>$<digest>` and decodes the last two.
fn split_fields<'a>(rest: &'a str, algorithm: &str) -> Result<(&'a str, Vec<u8>, Vec<u8>), HashError> {
    let fields: Vec<&str> = rest.split('$').collect();
    let [params, salt, digest] = fields.as_slice() else {
        return Err(HashError::Malformed(format!(
            "{algorithm} hash must be $<params>$<salt>$<digest> after the identifier"
        )));
    };
    let salt = decode_b64(salt, &format!("{algorithm} salt"))?;
    let digest = decode_b64(digest, &format!("{algorithm} digest"))?;
    if digest.is_empty() {
        return Err(HashError::Malformed(format!("{algorithm} digest is empty")));
    }
    Ok((params, salt, digest))
}

#[derive(Clone, Copy)]
enum Prf {
    Sha1,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

/// A parsed Kratos-style PBKDF2 hash.
pub(crate) struct Pbkdf2Hash {
    prf: Prf,
    iterations: u32,
    salt: Vec<u8>,
    digest: Vec<u8>,
}

impl Pbkdf2Hash {
    pub(crate) fn parse(encoded: &str) -> Result<Self, HashError> {
        let rest = encoded.strip_prefix(PBKDF2_PREFIX).ok_or(HashError::UnknownFormat)?;
        let (prf, rest) = rest.split_once('$').ok_or(HashError::UnknownFormat)?;
        let prf = match prf {
            "sha1" => Prf::Sha1,
            "sha224" => Prf::Sha224,
            "sha256" => Prf::Sha256,
            "sha384" => Prf::Sha384,
            "sha512" => Prf::Sha512,
            _ => return Err(HashError::UnknownFormat),
        };
        let (params, salt, digest) = split_fields(rest, "pbkdf2")?;
        let [iterations, _key_len] = parse_params(params, ["i", "l"], "pbkdf2")?;
        if iterations == 0 {
            return Err(HashError::Malformed("pbkdf2 iterations must be at least 1".into()));
        }
        Ok(Self { prf, iterations, salt, digest })
    }

    pub(crate) fn verify(&self, password: &[u8]) -> bool {
        use pbkdf2::pbkdf2_hmac;
        let mut candidate = vec![0; self.digest.len()];
        let (salt, rounds, out) = (&self.salt[..], self.iterations, &mut candidate[..]);
        match self.prf {
            Prf::Sha1 => pbkdf2_hmac::<sha1::Sha1>(password, salt, rounds, out),
            Prf::Sha224 => pbkdf2_hmac::<sha2::Sha224>(password, salt, rounds, out),
            Prf::Sha256 => pbkdf2_hmac::<sha2::Sha256>(password, salt, rounds, out),
            Prf::Sha384 => pbkdf2_hmac::<sha2::Sha384>(password, salt, rounds, out),
            Prf::Sha512 => pbkdf2_hmac::<sha2::Sha512>(password, salt, rounds, out),
        }
        ct_eq(&candidate, &self.digest)
    }

    /// See `cost_class`: the digest, the iterations and the key length
    /// (each block of the key repeats every iteration).
    pub(crate) fn class(&self) -> String {
        let prf = match self.prf {
            Prf::Sha1 => "sha1",
            Prf::Sha224 => "sha224",
            Prf::Sha256 => "sha256",
            Prf::Sha384 => "sha384",
            Prf::Sha512 => "sha512",
        };
        format!("pbkdf2-{prf}:i={},l={}", self.iterations, self.digest.len())
    }

    pub(crate) fn check_import_limits(&self) -> Result<(), HashError> {
        check_limit(self.iterations.into(), MAX_PBKDF2_ITERATIONS.into(), "pbkdf2 iterations")?;
        check_limit(self.digest.len() as u64, MAX_PBKDF2_KEY_LEN as u64, "pbkdf2 key length (bytes)")
    }
}

/// A parsed Kratos-style scrypt hash.
pub(crate) struct ScryptHash {
    n: u32,
    params: scrypt::Params,
    salt: Vec<u8>,
    digest: Vec<u8>,
}

impl ScryptHash {
    pub(crate) fn parse(encoded: &str) -> Result<Self, HashError> {
        let rest = encoded.strip_prefix(SCRYPT_PREFIX).ok_or(HashError::UnknownFormat)?;
        let (params, salt, digest) = split_fields(rest, "scrypt")?;
        let [n, r, p] = parse_params(params, ["ln", "r", "p"], "scrypt")?;
        if n < 2 || !n.is_power_of_two() {
            return Err(HashError::Malformed("scrypt N (`ln`) must be a power of two greater than 1".into()));
        }
        // `scrypt::Params::new` checks `r * p` in u32 arithmetic, which
        // overflows on large values (a panic with overflow checks, a wrapped,
        // wrongly accepted product without); scrypt requires r·p < 2^30.
        if u64::from(r) * u64::from(p) >= 1 << 30 {
            return Err(HashError::Malformed("invalid scrypt parameters".into()));
        }
        let log_n = n.trailing_zeros() as u8;
        // The raw `scrypt()` call derives as many bytes as the output buffer
        // holds, so no output length goes into the parameters.
        let params = scrypt::Params::new(log_n, r, p)
            .map_err(|_| HashError::Malformed("invalid scrypt parameters".into()))?;
        Ok(Self { n, params, salt, digest })
    }

    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, HashError> {
        let mut candidate = vec![0; self.digest.len()];
        scrypt::scrypt(password, &self.salt, &self.params, &mut candidate).map_err(InternalError::Scrypt)?;
        Ok(ct_eq(&candidate, &self.digest))
    }

    /// See `cost_class`: N, r and p.
    pub(crate) fn class(&self) -> String {
        format!("scrypt:n={},r={},p={}", self.n, self.params.r(), self.params.p())
    }

    pub(crate) fn check_import_limits(&self) -> Result<(), HashError> {
        check_limit(self.n.into(), MAX_SCRYPT_N.into(), "scrypt N")?;
        check_limit(self.params.r().into(), MAX_SCRYPT_R.into(), "scrypt r")?;
        check_limit(self.params.p().into(), MAX_SCRYPT_P.into(), "scrypt p")
    }
}
