//! Request-body extraction with Kratos's answers: JSON only, at most
//! [`crate::MAX_BODY_BYTES`], unknown fields rejected, every failure a 4xx
//! in the error envelope.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body decoded into `T`; `T` decides strictness via `deny_unknown_fields`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
            let essence = content_type.to_str().unwrap_or_default().split(';').next().unwrap_or_default();
            let essence = essence.trim().to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(ApiError::unsupported_media_type()
                    .with_reason(format!("Expected `application/json`, got `{essence}`.")));
            }
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::bad_request().with_reason("The request body could not be read.")
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::bad_request().with_reason(format!("Unable to decode the request body as JSON: {e}"))
        })
    }
}
