//! The identity aggregate as it is stored and served.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::aal::Aal;

/// Whether an identity may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IdentityState {
    #[default]
    Active,
    Inactive,
}

impl IdentityState {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentityState::Active => "active",
            IdentityState::Inactive => "inactive",
        }
    }
}

impl FromStr for IdentityState {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(Self::Active),
            "inactive" => Ok(Self::Inactive),
            other => Err(crate::UnknownValue::new("identity state", other)),
        }
    }
}

/// The channel an address is reached through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    #[default]
    Email,
    Sms,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Email => "email",
            Via::Sms => "sms",
        }
    }
}

impl FromStr for Via {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Self::Email),
            "sms" => Ok(Self::Sms),
            other => Err(crate::UnknownValue::new("address channel", other)),
        }
    }
}

/// Where an address is in its verification lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AddressStatus {
    #[default]
    Pending,
    Sent,
    Completed,
}

impl AddressStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AddressStatus::Pending => "pending",
            AddressStatus::Sent => "sent",
            AddressStatus::Completed => "completed",
        }
    }
}

impl FromStr for AddressStatus {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "sent" => Ok(Self::Sent),
            "completed" => Ok(Self::Completed),
            other => Err(crate::UnknownValue::new("address status", other)),
        }
    }
}

/// An address that can prove it belongs to the identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifiableAddress {
    pub id: Uuid,
    pub value: String,
    pub verified: bool,
    pub via: Via,
    pub status: AddressStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An address account-recovery messages may be sent to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryAddress {
    pub id: Uuid,
    pub value: String,
    pub via: Via,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Kinds of credential, named as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialType {
    Password,
    Oidc,
    Totp,
    LookupSecret,
    Webauthn,
    Passkey,
    Code,
    Saml,
}

impl CredentialType {
    pub const ALL: [CredentialType; 8] = [
        Self::Password,
        Self::Oidc,
        Self::Totp,
        Self::LookupSecret,
        Self::Webauthn,
        Self::Passkey,
        Self::Code,
        Self::Saml,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Oidc => "oidc",
            Self::Totp => "totp",
            Self::LookupSecret => "lookup_secret",
            Self::Webauthn => "webauthn",
            Self::Passkey => "passkey",
            Self::Code => "code",
            Self::Saml => "saml",
        }
    }
}

impl fmt::Display for CredentialType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CredentialType {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| crate::UnknownValue::new("credential type", s))
    }
}

/// One way of signing in. `config` is method-specific (for passwords:
/// `{"hashed_password": "..."}`) and is never shown unless asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: CredentialType,
    pub identifiers: Vec<String>,
    pub config: Value,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Credential {
    /// The stored password hash, for password credentials.
    pub fn hashed_password(&self) -> Option<&str> {
        self.config.get("hashed_password").and_then(Value::as_str)
    }
}

/// The identity aggregate: the unit storage reads and writes atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub id: Uuid,
    pub schema_id: String,
    pub state: IdentityState,
    pub state_changed_at: Option<DateTime<Utc>>,
    pub traits: Value,
    pub metadata_public: Option<Value>,
    pub metadata_admin: Option<Value>,
    pub external_id: Option<String>,
    pub credentials: BTreeMap<CredentialType, Credential>,
    pub verifiable_addresses: Vec<VerifiableAddress>,
    pub recovery_addresses: Vec<RecoveryAddress>,
    /// The highest AAL its credentials allow, as stored (Kratos's
    /// `available_aal` column, never on the wire): the stores derive it with
    /// `aal::available_aal` whenever they write credentials, so it is read,
    /// never set; a new identity starts at `aal1`.
    pub available_aal: Aal,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Identity {
    pub fn credential(&self, kind: CredentialType) -> Option<&Credential> {
        self.credentials.get(&kind)
    }
}
