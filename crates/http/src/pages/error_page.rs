//! `/ui/error?id=`: the error UI a failed browser request is sent to. It
//! also renders errors the pages meet themselves (a lost CSRF cookie when
//! showing a flow), from the API's error envelope.

use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::i18n::Lang;
use super::{context, render};
use crate::error::ApiError;
use crate::query::QueryParams;
use crate::state::AppState;

pub async fn show(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::negotiate(&headers);
    let params = QueryParams::parse(uri.query());
    let id = params.first("id").filter(|id| !id.is_empty());
    let error = match id {
        Some(id) => stored_error(&state, id).await,
        None => None,
    };
    page(&state, lang, StatusCode::OK, error.as_ref(), id)
}

/// The error stored under `id` (or a stub id), shaped as the API answers
/// errors (`{"error": {code, status, reason, message, …}}`); `None` when it
/// is unknown or expired, and the page then shows the id and a generic
/// message. A failure to read it is logged and treated the same way.
async fn stored_error(state: &AppState, id: &str) -> Option<Value> {
    match state.flow_errors.find(id).await {
        Ok(found) => found.map(|record| json!({ "error": record.error })),
        Err(e) => {
            tracing::warn!(error = %e, "could not read a stored error for the error page");
            None
        }
    }
}

/// An error a page ran into, shown as a page with the error's status.
pub fn from_api_error(state: &AppState, lang: Lang, error: ApiError) -> Response {
    error.log_cause();
    let body = error.body();
    page(state, lang, error.status, Some(&body), None)
}

fn page(
    state: &AppState,
    lang: Lang,
    status: StatusCode,
    error: Option<&Value>,
    id: Option<&str>,
) -> Response {
    let mut context = context(state, lang, "error");
    context.insert("error".into(), error.map_or(Value::Null, |e| e["error"].clone()));
    context.insert("reference".into(), json!(id));
    let link = |id: &str, path: &str, key: &str| json!({ "id": id, "href": format!("{}{path}", state.urls.public), "text": lang.word(key).unwrap_or(key) });
    context.insert(
        "links".into(),
        json!([
            link("link-start-again", "/ui/login", "link_start_again"),
            link("link-welcome", "/ui/welcome", "link_welcome")
        ]),
    );
    render("error.html", status, context)
}
