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

use super::flows;
use crate::cookies;
use crate::error::ApiError;
use crate::query::QueryParams;
use crate::request::{device, wants_json};
use crate::state::AppState;
use crate::submit::SubmitBody;
use crate::views::{self, Audience, ContinueWith, CredentialsView, IdentityView, SessionView};

/// A registration's answer to JSON clients; `session` and `session_token`
/// only when the registration signed the person in (the token for API
/// flows only). Fields in alphabetical order, as the wire has them.
#[derive(serde::Serialize)]
struct Registered<'a> {
    continue_with: Vec<ContinueWith>,
    identity: IdentityView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session: Option<SessionView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<&'a str>,
}

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
    state.metrics.flow_started(flow.kind(), flow.flow_type);
    Ok(flows::started(flow, started, &headers, &state.web.registration_ui_url))
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
    let Some(submission) = RegistrationSubmission::read(&body) else {
        flow.ui.reset_messages();
        flow.ui.messages.push(text::no_registration_method());
        return Ok(flows::show_flow(&state, flow, &headers, StatusCode::BAD_REQUEST, &ui_url));
    };
    flow.transient_payload = crate::submit::transient_payload(&body)?;
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    if state.registration.sends_code(&flow, &submission) {
        crate::send_limits::admit_code_request(&state, &headers, peer).await?;
    }
    let device = device(&headers, peer, &state.web.trusted_proxies);
    let submitted = state.registration.submit(flow, submission, device).await;
    let outcome = match state.metrics.submitted(FlowKind::Registration, submitted) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(flows::flow_failure_response(e, &headers, &ui_url)),
    };
    let (flow, identity, issued, verification) = match outcome {
        // Kratos answers the next two-step screen, and a code sent, with 400 as well.
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

    let mut body = Registered {
        continue_with: Vec::new(),
        identity: views::identity(&identity, &state.urls, Audience::Public, &CredentialsView::Omit),
        session: issued.as_ref().map(|i| {
            views::session(
                &i.session,
                Some(&identity),
                &state.urls,
                Audience::Public,
                true,
                state.clock.now(),
            )
        }),
        session_token: None,
    };
    if flow.flow_type == FlowType::Api {
        if let Some(issued) = &issued {
            body.session_token = Some(&issued.token);
            body.continue_with
                .push(ContinueWith::SetOrySessionToken { ory_session_token: issued.token.clone() });
        }
        body.continue_with.extend(show_verification);
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
        body.continue_with.extend(show_verification);
        body.continue_with.push(ContinueWith::RedirectBrowserTo { redirect_browser_to: target });
        Json(body).into_response()
    } else {
        flows::see_other(&target)
    };
    Ok(flows::with_cookie(response, cookie))
}
