//! Cross-port redirects (307, so the method and body are kept): admin paths
//! asked of the public port go to the admin port, and self-service paths
//! asked of the admin port go to the public port, as Kratos does.

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;

use crate::state::AppState;

/// Routes for the public router that belong to the admin API.
pub fn admin_paths_on_public() -> Router<AppState> {
    Router::new()
        .route("/identities", any(to_admin))
        .route("/identities/{*rest}", any(to_admin))
        .route("/admin/{*rest}", any(to_admin))
        .route("/recovery/{*rest}", any(to_admin))
}

/// Routes for the admin router that belong to the public API.
pub fn public_paths_on_admin() -> Router<AppState> {
    Router::new()
        .route("/self-service/{*rest}", any(to_public))
        .route("/schemas", any(to_public))
        .route("/schemas/{*rest}", any(to_public))
}

async fn to_admin(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path();
    let path = if path.starts_with("/admin/") { path.to_string() } else { format!("/admin{path}") };
    redirect(&state.urls.admin, &path, uri.query())
}

async fn to_public(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Response {
    let path = uri.path().strip_prefix("/admin").filter(|p| p.starts_with('/')).unwrap_or(uri.path());
    redirect(&state.urls.public, path, uri.query())
}

fn redirect(base: &str, path: &str, query: Option<&str>) -> Response {
    let target = match query {
        Some(q) => format!("{base}{path}?{q}"),
        None => format!("{base}{path}"),
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => (StatusCode::TEMPORARY_REDIRECT, [(header::LOCATION, location)]).into_response(),
        Err(e) => crate::ApiError::internal(e).into_response(),
    }
}
