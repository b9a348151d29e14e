//! Bounds on everything a client sends before any handler looks at it:
//! body size and read time, JSON nesting, query strings, cookies. Every
//! parser of outside bytes does work proportional to a small, fixed limit,
//! and a request over a limit gets a 4xx in the Kratos error envelope.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Self-service submit bodies (and anything else on the public API). A
/// Kratos form carries a few fields of at most a few hundred bytes each
/// (email addresses are capped at 320, passwords at a few KiB, traits at a
/// few dozen fields), so real input stays within a few KiB; 64 KiB leaves
/// generous room for large trait schemas and `transient_payload` while
/// keeping what an anonymous client can make us buffer and parse small.
pub const MAX_PUBLIC_BODY_BYTES: usize = 64 * 1024;

/// Admin bodies: a batch import of up to 1,000 identities with hashes and
/// metadata needs room; the admin API is not exposed to anonymous clients.
pub const MAX_ADMIN_BODY_BYTES: usize = 5 * 1024 * 1024;

/// JSON nesting: Kratos documents (traits, metadata, transient payloads) are
/// a few levels deep; serde_json's own limit (128) is far above what any
/// form needs.
pub const MAX_JSON_DEPTH: usize = 32;

/// Form field names: `traits.name.first` is three levels.
pub const MAX_FORM_DEPTH: usize = 16;
pub const MAX_FORM_FIELDS: usize = 256;
pub const MAX_FORM_NAME_BYTES: usize = 256;

/// `transient_payload` is passed through to webhooks and templates, never stored for long.
pub const MAX_TRANSIENT_PAYLOAD_BYTES: usize = 16 * 1024;

/// Query strings: long enough for a `return_to` URL or an `ids` filter of
/// a few hundred identities, short enough to parse in microseconds.
pub const MAX_QUERY_BYTES: usize = 32 * 1024;
pub const MAX_QUERY_PAIRS: usize = 512;

/// All `Cookie` headers together. Browsers keep cookies to about 4 KiB
/// each; Latchkey reads two of its own.
pub const MAX_COOKIE_BYTES: usize = 16 * 1024;
pub const MAX_COOKIE_PAIRS: usize = 64;

/// How long a client may take to send a request body, unless configured
/// (`serve.limits.body_read_timeout`).
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The body read timeout for a router's requests, set by the server as a
/// request extension.
#[derive(Debug, Clone, Copy)]
pub struct BodyReadTimeout(pub Duration);

/// Reads a whole request body within the router's size limit and the
/// configured read timeout.
pub async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let timeout = req.extensions().get::<BodyReadTimeout>().map_or(DEFAULT_BODY_READ_TIMEOUT, |t| t.0);
    let limit = req.extensions().get::<BodyLimit>().map_or(MAX_PUBLIC_BODY_BYTES, |l| l.0);
    let read = Bytes::from_request(req, state);
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(ApiError::new(StatusCode::REQUEST_TIMEOUT, "The request timed out")
            .with_reason("The request body was not received in time.")),
        Ok(Err(rejection)) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::payload_too_large(limit))
        }
        Ok(Err(_)) => Err(ApiError::bad_request().with_reason("The request body could not be read.")),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// The body size limit a router enforces, so refusals can name it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Refuses JSON nested deeper than [`MAX_JSON_DEPTH`] with one linear scan
/// (no recursion), before serde builds a value whose drop would recurse.
pub fn check_json_depth(bytes: &[u8]) -> Result<(), ApiError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return Err(ApiError::bad_request().with_reason(format!(
                        "The request body is nested too deeply: at most {MAX_JSON_DEPTH} levels are allowed."
                    )));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Refuses over-long query strings and cookie headers before any handler
/// parses them. Header count and total head size are bounded by the
/// connection itself (see the server's accept loop).
pub async fn bounded_request(request: Request, next: Next) -> Response {
    if let Some(query) = request.uri().query() {
        if query.len() > MAX_QUERY_BYTES {
            return ApiError::new(StatusCode::URI_TOO_LONG, "The request URI is too long")
                .with_reason(format!("Query strings are limited to {MAX_QUERY_BYTES} bytes."))
                .into_response();
        }
        if crate::nul::query_has_nul(query) {
            return crate::nul::refused().into_response();
        }
        if query.split('&').count() > MAX_QUERY_PAIRS {
            return ApiError::bad_request()
                .with_reason(format!("Query strings are limited to {MAX_QUERY_PAIRS} parameters."))
                .into_response();
        }
    }
    let cookies = request.headers().get_all(header::COOKIE);
    let bytes: usize = cookies.iter().map(|v| v.len()).sum();
    let pairs: usize = cookies.iter().map(|v| v.as_bytes().split(|&b| b == b';').count()).sum();
    if bytes > MAX_COOKIE_BYTES || pairs > MAX_COOKIE_PAIRS {
        return ApiError::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "The request headers are too large",
        )
        .with_reason(format!(
            "Cookies are limited to {MAX_COOKIE_PAIRS} pairs and {MAX_COOKIE_BYTES} bytes in all."
        ))
        .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_brackets_outside_strings_only() {
        let deep = format!("{}{}", "[".repeat(MAX_JSON_DEPTH + 1), "]".repeat(MAX_JSON_DEPTH + 1));
        assert!(check_json_depth(deep.as_bytes()).is_err());
        let ok = format!("{}{}", "[".repeat(MAX_JSON_DEPTH), "]".repeat(MAX_JSON_DEPTH));
        assert!(check_json_depth(ok.as_bytes()).is_ok());
        let quoted = format!(r#"{{"a": "{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_json_depth(quoted.as_bytes()).is_ok());
        // Unbalanced closers cannot push the count below zero and hide depth.
        let tricky = format!("{}{}", "]".repeat(100), "[".repeat(MAX_JSON_DEPTH + 1));
        assert!(check_json_depth(tricky.as_bytes()).is_err());
    }
}
