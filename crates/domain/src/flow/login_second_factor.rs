//! Login at AAL2: a signed-in session steps up by proving a second factor
//! (a TOTP code or a backup recovery code). The flow offers only the
//! factors the identity has; a right code raises the same session to
//! `aal2` and records the method on it, so no new token is issued.
//! Every code passes [`LoginThrottle`] first, counted against the identity
//! (and the client address) as password guesses are against an identifier:
//! a six-digit code is no harder to guess than a weak password.

use std::sync::Arc;

use chrono::Duration;
use serde_json::Value;

use super::login::{LoginOutcome, LoginState};
use super::login_code::CodeLogin;
use super::login_throttle::{Admission, LoginThrottle};
use super::{Flow, FlowError, FlowRequest, FlowState};
use crate::identity::{CredentialType, Identity, IdentityState};
use crate::second_factor::lookup::Verdict;
use crate::second_factor::{SecondFactorError, SecondFactors};
use crate::session::{AuthenticationMethod, Session};
use crate::store::Store;
use crate::text;
use crate::time::Clock;
use crate::ui::{Group, Input, Node};

pub const AAL1: &str = "aal1";
pub const AAL2: &str = "aal2";

/// A second factor submitted to an `aal2` login flow.
pub enum SecondFactorSubmission {
    Totp { code: String },
    LookupSecret { code: String },
}

impl SecondFactorSubmission {
    /// The submission for `method`, if it names a second factor.
    pub fn read(method: &str, body: &Value) -> Option<Self> {
        let field = |name| super::field(body, name).unwrap_or_default().to_string();
        match method {
            "totp" => Some(Self::Totp { code: field("totp_code") }),
            "lookup_secret" => Some(Self::LookupSecret { code: field("lookup_secret") }),
            _ => None,
        }
    }

    pub fn method(&self) -> &'static str {
        match self {
            Self::Totp { .. } => "totp",
            Self::LookupSecret { .. } => "lookup_secret",
        }
    }

    /// The input the code was typed into, emptied when the flow comes back.
    fn input(&self) -> &'static str {
        match self {
            Self::Totp { .. } => "totp_code",
            Self::LookupSecret { .. } => "lookup_secret",
        }
    }
}

#[derive(Clone)]
pub struct SecondFactorLogin {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    factors: SecondFactors,
    /// The emailed code as a second factor (`mfa_enabled`).
    code: Option<CodeLogin>,
    throttle: LoginThrottle,
    public_base: String,
    lifespan: Duration,
    session_lifespan: Duration,
}

impl SecondFactorLogin {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        factors: SecondFactors,
        throttle: LoginThrottle,
        public_base: String,
        lifespan: Duration,
        session_lifespan: Duration,
    ) -> Self {
        Self { store, clock, factors, code: None, throttle, public_base, lifespan, session_lifespan }
    }

    pub fn with_code(mut self, code: CodeLogin) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_factors(mut self, factors: SecondFactors) -> Self {
        self.factors = factors;
        self
    }

    /// A flow asking `session`'s identity for one of its second factors. An
    /// identity without any gets the flow with no method to submit, as Kratos
    /// answers.
    pub async fn create(
        &self,
        request: &FlowRequest,
        session: &Session,
        refresh: bool,
    ) -> Result<Flow, FlowError> {
        let flow = self.build(request, session, refresh).await?;
        self.store.create_flow(&flow).await?;
        // As Kratos: when the one thing to offer is a code to one address,
        // it is mailed at once and the flow asks for it.
        match (&self.code, only_code_address(&flow)) {
            (Some(code), Some(address)) => code.send_at_start(flow, address).await,
            _ => Ok(flow),
        }
    }

    /// A refresh (`refresh=true`) may repeat the second factor of a session
    /// at `aal2` already; it says so first, as a password refresh does.
    async fn build(
        &self,
        request: &FlowRequest,
        session: &Session,
        refresh: bool,
    ) -> Result<Flow, FlowError> {
        let mut flow = Flow::new(
            request,
            self.clock.now(),
            self.lifespan,
            &self.public_base,
            FlowState::Login(LoginState::ChooseMethod),
        );
        flow.requested_aal = AAL2.into();
        flow.identity_id = Some(session.identity_id);
        if let Some(identity) = self.store.get_identity(session.identity_id).await? {
            flow.ui.nodes.extend(self.nodes_for(&identity));
        }
        flow.refresh = refresh;
        if refresh {
            flow.ui.messages.push(text::label_sign_in_refresh());
        }
        if session.aal != AAL2 {
            flow.ui.messages.push(text::login_second_factor_due());
        }
        Ok(flow)
    }

    fn nodes_for(&self, identity: &Identity) -> Vec<Node> {
        let mut nodes = self.code.as_ref().map(|code| code.second_factor_nodes(identity)).unwrap_or_default();
        let has = |kind| identity.credential(kind).is_some();
        if self.factors.totp.is_some() && has(CredentialType::Totp) {
            nodes.push(code_input("totp_code", Group::Totp, text::label_totp_code()));
            nodes.push(Node::submit(Group::Totp, "totp", text::login_with_totp()));
        }
        if self.factors.lookup.is_some() && has(CredentialType::LookupSecret) {
            nodes.push(code_input("lookup_secret", Group::LookupSecret, text::label_lookup_code()));
            nodes.push(Node::submit(Group::LookupSecret, "lookup_secret", text::login_with_lookup()));
        }
        nodes
    }

    /// Checks the code against `session`'s identity and, when right, raises
    /// the session. The caller has checked CSRF, the flow's type and that
    /// the session may step up.
    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: SecondFactorSubmission,
        session: &Session,
        client_ip: Option<&str>,
    ) -> Result<LoginOutcome, FlowError> {
        if flow.is_expired(self.clock.now()) {
            return Err(self.expired(&flow, session).await?);
        }
        flow.ui.reset_messages();
        flow.ui.set_value(submission.input(), Value::String(String::new()));
        let identity = self.store.get_identity(session.identity_id).await?;
        let Some(identity) = identity.filter(|i| Some(i.id) == flow.identity_id) else {
            // Not the identity the flow was made for: nothing to check against.
            flow.ui.messages.push(text::no_login_method());
            return self.reject(flow).await;
        };
        // Before the code is looked at: a refused guess learns nothing.
        let ticket = match self.throttle.admit(&throttle_subject(identity.id), client_ip).await? {
            Admission::Admitted(ticket) => ticket,
            Admission::Refused { limit, retry_after } => {
                let millis = u64::try_from(retry_after.num_milliseconds()).unwrap_or(0);
                let seconds = millis.div_ceil(1000).max(1);
                let at = self.clock.now();
                flow.active = Some(submission.method().into());
                flow.ui.messages.push(text::login_throttled(seconds, at + retry_after));
                flow.updated_at = at;
                self.store.update_flow(&flow).await?;
                return Ok(LoginOutcome::Throttled {
                    flow: Box::new(flow),
                    limit,
                    retry_after_seconds: seconds,
                });
            }
        };
        let refusal = match self.check(&identity, &submission).await {
            Ok(refusal) => refusal,
            Err(e) => {
                self.throttle.not_judged(ticket).await;
                return Err(e);
            }
        };
        // A wrong code stays counted: the ticket recorded it.
        if let Some(message) = refusal {
            flow.active = Some(submission.method().into());
            flow.ui.messages.push(message);
            return self.reject(flow).await;
        }
        self.throttle.succeeded(ticket).await;
        if identity.state != IdentityState::Active {
            flow.ui.messages.push(text::identity_disabled());
            return self.reject(flow).await;
        }
        let at = self.clock.now();
        let method =
            AuthenticationMethod { method: submission.method().into(), aal: AAL2.into(), completed_at: at };
        let raised =
            self.store.complete_second_factor(session.id, &method, at + self.session_lifespan).await?;
        let session = match raised {
            true => self.store.get_session(session.id).await?,
            false => None,
        };
        let Some(session) = session else {
            // Signed out or revoked while the code was checked.
            flow.ui.messages.push(text::no_login_method());
            return self.reject(flow).await;
        };
        flow.active = Some(submission.method().into());
        flow.state = FlowState::Login(LoginState::PassedChallenge);
        flow.updated_at = at;
        self.store.update_flow(&flow).await?;
        Ok(LoginOutcome::SteppedUp {
            flow: Box::new(flow),
            identity: Box::new(identity),
            session: Box::new(session),
        })
    }

    /// A replacement for the expired step-up `old`, carrying the "expired" message.
    pub(crate) async fn expired(&self, old: &Flow, session: &Session) -> Result<FlowError, FlowError> {
        let now = self.clock.now();
        let mut replacement = self.build(&old.replacement_request(), session, old.refresh).await?;
        replacement.ui.messages.push(text::login_flow_expired(old.expires_at, now - old.expires_at));
        self.store.create_flow(&replacement).await?;
        Ok(FlowError::Expired { expired_at: old.expires_at, replacement: Box::new(replacement) })
    }

    /// `None` when the code is right (and now spent), else the message why not.
    async fn check(
        &self,
        identity: &Identity,
        submission: &SecondFactorSubmission,
    ) -> Result<Option<text::Message>, FlowError> {
        let refusal = match submission {
            SecondFactorSubmission::Totp { code } => match &self.factors.totp {
                None => Some(text::no_login_method()),
                Some(totp) => match totp.verify(identity, code).await.map_err(internal)? {
                    true => None,
                    false if identity.credential(CredentialType::Totp).is_none() => {
                        Some(text::no_totp_device())
                    }
                    false => Some(text::totp_code_wrong()),
                },
            },
            SecondFactorSubmission::LookupSecret { code } => match &self.factors.lookup {
                None => Some(text::no_login_method()),
                Some(lookup) => match lookup.verify(identity, code).await.map_err(internal)? {
                    Verdict::Accepted => None,
                    Verdict::AlreadyUsed => Some(text::lookup_code_already_used()),
                    Verdict::Wrong => Some(text::lookup_code_invalid()),
                    Verdict::NotSetUp => Some(text::no_lookup_codes()),
                },
            },
        };
        Ok(refusal)
    }

    async fn reject(&self, mut flow: Flow) -> Result<LoginOutcome, FlowError> {
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(LoginOutcome::Rejected(flow))
    }
}

/// The address of the flow's only method, when that is one `address` button.
fn only_code_address(flow: &Flow) -> Option<String> {
    let methods: Vec<&Node> = flow.ui.nodes.iter().filter(|n| n.group != Group::Default).collect();
    match methods.as_slice() {
        [button] if button.name() == Some("address") => {
            button.attributes["value"].as_str().map(str::to_string)
        }
        _ => None,
    }
}

/// The identity's subject in the identifier windows: no identifier anyone
/// can register holds a NUL, so it shares no count with one.
pub(crate) fn throttle_subject(identity: uuid::Uuid) -> String {
    format!("\0second_factor\0{identity}")
}

fn code_input(name: &str, group: Group, label: text::Message) -> Node {
    Input {
        name,
        input_type: "text",
        group,
        value: Some(Value::String(String::new())),
        required: true,
        autocomplete: None,
        label: Some(label),
    }
    .into_node()
}

fn internal(e: SecondFactorError) -> FlowError {
    match e {
        SecondFactorError::Store(e) => e.into(),
        other => FlowError::internal(other),
    }
}
