//! `/health/alive` (the process answers) and `/health/ready` (the database
//! answers too), on both listeners.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/health/alive", get(alive)).route("/health/ready", get(ready))
}

/// `GET /admin/health/config`: which configuration this server runs, as
/// Kratos answers it: the configuration's `revision` when it sets one, else
/// the hex SHA-256 of the loaded configuration. Admin listener only.
pub fn config_router() -> Router<AppState> {
    Router::new().route(
        "/health/config",
        get(|State(state): State<AppState>| async move {
            ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], state.config_revision.clone())
        }),
    )
}

/// The answer of `/admin/health/config` for a configuration: its own
/// `revision`, or the hex SHA-256 of `loaded` (the configuration as JSON).
pub fn config_revision(revision: Option<&str>, loaded: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    match revision.filter(|r| !r.is_empty()) {
        Some(revision) => revision.to_string(),
        None => Sha256::digest(loaded).iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// What both probes answer when healthy.
#[derive(Serialize)]
struct Health {
    status: &'static str,
}

const OK: Health = Health { status: "ok" };

async fn alive() -> Json<Health> {
    Json(OK)
}

async fn ready(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    match state.health.check_database().await {
        Ok(()) => Ok(Json(OK)),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "The service is not ready")
                .with_reason("The database is not reachable."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::config_revision;

    #[test]
    fn a_revision_names_the_config_else_its_digest_does() {
        assert_eq!(config_revision(Some("deploy-42"), b"{}"), "deploy-42");
        // An empty revision is none, as in Kratos.
        let digest = config_revision(Some(""), b"{\"dsn\":\"memory\"}");
        assert_eq!(digest, config_revision(None, b"{\"dsn\":\"memory\"}"));
        assert_eq!(digest.len(), 64);
        assert_ne!(digest, config_revision(None, b"{\"dsn\":\"sqlite://other\"}"));
        // SHA-256 of the empty input, to pin the algorithm and the encoding.
        assert_eq!(
            config_revision(None, b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
