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
        Some(text) => humantime::parse_duration(text)
            .ok()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .filter(|d| *d > chrono::Duration::zero())
            .ok_or_else(|| {
                ApiError::bad_request().with_reason("expires_in must be a positive duration such as 1h.")
            })?,
    };
    let identity = state.store.get_identity(body.identity_id).await?.ok_or_else(|| {
        ApiError::not_found("The requested resource could not be found")
            .with_reason("could not find identity")
    })?;
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
