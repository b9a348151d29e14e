//! `/self-service/registration/*`: start, fetch and submit registration
//! flows for native apps and browsers.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_domain::flow::registration::{RegistrationOutcome, RegistrationSubmission};
use latchkey_domain::flow::{FlowKind, FlowType};
use latchkey_domain::text;
use latchkey_hash::SecretPassword;
use serde_json::{Value, json};

use super::flows::{self, field};
use crate::cookies;
use crate::error::ApiError;
use crate::query::QueryParams;
use crate::request::{device, wants_json};
use crate::state::AppState;
use crate::submit::SubmitBody;
use crate::views::{self, Audience, CredentialsView};

pub fn router() -> Router<AppState> {
    flows::flow_routes(
        FlowKind::Registration,
        init,
        flows::fetch_route(FlowKind::Registration),
        get(submit).post(submit),
    )
}

async fn init(
    state: AppState,
    uri: Uri,
    headers: HeaderMap,
    flow_type: FlowType,
) -> Result<Response, ApiError> {
    if !state.registration.enabled() {
        return Err(flows::disabled(FlowKind::Registration));
    }
    let params = QueryParams::parse(uri.query());
    if flows::current_session(&state, &headers).await?.is_some() {
        return Ok(flows::already_signed_in(&state, &headers, flow_type, &params));
    }
    let started = flows::flow_request(&state, flow_type, &uri, &headers)?;
    let flow = state.registration.create(&started.request).await.map_err(flows::flow_failure)?;
    state.metrics.flow_started(flow.kind, flow.flow_type);
    Ok(flows::started(flow, started, &headers, &state.web.registration_ui_url))
}

fn traits_of(body: &Value) -> Value {
    body.get("traits").cloned().unwrap_or(Value::Null)
}

async fn submit(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    SubmitBody(body): SubmitBody,
) -> Result<Response, ApiError> {
    if !state.registration.enabled() {
        return Err(flows::disabled(FlowKind::Registration));
    }
    let params = QueryParams::parse(uri.query());
    let mut flow = flows::load_for_submit(&state, &params, &headers, &body, FlowKind::Registration).await?;
    if flows::current_session(&state, &headers).await?.is_some() {
        return Ok(flows::already_signed_in(&state, &headers, flow.flow_type, &params));
    }
    let ui_url = state.web.registration_ui_url.clone();
    let submission = match field(&body, "method") {
        Some("password") => RegistrationSubmission::Password {
            traits: traits_of(&body),
            password: SecretPassword::new(field(&body, "password").unwrap_or_default()),
        },
        Some("profile") => RegistrationSubmission::Profile {
            traits: traits_of(&body),
            back: field(&body, "screen") == Some("previous"),
        },
        _ => {
            flow.ui.reset_messages();
            flow.ui.messages.push(text::no_registration_method());
            return Ok(flows::show_flow(&state, flow, &headers, StatusCode::BAD_REQUEST, &ui_url));
        }
    };
    flow.transient_payload = crate::submit::transient_payload(&body)?;
    let submitted = state
        .registration
        .submit(
            flow,
            submission,
            device(&headers, peer.map(|Extension(ConnectInfo(addr))| addr), &state.web.trusted_proxies),
        )
        .await;
    let outcome = match state.metrics.submitted(FlowKind::Registration, submitted) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(flows::flow_failure_response(e, &headers, &ui_url)),
    };
    let (flow, identity, issued, verification) = match outcome {
        // Kratos answers the next two-step screen with 400 as well.
        RegistrationOutcome::Rejected(flow) | RegistrationOutcome::NextScreen(flow) => {
            return Ok(flows::show_flow(&state, flow, &headers, StatusCode::BAD_REQUEST, &ui_url));
        }
        RegistrationOutcome::Accepted { flow, identity, issued, verification } => {
            (flow, identity, issued, verification)
        }
    };
    let show_verification = verification
        .filter(|_| state.web.registration_shows_verification)
        .map(|v| views::show_verification_ui(&v, &state.web.verification_ui_url));

    let identity_json = views::identity(&identity, &state.urls, Audience::Public, &CredentialsView::Omit);
    let session_json = issued.as_ref().map(|i| {
        views::session(&i.session, Some(&identity), &state.urls, Audience::Public, true, state.clock.now())
    });
    if flow.flow_type == FlowType::Api {
        let mut body = json!({ "identity": identity_json, "continue_with": [] });
        if let Some(issued) = &issued {
            body["session"] = session_json.unwrap_or(Value::Null);
            body["session_token"] = json!(issued.token);
            body["continue_with"] =
                json!([{ "action": "set_ory_session_token", "ory_session_token": issued.token }]);
        }
        if let (Some(item), Some(items)) = (show_verification, body["continue_with"].as_array_mut()) {
            items.push(item);
        }
        return Ok(Json(body).into_response());
    }
    let target = flows::after_success(&state, &flow, show_verification.as_ref());
    let cookie = issued.as_ref().map(|i| {
        let max_age = state
            .web
            .session_cookie_persistent
            .then(|| (i.session.expires_at - state.clock.now()).num_seconds());
        cookies::set(&state.web.cookies, &state.web.session_cookie_name, &i.token, max_age)
    });
    let response = if wants_json(&headers) {
        let mut body = json!({
            "identity": identity_json,
            "continue_with": [{ "action": "redirect_browser_to", "redirect_browser_to": target }],
        });
        if let (Some(item), Some(items)) = (show_verification, body["continue_with"].as_array_mut()) {
            items.insert(0, item);
        }
        if let Some(session) = session_json {
            body["session"] = session;
        }
        Json(body).into_response()
    } else {
        flows::see_other(&target)
    };
    Ok(flows::with_cookie(response, cookie))
}
