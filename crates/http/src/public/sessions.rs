//! `/sessions/*`: who am I (the hottest path of any deployment), and the
//! signed-in user's view of their other sessions.

use axum::extract::{OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get};
use axum::{Json, Router};
use latchkey_domain::session_service::RevokeError;
use latchkey_domain::store::SessionQuery;
use serde_json::json;
use uuid::Uuid;

use super::flows::{current_session, current_session_hit};
use crate::aal::{aal2_required, step_up_url};
use crate::error::ApiError;
use crate::pagination::OffsetPage;
use crate::query::QueryParams;
use crate::state::AppState;
use crate::views::{self, Audience};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/sessions/whoami", any(whoami))
        .route("/sessions", get(list_mine).delete(revoke_others))
        .route("/sessions/{id}", delete(revoke_one))
}

pub fn no_session() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "The request could not be authorized")
        .with_reason("No valid session credentials were found in the request.")
}

fn session_inactive() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "The request could not be authorized")
        .with_id("session_inactive")
        .with_reason("This endpoint can only be used with a valid session. Please sign in and try again.")
}

// Takes the request whole: the `HeaderMap` extractor would copy every header.
async fn whoami(State(state): State<AppState>, request: Request) -> Result<Response, ApiError> {
    let hit = current_session_hit(&state, request.headers()).await?.ok_or_else(no_session)?;
    if !state.sessions.meets_whoami_aal(&hit.session, &hit.identity) {
        return Err(aal2_required(step_up_url(&state.urls.public, None, None)));
    }
    // Rendered once per cache entry: building and serialising the view is
    // most of what a cached whoami would otherwise cost. The entry is
    // replaced, never changed, when the session or identity changes.
    let body = hit.rendered(|session, identity| {
        let view =
            views::session(session, Some(identity), &state.urls, Audience::Public, true, state.clock.now());
        serde_json::to_vec(&view).expect("a JSON value serialises")
    });
    let mut response =
        ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_vec())
            .into_response();
    if let Ok(id) = HeaderValue::try_from(hit.identity.id.to_string()) {
        response.headers_mut().insert("x-kratos-authenticated-identity-id", id);
    }
    Ok(response)
}

async fn list_mine(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (current, identity) = current_session(&state, &headers).await?.ok_or_else(session_inactive)?;
    if !state.sessions.meets_whoami_aal(&current, &identity) {
        return Err(aal2_required(step_up_url(&state.urls.public, None, None)));
    }
    let params = QueryParams::parse(uri.query());
    let page = OffsetPage::from_params(&params)?;
    let query = SessionQuery {
        identity_id: Some(identity.id),
        active: Some(true),
        exclude: Some(current.id),
        offset: page.offset(),
        limit: page.size,
        ..Default::default()
    };
    let (sessions, total) = state.sessions.list(&query).await?;
    let now = state.clock.now();
    let body: Vec<_> = sessions
        .iter()
        .map(|s| views::session(s, Some(&identity), &state.urls, Audience::Public, true, now))
        .collect();
    let mut response = Json(body).into_response();
    page.headers(uri.path(), &params, total, response.headers_mut());
    Ok(response)
}

async fn revoke_others(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (current, identity) = current_session(&state, &headers).await?.ok_or_else(session_inactive)?;
    let count = state.sessions.revoke_all_of(identity.id, Some(current.id)).await?;
    Ok(Json(json!({ "count": count })).into_response())
}

async fn revoke_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let hit = current_session_hit(&state, &headers).await?.ok_or_else(session_inactive)?;
    let id = Uuid::parse_str(&id)
        .map_err(|_| ApiError::bad_request().with_reason("The session id is malformed."))?;
    match state.sessions.revoke_own(&hit.session, id).await? {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(RevokeError::Current) => Err(ApiError::bad_request()
            .with_reason("The current session cannot be revoked here; use the logout flow instead.")),
        Err(RevokeError::NotFound) => Err(ApiError::not_found("The requested resource could not be found")),
    }
}
