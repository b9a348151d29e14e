//! Login by emailed code, Kratos's `code` method: passwordless at `aal1`
//! (`passwordless_enabled`), or as the second factor of an `aal2` step-up
//! (`mfa_enabled`).
//!
//! The first submit names an address (`identifier`, or a second factor's
//! `address` button); the flow moves to `sent_email` and answers at once,
//! the same for every address. Whether the address belongs to an account is
//! looked at only after the answer, when the code request is served (see
//! `code_requests`): a known address gets `login_code_valid`, an unknown
//! one nothing. The second submit brings the code, which is checked with
//! the limits of `code.rs` (attempts per flow, wrong guesses per address)
//! after passing [`LoginThrottle`], as a password would.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::code::{self, CodeCheck, CodeSettings};
use super::code_requests;
use super::login::{LoginOutcome, LoginState};
use super::login_second_factor::{AAL2, throttle_subject};
use super::login_throttle::{Admission, LoginThrottle};
use super::{Flow, FlowError, FlowState, field};
use crate::courier::Renderer;
use crate::identity::{AddressStatus, Identity, Via};
use crate::schema::normalize;
use crate::send_limits::SendLimits;
use crate::session::{AuthenticationMethod, Session};
use crate::store::{CodePurpose, CodeRequest, Store};
use crate::text::{self, Message};
use crate::time::Clock;
use crate::ui::{Group, Input, Node};

/// `selfservice.methods.code` as login uses it.
pub struct CodeLoginSettings {
    /// `passwordless_enabled`: `aal1` flows offer the code.
    pub passwordless: bool,
    /// `mfa_enabled`: `aal2` flows offer it for the identity's addresses.
    pub mfa: bool,
    pub codes: Arc<CodeSettings>,
    pub session_lifespan: chrono::Duration,
}

/// A form submitted with `method=code` (or a second factor's `address`
/// button, which sends no `method`).
pub struct CodeSubmission {
    pub identifier: String,
    pub address: String,
    pub code: String,
    /// `resend=code` asks for another code instead of checking one.
    pub resend: bool,
}

impl CodeSubmission {
    pub fn read(body: &Value) -> Self {
        let text = |name| field(body, name).unwrap_or_default().to_string();
        CodeSubmission {
            identifier: text("identifier"),
            address: text("address"),
            code: text("code"),
            resend: field(body, "resend").is_some_and(|r| r.eq_ignore_ascii_case("code")),
        }
    }

    /// Whether, in `state`, this asks for a code to be mailed (a request the
    /// per-client send limit counts).
    pub fn sends_code(&self, state: &FlowState) -> bool {
        match state {
            FlowState::Login(LoginState::ChooseMethod) => true,
            FlowState::Login(LoginState::SentEmail { .. }) => self.resend,
            _ => false,
        }
    }

    /// The address named, as Kratos reads it: `address` first on the first
    /// step, `identifier` first otherwise.
    fn named(&self) -> &str {
        if self.identifier.is_empty() { &self.address } else { &self.identifier }
    }
}

/// What a code submission came to.
pub enum CodeStep {
    /// Answered: the flow with a code sent, a message, or a raised session.
    Done(LoginOutcome),
    /// A passwordless code was right: sign `identity` in (the login hooks run).
    SignIn { flow: Flow, identity: Box<Identity> },
}

#[derive(Clone)]
pub struct CodeLogin {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    renderer: Arc<dyn Renderer>,
    limits: SendLimits,
    throttle: LoginThrottle,
    settings: Arc<CodeLoginSettings>,
}

impl CodeLogin {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        renderer: Arc<dyn Renderer>,
        limits: SendLimits,
        throttle: LoginThrottle,
        settings: CodeLoginSettings,
    ) -> Self {
        Self { store, clock, renderer, limits, throttle, settings: Arc::new(settings) }
    }

    /// Whether any login flow takes `method=code`.
    pub fn enabled(&self) -> bool {
        self.settings.passwordless || self.settings.mfa
    }

    /// Whether a flow at `aal` (not refreshing) offers the code.
    pub fn offered(&self, flow: &Flow) -> bool {
        match flow.requested_aal == AAL2 {
            true => self.settings.mfa,
            false => self.settings.passwordless && !flow.refresh,
        }
    }

    /// The first-factor button: send a code to the `identifier` typed.
    pub fn first_factor_node() -> Node {
        Node::submit(Group::Code, "code", text::label_send_sign_in_code())
    }

    /// The second-factor buttons: one per verifiable email address.
    pub fn second_factor_nodes(&self, identity: &Identity) -> Vec<Node> {
        if !self.settings.mfa {
            return Vec::new();
        }
        let mut addresses: Vec<&str> = identity
            .verifiable_addresses
            .iter()
            .filter(|a| a.via == Via::Email)
            .map(|a| a.value.as_str())
            .collect();
        addresses.sort_unstable();
        addresses.into_iter().map(address_button).collect()
    }

    /// Handles a code submission on a flow that offers the code and has not
    /// expired. `session` is the signed-in one an `aal2` flow raises.
    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: CodeSubmission,
        session: Option<&Session>,
        client_ip: Option<&str>,
    ) -> Result<CodeStep, FlowError> {
        flow.ui.reset_messages();
        let step_up = flow.requested_aal == AAL2;
        match (&flow.state, session) {
            (FlowState::Login(LoginState::SentEmail { .. }), _) if !submission.resend => {
                self.check(flow, submission, session, client_ip).await
            }
            (FlowState::Login(LoginState::ChooseMethod | LoginState::SentEmail { .. }), Some(session))
                if step_up =>
            {
                self.send_second_factor(flow, submission, session).await
            }
            (FlowState::Login(LoginState::ChooseMethod | LoginState::SentEmail { .. }), _) if !step_up => {
                // A resend without the hidden identifier goes where the last code went.
                let sent_to = flow.state.code_address().unwrap_or_default();
                let named = Some(submission.named()).filter(|n| !n.is_empty()).unwrap_or(sent_to).to_string();
                self.send(flow, named, text::login_code_sent()).await
            }
            _ => {
                flow.ui.messages.push(text::no_login_method());
                self.reject(flow).await
            }
        }
    }

    /// A second factor goes only to an address of the signed-in identity.
    async fn send_second_factor(
        &self,
        mut flow: Flow,
        submission: CodeSubmission,
        session: &Session,
    ) -> Result<CodeStep, FlowError> {
        let named = [&submission.address, &submission.identifier]
            .into_iter()
            .find(|n| !n.is_empty())
            .map_or_else(|| flow.state.code_address().unwrap_or_default(), |n| n.as_str());
        let address = normalize(named, Via::Email);
        let identity = self.store.get_identity(session.identity_id).await?;
        let owned = identity.is_some_and(|i| {
            i.verifiable_addresses.iter().any(|a| a.via == Via::Email && a.value == address)
        });
        if !owned || Some(session.identity_id) != flow.identity_id {
            flow.ui.messages.push(text::login_address_unknown());
            return self.reject(flow).await;
        }
        self.send(flow, address, text::login_code_sent_to_you()).await
    }

    /// Mails a second-factor code to `address` for a step-up flow just
    /// made, whose only method it is, and answers the flow asking for it.
    pub(crate) async fn send_at_start(&self, flow: Flow, address: String) -> Result<Flow, FlowError> {
        match self.send(flow, address, text::login_code_sent_to_you()).await? {
            CodeStep::Done(LoginOutcome::CodeSent(flow)) => Ok(flow),
            _ => Err(FlowError::internal("a second-factor code could not be asked for")),
        }
    }

    /// Moves the flow to `sent_email` and records the code request, which
    /// is served after the answer: the request path is the same whether or
    /// not `named` belongs to anyone.
    async fn send(&self, mut flow: Flow, named: String, sent: Message) -> Result<CodeStep, FlowError> {
        let address = normalize(&named, Via::Email);
        if address.is_empty() {
            flow.ui.add_message(Some("identifier"), text::required("identifier"));
            return self.reject(flow).await;
        }
        flow.state = FlowState::Login(LoginState::SentEmail { address: address.clone() });
        flow.active = Some("code".into());
        code_form(&mut flow, &address);
        // The flow says only this, as Kratos's form once a code is sent.
        flow.ui.messages = vec![sent];
        flow.updated_at = self.clock.now();
        let request = code_requests::new_request(&flow, CodePurpose::Login, &address);
        self.store.record_code_request(&flow, &request).await?;
        code_requests::serve_soon(self.clone(), request, flow.clone());
        Ok(CodeStep::Done(LoginOutcome::CodeSent(flow)))
    }

    /// Issues the code `request` asked for if the address is a verifiable
    /// address of an identity (for a step-up: of the flow's identity), and
    /// queues its mail. Unknown addresses get no code and no mail; past the
    /// address's send limit nothing is stored or mailed.
    async fn serve_request(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError> {
        let address = &request.address;
        let identity = self
            .store
            .identity_by_verifiable_address(Via::Email.as_str(), address)
            .await?
            .filter(|identity| flow.identity_id.is_none_or(|id| id == identity.id));
        let Some(identity) = identity else {
            self.store.fulfil_code_request(request.id, None, None).await?;
            return Ok(());
        };
        if !self.limits.admit_code_mail(CodePurpose::Login, address).await? {
            self.store.fulfil_code_request(request.id, None, None).await?;
            return Ok(());
        }
        let at = self.clock.now();
        let codes = &self.settings.codes;
        let (code, stored) = codes.issue(flow.id, CodePurpose::Login, Some(identity.id), address, None, at);
        let mut data = Map::new();
        data.insert("To".into(), json!(address));
        data.insert("LoginCode".into(), json!(code));
        data.insert("ExpiresInMinutes".into(), json!(codes.lifespan.num_minutes()));
        data.insert("Identity".into(), json!({ "id": identity.id, "traits": identity.traits }));
        data.insert("RequestURL".into(), json!(flow.request_url));
        let message = code::render(self.renderer.as_ref(), address, "login_code_valid", &data, at)?;
        self.store.fulfil_code_request(request.id, Some(&stored), Some(&message)).await?;
        Ok(())
    }

    /// Checks a submitted code. Every attempt passes the login throttle
    /// first, counted against the address (a passwordless sign-in) or the
    /// identity (a second factor, with its TOTP and backup-code guesses).
    async fn check(
        &self,
        mut flow: Flow,
        submission: CodeSubmission,
        session: Option<&Session>,
        client_ip: Option<&str>,
    ) -> Result<CodeStep, FlowError> {
        let address = flow.state.code_address().unwrap_or_default().to_string();
        if submission.code.trim().is_empty() {
            flow.ui.add_message(Some("code"), text::required("code"));
            return self.reject(flow).await;
        }
        let step_up = flow.requested_aal == AAL2;
        // The code answers for the address it went to; naming another one
        // cannot switch accounts (Kratos refuses it too).
        let named = normalize(submission.named(), Via::Email);
        if !named.is_empty() && named != address {
            flow.ui.messages.push(text::login_code_invalid());
            return self.reject(flow).await;
        }
        let subject = match (step_up, session) {
            (true, Some(session)) => throttle_subject(session.identity_id),
            (true, None) => {
                flow.ui.messages.push(text::no_login_method());
                return self.reject(flow).await;
            }
            (false, _) => address.clone(),
        };
        let ticket = match self.throttle.admit(&subject, client_ip).await? {
            Admission::Admitted(ticket) => ticket,
            Admission::Refused { limit, retry_after } => {
                let millis = u64::try_from(retry_after.num_milliseconds()).unwrap_or(0);
                let seconds = millis.div_ceil(1000).max(1);
                let at = self.clock.now();
                flow.ui.messages.push(text::login_throttled(seconds, at + retry_after));
                flow.updated_at = at;
                self.store.update_flow(&flow).await?;
                let flow = Box::new(flow);
                return Ok(CodeStep::Done(LoginOutcome::Throttled {
                    flow,
                    limit,
                    retry_after_seconds: seconds,
                }));
            }
        };
        let now = self.clock.now();
        let checked = self
            .settings
            .codes
            .check(self.store.as_ref(), CodePurpose::Login, &flow, &submission.code, now)
            .await;
        let found = match checked {
            Ok(CodeCheck::Right(found)) => found,
            // A wrong code stays counted: the ticket recorded it.
            Ok(CodeCheck::Wrong) => {
                flow.ui.messages.push(text::login_code_invalid());
                return self.reject(flow).await;
            }
            Ok(CodeCheck::TooManyAttempts) => {
                let reason = "The request was submitted too often. Please request another code.";
                flow.ui.messages.push(text::validation_generic(reason));
                return self.reject(flow).await;
            }
            Ok(CodeCheck::AlreadyUsed) => {
                self.throttle.not_judged(ticket).await;
                let reason = "The code was already used. Please request another code.";
                flow.ui.messages.push(text::validation_generic(reason));
                return self.reject(flow).await;
            }
            Err(e) => {
                self.throttle.not_judged(ticket).await;
                return Err(e);
            }
        };
        self.throttle.succeeded(ticket).await;
        let identity_id = found.identity_id.expect("only codes with an identity match");
        let Some(mut identity) = self.store.get_identity(identity_id).await? else {
            flow.ui.messages.push(text::login_code_invalid());
            return self.reject(flow).await;
        };
        // Getting the code proves the address, as in Kratos.
        self.mark_verified(&mut identity, &found.address).await?;
        flow.active = Some("code".into());
        let Some(session) = session.filter(|_| step_up) else {
            return Ok(CodeStep::SignIn { flow, identity: Box::new(identity) });
        };
        self.raise(flow, identity, session).await
    }

    /// A right second-factor code raises the signed-in session to `aal2`.
    async fn raise(
        &self,
        mut flow: Flow,
        identity: Identity,
        session: &Session,
    ) -> Result<CodeStep, FlowError> {
        if identity.id != session.identity_id {
            flow.ui.messages.push(text::no_login_method());
            return self.reject(flow).await;
        }
        if identity.state != crate::identity::IdentityState::Active {
            flow.ui.messages.push(text::identity_disabled());
            return self.reject(flow).await;
        }
        let at = self.clock.now();
        let method = AuthenticationMethod { method: "code".into(), aal: AAL2.into(), completed_at: at };
        let expires = at + self.settings.session_lifespan;
        let raised = self.store.complete_second_factor(session.id, &method, expires).await?;
        let session = match raised {
            true => self.store.get_session(session.id).await?,
            false => None,
        };
        let Some(session) = session else {
            // Signed out or revoked while the code was checked.
            flow.ui.messages.push(text::no_login_method());
            return self.reject(flow).await;
        };
        flow.state = FlowState::Login(LoginState::PassedChallenge);
        flow.updated_at = at;
        self.store.update_flow(&flow).await?;
        Ok(CodeStep::Done(LoginOutcome::SteppedUp {
            flow: Box::new(flow),
            identity: Box::new(identity),
            session: Box::new(session),
        }))
    }

    async fn mark_verified(&self, identity: &mut Identity, address: &str) -> Result<(), FlowError> {
        let at = self.clock.now();
        let unverified = identity.verifiable_addresses.iter_mut().find(|a| a.value == address && !a.verified);
        if let Some(found) = unverified {
            self.store.set_address_status(identity.id, found.id, AddressStatus::Completed, at).await?;
            found.verified = true;
            found.status = AddressStatus::Completed;
            found.verified_at = Some(at);
        }
        Ok(())
    }

    async fn reject(&self, mut flow: Flow) -> Result<CodeStep, FlowError> {
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(CodeStep::Done(LoginOutcome::Rejected(flow)))
    }
}

#[async_trait::async_trait]
impl code_requests::ServesCodeRequests for CodeLogin {
    async fn serve(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError> {
        self.serve_request(request, flow).await
    }
}

/// A second factor's "send code to" button.
fn address_button(address: &str) -> Node {
    Input {
        name: "address",
        input_type: "submit",
        group: Group::Code,
        value: Some(Value::String(address.into())),
        required: false,
        autocomplete: None,
        label: Some(text::send_code_to(address)),
    }
    .into_node()
}

/// The form once a code is on its way, as Kratos builds it: the address
/// kept as a hidden `identifier`, the code input, and the submit and
/// resend buttons. Every other method's nodes go.
fn code_form(flow: &mut Flow, address: &str) {
    let named = flow.ui.nodes.iter().find(|n| match n.name() {
        Some("identifier") => true,
        Some("address") => n.attributes["value"] == address,
        _ => false,
    });
    let mut identifier = named.cloned().unwrap_or_else(|| address_button(address));
    flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
    identifier.attributes["name"] = json!("identifier");
    identifier.attributes["type"] = json!("hidden");
    identifier.attributes["value"] = json!(address);
    flow.ui.nodes.push(identifier);
    code::push_code_entry(flow, text::label_login_code());
}
