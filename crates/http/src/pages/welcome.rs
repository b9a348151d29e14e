//! `/ui/welcome`: where a browser lands after signing in or up (the default
//! return URL when the pages are on). Signed in, it shows the session and
//! the account, with links to settings and to sign out; signed out, links
//! to sign in or up.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::i18n::Lang;
use super::{context, error_page, render};
use crate::public::flows;
use crate::request::session_token;
use crate::state::AppState;
use crate::views::{self, Audience};

pub async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = Lang::negotiate(&headers);
    let mut context = context(&state, lang, "welcome");
    let current = match flows::current_session(&state, &headers).await {
        Ok(current) => current,
        Err(e) => return error_page::from_api_error(&state, lang, e),
    };
    let link = |id: &str, path: &str, key: &str| json!({ "id": id, "href": format!("{}{path}", state.urls.public), "text": lang.word(key).unwrap_or(key) });
    let Some((session, identity)) = current else {
        context.insert(
            "links".into(),
            json!([
                link("link-login", "/ui/login", "title_login"),
                link("link-registration", "/ui/registration", "title_registration"),
            ]),
        );
        return render("welcome.html", StatusCode::OK, context);
    };
    // What whoami would refuse is not signed in yet: on to the second factor,
    // as Kratos's UIs follow whoami's `redirect_browser_to`.
    if !state.sessions.meets_whoami_aal(&session, &identity) {
        return flows::see_other(&crate::aal::step_up_url(&state.urls.public, None, None));
    }
    let view =
        views::session(&session, Some(&identity), &state.urls, Audience::Public, true, state.clock.now());
    let view = match serde_json::to_value(view) {
        Ok(view) => view,
        Err(e) => return axum::response::IntoResponse::into_response(crate::error::ApiError::internal(e)),
    };
    let mut traits = Vec::new();
    latchkey_domain::ui::flatten("traits", &identity.traits, &mut traits);
    let traits: Vec<Value> = traits
        .into_iter()
        .map(|(name, value)| {
            let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            json!({ "name": name.trim_start_matches("traits."), "value": shown })
        })
        .collect();
    // The token the session came with mints its logout link, as
    // `/self-service/logout/browser` would.
    let logout = session_token(&headers, &state.web.session_cookie_name).map(|token| {
        format!(
            "{}/self-service/logout?token={}",
            state.urls.public,
            latchkey_domain::session::logout_token_for(token)
        )
    });
    let methods: Vec<&Value> = view["authentication_methods"]
        .as_array()
        .map(|m| m.iter().filter_map(|m| m.get("method")).collect())
        .unwrap_or_default();
    context.insert(
        "session".into(),
        json!({
            "id": session.id,
            "identity_id": identity.id,
            "authenticated_at": view["authenticated_at"],
            "expires_at": view["expires_at"],
            "aal": session.aal,
            "methods": methods,
            "traits": traits,
            "addresses": identity.verifiable_addresses.iter()
                .map(|a| json!({ "value": a.value, "verified": a.verified }))
                .collect::<Vec<_>>(),
            "logout_url": logout,
            "json": serde_json::to_string_pretty(&view).unwrap_or_default(),
        }),
    );
    context.insert(
        "links".into(),
        json!([
            link("link-settings", "/ui/settings", "link_settings"),
            link("link-verification", "/ui/verification", "link_verification"),
        ]),
    );
    render("welcome.html", StatusCode::OK, context)
}
