//! `POST /admin/recovery/code`: an administrator issues a recovery code for
//! an identity and hands it over out of band.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use latchkey_domain::flow::{FlowRequest, FlowType};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::body::JsonBody;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/recovery/code", post(create_code))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeBody {
    identity_id: Uuid,
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    flow_type: Option<FlowType>,
}

async fn create_code(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CodeBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let lifespan = match body.expires_in.as_deref() {
        None | Some("") => state.web.recovery_code_lifespan,
        Some(text) => expires_in(text)?,
    };
    let identity = match state.identities.get(body.identity_id).await {
        Err(latchkey_domain::IdentityError::NotFound) => {
            return Err(ApiError::not_found("The requested resource could not be found")
                .with_reason("could not find identity"));
        }
        other => other?,
    };
    let flow_type = body.flow_type.unwrap_or(FlowType::Browser);
    let request = FlowRequest {
        flow_type,
        request_url: format!(
            "{}/self-service/recovery/{}",
            state.urls.public,
            match flow_type {
                FlowType::Api => "api",
                FlowType::Browser => "browser",
            }
        ),
        return_to: None,
        after_verification_return_to: None,
        // Administrators hand the code over; there is no browser cookie to bind to.
        csrf_hash: None,
    };
    let (flow, code) = state
        .recovery
        .create_for_identity(&request, &identity, lifespan)
        .await
        .map_err(crate::public::flows::flow_failure)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "recovery_link": format!("{}?flow={}", state.web.recovery_ui_url, flow.id),
            "recovery_code": code,
            "expires_at": flow.expires_at,
        })),
    ))
}

/// Go's `time.ParseDuration` (which Kratos uses) stops at about 292 years;
/// so do we, which keeps every expiry a date both databases store.
const MAX_EXPIRES_IN: std::time::Duration = std::time::Duration::from_nanos(i64::MAX as u64);

/// A positive duration such as `1h` or `90m`, at most [`MAX_EXPIRES_IN`].
fn expires_in(text: &str) -> Result<chrono::Duration, ApiError> {
    let parsed = humantime::parse_duration(text)
        .ok()
        .filter(|d| *d <= MAX_EXPIRES_IN)
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .ok_or_else(|| {
            ApiError::bad_request().with_reason(
                r#"Unable to parse "expires_in" as a duration string (e.g. "1h", "1m30s", "500ms")."#,
            )
        })?;
    if parsed <= chrono::Duration::zero() {
        return Err(
            ApiError::bad_request().with_reason(r#"Value from "expires_in" must result to a future time."#)
        );
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_in_is_bounded() {
        assert_eq!(expires_in("1h").unwrap(), chrono::Duration::hours(1));
        assert_eq!(expires_in("2562047h").unwrap(), chrono::Duration::hours(2_562_047));
        for bad in ["2562048h", "99999999999h", "18446744073709551616s", "-5m", "0s", "soon", "1h garbage"] {
            assert_eq!(expires_in(bad).unwrap_err().status, 400, "{bad}");
        }
    }
}
