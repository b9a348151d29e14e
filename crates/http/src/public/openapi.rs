//! `/.well-known/ory/openapi.json`: the OpenAPI 3 document of the operations
//! Latchkey serves (Kratos's shapes, trimmed to our routes), for API
//! fuzzers such as schemathesis and for client generators.
//! `scripts/openapi.py` regenerates the file and checks it against the routers.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const DOCUMENT: &str = include_str!("../../openapi.json");

pub fn router() -> Router<AppState> {
    Router::new().route("/.well-known/ory/openapi.json", get(document))
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::DOCUMENT;

    #[test]
    fn the_document_is_openapi_3() {
        let doc: serde_json::Value = serde_json::from_str(DOCUMENT).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
        assert!(doc["paths"]["/self-service/login/api"]["get"].is_object());
    }
}
