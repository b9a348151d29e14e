//! The registration flow: traits from the identity schema plus a password,
//! in one step or (`profile_first`) two: traits first, then credentials.
//! Sign-up by emailed code instead of a password lives in
//! `registration_code`.

use std::sync::Arc;

use chrono::Duration;
use latchkey_hash::SecretPassword;
use serde_json::{Value, json};

use super::registration_code::RegistrationCodes;
use super::verification::{AddressPick, VerificationService};
use super::{Flow, FlowError, FlowRequest, FlowState, field, place_trait_error, show_traits};
use crate::identity::{Identity, IdentityError, IdentityManager, NewIdentity, PasswordInput};
use crate::password_policy::PasswordPolicy;
use crate::session::{self, Device, IssuedSession};
use crate::store::Store;
use crate::text;
use crate::time::Clock;
use crate::ui::{Group, Input, Node, trait_nodes};

pub struct RegistrationSettings {
    pub public_base: String,
    pub lifespan: Duration,
    pub session_lifespan: Duration,
    pub enabled: bool,
    /// `style: profile_first`: traits on a first screen, credentials on a second.
    pub two_step: bool,
    /// The `session` after-registration hook: sign the new identity in.
    pub issue_session: bool,
    pub password_policy: PasswordPolicy,
}

/// Where a registration flow stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RegistrationState {
    /// Asking for traits and credentials. In two steps, `traits` holds what
    /// screen one accepted, so screen two may send the password alone.
    ChooseMethod { traits: Option<Value> },
    /// Sign-up by code: a code went to `address`, one of `traits` (what
    /// was accepted), and the identity is made once it comes back.
    SentEmail { traits: Value, address: String },
    /// The identity exists; the flow is done.
    PassedChallenge,
}

pub enum RegistrationSubmission {
    /// Traits and password at once (works in both styles).
    Password { traits: Value, password: SecretPassword },
    /// Two-step screen one (`screen` `previous` goes back to it).
    Profile { traits: Value, back: bool },
    /// Sign-up by emailed code: the traits send a code, the code makes
    /// the identity; `resend` sends a fresh one.
    Code { traits: Value, code: String, resend: bool },
}

impl RegistrationSubmission {
    /// The method that handles a submitted form, chosen by its `method`;
    /// `None` when no method takes it.
    pub fn read(body: &Value) -> Option<Self> {
        let traits = body.get("traits").cloned().unwrap_or(Value::Null);
        match field(body, "method")? {
            "password" => Some(RegistrationSubmission::Password {
                traits,
                password: SecretPassword::new(field(body, "password").unwrap_or_default()),
            }),
            "profile" => Some(RegistrationSubmission::Profile {
                traits,
                back: field(body, "screen") == Some("previous"),
            }),
            "code" => Some(RegistrationSubmission::Code {
                traits,
                code: field(body, "code").unwrap_or_default().trim().to_string(),
                // As Kratos: any casing of `code` asks for a new one.
                resend: field(body, "resend").is_some_and(|r| r.eq_ignore_ascii_case("code")),
            }),
            _ => None,
        }
    }
}

pub enum RegistrationOutcome {
    Rejected(Flow),
    /// Two-step: the traits are accepted, the flow now asks for credentials.
    NextScreen(Flow),
    Accepted {
        flow: Box<Flow>,
        identity: Box<Identity>,
        issued: Option<IssuedSession>,
        /// The `verification` hook's flow, when a code went out.
        verification: Option<Box<Flow>>,
    },
}

#[derive(Clone)]
pub struct RegistrationService {
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) identities: IdentityManager,
    verification: VerificationService,
    pub(super) settings: Arc<RegistrationSettings>,
    /// The `code` method, when `passwordless_enabled` turns it on.
    codes: Option<RegistrationCodes>,
}

impl RegistrationService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        identities: IdentityManager,
        verification: VerificationService,
        settings: RegistrationSettings,
    ) -> Self {
        Self { store, clock, identities, verification, settings: Arc::new(settings), codes: None }
    }

    /// Offers sign-up by emailed code besides the password.
    pub fn with_codes(mut self, codes: RegistrationCodes) -> Self {
        self.codes = Some(codes);
        self
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub async fn create(&self, request: &FlowRequest) -> Result<Flow, FlowError> {
        let flow = self.build(request);
        self.store.create_flow(&flow).await?;
        Ok(flow)
    }

    fn build(&self, request: &FlowRequest) -> Flow {
        let mut flow = Flow::new(
            request,
            self.clock.now(),
            self.settings.lifespan,
            &self.settings.public_base,
            FlowState::Registration(RegistrationState::ChooseMethod { traits: None }),
        );
        self.first_screen(&mut flow);
        flow
    }

    fn schema(&self) -> Value {
        let registry = self.identities.schemas();
        registry.get(registry.default_id()).map(|s| s.raw.clone()).unwrap_or(Value::Null)
    }

    /// Traits, then either the credential methods (one step) or a continue button.
    pub(super) fn first_screen(&self, flow: &mut Flow) {
        flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
        flow.ui.nodes.extend(trait_nodes(&self.schema(), Group::Default));
        if self.settings.two_step {
            flow.ui.nodes.push(Node::submit(Group::Profile, "profile", text::label_continue_registration()));
        } else {
            self.method_nodes(flow);
        }
    }

    /// The password form and, when it is on, the button that sends a code.
    fn method_nodes(&self, flow: &mut Flow) {
        flow.ui.nodes.push(Node::password("new-password"));
        flow.ui.nodes.push(Node::submit(Group::Password, "password", text::label_sign_up()));
        if self.codes.is_some() {
            flow.ui.nodes.push(Node::submit(Group::Code, "code", text::label_send_sign_up_code()));
        }
    }

    /// Screen two: the accepted traits ride along hidden; a back button returns.
    fn credentials_screen(&self, flow: &mut Flow, traits: &Value) {
        flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
        hidden_traits(flow, traits);
        let mut back = Node::submit(Group::Profile, "profile", text::label_back());
        back.attributes["name"] = json!("screen");
        back.attributes["value"] = json!("previous");
        flow.ui.nodes.push(back);
        self.method_nodes(flow);
        flow.ui.messages.push(text::info_choose_credentials());
    }

    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: RegistrationSubmission,
        device: Device,
    ) -> Result<RegistrationOutcome, FlowError> {
        if flow.is_expired(self.clock.now()) {
            return Err(self.expired(&flow).await?);
        }
        flow.ui.reset_messages();
        match submission {
            RegistrationSubmission::Profile { traits, back } => self.submit_profile(flow, traits, back).await,
            RegistrationSubmission::Password { traits, password } => {
                self.submit_password(flow, traits, password, device).await
            }
            RegistrationSubmission::Code { traits, code, resend } => match self.codes.clone() {
                Some(codes) => self.submit_code(&codes, flow, traits, code, resend, device).await,
                // Off: answered as a method nobody offers.
                None => {
                    flow.ui.messages.push(text::no_registration_method());
                    self.save(flow, RegistrationOutcome::Rejected).await
                }
            },
        }
    }

    /// Whether `submission` would mail a code (so the client's send limit applies).
    pub fn sends_code(&self, flow: &Flow, submission: &RegistrationSubmission) -> bool {
        let sent = matches!(flow.state, FlowState::Registration(RegistrationState::SentEmail { .. }));
        self.codes.is_some()
            && matches!(submission, RegistrationSubmission::Code { resend, .. } if *resend || !sent)
    }

    async fn submit_profile(
        &self,
        mut flow: Flow,
        traits: Value,
        back: bool,
    ) -> Result<RegistrationOutcome, FlowError> {
        // As Kratos: the profile step leaves no method active. Clients read an
        // active `profile` as "show the profile group only" (Ory Elements
        // then hides the password field on the credentials screen).
        flow.active = None;
        if back || !self.settings.two_step {
            self.first_screen(&mut flow);
            show_traits(&mut flow.ui, &traits);
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        let schema_id = self.identities.schemas().default_id().to_string();
        if let Err(e) = self.identities.schemas().validate_traits(&schema_id, &traits) {
            show_traits(&mut flow.ui, &traits);
            place_trait_error(&mut flow.ui, &e);
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        self.credentials_screen(&mut flow, &traits);
        flow.state = FlowState::Registration(RegistrationState::ChooseMethod { traits: Some(traits) });
        self.save(flow, RegistrationOutcome::NextScreen).await
    }

    async fn submit_password(
        &self,
        mut flow: Flow,
        traits: Value,
        password: SecretPassword,
        device: Device,
    ) -> Result<RegistrationOutcome, FlowError> {
        flow.active = Some("password".into());
        // Two-step clients may send the password alone on screen two.
        let traits = given_or_saved(traits, &flow.state);
        show_traits(&mut flow.ui, &traits);
        let schema_id = self.identities.schemas().default_id().to_string();
        let facts = match self.identities.schemas().validate_traits(&schema_id, &traits) {
            Ok(facts) => facts,
            Err(e) => {
                place_trait_error(&mut flow.ui, &e);
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
        };
        if facts.password_identifiers.is_empty() {
            flow.ui.messages.push(text::missing_identifier());
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        if password.is_empty() {
            flow.ui.add_message(Some("password"), text::required("password"));
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }
        if let Err(violation) =
            self.settings.password_policy.check(password.expose(), &facts.password_identifiers)
        {
            let message =
                text::password_policy(violation.message_id(), violation.text(), violation.context());
            flow.ui.add_message(Some("password"), message);
            return self.save(flow, RegistrationOutcome::Rejected).await;
        }

        let new = NewIdentity {
            schema_id: Some(schema_id),
            traits,
            password: Some(PasswordInput::Plain(password)),
            ..Default::default()
        };
        let identity = match self.identities.create(new).await {
            Ok(identity) => identity,
            Err(IdentityError::Conflict) => {
                flow.ui.messages.push(text::duplicate_credentials());
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
            Err(IdentityError::Schema(e)) => {
                place_trait_error(&mut flow.ui, &e);
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
            // Input the edge let through but storage cannot hold: the flow says so.
            Err(IdentityError::InvalidInput(reason)) => {
                flow.ui.messages.push(text::validation_generic(&reason));
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
            Err(IdentityError::PasswordTooLong) => {
                let violation =
                    crate::password_policy::PolicyViolation::TooLong { max_length: 72, actual_length: 73 };
                flow.ui.add_message(
                    Some("password"),
                    text::password_policy(violation.message_id(), violation.text(), violation.context()),
                );
                return self.save(flow, RegistrationOutcome::Rejected).await;
            }
            Err(e) => return Err(FlowError::internal(e)),
        };

        let issue_session = self.settings.issue_session;
        self.registered(flow, identity, "password", issue_session, device).await
    }

    /// The after-registration hooks for a new identity, then the flow is done:
    /// as in Kratos, the verification hook runs first whenever verification
    /// is on, then `session` (when `issue_session`) signs it in by `method`.
    pub(super) async fn registered(
        &self,
        mut flow: Flow,
        mut identity: Identity,
        method: &str,
        issue_session: bool,
        device: Device,
    ) -> Result<RegistrationOutcome, FlowError> {
        let verification = self
            .verification
            .send_for_identity(&flow, &mut identity, AddressPick::Unverified)
            .await?
            .map(Box::new);
        let issued = if issue_session {
            let issued =
                session::issue(identity.id, method, self.clock.now(), self.settings.session_lifespan, device);
            self.store.create_session(&issued.session).await?;
            Some(issued)
        } else {
            None
        };
        flow.state = FlowState::Registration(RegistrationState::PassedChallenge);
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(RegistrationOutcome::Accepted {
            flow: Box::new(flow),
            identity: Box::new(identity),
            issued,
            verification,
        })
    }

    pub(super) async fn save(
        &self,
        mut flow: Flow,
        outcome: fn(Flow) -> RegistrationOutcome,
    ) -> Result<RegistrationOutcome, FlowError> {
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(outcome(flow))
    }

    async fn expired(&self, old: &Flow) -> Result<FlowError, FlowError> {
        let request = old.replacement_request();
        let mut replacement = self.build(&request);
        replacement
            .ui
            .messages
            .push(text::registration_flow_expired(old.expires_at, self.clock.now() - old.expires_at));
        self.store.create_flow(&replacement).await?;
        Ok(FlowError::Expired { expired_at: old.expires_at, replacement: Box::new(replacement) })
    }
}

/// The traits a submit sent or, when it sent none, the ones an earlier step
/// of the flow accepted (two-step screen two, a code already sent).
pub(super) fn given_or_saved(given: Value, state: &FlowState) -> Value {
    let saved = match state {
        FlowState::Registration(RegistrationState::ChooseMethod { traits }) => traits.as_ref(),
        FlowState::Registration(RegistrationState::SentEmail { traits, .. }) => Some(traits),
        _ => None,
    };
    match (given, saved) {
        (Value::Null, Some(saved)) => saved.clone(),
        (Value::Object(m), Some(saved)) if m.is_empty() => saved.clone(),
        (given, _) => given,
    }
}

/// Accepted traits carried along as hidden inputs.
pub(super) fn hidden_traits(flow: &mut Flow, traits: &Value) {
    let mut values = Vec::new();
    crate::ui::flatten("traits", traits, &mut values);
    for (name, value) in values {
        let hidden = Input {
            name: &name,
            input_type: "hidden",
            group: Group::Default,
            value: Some(value),
            required: false,
            autocomplete: None,
            label: None,
        };
        flow.ui.nodes.push(hidden.into_node());
    }
}
