//! The JSON shapes identities, sessions and flows take on the wire, as
//! Kratos serves them.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use latchkey_domain::flow::{Flow, FlowType};
use latchkey_domain::identity::{
    Credential, CredentialType, Identity, IdentityState, RecoveryAddress, VerifiableAddress,
};
use latchkey_domain::session::{AuthenticationMethod, Device, Session};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value, json};
use uuid::Uuid;

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

/// An identity on the wire. Fields are in alphabetical order, as they were
/// when this was a `serde_json` map; keep it so.
#[derive(Serialize)]
pub struct IdentityView<'a> {
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credentials: Option<BTreeMap<&'static str, CredentialView<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    external_id: Option<&'a str>,
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_admin: Option<&'a Value>,
    metadata_public: Option<&'a Value>,
    /// Kratos's; Latchkey has no organizations, so always `null`.
    organization_id: Option<Uuid>,
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "sorted")]
    recovery_addresses: &'a [RecoveryAddress],
    schema_id: &'a str,
    schema_url: String,
    state: IdentityState,
    #[serde(skip_serializing_if = "Option::is_none")]
    state_changed_at: Option<DateTime<Utc>>,
    traits: &'a Value,
    updated_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "<[_]>::is_empty", serialize_with = "sorted")]
    verifiable_addresses: &'a [VerifiableAddress],
}

#[derive(Serialize)]
struct CredentialView<'a> {
    /// Emptied unless the caller asked for this type's configuration.
    config: Cow<'a, Value>,
    created_at: DateTime<Utc>,
    identifiers: &'a [String],
    #[serde(rename = "type")]
    kind: CredentialType,
    updated_at: DateTime<Utc>,
    version: i32,
}

/// Domain types serialise their fields in declaration order; on the wire
/// they have always been sorted (they went through `serde_json::Value`).
pub(crate) fn sorted<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(value).map_err(serde::ser::Error::custom)?.serialize(serializer)
}

pub fn identity<'a>(
    identity: &'a Identity,
    urls: &BaseUrls,
    audience: Audience,
    credentials: &CredentialsView,
) -> IdentityView<'a> {
    let credentials = match credentials {
        CredentialsView::Omit => None,
        CredentialsView::Include(with_config) => Some(
            identity
                .credentials
                .values()
                .map(|c| (c.kind.as_str(), credential(c, with_config.contains(&c.kind))))
                .collect(),
        ),
    };
    IdentityView {
        created_at: identity.created_at,
        credentials,
        external_id: identity.external_id.as_deref(),
        id: identity.id,
        metadata_admin: identity.metadata_admin.as_ref().filter(|_| audience == Audience::Admin),
        metadata_public: identity.metadata_public.as_ref(),
        organization_id: None,
        recovery_addresses: &identity.recovery_addresses,
        schema_id: &identity.schema_id,
        schema_url: schema_url(urls, &identity.schema_id),
        state: identity.state,
        state_changed_at: identity.state_changed_at,
        traits: &identity.traits,
        updated_at: identity.updated_at,
        verifiable_addresses: &identity.verifiable_addresses,
    }
}

fn credential(c: &Credential, with_config: bool) -> CredentialView<'_> {
    // Second factors' configs hold their (sealed) secrets: never shown, even
    // when asked for (Kratos shows them).
    let with_config = with_config && !matches!(c.kind, CredentialType::Totp | CredentialType::LookupSecret);
    CredentialView {
        config: if with_config { Cow::Borrowed(&c.config) } else { Cow::Owned(Value::Object(Map::new())) },
        created_at: c.created_at,
        identifiers: &c.identifiers,
        kind: c.kind,
        updated_at: c.updated_at,
        version: c.version,
    }
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
    out.insert("state".into(), json!(flow.state.as_str()));
    if let Some(payload) = &flow.transient_payload {
        out.insert("transient_payload".into(), payload.clone());
    }
    if flow.kind() == FlowKind::Login {
        out.insert("refresh".into(), json!(flow.refresh));
        out.insert("requested_aal".into(), json!(flow.requested_aal));
        out.insert("created_at".into(), json!(flow.created_at));
        out.insert("updated_at".into(), json!(flow.updated_at));
    }
    if matches!(flow.kind(), FlowKind::Login | FlowKind::Registration) {
        out.insert("organization_id".into(), Value::Null);
    }
    Value::Object(out)
}

/// A session on the wire; fields in alphabetical order, as for identities.
#[derive(Serialize)]
pub struct SessionView<'a> {
    active: bool,
    authenticated_at: DateTime<Utc>,
    #[serde(serialize_with = "sorted")]
    authentication_methods: &'a [AuthenticationMethod],
    authenticator_assurance_level: &'a str,
    #[serde(serialize_with = "sorted")]
    devices: &'a [Device],
    expires_at: DateTime<Utc>,
    id: Uuid,
    /// Not expanded: the key is left out (the schema has no `null` identity).
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<IdentityView<'a>>,
    issued_at: DateTime<Utc>,
}

/// A session as it is at `now`; `identity` is `None` where the caller did
/// not ask for it.
pub fn session<'a>(
    session: &'a Session,
    identity: Option<&'a Identity>,
    urls: &BaseUrls,
    audience: Audience,
    with_devices: bool,
    now: DateTime<Utc>,
) -> SessionView<'a> {
    let identity_active = identity.is_none_or(|i| i.state == IdentityState::Active);
    SessionView {
        active: session.is_live(now) && identity_active,
        authenticated_at: session.authenticated_at,
        authentication_methods: &session.authentication_methods,
        authenticator_assurance_level: &session.aal,
        devices: if with_devices { &session.devices } else { &[] },
        expires_at: session.expires_at,
        id: session.id,
        identity: identity.map(|i| self::identity(i, urls, audience, &CredentialsView::Omit)),
        issued_at: session.issued_at,
    }
}

/// An item of a `continue_with` list: what the client should do next.
#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum ContinueWith {
    SetOrySessionToken { ory_session_token: String },
    ShowVerificationUi { flow: VerificationUi },
    RedirectBrowserTo { redirect_browser_to: String },
}

/// The verification flow a `show_verification_ui` item names.
#[derive(Serialize)]
pub struct VerificationUi {
    id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    verifiable_address: String,
}

impl ContinueWith {
    /// The verification UI page a `show_verification_ui` item links to.
    pub fn verification_url(&self) -> Option<&str> {
        match self {
            ContinueWith::ShowVerificationUi { flow } => flow.url.as_deref(),
            _ => None,
        }
    }
}

/// The `continue_with` item naming the verification flow a code went out
/// in; only browser flows get a UI `url`.
pub fn show_verification_ui(verification: &Flow, ui_url: &str) -> ContinueWith {
    let url =
        (verification.flow_type == FlowType::Browser).then(|| verification_ui_url(ui_url, verification));
    verification_ui(verification, url)
}

/// A `show_verification_ui` item with the given UI `url`, if any.
pub fn verification_ui(verification: &Flow, url: Option<String>) -> ContinueWith {
    ContinueWith::ShowVerificationUi {
        flow: VerificationUi {
            id: verification.id,
            url,
            verifiable_address: verification.state.code_address().unwrap_or_default().to_string(),
        },
    }
}

/// `<ui>?flow=<id>`, where a browser continues a verification flow.
pub fn verification_ui_url(ui_url: &str, verification: &Flow) -> String {
    format!("{ui_url}?flow={}", verification.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use latchkey_domain::identity::{AddressStatus, Via};

    fn fixture() -> (Identity, Session, BaseUrls) {
        let at = |s: i64| Utc.timestamp_opt(1_700_000_000 + s, 123_456_000).unwrap();
        let id = Uuid::from_u128(1);
        let mut credentials = BTreeMap::new();
        for (kind, n) in [(CredentialType::Password, 2u128), (CredentialType::Totp, 3)] {
            credentials.insert(
                kind,
                Credential {
                    id: Uuid::from_u128(n),
                    kind,
                    identifiers: vec!["a@b.co".into()],
                    config: json!({"hashed_password": "$2a$x", "b": [1, 2.5, null]}),
                    version: 1,
                    created_at: at(1),
                    updated_at: at(2),
                },
            );
        }
        let identity = Identity {
            id,
            schema_id: "default".into(),
            state: IdentityState::Active,
            state_changed_at: Some(at(3)),
            traits: json!({"email": "a@b.co", "name": {"last": "L", "first": "F"}}),
            metadata_public: Some(json!({"z": 1, "a": 2})),
            metadata_admin: Some(json!({"secret": true})),
            external_id: Some("ext-1".into()),
            credentials,
            verifiable_addresses: vec![VerifiableAddress {
                id: Uuid::from_u128(4),
                value: "a@b.co".into(),
                verified: true,
                via: Via::Email,
                status: AddressStatus::Completed,
                verified_at: Some(at(4)),
                created_at: at(5),
                updated_at: at(6),
            }],
            recovery_addresses: vec![RecoveryAddress {
                id: Uuid::from_u128(5),
                value: "a@b.co".into(),
                via: Via::Email,
                created_at: at(7),
                updated_at: at(8),
            }],
            available_aal: Default::default(),
            created_at: at(9),
            updated_at: at(10),
        };
        let session = Session {
            id: Uuid::from_u128(6),
            identity_id: id,
            active: true,
            issued_at: at(11),
            expires_at: at(1_000_000_000),
            authenticated_at: at(12),
            aal: "aal1".into(),
            authentication_methods: vec![AuthenticationMethod {
                method: "password".into(),
                aal: "aal1".into(),
                completed_at: at(13),
            }],
            devices: vec![Device {
                id: Uuid::from_u128(7),
                ip_address: Some("203.0.113.9".into()),
                user_agent: Some("UA".into()),
                location: None,
            }],
            token_hash: String::new(),
            logout_token_hash: String::new(),
            created_at: at(14),
            updated_at: at(15),
        };
        (identity, session, BaseUrls { public: "http://p".into(), admin: "http://a".into() })
    }

    /// Until these views were structs, every body went through a
    /// `serde_json` map, which sorts keys; the wire still has them sorted.
    fn assert_sorted(view: &impl Serialize) {
        let direct = serde_json::to_string(view).unwrap();
        assert_eq!(direct, serde_json::to_value(view).unwrap().to_string());
    }

    #[test]
    fn views_keep_their_keys_in_alphabetical_order() {
        let (ident, sess, urls) = fixture();
        let all = CredentialsView::Include([CredentialType::Password].into());
        assert_sorted(&identity(&ident, &urls, Audience::Admin, &all));
        assert_sorted(&session(&sess, Some(&ident), &urls, Audience::Admin, true, chrono::Utc::now()));
        assert_sorted(&vec![
            ContinueWith::SetOrySessionToken { ory_session_token: "t".into() },
            ContinueWith::ShowVerificationUi {
                flow: VerificationUi { id: ident.id, url: Some("u".into()), verifiable_address: "a".into() },
            },
            ContinueWith::RedirectBrowserTo { redirect_browser_to: "r".into() },
        ]);
    }

    #[test]
    fn absent_parts_are_left_out_or_null_as_before() {
        let (mut ident, sess, urls) = fixture();
        ident.metadata_public = None;
        ident.external_id = None;
        ident.verifiable_addresses.clear();
        let view =
            serde_json::to_value(identity(&ident, &urls, Audience::Public, &CredentialsView::Omit)).unwrap();
        assert_eq!((&view["metadata_public"], &view["organization_id"]), (&Value::Null, &Value::Null));
        for absent in ["metadata_admin", "credentials", "external_id", "verifiable_addresses"] {
            assert!(view.get(absent).is_none(), "{absent}");
        }
        let view =
            serde_json::to_value(session(&sess, None, &urls, Audience::Public, false, chrono::Utc::now()))
                .unwrap();
        assert!(view.get("identity").is_none());
        assert_eq!(view["devices"], json!([]));
        let with_config = CredentialsView::Include([CredentialType::Password].into());
        let view = serde_json::to_value(identity(&ident, &urls, Audience::Admin, &with_config)).unwrap();
        assert_eq!(view["credentials"]["password"]["config"]["b"], json!([1, 2.5, null]));
        assert_eq!(view["credentials"]["totp"]["config"], json!({}));
        // A second factor's config holds its sealed secret: never shown, even when asked for.
        let with_config = CredentialsView::Include([CredentialType::Totp].into());
        let view = serde_json::to_value(identity(&ident, &urls, Audience::Admin, &with_config)).unwrap();
        assert_eq!(view["credentials"]["totp"]["config"], json!({}));
        assert_eq!(view["credentials"]["totp"]["identifiers"], json!(["a@b.co"]));
    }
}
