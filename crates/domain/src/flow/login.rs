//! The login flow: a form asking for an identifier and a password, and the
//! password method checking them. Unknown identifiers and wrong passwords
//! answer alike and take the same time: up to the verdict every attempt does
//! the same reads and one verification (of a dummy hash when there is no
//! stored one), and a failure then waits for the [`FailureFloor`], which
//! also covers hashes costlier than the configured hasher's. Every attempt
//! passes [`LoginThrottle`] before its password is hashed.
//!
//! The other methods live beside it (second factors in
//! `login_second_factor`, the emailed code in `login_code`); this module
//! picks the method for a form and runs what follows any first factor
//! (`sign_in`: the after-login hooks, then the session).

use std::sync::Arc;

use chrono::Duration;
use latchkey_hash::{PasswordHasher, SecretPassword};
use serde_json::Value;
use tokio::time::Instant;

use super::login_code::{CodeLogin, CodeStep, CodeSubmission};
use super::login_floor::FailureFloor;
use super::login_second_factor::{AAL2, SecondFactorLogin, SecondFactorSubmission};
use super::login_throttle::{Admission, Limit, LoginThrottle};
use super::verification::{AddressPick, VerificationService};
use super::{Flow, FlowError, FlowRequest, FlowState};
use crate::identity::{CredentialType, Identity, IdentityState};
use crate::schema::{IdentitySchema, normalize};
use crate::second_factor::SecondFactors;
use crate::session::{self, Device, IssuedSession, Session};
use crate::store::Store;
use crate::text::{self, Message};
use crate::time::Clock;
use crate::ui::{Group, Input, Node};

pub struct LoginSettings {
    pub public_base: String,
    pub lifespan: Duration,
    pub session_lifespan: Duration,
    /// After a password login (`after.password.hooks`, else `after.hooks`).
    pub password_hooks: LoginHooks,
    /// After a code login (`after.code.hooks`, else `after.hooks`).
    pub code_hooks: LoginHooks,
    /// The `identifier` field's label: see [`identifier_label`].
    pub identifier_label: Message,
}

/// The hooks that run after a first factor, per method as Kratos configures them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginHooks {
    /// `revoke_active_sessions`.
    pub revoke_active_sessions: bool,
    /// `require_verified_address`.
    pub require_verified_address: RequireVerified,
    /// `verification`: mail a code to an unverified address.
    pub send_verification: bool,
    /// `show_verification_ui`: `continue_with` names that code's flow.
    pub show_verification_ui: bool,
}

/// Kratos's label for the `identifier` field: the trait's title (1070002)
/// when the schema names the person by exactly one titled trait, else "ID"
/// (1070004), as several identifiers have no one name.
pub fn identifier_label(schema: &IdentitySchema) -> Message {
    match schema.identifier_traits().as_slice() {
        [only] => match &only.title {
            Some(title) if !title.is_empty() => text::label_trait(title, &only.name),
            _ => text::label_id(),
        },
        _ => text::label_id(),
    }
}

/// How the `require_verified_address` hook refuses an identity with no
/// verified address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequireVerified {
    Off,
    /// Send a code and point the client at the verification flow.
    SendCode,
    /// Only say so on the form (`feature_flags.legacy_require_verified_login_error`).
    FormError,
}

/// Where a login flow stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginState {
    ChooseMethod,
    /// A sign-in code went to `address` (the `code` method).
    SentEmail {
        address: String,
    },
    /// Signed in; the flow is done.
    PassedChallenge,
}

/// What a client submitted, parsed and typed by method.
pub enum LoginSubmission {
    Password {
        identifier: String,
        password: SecretPassword,
    },
    /// A step-up to AAL2 (`login_second_factor`).
    SecondFactor(SecondFactorSubmission),
    /// An emailed code asked for or entered (`login_code`).
    Code(CodeSubmission),
}

impl LoginSubmission {
    /// The method that handles a submitted form, chosen by its `method`;
    /// `None` when no method takes it.
    pub fn read(body: &Value) -> Option<Self> {
        match super::field(body, "method")? {
            "password" => Some(LoginSubmission::Password {
                identifier: super::field(body, "identifier")
                    .or_else(|| super::field(body, "password_identifier"))
                    .unwrap_or_default()
                    .to_string(),
                password: SecretPassword::new(super::field(body, "password").unwrap_or_default()),
            }),
            "code" => Some(LoginSubmission::Code(CodeSubmission::read(body))),
            other => SecondFactorSubmission::read(other, body).map(LoginSubmission::SecondFactor),
        }
    }

    /// Whether, in `state`, this asks for a code to be mailed.
    pub fn sends_code(&self, state: &FlowState) -> bool {
        matches!(self, LoginSubmission::Code(code) if code.sends_code(state))
    }
}

pub enum LoginOutcome {
    /// The flow, with messages saying what was wrong.
    Rejected(Flow),
    Accepted {
        flow: Box<Flow>,
        identity: Box<Identity>,
        issued: IssuedSession,
        /// The `verification` hook's flow, when a code went out and the
        /// `show_verification_ui` hook names it.
        verification: Option<Box<Flow>>,
    },
    /// The credentials were right but no address is verified yet: no
    /// session; a code went out in `verification`.
    Unverified { verification: Box<Flow> },
    /// Too many failed attempts: refused before the password was checked.
    /// The flow carries a message saying how long to wait.
    Throttled { flow: Box<Flow>, limit: Limit, retry_after_seconds: u64 },
    /// A second factor raised the signed-in session to AAL2.
    SteppedUp { flow: Box<Flow>, identity: Box<Identity>, session: Box<Session> },
    /// A sign-in code is on its way (if the address has an account): the
    /// flow asks for it. Kratos answers this step with 400 to JSON clients.
    CodeSent(Flow),
}

#[derive(Clone)]
pub struct LoginService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    hasher: PasswordHasher,
    floor: FailureFloor,
    throttle: LoginThrottle,
    verification: VerificationService,
    second_factor: SecondFactorLogin,
    code: Option<CodeLogin>,
    settings: Arc<LoginSettings>,
}

impl LoginService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        hasher: PasswordHasher,
        floor: FailureFloor,
        throttle: LoginThrottle,
        verification: VerificationService,
        settings: LoginSettings,
    ) -> Self {
        let second_factor = SecondFactorLogin::new(
            store.clone(),
            clock.clone(),
            SecondFactors::default(),
            throttle.clone(),
            settings.public_base.clone(),
            settings.lifespan,
            settings.session_lifespan,
        );
        Self {
            store,
            clock,
            hasher,
            floor,
            throttle,
            verification,
            second_factor,
            code: None,
            settings: Arc::new(settings),
        }
    }

    /// Login by emailed code (`selfservice.methods.code`), when enabled.
    pub fn with_code(mut self, code: CodeLogin) -> Self {
        self.second_factor = self.second_factor.with_code(code.clone());
        self.code = Some(code).filter(CodeLogin::enabled);
        self
    }

    /// The code method, when enabled: it serves its own code requests.
    pub fn code_login(&self) -> Option<&CodeLogin> {
        self.code.as_ref()
    }

    /// The method that handles a submitted form; `None` when no enabled
    /// method takes it (answered as Kratos answers an unknown method).
    pub fn read(&self, body: &Value) -> Option<LoginSubmission> {
        // A second factor's address button sends `address` without `method`.
        let address_button =
            super::field(body, "method").is_none() && super::field(body, "address").is_some();
        let submission = match address_button {
            true => LoginSubmission::Code(CodeSubmission::read(body)),
            false => LoginSubmission::read(body)?,
        };
        match submission {
            LoginSubmission::Code(_) if self.code.is_none() => None,
            submission => Some(submission),
        }
    }

    /// The second factors an `aal2` flow offers and checks.
    pub fn with_second_factors(mut self, factors: SecondFactors) -> Self {
        self.second_factor = self.second_factor.with_factors(factors);
        self
    }

    /// A flow stepping `session` up to AAL2 (`?aal=aal2`), or repeating its
    /// second factor (`refresh`).
    pub async fn create_step_up(
        &self,
        request: &FlowRequest,
        session: &Session,
        refresh: bool,
    ) -> Result<Flow, FlowError> {
        self.second_factor.create(request, session, refresh).await
    }

    /// A new login flow. A refresh for a signed-in identity (`signed_in`)
    /// asks for the password only: as in Kratos, its identifier is a hidden
    /// field already filled in, which clients such as Ory Elements rely on.
    pub async fn create(
        &self,
        request: &FlowRequest,
        refresh: bool,
        signed_in: Option<uuid::Uuid>,
    ) -> Result<Flow, FlowError> {
        let known = match signed_in.filter(|_| refresh) {
            // Sessions carry the identity without credentials; read them.
            Some(id) => self.store.get_identity(id).await?.and_then(|identity| {
                identity.credential(CredentialType::Password).and_then(|c| c.identifiers.first().cloned())
            }),
            None => None,
        };
        let flow = self.build(request, refresh, known);
        self.store.create_flow(&flow).await?;
        Ok(flow)
    }

    fn build(&self, request: &FlowRequest, refresh: bool, known_identifier: Option<String>) -> Flow {
        let mut flow = Flow::new(
            request,
            self.clock.now(),
            self.settings.lifespan,
            &self.settings.public_base,
            FlowState::Login(LoginState::ChooseMethod),
        );
        flow.refresh = refresh;
        let identifier = match known_identifier {
            Some(known) => Input {
                name: "identifier",
                input_type: "hidden",
                group: Group::Default,
                value: Some(Value::String(known)),
                required: true,
                autocomplete: None,
                label: None,
            },
            None => Input {
                name: "identifier",
                input_type: "text",
                group: Group::Default,
                value: Some(Value::String(String::new())),
                required: true,
                autocomplete: None,
                label: Some(self.settings.identifier_label.clone()),
            },
        };
        flow.ui.nodes.insert(0, identifier.into_node());
        flow.ui.nodes.push(Node::password("current-password"));
        flow.ui.nodes.push(Node::submit(Group::Password, "password", text::label_sign_in_with_password()));
        if self.code.as_ref().is_some_and(|code| code.offered(&flow)) {
            flow.ui.nodes.push(CodeLogin::first_factor_node());
        }
        if refresh {
            flow.ui.messages.push(text::label_sign_in_refresh());
        }
        flow
    }

    /// Checks the submission against the flow; the caller has already checked
    /// CSRF and that the flow is of the right type.
    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: LoginSubmission,
        device: Device,
        signed_in: Option<&Session>,
    ) -> Result<LoginOutcome, FlowError> {
        // What the failure floor counts from.
        let started = Instant::now();
        let stepping_up = flow.requested_aal == AAL2;
        let (identifier, password) = match (submission, signed_in) {
            (LoginSubmission::SecondFactor(factor), Some(session)) if stepping_up => {
                return self.second_factor.submit(flow, factor, session, device.ip_address.as_deref()).await;
            }
            (LoginSubmission::Code(code), session) => {
                return self.submit_code(flow, code, device, session).await;
            }
            (LoginSubmission::Password { identifier, password }, _) if !stepping_up => (identifier, password),
            // A method that cannot complete this flow's level.
            _ => {
                flow.ui.reset_messages();
                flow.ui.messages.push(text::no_login_method());
                return self.reject(flow).await;
            }
        };
        if flow.is_expired(self.clock.now()) {
            return Err(self.expired(&flow).await?);
        }
        flow.ui.reset_messages();
        flow.active = Some("password".into());
        flow.ui.set_value("identifier", Value::String(identifier.clone()));
        if identifier.trim().is_empty() || password.is_empty() {
            if identifier.trim().is_empty() {
                flow.ui.add_message(Some("identifier"), text::required("identifier"));
            }
            if password.is_empty() {
                flow.ui.add_message(Some("password"), text::required("password"));
            }
            return self.reject(flow).await;
        }

        let normalized = normalize(&identifier, crate::identity::Via::Email);
        // Before anything that hashes: a refused attempt costs no hash.
        let ticket = match self.throttle.admit(&normalized, device.ip_address.as_deref()).await? {
            Admission::Admitted(ticket) => ticket,
            Admission::Refused { limit, retry_after } => {
                return self.throttled(flow, limit, retry_after).await;
            }
        };
        // The same one-row read whether or not the identifier exists; the
        // identity itself is read only once the password is right.
        let stored = match self.store.password_by_identifier(&normalized).await {
            Ok(stored) => stored,
            Err(e) => {
                self.throttle.not_judged(ticket).await;
                return Err(e.into());
            }
        };
        let hash = stored.as_ref().and_then(|s| s.hashed_password.clone());
        let class = match &hash {
            Some(hash) => latchkey_hash::cost_class(hash),
            None => Some(self.hasher.config().cost_class()),
        };
        // Unknown users are checked against a dummy hash of the configured
        // hasher, so both cost the same.
        let verified = match self.hasher.verify_or_dummy(password.clone(), hash.clone()).await {
            Ok(ok) => {
                if let Some(class) = class {
                    self.floor.record(&class, started.elapsed());
                }
                ok
            }
            // Refused before any hashing: the floor covers the difference.
            Err(latchkey_hash::HashError::PasswordTooLong) => false,
            Err(e) => {
                self.throttle.not_judged(ticket).await;
                return Err(FlowError::internal(e));
            }
        };
        // A failure stays recorded: the ticket already counted it.
        let Some(stored) = stored.filter(|_| verified) else {
            return self.invalid_credentials(flow, started).await;
        };
        // The check may have queued for a hasher: act on the identity as it
        // is now, so a deactivation or password change made meanwhile stands.
        let fresh = self.store.get_identity(stored.identity_id).await?.filter(|fresh| {
            fresh.credential(CredentialType::Password).and_then(|c| c.hashed_password()) == hash.as_deref()
        });
        let Some(mut identity) = fresh else {
            return self.invalid_credentials(flow, started).await;
        };
        // The password was right, whatever happens next.
        self.throttle.succeeded(ticket).await;
        if identity.state != IdentityState::Active {
            flow.ui.messages.push(text::identity_disabled());
            return self.reject(flow).await;
        }
        if let Some(hash) = hash.filter(|h| latchkey_hash::needs_rehash(h, self.hasher.config())) {
            self.upgrade_hash(&mut identity, password, &hash).await;
        }
        self.sign_in(flow, identity, "password", device, signed_in).await
    }

    /// A code submission, on a flow that offers the code method.
    async fn submit_code(
        &self,
        mut flow: Flow,
        submission: CodeSubmission,
        device: Device,
        session: Option<&Session>,
    ) -> Result<LoginOutcome, FlowError> {
        let Some(code) = self.code.as_ref().filter(|code| code.offered(&flow)) else {
            flow.ui.reset_messages();
            flow.ui.messages.push(text::no_login_method());
            return self.reject(flow).await;
        };
        if flow.is_expired(self.clock.now()) {
            return Err(match (flow.requested_aal == AAL2, session) {
                (true, Some(session)) => self.second_factor.expired(&flow, session).await?,
                _ => self.expired(&flow).await?,
            });
        }
        let step = code.submit(flow, submission, session, device.ip_address.as_deref()).await?;
        match step {
            CodeStep::Done(outcome) => Ok(outcome),
            CodeStep::SignIn { mut flow, identity } => {
                if identity.state != IdentityState::Active {
                    flow.ui.messages.push(text::identity_disabled());
                    return self.reject(flow).await;
                }
                self.sign_in(flow, *identity, "code", device, session).await
            }
        }
    }

    /// Signs in `identity`, whose first factor (`method`) was right: the
    /// after-login hooks, then a new session.
    async fn sign_in(
        &self,
        mut flow: Flow,
        mut identity: Identity,
        method: &str,
        device: Device,
        signed_in: Option<&Session>,
    ) -> Result<LoginOutcome, FlowError> {
        let hooks = match method {
            "code" => self.settings.code_hooks,
            _ => self.settings.password_hooks,
        };
        if hooks.require_verified_address != RequireVerified::Off
            && !identity.verifiable_addresses.iter().any(|a| a.verified)
        {
            return self.refuse_unverified(flow, &mut identity, hooks.require_verified_address).await;
        }

        let at = self.clock.now();
        let mut issued = session::issue(identity.id, method, at, self.settings.session_lifespan, device);
        // A refresh keeps what the signed-in session proved (Kratos adds the
        // method to that session).
        if let Some(current) = signed_in.filter(|s| flow.refresh && s.identity_id == identity.id) {
            session::carry_over(&mut issued.session, current);
        }
        self.store.create_session(&issued.session).await?;
        if hooks.revoke_active_sessions {
            self.store.revoke_sessions_of(identity.id, Some(issued.session.id), at).await?;
        }
        flow.state = FlowState::Login(LoginState::PassedChallenge);
        flow.updated_at = at;
        self.store.update_flow(&flow).await?;
        let verification = match hooks.send_verification {
            true => self
                .verification
                .send_for_identity(&flow, &mut identity, AddressPick::Unverified)
                .await?
                .filter(|_| hooks.show_verification_ui)
                .map(Box::new),
            false => None,
        };
        Ok(LoginOutcome::Accepted {
            flow: Box::new(flow),
            identity: Box::new(identity),
            issued,
            verification,
        })
    }

    async fn refuse_unverified(
        &self,
        mut flow: Flow,
        identity: &mut Identity,
        how: RequireVerified,
    ) -> Result<LoginOutcome, FlowError> {
        if identity.verifiable_addresses.is_empty() {
            return Err(FlowError::internal(
                "require_verified_address is on, but the identity schema gives this identity no verifiable \
                 address",
            ));
        }
        let verification = match how {
            RequireVerified::SendCode => {
                self.verification.send_for_identity(&flow, identity, AddressPick::Unverified).await?
            }
            _ => None,
        };
        match verification {
            Some(verification) => Ok(LoginOutcome::Unverified { verification: Box::new(verification) }),
            None => {
                flow.ui.messages.push(text::address_not_verified());
                self.reject(flow).await
            }
        }
    }

    /// The flow with a message saying how long to wait, saved so a UI
    /// fetching it shows the message.
    async fn throttled(
        &self,
        mut flow: Flow,
        limit: Limit,
        retry_after: Duration,
    ) -> Result<LoginOutcome, FlowError> {
        // Whole seconds, rounded up, as `Retry-After` counts them.
        let millis = u64::try_from(retry_after.num_milliseconds()).unwrap_or(0);
        let seconds = millis.div_ceil(1000).max(1);
        let at = self.clock.now();
        flow.ui.messages.push(text::login_throttled(seconds, at + retry_after));
        flow.updated_at = at;
        self.store.update_flow(&flow).await?;
        Ok(LoginOutcome::Throttled { flow: Box::new(flow), limit, retry_after_seconds: seconds })
    }

    /// A wrong password, an unknown identifier or an identity without a
    /// password: the same message, no sooner than the failure floor after
    /// `started`, whatever the hash cost.
    async fn invalid_credentials(&self, mut flow: Flow, started: Instant) -> Result<LoginOutcome, FlowError> {
        self.floor.wait(started).await;
        flow.ui.messages.push(text::invalid_credentials());
        self.reject(flow).await
    }

    async fn reject(&self, mut flow: Flow) -> Result<LoginOutcome, FlowError> {
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(LoginOutcome::Rejected(flow))
    }

    /// A replacement flow carrying the "expired" message.
    async fn expired(&self, old: &Flow) -> Result<FlowError, FlowError> {
        let request = old.replacement_request();
        let mut replacement = self.build(&request, old.refresh, hidden_identifier(old));
        replacement
            .ui
            .messages
            .push(text::login_flow_expired(old.expires_at, self.clock.now() - old.expires_at));
        self.store.create_flow(&replacement).await?;
        Ok(FlowError::Expired { expired_at: old.expires_at, replacement: Box::new(replacement) })
    }

    /// Imported or outdated hashes are replaced after a successful login;
    /// failure only costs the upgrade, never the login. Only the hash is
    /// written, and only if it is still `old`, the one just verified: the
    /// identity was read before the (possibly queued) check, and writing
    /// that copy back could undo a deactivation or a password change made
    /// in between.
    async fn upgrade_hash(&self, identity: &mut Identity, password: SecretPassword, old: &str) {
        let Ok(new_hash) = self.hasher.hash(password).await else {
            return;
        };
        let at = self.clock.now();
        match self.store.replace_password_hash(identity.id, old, &new_hash, at).await {
            Ok(true) => {
                // Keep the caller's copy in step with the row.
                if let Some(credential) = identity.credentials.get_mut(&CredentialType::Password)
                    && let Some(config) = credential.config.as_object_mut()
                {
                    config.insert("hashed_password".into(), serde_json::Value::String(new_hash));
                    credential.updated_at = at;
                }
            }
            Ok(false) => tracing::debug!("the password hash changed during login; not upgraded"),
            Err(e) => tracing::warn!(error = %e, "could not upgrade a password hash"),
        }
    }
}

/// The identifier a refresh flow was started with, kept by its replacement.
fn hidden_identifier(flow: &Flow) -> Option<String> {
    let node = flow.ui.nodes.iter().find(|n| n.name() == Some("identifier"))?;
    if node.attributes["type"] != "hidden" {
        return None;
    }
    node.attributes["value"].as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use serde_json::json;

    use super::identifier_label;
    use crate::schema::{SchemaRegistry, SchemaSource};

    fn label(traits: serde_json::Value) -> crate::text::Message {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#", "definitions": {
            "mail": {"type": "string", "title": "Mail", "ory.sh/kratos": {"credentials": {"code": {"identifier": true}}}}},
            "type": "object", "properties": {"traits": {"type": "object", "properties": traits}}});
        let url =
            format!("base64://{}", base64::engine::general_purpose::STANDARD.encode(schema.to_string()));
        let registry =
            SchemaRegistry::load(&[SchemaSource { id: "default".into(), url }], "default").unwrap();
        identifier_label(registry.default_schema())
    }

    fn password_id(title: Option<&str>) -> serde_json::Value {
        let mut node =
            json!({"type": "string", "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}});
        if let Some(title) = title {
            node["title"] = json!(title);
        }
        node
    }

    #[test]
    fn one_titled_identifier_names_the_field() {
        let one =
            label(json!({"email": password_id(Some("E-Mail")), "name": {"type": "string", "title": "Name"}}));
        assert_eq!((one.id, one.text.as_str()), (1070002, "E-Mail"));
        assert_eq!(one.context, Some(json!({"title": "E-Mail", "name": "traits.email"})));
        // Nested and behind a reference, and for any method.
        let nested = label(
            json!({"contact": {"type": "object", "properties": {"mail": {"$ref": "#/definitions/mail"}}}}),
        );
        assert_eq!(nested.context, Some(json!({"title": "Mail", "name": "traits.contact.mail"})));
    }

    #[test]
    fn several_identifiers_no_identifier_or_no_title_say_id() {
        let several =
            label(json!({"email": password_id(Some("E-Mail")), "username": password_id(Some("Username"))}));
        assert_eq!((several.id, several.text.as_str()), (1070004, "ID"));
        assert_eq!(label(json!({"email": password_id(None)})).id, 1070004);
        assert_eq!(label(json!({"name": {"type": "string", "title": "Name"}})).id, 1070004);
    }
}
