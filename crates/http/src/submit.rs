//! Self-service submit bodies: JSON or form-encoded (nested keys with dots,
//! `traits.email`), read into one JSON value that each flow parses into its
//! typed, method-tagged submission.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::{Map, Value};

use crate::error::ApiError;

pub struct SubmitBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for SubmitBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::payload_too_large()
            } else {
                ApiError::bad_request().with_reason("The request body could not be read.")
            }
        })?;
        parse_submit_body(&content_type, &bytes).map(SubmitBody)
    }
}

/// Reads a submit body by its (lower-cased, parameter-free) content type
/// into one JSON value. Public for the fuzz targets.
#[doc(hidden)]
pub fn parse_submit_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    match content_type {
        "application/x-www-form-urlencoded" => Ok(nest_form(bytes)),
        "application/json" | "" => {
            if bytes.is_empty() {
                return Ok(Value::Object(Map::new()));
            }
            let value: Value = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::bad_request().with_reason(format!("Unable to decode the request body as JSON: {e}"))
            })?;
            if !value.is_object() {
                return Err(ApiError::bad_request().with_reason("The request body must be a JSON object."));
            }
            Ok(value)
        }
        other if other.ends_with("+json") => serde_json::from_slice(bytes).map_err(|e| {
            ApiError::bad_request().with_reason(format!("Unable to decode the request body as JSON: {e}"))
        }),
        other => Err(ApiError::unsupported_media_type()
            .with_reason(format!("Expected `application/json` or a form, got `{other}`."))),
    }
}

/// `traits.name.first=Ada` → `{"traits": {"name": {"first": "Ada"}}}`.
fn nest_form(bytes: &[u8]) -> Value {
    let mut root = Map::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        let mut node = &mut root;
        let mut parts = key.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                node.insert(part.to_string(), Value::String(value.to_string()));
                break;
            }
            let entry = node.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            node = entry.as_object_mut().expect("just made an object");
        }
    }
    Value::Object(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_keys_nest_on_dots() {
        let v = nest_form(b"method=password&traits.email=a%40b.co&traits.name.first=Ada&csrf_token=x");
        assert_eq!(v["traits"]["email"], "a@b.co");
        assert_eq!(v["traits"]["name"]["first"], "Ada");
        assert_eq!(v["method"], "password");
    }
}
