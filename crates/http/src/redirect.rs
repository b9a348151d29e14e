//! Redirects Kratos's router makes: cross-port ones (307, so the method and
//! body are kept) for admin paths asked of the public port and self-service
//! paths asked of the admin port, and 301 from an unclean path (`//`, `.`,
//! `..` segments) to its clean form.

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
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

/// A path with repeated slashes or dot segments is answered 301 to its clean
/// form with the query kept, for every method, as Go's `ServeMux` under
/// Kratos does: SDKs given a base URL ending in `/` ask for
/// `//sessions/whoami` and follow the redirect.
pub async fn clean_path(request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if request.method() == Method::CONNECT {
        return next.run(request).await;
    }
    let clean = cleaned(path);
    if clean == path {
        return next.run(request).await;
    }
    let target = match request.uri().query() {
        Some(q) => format!("{clean}?{q}"),
        None => clean,
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response(),
        Err(e) => crate::ApiError::internal(e).into_response(),
    }
}

/// The path with empty and `.` segments dropped and `..` resolved (never
/// above the root), keeping a trailing slash (as Go's `cleanPath`).
fn cleaned(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut clean = String::with_capacity(path.len());
    for segment in &segments {
        clean.push('/');
        clean.push_str(segment);
    }
    if clean.is_empty() || (path.ends_with('/') && !segments.is_empty()) {
        clean.push('/');
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::cleaned;

    #[test]
    fn paths_are_cleaned_as_go_cleans_them() {
        for (raw, clean) in [
            ("/", "/"),
            ("", "/"),
            ("/sessions/whoami", "/sessions/whoami"),
            ("//sessions/whoami", "/sessions/whoami"),
            ("//self-service//registration/flows", "/self-service/registration/flows"),
            ("/sessions/whoami/", "/sessions/whoami/"),
            ("/a//b//", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
            ("/../../a", "/a"),
            ("/a/..", "/"),
            ("/a/b/..", "/a"),
            ("/a/./", "/a/"),
            ("//", "/"),
        ] {
            assert_eq!(cleaned(raw), clean, "{raw}");
        }
    }
}
