//! `/self-service/login/*`: start, fetch and submit login flows for native
//! apps (`api`) and browsers.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use latchkey_domain::flow::login::LoginOutcome;
use latchkey_domain::flow::login_second_factor::{AAL1, AAL2};
use latchkey_domain::flow::login_throttle::Limit;
use latchkey_domain::flow::{Flow, FlowKind, FlowType};
use latchkey_domain::identity::Identity;
use latchkey_domain::session::Session;
use latchkey_domain::text;
use serde_json::json;

use super::flows;
use crate::error::{ApiError, Extra};
use crate::query::QueryParams;
use crate::request::{device, session_token, wants_json};
use crate::state::AppState;
use crate::submit::SubmitBody;
use crate::views::{ContinueWith, SessionView};
use crate::{aal, cookies, views};

/// A sign-in's answer to JSON clients: `continue_with` is `null` unless it
/// names something, `session_token` is for API flows only. Fields in
/// alphabetical order, as the wire has them.
#[derive(serde::Serialize)]
struct SignedIn<'a> {
    continue_with: Option<Vec<ContinueWith>>,
    session: SessionView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_token: Option<&'a str>,
}

pub fn router() -> Router<AppState> {
    flows::flow_routes(FlowKind::Login, init, flows::fetch_route(FlowKind::Login), get(submit).post(submit))
}

async fn init(
    state: AppState,
    uri: Uri,
    headers: HeaderMap,
    flow_type: FlowType,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let refresh = params.first("refresh") == Some("true");
    let step_up = match params.first("aal").unwrap_or_default() {
        "" | AAL1 => false,
        AAL2 => true,
        other => {
            return Err(ApiError::bad_request().with_reason(format!(
                "Unable to parse AuthenticationMethod Assurance Level (AAL): expected one of [aal1, aal2] but got {other}"
            )));
        }
    };
    let signed_in = flows::current_session_hit(&state, &headers).await?;
    if step_up {
        let Some(hit) = signed_in else {
            return Err(aal1_required());
        };
        if !refresh && hit.session.aal == AAL2 {
            return Ok(flows::already_signed_in(&state, &headers, flow_type, &params));
        }
        let started = flows::flow_request(&state, flow_type, &uri, &headers)?;
        let flow = state
            .login
            .create_step_up(&started.request, &hit.session, refresh)
            .await
            .map_err(flows::flow_failure)?;
        state.metrics.flow_started(flow.kind(), flow.flow_type);
        return Ok(flows::started(flow, started, &headers, &state.web.login_ui_url));
    }
    if !refresh && signed_in.is_some() {
        return Ok(flows::already_signed_in(&state, &headers, flow_type, &params));
    }
    let started = flows::flow_request(&state, flow_type, &uri, &headers)?;
    let identity = signed_in.as_ref().map(|hit| hit.identity.id);
    let flow = state.login.create(&started.request, refresh, identity).await.map_err(flows::flow_failure)?;
    state.metrics.flow_started(flow.kind(), flow.flow_type);
    Ok(flows::started(flow, started, &headers, &state.web.login_ui_url))
}

async fn submit(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    SubmitBody(body): SubmitBody,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let mut flow = flows::load_for_submit(&state, &params, &headers, &body, FlowKind::Login).await?;
    let signed_in = flows::current_session_hit(&state, &headers).await?;
    let step_up = flow.requested_aal == AAL2;
    match &signed_in {
        None if step_up => return Err(aal1_required()),
        // Signed in already, unless refreshing or stepping up from below aal2.
        Some(hit) if !(flow.refresh || step_up && hit.session.aal != AAL2) => {
            return Ok(flows::already_signed_in(&state, &headers, flow.flow_type, &params));
        }
        _ => {}
    }
    let Some(submission) = state.login.read(&body) else {
        flow.ui.reset_messages();
        flow.ui.messages.push(text::no_login_method());
        return Ok(flows::show_flow(
            &state,
            flow,
            &headers,
            StatusCode::BAD_REQUEST,
            &state.web.login_ui_url,
        ));
    };
    flow.transient_payload = crate::submit::transient_payload(&body)?;
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    if submission.sends_code(&flow.state) {
        crate::send_limits::admit_code_request(&state, &headers, peer).await?;
    }
    let submitted = state
        .login
        .submit(
            flow,
            submission,
            device(&headers, peer, &state.web.trusted_proxies),
            signed_in.as_ref().map(|hit| &hit.session),
        )
        .await;
    let outcome = match state.metrics.submitted(FlowKind::Login, submitted) {
        Ok(outcome) => outcome,
        Err(e) => return Ok(flows::flow_failure_response(e, &headers, &state.web.login_ui_url)),
    };
    let (flow, identity, issued, verification) = match outcome {
        // As Kratos: JSON clients get the flow asking for the code with a 400.
        LoginOutcome::Rejected(flow) | LoginOutcome::CodeSent(flow) => {
            return Ok(flows::show_flow(
                &state,
                flow,
                &headers,
                StatusCode::BAD_REQUEST,
                &state.web.login_ui_url,
            ));
        }
        LoginOutcome::Accepted { flow, identity, issued, verification } => {
            (flow, identity, issued, verification)
        }
        LoginOutcome::SteppedUp { flow, identity, session } => {
            return Ok(stepped_up(&state, &headers, &flow, &identity, &session));
        }
        LoginOutcome::Throttled { flow, limit, retry_after_seconds } => {
            // Browsers posting the form get it back with the message, as
            // with any other refused login; clients reading JSON get a 429.
            if flow.flow_type == FlowType::Browser && !wants_json(&headers) {
                return Ok(flows::see_other(&format!("{}?flow={}", state.web.login_ui_url, flow.id)));
            }
            let reason = match limit {
                Limit::Identifier => format!(
                    "Too many failed sign-in attempts for this identifier. Try again in {retry_after_seconds} seconds."
                ),
                Limit::IdentifierFromAddress => format!(
                    "Too many failed sign-in attempts for this identifier from this network address. Try again in {retry_after_seconds} seconds."
                ),
                Limit::Address => format!(
                    "Too many failed sign-in attempts from this network address. Try again in {retry_after_seconds} seconds."
                ),
            };
            return Err(ApiError::too_many_requests(std::time::Duration::from_secs(retry_after_seconds))
                .with_reason(reason));
        }
        LoginOutcome::Unverified { verification } => {
            let url = views::verification_ui_url(&state.web.verification_ui_url, &verification);
            if verification.flow_type == FlowType::Browser && !wants_json(&headers) {
                return Ok(flows::see_other(&url));
            }
            let item = views::verification_ui(&verification, Some(url));
            let mut error = ApiError::new(StatusCode::FORBIDDEN, "your email or phone address is not yet verified")
                .with_id("session_verified_address_required")
                .with_reason(
                    "Your account's email or phone address are not verified yet. Please check your email or phone inbox or re-request verification.",
                );
            error.extra = Some(Box::new(Extra {
                details: Some(json!({ "continue_with": [item] })),
                ..Default::default()
            }));
            return Err(error);
        }
    };
    // As Kratos: a session whoami would refuse until its second factor is in
    // sends browsers to the step-up login, and shows native apps no identity.
    let step_up = (!state.sessions.meets_whoami_aal(&issued.session, &identity))
        .then(|| aal::step_up_url_after(&state.urls.public, &flow.request_url));
    let session = views::session(
        &issued.session,
        step_up.is_none().then_some(&identity),
        &state.urls,
        views::Audience::Public,
        true,
        state.clock.now(),
    );
    // `null` unless the show_verification_ui hook names a flow a code went out in.
    let show_verification =
        verification.map(|v| views::show_verification_ui(&v, &state.web.verification_ui_url));
    let target = flows::after_success(&state, &flow, show_verification.as_ref());
    let mut body =
        SignedIn { continue_with: show_verification.map(|item| vec![item]), session, session_token: None };
    if flow.flow_type == FlowType::Api {
        body.session_token = Some(&issued.token);
        return Ok(Json(body).into_response());
    }
    let max_age = state
        .web
        .session_cookie_persistent
        .then(|| (issued.session.expires_at - state.clock.now()).num_seconds());
    let cookie = cookies::set(&state.web.cookies, &state.web.session_cookie_name, &issued.token, max_age);
    let response = if let Some(url) = step_up {
        if wants_json(&headers) {
            aal::browser_location_change_required(url).into_response()
        } else {
            flows::see_other(&url)
        }
    } else if wants_json(&headers) {
        // As Kratos: a browser flow answered as JSON names where to go next,
        // which single-page apps (Ory Elements) follow, e.g. back to settings
        // after a refresh.
        let back = flow.return_to.clone().unwrap_or_else(|| state.web.default_browser_return_url.clone());
        let mut items = vec![ContinueWith::RedirectBrowserTo { redirect_browser_to: back }];
        items.extend(body.continue_with.take().unwrap_or_default());
        body.continue_with = Some(items);
        Json(body).into_response()
    } else {
        flows::see_other(&target)
    };
    Ok(flows::with_cookie(response, Some(cookie)))
}

/// `?aal=aal2` without a session: the first factor comes first.
fn aal1_required() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "aal2 and aal3 can only be requested if a session exists already")
        .with_id("session_aal1_required")
        .with_reason("You can not requested a higher AAL (AAL2/AAL3) without an active session.")
}

/// The answer to a step-up: the raised session, under the token it already
/// had (native apps get it back as Kratos sends it; browsers keep their
/// cookie, renewed for the session's new expiry).
fn stepped_up(
    state: &AppState,
    headers: &HeaderMap,
    flow: &Flow,
    identity: &Identity,
    session: &Session,
) -> Response {
    let now = state.clock.now();
    let view = views::session(session, Some(identity), &state.urls, views::Audience::Public, true, now);
    let token = session_token(headers, &state.web.session_cookie_name);
    let mut body = SignedIn { continue_with: None, session: view, session_token: None };
    if flow.flow_type == FlowType::Api {
        body.session_token = token;
        return Json(body).into_response();
    }
    let target = flows::after_success(state, flow, None);
    let response = if wants_json(headers) {
        body.continue_with = Some(vec![ContinueWith::RedirectBrowserTo { redirect_browser_to: target }]);
        Json(body).into_response()
    } else {
        flows::see_other(&target)
    };
    let cookie = token.map(|token| {
        let max_age = state.web.session_cookie_persistent.then(|| (session.expires_at - now).num_seconds());
        cookies::set(&state.web.cookies, &state.web.session_cookie_name, token, max_age)
    });
    flows::with_cookie(response, cookie)
}
