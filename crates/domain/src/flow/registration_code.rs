//! Sign-up by emailed code (Kratos's `code` method with
//! `passwordless_enabled`): the traits are checked and a code goes to the
//! address they mark as a code identifier; the identity is made, with that
//! address verified, only when the code comes back. As in Kratos, whether
//! the address is taken is found out then, when the identity is written:
//! the code mail goes to whoever typed the address, so it tells nobody else
//! anything, and a taken address answers 4000007 to the mailbox's owner.
//!
//! The mail goes out on the request path, unlike recovery's: the address is
//! the one being signed up, and nothing about an account decides what is
//! sent. Attempts per flow and wrong codes per address count as for every
//! code (`code.rs`); the per-address send cap applies (past it no code is
//! made and the answer is the same).

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::code::{self, CodeCheck, CodeSettings};
use super::registration::{
    RegistrationOutcome, RegistrationService, RegistrationState, given_or_saved, hidden_traits,
};
use super::{Flow, FlowError, FlowState, place_trait_error, show_traits};
use crate::courier::Renderer;
use crate::identity::{AddressClaim, AddressStatus, IdentityError, NewIdentity, Via};
use crate::send_limits::SendLimits;
use crate::session::Device;
use crate::store::CodePurpose;
use crate::text;
use crate::ui::{Group, Node};

/// The `code` method's wiring (`selfservice.methods.code` with
/// `passwordless_enabled`).
#[derive(Clone)]
pub struct RegistrationCodes {
    pub codes: Arc<CodeSettings>,
    pub renderer: Arc<dyn Renderer>,
    pub limits: SendLimits,
    /// The `session` hook after `code` registrations.
    pub issue_session: bool,
}

/// A code submitted to a flow in `sent_email`: the traits and code sent,
/// and the traits and address the code went out for.
struct CodeAttempt {
    given: Value,
    saved: Value,
    address: String,
    code: String,
}

/// What a refused attempt is told; the flow keeps its code form.
const TOO_OFTEN: &str = "The request was submitted too often. Please request another code.";
const ALREADY_USED: &str = "The code was already used. Please request another code.";

impl RegistrationService {
    pub(super) async fn submit_code(
        &self,
        codes: &RegistrationCodes,
        mut flow: Flow,
        traits: Value,
        code: String,
        resend: bool,
        device: Device,
    ) -> Result<RegistrationOutcome, FlowError> {
        flow.active = Some("code".into());
        match flow.state.clone() {
            FlowState::Registration(RegistrationState::SentEmail { traits: saved, address }) if !resend => {
                let attempt = CodeAttempt { given: traits, saved, address, code };
                self.check_code(codes, flow, attempt, device).await
            }
            FlowState::Registration(RegistrationState::PassedChallenge) => {
                flow.ui.messages.push(text::no_registration_method());
                self.save(flow, RegistrationOutcome::Rejected).await
            }
            _ => self.send_code(codes, flow, traits).await,
        }
    }

    /// Checks the traits and mails a code to their code address.
    async fn send_code(
        &self,
        codes: &RegistrationCodes,
        mut flow: Flow,
        traits: Value,
    ) -> Result<RegistrationOutcome, FlowError> {
        let traits = given_or_saved(traits, &flow.state);
        if traits.is_null() {
            flow.ui.messages.push(text::required("traits"));
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        show_traits(&mut flow.ui, &traits);
        let schema_id = self.identities.schemas().default_id().to_string();
        let facts = match self.identities.schemas().validate_traits(&schema_id, &traits) {
            Ok(facts) => facts,
            Err(e) => {
                place_trait_error(&mut flow.ui, &e);
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
        };
        // Latchkey mails codes only; a schema's SMS identifiers send none.
        let Some(address) = facts.code_identifiers.iter().find(|a| a.via == Via::Email) else {
            flow.ui.messages.push(text::missing_identifier());
            return self.save(flow, RegistrationOutcome::Rejected).await;
        };
        let address = address.value.clone();
        let at = self.clock.now();
        // Past the address's cap no code is made; the earlier one still works.
        if codes.limits.admit_code_mail(CodePurpose::Registration, &address).await? {
            let (code, stored) =
                codes.codes.issue(flow.id, CodePurpose::Registration, None, &address, None, at);
            let mut data = Map::new();
            data.insert("To".into(), json!(address));
            data.insert("RegistrationCode".into(), json!(code));
            data.insert("ExpiresInMinutes".into(), json!(codes.codes.lifespan.num_minutes()));
            data.insert("Traits".into(), traits.clone());
            data.insert("RequestURL".into(), json!(flow.request_url));
            data.insert("TransientPayload".into(), flow.transient_payload.clone().unwrap_or(json!({})));
            let message =
                code::render(codes.renderer.as_ref(), &address, "registration_code_valid", &data, at)?;
            // Storing it retires the flow's earlier codes (a resend).
            self.store.create_code(&stored, Some(&message)).await?;
        }
        self.code_screen(&mut flow, &traits);
        flow.ui.messages.push(text::registration_code_sent());
        flow.state = FlowState::Registration(RegistrationState::SentEmail { traits, address });
        self.save(flow, RegistrationOutcome::NextScreen).await
    }

    /// The form once a code is out: the accepted traits hidden, the code,
    /// a resend button and, in two steps, the way back to the methods.
    fn code_screen(&self, flow: &mut Flow, traits: &Value) {
        flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
        hidden_traits(flow, traits);
        code::push_code_entry(flow, text::label_registration_code());
        if self.settings.two_step {
            let mut back = Node::submit(Group::Profile, "profile", text::label_back());
            back.attributes["name"] = json!("screen");
            back.attributes["value"] = json!("credential-selection");
            flow.ui.nodes.push(back);
        }
    }

    /// Judges the code; a right one makes the identity with its address
    /// verified and runs the after-registration hooks.
    async fn check_code(
        &self,
        codes: &RegistrationCodes,
        mut flow: Flow,
        attempt: CodeAttempt,
        device: Device,
    ) -> Result<RegistrationOutcome, FlowError> {
        let CodeAttempt { given, saved, address, code } = attempt;
        if code.is_empty() {
            flow.ui.add_message(Some("code"), text::required("code"));
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        // As Kratos: traits sent with the code must be the ones the code went out for.
        if !same_traits(&given, &saved) {
            flow.ui.messages.push(text::traits_mismatch());
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        let now = self.clock.now();
        let checked =
            codes.codes.check(self.store.as_ref(), CodePurpose::Registration, &flow, &code, now).await?;
        let message = match checked {
            CodeCheck::Right(_) => None,
            CodeCheck::Wrong => Some(text::registration_code_invalid()),
            CodeCheck::TooManyAttempts => Some(text::validation_generic(TOO_OFTEN)),
            CodeCheck::AlreadyUsed => Some(text::validation_generic(ALREADY_USED)),
        };
        if let Some(message) = message {
            flow.ui.messages.push(message);
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        let new = NewIdentity {
            schema_id: Some(self.identities.schemas().default_id().to_string()),
            traits: saved.clone(),
            verifiable_addresses: vec![AddressClaim {
                via: Via::Email,
                value: address,
                verified: true,
                status: Some(AddressStatus::Completed),
                verified_at: Some(now),
            }],
            ..Default::default()
        };
        // The identity is written whole or not at all: a refusal leaves nothing.
        let refusal = match self.identities.create(new).await {
            Ok(identity) => {
                return self.registered(flow, identity, "code", codes.issue_session, device).await;
            }
            Err(IdentityError::Conflict) => text::duplicate_credentials(),
            Err(IdentityError::InvalidInput(reason)) => text::validation_generic(&reason),
            Err(IdentityError::Schema(e)) => {
                self.start_over(&mut flow, &saved);
                place_trait_error(&mut flow.ui, &e);
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
            Err(e) => return Err(FlowError::internal(e)),
        };
        // The code is spent; the traits go back on the first screen to change.
        self.start_over(&mut flow, &saved);
        flow.ui.messages.push(refusal);
        self.save(flow, RegistrationOutcome::Rejected).await
    }

    /// Back to the first screen, showing `traits`.
    fn start_over(&self, flow: &mut Flow, traits: &Value) {
        self.first_screen(flow);
        show_traits(&mut flow.ui, traits);
        flow.state = FlowState::Registration(RegistrationState::ChooseMethod { traits: None });
    }
}

/// Whether every trait `given` sends has the value in `saved` (`given`
/// may leave traits out: native apps need not send them again).
fn same_traits(given: &Value, saved: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut given_values = Vec::new();
    crate::ui::flatten("traits", given, &mut given_values);
    let mut saved_values = Vec::new();
    crate::ui::flatten("traits", saved, &mut saved_values);
    given_values.iter().filter(|(name, _)| name != "traits").all(|(name, value)| {
        let kept = saved_values.iter().find(|(n, _)| n == name).map(|(_, v)| text(v)).unwrap_or_default();
        text(value) == kept
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traits_sent_with_the_code_must_match_the_accepted_ones() {
        let saved = json!({ "email": "ada@example.com", "tos": true, "name": { "first": "Ada" } });
        assert!(same_traits(&Value::Null, &saved));
        assert!(same_traits(&json!({}), &saved));
        assert!(same_traits(&saved, &saved));
        // Forms send every value as text.
        assert!(same_traits(&json!({ "email": "ada@example.com", "tos": "true" }), &saved));
        assert!(same_traits(&json!({ "name": { "last": "" } }), &saved));
        assert!(!same_traits(&json!({ "email": "eve@example.com" }), &saved));
        assert!(!same_traits(&json!({ "tos": false }), &saved));
        assert!(!same_traits(&json!({ "name": { "last": "Lovelace" } }), &saved));
    }
}
