//! Account recovery by emailed code: ask for an address, send a six-digit
//! code, and sign in whoever returns it, into a settings flow to set a new
//! password. Unknown addresses are answered exactly like known ones, codes
//! are stored only as keyed hashes, and wrong guesses are limited per flow
//! and per address across flows.

use std::sync::Arc;

use chrono::Duration;
use serde_json::{Map, Value, json};

use super::code::{self, CodeCheck, CodeSettings};
use super::code_requests;
use super::settings::SettingsService;
use super::{Flow, FlowError, FlowRequest, FlowState, field};
use crate::courier::Renderer;
use crate::identity::{AddressStatus, Identity, IdentityManager, IdentityState, Via};
use crate::notice;
use crate::schema::normalize;
use crate::send_limits::SendLimits;
use crate::session::{self, Device, IssuedSession};
use crate::store::{CodePurpose, CodeRequest, Store};
use crate::text;
use crate::time::Clock;

pub struct RecoverySettings {
    pub public_base: String,
    pub enabled: bool,
    pub lifespan: Duration,
    pub codes: Arc<CodeSettings>,
    pub notify_unknown_recipients: bool,
    pub session_lifespan: Duration,
    /// How long the recovered session may change the password.
    pub privileged_session_max_age: Duration,
}

/// Where a recovery flow stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryState {
    /// Asking for an address.
    ChooseMethod,
    /// A code went to `address`. `admin_issued`: an administrator made the
    /// flow (`POST /admin/recovery/code`) and handed the code over.
    SentEmail { address: String, admin_issued: bool },
    /// Recovered: a session was issued and a settings flow handed over.
    PassedChallenge { admin_issued: bool },
}

pub enum RecoverySubmission {
    SendCode { email: String },
    Code { code: String },
}

impl RecoverySubmission {
    /// The method that handles a submitted form in `state`; `None` when no
    /// method takes it. Once a code was sent, a form with an `email` is a
    /// resend and one without is a code attempt, whatever `method` says. An
    /// empty `email` counts as none, as in Kratos: form libraries (Ory
    /// Elements among them) send the resend button's field empty with a code.
    pub fn read(state: &FlowState, body: &Value) -> Option<Self> {
        let FlowState::Recovery(state) = state else { return None };
        let email = field(body, "email").map(str::to_string);
        match state {
            RecoveryState::SentEmail { .. } => Some(match email.filter(|e| !e.is_empty()) {
                Some(email) => RecoverySubmission::SendCode { email },
                None => {
                    RecoverySubmission::Code { code: field(body, "code").unwrap_or_default().to_string() }
                }
            }),
            RecoveryState::ChooseMethod if field(body, "method") == Some("code") => {
                Some(RecoverySubmission::SendCode { email: email.unwrap_or_default() })
            }
            RecoveryState::ChooseMethod | RecoveryState::PassedChallenge { .. } => None,
        }
    }
}

pub enum RecoveryOutcome {
    /// 200 with the flow: a code was sent, or a code was wrong.
    Updated(Flow),
    /// 400 with the flow: the input was unusable.
    Rejected(Flow),
    /// Too many attempts (or a spent code): start again with this flow.
    Replaced {
        replacement: Box<Flow>,
        reason: &'static str,
    },
    Recovered {
        flow: Box<Flow>,
        issued: IssuedSession,
        settings_flow: Box<Flow>,
    },
    /// The code was right but the identity is deactivated: no session, the
    /// code is spent, and the user starts again with `replacement`.
    IdentityDisabled {
        replacement: Box<Flow>,
        identity_id: uuid::Uuid,
    },
}

#[derive(Clone)]
pub struct RecoveryService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    identities: IdentityManager,
    renderer: Arc<dyn Renderer>,
    settings_flows: SettingsService,
    limits: SendLimits,
    settings: Arc<RecoverySettings>,
}

impl RecoveryService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        identities: IdentityManager,
        renderer: Arc<dyn Renderer>,
        settings_flows: SettingsService,
        limits: SendLimits,
        settings: RecoverySettings,
    ) -> Self {
        Self { store, clock, identities, renderer, settings_flows, limits, settings: Arc::new(settings) }
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
            FlowState::Recovery(RecoveryState::ChooseMethod),
        );
        flow.active = Some("code".into());
        code::email_form(&mut flow);
        flow
    }

    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: RecoverySubmission,
        device: Device,
    ) -> Result<RecoveryOutcome, FlowError> {
        if flow.is_expired(self.clock.now()) {
            let mut replacement = self.build(&flow.replacement_request());
            replacement
                .ui
                .messages
                .push(text::recovery_flow_expired(flow.expires_at, self.clock.now() - flow.expires_at));
            self.store.create_flow(&replacement).await?;
            return Err(FlowError::Expired {
                expired_at: flow.expires_at,
                replacement: Box::new(replacement),
            });
        }
        flow.ui.reset_messages();
        match submission {
            RecoverySubmission::SendCode { email } => self.send_code(flow, email).await,
            RecoverySubmission::Code { code } => self.check_code(flow, code, device).await,
        }
    }

    /// Issues a code for `identity` directly (the admin API): the flow
    /// starts in `sent_email`, and the caller hands the code over.
    pub async fn create_for_identity(
        &self,
        request: &FlowRequest,
        identity: &Identity,
        lifespan: Duration,
    ) -> Result<(Flow, String), FlowError> {
        let address = identity.recovery_addresses.first().map(|a| a.value.clone()).unwrap_or_default();
        let state = RecoveryState::SentEmail { address: address.clone(), admin_issued: true };
        let mut flow = Flow::new(
            request,
            self.clock.now(),
            lifespan,
            &self.settings.public_base,
            FlowState::Recovery(state),
        );
        flow.active = Some("code".into());
        code::code_form(&mut flow, text::label_recovery_code(), &address);
        flow.ui.nodes.retain(|n| n.name() != Some("csrf_token") && n.name() != Some("email"));
        let (code, stored) = self.settings.codes.issue(
            flow.id,
            CodePurpose::Recovery,
            Some(identity.id),
            &address,
            Some(lifespan),
            self.clock.now(),
        );
        self.store.create_flow(&flow).await?;
        self.store.create_code(&stored, None).await?;
        Ok((flow, code))
    }

    async fn send_code(&self, mut flow: Flow, email: String) -> Result<RecoveryOutcome, FlowError> {
        let address = normalize(&email, Via::Email);
        if address.is_empty() {
            flow.ui.add_message(Some("email"), text::required("email"));
            return self.save(flow, RecoveryOutcome::Rejected).await;
        }
        if let Some(problem) = crate::email::problem(&email) {
            // The first form shows back what was typed; a resend keeps its address.
            if flow.state == FlowState::Recovery(RecoveryState::ChooseMethod) {
                flow.ui.set_value("email", json!(crate::email::printable(&email)));
            }
            flow.ui.add_message(Some("email"), problem);
            return self.save(flow, RecoveryOutcome::Rejected).await;
        }
        // Whether the address has an account is not looked at here: see
        // `code_requests`. The request path is the same for every address.
        let admin_issued = flow.admin_issued();
        flow.state = FlowState::Recovery(RecoveryState::SentEmail { address: address.clone(), admin_issued });
        code::code_form(&mut flow, text::label_recovery_code(), &address);
        flow.ui.messages.push(text::recovery_code_sent());
        flow.updated_at = self.clock.now();
        let request = code_requests::new_request(&flow, CodePurpose::Recovery, &address);
        self.store.record_code_request(&flow, &request).await?;
        code_requests::serve_soon(self.clone(), request, flow.clone());
        Ok(RecoveryOutcome::Updated(flow))
    }

    /// Issues the code `request` asked for, if the address has an account,
    /// and queues its mail. Unknown addresses store a code too (one that
    /// recovers nothing), and get a notice when
    /// `notify_unknown_recipients` is on. Past the address's send limit
    /// nothing is stored or mailed (its earlier code keeps working).
    async fn serve_request(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError> {
        let address = &request.address;
        let identity = self.store.identity_by_recovery_address(Via::Email.as_str(), address).await?;
        if !self.limits.admit_code_mail(CodePurpose::Recovery, address).await? {
            self.store.fulfil_code_request(request.id, None, None).await?;
            return Ok(());
        }
        // Made now, not when asked for: of two resends served out of order
        // the code that works is the one in the newest mail.
        let at = self.clock.now();
        let (code, stored) = self.settings.codes.issue(
            flow.id,
            CodePurpose::Recovery,
            identity.as_ref().map(|i| i.id),
            address,
            None,
            at,
        );
        let mut data = Map::new();
        data.insert("To".into(), json!(address));
        let message = match &identity {
            Some(identity) => {
                data.insert("RecoveryCode".into(), json!(code));
                data.insert("ExpiresInMinutes".into(), json!(self.settings.codes.lifespan.num_minutes()));
                data.insert("Identity".into(), json!({ "id": identity.id, "traits": identity.traits }));
                Some(code::render(self.renderer.as_ref(), address, "recovery_code_valid", &data, at)?)
            }
            None if self.settings.notify_unknown_recipients => {
                Some(code::render(self.renderer.as_ref(), address, "recovery_code_invalid", &data, at)?)
            }
            None => None,
        };
        // Attempts carry over across resends: the store counts them per flow.
        self.store.fulfil_code_request(request.id, Some(&stored), message.as_ref()).await?;
        Ok(())
    }

    async fn check_code(
        &self,
        mut flow: Flow,
        code: String,
        device: Device,
    ) -> Result<RecoveryOutcome, FlowError> {
        let found = match self
            .settings
            .codes
            .check(self.store.as_ref(), CodePurpose::Recovery, &flow, &code, self.clock.now())
            .await?
        {
            CodeCheck::Right(found) => found,
            CodeCheck::Wrong => {
                flow.ui.messages.push(text::recovery_code_invalid());
                return self.save(flow, RecoveryOutcome::Updated).await;
            }
            CodeCheck::TooManyAttempts => {
                return self
                    .replace(flow, "The request was submitted too often. Please request another code.")
                    .await;
            }
            CodeCheck::AlreadyUsed => {
                return self.replace(flow, "The code was already used. Please request another code.").await;
            }
        };
        let identity_id = found.identity_id.expect("only codes with an identity match");
        let mut identity = self.identities.get(identity_id).await.map_err(FlowError::internal)?;
        // As Kratos: a deactivated identity gets no session; the flow is
        // replaced by one that says so.
        if identity.state != IdentityState::Active {
            let replacement = self.fresh_flow(&flow, text::identity_disabled()).await?;
            self.spend(flow).await?;
            return Ok(RecoveryOutcome::IdentityDisabled { replacement, identity_id });
        }
        // Getting the code proves the address; admin-issued codes prove nothing.
        if !flow.admin_issued() {
            let unverified =
                identity.verifiable_addresses.iter_mut().find(|a| a.value == found.address && !a.verified);
            if let Some(address) = unverified {
                self.store
                    .set_address_status(identity.id, address.id, AddressStatus::Completed, self.clock.now())
                    .await?;
                address.verified = true;
                address.status = AddressStatus::Completed;
                address.verified_at = Some(self.clock.now());
            }
        }

        // The owner hears of every recovery, admin-issued codes included, at
        // the address the code went to; the notice is queued with the
        // session, so there is never one without the other.
        let to = Some(found.address.as_str())
            .filter(|a| a.contains('@'))
            .or_else(|| notice::owner_address(&identity))
            .map(str::to_string);
        let notices = match to {
            Some(to) => vec![
                notice::render(
                    self.renderer.as_ref(),
                    notice::ACCOUNT_RECOVERED,
                    &to,
                    &identity,
                    &device,
                    self.clock.now(),
                )
                .map_err(FlowError::internal)?,
            ],
            None => Vec::new(),
        };
        let issued = session::issue(
            identity.id,
            "code_recovery",
            self.clock.now(),
            self.settings.session_lifespan,
            device,
        );
        self.store.create_session_and_notify(&issued.session, &notices).await?;
        let mut request = flow.replacement_request();
        if let Some(return_to) = &flow.return_to {
            request.request_url = return_to.clone();
        }
        let mut settings_flow = self.settings_flows.create(&request, &identity).await?;
        settings_flow
            .ui
            .messages
            .push(text::recovered(self.clock.now() + self.settings.privileged_session_max_age));
        self.store.update_flow(&settings_flow).await?;
        flow.state =
            FlowState::Recovery(RecoveryState::PassedChallenge { admin_issued: flow.admin_issued() });
        flow.ui.messages.clear();
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(RecoveryOutcome::Recovered {
            flow: Box::new(flow),
            issued,
            settings_flow: Box::new(settings_flow),
        })
    }

    /// A new flow to carry on with. As in Kratos, `old` is left as it is:
    /// it can still be fetched, and every further code sent to it gets this
    /// same answer (its attempts stay counted past the limit, so no code
    /// works on it again). Native apps rely on that to keep their form.
    async fn replace(&self, old: Flow, reason: &'static str) -> Result<RecoveryOutcome, FlowError> {
        let replacement = self.fresh_flow(&old, text::validation_generic(reason)).await?;
        Ok(RecoveryOutcome::Replaced { replacement, reason })
    }

    /// A new flow for the client `old` came from, showing `message`.
    async fn fresh_flow(&self, old: &Flow, message: text::Message) -> Result<Box<Flow>, FlowError> {
        let mut replacement = self.build(&old.replacement_request());
        replacement.ui.messages.push(message);
        self.store.create_flow(&replacement).await?;
        Ok(Box::new(replacement))
    }

    /// Ends `flow` now.
    async fn spend(&self, mut flow: Flow) -> Result<(), FlowError> {
        flow.expires_at = self.clock.now();
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(())
    }

    async fn save(
        &self,
        mut flow: Flow,
        outcome: fn(Flow) -> RecoveryOutcome,
    ) -> Result<RecoveryOutcome, FlowError> {
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(outcome(flow))
    }
}

#[async_trait::async_trait]
impl code_requests::ServesCodeRequests for RecoveryService {
    async fn serve(&self, request: CodeRequest, flow: Flow) -> Result<(), FlowError> {
        self.serve_request(request, flow).await
    }
}
