//! The settings flow: a signed-in identity changes its password (password
//! method) or its traits (profile method), and sets up or removes its
//! second factors (`second_factors.rs`). Changing a credential needs a
//! recent ("privileged") sign-in.

mod second_factors;

pub use second_factors::LookupAction;

use std::sync::Arc;

use chrono::Duration;
use latchkey_hash::SecretPassword;
use serde_json::Value;

use super::verification::{AddressPick, VerificationService};
use super::{Flow, FlowError, FlowRequest, FlowState, field, place_trait_error};
use crate::aal::AalPolicy;
use crate::courier::{Message, Renderer};
use crate::identity::{Identity, IdentityError, IdentityManager, IdentityUpdate, PasswordInput};
use crate::notice;
use crate::password_policy::PasswordPolicy;
use crate::second_factor::SecondFactors;
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
    /// What the session must reach to start, see or submit a settings flow.
    pub required_aal: AalPolicy,
}

/// Where a settings flow stands. Either way the form may hold second-factor
/// secrets waiting for the next submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingsState {
    ShowForm(PendingFactors),
    /// The last change was saved; the form stays usable.
    Success(PendingFactors),
}

impl SettingsState {
    pub fn pending(&self) -> &PendingFactors {
        match self {
            SettingsState::ShowForm(p) | SettingsState::Success(p) => p,
        }
    }
}

/// What a settings form holds for the second-factor methods between being
/// shown and submitted (Kratos keeps it in the flow's internal context),
/// each sealed with `secrets.cipher` and bound to the flow: a stored flow
/// gives none of them away. The nodes that show them are filled in per
/// response ([`SettingsService::show_secrets`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingFactors {
    /// The TOTP key offered to an identity without one (its otpauth URL).
    pub totp_key: Option<String>,
    /// The codes "regenerate" made, which "confirm" saves.
    pub lookup_codes: Option<String>,
    /// The codes the form lists (revealed, or just made) with spent marks.
    pub lookup_shown: Option<String>,
}

pub enum SettingsSubmission {
    Password {
        password: SecretPassword,
    },
    Profile {
        traits: Value,
    },
    /// Link a TOTP app by one of its codes, or unlink it.
    Totp {
        code: String,
        unlink: bool,
    },
    LookupSecret(LookupAction),
}

impl SettingsSubmission {
    /// The method that handles a submitted form, chosen by its `method`, or
    /// (as Kratos's strategies do) by a second-factor button sent without
    /// one; `None` when no method takes it. A profile form without traits
    /// keeps `current`.
    pub fn read(body: &Value, current: &Value) -> Option<Self> {
        let method = field(body, "method");
        match method {
            Some("password") => {
                return Some(SettingsSubmission::Password {
                    password: SecretPassword::new(field(body, "password").unwrap_or_default()),
                });
            }
            Some("profile") => {
                return Some(SettingsSubmission::Profile {
                    traits: body.get("traits").cloned().unwrap_or_else(|| current.clone()),
                });
            }
            _ => {}
        }
        let unlink = second_factors::flag(body, crate::second_factor::totp::NODE_UNLINK);
        if method == Some("totp") || unlink {
            let code = field(body, crate::second_factor::totp::NODE_CODE).unwrap_or_default().to_string();
            return Some(SettingsSubmission::Totp { code, unlink });
        }
        LookupAction::read(body).map(SettingsSubmission::LookupSecret)
    }
}

pub enum SettingsOutcome {
    Rejected(Flow),
    /// The form changed but nothing was saved (lookup codes revealed or
    /// made): shown again with 200, as Kratos returns to the UI.
    Shown(Flow),
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
    second_factors: SecondFactors,
    settings: Arc<SettingsSettings>,
}

impl SettingsService {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        identities: IdentityManager,
        renderer: Arc<dyn Renderer>,
        verification: VerificationService,
        second_factors: SecondFactors,
        settings: SettingsSettings,
    ) -> Self {
        Self {
            store,
            clock,
            identities,
            renderer,
            verification,
            second_factors,
            settings: Arc::new(settings),
        }
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
        // A session's identity comes without credentials; the second
        // factors' forms depend on them.
        let loaded;
        let identity = if self.second_factors.any() && identity.credentials.is_empty() {
            loaded = self.reload(identity.id).await?;
            &loaded
        } else {
            identity
        };
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
            FlowState::Settings(SettingsState::ShowForm(PendingFactors::default())),
        );
        flow.identity_id = Some(identity.id);
        self.form(&mut flow, identity);
        flow
    }

    /// The profile form (filled with the current traits), the password form
    /// and the second factors' forms, with fresh pending secrets.
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
        self.second_factor_forms(flow, identity);
    }

    /// Whether `session` may use settings at all
    /// (`selfservice.flows.settings.required_aal`); judged from the identity
    /// as loaded with the session.
    pub fn meets_required_aal(&self, session: &Session, identity: &Identity) -> bool {
        self.settings.required_aal.satisfied_by(session, identity)
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
            SettingsSubmission::Totp { code, unlink } => {
                return self.submit_totp(flow, session, &identity, &code, unlink).await;
            }
            SettingsSubmission::LookupSecret(action) => {
                return self.submit_lookup(flow, session, &identity, action).await;
            }
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
        self.saved(flow, updated, verification).await
    }

    /// A saved change: the form built afresh for the identity as it is now
    /// (new pending secrets too, as Kratos builds a new flow's), `success`.
    async fn saved(
        &self,
        mut flow: Flow,
        identity: Identity,
        verification: Option<Box<Flow>>,
    ) -> Result<SettingsOutcome, FlowError> {
        flow.state = FlowState::Settings(SettingsState::Success(PendingFactors::default()));
        self.form(&mut flow, &identity);
        flow.ui.messages.push(text::settings_saved());
        flow.updated_at = self.clock.now();
        self.store.update_flow(&flow).await?;
        Ok(SettingsOutcome::Saved { flow, identity: Box::new(identity), verification })
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
