//! Latchkey's own account pages under `/ui/` on the public listener (with
//! `ui.enabled`), and the `--dev` mail viewer. Server-rendered HTML from
//! templates built into the binary; forms post straight to the flows'
//! `ui.action`, so no page needs JavaScript. Each page reads what the API
//! would answer (the same flow JSON, session, outbox) through the same
//! in-process code, and renders it generically.

mod dev_mail;
mod error_page;
mod flow_pages;
mod form;
mod i18n;
mod welcome;

use std::sync::LazyLock;

use axum::Router;
use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use latchkey_domain::flow::FlowKind;
use minijinja::Environment;
use minijinja::value::Serde;
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::state::AppState;
use i18n::Lang;

/// The templates, each an HTML file escaped by name (`.html`: autoescape).
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("templates/base.html")),
    ("flow.html", include_str!("templates/flow.html")),
    ("node.html", include_str!("templates/node.html")),
    ("welcome.html", include_str!("templates/welcome.html")),
    ("error.html", include_str!("templates/error.html")),
    ("mail_list.html", include_str!("templates/mail_list.html")),
    ("mail_message.html", include_str!("templates/mail_message.html")),
];

const STYLE: &str = include_str!("templates/style.css");

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // Tags leave no blank lines behind.
    let syntax = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build();
    env.set_syntax(syntax.expect("the default delimiters are valid"));
    for (name, source) in TEMPLATES {
        env.add_template(name, source).expect("the built-in templates parse");
    }
    env
});

/// The pages (when `ui.enabled`) and the mail viewer (with `--dev`); an
/// empty router otherwise, so their paths 404 like any unknown path.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut routes = Router::new();
    if state.web.pages {
        let flow = |kind: FlowKind| {
            get(move |State(state): State<AppState>, OriginalUri(uri): OriginalUri, headers: HeaderMap| {
                flow_pages::show(state, kind, uri, headers)
            })
        };
        routes = routes
            .route("/ui", get(to_welcome))
            .route("/ui/", get(to_welcome))
            .route("/ui/style.css", get(style))
            .route("/ui/login", flow(FlowKind::Login))
            .route("/ui/registration", flow(FlowKind::Registration))
            .route("/ui/recovery", flow(FlowKind::Recovery))
            .route("/ui/verification", flow(FlowKind::Verification))
            .route("/ui/settings", flow(FlowKind::Settings))
            .route("/ui/welcome", get(welcome::show))
            .route("/ui/error", get(error_page::show));
    }
    if state.web.dev {
        routes =
            routes.route("/ui/dev/mail", get(dev_mail::list)).route("/ui/dev/mail/{id}", get(dev_mail::show));
    }
    routes.layer(middleware::from_fn_with_state(content_security_policy(state), protect))
}

async fn to_welcome(State(state): State<AppState>) -> Response {
    crate::public::flows::see_other(&format!("{}/ui/welcome", state.urls.public))
}

async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// No caching, no framing, no scripts, styles only from our stylesheet, and
/// forms posted only to us or to where the flows may send the browser next
/// (browsers apply `form-action` to the redirect after a submit too).
fn content_security_policy(state: &AppState) -> HeaderValue {
    let web = &state.web;
    let mut targets = vec!["'self'".to_string()];
    let urls = [
        &state.urls.public,
        &web.default_browser_return_url,
        &web.logout_return_url,
        &web.verification_return_url,
    ]
    .into_iter()
    .chain([&web.login_ui_url, &web.registration_ui_url, &web.settings_ui_url, &web.recovery_ui_url])
    .chain([&web.verification_ui_url, &web.error_ui_url])
    .chain(&web.allowed_return_urls);
    for url in urls {
        if let Some(origin) = origin(url)
            && !targets.contains(&origin)
        {
            targets.push(origin);
        }
    }
    // The stylesheet is linked from the public base URL, which need not be
    // the host a browser typed.
    let own = match origin(&state.urls.public) {
        Some(public) => format!("'self' {public}"),
        None => "'self'".to_string(),
    };
    let policy = format!(
        "default-src 'none'; style-src {own}; img-src {own} data:; form-action {}; frame-ancestors 'none'; base-uri 'none'",
        targets.join(" ")
    );
    HeaderValue::from_str(&policy).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"))
}

/// `scheme://host[:port]` of a URL (a `*.` wildcard host kept, as CSP reads
/// it), or `None` for anything a policy could not carry safely.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let origin = format!("{scheme}://{authority}");
    let safe = !authority.is_empty()
        && matches!(scheme, "http" | "https")
        && origin
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '-' | '*' | '[' | ']'));
    safe.then_some(origin)
}

async fn protect(State(policy): State<HeaderValue>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    // Page URLs carry flow ids.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// What every page's template reads: the language, the pages' wording
/// (`t`), the public base URL links start from, and which page it is.
fn context(state: &AppState, lang: Lang, page: &str) -> Map<String, Value> {
    let mut context = Map::new();
    context.insert("lang".into(), json!(lang.code()));
    context.insert("t".into(), json!(lang.chrome()));
    context.insert("base".into(), json!(state.urls.public));
    context.insert("page".into(), json!(page));
    context
}

fn render(template: &str, status: StatusCode, context: Map<String, Value>) -> Response {
    let rendered = ENV
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from(Serde(&Value::Object(context)))));
    match rendered {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::internal(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        for (name, _) in TEMPLATES {
            assert!(ENV.get_template(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn origins_are_only_those_a_policy_can_carry() {
        assert_eq!(origin("http://127.0.0.1:4455/welcome?x=1").as_deref(), Some("http://127.0.0.1:4455"));
        assert_eq!(origin("https://*.example.com").as_deref(), Some("https://*.example.com"));
        assert_eq!(origin("https://a.example; script-src *"), None);
        assert_eq!(origin("javascript://x"), None);
        assert_eq!(origin("/relative"), None);
    }
}
