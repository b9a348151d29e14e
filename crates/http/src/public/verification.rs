//! `/self-service/verification/*`: proving an email address by code, for
//! native apps and browsers. Hooks elsewhere (registration, settings, a
//! refused login) start these flows too; this module answers them.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use latchkey_domain::flow::verification::{VerificationOutcome, VerificationSubmission};
use latchkey_domain::flow::{FlowError, FlowKind, FlowType};
use latchkey_domain::text;
use serde_json::json;

use super::flows;
use crate::error::{ApiError, Extra};
use crate::query::QueryParams;
use crate::request::wants_json;
use crate::state::AppState;
use crate::submit::SubmitBody;

pub fn router() -> Router<AppState> {
    flows::flow_routes(
        FlowKind::Verification,
        init,
        flows::fetch_route(FlowKind::Verification),
        get(follow_link).post(submit),
    )
}

/// Unlike recovery, verification is for signed-in users too.
async fn init(
    state: AppState,
    uri: Uri,
    headers: HeaderMap,
    flow_type: FlowType,
) -> Result<Response, ApiError> {
    if !state.verification.enabled() {
        return Err(flows::disabled(FlowKind::Verification));
    }
    let started = flows::flow_request(&state, flow_type, &uri, &headers)?;
    let flow = state.verification.create(&started.request).await.map_err(flows::flow_failure)?;
    state.metrics.flow_started(flow.kind(), flow.flow_type);
    Ok(flows::started(flow, started, &headers, &state.web.verification_ui_url))
}

/// `GET /self-service/verification?flow=&code=`: the link in the email.
/// The code goes into the form and the browser to the UI, where the user
/// confirms it; a GET never spends a code. The link may open in another
/// browser than the one that started the flow, so a browser flow is bound
/// to this browser's CSRF cookie: whoever holds the link holds the code.
/// A wrong code changes nothing but the flow's attempt count (unlike
/// Kratos, which rebinds on any code: a forged link could steal the flow).
async fn follow_link(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !state.verification.enabled() {
        return Err(flows::disabled(FlowKind::Verification));
    }
    let params = QueryParams::parse(uri.query());
    let id = flows::flow_id(&params, "flow")?;
    let flow = state.flows.load(id, FlowKind::Verification).await.map_err(flows::flow_failure)?;
    let location = format!("{}?flow={}", state.web.verification_ui_url, flow.id);
    let code = params.first("code").filter(|c| !c.is_empty());
    let Some(code) = code.filter(|_| state.verification.awaits_code(&flow)) else {
        return Ok(flows::see_other(&location));
    };
    let (csrf_hash, set_cookie) = match flow.flow_type {
        FlowType::Api => (None, None),
        FlowType::Browser => {
            let binding = flows::browser_csrf(&state, &headers);
            (Some(binding.hash), binding.set_cookie)
        }
    };
    let right = state.verification.prefill(flow, code, csrf_hash).await.map_err(flows::flow_failure)?;
    // A wrong code leaves the flow with the browser that holds it, so the
    // cookie minted for the binding is not handed out either.
    Ok(flows::with_cookie(flows::see_other(&location), set_cookie.filter(|_| right)))
}

async fn submit(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    SubmitBody(body): SubmitBody,
) -> Result<Response, ApiError> {
    if !state.verification.enabled() {
        return Err(flows::disabled(FlowKind::Verification));
    }
    let params = QueryParams::parse(uri.query());
    let mut flow = flows::load_for_submit(&state, &params, &headers, &body, FlowKind::Verification).await?;
    let ui_url = state.web.verification_ui_url.clone();
    let Some(submission) = VerificationSubmission::read(&body) else {
        flow.ui.reset_messages();
        flow.ui.messages.push(text::no_verification_method());
        return Ok(flows::show_flow(&state, flow, &headers, StatusCode::BAD_REQUEST, &ui_url));
    };
    flow.transient_payload = crate::submit::transient_payload(&body)?;
    if matches!(submission, VerificationSubmission::SendCode { .. }) {
        let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
        crate::send_limits::admit_code_request(&state, &headers, peer).await?;
    }
    let submitted = state.verification.submit(flow, submission).await;
    let outcome = match state.metrics.submitted(FlowKind::Verification, submitted) {
        Ok(outcome) => outcome,
        Err(FlowError::Expired { replacement, .. }) => {
            // As Kratos: JSON clients are sent to the replacement flow itself.
            if replacement.flow_type == FlowType::Browser && !wants_json(&headers) {
                return Ok(flows::see_other(&format!("{ui_url}?flow={}", replacement.id)));
            }
            return Ok(flows::see_other(&format!(
                "{}/self-service/verification/flows?id={}",
                state.urls.public, replacement.id
            )));
        }
        Err(e) => return Ok(flows::flow_failure_response(e, &headers, &ui_url)),
    };
    match outcome {
        VerificationOutcome::Updated(flow) | VerificationOutcome::Verified(flow) => {
            Ok(flows::show_flow(&state, flow, &headers, StatusCode::OK, &ui_url))
        }
        VerificationOutcome::Rejected(flow) => {
            Ok(flows::show_flow(&state, flow, &headers, StatusCode::BAD_REQUEST, &ui_url))
        }
        VerificationOutcome::Replaced { replacement, reason } => {
            if replacement.flow_type == FlowType::Browser && !wants_json(&headers) {
                return Ok(flows::see_other(&format!("{ui_url}?flow={}", replacement.id)));
            }
            Err(flow_replaced(replacement.id, reason))
        }
    }
}

/// 410 `self_service_flow_replaced`: carry on with `use_flow_id`.
fn flow_replaced(id: uuid::Uuid, reason: &str) -> ApiError {
    let mut error = ApiError::new(StatusCode::GONE, "self-service flow replaced")
        .with_id("self_service_flow_replaced")
        .with_reason(reason);
    let mut siblings = serde_json::Map::new();
    siblings.insert("use_flow_id".into(), json!(id));
    error.extra = Some(Box::new(Extra { siblings, ..Default::default() }));
    error
}
