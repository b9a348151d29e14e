//! The JSON shapes identities, sessions and flows take on the wire, as
//! Kratos serves them.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use latchkey_domain::identity::{Credential, CredentialType, Identity};
use serde_json::{Map, Value, json};

use crate::state::BaseUrls;

/// Which credentials an identity response carries.
pub enum CredentialsView {
    /// No `credentials` key (lists without `include_credential`).
    Omit,
    /// Every credential; `config` emptied except for the named types.
    Include(BTreeSet<CredentialType>),
}

/// Who is looking: `metadata_admin` is for the admin API only.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Admin,
    Public,
}

pub fn identity(
    identity: &Identity,
    urls: &BaseUrls,
    audience: Audience,
    credentials: &CredentialsView,
) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), json!(identity.id));
    out.insert("schema_id".into(), json!(identity.schema_id));
    out.insert("schema_url".into(), json!(schema_url(urls, &identity.schema_id)));
    out.insert("state".into(), json!(identity.state));
    if let Some(at) = identity.state_changed_at {
        out.insert("state_changed_at".into(), json!(at));
    }
    out.insert("traits".into(), identity.traits.clone());
    if !identity.verifiable_addresses.is_empty() {
        out.insert("verifiable_addresses".into(), json!(identity.verifiable_addresses));
    }
    if !identity.recovery_addresses.is_empty() {
        out.insert("recovery_addresses".into(), json!(identity.recovery_addresses));
    }
    out.insert("metadata_public".into(), identity.metadata_public.clone().unwrap_or(Value::Null));
    if let (Audience::Admin, Some(meta)) = (audience, &identity.metadata_admin) {
        out.insert("metadata_admin".into(), meta.clone());
    }
    if let CredentialsView::Include(with_config) = credentials {
        let creds: Map<String, Value> = identity
            .credentials
            .values()
            .map(|c| (c.kind.as_str().to_string(), credential(c, with_config.contains(&c.kind))))
            .collect();
        out.insert("credentials".into(), Value::Object(creds));
    }
    out.insert("created_at".into(), json!(identity.created_at));
    out.insert("updated_at".into(), json!(identity.updated_at));
    out.insert("organization_id".into(), Value::Null);
    if let Some(external_id) = &identity.external_id {
        out.insert("external_id".into(), json!(external_id));
    }
    Value::Object(out)
}

fn credential(c: &Credential, with_config: bool) -> Value {
    json!({
        "type": c.kind,
        "identifiers": c.identifiers,
        "config": if with_config { c.config.clone() } else { json!({}) },
        "version": c.version,
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    })
}

/// `<public base>/schemas/<base64url(id)>`, as Kratos links schemas.
pub fn schema_url(urls: &BaseUrls, schema_id: &str) -> String {
    format!("{}/schemas/{}", urls.public, URL_SAFE_NO_PAD.encode(schema_id))
}

/// A flow as the SDKs read it; login carries `refresh`/`requested_aal`.
pub fn flow(flow: &latchkey_domain::flow::Flow) -> Value {
    use latchkey_domain::flow::FlowKind;
    let mut out = Map::new();
    out.insert("id".into(), json!(flow.id));
    out.insert("type".into(), json!(flow.flow_type));
    out.insert("expires_at".into(), json!(flow.expires_at));
    out.insert("issued_at".into(), json!(flow.issued_at));
    out.insert("request_url".into(), json!(flow.request_url));
    if let Some(return_to) = &flow.return_to {
        out.insert("return_to".into(), json!(return_to));
    }
    if let Some(active) = &flow.active {
        out.insert("active".into(), json!(active));
    }
    out.insert("ui".into(), json!(flow.ui));
    out.insert("state".into(), json!(flow.state));
    if let Some(payload) = &flow.transient_payload {
        out.insert("transient_payload".into(), payload.clone());
    }
    if flow.kind == FlowKind::Login {
        out.insert("refresh".into(), json!(flow.refresh));
        out.insert("requested_aal".into(), json!(flow.requested_aal));
        out.insert("created_at".into(), json!(flow.created_at));
        out.insert("updated_at".into(), json!(flow.updated_at));
    }
    if matches!(flow.kind, FlowKind::Login | FlowKind::Registration) {
        out.insert("organization_id".into(), Value::Null);
    }
    Value::Object(out)
}

/// A session as it is at `now`; `identity` is `None` where the caller did not ask for it.
pub fn session(
    session: &latchkey_domain::session::Session,
    identity: Option<&Identity>,
    urls: &BaseUrls,
    audience: Audience,
    with_devices: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let identity_active =
        identity.is_none_or(|i| i.state == latchkey_domain::identity::IdentityState::Active);
    let mut out = json!({
        "id": session.id,
        "active": session.is_live(now) && identity_active,
        "expires_at": session.expires_at,
        "authenticated_at": session.authenticated_at,
        "authenticator_assurance_level": session.aal,
        "authentication_methods": session.authentication_methods,
        "issued_at": session.issued_at,
        "devices": if with_devices { json!(session.devices) } else { json!([]) },
    });
    // Not expanded: the key is left out (the schema has no `null` identity).
    if let Some(identity) = identity {
        out["identity"] = self::identity(identity, urls, audience, &CredentialsView::Omit);
    }
    out
}

/// The `continue_with` item naming the verification flow a code went out
/// in; only browser flows get a UI `url`.
pub fn show_verification_ui(verification: &latchkey_domain::flow::Flow, ui_url: &str) -> Value {
    let mut flow = json!({
        "id": verification.id,
        "verifiable_address": latchkey_domain::flow::code::flow_address(verification),
    });
    if verification.flow_type == latchkey_domain::flow::FlowType::Browser {
        flow["url"] = json!(format!("{ui_url}?flow={}", verification.id));
    }
    json!({ "action": "show_verification_ui", "flow": flow })
}
