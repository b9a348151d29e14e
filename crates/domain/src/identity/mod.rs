//! Identities: who a person is (traits shaped by an identity schema), how
//! they sign in (credentials) and where they can be reached (addresses).

mod manager;
mod model;
mod patch;

pub use manager::{
    AddressClaim, IdentityError, IdentityManager, IdentityUpdate, NewIdentity, Notify, PasswordInput,
};
pub use model::{
    AddressStatus, Credential, CredentialType, Identity, IdentityState, RecoveryAddress, VerifiableAddress,
    Via,
};
pub use patch::PatchError;
