//! Request ids and logs: the id is taken from `X-Request-Id` when sane,
//! made up otherwise, echoed in the response and in the error envelope;
//! the real binary logs one JSON object per line with `log.format: json`,
//! and never colour codes into a file.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_databases;

on_both_databases!(request_ids_are_echoed_and_named_in_errors);

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok()
}

async fn request_ids_are_echoed_and_named_in_errors(backend: Backend) {
    let app = spawn_app(backend).await;

    // A sane id is kept, on success and in the error envelope.
    let response = app
        .http
        .get(app.public_path("/health/alive"))
        .header("x-request-id", "lb-1234.abc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "lb-1234.abc");
    let response = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-request-id", "lb-5678")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["x-request-id"], "lb-5678");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["request"], "lb-5678", "{body}");

    // None, too long, or not visible ASCII: a fresh UUID, the same in header and body.
    let long = "a".repeat(latchkey_http::MAX_REQUEST_ID_LEN + 1);
    let bad: [Option<&[u8]>; 4] = [None, Some(long.as_bytes()), Some(b"has space"), Some(b"caf\xc3\xa9")];
    let mut seen = Vec::new();
    for given in bad {
        let mut request = app.http.get(app.admin_path("/identities/not-a-uuid"));
        if let Some(given) = given {
            request =
                request.header("x-request-id", reqwest::header::HeaderValue::from_bytes(given).unwrap());
        }
        let response = request.send().await.unwrap();
        assert!(response.status().is_client_error());
        let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(is_uuid(&id), "{id}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["request"], id.as_str(), "{body}");
        seen.push(id);
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 4, "each request gets its own id");

    // Unknown paths and wrong methods too, on both listeners.
    for url in [app.public_path("/no/such/path"), app.admin_path("/no/such/path")] {
        let response = app.http.get(&url).header("x-request-id", "probe-1").send().await.unwrap();
        assert_eq!(response.status(), 404);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["request"], "probe-1", "{url}: {body}");
    }
}

/// Starts the binary on the quickstart config (SQLite, random ports) with
/// the given log format; stderr goes where `stderr` says.
fn start(dir: &std::path::Path, format: &str, level: &str, stderr: Stdio) -> Child {
    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--dev", "-c"])
        .arg(&config)
        .env("DSN", format!("sqlite://{}", dir.join("q.db").display()))
        .env("SERVE_PUBLIC_PORT", "0")
        .env("SERVE_ADMIN_PORT", "0")
        .env("SERVE_PUBLIC_BASE_URL", "http://127.0.0.1:4433/")
        .env("LOG_FORMAT", format)
        .env("LOG_LEVEL", level)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stderr(stderr)
        .spawn()
        .unwrap()
}

/// Requests the logs must describe, one carrying secrets that must not appear.
fn requests(public: &str) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let http = reqwest::Client::new();
        let response = http
            .get(format!("http://{public}/sessions/whoami?token=secret-query-value"))
            .header("x-request-id", "log-test-1")
            .header("x-session-token", "secret-session-token")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        http.get(format!("http://{public}/health/alive")).send().await.unwrap();
    });
}

fn stop(child: &mut Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(child.wait().unwrap().success());
}

/// At debug, where store and hash spans are on, secrets still stay out.
#[test]
fn json_logs_are_one_object_per_line_with_the_request_span() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), "json", "debug", Stdio::piped());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = Vec::new();
    let public = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the server reports readiness: {lines:?}");
        let object: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        lines.push(line);
        if object["fields"]["message"] == "latchkey is ready" {
            break object["fields"]["public"].as_str().unwrap().to_string();
        }
    };
    requests(&public);
    stop(&mut child);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    lines.extend(rest.lines().map(str::to_string));
    assert!(!lines.concat().contains("secret-"), "{lines:?}");
    assert!(!lines.concat().contains("\x1b["), "{lines:?}");
    let objects: Vec<Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let completed: Vec<&Value> =
        objects.iter().filter(|o| o["fields"]["message"] == "request completed").collect();
    // /health is logged at debug, everything else at info.
    assert_eq!(completed.len(), 2, "{completed:?}");
    let health = completed.iter().find(|o| o["span"]["route"] == "/health/alive").unwrap();
    assert_eq!(health["level"], "DEBUG");
    let line = completed.iter().find(|o| o["span"]["route"] != "/health/alive").unwrap();
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["status"], 401);
    assert!(line["fields"]["latency_ms"].is_u64());
    assert_eq!(line["span"]["request_id"], "log-test-1");
    assert_eq!(line["span"]["route"], "/sessions/whoami");
    assert_eq!(line["span"]["method"], "GET");
    assert!(objects.iter().any(|o| o["fields"]["message"] == "latchkey stopped"));
}

#[test]
fn text_logs_to_a_file_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stderr.log");
    let mut child = start(dir.path(), "text", "info", Stdio::from(std::fs::File::create(&path).unwrap()));
    let public = loop {
        let log = std::fs::read_to_string(&path).unwrap();
        if let Some(line) = log.lines().find(|l| l.contains("latchkey is ready")) {
            let after = line.split("public=").nth(1).expect("the public address is logged");
            break after.split_whitespace().next().unwrap().to_string();
        }
        assert!(child.try_wait().unwrap().is_none(), "the server exited: {log}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    requests(&public);
    stop(&mut child);
    let log = std::fs::read_to_string(&path).unwrap();
    assert!(log.contains("request completed"), "{log}");
    assert!(log.contains("log-test-1"), "{log}");
    assert!(!log.contains("\x1b["), "{log}");
    assert!(!log.contains("secret-"), "{log}");
}

/// Every span opened while a user registers, logs in and asks whoami: its
/// name and each recorded value, whenever it was recorded.
#[derive(Clone, Default)]
struct Spans(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

struct Values<'a>(&'a mut String);

impl tracing::field::Visit for Values<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut values = String::new();
        attrs.record(&mut Values(&mut values));
        self.0.lock().unwrap().push((attrs.metadata().name().to_string(), values));
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        record: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut values = String::new();
        record.record(&mut Values(&mut values));
        self.0.lock().unwrap().push(("(recorded)".into(), values));
    }
}

/// Store calls and password hashing have spans inside the request's, and
/// no span records a password, a token or an email address.
#[tokio::test]
async fn store_and_hash_calls_have_spans_that_record_no_secrets() {
    use tracing_subscriber::layer::SubscriberExt;
    let spans = Spans::default();
    // The test runtime runs the server's tasks on this thread, so a
    // thread-wide subscriber sees them; hashing spans open on this side too.
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(spans.clone()));
    let app = spawn_app(Backend::Sqlite).await;
    let (token, _) = crate::helpers::register(&app, "spans@example.com", crate::helpers::PASSWORD).await;
    crate::helpers::login(&app, "spans@example.com", crate::helpers::PASSWORD).await.unwrap();
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    app.stop().await;

    let spans = spans.0.lock().unwrap().clone();
    let names: Vec<&str> = spans.iter().map(|(name, _)| name.as_str()).collect();
    for name in ["request", "store.create_identity", "store.password_by_identifier", "password.hash"] {
        assert!(names.contains(&name), "{name} in {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("password.verify")), "{names:?}");
    assert!(names.contains(&"store.session_by_token"), "{names:?}");
    let all: String = spans.iter().map(|(name, values)| format!("{name}{values}\n")).collect();
    assert!(all.contains("route=\"/sessions/whoami\"") && all.contains("status=200"), "{all}");
    for secret in [crate::helpers::PASSWORD, token.as_str(), "spans@example.com"] {
        assert!(!all.contains(secret), "{secret} recorded in {all}");
    }
}

/// A request that fails inside (here: a table gone from under the server) is
/// logged once, at error, with its request id and the cause's whole chain;
/// the client sees only the opaque envelope naming the same id.
#[test]
fn an_internal_error_is_logged_once_with_its_request_id_and_cause() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = start(dir.path(), "json", "info", Stdio::piped());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let admin = loop {
        let mut line = String::new();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the server reports readiness");
        let object: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if object["fields"]["message"] == "latchkey is ready" {
            break object["fields"]["admin"].as_str().unwrap().to_string();
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body: Value = rt.block_on(async {
        use sqlx::Connection;
        let dsn = format!("sqlite://{}", dir.path().join("q.db").display());
        let mut db = sqlx::SqliteConnection::connect(&dsn).await.unwrap();
        sqlx::query("DROP TABLE courier_dispatches").execute(&mut db).await.unwrap();
        sqlx::query("DROP TABLE courier_messages").execute(&mut db).await.unwrap();
        db.close().await.unwrap();
        let response = reqwest::Client::new()
            .get(format!("http://{admin}/admin/courier/messages"))
            .header("x-request-id", "fails-once")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        response.json().await.unwrap()
    });
    assert_eq!(body["error"]["request"], "fails-once", "{body}");
    assert!(!body.to_string().contains("courier_messages"), "causes are not sent: {body}");
    stop(&mut child);
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    let failures: Vec<Value> = rest
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|o| o["fields"]["message"] == "request failed")
        .collect();
    assert_eq!(failures.len(), 1, "{failures:?}");
    let failure = &failures[0];
    assert_eq!(failure["level"], "ERROR");
    assert_eq!(failure["fields"]["request_id"], "fails-once");
    let cause = failure["fields"]["error"].as_str().unwrap();
    assert!(cause.contains("database error") && cause.contains("courier_messages"), "{cause}");
}
