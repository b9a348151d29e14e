//! Email verification by code: someone names an address (or a hook does,
//! after registration, a settings change or a refused login), a six-digit
//! code goes to it, and returning the code marks the address verified.
//! Unknown addresses are answered exactly like known ones, and wrong guesses
//! are limited per flow and per address across flows.

use std::sync::Arc;

use chrono::Duration;
use serde_json::{Map, Value, json};

use super::code::{self, CodeCheck, CodeSettings};
use super::code_requests;
use super::{Flow, FlowError, FlowRequest, FlowState, field};
use crate::courier::Message;
use crate::courier::Renderer;
use crate::identity::{AddressStatus, Identity, VerifiableAddress, Via};
use crate::schema::normalize;
use crate::send_limits::SendLimits;
use crate::store::{CodePurpose, CodeRequest, OneTimeCode, Store};
use crate::text;
use crate::time::Clock;
use crate::ui::{Container, Group, Node};

pub struct VerificationSettings {
    pub public_base: String,
    pub enabled: bool,
    pub lifespan: Duration,
    pub codes: Arc<CodeSettings>,
    pub notify_unknown_recipients: bool,
    /// Where a verified user continues when the flow has no `return_to`.
    pub return_url: String,
}

/// Where a verification flow stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerificationState {
    /// Asking for an address.
    ChooseMethod,
    /// A code went to `address`.
    SentEmail { address: String },
    /// The address is verified; the flow is done.
    PassedChallenge,
}

pub enum VerificationSubmission {
    SendCode { email: String },
    Code { code: String },
}

impl VerificationSubmission {
    /// The method that handles a submitted form; `None` when no method
    /// takes it. As Kratos: a code without `method` is still a code, and a
    /// code wins over an `email` sent alongside it; with neither, the form
    /// asks for the address.
    pub fn read(body: &Value) -> Option<Self> {
        let code = field(body, "code").filter(|c| !c.is_empty());
        if field(body, "method").or(code.map(|_| "code"))? != "code" {
            return None;
        }
        Some(match code {
            Some(code) => VerificationSubmission::Code { code: code.to_string() },
            None => VerificationSubmission::SendCode {
                email: field(body, "email").unwrap_or_default().to_string(),
            },
        })
    }
}

pub enum VerificationOutcome {
    /// 200 with the flow: a code was sent, or a code was wrong.
    Updated(Flow),
    /// 400 with the flow: the input was unusable.
    Rejected(Flow),
    /// The flow cannot go on (too many attempts, already finished): use this one.
    Replaced { replacement: Box<Flow>, reason: &'static str },
    /// The address is verified; the flow is in `passed_challenge`.
    Verified(Flow),
}

/// Which of an identity's addresses a hook sends a code to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPick {
    /// The first one not verified yet (after registration, on a refused login).
    Unverified,
    /// The first one nobody sent a code to yet (after a settings change).
    Pending,
}

#[derive(Clone)]
pub struct VerificationService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    renderer: Arc<dyn Renderer>,
    limits: SendLimits,
    settings: Arc<VerificationSettings>,
}

const RETRY_REASON: &str = "An error occurred, please retry the flow.";

impl VerificationService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        renderer: Arc<dyn Renderer>,
        limits: SendLimits,
        settings: VerificationSettings,
    ) -> Self {
        Self { store, clock, renderer, limits, settings: Arc::new(settings) }
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
            FlowState::Verification(VerificationState::ChooseMethod),
        );
        flow.active = Some("code".into());
        strip_api_csrf(&mut flow);
        code::email_form(&mut flow);
        flow
    }

    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: VerificationSubmission,
    ) -> Result<VerificationOutcome, FlowError> {
        if flow.is_expired(self.clock.now()) {
            let mut replacement = self.build(&flow.replacement_request());
            replacement
                .ui
                .messages
                .push(text::verification_flow_expired(flow.expires_at, self.clock.now() - flow.expires_at));
            self.store.create_flow(&replacement).await?;
            return Err(FlowError::Expired {
                expired_at: flow.expires_at,
                replacement: Box::new(replacement),
            });
        }
        if flow.state == FlowState::Verification(VerificationState::PassedChallenge) {
            return self
                .replace(
                    flow,
                    text::verification_already_done(),
                    "An error occurred, please use the new flow.",
                )
                .await;
        }
        flow.ui.reset_messages();
        match submission {
            VerificationSubmission::SendCode { email } => self.send_code(flow, email).await,
            VerificationSubmission::Code { code } => self.check_code(flow, code).await,
        }
    }

    /// Whether `flow` waits for a code (one was sent) and has not expired.
    pub fn awaits_code(&self, flow: &Flow) -> bool {
        matches!(flow.state, FlowState::Verification(VerificationState::SentEmail { .. }))
            && !flow.is_expired(self.clock.now())
    }

    /// Puts a code from an emailed link into the form, so the user only has
    /// to confirm it, and moves a browser flow to the browser that opened
    /// the link (`csrf_hash`). Only a right code does either: the attempt is
    /// counted like a submitted one, but the code is not spent. True when
    /// the code was right.
    pub async fn prefill(
        &self,
        mut flow: Flow,
        code: &str,
        csrf_hash: Option<String>,
    ) -> Result<bool, FlowError> {
        // The attempt is counted in the store either way; a wrong code
        // leaves the flow itself untouched.
        let check = self
            .settings
            .codes
            .find(self.store.as_ref(), CodePurpose::Verification, &flow, code, self.clock.now())
            .await?;
        if !matches!(check, CodeCheck::Right(_)) {
            return Ok(false);
        }
        if let Some(node) = flow.ui.node_mut("code") {
            node.attributes["value"] = json!(code.trim());
        }
        if csrf_hash.is_some() {
            flow.csrf_hash = csrf_hash;
        }
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(true)
    }

    async fn send_code(&self, mut flow: Flow, email: String) -> Result<VerificationOutcome, FlowError> {
        let address = normalize(&email, Via::Email);
        if address.is_empty() {
            flow.ui.upsert(code::email_input(Some(&email)));
            flow.ui.add_message(Some("email"), text::required("email"));
            flow.updated_at = self.clock.now();
            self.store.update_flow(&flow).await?;
            return Ok(VerificationOutcome::Rejected(flow));
        }
        if let Some(problem) = crate::email::problem(&email) {
            flow.ui.upsert(code::email_input(Some(&crate::email::printable(&email))));
            flow.ui.add_message(Some("email"), problem);
            flow.updated_at = self.clock.now();
            self.store.update_flow(&flow).await?;
            return Ok(VerificationOutcome::Rejected(flow));
        }
        // Whether the address has an account is not looked at here: see
        // `code_requests`. The request path is the same for every address.
        show_code_form(&mut flow, &address);
        flow.updated_at = self.clock.now();
        let request = code_requests::new_request(&flow, CodePurpose::Verification, &address);
        self.store.record_code_request(&flow, &request).await?;
        code_requests::serve_soon(self.clone(), request, flow.clone());
        Ok(VerificationOutcome::Updated(flow))
    }

    /// Issues the code `request` asked for and queues its mail, as
    /// [`Self::store_code`] does, ending the request in the same
    /// transaction.
    async fn serve_request(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError> {
        let address = &request.address;
        let identity = self.store.identity_by_verifiable_address(Via::Email.as_str(), address).await?;
        let target = identity.as_ref().and_then(|i| {
            let a = i.verifiable_addresses.iter().find(|a| a.via == Via::Email && &a.value == address)?;
            Some((i, a))
        });
        if !self.limits.admit_code_mail(CodePurpose::Verification, address).await? {
            self.store.fulfil_code_request(request.id, None, None).await?;
            return Ok(());
        }
        // Made now, not when asked for: of two resends served out of order the
        // code that works is the one in the newest mail.
        let (stored, message) = self.code_mail(&flow, address, target, self.clock.now())?;
        self.mark_sent(target).await?;
        self.store.fulfil_code_request(request.id, Some(&stored), message.as_ref()).await?;
        Ok(())
    }

    /// Stores a fresh code for the flow (retiring earlier ones) with the
    /// email announcing it, unless the address is past its send limit
    /// (then its earlier code keeps working). True when a `pending` address
    /// moved to `sent`.
    async fn store_code(
        &self,
        flow: &Flow,
        address: &str,
        target: Option<(&Identity, &VerifiableAddress)>,
    ) -> Result<bool, FlowError> {
        if !self.limits.admit_code_mail(CodePurpose::Verification, address).await? {
            // Nothing went out, so a `pending` address stays pending.
            return Ok(false);
        }
        let (stored, message) = self.code_mail(flow, address, target, self.clock.now())?;
        self.store.create_code(&stored, message.as_ref()).await?;
        self.mark_sent(target).await
    }

    /// A fresh code for `flow` made `at` and the mail announcing it: the
    /// code to the identity owning `address`, if any; otherwise a code that
    /// verifies nothing, and a notice when `notify_unknown_recipients` is on.
    fn code_mail(
        &self,
        flow: &Flow,
        address: &str,
        target: Option<(&Identity, &VerifiableAddress)>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(OneTimeCode, Option<Message>), FlowError> {
        let (code, stored) = self.settings.codes.issue(
            flow.id,
            CodePurpose::Verification,
            target.map(|(i, _)| i.id),
            address,
            None,
            at,
        );
        let mut data = Map::new();
        data.insert("To".into(), json!(address));
        data.insert("RequestURL".into(), json!(flow.request_url));
        if let Some(payload) = &flow.transient_payload {
            data.insert("TransientPayload".into(), payload.clone());
        }
        let message = match target {
            Some((identity, _)) => {
                let link = format!(
                    "{}/self-service/verification?flow={}&code={code}",
                    self.settings.public_base, flow.id
                );
                data.insert("VerificationCode".into(), json!(code));
                data.insert("VerificationURL".into(), json!(link));
                data.insert("ExpiresInMinutes".into(), json!(self.settings.codes.lifespan.num_minutes()));
                data.insert("Identity".into(), json!({ "id": identity.id, "traits": identity.traits }));
                Some(code::render(self.renderer.as_ref(), address, "verification_code_valid", &data, at)?)
            }
            None if self.settings.notify_unknown_recipients => {
                Some(code::render(self.renderer.as_ref(), address, "verification_code_invalid", &data, at)?)
            }
            None => None,
        };
        Ok((stored, message))
    }

    /// Moves a `pending` address to `sent` once a code is on its way; true
    /// when it moved.
    async fn mark_sent(&self, target: Option<(&Identity, &VerifiableAddress)>) -> Result<bool, FlowError> {
        match target {
            Some((identity, a)) if !a.verified && a.status == AddressStatus::Pending => {
                self.store
                    .set_address_status(identity.id, a.id, AddressStatus::Sent, self.clock.now())
                    .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn check_code(&self, mut flow: Flow, code: String) -> Result<VerificationOutcome, FlowError> {
        let check = self
            .settings
            .codes
            .check(self.store.as_ref(), CodePurpose::Verification, &flow, &code, self.clock.now())
            .await?;
        let found = match check {
            CodeCheck::Right(found) => found,
            CodeCheck::Wrong => return self.wrong_code(flow).await,
            CodeCheck::TooManyAttempts => {
                let message = text::validation_generic(
                    "The request was submitted too often. Please request another code.",
                );
                return self.replace(flow, message, RETRY_REASON).await;
            }
            CodeCheck::AlreadyUsed => {
                let message =
                    text::validation_generic("The code was already used. Please request another code.");
                return self.replace(flow, message, RETRY_REASON).await;
            }
        };
        let identity_id = found.identity_id.expect("only codes with an identity match");
        let identity = self.store.get_identity(identity_id).await?;
        // The address may have left the identity since the code was sent.
        let address = identity.as_ref().and_then(|i| {
            i.verifiable_addresses.iter().find(|a| a.via == Via::Email && a.value == found.address)
        });
        let Some(address) = address else {
            return self.wrong_code(flow).await;
        };
        self.store
            .set_address_status(identity_id, address.id, AddressStatus::Completed, self.clock.now())
            .await?;

        let continue_to = flow.return_to.clone().unwrap_or_else(|| self.settings.return_url.clone());
        flow.state = FlowState::Verification(VerificationState::PassedChallenge);
        flow.ui = Container::new(continue_to.clone());
        flow.ui.method = "GET".into();
        flow.ui.nodes.push(Node::anchor(Group::Code, "continue", &continue_to, text::label_continue()));
        flow.ui.messages.push(text::verified());
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(VerificationOutcome::Verified(flow))
    }

    async fn wrong_code(&self, mut flow: Flow) -> Result<VerificationOutcome, FlowError> {
        flow.ui.messages.push(text::verification_code_invalid());
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(VerificationOutcome::Updated(flow))
    }

    /// The `verification` hook: after `origin` (registration, settings or a
    /// refused login) changed or checked `identity`, sends a code to the
    /// first address `pick` selects, in a new flow of the same type.
    pub async fn send_for_identity(
        &self,
        origin: &Flow,
        identity: &mut Identity,
        pick: AddressPick,
    ) -> Result<Option<Flow>, FlowError> {
        if !self.settings.enabled {
            return Ok(None);
        }
        let index = identity.verifiable_addresses.iter().position(|a| {
            !a.value.is_empty()
                && match pick {
                    AddressPick::Unverified => !a.verified,
                    AddressPick::Pending => !a.verified && a.status == AddressStatus::Pending,
                }
        });
        let Some(index) = index else {
            return Ok(None);
        };
        let mut request = origin.replacement_request();
        if let Some(after) = request.after_verification_return_to.take() {
            request.return_to = Some(after);
        }
        let mut flow = self.build(&request);
        flow.transient_payload = origin.transient_payload.clone();
        let value = identity.verifiable_addresses[index].value.clone();
        show_code_form(&mut flow, &value);
        self.store.create_flow(&flow).await?;
        let target = (&*identity, &identity.verifiable_addresses[index]);
        if self.store_code(&flow, &value, Some(target)).await? {
            // Keep the caller's copy in step with the row.
            let address = &mut identity.verifiable_addresses[index];
            address.status = AddressStatus::Sent;
            address.updated_at = self.clock.now();
        }
        Ok(Some(flow))
    }

    /// A new flow to carry on with. As in Kratos, `old` is left as it is:
    /// every further submit to it gets this same answer (its attempts stay
    /// counted past the limit, or it stays verified).
    async fn replace(
        &self,
        old: Flow,
        message: text::Message,
        reason: &'static str,
    ) -> Result<VerificationOutcome, FlowError> {
        let mut replacement = self.build(&old.replacement_request());
        replacement.ui.messages.push(message);
        self.store.create_flow(&replacement).await?;
        Ok(VerificationOutcome::Replaced { replacement: Box::new(replacement), reason })
    }
}

/// The flow once a code is on its way to `address`.
fn show_code_form(flow: &mut Flow, address: &str) {
    // Attempts carry over across resends: the store counts them per flow.
    flow.state = FlowState::Verification(VerificationState::SentEmail { address: address.into() });
    code::code_form(flow, text::label_verification_code(), address);
    flow.ui.messages.push(text::verification_code_sent());
}

/// Verification forms carry a CSRF token only for browsers.
fn strip_api_csrf(flow: &mut Flow) {
    if flow.flow_type == super::FlowType::Api {
        flow.ui.nodes.retain(|n| n.name() != Some("csrf_token"));
    }
}

#[async_trait::async_trait]
impl code_requests::ServesCodeRequests for VerificationService {
    async fn serve(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError> {
        self.serve_request(request, flow).await
    }
}
