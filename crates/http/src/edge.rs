//! The outer layers every request passes through, added in one place: a
//! request id, one span per request with its completion logged, and CORS.
//! The layers inside them (metrics, input bounds, `Cache-Control`) are each
//! router's own, added in `lib.rs` (`finish`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::cors::CorsLayer;
use tower_http::trace::TraceLayer;
use tracing::{Level, Span};

/// The header a request id is read from and echoed in, as Kratos's proxies use it.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// A client's id longer than this is replaced by a fresh one.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The id of the request being served.
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

tokio::task_local! {
    /// Set while a request's handler runs, so an error can name its request
    /// (`error.request`) without every handler passing the id along.
    static REQUEST_ID: RequestId;
}

/// The id of the request being served on this task, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(|id| Arc::clone(&id.0)).ok()
}

/// Lets the server connect request spans to trace export without this
/// crate depending on an exporter: `on_request` runs when the span is made,
/// before it is entered; `on_response` when the response is ready.
#[derive(Debug, Clone, Copy)]
pub struct SpanHooks {
    pub on_request: fn(&Request, &Span),
    pub on_response: fn(&Response, &Span),
}

/// Wraps a finished router. `Router::layer` wraps each route (and the
/// fallbacks), so the span sees the matched route template and preflight
/// `OPTIONS` is answered on every path. Outermost first: request id, span,
/// CORS. `hooks` are set only when spans are exported.
pub fn edge(router: Router, cors: Option<CorsLayer>, hooks: Option<SpanHooks>) -> Router {
    let router = match cors {
        Some(cors) => router.layer(cors),
        None => router,
    };
    router
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(move |request: &Request| {
                    let span = make_span(request);
                    if let Some(hooks) = hooks {
                        (hooks.on_request)(request, &span);
                    }
                    span
                })
                .on_request(())
                .on_response(move |response: &Response, latency: Duration, span: &Span| {
                    if let Some(hooks) = hooks {
                        (hooks.on_response)(response, span);
                    }
                    on_response(response, latency, span);
                })
                // 5xx causes are logged once, as `ApiError` makes its response.
                .on_failure(()),
        )
        .layer(middleware::from_fn(request_id))
}

/// Takes the client's `X-Request-Id` when it is short visible ASCII (so it
/// cannot forge log lines), else a new UUID v4; echoes it in the response.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&REQUEST_ID_HEADER)
        .map(HeaderValue::as_bytes)
        .filter(|id| is_sane(id))
        .and_then(|id| std::str::from_utf8(id).ok())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let id = RequestId(id.into());
    request.extensions_mut().insert(id.clone());
    let value = HeaderValue::from_str(&id.0).expect("visible ASCII");
    let mut response = REQUEST_ID.scope(id, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

fn is_sane(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_LEN).contains(&id.len()) && id.iter().all(u8::is_ascii_graphic)
}

/// Probes and scrapes are logged at debug, so they do not drown the log.
fn is_quiet(route: &str) -> bool {
    ["/health/alive", "/health/ready", "/metrics/prometheus"].iter().any(|p| route.ends_with(p))
}

/// Method, route template (never the raw path or query, which may carry
/// tokens or codes) and request id; status and latency are filled in when
/// the response is ready.
fn make_span(request: &Request) -> Span {
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
    let id = request.extensions().get::<RequestId>().map_or("", |id| &id.0);
    let method = request.method().as_str();
    macro_rules! span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "request",
                method,
                route,
                request_id = id,
                status = tracing::field::Empty,
                latency_ms = tracing::field::Empty,
            )
        };
    }
    if is_quiet(route) { span!(Level::DEBUG) } else { span!(Level::INFO) }
}

/// One line per request, at the span's level.
fn on_response(response: &Response, latency: Duration, span: &Span) {
    let status = response.status().as_u16();
    let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    match span.metadata().map(|m| *m.level()) {
        Some(Level::INFO) => tracing::info!(status, latency_ms, "request completed"),
        Some(_) => tracing::debug!(status, latency_ms, "request completed"),
        // The span is filtered out, and so is its line.
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_visible_ascii_ids_are_kept() {
        assert!(is_sane(b"abc-123_XYZ.req"));
        assert!(is_sane(&[b'a'; MAX_REQUEST_ID_LEN]));
        assert!(!is_sane(&[b'a'; MAX_REQUEST_ID_LEN + 1]));
        assert!(!is_sane(b""));
        assert!(!is_sane(b"two words"));
        assert!(!is_sane(b"line\nbreak"));
        assert!(!is_sane("caf\u{e9}".as_bytes()));
    }
}
