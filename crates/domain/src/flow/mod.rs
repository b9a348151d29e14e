//! The flow core every self-service flow shares: identity of the flow,
//! lifetime, where it came from and where it returns to, and the form (UI
//! container). Where each flow stands is its typed state (`state.rs`); each
//! flow module builds on these.

pub mod code;
pub mod code_requests;
pub mod errors;
pub mod login;
pub mod login_code;
pub mod login_floor;
pub mod login_second_factor;
pub mod login_throttle;
pub mod recovery;
pub mod registration;
pub mod registration_code;
pub mod settings;
pub mod state;
pub mod verification;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub use state::FlowState;

use crate::ui::{Container, Node};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowKind {
    Login,
    Registration,
    Recovery,
    Verification,
    Settings,
}

impl FlowKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlowKind::Login => "login",
            FlowKind::Registration => "registration",
            FlowKind::Recovery => "recovery",
            FlowKind::Verification => "verification",
            FlowKind::Settings => "settings",
        }
    }
}

/// Native apps (`api`) or browsers (`browser`, with cookies and CSRF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowType {
    Api,
    Browser,
}

/// A self-service flow as stored. The wire shape is built by the HTTP layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub id: Uuid,
    pub flow_type: FlowType,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub request_url: String,
    pub return_to: Option<String>,
    /// Where verification flows that this flow's hooks start return to
    /// (`after_verification_return_to`), when not `return_to`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_verification_return_to: Option<String>,
    pub active: Option<String>,
    pub ui: Container,
    /// The step the flow is at, with that step's data; also says the kind.
    #[serde(flatten)]
    pub state: FlowState,
    /// SHA-256 of the browser's CSRF cookie secret; `None` for API flows.
    pub csrf_hash: Option<String>,
    /// Login: re-authenticate even with a valid session.
    #[serde(default)]
    pub refresh: bool,
    #[serde(default = "aal1")]
    pub requested_aal: String,
    /// Settings (and refresh logins): whose flow this is.
    #[serde(default)]
    pub identity_id: Option<Uuid>,
    #[serde(default)]
    pub transient_payload: Option<Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn aal1() -> String {
    "aal1".into()
}

/// What every new flow needs to know about the request that started it.
#[derive(Debug, Clone)]
pub struct FlowRequest {
    pub flow_type: FlowType,
    /// The full URL of the init request, query included.
    pub request_url: String,
    /// Already checked against `selfservice.allowed_return_urls`.
    pub return_to: Option<String>,
    /// Checked likewise.
    pub after_verification_return_to: Option<String>,
    /// SHA-256 of the CSRF cookie secret (browser flows).
    pub csrf_hash: Option<String>,
}

impl Flow {
    /// A fresh flow in `state` (which says its kind), issued `at`, whose
    /// form posts to `action_base`.
    pub fn new(
        request: &FlowRequest,
        at: DateTime<Utc>,
        lifespan: Duration,
        action_base: &str,
        state: FlowState,
    ) -> Flow {
        let kind = state.kind();
        let id = Uuid::new_v4();
        let mut ui = Container::new(format!("{action_base}/self-service/{}?flow={id}", kind.as_str()));
        // Stored empty: the masked token is rendered per response, and a
        // stored one would reveal the cookie's secret to anyone reading flows.
        ui.nodes.push(Node::csrf(""));
        Flow {
            id,
            flow_type: request.flow_type,
            issued_at: at,
            expires_at: at + lifespan,
            request_url: request.request_url.clone(),
            return_to: request.return_to.clone(),
            after_verification_return_to: request.after_verification_return_to.clone(),
            active: None,
            ui,
            state,
            csrf_hash: request.csrf_hash.clone(),
            refresh: false,
            requested_aal: aal1(),
            identity_id: None,
            transient_payload: None,
            created_at: at,
            updated_at: at,
        }
    }

    pub fn kind(&self) -> FlowKind {
        self.state.kind()
    }

    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at <= now
    }

    /// How to start a flow that replaces this one (same client, same CSRF cookie).
    pub fn replacement_request(&self) -> FlowRequest {
        FlowRequest {
            flow_type: self.flow_type,
            request_url: self.request_url.clone(),
            return_to: self.return_to.clone(),
            after_verification_return_to: self.after_verification_return_to.clone(),
            csrf_hash: self.csrf_hash.clone(),
        }
    }

    /// Made by an administrator (`POST /admin/recovery/code`): the person
    /// handed the code has no cookie the flow could be bound to, so the
    /// flow is submitted without the CSRF check, as Kratos does.
    pub fn admin_issued(&self) -> bool {
        use recovery::RecoveryState;
        matches!(
            self.state,
            FlowState::Recovery(
                RecoveryState::SentEmail { admin_issued: true, .. }
                    | RecoveryState::PassedChallenge { admin_issued: true }
            )
        )
    }

    /// Puts a freshly masked CSRF token into the form before it is shown.
    pub fn set_csrf_token(&mut self, token: &str) {
        self.ui.set_value("csrf_token", Value::String(token.into()));
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("flow not found")]
    NotFound,
    /// Submitted after `expires_at`; `replacement` is a fresh flow of the same kind.
    #[error("flow expired")]
    Expired { expired_at: DateTime<Utc>, replacement: Box<Flow> },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Something that should not fail did; the cause is kept for the log.
    #[error("{0}")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl FlowError {
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(cause.into())
    }
}

/// Reads flows of any kind by id, for the routes every flow shares (fetch,
/// the submit's first step), so handlers need no store.
#[derive(Clone)]
pub struct Flows {
    store: std::sync::Arc<dyn crate::store::Store>,
}

impl Flows {
    pub fn new(store: std::sync::Arc<dyn crate::store::Store>) -> Self {
        Self { store }
    }

    /// The flow of `kind` with this id; see [`load`].
    pub async fn load(&self, id: Uuid, kind: FlowKind) -> Result<Flow, FlowError> {
        load(self.store.as_ref(), id, kind).await
    }
}

/// Loads a flow of `kind`; flows of another kind are as good as missing.
pub async fn load(store: &dyn crate::store::Store, id: Uuid, kind: FlowKind) -> Result<Flow, FlowError> {
    match store.get_flow(id).await? {
        Some(flow) if flow.kind() == kind => Ok(flow),
        _ => Err(FlowError::NotFound),
    }
}

/// A text field of a submitted form (JSON, or a browser form already turned
/// into JSON).
pub fn field<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// Values shown back in the form after a failed submit; passwords never are.
pub fn show_traits(ui: &mut Container, traits: &Value) {
    let mut values = Vec::new();
    crate::ui::flatten("traits", traits, &mut values);
    for (name, value) in values {
        ui.set_value(&name, value);
    }
}

/// Where a schema-validation failure belongs in the form.
pub fn place_trait_error(ui: &mut Container, error: &crate::schema::SchemaError) {
    use crate::schema::SchemaError;
    match error {
        SchemaError::TraitsInvalid { pointer, missing: Some(property), .. } => {
            let node = format!("{}.{property}", pointer.trim_start_matches('/').replace('/', "."));
            ui.add_message(Some(&node), crate::text::required(property));
        }
        SchemaError::TraitsInvalid { pointer, reason, .. } => {
            let node = pointer.trim_start_matches('/').replace('/', ".");
            let detail = reason.rsplit("] ").next().unwrap_or(reason);
            ui.add_message(Some(&node), crate::text::validation_generic(detail));
        }
        other => ui.messages.push(crate::text::validation_generic(&other.to_string())),
    }
}
