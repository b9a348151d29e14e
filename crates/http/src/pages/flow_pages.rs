//! `/ui/login`, `/ui/registration`, `/ui/recovery`, `/ui/verification` and
//! `/ui/settings`: the flow `?flow=` names, fetched as
//! `GET /self-service/<flow>/flows` fetches it (CSRF cookie, expiry,
//! settings' owner), rendered from its own nodes. Without a usable flow the
//! page starts one, as a browser would at `/self-service/<flow>/browser`.

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use latchkey_domain::flow::FlowKind;
use serde_json::{Value, json};
use uuid::Uuid;

use super::i18n::Lang;
use super::{context, error_page, form, render};
use crate::public::{flows, settings};
use crate::query::QueryParams;
use crate::state::AppState;

pub async fn show(state: AppState, kind: FlowKind, uri: Uri, headers: HeaderMap) -> Response {
    let params = QueryParams::parse(uri.query());
    let Some(raw) = params.first("flow").filter(|id| !id.is_empty()) else {
        // `return_to`, `refresh` and the like go along to the start.
        return start(&state, kind, uri.query());
    };
    let Ok(id) = Uuid::parse_str(raw) else {
        return start(&state, kind, None);
    };
    let fetched = match kind {
        FlowKind::Settings => settings::fetch_view(&state, id, &headers).await,
        _ => {
            flows::fetch_flow(&state, kind, id, &headers).await.map(|f| flows::flow_view(&state, f, &headers))
        }
    };
    let lang = Lang::negotiate(&headers);
    match fetched {
        Ok(flow) => page(&state, kind, lang, &flow),
        // Gone, or (settings) signed out: start afresh; settings' start
        // sends a signed-out browser to sign in.
        Err(e) if matches!(e.status, StatusCode::NOT_FOUND | StatusCode::UNAUTHORIZED) => {
            start(&state, kind, None)
        }
        Err(e) if e.status == StatusCode::GONE => {
            let return_to = e
                .extra
                .as_ref()
                .and_then(|x| x.details.as_ref())
                .and_then(|d| d["return_to"].as_str())
                .filter(|r| !r.is_empty())
                .map(|r| {
                    format!("return_to={}", form_urlencoded::byte_serialize(r.as_bytes()).collect::<String>())
                });
            start(&state, kind, return_to.as_deref())
        }
        // Settings needs the second factor first: the step-up login, which returns here.
        Err(e) if e.id == Some("session_aal2_required") => {
            match e.extra.as_ref().and_then(|x| x.siblings.get("redirect_browser_to")).and_then(Value::as_str)
            {
                Some(login) => flows::see_other(login),
                None => error_page::from_api_error(&state, lang, e),
            }
        }
        // A lost CSRF cookie, another identity's flow: nothing to retry here.
        Err(e) => error_page::from_api_error(&state, lang, e),
    }
}

fn start(state: &AppState, kind: FlowKind, query: Option<&str>) -> Response {
    let mut url = format!("{}/self-service/{}/browser", state.urls.public, kind.as_str());
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(query);
    }
    flows::see_other(&url)
}

fn page(state: &AppState, kind: FlowKind, lang: Lang, flow: &Value) -> Response {
    let name = kind.as_str();
    let mut context = context(state, lang, name);
    context.insert("title".into(), json!(lang.word(&format!("title_{name}")).unwrap_or(name)));
    context.insert("form".into(), json!(form::build(&flow["ui"], lang)));
    context.insert("flow_id".into(), flow["id"].clone());
    context.insert("flow_state".into(), flow["state"].clone());
    let link = |id: &str, path: &str, key: &str| json!({ "id": id, "href": format!("{}{path}", state.urls.public), "text": lang.word(key).unwrap_or(key) });
    let links = match kind {
        FlowKind::Login => vec![
            link("link-registration", "/ui/registration", "link_registration"),
            link("link-recovery", "/ui/recovery", "link_recovery"),
        ],
        FlowKind::Registration => vec![link("link-login", "/ui/login", "link_login")],
        FlowKind::Recovery => vec![link("link-login", "/ui/login", "link_back_to_login")],
        FlowKind::Verification | FlowKind::Settings => {
            vec![link("link-welcome", "/ui/welcome", "link_welcome")]
        }
    };
    context.insert("links".into(), Value::Array(links));
    render("flow.html", StatusCode::OK, context)
}
