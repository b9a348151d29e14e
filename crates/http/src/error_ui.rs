//! Browsers are not shown raw JSON: a browser request to a self-service
//! route that fails outside the form (a CSRF violation, a flow that is gone,
//! a server failure) has its error stored by the error flow and is sent 303
//! to `selfservice.flows.error.ui_url?id=<id>`, as Kratos's error manager
//! does. Requests that want JSON and native (`api`) flows keep the JSON
//! error. Failures a form can show are answered with the flow itself and
//! never reach here.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use latchkey_domain::flow::{FlowKind, FlowType};

use crate::error::AnsweredError;
use crate::public::flows::{flow_id, see_other};
use crate::query::QueryParams;
use crate::request::wants_json;
use crate::state::AppState;

/// Middleware for the public routes.
pub async fn forward(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if !is_browser_route(path) || wants_json(request.headers()) {
        return next.run(request).await;
    }
    let submitted = submit_kind(path).map(|kind| (kind, QueryParams::parse(request.uri().query())));
    let response = next.run(request).await;
    let Some(AnsweredError(error)) = response.extensions().get::<AnsweredError>() else {
        return response;
    };
    // Errors on a native flow stay JSON whatever the request asks for, as
    // in Kratos, which loads the flow before anything else can fail.
    if let Some((kind, params)) = submitted
        && let Ok(id) = flow_id(&params, "flow")
        && let Ok(flow) = state.flows.load(id, kind).await
        && flow.flow_type == FlowType::Api
    {
        return response;
    }
    match state.flow_errors.record(error.clone()).await {
        Ok(id) => {
            let url = &state.web.error_ui_url;
            let separator = if url.contains('?') { '&' } else { '?' };
            see_other(&format!("{url}{separator}id={id}"))
        }
        Err(e) => {
            // The error itself is still worth showing.
            tracing::error!(error = %e, "could not store an error for the error UI");
            response
        }
    }
}

/// The flow a submit route (`/self-service/<kind>`) is for.
fn submit_kind(path: &str) -> Option<FlowKind> {
    match path.strip_prefix("/self-service/")? {
        "login" => Some(FlowKind::Login),
        "registration" => Some(FlowKind::Registration),
        "recovery" => Some(FlowKind::Recovery),
        "verification" => Some(FlowKind::Verification),
        "settings" => Some(FlowKind::Settings),
        _ => None,
    }
}

/// Where Kratos forwards errors to the error UI: starting a browser flow,
/// submitting any flow (its type is known only once it is loaded), and
/// browser logout.
fn is_browser_route(path: &str) -> bool {
    // Every public request passes here (whoami too): no allocation.
    let Some(rest) = path.strip_prefix("/self-service/") else { return false };
    matches!(
        rest.strip_suffix("/browser").unwrap_or(rest),
        "login" | "registration" | "recovery" | "verification" | "settings" | "logout"
    )
}

#[cfg(test)]
mod tests {
    use super::is_browser_route;

    #[test]
    fn browser_starts_submits_and_logout_forward() {
        for path in [
            "/self-service/login",
            "/self-service/settings",
            "/self-service/registration/browser",
            "/self-service/logout",
            "/self-service/logout/browser",
        ] {
            assert!(is_browser_route(path), "{path}");
        }
        for path in [
            "/self-service/login/api",
            "/self-service/login/flows",
            "/self-service/logout/api",
            "/self-service/errors",
            "/self-service/browser",
            "/self-service/login/browser/more",
            "/self-service/loginbrowser",
            "/sessions/whoami",
        ] {
            assert!(!is_browser_route(path), "{path}");
        }
    }
}
