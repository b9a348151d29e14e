//! Kratos's answers for a session below the AAL an endpoint requires
//! (`session.whoami.required_aal`, `selfservice.flows.settings.required_aal`):
//! 403 `session_aal2_required` naming the login that steps the session up,
//! and where a browser goes instead.

use axum::http::StatusCode;
use serde_json::json;

use crate::error::{ApiError, Extra};
use crate::query::QueryParams;

/// The browser login that asks for the second factor:
/// `<public>/self-service/login/browser?aal=aal2`, then `login_challenge` and
/// `return_to` when given, in the order Kratos's encoding sorts them.
pub fn step_up_url(public: &str, login_challenge: Option<&str>, return_to: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("aal", "aal2");
    if let Some(challenge) = login_challenge.filter(|c| !c.is_empty()) {
        query.append_pair("login_challenge", challenge);
    }
    if let Some(return_to) = return_to.filter(|r| !r.is_empty()) {
        query.append_pair("return_to", return_to);
    }
    format!("{public}/self-service/login/browser?{}", query.finish())
}

/// After a sign-in that whoami would refuse: the step-up login carrying
/// the flow's own `return_to` and `login_challenge` (from the URL that
/// started it), as Kratos passes them on.
pub fn step_up_url_after(public: &str, request_url: &str) -> String {
    let query = request_url.split_once('?').map(|(_, q)| q);
    let params = QueryParams::parse(query);
    step_up_url(public, params.first("login_challenge"), params.first("return_to"))
}

/// 403 `session_aal2_required`, with the step-up login in
/// `redirect_browser_to` (top level and in `details`).
pub fn aal2_required(redirect_browser_to: String) -> ApiError {
    let mut error = ApiError::new(
        StatusCode::FORBIDDEN,
        "Session does not fulfill the requested Authenticator Assurance Level",
    )
    .with_id("session_aal2_required")
    .with_reason(
        "An active session was found but it does not fulfill the requested Authenticator Assurance Level. Please verify yourself with a second factor to resolve this issue.",
    );
    let mut siblings = serde_json::Map::new();
    siblings.insert("redirect_browser_to".into(), json!(redirect_browser_to));
    error.extra = Some(Box::new(Extra {
        details: Some(json!({ "redirect_browser_to": redirect_browser_to })),
        siblings,
        ..Default::default()
    }));
    error
}

/// 422 `browser_location_change_required`: a browser answered as JSON must
/// go to `url` (a sign-in that still needs its second factor).
pub fn browser_location_change_required(url: String) -> ApiError {
    let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "browser location change required")
        .with_id("browser_location_change_required")
        .with_reason(format!("In order to complete this flow please redirect the browser to: {url}"));
    let mut siblings = serde_json::Map::new();
    siblings.insert("redirect_browser_to".into(), json!(url));
    error.extra = Some(Box::new(Extra { siblings, ..Default::default() }));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_up_urls_carry_return_to_and_login_challenge() {
        assert_eq!(step_up_url("http://k", None, None), "http://k/self-service/login/browser?aal=aal2");
        assert_eq!(
            step_up_url("http://k", None, Some("http://app/settings?flow=1")),
            "http://k/self-service/login/browser?aal=aal2&return_to=http%3A%2F%2Fapp%2Fsettings%3Fflow%3D1"
        );
        assert_eq!(
            step_up_url_after(
                "http://k",
                "http://k/self-service/login/browser?return_to=http%3A%2F%2Fa&login_challenge=c"
            ),
            "http://k/self-service/login/browser?aal=aal2&login_challenge=c&return_to=http%3A%2F%2Fa"
        );
        assert_eq!(
            step_up_url_after("http://k", "http://k/self-service/login/api"),
            "http://k/self-service/login/browser?aal=aal2"
        );
    }
}
