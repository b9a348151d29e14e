//! The courier end to end: messages in the outbox reach a real SMTP server
//! on loopback, failures are retried until the server is back (sent once),
//! and the admin API shows what happened.

use std::net::TcpListener;
use std::time::Duration;

use latchkey_courier::test_smtp::{Received, start_server, start_server_on};
use latchkey_domain::courier::{Message, Rendered};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    queued_mail_is_delivered_and_listed,
    mail_waits_out_an_smtp_outage,
    failing_mail_is_abandoned
);

fn message(to: &str) -> Message {
    let rendered = Rendered {
        subject: "Your recovery code is 482913".into(),
        text: "Use 482913 to recover your account.".into(),
        html: Some("<p>Use <b>482913</b></p>".into()),
    };
    Message::new(to, rendered, "recovery_code_valid")
}

/// Puts a message in the outbox through a second handle on the app's database.
async fn enqueue(app: &TestApp, message: &Message) {
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    store.enqueue_message(message).await.unwrap();
    store.close().await;
}

/// Polls the admin API until the message reaches `status` (bounded).
async fn wait_for(app: &TestApp, id: uuid::Uuid, status: &str) -> Value {
    for _ in 0..200 {
        let body: Value = app
            .http
            .get(app.admin_path(&format!("/admin/courier/messages/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["status"] == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("message {id} never became {status}");
}

fn smtp_uri(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}/?disable_starttls=true")
}

fn received_by(received: &std::sync::Mutex<Vec<Received>>, to: &str) -> Vec<Received> {
    received.lock().unwrap().iter().filter(|r| r.to.iter().any(|t| t.contains(to))).cloned().collect()
}

async fn queued_mail_is_delivered_and_listed(backend: Backend) {
    let (port, received) = start_server(false);
    let app = spawn_app_with(backend, |c| c.courier.smtp.connection_uri = smtp_uri(port)).await;
    let sent = message("courier@example.com");
    enqueue(&app, &sent).await;
    let body = wait_for(&app, sent.id, "sent").await;
    assert_eq!(body["send_count"], 1);
    assert_eq!(body["type"], "email");
    assert_eq!(body["subject"], "Your recovery code is 482913", "--dev shows bodies");
    assert_eq!(body["dispatches"][0]["status"], "success");

    let mails = received_by(&received, "courier@example.com");
    assert_eq!(mails.len(), 1);
    assert!(String::from_utf8_lossy(&mails[0].data).contains("482913"));

    let list: Vec<Value> = app
        .http
        .get(app.admin_path("/admin/courier/messages?status=sent&recipient=courier@example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert!(list[0].get("dispatches").is_none());
    let bad = app.http.get(app.admin_path("/admin/courier/messages?status=lost")).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    let missing = app
        .http
        .get(app.admin_path(&format!("/admin/courier/messages/{}", uuid::Uuid::new_v4())))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    app.stop().await;
}

async fn mail_waits_out_an_smtp_outage(backend: Backend) {
    // Reserve a port, leave it closed: the server is "down".
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let app = spawn_app_with(backend, |c| {
        c.courier.smtp.connection_uri = smtp_uri(port);
        c.dev = false;
    })
    .await;
    let later = message("outage@example.com");
    enqueue(&app, &later).await;
    // Wait for a failed attempt: the message is back in the queue, not lost.
    let mut body = Value::Null;
    for _ in 0..100 {
        body = app
            .http
            .get(app.admin_path(&format!("/admin/courier/messages/{}", later.id)))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if body["send_count"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(body["dispatches"][0]["status"], "failed", "{body}");
    // Back in the queue (or already claimed for the next attempt), not abandoned.
    assert!(matches!(body["status"].as_str(), Some("queued" | "processing")), "{body}");
    assert_eq!(body["subject"], "<redacted-unless-dev-mode>", "bodies are hidden outside --dev");

    // The server comes up on the same port; the message goes out once.
    let (_, received) = start_server_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), false);
    let body = wait_for(&app, later.id, "sent").await;
    assert!(body["send_count"].as_i64().unwrap() >= 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(received_by(&received, "outage@example.com").len(), 1, "sent exactly once");
    app.stop().await;
}

async fn failing_mail_is_abandoned(backend: Backend) {
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let app = spawn_app_with(backend, |c| {
        c.courier.smtp.connection_uri = smtp_uri(port);
        c.courier.message_retries = Some(2);
    })
    .await;
    let doomed = message("nobody-home@example.com");
    enqueue(&app, &doomed).await;
    let body = wait_for(&app, doomed.id, "abandoned").await;
    assert_eq!(body["send_count"], 2);
    assert_eq!(body["dispatches"].as_array().unwrap().len(), 2);
    app.stop().await;
}

/// `latchkey courier watch` sends on its own, next to (or instead of) `serve`.
#[tokio::test]
async fn courier_watch_sends_from_a_separate_process() {
    let (port, received) = start_server(false);
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("c.db").display());
    let (store, _) = latchkey::startup::open_store(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    let queued = message("watch@example.com");
    store.enqueue_message(&queued).await.unwrap();
    store.close().await;

    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["courier", "watch", "--dev", "-c"])
        .arg(&config)
        .env("DSN", &dsn)
        .env("COURIER_SMTP_CONNECTION_URI", smtp_uri(port))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut delivered = false;
    for _ in 0..200 {
        if !received_by(&received, "watch@example.com").is_empty() {
            delivered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(delivered, "the watcher delivered the queued message");
    assert!(status.success(), "stops cleanly on SIGTERM: {status}");
}
