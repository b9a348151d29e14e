//! `/schemas` and `/schemas/{id}`: the identity schemas UIs render forms from.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    // Kratos also serves the schemas under /admin on the public port.
    Router::new()
        .route("/schemas", get(list))
        .route("/schemas/{id}", get(show))
        .route("/admin/schemas", get(list))
        .route("/admin/schemas/{id}", get(show))
}

async fn list(State(state): State<AppState>) -> Json<Value> {
    let schemas = state.identities.schemas().all().map(|s| json!({"id": s.id, "schema": s.raw})).collect();
    Json(Value::Array(schemas))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    match state.identities.schemas().get(&id) {
        Some(schema) => Ok(Json(schema.raw.clone())),
        None => Err(ApiError::not_found("The requested resource could not be found")
            .with_reason(format!("Identity schema `{id}` could not be found."))),
    }
}
