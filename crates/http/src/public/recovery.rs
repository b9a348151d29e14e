//! `/self-service/recovery/*`: account recovery by emailed code, for native
//! apps and browsers. Success signs the user in and hands over a settings
//! flow (`continue_with`) to choose a new password.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use latchkey_domain::flow::recovery::{RecoveryOutcome, RecoveryState, RecoverySubmission};
use latchkey_domain::flow::{FlowKind, FlowState, FlowType};
use latchkey_domain::text;
use serde_json::json;

use super::flows;
use crate::error::{ApiError, Extra};
use crate::query::QueryParams;
use crate::request::{device, wants_json};
use crate::state::AppState;
use crate::submit::SubmitBody;
use crate::{cookies, views};

pub fn router() -> Router<AppState> {
    flows::flow_routes(
        FlowKind::Recovery,
        init,
        flows::fetch_route(FlowKind::Recovery),
        get(submit).post(submit),
    )
}

async fn init(
    state: AppState,
    uri: Uri,
    headers: HeaderMap,
    flow_type: FlowType,
) -> Result<Response, ApiError> {
    if !state.recovery.enabled() {
        return Err(flows::disabled(FlowKind::Recovery));
    }
    let params = QueryParams::parse(uri.query());
    if flows::current_session(&state, &headers).await?.is_some() {
        return Ok(flows::already_signed_in(&state, &headers, flow_type, &params));
    }
    let started = flows::flow_request(&state, flow_type, &uri, &headers)?;
    let flow = state.recovery.create(&started.request).await.map_err(flows::flow_failure)?;
    state.metrics.flow_started(flow.kind(), flow.flow_type);
    Ok(flows::started(flow, started, &headers, &state.web.recovery_ui_url))
}

async fn submit(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    SubmitBody(body): SubmitBody,
) -> Result<Response, ApiError> {
    if !state.recovery.enabled() {
        return Err(flows::disabled(FlowKind::Recovery));
    }
    let params = QueryParams::parse(uri.query());
    let mut flow = flows::load_for_submit(&state, &params, &headers, &body, FlowKind::Recovery).await?;
    // An admin-issued browser flow is bound to no browser: bind it to this
    // one, so the settings flow recovery hands over (and any replacement
    // flow) is usable here, as Kratos mints a CSRF cookie at this point.
    let mut minted = None;
    if flow.flow_type == FlowType::Browser && flow.admin_issued() {
        let binding = flows::browser_csrf(&state, &headers);
        flow.csrf_hash = Some(binding.hash);
        minted = binding.set_cookie;
    }
    let response = answer(&state, &params, peer, &headers, &body, flow).await;
    Ok(flows::with_cookie(response.unwrap_or_else(IntoResponse::into_response), minted))
}

async fn answer(
    state: &AppState,
    params: &QueryParams,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: &HeaderMap,
    body: &serde_json::Value,
    mut flow: latchkey_domain::flow::Flow,
) -> Result<Response, ApiError> {
    let ui_url = state.web.recovery_ui_url.clone();
    let first_step = flow.state == FlowState::Recovery(RecoveryState::ChooseMethod);
    let Some(submission) = RecoverySubmission::read(&flow.state, body) else {
        flow.ui.reset_messages();
        flow.ui.messages.push(text::no_recovery_method());
        return Ok(flows::show_flow(state, flow, headers, StatusCode::BAD_REQUEST, &ui_url));
    };
    // Asking for a code while signed in is a mistake; resending one is not.
    if first_step && flows::current_session(state, headers).await?.is_some() {
        return Ok(flows::already_signed_in(state, headers, flow.flow_type, params));
    }
    flow.transient_payload = crate::submit::transient_payload(body)?;
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    if matches!(submission, RecoverySubmission::SendCode { .. }) {
        crate::send_limits::admit_code_request(state, headers, peer).await?;
    }
    let device = device(headers, peer, &state.web.trusted_proxies);
    let submitted = state.recovery.submit(flow, submission, device).await;
    let outcome = match state.metrics.submitted(FlowKind::Recovery, submitted) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(flows::flow_failure_response(e, headers, &ui_url)),
    };
    match outcome {
        RecoveryOutcome::Updated(flow) => Ok(flows::show_flow(state, flow, headers, StatusCode::OK, &ui_url)),
        RecoveryOutcome::Rejected(flow) => {
            Ok(flows::show_flow(state, flow, headers, StatusCode::BAD_REQUEST, &ui_url))
        }
        RecoveryOutcome::Replaced { replacement, reason } => {
            if replacement.flow_type == FlowType::Browser && !wants_json(headers) {
                return Ok(flows::see_other(&format!("{ui_url}?flow={}", replacement.id)));
            }
            let mut error = ApiError::bad_request().with_reason(reason);
            error.extra = Some(Box::new(Extra {
                details: Some(json!({
                    "continue_with": [{ "action": "show_recovery_ui", "flow": { "id": replacement.id } }],
                })),
                ..Default::default()
            }));
            Err(error)
        }
        RecoveryOutcome::IdentityDisabled { replacement, identity_id } => {
            if replacement.flow_type == FlowType::Browser && !wants_json(headers) {
                return Ok(flows::see_other(&format!("{ui_url}?flow={}", replacement.id)));
            }
            let mut error = ApiError::bad_request().with_id("identity_disabled");
            error.message = "identity is disabled".into();
            error.reason = Some("This account was disabled.".into());
            error.extra = Some(Box::new(Extra {
                details: Some(json!({
                    "identity_id": identity_id,
                    "continue_with": [{ "action": "show_recovery_ui", "flow": { "id": replacement.id } }],
                })),
                ..Default::default()
            }));
            Err(error)
        }
        RecoveryOutcome::Recovered { flow, issued, settings_flow } => {
            let settings_url = format!("{}?flow={}", state.web.settings_ui_url, settings_flow.id);
            let show_settings = json!({
                "action": "show_settings_ui",
                "flow": { "id": settings_flow.id, "url": settings_url },
            });
            let mut body = views::flow(&flow);
            if flow.flow_type == FlowType::Api {
                body["continue_with"] = json!([
                    { "action": "set_ory_session_token", "ory_session_token": issued.token },
                    show_settings,
                ]);
                return Ok(Json(body).into_response());
            }
            let max_age = state
                .web
                .session_cookie_persistent
                .then(|| (issued.session.expires_at - state.clock.now()).num_seconds());
            let cookie =
                cookies::set(&state.web.cookies, &state.web.session_cookie_name, &issued.token, max_age);
            let response = if wants_json(headers) {
                body["continue_with"] = json!([show_settings]);
                Json(body).into_response()
            } else {
                flows::see_other(&settings_url)
            };
            Ok(flows::with_cookie(response, Some(cookie)))
        }
    }
}
