//! Where a flow stands: one enum per flow kind, each step carrying the data
//! only that step needs. This is the one place that knows the state names
//! the wire shows (`choose_method`, `sent_email`, ...) and how a state and
//! its data are stored: as the `kind`, `state` and `internal` fields of the
//! flow's JSON, the layout rows written before these types existed use too.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Value, json};

use super::FlowKind;
use super::login::LoginState;
use super::recovery::RecoveryState;
use super::registration::RegistrationState;
use super::settings::{PendingFactors, SettingsState};
use super::verification::VerificationState;

#[derive(Debug, Clone, PartialEq)]
pub enum FlowState {
    Login(LoginState),
    Registration(RegistrationState),
    Settings(SettingsState),
    Recovery(RecoveryState),
    Verification(VerificationState),
}

impl FlowState {
    pub fn kind(&self) -> FlowKind {
        match self {
            FlowState::Login(_) => FlowKind::Login,
            FlowState::Registration(_) => FlowKind::Registration,
            FlowState::Settings(_) => FlowKind::Settings,
            FlowState::Recovery(_) => FlowKind::Recovery,
            FlowState::Verification(_) => FlowKind::Verification,
        }
    }

    /// The state's name on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            FlowState::Login(LoginState::ChooseMethod)
            | FlowState::Registration(RegistrationState::ChooseMethod { .. })
            | FlowState::Recovery(RecoveryState::ChooseMethod)
            | FlowState::Verification(VerificationState::ChooseMethod) => "choose_method",
            FlowState::Registration(RegistrationState::SentEmail { .. })
            | FlowState::Login(LoginState::SentEmail { .. })
            | FlowState::Recovery(RecoveryState::SentEmail { .. })
            | FlowState::Verification(VerificationState::SentEmail { .. }) => "sent_email",
            FlowState::Login(LoginState::PassedChallenge)
            | FlowState::Registration(RegistrationState::PassedChallenge)
            | FlowState::Recovery(RecoveryState::PassedChallenge { .. })
            | FlowState::Verification(VerificationState::PassedChallenge) => "passed_challenge",
            FlowState::Settings(SettingsState::ShowForm(_)) => "show_form",
            FlowState::Settings(SettingsState::Success(_)) => "success",
        }
    }

    /// Where a code flow sent its code, once it has.
    pub fn code_address(&self) -> Option<&str> {
        match self {
            FlowState::Registration(RegistrationState::SentEmail { address, .. })
            | FlowState::Login(LoginState::SentEmail { address })
            | FlowState::Recovery(RecoveryState::SentEmail { address, .. })
            | FlowState::Verification(VerificationState::SentEmail { address }) => Some(address),
            _ => None,
        }
    }

    /// The per-step data the wire never shows, as stored.
    fn internal(&self) -> Value {
        match self {
            FlowState::Registration(RegistrationState::ChooseMethod { traits: Some(traits) }) => {
                json!({ "traits": traits })
            }
            FlowState::Registration(RegistrationState::SentEmail { traits, address }) => {
                json!({ "traits": traits, "address": address })
            }
            FlowState::Recovery(RecoveryState::SentEmail { address, admin_issued: true }) => {
                json!({ "address": address, "admin": true })
            }
            FlowState::Recovery(RecoveryState::PassedChallenge { admin_issued: true }) => {
                json!({ "admin": true })
            }
            FlowState::Login(LoginState::SentEmail { address })
            | FlowState::Recovery(RecoveryState::SentEmail { address, admin_issued: false })
            | FlowState::Verification(VerificationState::SentEmail { address }) => {
                json!({ "address": address })
            }
            FlowState::Settings(state) => {
                let pending = state.pending();
                let mut stored = serde_json::Map::new();
                for (key, value) in [
                    ("totp_key", &pending.totp_key),
                    ("lookup_codes", &pending.lookup_codes),
                    ("lookup_shown", &pending.lookup_shown),
                ] {
                    if let Some(value) = value {
                        stored.insert(key.into(), Value::String(value.clone()));
                    }
                }
                if stored.is_empty() { Value::Null } else { Value::Object(stored) }
            }
            _ => Value::Null,
        }
    }

    fn from_stored(stored: Stored) -> Result<Self, UnknownState> {
        let Stored { kind, state, internal } = stored;
        let address = || internal.get("address").and_then(Value::as_str).unwrap_or_default().to_string();
        let admin_issued = internal.get("admin").and_then(Value::as_bool) == Some(true);
        let typed = match (kind, state.as_str()) {
            (FlowKind::Login, "choose_method") => FlowState::Login(LoginState::ChooseMethod),
            (FlowKind::Login, "sent_email") => FlowState::Login(LoginState::SentEmail { address: address() }),
            (FlowKind::Login, "passed_challenge") => FlowState::Login(LoginState::PassedChallenge),
            (FlowKind::Registration, "choose_method") => {
                let traits = internal.get("traits").cloned();
                FlowState::Registration(RegistrationState::ChooseMethod { traits })
            }
            (FlowKind::Registration, "sent_email") => FlowState::Registration(RegistrationState::SentEmail {
                traits: internal.get("traits").cloned().unwrap_or(Value::Null),
                address: address(),
            }),
            (FlowKind::Registration, "passed_challenge") => {
                FlowState::Registration(RegistrationState::PassedChallenge)
            }
            (FlowKind::Settings, "show_form") => {
                FlowState::Settings(SettingsState::ShowForm(pending(&internal)))
            }
            (FlowKind::Settings, "success") => {
                FlowState::Settings(SettingsState::Success(pending(&internal)))
            }
            (FlowKind::Recovery, "choose_method") => FlowState::Recovery(RecoveryState::ChooseMethod),
            (FlowKind::Recovery, "sent_email") => {
                FlowState::Recovery(RecoveryState::SentEmail { address: address(), admin_issued })
            }
            (FlowKind::Recovery, "passed_challenge") => {
                FlowState::Recovery(RecoveryState::PassedChallenge { admin_issued })
            }
            (FlowKind::Verification, "choose_method") => {
                FlowState::Verification(VerificationState::ChooseMethod)
            }
            (FlowKind::Verification, "sent_email") => {
                FlowState::Verification(VerificationState::SentEmail { address: address() })
            }
            (FlowKind::Verification, "passed_challenge") => {
                FlowState::Verification(VerificationState::PassedChallenge)
            }
            (kind, _) => return Err(UnknownState { kind, state }),
        };
        Ok(typed)
    }
}

/// A settings form's sealed second-factor secrets, as stored.
fn pending(internal: &Value) -> PendingFactors {
    let text = |key: &str| internal.get(key).and_then(Value::as_str).map(str::to_string);
    PendingFactors {
        totp_key: text("totp_key"),
        lookup_codes: text("lookup_codes"),
        lookup_shown: text("lookup_shown"),
    }
}

/// A stored state name its flow kind does not have.
#[derive(Debug, thiserror::Error)]
#[error("a {} flow has no state {state:?}", kind.as_str())]
pub struct UnknownState {
    kind: FlowKind,
    state: String,
}

/// The stored layout, flattened into the flow's JSON.
#[derive(Serialize, Deserialize)]
struct Stored {
    kind: FlowKind,
    state: String,
    #[serde(default)]
    internal: Value,
}

impl Serialize for FlowState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let stored = Stored { kind: self.kind(), state: self.as_str().into(), internal: self.internal() };
        stored.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FlowState {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        FlowState::from_stored(Stored::deserialize(deserializer)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(state: FlowState) {
        let stored = serde_json::to_value(&state).unwrap();
        let back: FlowState = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(back, state, "{stored}");
        assert_eq!(stored["state"], state.as_str());
    }

    #[test]
    fn every_state_survives_the_store() {
        round_trip(FlowState::Login(LoginState::ChooseMethod));
        round_trip(FlowState::Login(LoginState::SentEmail { address: "a@example.com".into() }));
        round_trip(FlowState::Login(LoginState::PassedChallenge));
        round_trip(FlowState::Registration(RegistrationState::ChooseMethod { traits: None }));
        round_trip(FlowState::Registration(RegistrationState::ChooseMethod {
            traits: Some(json!({ "email": "a@example.com" })),
        }));
        round_trip(FlowState::Registration(RegistrationState::SentEmail {
            traits: json!({ "email": "a@example.com", "name": { "first": "Ada" } }),
            address: "a@example.com".into(),
        }));
        round_trip(FlowState::Registration(RegistrationState::PassedChallenge));
        round_trip(FlowState::Settings(SettingsState::ShowForm(PendingFactors::default())));
        round_trip(FlowState::Settings(SettingsState::Success(PendingFactors::default())));
        round_trip(FlowState::Settings(SettingsState::ShowForm(PendingFactors {
            totp_key: Some("xc20p1.a".into()),
            lookup_codes: Some("xc20p1.b".into()),
            lookup_shown: Some("xc20p1.c".into()),
        })));
        round_trip(FlowState::Settings(SettingsState::Success(PendingFactors {
            totp_key: Some("xc20p1.a".into()),
            ..Default::default()
        })));
        round_trip(FlowState::Recovery(RecoveryState::ChooseMethod));
        round_trip(FlowState::Recovery(RecoveryState::SentEmail {
            address: "a@example.com".into(),
            admin_issued: true,
        }));
        round_trip(FlowState::Recovery(RecoveryState::SentEmail {
            address: "a@example.com".into(),
            admin_issued: false,
        }));
        round_trip(FlowState::Recovery(RecoveryState::PassedChallenge { admin_issued: true }));
        round_trip(FlowState::Recovery(RecoveryState::PassedChallenge { admin_issued: false }));
        round_trip(FlowState::Verification(VerificationState::ChooseMethod));
        round_trip(FlowState::Verification(VerificationState::SentEmail { address: "a@example.com".into() }));
        round_trip(FlowState::Verification(VerificationState::PassedChallenge));
    }

    #[test]
    fn rows_written_before_the_types_read_back() {
        let stored = json!({ "kind": "recovery", "state": "sent_email",
            "internal": { "address": "a@example.com", "admin": true } });
        let state: FlowState = serde_json::from_value(stored).unwrap();
        assert_eq!(
            state,
            FlowState::Recovery(RecoveryState::SentEmail {
                address: "a@example.com".into(),
                admin_issued: true
            })
        );
        assert_eq!(state.code_address(), Some("a@example.com"));
        // `internal` was absent on older rows of flows without data.
        let state: FlowState =
            serde_json::from_value(json!({ "kind": "login", "state": "choose_method" })).unwrap();
        assert_eq!(state, FlowState::Login(LoginState::ChooseMethod));
    }

    #[test]
    fn a_sign_up_code_flow_keeps_its_traits_and_address() {
        let state = FlowState::Registration(RegistrationState::SentEmail {
            traits: json!({ "email": "a@example.com" }),
            address: "a@example.com".into(),
        });
        let stored = serde_json::to_value(&state).unwrap();
        assert_eq!(stored["state"], "sent_email");
        assert_eq!(stored["internal"]["traits"]["email"], "a@example.com");
        assert_eq!(state.code_address(), Some("a@example.com"));
    }

    #[test]
    fn a_state_another_kind_owns_is_refused() {
        let wrong = json!({ "kind": "login", "state": "show_form", "internal": null });
        let error = serde_json::from_value::<FlowState>(wrong).unwrap_err();
        assert!(error.to_string().contains("login flow has no state \"show_form\""), "{error}");
    }

    #[test]
    fn a_login_code_flow_keeps_its_address() {
        let stored =
            json!({ "kind": "login", "state": "sent_email", "internal": { "address": "a@example.com" } });
        let state: FlowState = serde_json::from_value(stored).unwrap();
        assert_eq!(state, FlowState::Login(LoginState::SentEmail { address: "a@example.com".into() }));
        assert_eq!(state.code_address(), Some("a@example.com"));
    }
}
