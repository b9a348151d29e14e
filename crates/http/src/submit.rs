//! Self-service submit bodies: JSON or form-encoded (nested keys with dots,
//! `traits.email`), read into one JSON value that each flow parses into its
//! typed, method-tagged submission. Parsing is bounded (size, nesting,
//! field count, name length) because it runs before any flow or CSRF check.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::limits::{
    MAX_FORM_DEPTH, MAX_FORM_FIELDS, MAX_FORM_NAME_BYTES, MAX_PUBLIC_BODY_BYTES, MAX_TRANSIENT_PAYLOAD_BYTES,
    check_json_depth, read_body,
};

pub struct SubmitBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for SubmitBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let bytes = read_body(req, state).await?;
        parse_submit_body(&content_type, &bytes).map(SubmitBody)
    }
}

/// A submit body as one JSON value. `content_type` is the raw `Content-Type`
/// header value, or `""` when there is none. Pure, so fuzzers can call it.
pub fn parse_submit_body(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.len() > MAX_PUBLIC_BODY_BYTES {
        return Err(ApiError::payload_too_large(MAX_PUBLIC_BODY_BYTES));
    }
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => nest_form(bytes),
        "application/json" | "" => {
            if bytes.is_empty() {
                return Ok(Value::Object(Map::new()));
            }
            let value = parse_json(bytes)?;
            if !value.is_object() {
                return Err(ApiError::bad_request().with_reason("The request body must be a JSON object."));
            }
            Ok(value)
        }
        other if other.ends_with("+json") => parse_json(bytes),
        other => {
            // Echo only a short, printable prefix of what the client sent.
            let shown: String = other.chars().filter(|c| !c.is_control()).take(64).collect();
            Err(ApiError::unsupported_media_type()
                .with_reason(format!("Expected `application/json` or a form, got `{shown}`.")))
        }
    }
}

/// `transient_payload`, which Kratos's forms declare as an object; it rides
/// along to hooks and templates, so it is capped too.
pub fn transient_payload(body: &Value) -> Result<Option<Value>, ApiError> {
    let Some(payload) = body.get("transient_payload") else {
        return Ok(None);
    };
    if !payload.is_object() {
        return Err(ApiError::bad_request().with_reason("transient_payload must be a JSON object."));
    }
    if serde_json::to_vec(payload).map_or(usize::MAX, |b| b.len()) > MAX_TRANSIENT_PAYLOAD_BYTES {
        return Err(ApiError::bad_request()
            .with_reason(format!("transient_payload is limited to {MAX_TRANSIENT_PAYLOAD_BYTES} bytes.")));
    }
    Ok(Some(payload.clone()))
}

fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    check_json_depth(bytes)?;
    crate::nul::check_json(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request().with_reason(format!("Unable to decode the request body as JSON: {e}"))
    })
}

/// `traits.name.first=Ada` → `{"traits": {"name": {"first": "Ada"}}}`.
fn nest_form(bytes: &[u8]) -> Result<Value, ApiError> {
    let mut root = Map::new();
    for (i, (key, value)) in form_urlencoded::parse(bytes).enumerate() {
        if i >= MAX_FORM_FIELDS {
            return Err(ApiError::bad_request()
                .with_reason(format!("A form may hold at most {MAX_FORM_FIELDS} fields.")));
        }
        if key.len() > MAX_FORM_NAME_BYTES {
            return Err(ApiError::bad_request()
                .with_reason(format!("Form field names are limited to {MAX_FORM_NAME_BYTES} bytes.")));
        }
        if key.split('.').count() > MAX_FORM_DEPTH {
            return Err(ApiError::bad_request()
                .with_reason(format!("Form field names may nest at most {MAX_FORM_DEPTH} levels.")));
        }
        if key.contains('\0') || value.contains('\0') {
            return Err(crate::nul::refused());
        }
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
    Ok(Value::Object(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded";

    #[test]
    fn form_keys_nest_on_dots() {
        let v = parse_submit_body(
            FORM,
            b"method=password&traits.email=a%40b.co&traits.name.first=Ada&csrf_token=x",
        )
        .unwrap();
        assert_eq!(v["traits"]["email"], "a@b.co");
        assert_eq!(v["traits"]["name"]["first"], "Ada");
        assert_eq!(v["method"], "password");
    }

    #[test]
    fn hostile_forms_are_refused_without_building_them() {
        let dots = format!("{}=1", ".".repeat(200_000));
        assert_eq!(parse_submit_body(FORM, dots.as_bytes()).unwrap_err().status, 413);
        let dots = format!("{}=1", ".".repeat(200));
        assert_eq!(parse_submit_body(FORM, dots.as_bytes()).unwrap_err().status, 400);
        let long = format!("{}=1", "a".repeat(MAX_FORM_NAME_BYTES + 1));
        assert_eq!(parse_submit_body(FORM, long.as_bytes()).unwrap_err().status, 400);
        let many = (0..=MAX_FORM_FIELDS).map(|i| format!("f{i}=1")).collect::<Vec<_>>().join("&");
        assert_eq!(parse_submit_body(FORM, many.as_bytes()).unwrap_err().status, 400);
        let deepest = format!("{}=1", vec!["a"; MAX_FORM_DEPTH].join("."));
        assert!(parse_submit_body(FORM, deepest.as_bytes()).is_ok());
    }

    #[test]
    fn nul_characters_are_refused_in_forms_and_json() {
        for (content_type, body) in [
            (FORM, &b"method=password&identifier=a%00"[..]),
            (FORM, b"identifier=a\0"),
            (FORM, b"a%00=1"),
            ("application/json", br#"{"identifier":"a\u0000"}"#),
        ] {
            let error = parse_submit_body(content_type, body).unwrap_err();
            assert_eq!(error.status, 400, "{body:?}");
        }
        assert!(parse_submit_body("application/json", br#"{"identifier":"a\\u0000"}"#).is_ok());
    }

    #[test]
    fn json_bodies_are_bounded_and_must_be_objects() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse_submit_body("application/json", deep.as_bytes()).unwrap_err().status, 400);
        assert_eq!(parse_submit_body("application/json", b"[1]").unwrap_err().status, 400);
        assert_eq!(parse_submit_body("", b"").unwrap(), serde_json::json!({}));
        assert_eq!(parse_submit_body("Application/JSON; charset=utf-8", br#"{"a":1}"#).unwrap()["a"], 1);
        assert_eq!(parse_submit_body("text/plain", b"x").unwrap_err().status, 415);
    }
}
