//! The settings flow: a signed-in identity changes its password (password
//! method) or its traits (profile method). Changing a credential needs a
//! recent ("privileged") sign-in.

use std::sync::Arc;

use chrono::Duration;
use latchkey_hash::SecretPassword;
use serde_json::Value;

use super::verification::{AddressPick, VerificationService};
use super::{Flow, FlowError, FlowRequest, FlowState, field, place_trait_error};
use crate::courier::{Message, Renderer};
use crate::identity::{Identity, IdentityError, IdentityManager, IdentityUpdate, PasswordInput};
use crate::notice;
use crate::password_policy::PasswordPolicy;
use crate::session::{Device, Session};
use crate::store::Store;
use crate::text;
use crate::time::Clock;
use crate::ui::{Group, Node, trait_nodes};

pub struct SettingsSettings {
    pub public_base: String,
    pub lifespan: Duration,
    /// How recent a sign-in must be to change a password or an identifier.
    pub privileged_session_max_age: Duration,
    pub password_policy: PasswordPolicy,
    /// After a password change, end the identity's other sessions.
    pub revoke_sessions_after_password: bool,
}

/// Where a settings flow stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsState {
    ShowForm,
    /// The last change was saved; the form stays usable.
    Success,
}

pub enum SettingsSubmission {
    Password { password: SecretPassword },
    Profile { traits: Value },
}

impl SettingsSubmission {
    /// The method that handles a submitted form, chosen by its `method`;
    /// `None` when no method takes it. A profile form without traits keeps
    /// `current`.
    pub fn read(body: &Value, current: &Value) -> Option<Self> {
        match field(body, "method")? {
            "password" => Some(SettingsSubmission::Password {
                password: SecretPassword::new(field(body, "password").unwrap_or_default()),
            }),
            "profile" => Some(SettingsSubmission::Profile {
                traits: body.get("traits").cloned().unwrap_or_else(|| current.clone()),
            }),
            _ => None,
        }
    }
}

pub enum SettingsOutcome {
    Rejected(Flow),
    /// Saved; a changed address got a code in the verification flow.
    Saved {
        flow: Flow,
        identity: Box<Identity>,
        verification: Option<Box<Flow>>,
    },
    /// The session is too old for this change; sign in again first.
    RefreshRequired(Flow),
}

#[derive(Clone)]
pub struct SettingsService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    identities: IdentityManager,
    renderer: Arc<dyn Renderer>,
    verification: VerificationService,
    settings: Arc<SettingsSettings>,
}

impl SettingsService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        identities: IdentityManager,
        renderer: Arc<dyn Renderer>,
        verification: VerificationService,
        settings: SettingsSettings,
    ) -> Self {
        Self { store, clock, identities, renderer, verification, settings: Arc::new(settings) }
    }

    /// What the owner is told about a change, queued with it: a changed
    /// password, and every address that reached the owner (verified, or for
    /// recovery) and is gone now, told at that old address. Admin changes
    /// through the identities API tell nobody, as in Kratos.
    fn notices(
        &self,
        password_changed: bool,
        device: &Device,
        before: &Identity,
        after: &Identity,
    ) -> Result<Vec<Message>, crate::courier::RenderError> {
        let at = self.clock.now();
        let renderer = self.renderer.as_ref();
        let mut notices = Vec::new();
        if password_changed && let Some(to) = notice::owner_address(after) {
            notices.push(notice::render(renderer, notice::PASSWORD_CHANGED, to, after, device, at)?);
        }
        for (to, template) in notice::lost_addresses(before, after) {
            notices.push(notice::render(renderer, template, &to, after, device, at)?);
        }
        Ok(notices)
    }

    pub async fn create(&self, request: &FlowRequest, identity: &Identity) -> Result<Flow, FlowError> {
        let flow = self.build(request, identity);
        self.store.create_flow(&flow).await?;
        Ok(flow)
    }

    fn build(&self, request: &FlowRequest, identity: &Identity) -> Flow {
        let mut flow = Flow::new(
            request,
            self.clock.now(),
            self.settings.lifespan,
            &self.settings.public_base,
            FlowState::Settings(SettingsState::ShowForm),
        );
        flow.identity_id = Some(identity.id);
        self.form(&mut flow, identity);
        flow
    }

    /// The profile form (filled with the current traits) and the password form.
    fn form(&self, flow: &mut Flow, identity: &Identity) {
        flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
        let schema =
            self.identities.schemas().get(&identity.schema_id).map(|s| s.raw.clone()).unwrap_or_default();
        let mut profile = trait_nodes(&schema, Group::Profile);
        for node in &mut profile {
            // Settings forms never force a field; the schema validates on submit.
            if let Some(map) = node.attributes.as_object_mut() {
                map.remove("required");
            }
        }
        flow.ui.nodes.extend(profile);
        super::show_traits(&mut flow.ui, &identity.traits);
        flow.ui.nodes.push(Node::submit(Group::Profile, "profile", text::label_save()));
        flow.ui.nodes.push(Node::password("new-password"));
        flow.ui.nodes.push(Node::submit(Group::Password, "password", text::label_save()));
    }

    fn privileged(&self, session: &Session) -> bool {
        self.clock.now() - session.authenticated_at <= self.settings.privileged_session_max_age
    }

    /// The caller has checked CSRF and that `session` owns the flow;
    /// `device` is where the request comes from (named in notices).
    pub async fn submit(
        &self,
        mut flow: Flow,
        session: &Session,
        submission: SettingsSubmission,
        device: &Device,
    ) -> Result<SettingsOutcome, FlowError> {
        // The session's identity comes without credentials; the rules need them.
        let identity = match self.identities.get(session.identity_id).await {
            Ok(identity) => identity,
            Err(IdentityError::NotFound) => return Err(FlowError::NotFound),
            Err(e) => return Err(FlowError::internal(e)),
        };
        if flow.is_expired(self.clock.now()) {
            let mut replacement = self.build(&flow.replacement_request(), &identity);
            replacement
                .ui
                .messages
                .push(text::settings_flow_expired(flow.expires_at, self.clock.now() - flow.expires_at));
            self.store.create_flow(&replacement).await?;
            return Err(FlowError::Expired {
                expired_at: flow.expires_at,
                replacement: Box::new(replacement),
            });
        }
        flow.ui.reset_messages();
        let (method, traits, password) = match submission {
            SettingsSubmission::Password { password } => {
                ("password", identity.traits.clone(), Some(password))
            }
            SettingsSubmission::Profile { traits } => ("profile", traits, None),
        };
        flow.active = Some(method.into());
        let facts = match self.identities.schemas().validate_traits(&identity.schema_id, &traits) {
            Ok(facts) => facts,
            Err(e) => {
                super::show_traits(&mut flow.ui, &traits);
                place_trait_error(&mut flow.ui, &e);
                return self.save(flow, SettingsOutcome::Rejected).await;
            }
        };
        let current_identifiers = identity
            .credential(crate::identity::CredentialType::Password)
            .map(|c| c.identifiers.clone())
            .unwrap_or_default();
        let changes_credentials = password.is_some() || facts.password_identifiers != current_identifiers;
        if changes_credentials && !self.privileged(session) {
            return self.save(flow, SettingsOutcome::RefreshRequired).await;
        }
        if let Some(password) = &password {
            if password.is_empty() {
                flow.ui.add_message(Some("password"), text::required("password"));
                return self.save(flow, SettingsOutcome::Rejected).await;
            }
            if let Err(v) =
                self.settings.password_policy.check(password.expose(), &facts.password_identifiers)
            {
                flow.ui.add_message(
                    Some("password"),
                    text::password_policy(v.message_id(), v.text(), v.context()),
                );
                return self.save(flow, SettingsOutcome::Rejected).await;
            }
        }

        let update = IdentityUpdate {
            schema_id: identity.schema_id.clone(),
            traits,
            state: identity.state,
            metadata_public: identity.metadata_public.clone(),
            metadata_admin: identity.metadata_admin.clone(),
            external_id: identity.external_id.clone(),
            password: password.map(PasswordInput::Plain),
            verifiable_addresses: Vec::new(),
        };
        let password_changed = method == "password";
        let notify =
            |before: &Identity, after: &Identity| self.notices(password_changed, device, before, after);
        let mut updated = match self.identities.replace_and_notify(identity.id, update, &notify).await {
            Ok(updated) => updated,
            Err(IdentityError::Conflict) => {
                flow.ui.messages.push(text::duplicate_credentials());
                return self.save(flow, SettingsOutcome::Rejected).await;
            }
            Err(IdentityError::Schema(e)) => {
                place_trait_error(&mut flow.ui, &e);
                return self.save(flow, SettingsOutcome::Rejected).await;
            }
            // Input the edge let through but storage cannot hold: the flow says so.
            Err(IdentityError::InvalidInput(reason)) => {
                flow.ui.messages.push(text::validation_generic(&reason));
                return self.save(flow, SettingsOutcome::Rejected).await;
            }
            Err(e) => return Err(FlowError::internal(e)),
        };
        if password_changed && self.settings.revoke_sessions_after_password {
            self.store.revoke_sessions_of(updated.id, Some(session.id), self.clock.now()).await?;
        }
        // A new or changed address starts unverified; prove it with a code.
        let verification = self
            .verification
            .send_for_identity(&flow, &mut updated, AddressPick::Pending)
            .await?
            .map(Box::new);
        self.form(&mut flow, &updated);
        flow.state = FlowState::Settings(SettingsState::Success);
        flow.ui.messages.push(text::settings_saved());
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(SettingsOutcome::Saved { flow, identity: Box::new(updated), verification })
    }

    async fn save(
        &self,
        mut flow: Flow,
        outcome: fn(Flow) -> SettingsOutcome,
    ) -> Result<SettingsOutcome, FlowError> {
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(outcome(flow))
    }
}
