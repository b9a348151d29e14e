//! The outer layers every request passes through, added in one place so
//! other concerns (metrics, …) stay easy to add beside them.

use axum::Router;
use tower_http::cors::CorsLayer;

/// Wraps a finished router. `Router::layer` wraps each route (and the
/// fallbacks), so preflight `OPTIONS` is answered on every path.
pub fn edge(router: Router, cors: Option<CorsLayer>) -> Router {
    match cors {
        Some(cors) => router.layer(cors),
        None => router,
    }
}
