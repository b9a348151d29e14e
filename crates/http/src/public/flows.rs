//! What every self-service flow endpoint shares: starting a flow from a
//! request (return_to, CSRF cookie), answering browsers and native apps
//! the way each expects, the CSRF and API-client checks on submit, fetching
//! a flow by id, and the errors flows end in.

use std::sync::Arc;

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use latchkey_domain::flow::{Flow, FlowError, FlowKind, FlowRequest, FlowType, field};
use latchkey_domain::identity::Identity;
use latchkey_domain::session::{Session, SessionHit};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{ApiError, Extra};
use crate::query::QueryParams;
use crate::request::{cookie, cookies, session_token, wants_json};
use crate::return_to::{self, Refused};
use crate::state::AppState;
use crate::views::ContinueWith;
use crate::{cookies as set_cookie, csrf, views};

/// The routes every self-service flow has: `/self-service/<kind>/api` and
/// `/browser` start one (`init`, told which type), `/self-service/<kind>/flows`
/// shows it (`fetch`), `/self-service/<kind>` takes submissions (`submit`).
pub fn flow_routes<I, F>(
    kind: FlowKind,
    init: I,
    fetch: MethodRouter<AppState>,
    submit: MethodRouter<AppState>,
) -> Router<AppState>
where
    I: Fn(AppState, Uri, HeaderMap, FlowType) -> F + Clone + Send + Sync + 'static,
    F: std::future::Future<Output = Result<Response, ApiError>> + Send + 'static,
{
    let start = |flow_type: FlowType| {
        let init = init.clone();
        get(move |State(state): State<AppState>, OriginalUri(uri): OriginalUri, headers: HeaderMap| {
            init(state, uri, headers, flow_type)
        })
    };
    let base = format!("/self-service/{}", kind.as_str());
    Router::new()
        .route(&format!("{base}/api"), start(FlowType::Api))
        .route(&format!("{base}/browser"), start(FlowType::Browser))
        .route(&format!("{base}/flows"), fetch)
        .route(&base, submit)
}

/// `/self-service/<kind>/flows?id=` answered by [`fetch`].
pub fn fetch_route(kind: FlowKind) -> MethodRouter<AppState> {
    get(move |State(state): State<AppState>, OriginalUri(uri): OriginalUri, headers: HeaderMap| async move {
        fetch(&state, kind, &uri, &headers).await
    })
}

/// Kratos's answer for a flow switched off in the configuration.
pub fn disabled(kind: FlowKind) -> ApiError {
    let name = kind.as_str();
    let (first, rest) = name.split_at(1);
    ApiError::bad_request()
        .with_id("self_service_flow_disabled")
        .with_reason(format!("{}{rest} is not allowed because it was disabled.", first.to_uppercase()))
}

/// The live session a request carries, if any: one SHA-256 and (on a cache
/// miss) one indexed read, never a write — this is `whoami`'s whole cost.
pub async fn current_session(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<(Session, Identity)>, ApiError> {
    let hit = current_session_hit(state, headers).await?;
    Ok(hit.map(|hit| (hit.session.clone(), hit.identity.clone())))
}

/// [`current_session`] as the whoami cache holds it, shared rather than copied.
pub async fn current_session_hit(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Arc<SessionHit>>, ApiError> {
    let Some(token) = session_token(headers, &state.web.session_cookie_name) else {
        return Ok(None);
    };
    Ok(state.sessions.current(token).await?)
}

/// `return_to` must point somewhere allowed, or open redirects follow.
pub fn checked_return_to(state: &AppState, params: &QueryParams) -> Result<Option<String>, ApiError> {
    checked_url_param(state, params, "return_to")
}

/// A redirect target from the query, checked as [`return_to::check`] does
/// against `selfservice.allowed_return_urls` plus, as in Kratos, our own
/// `/self-service` endpoints. What is kept is the normalised URL.
fn checked_url_param(state: &AppState, params: &QueryParams, key: &str) -> Result<Option<String>, ApiError> {
    let Some(raw) = params.first(key).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    let unparsable =
        || ApiError::bad_request().with_reason("Unable to parse the return_to query parameter as an URL.");
    let base = url::Url::parse(&state.web.default_browser_return_url).map_err(|_| unparsable())?;
    let mut allowed = state.web.allowed_return_urls.clone();
    allowed.push(format!("{}/self-service", state.urls.public));
    match return_to::check(raw, &base, &allowed) {
        Ok(target) => Ok(Some(target.into())),
        Err(Refused::Unparsable) => Err(unparsable()),
        Err(Refused::NotAllowed) => Err(ApiError::bad_request()
            .with_id("self_service_flow_return_to_forbidden")
            .with_reason("Requested return_to URL is not allowed.")),
    }
}

/// A new flow's origin, plus for browsers the masked CSRF token to render
/// and the cookie to set when the request did not carry a valid one.
pub struct Started {
    pub request: FlowRequest,
    pub csrf_token: String,
    pub set_cookie: Option<HeaderValue>,
}

pub fn flow_request(
    state: &AppState,
    flow_type: FlowType,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Started, ApiError> {
    let params = QueryParams::parse(uri.query());
    let return_to = checked_return_to(state, &params)?;
    let after_verification_return_to = checked_url_param(state, &params, "after_verification_return_to")?;
    let request_url = format!(
        "{}{}",
        state.urls.public,
        uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.to_string())
    );
    let (csrf_hash, csrf_token, set) = match flow_type {
        FlowType::Api => (None, String::new(), None),
        FlowType::Browser => {
            let binding = browser_csrf(state, headers);
            (Some(binding.hash), binding.token, binding.set_cookie)
        }
    };
    Ok(Started {
        request: FlowRequest { flow_type, request_url, return_to, after_verification_return_to, csrf_hash },
        csrf_token,
        set_cookie: set,
    })
}

/// A browser's CSRF secret as a flow stores it (`hash`) and shows it
/// (`token`, masked), minting one (and the cookie carrying it) when the
/// request has none.
pub struct CsrfBinding {
    pub hash: String,
    pub token: String,
    pub set_cookie: Option<HeaderValue>,
}

pub fn browser_csrf(state: &AppState, headers: &HeaderMap) -> CsrfBinding {
    let existing = cookie(headers, &state.web.csrf_cookie_name).filter(|c| csrf::is_valid_secret(c));
    let (secret, set_cookie) = match existing {
        Some(secret) => (secret.to_string(), None),
        None => {
            let secret = csrf::new_secret();
            let set = set_cookie::set(
                &state.web.cookies,
                &state.web.csrf_cookie_name,
                &secret,
                Some(365 * 24 * 3600),
            );
            (secret, Some(set))
        }
    };
    CsrfBinding { hash: csrf::hash(&secret), token: csrf::mask(&secret), set_cookie }
}

/// Answers a freshly created flow: browsers wanting HTML go to its UI.
pub fn started(mut flow: Flow, started: Started, headers: &HeaderMap, ui_url: &str) -> Response {
    let response = if flow.flow_type == FlowType::Browser && !wants_json(headers) {
        see_other(&format!("{ui_url}?flow={}", flow.id))
    } else {
        // The cookie may be set by this very response, so use the token minted with it.
        flow.set_csrf_token(&started.csrf_token);
        (StatusCode::OK, Json(views::flow(&flow))).into_response()
    };
    with_cookie(response, started.set_cookie)
}

/// A 303 to `url`.
pub fn see_other(url: &str) -> Response {
    match HeaderValue::from_str(url) {
        Ok(location) => (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

pub fn with_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// The flow as JSON with `status`; browser flows get a freshly masked token.
pub fn flow_json(state: &AppState, flow: Flow, headers: &HeaderMap, status: StatusCode) -> Response {
    (status, Json(flow_view(state, flow, headers))).into_response()
}

/// The flow as the API shows it; browser flows get a freshly masked token.
pub fn flow_view(state: &AppState, mut flow: Flow, headers: &HeaderMap) -> Value {
    if flow.flow_type == FlowType::Browser
        && let Some(secret) =
            cookie(headers, &state.web.csrf_cookie_name).filter(|c| csrf::is_valid_secret(c))
    {
        flow.set_csrf_token(&csrf::mask(secret));
    }
    views::flow(&flow)
}

/// Browsers asking for HTML go to the flow's UI; everyone else gets JSON.
pub fn show_flow(
    state: &AppState,
    flow: Flow,
    headers: &HeaderMap,
    status: StatusCode,
    ui_url: &str,
) -> Response {
    if flow.flow_type == FlowType::Browser && !wants_json(headers) {
        return see_other(&format!("{}?flow={}", ui_url, flow.id));
    }
    flow_json(state, flow, headers, status)
}

pub fn flow_id(params: &QueryParams, key: &str) -> Result<Uuid, ApiError> {
    params.first(key).and_then(|id| Uuid::parse_str(id).ok()).ok_or_else(|| {
        ApiError::bad_request().with_reason("The flow query parameter is missing or malformed.")
    })
}

/// The `id` of `GET /self-service/<flow>/flows`: like Kratos, an id that is
/// missing or not a UUID names no flow, so the answer is 404, not 400.
pub fn fetch_id(params: &QueryParams) -> Result<Uuid, ApiError> {
    params.first("id").and_then(|id| Uuid::parse_str(id).ok()).ok_or_else(flow_not_found)
}

pub fn flow_not_found() -> ApiError {
    ApiError::not_found("Unable to locate the resource")
}

/// Native clients must not look like browsers: a browser on an API flow
/// would bypass CSRF protection.
pub fn ensure_api_client(headers: &HeaderMap) -> Result<(), ApiError> {
    if headers.contains_key(header::ORIGIN) {
        return Err(ApiError::bad_request().with_reason(
            "This endpoint was called with an Origin header, which browsers send. Browsers must use the browser flow.",
        ));
    }
    let browser_cookie = cookies(headers)
        .any(|(name, _)| !(name.starts_with("__cf") || name.starts_with("_cf") || name.starts_with("cf_")));
    if browser_cookie {
        return Err(ApiError::bad_request().with_reason(
            "This endpoint was called with cookies, which browsers send. Browsers must use the browser flow.",
        ));
    }
    Ok(())
}

pub fn csrf_violation(reject_reason: &str) -> ApiError {
    let mut error = ApiError::new(StatusCode::FORBIDDEN, "the request was rejected to protect you from Cross-Site-Request-Forgery")
        .with_id("security_csrf_violation")
        .with_reason("Please retry the flow and optionally clear your cookies. The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF) which could cause account takeover, leaking personal information, and other serious security issues.");
    error.extra = Some(Box::new(Extra {
        details: Some(json!({
            "docs": "https://www.ory.sh/kratos/docs/debug/csrf",
            "hint": "Send the csrf_token field of the form along with the cookie this flow was started with.",
            "reject_reason": reject_reason,
        })),
        ..Default::default()
    }));
    error
}

/// Browser flows must come back with the cookie they were started with and
/// a token that unmasks to it.
pub fn ensure_csrf(
    state: &AppState,
    headers: &HeaderMap,
    flow: &Flow,
    submitted: Option<&str>,
) -> Result<(), ApiError> {
    if flow.flow_type == FlowType::Api {
        return Ok(());
    }
    let Some(secret) = cookie(headers, &state.web.csrf_cookie_name) else {
        return Err(csrf_violation("The anti-CSRF cookie is missing from the request."));
    };
    if flow.csrf_hash.as_deref() != Some(csrf::hash(secret).as_str()) {
        return Err(csrf_violation("The anti-CSRF cookie does not belong to this flow."));
    }
    match submitted {
        None | Some("") => Err(csrf_violation("The csrf_token field was not sent.")),
        Some(token) if csrf::verify(secret, token) => Ok(()),
        Some(_) => Err(csrf_violation("The csrf_token does not match the anti-CSRF cookie.")),
    }
}

/// The flow a submit names, after the checks every submit shares: native
/// clients must not look like browsers, browsers must pass CSRF.
pub async fn load_for_submit(
    state: &AppState,
    params: &QueryParams,
    headers: &HeaderMap,
    body: &Value,
    kind: FlowKind,
) -> Result<Flow, ApiError> {
    let id = flow_id(params, "flow")?;
    let flow = state.flows.load(id, kind).await.map_err(flow_failure)?;
    match flow.flow_type {
        FlowType::Api if state.web.enforce_api_flows => ensure_api_client(headers)?,
        FlowType::Api => {}
        FlowType::Browser if flow.admin_issued() => {}
        FlowType::Browser => ensure_csrf(state, headers, &flow, field(body, "csrf_token"))?,
    }
    Ok(flow)
}

/// `GET /self-service/<flow>/flows?id=`.
pub async fn fetch(
    state: &AppState,
    kind: FlowKind,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let id = fetch_id(&params)?;
    let flow = fetch_flow(state, kind, id, headers).await?;
    Ok(flow_json(state, flow, headers, StatusCode::OK))
}

/// The flow [`fetch`] shows, after its checks: a browser flow only with the
/// CSRF cookie it was started with, and none that expired (410, naming
/// where to start again).
pub async fn fetch_flow(
    state: &AppState,
    kind: FlowKind,
    id: Uuid,
    headers: &HeaderMap,
) -> Result<Flow, ApiError> {
    let flow = match state.flows.load(id, kind).await {
        Ok(flow) => flow,
        Err(FlowError::NotFound) => return Err(flow_not_found()),
        Err(e) => return Err(flow_failure(e)),
    };
    if flow.flow_type == FlowType::Browser && !flow.admin_issued() {
        let matches = cookie(headers, &state.web.csrf_cookie_name)
            .is_some_and(|secret| flow.csrf_hash.as_deref() == Some(csrf::hash(secret).as_str()));
        if !matches {
            return Err(csrf_violation("The anti-CSRF cookie does not belong to this flow."));
        }
    }
    if flow.is_expired(state.clock.now()) {
        let init = format!(
            "{}/self-service/{}/{}",
            state.urls.public,
            kind.as_str(),
            match flow.flow_type {
                FlowType::Api => "api",
                FlowType::Browser => "browser",
            }
        );
        let mut error = ApiError::new(StatusCode::GONE, "self-service flow expired")
            .with_reason("The self-service flow expired; initialize a new one.");
        if matches!(kind, FlowKind::Login | FlowKind::Registration) {
            error = error.with_id("self_service_flow_expired");
        }
        let details = match flow.flow_type {
            FlowType::Api => json!({ "api": init }),
            FlowType::Browser => {
                json!({ "redirect_to": init, "return_to": flow.return_to.clone().unwrap_or_default() })
            }
        };
        error.extra = Some(Box::new(Extra { details: Some(details), ..Default::default() }));
        return Err(error);
    }
    Ok(flow)
}

/// Errors a flow submit can end in, other than a rejected form.
pub fn flow_failure(error: FlowError) -> ApiError {
    match error {
        FlowError::NotFound => ApiError::not_found("The requested resource could not be found"),
        FlowError::Expired { expired_at, replacement } => {
            // The replacement was made when the expiry was noticed, by the domain's clock.
            let ago = replacement.issued_at - expired_at;
            let mut e = ApiError::new(StatusCode::GONE, "self-service flow expired")
                .with_id("self_service_flow_expired")
                .with_reason(format!(
                    "The self-service flow expired {:.2} minutes ago, initialize a new one.",
                    ago.num_milliseconds() as f64 / 60_000.0
                ));
            let mut siblings = serde_json::Map::new();
            siblings.insert("use_flow_id".into(), json!(replacement.id));
            siblings.insert("expired_at".into(), json!(expired_at));
            siblings.insert("since".into(), json!(ago.num_nanoseconds().unwrap_or(i64::MAX)));
            e.extra = Some(Box::new(Extra { siblings, ..Default::default() }));
            e
        }
        FlowError::Store(e) => e.into(),
        FlowError::Internal(cause) => ApiError::internal(cause),
    }
}

/// Expired browser flows that want HTML go to the replacement's UI.
pub fn flow_failure_response(error: FlowError, headers: &HeaderMap, ui_url: &str) -> Response {
    if let FlowError::Expired { replacement, .. } = &error
        && replacement.flow_type == FlowType::Browser
        && !wants_json(headers)
    {
        return see_other(&format!("{ui_url}?flow={}", replacement.id));
    }
    flow_failure(error).into_response()
}

/// Where a browser goes after signing in or up: the verification UI when a
/// `show_verification_ui` item names one, else `return_to`, else the default.
pub fn after_success(state: &AppState, flow: &Flow, show_verification: Option<&ContinueWith>) -> String {
    match show_verification.and_then(ContinueWith::verification_url) {
        Some(url) => url.to_string(),
        None => flow.return_to.clone().unwrap_or_else(|| state.web.default_browser_return_url.clone()),
    }
}

/// Already signed in: 400 for JSON clients, back to where they came from for browsers.
pub fn already_signed_in(
    state: &AppState,
    headers: &HeaderMap,
    flow_type: FlowType,
    params: &QueryParams,
) -> Response {
    if flow_type == FlowType::Browser && !wants_json(headers) {
        let target = checked_return_to(state, params).ok().flatten();
        return see_other(target.as_deref().unwrap_or(&state.web.default_browser_return_url));
    }
    ApiError::bad_request()
        .with_id("session_already_available")
        .with_reason("A valid session was detected and thus this flow cannot be started. Use `?refresh=true` to sign in again.")
        .into_response()
}
