//! The per-client send limits at the edge: every flow start
//! (`GET /self-service/<flow>/{api,browser}`) and every recovery,
//! verification or sign-up submit that asks for a code is counted against the client's
//! address (see [`crate::client_ip`]); past the limit the answer is 429 with
//! `Retry-After`, before any other work. The per-address cap on code mails
//! is the domain's (`latchkey_domain::send_limits`) and never shows.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_domain::send_limits::Verdict;

use crate::error::{ApiError, retry_after_seconds};
use crate::state::AppState;

/// Middleware for the public routes: counts flow starts per client.
pub async fn flow_starts(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // As a route layer this runs only for paths a route matched, so the
    // path is one of the router's own.
    let starts_flow = request.method() == Method::GET && is_flow_start(request.uri().path());
    if !starts_flow {
        return next.run(request).await;
    }
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let client = state.web.trusted_proxies.client_ip(request.headers(), peer);
    match state.send_limits.admit_flow(client).await {
        Ok(Verdict::Allowed) => next.run(request).await,
        Ok(Verdict::Refused { retry_after }) => ApiError::too_many_requests(retry_after)
            .with_reason(format!(
                "Too many flows were started from this network; try again in {} seconds.",
                retry_after_seconds(retry_after)
            ))
            .into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `/self-service/<flow>/api` and `/self-service/<flow>/browser`. Not
/// `/self-service/logout/browser`: UIs ask for a logout URL on every page,
/// and it creates nothing.
fn is_flow_start(path: &str) -> bool {
    matches!(
        path.split('/').collect::<Vec<_>>().as_slice(),
        [
            "",
            "self-service",
            "login" | "registration" | "recovery" | "verification" | "settings",
            "api" | "browser"
        ]
    )
}

/// Counts a code request (a recovery, verification or sign-up submit that
/// would mail a code) from the client, or refuses it.
pub async fn admit_code_request(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), ApiError> {
    let client = state.web.trusted_proxies.client_ip(headers, peer);
    match state.send_limits.admit_code_request(client).await? {
        Verdict::Allowed => Ok(()),
        Verdict::Refused { retry_after } => {
            Err(ApiError::too_many_requests(retry_after).with_reason(format!(
                "Too many codes were requested from this network; try again in {} seconds.",
                retry_after_seconds(retry_after)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_starts_are_the_api_and_browser_inits() {
        for path in
            ["/self-service/login/api", "/self-service/settings/browser", "/self-service/recovery/api"]
        {
            assert!(is_flow_start(path), "{path}");
        }
        for path in [
            "/self-service/login",
            "/self-service/login/flows",
            "/sessions/whoami",
            "/self-service/api",
            "/self-service/logout/browser",
            "/self-service/logout/api",
        ] {
            assert!(!is_flow_start(path), "{path}");
        }
    }
}
