//! `GET /self-service/errors?id=`: the error a browser was sent to the
//! error UI with (see `crate::error_ui`), in Kratos's `flowError` shape.

use axum::extract::{OriginalUri, State};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_domain::flow::errors::FlowErrorRecord;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::query::QueryParams;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/self-service/errors", get(fetch))
}

/// Kratos reads the id from `error` first (its older name), then `id`.
async fn fetch(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
) -> Result<Json<Value>, ApiError> {
    let params = QueryParams::parse(uri.query());
    let id =
        params.first("error").filter(|id| !id.is_empty()).or_else(|| params.first("id")).unwrap_or_default();
    match state.flow_errors.find(id).await? {
        Some(record) => Ok(Json(view(&record))),
        None => Err(ApiError::not_found("Unable to locate the resource")),
    }
}

fn view(record: &FlowErrorRecord) -> Value {
    json!({
        "id": record.id,
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    })
}
