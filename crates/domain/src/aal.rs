//! Authenticator assurance levels (AAL): the most an identity can reach with
//! the credentials it has, and whether a session is good enough for an
//! endpoint that requires `aal1` or the identity's highest available level
//! (`session.whoami.required_aal`, `selfservice.flows.settings.required_aal`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flow::login_second_factor::AAL2;
use crate::identity::{CredentialType, Identity, Via};
use crate::second_factor::{lookup, totp};
use crate::session::Session;

/// The highest level an identity can sign in at. Kratos also knows `aal0`
/// (no first factor either); it asks for nothing more than `aal1` does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Aal {
    #[default]
    Aal1,
    Aal2,
}

impl Aal {
    pub fn as_str(self) -> &'static str {
        match self {
            Aal::Aal1 => "aal1",
            Aal::Aal2 => "aal2",
        }
    }
}

impl fmt::Display for Aal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Aal {
    type Err = crate::UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aal1" => Ok(Aal::Aal1),
            "aal2" => Ok(Aal::Aal2),
            other => Err(crate::UnknownValue::new("authenticator assurance level", other)),
        }
    }
}

/// What an endpoint asks of a session; Kratos's default is `highest_available`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequiredAal {
    /// A session at the highest level the identity's credentials allow.
    #[default]
    HighestAvailable,
    /// Any session.
    Aal1,
}

/// The identity's available AAL from its credentials, each given as its
/// type and config: `aal2` as soon as one of them is a usable second factor
/// (a linked TOTP app, a set of backup codes, used up or not, as Kratos
/// counts them), whether or not there is a first factor. The stores apply it
/// whenever they write credentials and keep the result on the identity row,
/// so whoami knows it without reading credentials.
pub fn available_aal<'a>(credentials: impl IntoIterator<Item = (CredentialType, &'a Value)>) -> Aal {
    let second_factor = credentials.into_iter().any(|(kind, config)| match kind {
        CredentialType::Totp => totp::is_linked(config),
        CredentialType::LookupSecret => lookup::has_codes(config),
        // Code MFA follows the configuration, not the row: `AalPolicy::reachable`
        // counts it when a session is checked.
        CredentialType::Password
        | CredentialType::Oidc
        | CredentialType::Webauthn
        | CredentialType::Passkey
        | CredentialType::Code
        | CredentialType::Saml => false,
    });
    if second_factor { Aal::Aal2 } else { Aal::Aal1 }
}

/// What an endpoint asks of a session, and what counts toward the level an
/// identity can reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AalPolicy {
    pub required: RequiredAal,
    /// `selfservice.methods.code.mfa_enabled`: a code emailed to one of the
    /// identity's addresses is a second factor (Kratos counts the code
    /// method's addresses then, so `highest_available` asks everyone with
    /// one for it).
    pub code_mfa: bool,
}

impl AalPolicy {
    /// Whether `session` of `identity` is enough (Kratos's
    /// `DoesSessionSatisfy`): an `aal2` session always is; an `aal1` one is
    /// unless the identity could reach `aal2` and the highest is required.
    pub fn satisfied_by(&self, session: &Session, identity: &Identity) -> bool {
        session.aal == AAL2 || self.required == RequiredAal::Aal1 || self.reachable(identity) < Aal::Aal2
    }

    /// The highest level `identity` can reach: its stored second factors,
    /// or with code MFA an email address the step-up can mail a code to
    /// (the addresses the step-up offers, so whoever is asked can answer).
    pub fn reachable(&self, identity: &Identity) -> Aal {
        let mailable = || identity.verifiable_addresses.iter().any(|a| a.via == Via::Email);
        if identity.available_aal == Aal::Aal2 || (self.code_mfa && mailable()) {
            Aal::Aal2
        } else {
            Aal::Aal1
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn second_factors_make_an_identity_aal2() {
        let password = json!({ "hashed_password": "$2a$..." });
        let totp = json!({ "sealed_totp_url": "v1.sealed" });
        let codes = json!({ "set": "x", "sealed_recovery_codes": "v1.sealed" });
        assert_eq!(available_aal([]), Aal::Aal1);
        assert_eq!(available_aal([(CredentialType::Password, &password)]), Aal::Aal1);
        assert_eq!(
            available_aal([(CredentialType::Password, &password), (CredentialType::Totp, &totp)]),
            Aal::Aal2
        );
        assert_eq!(available_aal([(CredentialType::LookupSecret, &codes)]), Aal::Aal2);
        // A credential row without its secret is no second factor.
        assert_eq!(available_aal([(CredentialType::Totp, &json!({}))]), Aal::Aal1);
        assert_eq!(
            available_aal([(CredentialType::LookupSecret, &json!({ "sealed_recovery_codes": "" }))]),
            Aal::Aal1
        );
    }

    #[test]
    fn levels_read_and_print_as_on_the_wire() {
        assert_eq!("aal2".parse::<Aal>().unwrap(), Aal::Aal2);
        assert_eq!(Aal::Aal1.to_string(), "aal1");
        assert!("aal3".parse::<Aal>().is_err());
    }
}
