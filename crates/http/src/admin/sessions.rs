//! `/admin/sessions` and `/admin/identities/{id}/sessions`: list, inspect,
//! revoke and extend any session.

use axum::extract::{OriginalUri, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch};
use axum::{Json, Router};
use latchkey_domain::identity::{Identity, IdentityError};
use latchkey_domain::store::SessionQuery;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
use crate::pagination::{KeysetPage, OffsetPage};
use crate::query::QueryParams;
use crate::state::AppState;
use crate::views::{self, Audience};

const DEFAULT_PAGE_SIZE: u32 = 250;
const MAX_PAGE_SIZE: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions", get(list))
        .route("/sessions/{id}", get(show).delete(disable))
        .route("/sessions/{id}/extend", patch(extend))
        .route("/identities/{id}/sessions", get(list_of_identity).delete(delete_of_identity))
}

fn parse_id(id: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("Unable to locate the resource"))
}

fn active_filter(params: &QueryParams) -> Result<Option<bool>, ApiError> {
    match params.first("active") {
        None | Some("") => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request().with_reason("The active parameter must be true or false.")),
    }
}

struct Expand {
    identity: bool,
    devices: bool,
}

fn expand(params: &QueryParams) -> Expand {
    Expand {
        identity: params.all("expand").any(|e| e == "identity"),
        devices: params.all("expand").any(|e| e == "devices"),
    }
}

async fn render(
    state: &AppState,
    session: &latchkey_domain::session::Session,
    expand: &Expand,
) -> Result<Value, ApiError> {
    let identity = if expand.identity { identity(state, session.identity_id).await? } else { None };
    let view = views::session(
        session,
        identity.as_ref(),
        &state.urls,
        Audience::Admin,
        expand.devices,
        state.clock.now(),
    );
    serde_json::to_value(view).map_err(ApiError::internal)
}

/// The identity, or `None` when it is gone.
async fn identity(state: &AppState, id: Uuid) -> Result<Option<Identity>, ApiError> {
    match state.identities.get(id).await {
        Ok(identity) => Ok(Some(identity)),
        Err(IdentityError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

async fn list(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let page = KeysetPage::from_params(&params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let query = SessionQuery {
        active: active_filter(&params)?,
        after: page.after,
        limit: page.size + 1,
        ..Default::default()
    };
    let mut sessions = state.sessions.page(&query).await?;
    let has_next = sessions.len() > page.size as usize;
    sessions.truncate(page.size as usize);
    let expand = expand(&params);
    let mut body = Vec::with_capacity(sessions.len());
    for session in &sessions {
        body.push(render(&state, session, &expand).await?);
    }
    let mut response = Json(body).into_response();
    if let Some(link) = page.link(uri.path(), &params, sessions.last().map(|s| s.id), has_next) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let params = QueryParams::parse(uri.query());
    let session = state
        .sessions
        .get(parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("Unable to locate the resource"))?;
    Ok(Json(render(&state, &session, &expand(&params)).await?))
}

async fn disable(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    if state.sessions.revoke(parse_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Unable to locate the resource"))
    }
}

async fn extend(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let session = state
        .sessions
        .extend(parse_id(&id)?)
        .await?
        .ok_or_else(|| ApiError::not_found("Unable to locate the resource"))?;
    let expand = Expand { identity: true, devices: true };
    Ok(Json(render(&state, &session, &expand).await?))
}

async fn list_of_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Result<Response, ApiError> {
    let identity_id = parse_id(&id)?;
    let identity = identity(&state, identity_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Unable to locate the resource"))?;
    let params = QueryParams::parse(uri.query());
    let page = OffsetPage::from_params(&params)?;
    let query = SessionQuery {
        identity_id: Some(identity_id),
        active: active_filter(&params)?,
        offset: page.offset(),
        limit: page.size,
        ..Default::default()
    };
    let (sessions, total) = state.sessions.list(&query).await?;
    let now = state.clock.now();
    let body: Vec<_> = sessions
        .iter()
        .map(|s| views::session(s, Some(&identity), &state.urls, Audience::Admin, true, now))
        .collect();
    let mut response = Json(body).into_response();
    page.headers(uri.path(), &params, total, response.headers_mut());
    Ok(response)
}

async fn delete_of_identity(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let identity_id = parse_id(&id)?;
    if state.sessions.delete_all_of(identity_id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Unable to locate the resource"))
    }
}
