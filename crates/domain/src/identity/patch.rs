//! JSON Patch (RFC 6902) over an identity's JSON form, as the admin API
//! offers it. Ids, credentials and timestamps are not patchable.

use serde::Deserialize;
use serde_json::{Value, json};

use super::manager::{AddressClaim, IdentityUpdate};
use super::model::{AddressStatus, Identity, IdentityState, Via};

const IMMUTABLE: [&str; 5] = ["/id", "/credentials", "/state_changed_at", "/created_at", "/updated_at"];

/// The patchable document: what an administrator may change.
fn document(identity: &Identity) -> Value {
    json!({
        "id": identity.id,
        "schema_id": identity.schema_id,
        "state": identity.state,
        "traits": identity.traits,
        "metadata_public": identity.metadata_public,
        "metadata_admin": identity.metadata_admin,
        "external_id": identity.external_id,
        "verifiable_addresses": identity.verifiable_addresses,
        "recovery_addresses": identity.recovery_addresses,
    })
}

#[derive(Deserialize)]
struct Patched {
    schema_id: String,
    state: IdentityState,
    traits: Value,
    metadata_public: Option<Value>,
    metadata_admin: Option<Value>,
    external_id: Option<String>,
    #[serde(default)]
    verifiable_addresses: Option<Vec<PatchedAddress>>,
}

#[derive(Deserialize)]
struct PatchedAddress {
    value: String,
    #[serde(default)]
    via: Via,
    #[serde(default)]
    verified: bool,
    status: Option<AddressStatus>,
    verified_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a patch was refused; the text is the client's answer.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the JSON Patch document is invalid: {0}")]
    Document(#[source] serde_json::Error),
    #[error("patch path `{path}` is immutable ({field} cannot be changed)")]
    Immutable { path: String, field: &'static str },
    #[error("the JSON Patch could not be applied: {0}")]
    Apply(#[source] json_patch::PatchError),
    #[error("the patched identity is invalid: {0}")]
    Result(#[source] serde_json::Error),
}

/// Returns the update the patch describes, or why not.
pub(super) fn apply(identity: &Identity, ops: &[Value]) -> Result<IdentityUpdate, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(Value::Array(ops.to_vec())).map_err(PatchError::Document)?;
    for op in &patch.0 {
        let path = op.path().to_string();
        if let Some(&field) = IMMUTABLE.iter().find(|p| path == **p || path.starts_with(&format!("{p}/"))) {
            return Err(PatchError::Immutable { path, field });
        }
    }
    let mut doc = document(identity);
    json_patch::patch(&mut doc, &patch).map_err(PatchError::Apply)?;
    let patched: Patched = serde_json::from_value(doc).map_err(PatchError::Result)?;
    Ok(IdentityUpdate {
        schema_id: patched.schema_id,
        traits: patched.traits,
        state: patched.state,
        metadata_public: patched.metadata_public,
        metadata_admin: patched.metadata_admin,
        external_id: patched.external_id,
        password: None,
        verifiable_addresses: patched
            .verifiable_addresses
            .unwrap_or_default()
            .into_iter()
            .map(|a| AddressClaim {
                via: a.via,
                value: a.value,
                verified: a.verified,
                status: a.status,
                verified_at: a.verified_at,
            })
            .collect(),
    })
}
