//! Account recovery by emailed code: ask for an address, send a six-digit
//! code, and sign in whoever returns it, into a settings flow to set a new
//! password. Unknown addresses are answered exactly like known ones, codes
//! are stored only as keyed hashes, and wrong guesses are limited per flow
//! and per address across flows.

use std::sync::Arc;

use chrono::Duration;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::settings::SettingsService;
use super::{Flow, FlowError, FlowKind, FlowRequest};
use crate::courier::{Message, Renderer};
use crate::identity::{AddressClaim, Identity, IdentityManager, IdentityUpdate, Via};
use crate::schema::normalize;
use crate::session::{self, Device, IssuedSession};
use crate::store::{RecoveryCode, Store};
use crate::text;
use crate::time::now;
use crate::ui::{Group, Input, Node};

pub struct RecoverySettings {
    pub public_base: String,
    pub enabled: bool,
    pub lifespan: Duration,
    pub code_lifespan: Duration,
    /// Code attempts per flow; the next one replaces the flow.
    pub max_submissions: u64,
    /// Wrong codes per address across flows within `address_failure_window`.
    pub address_failure_limit: u64,
    pub address_failure_window: Duration,
    pub notify_unknown_recipients: bool,
    /// The first signs codes; every one verifies (rotation).
    pub secrets: Vec<String>,
    pub session_lifespan: Duration,
    /// How long the recovered session may change the password.
    pub privileged_session_max_age: Duration,
}

pub enum RecoverySubmission {
    SendCode { email: String },
    Code { code: String },
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
}

#[derive(Clone)]
pub struct RecoveryService {
    store: Arc<dyn Store>,
    identities: IdentityManager,
    renderer: Arc<dyn Renderer>,
    settings_flows: SettingsService,
    settings: Arc<RecoverySettings>,
}

type HmacSha256 = Hmac<Sha256>;

/// Whether `code` hashes to `stored` under any configured secret, so codes
/// issued before a key rotation keep working; compared in constant time.
fn code_matches(secrets: &[String], code: &str, stored: &str) -> bool {
    secrets.iter().any(|s| RecoveryService::hmac(s, code).as_bytes().ct_eq(stored.as_bytes()).into())
}

impl RecoveryService {
    pub fn new(
        store: Arc<dyn Store>,
        identities: IdentityManager,
        renderer: Arc<dyn Renderer>,
        settings_flows: SettingsService,
        settings: RecoverySettings,
    ) -> Self {
        Self { store, identities, renderer, settings_flows, settings: Arc::new(settings) }
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
            FlowKind::Recovery,
            request,
            self.settings.lifespan,
            &self.settings.public_base,
            "choose_method",
        );
        flow.active = Some("code".into());
        let email = Input {
            name: "email",
            input_type: "email",
            group: Group::Code,
            value: None,
            required: true,
            autocomplete: Some("email"),
            label: Some(text::label_email()),
        };
        flow.ui.nodes.push(email.into_node());
        flow.ui.nodes.push(Node::submit(Group::Code, "code", text::label_continue()));
        flow
    }

    /// The form once a code is on its way: the code input, and a resend button.
    fn code_form(&self, flow: &mut Flow, email: &str) {
        flow.ui.nodes.retain(|n| n.name() == Some("csrf_token"));
        let mut code = Input {
            name: "code",
            input_type: "text",
            group: Group::Code,
            value: None,
            required: true,
            autocomplete: Some("one-time-code"),
            label: Some(text::label_recovery_code()),
        }
        .into_node();
        code.attributes["pattern"] = json!("[0-9]+");
        code.attributes["maxlength"] = json!(6);
        flow.ui.nodes.push(code);
        let hidden = Input {
            name: "method",
            input_type: "hidden",
            group: Group::Code,
            value: Some(json!("code")),
            required: false,
            autocomplete: None,
            label: None,
        };
        flow.ui.nodes.push(hidden.into_node());
        flow.ui.nodes.push(Node::submit(Group::Code, "code", text::label_continue()));
        let mut resend = Node::submit(Group::Code, "code", text::label_resend_code());
        resend.attributes["name"] = json!("email");
        resend.attributes["value"] = json!(email);
        flow.ui.nodes.push(resend);
    }

    fn hmac(secret: &str, code: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }

    fn matches(&self, code: &str, stored: &str) -> bool {
        code_matches(&self.settings.secrets, code, stored)
    }

    fn new_code() -> String {
        // Rejection sampling over 20 bits keeps all 10^6 codes equally likely.
        loop {
            let mut bytes = [0u8; 4];
            getrandom::fill(&mut bytes).expect("the OS random source is available");
            let n = u32::from_le_bytes(bytes) & 0xF_FFFF;
            if n < 1_000_000 {
                return format!("{n:06}");
            }
        }
    }

    pub async fn submit(
        &self,
        mut flow: Flow,
        submission: RecoverySubmission,
        device: Device,
    ) -> Result<RecoveryOutcome, FlowError> {
        if flow.is_expired() {
            let mut replacement = self.build(&flow.replacement_request());
            replacement
                .ui
                .messages
                .push(text::recovery_flow_expired(flow.expires_at, now() - flow.expires_at));
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
        let mut flow =
            Flow::new(FlowKind::Recovery, request, lifespan, &self.settings.public_base, "sent_email");
        flow.active = Some("code".into());
        let address = identity.recovery_addresses.first().map(|a| a.value.clone()).unwrap_or_default();
        self.code_form(&mut flow, &address);
        flow.ui.nodes.retain(|n| n.name() != Some("csrf_token") && n.name() != Some("email"));
        flow.internal = json!({ "address": address, "submit_count": 0, "admin": true });
        let code = Self::new_code();
        let stored = RecoveryCode {
            id: Uuid::new_v4(),
            flow_id: flow.id,
            identity_id: Some(identity.id),
            address,
            code_hmac: Self::hmac(&self.settings.secrets[0], &code),
            expires_at: flow.expires_at,
            used_at: None,
            created_at: now(),
        };
        self.store.create_flow(&flow).await?;
        self.store.create_recovery_code(&stored, None).await?;
        Ok((flow, code))
    }

    async fn send_code(&self, mut flow: Flow, email: String) -> Result<RecoveryOutcome, FlowError> {
        let address = normalize(&email, Via::Email);
        if address.is_empty() {
            flow.ui.add_message(Some("email"), text::required("email"));
            return self.save(flow, RecoveryOutcome::Rejected).await;
        }
        let identity = self.store.identity_by_recovery_address(Via::Email.as_str(), &address).await?;
        let code = Self::new_code();
        let minutes = self.settings.code_lifespan.num_minutes();
        let mut data = Map::new();
        data.insert("To".into(), json!(address));
        let message = match &identity {
            Some(identity) => {
                data.insert("RecoveryCode".into(), json!(code));
                data.insert("ExpiresInMinutes".into(), json!(minutes));
                data.insert("Identity".into(), json!({ "id": identity.id, "traits": identity.traits }));
                Some(self.render(&address, "recovery_code_valid", &data)?)
            }
            None if self.settings.notify_unknown_recipients => {
                Some(self.render(&address, "recovery_code_invalid", &data)?)
            }
            None => None,
        };
        // Unknown addresses store a code too (one that recovers nothing), so
        // both paths do the same work and take the same time.
        let stored = RecoveryCode {
            id: Uuid::new_v4(),
            flow_id: flow.id,
            identity_id: identity.as_ref().map(|i| i.id),
            address: address.clone(),
            code_hmac: Self::hmac(&self.settings.secrets[0], &code),
            expires_at: now() + self.settings.code_lifespan,
            used_at: None,
            created_at: now(),
        };
        self.store.create_recovery_code(&stored, message.as_ref()).await?;
        let submit_count = flow.internal.get("submit_count").and_then(Value::as_u64).unwrap_or(0);
        flow.internal = json!({ "address": address, "submit_count": submit_count });
        flow.state = "sent_email".into();
        self.code_form(&mut flow, &address);
        flow.ui.messages.push(text::recovery_code_sent());
        self.save(flow, RecoveryOutcome::Updated).await
    }

    fn render(&self, to: &str, template: &str, data: &Map<String, Value>) -> Result<Message, FlowError> {
        let rendered = self.renderer.render(template, data).map_err(FlowError::Internal)?;
        Ok(Message::new(to, rendered, template))
    }

    async fn check_code(
        &self,
        mut flow: Flow,
        code: String,
        device: Device,
    ) -> Result<RecoveryOutcome, FlowError> {
        let address = flow.internal.get("address").and_then(Value::as_str).unwrap_or_default().to_string();
        // Counted before checking: a correct sixth guess is refused too.
        let submit_count = flow.internal.get("submit_count").and_then(Value::as_u64).unwrap_or(0) + 1;
        flow.internal["submit_count"] = json!(submit_count);
        if submit_count > self.settings.max_submissions {
            return self
                .replace(flow, "The request was submitted too often. Please request another code.")
                .await;
        }
        let since = now() - self.settings.address_failure_window;
        let blocked = !address.is_empty()
            && self.store.count_recovery_failures(&address, since).await?
                >= self.settings.address_failure_limit;
        let live = self.store.live_recovery_codes(flow.id, now()).await?;
        let found = live.iter().find(|c| c.identity_id.is_some() && self.matches(code.trim(), &c.code_hmac));
        let Some(found) = found.filter(|_| !blocked) else {
            if !address.is_empty() {
                self.store.record_recovery_failure(&address, now()).await?;
            }
            flow.ui.messages.push(text::recovery_code_invalid());
            return self.save(flow, RecoveryOutcome::Updated).await;
        };
        if !self.store.use_recovery_code(found.id, now()).await? {
            return self.replace(flow, "The code was already used. Please request another code.").await;
        }
        let identity_id = found.identity_id.expect("filtered to codes with an identity");
        let identity =
            self.identities.get(identity_id).await.map_err(|e| FlowError::Internal(e.to_string()))?;
        // Getting the code proves the address; admin-issued codes prove nothing.
        let identity = if flow.internal.get("admin").is_none() {
            self.mark_verified(identity, &found.address).await?
        } else {
            identity
        };

        let issued = session::issue(identity.id, "code_recovery", self.settings.session_lifespan, device);
        self.store.create_session(&issued.session).await?;
        let mut request = flow.replacement_request();
        if let Some(return_to) = &flow.return_to {
            request.request_url = return_to.clone();
        }
        let mut settings_flow = self.settings_flows.create(&request, &identity).await?;
        settings_flow.ui.messages.push(text::recovered(now() + self.settings.privileged_session_max_age));
        self.store.update_flow(&settings_flow).await?;
        flow.state = "passed_challenge".into();
        flow.ui.messages.clear();
        flow.updated_at = now();
        self.store.update_flow(&flow).await?;
        Ok(RecoveryOutcome::Recovered {
            flow: Box::new(flow),
            issued,
            settings_flow: Box::new(settings_flow),
        })
    }

    async fn mark_verified(&self, identity: Identity, address: &str) -> Result<Identity, FlowError> {
        let already = identity.verifiable_addresses.iter().any(|a| a.value == address && a.verified);
        let verifiable = identity.verifiable_addresses.iter().any(|a| a.value == address);
        if already || !verifiable {
            return Ok(identity);
        }
        let update = IdentityUpdate {
            schema_id: identity.schema_id.clone(),
            traits: identity.traits.clone(),
            state: identity.state,
            metadata_public: identity.metadata_public.clone(),
            metadata_admin: identity.metadata_admin.clone(),
            external_id: identity.external_id.clone(),
            password: None,
            verifiable_addresses: vec![AddressClaim {
                via: Via::Email,
                value: address.to_string(),
                verified: true,
                status: None,
                verified_at: None,
            }],
        };
        self.identities.replace(identity.id, update).await.map_err(|e| FlowError::Internal(e.to_string()))
    }

    async fn replace(&self, mut old: Flow, reason: &'static str) -> Result<RecoveryOutcome, FlowError> {
        let mut replacement = self.build(&old.replacement_request());
        replacement.ui.messages.push(text::validation_generic(reason));
        self.store.create_flow(&replacement).await?;
        // The old flow is spent.
        old.expires_at = now();
        old.updated_at = now();
        self.store.update_flow(&old).await?;
        Ok(RecoveryOutcome::Replaced { replacement: Box::new(replacement), reason })
    }

    async fn save(
        &self,
        mut flow: Flow,
        outcome: fn(Flow) -> RecoveryOutcome,
    ) -> Result<RecoveryOutcome, FlowError> {
        flow.updated_at = now();
        self.store.update_flow(&flow).await?;
        Ok(outcome(flow))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_keyed_hashes_that_survive_key_rotation() {
        let old = "the-old-secret-0123456789".to_string();
        let new = "the-new-secret-0123456789".to_string();
        let stored = RecoveryService::hmac(&old, "123456");
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains("123456"));
        // After rotation the new secret signs, the old one still verifies.
        assert!(code_matches(&[new.clone(), old.clone()], "123456", &stored));
        assert!(!code_matches(std::slice::from_ref(&new), "123456", &stored));
        assert!(!code_matches(&[new, old], "654321", &stored));
        let code = RecoveryService::new_code();
        assert!(code.len() == 6 && code.chars().all(|c| c.is_ascii_digit()));
    }
}
