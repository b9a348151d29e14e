//! The admin API, served on its own listener: identities, sessions,
//! recovery codes, courier messages, health and version (the metrics scrape
//! is added in `lib.rs`).

mod courier;
pub(crate) mod health;
mod identities;
mod recovery;
mod sessions;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(courier::router())
        .merge(identities::router())
        .merge(sessions::router())
        .merge(recovery::router())
        .merge(health::router())
        .merge(health::config_router())
        .route(
            "/version",
            get(|axum::extract::State(state): axum::extract::State<AppState>| async move {
                Json(json!({ "version": state.version }))
            }),
        )
}
