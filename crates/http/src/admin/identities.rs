//! `/admin/identities`: create, read, list, replace, patch and delete
//! identities, in Kratos's identity shape (`views.rs`).

use std::collections::BTreeSet;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use latchkey_domain::identity::{
    AddressClaim, AddressStatus, CredentialType, IdentityState, IdentityUpdate, NewIdentity, PasswordInput,
    Via,
};
use latchkey_domain::store::IdentityQuery;
use latchkey_hash::SecretPassword;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::body::JsonBody;
use crate::error::{ApiError, ErrorObject};
use crate::pagination::KeysetPage;
use crate::query::QueryParams;
use crate::state::AppState;
use crate::views::{self, Audience, CredentialsView};

const DEFAULT_PAGE_SIZE: u32 = 250;
const MAX_PAGE_SIZE: u32 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/identities", get(list).post(create).patch(batch))
        .route("/identities/{id}", get(show).put(replace).patch(patch).delete(remove))
        .route("/identities/{id}/credentials/{type}", delete(remove_credential))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    schema_id: Option<String>,
    traits: Value,
    #[serde(default)]
    credentials: Option<CredentialsBody>,
    #[serde(default)]
    verifiable_addresses: Option<Vec<AddressBody>>,
    #[serde(default)]
    #[allow(dead_code)]
    recovery_addresses: Option<Vec<Value>>,
    #[serde(default)]
    metadata_public: Option<Value>,
    #[serde(default)]
    metadata_admin: Option<Value>,
    #[serde(default)]
    state: Option<IdentityState>,
    #[serde(default)]
    organization_id: Option<Value>,
    #[serde(default)]
    external_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    schema_id: String,
    traits: Value,
    state: IdentityState,
    #[serde(default)]
    credentials: Option<CredentialsBody>,
    #[serde(default)]
    metadata_public: Option<Value>,
    #[serde(default)]
    metadata_admin: Option<Value>,
    #[serde(default)]
    external_id: Option<String>,
}

/// Credentials an administrator may set. Types Latchkey does not support yet
/// are named so the client learns why instead of losing them silently.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    #[serde(default)]
    password: Option<PasswordBody>,
    #[serde(default)]
    oidc: Option<Value>,
    #[serde(default)]
    saml: Option<Value>,
    #[serde(default)]
    totp: Option<Value>,
    #[serde(default)]
    webauthn: Option<Value>,
    #[serde(default)]
    passkey: Option<Value>,
    #[serde(default)]
    lookup_secret: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    #[serde(default)]
    config: Option<PasswordConfigBody>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordConfigBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    hashed_password: Option<String>,
    #[serde(default)]
    use_password_migration_hook: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddressBody {
    value: String,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    status: Option<AddressStatus>,
    #[serde(default)]
    verified_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(default)]
    #[allow(dead_code)]
    id: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    created_at: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    updated_at: Option<Value>,
}

impl CredentialsBody {
    fn into_password(self) -> Result<Option<PasswordInput>, ApiError> {
        let unsupported = [
            ("oidc", self.oidc.is_some()),
            ("saml", self.saml.is_some()),
            ("totp", self.totp.is_some()),
            ("webauthn", self.webauthn.is_some()),
            ("passkey", self.passkey.is_some()),
            ("lookup_secret", self.lookup_secret.is_some()),
        ];
        if let Some((name, _)) = unsupported.iter().find(|(_, given)| *given) {
            return Err(ApiError::bad_request().with_reason(format!(
                "Importing `{name}` credentials is not supported by this server yet."
            )));
        }
        let Some(config) = self.password.and_then(|p| p.config) else {
            return Ok(None);
        };
        if config.use_password_migration_hook == Some(true) {
            return Err(ApiError::bad_request()
                .with_reason("The password migration hook is not supported by this server yet."));
        }
        Ok(
            match (
                config.password.filter(|p| !p.is_empty()),
                config.hashed_password.filter(|h| !h.is_empty()),
            ) {
                (Some(password), _) => Some(PasswordInput::Plain(SecretPassword::new(password))),
                (None, Some(hash)) => Some(PasswordInput::Hashed(hash)),
                (None, None) => None,
            },
        )
    }
}

fn claims(addresses: Option<Vec<AddressBody>>) -> Vec<AddressClaim> {
    addresses
        .unwrap_or_default()
        .into_iter()
        .map(|a| AddressClaim {
            via: a.via.unwrap_or_default(),
            value: a.value,
            verified: a.verified,
            status: a.status,
            verified_at: a.verified_at,
        })
        .collect()
}

fn password_of(credentials: Option<CredentialsBody>) -> Result<Option<PasswordInput>, ApiError> {
    credentials.map(CredentialsBody::into_password).transpose().map(Option::flatten)
}

fn identity_json(state: &AppState, identity: &latchkey_domain::Identity, view: &CredentialsView) -> Response {
    Json(views::identity(identity, &state.urls, Audience::Admin, view)).into_response()
}

/// Kratos answers unknown and malformed ids alike with 404.
fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("Unable to locate the resource"))
}

fn no_config() -> CredentialsView {
    CredentialsView::Include(BTreeSet::new())
}

async fn create(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response, ApiError> {
    let identity = create_one(&state, body).await?;
    let location = format!("{}/identities/{}", state.urls.admin, identity.id);
    let mut headers = HeaderMap::new();
    headers.insert(header::LOCATION, HeaderValue::from_str(&location).map_err(ApiError::internal)?);
    Ok((StatusCode::CREATED, headers, identity_json(&state, &identity, &no_config())).into_response())
}

async fn create_one(state: &AppState, body: CreateBody) -> Result<latchkey_domain::Identity, ApiError> {
    if body.organization_id.as_ref().is_some_and(|o| !o.is_null()) {
        return Err(ApiError::bad_request().with_reason("Organizations are not supported by this server."));
    }
    let new = NewIdentity {
        schema_id: body.schema_id.filter(|s| !s.is_empty()),
        traits: body.traits,
        state: body.state,
        metadata_public: body.metadata_public,
        metadata_admin: body.metadata_admin,
        external_id: body.external_id.filter(|s| !s.is_empty()),
        password: password_of(body.credentials)?,
        verifiable_addresses: claims(body.verifiable_addresses),
        ..Default::default()
    };
    Ok(state.identities.create(new).await?)
}

/// Batch import limits, as Kratos sets them: plaintext passwords cost a hash each.
const MAX_BATCH: usize = 1000;
const MAX_BATCH_PLAINTEXT: usize = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    identities: Vec<BatchItem>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchItem {
    #[serde(default)]
    create: Option<CreateBody>,
    #[serde(default)]
    patch_id: Option<Uuid>,
}

/// One line of a batch's answer; keys in alphabetical order after `action`.
#[derive(Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
enum BatchResult {
    Create { identity: Uuid, patch_id: Uuid },
    Error { error: ErrorObject, patch_id: Uuid },
}

/// `PATCH /admin/identities`: creates many identities; each succeeds or
/// fails on its own and the answer says which.
async fn batch(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<Json<Value>, ApiError> {
    if body.identities.len() > MAX_BATCH {
        return Err(
            ApiError::bad_request().with_reason(format!("A batch holds at most {MAX_BATCH} identities."))
        );
    }
    let plaintext = body
        .identities
        .iter()
        .filter_map(|i| i.create.as_ref()?.credentials.as_ref()?.password.as_ref()?.config.as_ref())
        .filter(|c| c.password.as_deref().is_some_and(|p| !p.is_empty()))
        .count();
    if plaintext > MAX_BATCH_PLAINTEXT {
        return Err(ApiError::bad_request().with_reason(format!(
            "A batch holds at most {MAX_BATCH_PLAINTEXT} identities with plaintext passwords; import hashes instead."
        )));
    }
    let mut results = Vec::with_capacity(body.identities.len());
    for item in body.identities {
        let patch_id = item.patch_id.unwrap_or_else(Uuid::new_v4);
        let Some(create) = item.create else {
            continue;
        };
        results.push(match create_one(&state, create).await {
            Ok(identity) => BatchResult::Create { identity: identity.id, patch_id },
            Err(e) => BatchResult::Error { error: e.error_object(), patch_id },
        });
    }
    Ok(Json(json!({ "identities": results })))
}

fn included_credentials(params: &QueryParams) -> Result<BTreeSet<CredentialType>, ApiError> {
    params
        .all("include_credential")
        .map(|t| {
            t.parse().map_err(|_| {
                ApiError::bad_request()
                    .with_reason(format!("Unknown credential type `{t}` in include_credential."))
            })
        })
        .collect()
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(query.as_deref());
    let view = CredentialsView::Include(included_credentials(&params)?);
    let identity = state.identities.get(parse_id(&id)?).await?;
    Ok(identity_json(&state, &identity, &view))
}

async fn list(
    State(state): State<AppState>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    // Offset pages are Kratos's deprecated style; serving page 1 for every
    // `page` would loop a client forever, so say so instead.
    if params.first("page").is_some_and(|p| !matches!(p, "" | "0" | "1")) {
        return Err(ApiError::bad_request().with_reason(
            "Offset pagination (page) is not supported; follow the page_token in the Link header.",
        ));
    }
    let page = KeysetPage::from_params(&params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let ids = params
        .all("ids")
        .map(|id| {
            Uuid::parse_str(id)
                .map_err(|_| ApiError::bad_request().with_reason(format!("Invalid id `{id}` in ids.")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if ids.len() > MAX_PAGE_SIZE as usize {
        return Err(ApiError::bad_request().with_reason("At most 500 ids may be requested at once."));
    }
    let credentials_identifier =
        params.first("credentials_identifier").filter(|s| !s.is_empty()).map(|s| s.trim().to_lowercase());
    if credentials_identifier.is_some() && !ids.is_empty() {
        return Err(ApiError::bad_request()
            .with_reason("The filters ids and credentials_identifier cannot be combined."));
    }
    if params.first("preview_credentials_identifier_similar").is_some() {
        return Err(ApiError::bad_request()
            .with_reason("preview_credentials_identifier_similar is not supported by this server."));
    }
    let included = included_credentials(&params)?;
    let view = if included.is_empty() && credentials_identifier.is_none() {
        CredentialsView::Omit
    } else {
        CredentialsView::Include(included)
    };

    // One extra row tells whether a next page exists.
    let query = IdentityQuery { after: page.after, limit: page.size + 1, credentials_identifier, ids };
    let mut identities = state.identities.list(&query).await?;
    let has_next = identities.len() > page.size as usize;
    identities.truncate(page.size as usize);

    let body: Vec<_> =
        identities.iter().map(|i| views::identity(i, &state.urls, Audience::Admin, &view)).collect();
    let mut response = Json(body).into_response();
    if let Some(link) = page.link(uri.path(), &params, identities.last().map(|i| i.id), has_next) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn replace(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let update = IdentityUpdate {
        schema_id: body.schema_id,
        traits: body.traits,
        state: body.state,
        metadata_public: body.metadata_public,
        metadata_admin: body.metadata_admin,
        external_id: body.external_id.filter(|s| !s.is_empty()),
        password: password_of(body.credentials)?,
        verifiable_addresses: Vec::new(),
    };
    let identity = state.identities.replace(id, update).await?;
    Ok(identity_json(&state, &identity, &no_config()))
}

async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(ops): JsonBody<Vec<Value>>,
) -> Result<Response, ApiError> {
    let identity = state.identities.patch(parse_id(&id)?, &ops).await?;
    Ok(identity_json(&state, &identity, &no_config()))
}

async fn remove(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    state.identities.delete(parse_id(&id)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `DELETE /admin/identities/{id}/credentials/{type}`: 204, or 404 when the
/// identity has no such credential, 400 for one that must stay.
async fn remove_credential(
    State(state): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state.identities.remove_credential(parse_id(&id)?, &kind).await?;
    Ok(StatusCode::NO_CONTENT)
}
