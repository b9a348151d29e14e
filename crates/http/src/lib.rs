//! Latchkey's HTTP surface: the public router (self-service, sessions,
//! schemas, health, the OpenAPI document, the built-in pages) and the admin router (identities,
//! sessions, recovery codes, courier messages, health, version, metrics),
//! speaking Ory Kratos's wire format so its SDKs and UIs work unchanged.

mod aal;
mod admin;
mod body;
mod client_ip;
mod cookies;
mod cors;
mod csrf;
mod edge;
mod error;
mod error_ui;
mod limits;
mod metrics;
mod nul;
mod pages;
mod pagination;
mod public;
mod query;
mod redirect;
mod request;
mod return_to;
mod send_limits;
mod state;
mod submit;
mod views;

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;

pub use admin::health::config_revision;
pub use client_ip::{Network, NetworkError, TrustedProxies};
pub use cors::{CorsError, CorsSettings, cors_layer};
pub use edge::{MAX_REQUEST_ID_LEN, REQUEST_ID_HEADER, RequestId, SpanHooks, current_request_id, edge};
pub use error::ApiError;
pub use limits::{
    BodyReadTimeout, DEFAULT_BODY_READ_TIMEOUT, MAX_ADMIN_BODY_BYTES, MAX_COOKIE_BYTES, MAX_JSON_DEPTH,
    MAX_PUBLIC_BODY_BYTES, MAX_QUERY_BYTES,
};
pub use metrics::Metrics;
pub use return_to::usable as allowed_return_url_is_usable;
pub use state::{AppState, BaseUrls, CookieSettings, Services, WebSettings};
#[doc(hidden)]
pub use submit::parse_submit_body;
pub use tower_http::cors::CorsLayer;

/// The parsers of request headers, public only for the fuzz targets.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::csrf::{
        hash as csrf_hash, is_valid_secret as csrf_is_valid_secret, mask as csrf_mask, verify as csrf_verify,
    };
    pub use crate::request::{cookie, cookies, device, session_token, wants_json};
}

/// The CSRF cookie name for a public base URL.
pub fn csrf_cookie_name(public_base_url: &str) -> String {
    csrf::cookie_name(public_base_url)
}

/// Admin request bodies larger than this are refused with 413; the public
/// API allows [`MAX_PUBLIC_BODY_BYTES`].
pub const MAX_BODY_BYTES: usize = MAX_ADMIN_BODY_BYTES;

/// The router served on `serve.public`.
pub fn public_router(state: AppState) -> Router {
    let flow_starts = middleware::from_fn_with_state(state.clone(), send_limits::flow_starts);
    let to_error_ui = middleware::from_fn_with_state(state.clone(), error_ui::forward);
    // A refused start stays a 429 with `Retry-After`, so the error UI is inside.
    let routes =
        public::router().route_layer(to_error_ui).route_layer(flow_starts).merge(pages::router(&state));
    finish(routes.merge(redirect::admin_paths_on_public()), state, MAX_PUBLIC_BODY_BYTES, "public")
}

/// The router served on `serve.admin`: every route answers with and without
/// the `/admin` prefix.
pub fn admin_router(state: AppState) -> Router {
    let routes = admin::router()
        .merge(redirect::public_paths_on_admin())
        .route("/metrics/prometheus", axum::routing::get(metrics::scrape));
    finish(Router::new().nest("/admin", routes.clone()).merge(routes), state, MAX_ADMIN_BODY_BYTES, "admin")
}

/// The router `courier watch --expose-metrics-port` serves: Kratos's
/// `/metrics/prometheus` and nothing else (other paths 404, as on the APIs).
pub fn courier_metrics_router(metrics: Arc<Metrics>, health: latchkey_domain::health::Health) -> Router {
    Router::new()
        .route("/metrics/prometheus", axum::routing::get(metrics::scrape_courier))
        .fallback(|| async { ApiError::not_found("The requested resource could not be found") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn(no_store_on_get))
        .with_state(metrics::CourierSource { metrics, health })
}

fn finish(router: Router<AppState>, state: AppState, body_limit: usize, api: &'static str) -> Router {
    let track = middleware::from_fn_with_state((state.metrics.clone(), metrics::Api(api)), metrics::track);
    router
        .fallback(|| async { ApiError::not_found("The requested resource could not be found") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(middleware::from_fn(no_store_on_get))
        .layer(middleware::from_fn(limits::bounded_request))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(Extension(limits::BodyLimit(body_limit)))
        // Wraps whichever route (or the fallback) the raw path matched, so
        // no handler sees an unclean path.
        .layer(middleware::from_fn(redirect::clean_path))
        // Outermost, so refusals by the layers above are counted too.
        .layer(track)
        .with_state(state)
}

/// Identity data must never sit in shared caches.
async fn no_store_on_get(request: Request, next: Next) -> Response {
    let is_get = request.method() == Method::GET;
    let mut response = next.run(request).await;
    if is_get {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache, no-store, must-revalidate"),
        );
    }
    response
}
