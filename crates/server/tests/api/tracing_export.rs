//! Trace export (`tracing.provider: otel`): the real binary sends its spans
//! over OTLP/HTTP to a collector started here on loopback, continuing the
//! caller's W3C `traceparent`; nothing secret leaves in them; a collector
//! that is down costs requests nothing.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

use crate::helpers::{Backend, PASSWORD, TestDatabase, dispatchers_caught_up};
use crate::on_both_databases;

on_both_databases!(request_spans_are_exported_under_the_callers_trace);

/// What the collector received: one protobuf body per export.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<Bytes>>>);

/// An OTLP/HTTP receiver: accepts `POST /v1/traces` and keeps the bodies.
async fn start_collector() -> (String, Received) {
    start_collector_answering(StatusCode::OK).await
}

/// A receiver that keeps each body and answers `status` (500: every export
/// fails, and the exporter does not retry it, so one body is one batch).
async fn start_collector_answering(status: StatusCode) -> (String, Received) {
    let received = Received::default();
    let kept = received.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let kept = kept.clone();
            async move {
                kept.0.lock().unwrap().push(body);
                // An empty ExportTraceServiceResponse.
                (status, [("content-type", "application/x-protobuf")], Vec::<u8>::new())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
}

/// Starts `serve` on the quickstart config with trace export to `collector`;
/// returns the child, its stderr and the public address.
async fn start(dsn: &str, collector: &str) -> (Child, BufReader<ChildStderr>, String) {
    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    let mut child = binary()
        .args(["serve", "--dev", "-c"])
        .arg(&config)
        .env("DSN", dsn)
        .env("SERVE_PUBLIC_PORT", "0")
        .env("SERVE_ADMIN_PORT", "0")
        .env("SERVE_PUBLIC_BASE_URL", "http://127.0.0.1:4433/")
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
        .env("TRACING_PROVIDER", "otel")
        .env("TRACING_PROVIDERS_OTLP_SERVER_URL", collector)
        .env("TRACING_PROVIDERS_OTLP_INSECURE", "true")
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = Vec::new();
    let public = loop {
        let mut line = String::new();
        let read = tokio::time::timeout(Duration::from_secs(60), stderr.read_line(&mut line)).await;
        assert!(
            read.expect("the server starts within a minute").unwrap() > 0,
            "it reports readiness: {seen:?}"
        );
        let object: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        seen.push(line);
        if object["fields"]["message"] == "latchkey is ready" {
            break object["fields"]["public"].as_str().unwrap().to_string();
        }
    };
    (child, stderr, public)
}

/// SIGTERM, a graceful stop within `within`, and the rest of stderr.
async fn stop(mut child: Child, mut stderr: BufReader<ChildStderr>, within: Duration) -> String {
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());
    let status = tokio::time::timeout(within, child.wait()).await.expect("a prompt stop").unwrap();
    assert!(status.success());
    let mut rest = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut rest).await.unwrap();
    rest
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        other => format!("{other:?}"),
    }
}

fn attribute(attributes: &[KeyValue], key: &str) -> Option<String> {
    attributes.iter().find(|kv| kv.key == key).map(|kv| text(&kv.value))
}

/// A caller's trace: 32 hex digits of trace id, 16 of parent span id.
fn caller_trace() -> (String, String) {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    (trace, span)
}

fn traceparent((trace, span): &(String, String)) -> String {
    format!("00-{trace}-{span}-01")
}

async fn request_spans_are_exported_under_the_callers_trace(backend: Backend) {
    let (_db, dsn) = TestDatabase::new(backend).await;
    if let Backend::Postgres = backend {
        let migrated = binary().args(["migrate", "sql", "up", "--yes", &dsn]).output().await.unwrap();
        assert!(migrated.status.success(), "{migrated:?}");
    }
    let (collector, received) = start_collector().await;
    let (child, stderr, public) = start(&dsn, &collector).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://{public}{path}");

    // Registration, then a login and a whoami that each continue a caller's trace.
    let flow: Value =
        http.get(url("/self-service/registration/api")).send().await.unwrap().json().await.unwrap();
    let registered = http
        .post(url(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap())))
        .json(&serde_json::json!({
            "method": "password", "traits": { "email": "traced@example.com" }, "password": PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 200);
    let login_trace = caller_trace();
    let flow: Value = http.get(url("/self-service/login/api")).send().await.unwrap().json().await.unwrap();
    let login = http
        .post(url(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .header("traceparent", traceparent(&login_trace))
        .json(&serde_json::json!({
            "method": "password", "identifier": "traced@example.com", "password": PASSWORD,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let login: Value = login.json().await.unwrap();
    let token = login["session_token"].as_str().unwrap().to_string();
    let whoami_trace = caller_trace();
    let whoami = http
        .get(url("/sessions/whoami?return_to=secret-query-value"))
        .header("traceparent", traceparent(&whoami_trace))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    // A malformed traceparent is ignored: the request starts a trace of its own.
    let unparented =
        http.get(url("/sessions/whoami")).header("traceparent", "00-not-a-trace-01").send().await.unwrap();
    assert_eq!(unparented.status(), 401);
    // Probes are not traced.
    assert_eq!(http.get(url("/health/alive")).send().await.unwrap().status(), 200);

    // The last batch is sent on the way out.
    let log = stop(child, stderr, Duration::from_secs(20)).await;
    assert!(!log.contains("could not send spans"), "{log}");
    let bodies = received.0.lock().unwrap().clone();
    assert!(!bodies.is_empty(), "spans were exported");
    let all: Vec<u8> = bodies.concat();
    for secret in ["secret-query-value", token.as_str(), PASSWORD, "traced@example.com"] {
        assert!(!all.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} was exported");
    }

    let mut spans: Vec<Span> = Vec::new();
    for body in &bodies {
        let request = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
        for resource_spans in request.resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            assert_eq!(attribute(&resource.attributes, "service.name").as_deref(), Some("latchkey"));
            spans.extend(resource_spans.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    let summary: Vec<String> =
        spans.iter().map(|s| format!("{} {}", s.name, hex(&s.parent_span_id))).collect();
    // Only request spans are roots: store and hash spans are exported within one.
    for span in &spans {
        assert!(span.name == "request" || !span.parent_span_id.is_empty(), "{summary:?}");
    }
    // The successful request on `route`.
    let request_span = |route: &str| {
        spans
            .iter()
            .find(|s| {
                s.name == "request"
                    && attribute(&s.attributes, "http.route").as_deref() == Some(route)
                    && attribute(&s.attributes, "http.response.status_code").as_deref() == Some("200")
            })
            .unwrap_or_else(|| panic!("a span for {route} in {summary:?}"))
    };
    assert!(
        !spans.iter().any(|s| attribute(&s.attributes, "http.route").as_deref() == Some("/health/alive")),
        "{summary:?}"
    );
    for (route, method, (trace, parent)) in
        [("/self-service/login", "POST", &login_trace), ("/sessions/whoami", "GET", &whoami_trace)]
    {
        let span = request_span(route);
        assert_eq!(&hex(&span.trace_id), trace, "{route} continues the caller's trace");
        assert_eq!(&hex(&span.parent_span_id), parent, "{route}'s parent is the caller's span");
        assert_eq!(attribute(&span.attributes, "http.request.method").as_deref(), Some(method));
        assert_eq!(attribute(&span.attributes, "http.response.status_code").as_deref(), Some("200"));
        // Everything inside the request belongs to the same trace.
        let inside: Vec<&str> = spans
            .iter()
            .filter(|s| s.span_id != span.span_id && &hex(&s.trace_id) == trace)
            .map(|s| s.name.as_str())
            .collect();
        let expected = if route == "/sessions/whoami" { "store.session_by_token" } else { "password.verify" };
        assert!(inside.iter().any(|n| n.starts_with(expected)), "{route}: {inside:?}");
    }
    let fresh = spans
        .iter()
        .find(|s| attribute(&s.attributes, "http.response.status_code").as_deref() == Some("401"))
        .unwrap_or_else(|| panic!("the unauthenticated whoami in {summary:?}"));
    assert!(fresh.parent_span_id.is_empty() && hex(&fresh.trace_id) != whoami_trace.0, "{summary:?}");
    let registration = request_span("/self-service/registration");
    let children: Vec<&str> =
        spans.iter().filter(|s| s.parent_span_id == registration.span_id).map(|s| s.name.as_str()).collect();
    assert!(children.contains(&"store.create_identity"), "{children:?}");
    assert!(children.contains(&"password.hash"), "{children:?}");
}

/// A collector that fails every export: requests are answered as fast as
/// ever, the failure is logged once (not once per batch), and the stop is
/// prompt.
#[tokio::test]
async fn a_failing_collector_costs_requests_nothing() {
    let (_db, dsn) = TestDatabase::new(Backend::Sqlite).await;
    let (collector, refused) = start_collector_answering(StatusCode::INTERNAL_SERVER_ERROR).await;
    let (child, stderr, public) = start(&dsn, &collector).await;
    let http = reqwest::Client::new();
    // Two export rounds (one every 2s), each with spans to send, each refused.
    for round in 1..=2 {
        for _ in 0..5 {
            let started = Instant::now();
            let response = http.get(format!("http://{public}/sessions/whoami")).send().await.unwrap();
            assert_eq!(response.status(), 401);
            assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while refused.0.lock().unwrap().len() < round {
            assert!(Instant::now() < deadline, "export round {round} never came");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let log = stop(child, stderr, Duration::from_secs(10)).await;
    assert!(refused.0.lock().unwrap().len() >= 2);
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("could not send spans")).collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("\"level\":\"WARN\""), "{log}");
}

/// `latchkey courier watch` exports one root span per email it sends; the
/// outbox polling around it is not exported.
#[tokio::test]
async fn courier_watch_exports_its_sends() {
    use latchkey_domain::courier::{Message, Rendered};
    use latchkey_domain::time::{Clock, SystemClock};
    let (smtp_port, delivered) = latchkey_courier::test_smtp::start_server(false);
    let (_db, dsn) = TestDatabase::new(Backend::Sqlite).await;
    let (store, _) = latchkey::startup::open_store(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    let rendered = Rendered { subject: "Your code is 482913".into(), text: "Use 482913.".into(), html: None };
    let queued = Message::new("watched@example.com", rendered, "recovery_code_valid", SystemClock.now());
    store.enqueue_message(&queued).await.unwrap();
    store.close().await;

    let (collector, received) = start_collector().await;
    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = binary()
        .args(["courier", "watch", "--dev", "--expose-metrics-port", &metrics_port.to_string(), "-c"])
        .arg(&config)
        .env("DSN", &dsn)
        .env("COURIER_SMTP_CONNECTION_URI", format!("smtp://127.0.0.1:{smtp_port}/?disable_starttls=true"))
        .env("TRACING_PROVIDER", "otel")
        .env("TRACING_PROVIDERS_OTLP_SERVER_URL", &collector)
        .env("TRACING_PROVIDERS_OTLP_INSECURE", "true")
        .env("TRACING_SERVICE_NAME", "latchkey-courier")
        .env_remove("RUST_LOG")
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the watcher delivers the queued message");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // More polls of the outbox, one of them begun after the send: none may
    // be exported.
    let metrics = format!("http://127.0.0.1:{metrics_port}/metrics/prometheus");
    dispatchers_caught_up(&reqwest::Client::new(), &[metrics]).await;
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().await.unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert!(status.success());

    let bodies = received.0.lock().unwrap().clone();
    let all: Vec<u8> = bodies.concat();
    for secret in ["watched@example.com", "482913"] {
        assert!(!all.windows(secret.len()).any(|w| w == secret.as_bytes()), "{secret} was exported");
    }
    let mut spans: Vec<Span> = Vec::new();
    for body in &bodies {
        for resource_spans in ExportTraceServiceRequest::decode(body.as_ref()).unwrap().resource_spans {
            let resource = resource_spans.resource.unwrap_or_default();
            assert_eq!(attribute(&resource.attributes, "service.name").as_deref(), Some("latchkey-courier"));
            spans.extend(resource_spans.scope_spans.into_iter().flat_map(|s| s.spans));
        }
    }
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    let roots: Vec<&Span> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "{names:?}");
    assert_eq!(roots[0].name, "courier.send");
    assert_eq!(attribute(&roots[0].attributes, "message_id"), Some(queued.id.to_string()));
    assert!(!names.contains(&"store.claim_messages"), "{names:?}");
}
