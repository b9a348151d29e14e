//! The public API: what browsers and apps call.

mod errors;
pub(crate) mod flows;
mod login;
mod logout;
mod openapi;
mod recovery;
mod registration;
mod schemas;
pub(crate) mod sessions;
pub(crate) mod settings;
mod verification;

use axum::Router;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .merge(schemas::router())
        .merge(login::router())
        .merge(registration::router())
        .merge(sessions::router())
        .merge(settings::router())
        .merge(recovery::router())
        .merge(verification::router())
        .merge(logout::router())
        .merge(errors::router())
        .merge(openapi::router())
        .merge(crate::admin::health::router())
}
