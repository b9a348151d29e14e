//! The JSON shapes identities take on the wire (WIRE.md section 12).

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
