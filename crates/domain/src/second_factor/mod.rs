//! Second factors: TOTP apps (`totp`) and backup recovery codes
//! (`lookup_secret`). Each method module sets its credential up (the
//! settings flow calls it) and verifies a code, spending it, for a login
//! that steps up to AAL2. Their secrets are sealed at rest (`cipher`).

pub mod cipher;
pub mod lookup;
pub mod qr;
pub mod totp;

use crate::store::StoreError;

pub use cipher::SecretCipher;
pub use lookup::LookupSecrets;
pub use totp::Totp;

/// The second-factor methods switched on (`selfservice.methods.totp`,
/// `selfservice.methods.lookup_secret`); a method that is off is `None`.
#[derive(Clone, Default)]
pub struct SecondFactors {
    pub totp: Option<Totp>,
    pub lookup: Option<LookupSecrets>,
}

impl SecondFactors {
    pub fn any(&self) -> bool {
        self.totp.is_some() || self.lookup.is_some()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecondFactorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sealed(#[from] cipher::OpenError),
    /// A stored credential or flow is not what this code writes.
    #[error("{0}")]
    Corrupt(&'static str),
}
