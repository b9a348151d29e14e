//! Request-body extraction with Kratos's answers: JSON only, within the
//! router's size limit and [`crate::limits::MAX_JSON_DEPTH`], unknown fields
//! rejected, every failure a 4xx in the error envelope.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::limits::{check_json_depth, read_body};

/// A JSON body decoded into `T`; `T` decides strictness via `deny_unknown_fields`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let essence = content_type.to_str().unwrap_or_default().split(';').next().unwrap_or_default();
            let essence = essence.trim().to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                let shown: String = essence.chars().take(64).collect();
                return Err(ApiError::unsupported_media_type()
                    .with_reason(format!("Expected `application/json`, got `{shown}`.")));
            }
        }
        let bytes = read_body(req, state).await?;
        check_json_depth(&bytes)?;
        crate::nul::check_json(&bytes)?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request().with_reason(format!("Unable to decode the request body as JSON: {e}"))
        })
    }
}
