//! `/ui/dev/mail`: with `--dev` only, the courier's outbox as pages, newest
//! first, and each message's text body, so someone trying Latchkey locally
//! reads their code without a mail server. Read through the domain's
//! `Outbox`, as the admin API's courier endpoints are.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use latchkey_domain::courier::Message;
use serde_json::{Value, json};
use uuid::Uuid;

use super::i18n::Lang;
use super::{context, error_page, render};
use crate::error::ApiError;
use crate::state::AppState;

/// Enough for a local trial; older messages stay in the admin API.
const SHOWN: usize = 200;

fn summary(state: &AppState, m: &Message) -> Value {
    json!({
        "id": m.id,
        "href": format!("{}/ui/dev/mail/{}", state.urls.public, m.id),
        "recipient": m.recipient,
        "subject": m.subject,
        "status": m.status.as_str(),
        "template_type": m.template_type,
        "created_at": m.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let lang = Lang::negotiate(&headers);
    let messages = match state.outbox.newest(SHOWN).await {
        Ok(messages) => messages,
        Err(e) => return error_page::from_api_error(&state, lang, e.into()),
    };
    let mut context = context(&state, lang, "mail");
    context.insert("messages".into(), messages.iter().map(|m| summary(&state, m)).collect());
    render("mail_list.html", StatusCode::OK, context)
}

pub async fn show(State(state): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let lang = Lang::negotiate(&headers);
    let not_found = || ApiError::not_found("Unable to locate the resource");
    let found = match Uuid::parse_str(&id) {
        Ok(id) => state.outbox.get(id).await.map_err(ApiError::from),
        Err(_) => Ok(None),
    };
    let message = match found {
        Ok(Some((message, _))) => message,
        Ok(None) => return error_page::from_api_error(&state, lang, not_found()),
        Err(e) => return error_page::from_api_error(&state, lang, e),
    };
    let mut context = context(&state, lang, "mail");
    let mut shown = summary(&state, &message);
    shown["body"] = json!(message.body);
    context.insert("message".into(), shown);
    context.insert("all".into(), json!(format!("{}/ui/dev/mail", state.urls.public)));
    render("mail_message.html", StatusCode::OK, context)
}
