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
