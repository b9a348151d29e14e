//! `/self-service/settings/*`: a signed-in identity's account settings, for
//! native apps and browsers. Every endpoint needs the session whose
//! identity owns the flow.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use latchkey_domain::flow::settings::{SettingsOutcome, SettingsSubmission};
use latchkey_domain::flow::{Flow, FlowError, FlowKind, FlowType};
use latchkey_domain::identity::Identity;
use latchkey_domain::session::Session;
use latchkey_domain::text;
use serde_json::{Value, json};

use super::flows::{self, current_session};
use crate::error::{ApiError, Extra};
use crate::query::QueryParams;
use crate::request::{cookie, device, wants_json};
use crate::state::AppState;
use crate::views::{self, Audience, ContinueWith, CredentialsView};
use crate::{aal, csrf};

pub fn router() -> Router<AppState> {
    flows::flow_routes(FlowKind::Settings, init, get(fetch), get(submit).post(submit))
}

fn session_inactive() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "The request could not be authorized")
        .with_id("session_inactive")
        .with_reason("This endpoint can only be used with a valid session. Please sign in and try again.")
}

fn identity_mismatch() -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "The requested action was forbidden")
        .with_id("security_identity_mismatch")
        .with_reason("The settings flow belongs to another identity.")
}

/// The settings flow as the SDKs read it: the flow plus the identity it
/// edits, with the second-factor secrets it offers filled in for this
/// answer only (the stored flow holds them sealed).
fn body(
    state: &AppState,
    flow: &Flow,
    identity: &Identity,
    continue_with: Vec<ContinueWith>,
) -> Result<Value, ApiError> {
    let mut shown = flow.clone();
    state.settings.show_secrets(&mut shown).map_err(flows::flow_failure)?;
    let mut out = views::flow(&shown);
    out["identity"] = json!(views::identity(identity, &state.urls, Audience::Public, &CredentialsView::Omit));
    // Kratos omits an empty `continue_with` (`omitempty`), never `null`.
    if !continue_with.is_empty() {
        out["continue_with"] = json!(continue_with);
    }
    Ok(out)
}

/// JSON for JSON clients (with a freshly masked CSRF token for browsers),
/// the settings UI for browsers that want HTML.
fn answer(
    state: &AppState,
    mut flow: Flow,
    identity: &Identity,
    headers: &HeaderMap,
    status: StatusCode,
) -> Result<Response, ApiError> {
    if flow.flow_type == FlowType::Browser && !wants_json(headers) {
        return Ok(flows::see_other(&format!("{}?flow={}", state.web.settings_ui_url, flow.id)));
    }
    if flow.flow_type == FlowType::Browser
        && let Some(secret) =
            cookie(headers, &state.web.csrf_cookie_name).filter(|c| csrf::is_valid_secret(c))
    {
        flow.set_csrf_token(&csrf::mask(secret));
    }
    Ok((status, Json(body(state, &flow, identity, Vec::new())?)).into_response())
}

async fn init(
    state: AppState,
    uri: Uri,
    headers: HeaderMap,
    flow_type: FlowType,
) -> Result<Response, ApiError> {
    let Some((session, identity)) = current_session(&state, &headers).await? else {
        if flow_type == FlowType::Browser && !wants_json(&headers) {
            return Ok(flows::see_other(&state.web.login_ui_url));
        }
        return Err(session_inactive());
    };
    if !state.settings.meets_required_aal(&session, &identity) {
        // As Kratos: a browser that named a `return_to` comes back to this very start.
        let asked_return = QueryParams::parse(uri.query()).first("return_to").is_some_and(|r| !r.is_empty());
        let back = (flow_type == FlowType::Browser && asked_return).then(|| request_url(&state, &uri));
        let login = aal::step_up_url(&state.urls.public, None, back.as_deref());
        if flow_type == FlowType::Browser && !wants_json(&headers) {
            return Ok(flows::see_other(&login));
        }
        return Err(aal::aal2_required(login));
    }
    let started = flows::flow_request(&state, flow_type, &uri, &headers)?;
    let mut flow = state.settings.create(&started.request, &identity).await.map_err(flows::flow_failure)?;
    state.metrics.flow_started(flow.kind(), flow.flow_type);
    let response = if flow_type == FlowType::Browser && !wants_json(&headers) {
        flows::see_other(&format!("{}?flow={}", state.web.settings_ui_url, flow.id))
    } else {
        flow.set_csrf_token(&started.csrf_token);
        Json(body(&state, &flow, &identity, Vec::new())?).into_response()
    };
    Ok(flows::with_cookie(response, started.set_cookie))
}

/// The URL this request was made to, on the public base URL.
fn request_url(state: &AppState, uri: &Uri) -> String {
    let path = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.to_string());
    format!("{}{path}", state.urls.public)
}

/// The session, and the flow only if it belongs to the session's identity.
async fn owned_flow(
    state: &AppState,
    headers: &HeaderMap,
    flow: &Flow,
) -> Result<(Session, Identity), ApiError> {
    let (session, identity) = current_session(state, headers).await?.ok_or_else(session_inactive)?;
    if flow.identity_id != Some(identity.id) {
        return Err(identity_mismatch());
    }
    Ok((session, identity))
}

async fn fetch(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let id = flows::fetch_id(&params)?;
    Ok(Json(fetch_view(&state, id, &headers).await?).into_response())
}

/// What `GET /self-service/settings/flows?id=` shows: the flow, only to
/// the session owning it, only with its CSRF cookie, not expired.
pub async fn fetch_view(state: &AppState, id: uuid::Uuid, headers: &HeaderMap) -> Result<Value, ApiError> {
    let flow = match state.flows.load(id, FlowKind::Settings).await {
        Err(FlowError::NotFound) => return Err(flows::flow_not_found()),
        other => other.map_err(flows::flow_failure)?,
    };
    let (session, identity) = owned_flow(state, headers, &flow).await?;
    if !state.settings.meets_required_aal(&session, &identity) {
        // Back to the settings UI with this flow once the second factor is in.
        let back = format!("{}?flow={}", state.web.settings_ui_url, flow.id);
        return Err(aal::aal2_required(aal::step_up_url(&state.urls.public, None, Some(&back))));
    }
    if flow.flow_type == FlowType::Browser {
        let matches = cookie(headers, &state.web.csrf_cookie_name)
            .is_some_and(|secret| flow.csrf_hash.as_deref() == Some(csrf::hash(secret).as_str()));
        if !matches {
            return Err(flows::csrf_violation("The anti-CSRF cookie does not belong to this flow."));
        }
    }
    if flow.is_expired(state.clock.now()) {
        return Err(ApiError::new(StatusCode::GONE, "self-service flow expired")
            .with_reason("The self-service flow expired; initialize a new one."));
    }
    let mut flow = flow;
    if flow.flow_type == FlowType::Browser
        && let Some(secret) = cookie(headers, &state.web.csrf_cookie_name)
    {
        flow.set_csrf_token(&csrf::mask(secret));
    }
    body(state, &flow, &identity, Vec::new())
}

/// 403 `session_refresh_required`: sign in again, then come back to this flow.
fn refresh_required(state: &AppState, flow: &Flow) -> ApiError {
    let back = format!("{}/self-service/settings?flow={}", state.urls.public, flow.id);
    let login = format!(
        "{}/self-service/login/browser?refresh=true&return_to={}",
        state.urls.public,
        form_urlencoded::byte_serialize(back.as_bytes()).collect::<String>()
    );
    let mut error = ApiError::new(StatusCode::FORBIDDEN, "The requested action was forbidden")
        .with_id("session_refresh_required")
        .with_reason("The login session is too old and thus not allowed to update these fields. Please re-authenticate.");
    let mut siblings = serde_json::Map::new();
    siblings.insert("redirect_browser_to".into(), json!(login));
    error.extra = Some(Box::new(Extra {
        details: Some(json!({ "redirect_browser_to": login })),
        siblings,
        ..Default::default()
    }));
    error
}

/// A browser sent back to `GET /self-service/settings?flow=` with nothing
/// to submit (where a refresh login returns to) goes on to the settings UI
/// with its flow, as in Kratos, rather than failing the CSRF check of a submit.
fn browser_return(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
    params: &QueryParams,
    body: &Value,
) -> Option<String> {
    let nothing_submitted = body.as_object().is_none_or(|fields| fields.is_empty());
    if *method != Method::GET || wants_json(headers) || !nothing_submitted {
        return None;
    }
    let id = uuid::Uuid::parse_str(params.first("flow")?).ok()?;
    Some(format!("{}?flow={id}", state.web.settings_ui_url))
}

async fn submit(
    State(state): State<AppState>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    crate::submit::SubmitBody(body_json): crate::submit::SubmitBody,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    if let Some(ui) = browser_return(&state, &method, &headers, &params, &body_json) {
        return Ok(flows::see_other(&ui));
    }
    let mut flow = flows::load_for_submit(&state, &params, &headers, &body_json, FlowKind::Settings).await?;
    // A browser whose session is gone signs in again, as in Kratos.
    if flow.flow_type == FlowType::Browser
        && !wants_json(&headers)
        && current_session(&state, &headers).await?.is_none()
    {
        return Ok(flows::see_other(&format!("{}/self-service/login/browser", state.urls.public)));
    }
    let (session, identity) = owned_flow(&state, &headers, &flow).await?;
    if !state.settings.meets_required_aal(&session, &identity) {
        let login = aal::step_up_url(&state.urls.public, None, Some(&request_url(&state, &uri)));
        if flow.flow_type == FlowType::Browser && !wants_json(&headers) {
            return Ok(flows::see_other(&login));
        }
        return Err(aal::aal2_required(login));
    }
    let Some(submission) = SettingsSubmission::read(&body_json, &identity.traits) else {
        flow.ui.reset_messages();
        flow.ui.messages.push(text::no_settings_method());
        return answer(&state, flow, &identity, &headers, StatusCode::BAD_REQUEST);
    };
    flow.transient_payload = crate::submit::transient_payload(&body_json)?;
    // Named in the notices a change sends to the owner.
    let device = device(&headers, peer.map(|Extension(ConnectInfo(addr))| addr), &state.web.trusted_proxies);
    let submitted = state.settings.submit(flow, &session, submission, &device).await;
    let outcome = match state.metrics.submitted(FlowKind::Settings, submitted) {
        Ok(outcome) => outcome,
        Err(e @ FlowError::Expired { .. }) => {
            return Ok(flows::flow_failure_response(e, &headers, &state.web.settings_ui_url));
        }
        Err(e) => return Err(flows::flow_failure(e)),
    };
    match outcome {
        SettingsOutcome::Rejected(flow) => answer(&state, flow, &identity, &headers, StatusCode::BAD_REQUEST),
        SettingsOutcome::Shown(flow) => answer(&state, flow, &identity, &headers, StatusCode::OK),
        SettingsOutcome::RefreshRequired(flow) => {
            if flow.flow_type == FlowType::Browser && !wants_json(&headers) {
                return Ok(flows::see_other(&format!(
                    "{}/self-service/login/browser?refresh=true",
                    state.urls.public
                )));
            }
            Err(refresh_required(&state, &flow))
        }
        SettingsOutcome::Saved { flow, identity: updated, verification } => {
            let show_verification = verification
                .filter(|_| state.web.settings_shows_verification)
                .map(|v| views::show_verification_ui(&v, &state.web.verification_ui_url));
            if flow.flow_type == FlowType::Api {
                let continue_with = show_verification.into_iter().collect();
                return Ok(Json(body(&state, &flow, &updated, continue_with)?).into_response());
            }
            let target = flow
                .return_to
                .clone()
                .unwrap_or_else(|| format!("{}?flow={}", state.web.settings_ui_url, flow.id));
            if wants_json(&headers) {
                let mut continue_with = vec![ContinueWith::RedirectBrowserTo { redirect_browser_to: target }];
                continue_with.extend(show_verification);
                let mut flow = flow;
                if let Some(secret) = cookie(&headers, &state.web.csrf_cookie_name) {
                    flow.set_csrf_token(&csrf::mask(secret));
                }
                Ok(Json(body(&state, &flow, &updated, continue_with)?).into_response())
            } else {
                Ok(flows::see_other(&target))
            }
        }
    }
}
