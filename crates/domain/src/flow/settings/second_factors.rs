//! The settings flow's second-factor methods, as Kratos's `totp` and
//! `lookup_secret` settings strategies behave: an identity without TOTP is
//! offered a key (QR code and base32) and links it with one of its codes;
//! one with TOTP may unlink it. Lookup codes are revealed, made anew
//! (shown, then saved on confirmation) or turned off. Every action needs a
//! privileged session. Secrets waiting in the form are sealed in the flow's
//! state and only put into the nodes for a response (`show_secrets`).

use serde_json::Value;

use super::{PendingFactors, SettingsOutcome, SettingsService, SettingsState};
use crate::flow::login_second_factor::AAL2;
use crate::flow::{Flow, FlowError, FlowState};
use crate::identity::{CredentialType, Identity, IdentityError};
use crate::second_factor::lookup::{self, ShownCode};
use crate::second_factor::totp::{self, TotpKey};
use crate::second_factor::{SecondFactorError, SecretCipher};
use crate::session::{AuthenticationMethod, Session};
use crate::text;
use crate::ui::{Group, Node};

/// A form's boolean: JSON `true`, or `"true"` from a browser form.
pub(super) fn flag(body: &Value, name: &str) -> bool {
    match body.get(name) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

/// What a lookup-secret button asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupAction {
    Confirm,
    Reveal,
    Disable,
    Regenerate,
}

impl LookupAction {
    /// The button sent; with several, Kratos's order decides.
    pub(super) fn read(body: &Value) -> Option<Self> {
        [
            (lookup::NODE_CONFIRM, LookupAction::Confirm),
            (lookup::NODE_REVEAL, LookupAction::Reveal),
            (lookup::NODE_DISABLE, LookupAction::Disable),
            (lookup::NODE_REGENERATE, LookupAction::Regenerate),
        ]
        .into_iter()
        .find(|(name, _)| flag(body, name))
        .map(|(_, action)| action)
    }
}

impl From<SecondFactorError> for FlowError {
    fn from(e: SecondFactorError) -> Self {
        match e {
            SecondFactorError::Store(e) => FlowError::Store(e),
            other => FlowError::internal(other),
        }
    }
}

/// What a pending secret is sealed against: this flow, and which secret.
fn context(flow: &Flow, what: &str) -> String {
    format!("settings:{}:{what}", flow.id)
}

fn pending_mut(flow: &mut Flow) -> Option<&mut PendingFactors> {
    match &mut flow.state {
        FlowState::Settings(SettingsState::ShowForm(p) | SettingsState::Success(p)) => Some(p),
        _ => None,
    }
}

fn pending(flow: &Flow) -> PendingFactors {
    match &flow.state {
        FlowState::Settings(state) => state.pending().clone(),
        _ => PendingFactors::default(),
    }
}

fn open_text(cipher: &SecretCipher, sealed: &str, context: &str) -> Result<String, SecondFactorError> {
    String::from_utf8(cipher.open(sealed, context)?)
        .map_err(|_| SecondFactorError::Corrupt("a sealed value is not text"))
}

/// Replaces the lookup-secret nodes with `nodes`, where the first of them was.
fn replace_lookup_nodes(flow: &mut Flow, nodes: Vec<Node>) {
    let at = flow.ui.nodes.iter().position(|n| n.group == Group::LookupSecret).unwrap_or(flow.ui.nodes.len());
    flow.ui.nodes.retain(|n| n.group != Group::LookupSecret);
    let at = at.min(flow.ui.nodes.len());
    flow.ui.nodes.splice(at..at, nodes);
}

impl SettingsService {
    /// The second factors' nodes for `identity`, and the secrets they offer
    /// sealed into the flow (a fresh TOTP key; no lookup codes pending).
    pub(super) fn second_factor_forms(&self, flow: &mut Flow, identity: &Identity) {
        let mut pending = PendingFactors::default();
        if self.second_factors.lookup.is_some() {
            let has_codes = identity.credential(CredentialType::LookupSecret).is_some();
            flow.ui.nodes.extend(lookup::initial_nodes(has_codes));
        }
        if let Some(totp) = &self.second_factors.totp {
            if identity.credential(CredentialType::Totp).is_some() {
                flow.ui.nodes.push(totp::unlink_node());
            } else {
                let facts = self.identities.schemas().validate_traits(&identity.schema_id, &identity.traits);
                let account = facts.ok().and_then(|f| f.totp_account_name);
                let key = totp.new_key(account.as_deref(), identity);
                pending.totp_key = Some(totp.cipher().seal(key.url().as_bytes(), &context(flow, "totp")));
                flow.ui.nodes.extend(totp::setup_nodes());
            }
        }
        if let Some(slot) = pending_mut(flow) {
            *slot = pending;
        }
    }

    /// Fills the nodes that show the form's pending secrets (the TOTP QR code
    /// and key, the listed lookup codes) for one response; the stored flow
    /// keeps only their sealed form.
    pub fn show_secrets(&self, flow: &mut Flow) -> Result<(), FlowError> {
        let pending = pending(flow);
        if let (Some(totp), Some(sealed)) = (&self.second_factors.totp, &pending.totp_key) {
            let url = open_text(totp.cipher(), sealed, &context(flow, "totp"))?;
            let key = TotpKey::from_url(&url)
                .ok_or(SecondFactorError::Corrupt("the pending TOTP key is malformed"))?;
            totp::fill_setup_nodes(&mut flow.ui.nodes, &key);
        }
        if let (Some(lookup), Some(sealed)) = (&self.second_factors.lookup, &pending.lookup_shown) {
            let list = open_text(lookup.cipher(), sealed, &context(flow, "lookup_shown"))?;
            let shown: Vec<ShownCode> = serde_json::from_str(&list)
                .map_err(|_| SecondFactorError::Corrupt("the listed lookup codes are malformed"))?;
            if let Some(node) = flow.ui.nodes.iter_mut().find(|n| n.id() == Some(lookup::NODE_CODES)) {
                let messages = std::mem::take(&mut node.messages);
                *node = lookup::codes_node(&shown);
                node.messages = messages;
            }
        }
        Ok(())
    }

    pub(super) async fn reload(&self, id: uuid::Uuid) -> Result<Identity, FlowError> {
        match self.identities.get(id).await {
            Ok(identity) => Ok(identity),
            Err(IdentityError::NotFound) => Err(FlowError::NotFound),
            Err(e) => Err(FlowError::internal(e)),
        }
    }

    /// A factor just set up was just proven, as Kratos counts it: the
    /// session gets the method at `aal2`, becomes `aal2` and counts as
    /// authenticated now; its expiry stays. A session that ended meanwhile
    /// is left alone.
    async fn authenticated_with(&self, session: &Session, method: &str) -> Result<(), FlowError> {
        let method =
            AuthenticationMethod { method: method.into(), aal: AAL2.into(), completed_at: self.clock.now() };
        self.store.complete_second_factor(session.id, &method, session.expires_at).await?;
        Ok(())
    }

    pub(super) async fn submit_totp(
        &self,
        mut flow: Flow,
        session: &Session,
        identity: &Identity,
        code: &str,
        unlink: bool,
    ) -> Result<SettingsOutcome, FlowError> {
        let Some(totp) = self.second_factors.totp.clone() else {
            flow.ui.messages.push(text::no_settings_method());
            return self.save(flow, SettingsOutcome::Rejected).await;
        };
        flow.active = Some("totp".into());
        if !self.privileged(session) {
            return self.save(flow, SettingsOutcome::RefreshRequired).await;
        }
        if identity.credential(CredentialType::Totp).is_some() {
            // Linked already: only unlinking changes anything, as in Kratos.
            if unlink {
                self.store.remove_credential(identity.id, CredentialType::Totp, self.clock.now()).await?;
            }
            let updated = self.reload(identity.id).await?;
            return self.saved(flow, updated, None).await;
        }
        let Some(sealed) = pending(&flow).totp_key else {
            // A form made while TOTP was off offers no key to confirm.
            flow.ui.messages.push(text::validation_generic(
                "This form offers no authenticator key; open the settings again to get one.",
            ));
            return self.save(flow, SettingsOutcome::Rejected).await;
        };
        let url = open_text(totp.cipher(), &sealed, &context(&flow, "totp"))?;
        let key =
            TotpKey::from_url(&url).ok_or(SecondFactorError::Corrupt("the pending TOTP key is malformed"))?;
        if code.trim().is_empty() {
            flow.ui.add_message(Some(totp::NODE_CODE), text::required(totp::NODE_CODE));
            return self.save(flow, SettingsOutcome::Rejected).await;
        }
        let Some(step) = key.matching_step(code, self.clock.now()) else {
            flow.ui.add_message(Some(totp::NODE_CODE), text::totp_code_wrong());
            return self.save(flow, SettingsOutcome::Rejected).await;
        };
        if !totp.link(identity, &key, step).await? {
            return Err(FlowError::NotFound);
        }
        self.authenticated_with(session, CredentialType::Totp.as_str()).await?;
        let updated = self.reload(identity.id).await?;
        self.saved(flow, updated, None).await
    }

    pub(super) async fn submit_lookup(
        &self,
        mut flow: Flow,
        session: &Session,
        identity: &Identity,
        action: LookupAction,
    ) -> Result<SettingsOutcome, FlowError> {
        let Some(lookup) = self.second_factors.lookup.clone() else {
            flow.ui.messages.push(text::no_settings_method());
            return self.save(flow, SettingsOutcome::Rejected).await;
        };
        flow.active = Some("lookup_secret".into());
        if !self.privileged(session) {
            return self.save(flow, SettingsOutcome::RefreshRequired).await;
        }
        match action {
            LookupAction::Confirm => {
                let Some(sealed) = pending(&flow).lookup_codes else {
                    flow.ui.messages.push(text::validation_generic(
                        "Make new backup recovery codes first; then they can be saved.",
                    ));
                    return self.save(flow, SettingsOutcome::Rejected).await;
                };
                let list = open_text(lookup.cipher(), &sealed, &context(&flow, "lookup_codes"))?;
                let codes: Vec<String> = serde_json::from_str(&list)
                    .map_err(|_| SecondFactorError::Corrupt("the pending lookup codes are malformed"))?;
                if !lookup.save(identity, &codes).await? {
                    return Err(FlowError::NotFound);
                }
                self.authenticated_with(session, CredentialType::LookupSecret.as_str()).await?;
                let updated = self.reload(identity.id).await?;
                self.saved(flow, updated, None).await
            }
            LookupAction::Disable => {
                self.store
                    .remove_credential(identity.id, CredentialType::LookupSecret, self.clock.now())
                    .await?;
                let updated = self.reload(identity.id).await?;
                self.saved(flow, updated, None).await
            }
            LookupAction::Reveal => {
                let Some(shown) = lookup.shown(identity).await? else {
                    flow.ui.messages.push(text::validation_generic(
                        "There are no backup recovery codes to show; make some first.",
                    ));
                    return self.save(flow, SettingsOutcome::Rejected).await;
                };
                let sealed = seal_json(lookup.cipher(), &shown, &context(&flow, "lookup_shown"));
                replace_lookup_nodes(&mut flow, lookup::revealed_nodes());
                if let Some(p) = pending_mut(&mut flow) {
                    p.lookup_shown = Some(sealed);
                }
                self.save(flow, SettingsOutcome::Shown).await
            }
            LookupAction::Regenerate => {
                let codes = lookup::generate();
                let shown: Vec<ShownCode> =
                    codes.iter().map(|code| ShownCode { code: code.clone(), used_at: None }).collect();
                let sealed_codes = seal_json(lookup.cipher(), &codes, &context(&flow, "lookup_codes"));
                let sealed_shown = seal_json(lookup.cipher(), &shown, &context(&flow, "lookup_shown"));
                replace_lookup_nodes(&mut flow, lookup::regenerated_nodes());
                if let Some(p) = pending_mut(&mut flow) {
                    p.lookup_codes = Some(sealed_codes);
                    p.lookup_shown = Some(sealed_shown);
                }
                self.save(flow, SettingsOutcome::Shown).await
            }
        }
    }
}

fn seal_json(cipher: &SecretCipher, value: &impl serde::Serialize, context: &str) -> String {
    cipher.seal(&serde_json::to_vec(value).expect("codes serialise"), context)
}
