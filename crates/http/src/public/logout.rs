//! `/self-service/logout*`: native apps revoke their token directly;
//! browsers fetch a logout URL (carrying a logout token) and follow it.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::flows::{self, checked_return_to};
use crate::body::JsonBody;
use crate::cookies;
use crate::error::ApiError;
use crate::query::QueryParams;
use crate::request::{cookie, wants_json};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/self-service/logout/api", delete(logout_api))
        .route("/self-service/logout/browser", get(logout_url))
        .route("/self-service/logout", get(logout_browser))
}

#[derive(Deserialize)]
struct LogoutBody {
    #[serde(default)]
    session_token: String,
}

async fn logout_api(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<LogoutBody>,
) -> Result<StatusCode, ApiError> {
    if body.session_token.is_empty() {
        return Err(
            ApiError::bad_request().with_reason("The session_token is missing from the request body.")
        );
    }
    if state.sessions.log_out(&body.session_token).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "The requested action was forbidden")
            .with_reason("The provided session token is not an active session."))
    }
}

/// A browser's logout URL; the logout token was minted with the session.
async fn logout_url(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let return_to = checked_return_to(&state, &params)?;
    let Some(token) = cookie(&headers, &state.web.session_cookie_name) else {
        return Err(inactive());
    };
    if !state.sessions.is_live(token).await? {
        return Err(inactive());
    }
    let logout_token = latchkey_domain::session::logout_token_for(token);
    let mut logout_url = format!("{}/self-service/logout?token={logout_token}", state.urls.public);
    if let Some(return_to) = return_to {
        logout_url.push_str("&return_to=");
        logout_url.push_str(&form_urlencoded::byte_serialize(return_to.as_bytes()).collect::<String>());
    }
    Ok(Json(json!({ "logout_url": logout_url, "logout_token": logout_token })).into_response())
}

fn inactive() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "The request could not be authorized")
        .with_id("session_inactive")
        .with_reason("There is no active session to log out of.")
}

async fn logout_browser(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let return_to = checked_return_to(&state, &params)?;
    let token = params.first("token").unwrap_or_default();
    if !state.sessions.log_out_with_logout_token(token).await? {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "The request could not be authorized")
            .with_reason("The logout token is invalid or was already used."));
    }
    let clear_session = cookies::clear(&state.web.cookies, &state.web.session_cookie_name);
    let clear_csrf = cookies::clear(&state.web.cookies, &state.web.csrf_cookie_name);
    let response = if wants_json(&headers) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        flows::see_other(return_to.as_deref().unwrap_or(&state.web.logout_return_url))
    };
    Ok(flows::with_cookie(flows::with_cookie(response, Some(clear_session)), Some(clear_csrf)))
}
