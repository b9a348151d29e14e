//! The public API: what browsers and apps call.

mod schemas;

use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().merge(schemas::router()).merge(crate::admin::health::router())
}
