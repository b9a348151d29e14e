//! `/admin/courier/messages`: what the courier sent, is sending, or gave
//! up on. Subjects and bodies carry codes, so they are shown only in `--dev`.

use axum::extract::{OriginalUri, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use latchkey_domain::UnknownValue;
use latchkey_domain::courier::{Dispatch, Message, MessageStatus};
use latchkey_domain::store::MessageQuery;
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::pagination::KeysetPage;
use crate::query::QueryParams;
use crate::state::AppState;
use crate::views;

const REDACTED: &str = "<redacted-unless-dev-mode>";
const DEFAULT_PAGE_SIZE: u32 = 250;
const MAX_PAGE_SIZE: u32 = 1000;

pub fn router() -> Router<AppState> {
    Router::new().route("/courier/messages", get(list)).route("/courier/messages/{id}", get(show))
}

/// A message as the API shows it; keys in alphabetical order, as the wire
/// has always had them. `dispatches` only on a single message.
#[derive(Serialize)]
struct MessageView<'a> {
    body: &'a str,
    channel: &'static str,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "views::sorted")]
    dispatches: Option<&'a [Dispatch]>,
    id: Uuid,
    recipient: &'a str,
    send_count: i32,
    status: MessageStatus,
    subject: &'a str,
    template_type: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    updated_at: DateTime<Utc>,
}

fn message<'a>(state: &AppState, m: &'a Message, dispatches: Option<&'a [Dispatch]>) -> MessageView<'a> {
    let (subject, body) =
        if state.web.dev { (m.subject.as_str(), m.body.as_str()) } else { (REDACTED, REDACTED) };
    MessageView {
        body,
        // Latchkey's courier sends email only.
        channel: "email",
        created_at: m.created_at,
        dispatches,
        id: m.id,
        recipient: &m.recipient,
        send_count: m.send_count,
        status: m.status,
        subject,
        template_type: &m.template_type,
        kind: "email",
        updated_at: m.updated_at,
    }
}

async fn list(State(state): State<AppState>, OriginalUri(uri): OriginalUri) -> Result<Response, ApiError> {
    let params = QueryParams::parse(uri.query());
    let page = KeysetPage::from_params(&params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let status = match params.first("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            Some(s.parse().map_err(|e: UnknownValue| ApiError::bad_request().with_reason(e.to_string()))?)
        }
    };
    let query = MessageQuery {
        status,
        recipient: params.first("recipient").filter(|r| !r.is_empty()).map(str::to_string),
        after: page.after,
        limit: page.size + 1,
    };
    let mut messages = state.outbox.list(&query).await?;
    let has_next = messages.len() > page.size as usize;
    messages.truncate(page.size as usize);
    let body: Vec<_> = messages.iter().map(|m| message(&state, m, None)).collect();
    let mut response = Json(body).into_response();
    if let Some(link) = page.link(uri.path(), &params, messages.last().map(|m| m.id), has_next) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("Unable to locate the resource"))?;
    let (m, dispatches) =
        state.outbox.get(id).await?.ok_or_else(|| ApiError::not_found("Unable to locate the resource"))?;
    Ok(Json(message(&state, &m, Some(&dispatches))).into_response())
}
