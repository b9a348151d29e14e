//! The Kratos error envelope: `{"error": {id, code, status, reason, message,
//! details}}` plus optional top-level siblings, with `Ory-Error-Id` mirrored
//! in a header. Internal causes are logged, never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_domain::{IdentityError, SchemaError, StoreError};
use serde::Serialize;
use serde_json::{Map, Value, json};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub id: Option<&'static str>,
    pub message: String,
    pub reason: Option<String>,
    /// Rarely set, so boxed to keep `Result<_, ApiError>` small.
    pub extra: Option<Box<Extra>>,
}

#[derive(Debug, Default)]
pub struct Extra {
    pub details: Option<Value>,
    /// Fields that sit next to `error` (e.g. `use_flow_id`).
    pub siblings: Map<String, Value>,
    /// Whole seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
    /// Why a 500 happened, with its source chain: logged once as the
    /// response is made, never sent.
    pub cause: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, id: None, message: message.into(), reason: None, extra: None }
    }

    pub fn bad_request() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "The request was malformed or contained invalid parameters")
    }

    pub fn not_found(message: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict() -> Self {
        Self::new(StatusCode::CONFLICT, "The resource could not be created due to a conflict")
    }

    pub fn unsupported_media_type() -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "The request is using an unknown content type")
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "The request body is too large")
            .with_reason(format!("Request bodies are limited to {limit} bytes."))
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "The request method is not supported by this resource")
    }

    /// 429 with `Retry-After` (whole seconds, rounded up), also in
    /// `details.retry_after_seconds`; callers say which limit in the reason.
    /// Kratos has no id for it; `rate_limit_exceeded` follows its naming.
    pub fn too_many_requests(retry_after: std::time::Duration) -> Self {
        let seconds = retry_after_seconds(retry_after);
        let mut error =
            Self::new(StatusCode::TOO_MANY_REQUESTS, "The request was refused because of a rate limit")
                .with_id("rate_limit_exceeded")
                .with_reason(format!("Too many requests were made; try again in {seconds} seconds."));
        error.extra = Some(Box::new(Extra {
            details: Some(json!({ "retry_after_seconds": seconds })),
            retry_after: Some(seconds),
            ..Default::default()
        }));
        error
    }

    /// An opaque 500; `cause` goes to the log only, when the response is
    /// made (so an error that is handled instead is not logged).
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "An internal server error occurred, please contact the system administrator",
        );
        error.extra = Some(Box::new(Extra { cause: Some(cause.into()), ..Default::default() }));
        error
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn with_id(mut self, id: &'static str) -> Self {
        self.id = Some(id);
        self
    }

    /// The envelope's `error` object.
    pub fn error_object(&self) -> ErrorObject {
        ErrorObject {
            code: self.status.as_u16(),
            details: self.extra.as_deref().and_then(|e| e.details.clone()),
            id: self.id,
            message: self.message.clone(),
            reason: self.reason.clone(),
            // Kratos names the request an error answers, so logs can be found.
            request: crate::edge::current_request_id().map(|id| id.to_string()),
            status: self.status.canonical_reason().unwrap_or_default(),
        }
    }

    /// `{"error": …}` and the siblings, keys sorted as in any JSON object
    /// built from a map.
    pub fn body(&self) -> Value {
        let mut body = self.extra.as_deref().map(|e| e.siblings.clone()).unwrap_or_default();
        body.insert("error".into(), json!(self.error_object()));
        Value::Object(body)
    }
}

/// The `error` object of Kratos's envelope. Keys in alphabetical order, as
/// the wire has always had them.
#[derive(Debug, Serialize)]
pub struct ErrorObject {
    code: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'static str>,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<String>,
    status: &'static str,
}

/// A wait as `Retry-After` says it: whole seconds, rounded up, at least one.
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `cause: its source: the source's source …`, skipping a source whose text
/// its parent already ends with (thiserror's `{0}` plus `#[source]`).
fn chain(cause: &(dyn std::error::Error + 'static)) -> String {
    let mut text = cause.to_string();
    let mut next = cause.source();
    while let Some(source) = next {
        let line = source.to_string();
        if !text.ends_with(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        next = source.source();
    }
    text
}

/// The `error` object of an [`ApiError`] response, kept on the response so
/// the error flow can store it without parsing the body back.
#[derive(Debug, Clone)]
pub struct AnsweredError(pub Value);

impl ApiError {
    /// Logs the cause of a 500, if any; done once, as the error is answered
    /// (as JSON here, or as a page by the built-in pages).
    pub fn log_cause(&self) {
        if let Some(cause) = self.extra.as_ref().and_then(|e| e.cause.as_deref()) {
            // Once per failed request, with its id (also on the request's span).
            let request_id = crate::edge::current_request_id();
            tracing::error!(request_id = request_id.as_deref().unwrap_or("-"), error = %chain(cause), "request failed");
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log_cause();
        let mut body = self.body();
        let mut response = (self.status, Json(&body)).into_response();
        response.extensions_mut().insert(AnsweredError(body["error"].take()));
        if let Some(id) = self.id {
            response.headers_mut().insert("ory-error-id", HeaderValue::from_static(id));
        }
        if let Some(seconds) = self.extra.as_ref().and_then(|e| e.retry_after) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("Unable to locate the resource"),
            StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                "Unable to insert or update resource because a resource with that value exists already",
            ),
            e @ StoreError::Backend(_) => ApiError::internal(e),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

impl From<IdentityError> for ApiError {
    fn from(e: IdentityError) -> Self {
        match e {
            IdentityError::Schema(SchemaError::TraitsInvalid { reason, .. }) => {
                ApiError::bad_request().with_reason(reason)
            }
            IdentityError::Schema(SchemaError::NotFound(id)) => ApiError::bad_request()
                .with_reason(format!("The identity schema `{id}` is not configured on this server.")),
            IdentityError::Schema(other) => ApiError::internal(other),
            IdentityError::Conflict => ApiError::conflict()
                .with_reason("This identity conflicts with another identity that already exists."),
            IdentityError::NotFound => ApiError::not_found("Unable to locate the resource"),
            IdentityError::InvalidHash(reason) | IdentityError::InvalidInput(reason) => {
                ApiError::bad_request().with_reason(reason)
            }
            e @ (IdentityError::PasswordTooLong | IdentityError::InvalidPatch(_)) => {
                ApiError::bad_request().with_reason(e.to_string())
            }
            IdentityError::Store(e) => e.into(),
            e @ IdentityError::NoSuchCredential(_) => {
                ApiError::not_found("The requested resource could not be found")
                    .with_reason(format!("{}.", capitalised(&e.to_string())))
            }
            IdentityError::CredentialKept(reason) => ApiError::bad_request().with_reason(reason),
            e @ (IdentityError::Hashing(_) | IdentityError::Notice(_)) => ApiError::internal(e),
        }
    }
}
