//! argon2id and argon2i in PHC string form:
//! `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<digest>`.
//!
//! We write only argon2id v=19 (what Kratos writes). On input we also take
//! argon2i, version 16, and strings without `v=`, which the reference
//! implementation reads as version 16 (0x10). Salt and digest may have any
//! length the algorithm permits; the digest length sets the output length.

use ::argon2::{Algorithm, Argon2, Params, Version};

use crate::{
    HashError, InternalError, check_limit, ct_eq, decode_b64, encode_b64, parse_params, random_bytes,
};

const PREFIX_ID: &str = "$argon2id$";
const PREFIX_I: &str = "$argon2i$";

/// RFC 9106 requires at least 8 bytes of salt; the argon2 crate enforces it
/// at hashing time, so reject earlier with a clearer message.
const MIN_SALT_LEN: usize = 8;

/// Import limits (see `validate_imported_hash`).
const MAX_MEMORY_KIB: u32 = 1 << 20;
const MAX_ITERATIONS: u32 = 10;
const MAX_PARALLELISM: u32 = 16;

pub(crate) fn recognises(encoded: &str) -> bool {
    encoded.starts_with(PREFIX_ID) || encoded.starts_with(PREFIX_I)
}

/// Makes a new argon2id v=19 hash. Parameter errors are the operator's
/// configuration, hence `Internal`.
pub(crate) fn hash(
    password: &[u8],
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
    salt_length: u32,
    key_length: u32,
) -> Result<String, HashError> {
    let params = Params::new(memory_kib, iterations, parallelism, Some(key_length as usize))
        .map_err(InternalError::Argon2Config)?;
    if (salt_length as usize) < MIN_SALT_LEN {
        return Err(InternalError::Argon2SaltTooShort { min: MIN_SALT_LEN }.into());
    }
    let salt = random_bytes(salt_length as usize)?;
    let mut digest = vec![0; key_length as usize];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password, &salt, &mut digest)
        .map_err(InternalError::Argon2)?;
    Ok(format!(
        "$argon2id$v=19$m={memory_kib},t={iterations},p={parallelism}${}${}",
        encode_b64(&salt),
        encode_b64(&digest)
    ))
}

/// A parsed argon2 PHC string, ready to verify against.
pub(crate) struct Argon2Hash {
    algorithm: Algorithm,
    version: Version,
    params: Params,
    salt: Vec<u8>,
    digest: Vec<u8>,
}

impl Argon2Hash {
    pub(crate) fn parse(encoded: &str) -> Result<Self, HashError> {
        let (algorithm, rest) = if let Some(rest) = encoded.strip_prefix(PREFIX_ID) {
            (Algorithm::Argon2id, rest)
        } else if let Some(rest) = encoded.strip_prefix(PREFIX_I) {
            (Algorithm::Argon2i, rest)
        } else {
            return Err(HashError::UnknownFormat);
        };

        let fields: Vec<&str> = rest.split('$').collect();
        let (version, params, salt, digest) = match fields.as_slice() {
            [v, params, salt, digest] if v.starts_with("v=") => (parse_version(v)?, *params, *salt, *digest),
            [params, salt, digest] => (Version::V0x10, *params, *salt, *digest),
            _ => {
                return Err(HashError::Malformed(
                    "argon2 hash must be $<variant>$v=<version>$<params>$<salt>$<digest>".into(),
                ));
            }
        };

        let [m, t, p] = parse_params(params, ["m", "t", "p"], "argon2")?;
        let salt = decode_b64(salt, "argon2 salt")?;
        let digest = decode_b64(digest, "argon2 digest")?;
        if salt.len() < MIN_SALT_LEN {
            return Err(HashError::Malformed(format!("argon2 salt is shorter than {MIN_SALT_LEN} bytes")));
        }
        let params = Params::new(m, t, p, Some(digest.len()))
            .map_err(|e| HashError::Malformed(format!("invalid argon2 parameters: {e}")))?;

        Ok(Self { algorithm, version, params, salt, digest })
    }

    pub(crate) fn verify(&self, password: &[u8]) -> Result<bool, HashError> {
        let mut candidate = vec![0; self.digest.len()];
        Argon2::new(self.algorithm, self.version, self.params.clone())
            .hash_password_into(password, &self.salt, &mut candidate)
            .map_err(InternalError::Argon2)?;
        Ok(ct_eq(&candidate, &self.digest))
    }

    /// See `cost_class`: the variant, version, memory, passes and lanes.
    pub(crate) fn class(&self) -> String {
        let (variant, version, p) = (self.algorithm.as_str(), self.version as u32, &self.params);
        format!("{variant}:v={version},m={},t={},p={}", p.m_cost(), p.t_cost(), p.p_cost())
    }

    pub(crate) fn check_import_limits(&self) -> Result<(), HashError> {
        check_limit(self.params.m_cost().into(), MAX_MEMORY_KIB.into(), "argon2 memory (KiB)")?;
        check_limit(self.params.t_cost().into(), MAX_ITERATIONS.into(), "argon2 iterations")?;
        check_limit(self.params.p_cost().into(), MAX_PARALLELISM.into(), "argon2 parallelism")
    }

    /// True when `hash` would produce this with these settings, whatever
    /// its lanes: parallelism follows the host's CPU count by default, so
    /// comparing it would rewrite every hash whenever the server moved to a
    /// machine of another size, for no gain in strength (the memory and
    /// passes, which set the cost, are compared).
    pub(crate) fn matches(
        &self,
        memory_kib: u32,
        iterations: u32,
        salt_length: u32,
        key_length: u32,
    ) -> bool {
        self.algorithm == Algorithm::Argon2id
            && self.version == Version::V0x13
            && self.params.m_cost() == memory_kib
            && self.params.t_cost() == iterations
            && self.salt.len() == salt_length as usize
            && self.digest.len() == key_length as usize
    }
}

fn parse_version(field: &str) -> Result<Version, HashError> {
    match field {
        "v=19" => Ok(Version::V0x13),
        "v=16" => Ok(Version::V0x10),
        _ => Err(HashError::Malformed("unsupported argon2 version (expected v=19 or v=16)".into())),
    }
}
