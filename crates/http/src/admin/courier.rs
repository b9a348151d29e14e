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
use latchkey_domain::store::{MessageCursor, MessageQuery};
use serde::Serialize;
use uuid::Uuid;

use crate::error::ApiError;
use crate::pagination::{self, KeysetPage};
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
    let size = KeysetPage::size(&params, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
    let after = match params.first("page_token").filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => read_token(token).ok_or_else(pagination::invalid_token)?,
    };
    let status = match params.first("status").filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => {
            Some(s.parse().map_err(|e: UnknownValue| ApiError::bad_request().with_reason(e.to_string()))?)
        }
    };
    let query = MessageQuery {
        status,
        recipient: params.first("recipient").filter(|r| !r.is_empty()).map(str::to_string),
        after,
        limit: size + 1,
    };
    let mut messages = state.outbox.list(&query).await?;
    let has_next = messages.len() > size as usize;
    messages.truncate(size as usize);
    let body: Vec<_> = messages.iter().map(|m| message(&state, m, None)).collect();
    let mut response = Json(body).into_response();
    let next = messages.last().filter(|_| has_next).map(|m| token(m.created_at, m.id));
    if let Some(link) = pagination::keyset_link(uri.path(), &params, size, FIRST_TOKEN, next.as_deref()) {
        response.headers_mut().insert(header::LINK, link);
    }
    Ok(response)
}

/// The first page's token: nothing before it.
const FIRST_TOKEN: &str = "";

/// Messages list newest first (as Kratos lists them), so a page ends at a
/// time and an id: the token is the last message's creation time in
/// microseconds since 1970, a dot, and its id.
fn token(created_at: DateTime<Utc>, id: Uuid) -> String {
    format!("{}.{id}", created_at.timestamp_micros())
}

fn read_token(token: &str) -> Option<Option<MessageCursor>> {
    // Older links carried a bare nil id for the first page.
    if Uuid::parse_str(token).is_ok_and(|id| id.is_nil()) {
        return Some(None);
    }
    let (micros, id) = token.split_once('.')?;
    let created_at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    Some(Some(MessageCursor { created_at, id: Uuid::parse_str(id).ok()? }))
}

async fn show(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = Uuid::parse_str(&id).map_err(|_| ApiError::not_found("Unable to locate the resource"))?;
    let (m, dispatches) =
        state.outbox.get(id).await?.ok_or_else(|| ApiError::not_found("Unable to locate the resource"))?;
    Ok(Json(message(&state, &m, Some(&dispatches))).into_response())
}
