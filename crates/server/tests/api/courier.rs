//! The courier end to end: messages in the outbox reach a real SMTP server
//! on loopback, transient failures are retried with backoff until the server
//! is back (sent once, even across a killed server process), permanent ones
//! and dead codes are abandoned, and the admin API shows what happened.

use std::net::TcpListener;
use std::time::Duration;

use latchkey_courier::test_smtp::{Received, start_server, start_server_on};
use latchkey_domain::courier::{Dispatch, Message, MessageStatus, Rendered};
use latchkey_domain::time::{Clock, SystemClock};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, TestDatabase, spawn_app_on_with, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    queued_mail_is_delivered_and_listed,
    mail_waits_out_an_smtp_outage,
    failing_mail_is_abandoned,
    a_permanent_failure_is_not_retried,
    a_transient_reply_is_retried_and_delivered,
    code_mail_is_abandoned_once_its_code_expired,
    mail_outlives_an_outage_and_a_killed_server,
    a_backlog_goes_out_on_several_connections_in_order_per_recipient,
    messages_list_newest_first_page_by_page
);

fn message(to: &str) -> Message {
    let rendered = Rendered {
        subject: "Your recovery code is 482913".into(),
        text: "Use 482913 to recover your account.".into(),
        html: Some("<p>Use <b>482913</b></p>".into()),
    };
    Message::new(to, rendered, "recovery_code_valid", SystemClock.now())
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
    // A message queued after it, to the same address, goes in a later
    // round: once it has arrived, a second copy would have too.
    let marker = message("outage@example.com");
    enqueue(&app, &marker).await;
    wait_for(&app, marker.id, "sent").await;
    assert_eq!(received_by(&received, "outage@example.com").len(), 2, "sent exactly once, then the marker");
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
    // Kratos's meaning: two retries after the first attempt.
    assert_eq!(body["send_count"], 3);
    assert_eq!(body["dispatches"].as_array().unwrap().len(), 3);
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

/// The message and its attempts, read straight from the database.
async fn load(dsn: &str, id: uuid::Uuid) -> (Message, Vec<Dispatch>) {
    let (store, _) = latchkey::startup::open_store(dsn).await.unwrap();
    let found = store.get_message(id).await.unwrap().expect("the message exists");
    store.close().await;
    found
}

/// Polls the database until `done` holds for the message (bounded).
async fn wait_until(dsn: &str, id: uuid::Uuid, what: &str, done: impl Fn(&Message) -> bool) -> Message {
    for _ in 0..400 {
        let (message, _) = load(dsn, id).await;
        if done(&message) {
            return message;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("message {id}: {what} never happened");
}

/// A closed loopback port: the relay is down until a test binds it.
fn closed_port() -> u16 {
    let reserved = TcpListener::bind("127.0.0.1:0").unwrap();
    reserved.local_addr().unwrap().port()
}

/// 550 unknown recipient: abandoned after one attempt, the reply recorded;
/// mail to others still goes (over the pooled connection).
async fn a_permanent_failure_is_not_retried(backend: Backend) {
    let (port, received) = start_server(false);
    let app = spawn_app_with(backend, |c| c.courier.smtp.connection_uri = smtp_uri(port)).await;
    let doomed = message("unknown-user@example.com");
    enqueue(&app, &doomed).await;
    let fine: Vec<_> = (0..3).map(|i| message(&format!("pooled-{i}@example.com"))).collect();
    for m in &fine {
        enqueue(&app, m).await;
    }
    let body = wait_for(&app, doomed.id, "abandoned").await;
    assert_eq!(body["send_count"], 1, "not retried: {body}");
    let (_, dispatches) = load(&app.dsn, doomed.id).await;
    let error = dispatches[0].error.as_deref().unwrap();
    assert!(error.contains("550") && error.contains("permanent"), "{error}");
    for m in &fine {
        wait_for(&app, m.id, "sent").await;
        assert_eq!(received_by(&received, &m.recipient).len(), 1);
    }
    assert!(received_by(&received, "unknown-user@example.com").is_empty());
    app.stop().await;
}

/// 451 (greylisting) is transient: the message goes back in the queue and
/// is delivered on a later attempt, once.
async fn a_transient_reply_is_retried_and_delivered(backend: Backend) {
    let (port, received) = start_server(false);
    let app = spawn_app_with(backend, |c| c.courier.smtp.connection_uri = smtp_uri(port)).await;
    let greylisted = message("greylist-ada@example.com");
    enqueue(&app, &greylisted).await;
    let body = wait_for(&app, greylisted.id, "sent").await;
    assert_eq!(body["send_count"], 2, "{body}");
    let (_, dispatches) = load(&app.dsn, greylisted.id).await;
    assert_eq!(dispatches[0].status, "failed");
    assert!(dispatches[0].error.as_deref().unwrap().contains("451"), "{dispatches:?}");
    assert_eq!(dispatches[1].status, "success");
    assert_eq!(received_by(&received, "greylist-ada@example.com").len(), 1);
    app.stop().await;
}

/// A code mail is worth sending only while its code lives: with the relay
/// down it is retried, then abandoned once the code expires; one whose code
/// already expired is abandoned without being sent even though the relay is up.
async fn code_mail_is_abandoned_once_its_code_expired(backend: Backend) {
    let port = closed_port();
    let app = spawn_app_with(backend, |c| c.courier.smtp.connection_uri = smtp_uri(port)).await;
    let expiring = Message {
        code_expires_at: Some(app.clock.now() + chrono::Duration::minutes(15)),
        ..message("expiring@example.com")
    };
    enqueue(&app, &expiring).await;
    wait_until(&app.dsn, expiring.id, "a retry", |m| m.send_count >= 2).await;
    app.clock.advance(Duration::from_secs(16 * 60));
    wait_for(&app, expiring.id, "abandoned").await;
    let (_, dispatches) = load(&app.dsn, expiring.id).await;
    assert!(dispatches.len() >= 2, "retried while the code lived: {dispatches:?}");
    assert!(dispatches.last().unwrap().error.as_deref().unwrap().contains("code"), "{dispatches:?}");
    app.stop().await;

    let (port, received) = start_server(false);
    let app = spawn_app_with(backend, |c| c.courier.smtp.connection_uri = smtp_uri(port)).await;
    let dead = Message {
        code_expires_at: Some(app.clock.now() - chrono::Duration::seconds(1)),
        ..message("dead-code@example.com")
    };
    enqueue(&app, &dead).await;
    wait_for(&app, dead.id, "abandoned").await;
    let (_, dispatches) = load(&app.dsn, dead.id).await;
    assert!(dispatches[0].error.as_deref().unwrap().contains("not sent"), "{dispatches:?}");
    assert!(received_by(&received, "dead-code@example.com").is_empty(), "abandoned is final");
    app.stop().await;
}

/// `latchkey serve` (the real binary) on `dsn`, mailing the relay at `port`
/// with short backoff.
fn serve(dsn: &str, port: u16) -> std::process::Child {
    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--dev", "-c"])
        .arg(&config)
        .env("DSN", dsn)
        .env("SERVE_PUBLIC_PORT", "0")
        .env("SERVE_ADMIN_PORT", "0")
        .env("SERVE_PUBLIC_BASE_URL", "http://127.0.0.1:4433/")
        .env("COURIER_SMTP_CONNECTION_URI", smtp_uri(port))
        .env("COURIER_BACKOFF_INITIAL", "200ms")
        .env("COURIER_BACKOFF_MAX", "1s")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The test: the relay is down for longer than the old retry span
/// (5 attempts, about a second apart), the server is killed with SIGKILL in
/// the middle of the outage and started again, the relay comes back on the
/// same port: the message arrives, exactly once.
async fn mail_outlives_an_outage_and_a_killed_server(backend: Backend) {
    let port = closed_port();
    let (_db, dsn) = TestDatabase::new(backend).await;
    let (store, _) = latchkey::startup::open_store(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    let recovery = Message {
        code_expires_at: Some(SystemClock.now() + chrono::Duration::hours(1)),
        ..message("outlives@example.com")
    };
    store.enqueue_message(&recovery).await.unwrap();
    store.close().await;

    let mut first = serve(&dsn, port);
    // More failed attempts than the old default (5) allowed, and back in
    // the queue waiting for its next attempt, not claimed: kill now.
    let before = wait_until(&dsn, recovery.id, "six failed attempts", |m| {
        m.send_count >= 6 && m.status == MessageStatus::Queued
    })
    .await;
    first.kill().unwrap(); // SIGKILL: no shutdown, no cleanup.
    first.wait().unwrap();

    let mut second = serve(&dsn, port);
    // The new process picks the schedule up: another failed attempt.
    let resumed = wait_until(&dsn, recovery.id, "an attempt after the restart", |m| {
        m.send_count > before.send_count && m.status == MessageStatus::Queued
    })
    .await;
    // The relay comes back on the same port.
    let (_, received) = start_server_on(TcpListener::bind(("127.0.0.1", port)).unwrap(), false);
    let sent = wait_until(&dsn, recovery.id, "delivery", |m| m.status == MessageStatus::Sent).await;
    std::process::Command::new("kill").args(["-TERM", &second.id().to_string()]).status().unwrap();
    second.wait().unwrap();

    assert_eq!(received_by(&received, "outlives@example.com").len(), 1, "delivered exactly once");
    let (_, dispatches) = load(&dsn, recovery.id).await;
    assert_eq!(dispatches.iter().filter(|d| d.status == "success").count(), 1);
    assert!(sent.send_count > resumed.send_count, "{sent:?}");
    assert_eq!(dispatches.len(), sent.send_count as usize);
}

/// A backlog is sent several messages at once over pooled connections (a
/// few, reused: not one per message), and one recipient's messages still
/// arrive in the order they were queued, so a newer code never lands before
/// the one it replaced.
async fn a_backlog_goes_out_on_several_connections_in_order_per_recipient(backend: Backend) {
    // The first server has no relay: the backlog builds up in the outbox.
    let queueing = spawn_app_with(backend, |_| {}).await;
    let mut queued = Vec::new();
    for n in 0..48 {
        let to = if n % 6 == 0 { "same@example.com".to_string() } else { format!("many-{n}@example.com") };
        let rendered = Rendered { subject: format!("message {n}"), text: format!("body {n}"), html: None };
        let message = Message::new(&to, rendered, "recovery_code_valid", queueing.clock.now());
        enqueue(&queueing, &message).await;
        queued.push(message);
    }
    let (port, received) = start_server(false);
    let sending = spawn_app_on_with(&queueing.dsn, |c| c.courier.smtp.connection_uri = smtp_uri(port)).await;
    for message in &queued {
        wait_for(&sending, message.id, "sent").await;
    }
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), queued.len(), "each message once");
    let connections = received.iter().map(|r| r.connection).max().unwrap();
    // A connection goes back to the pool just after its send, so a round
    // may open one or two more than it sends at once; never one per message.
    assert!(
        (2..=received.len() / 2).contains(&connections),
        "{connections} connections for {} messages",
        received.len()
    );
    let same: Vec<String> = received
        .iter()
        .filter(|r| r.to.iter().any(|t| t.contains("same@example.com")))
        .map(|r| {
            String::from_utf8_lossy(&r.data).lines().find(|l| l.starts_with("Subject:")).unwrap().to_string()
        })
        .collect();
    let expected: Vec<String> = (0..48).step_by(6).map(|n| format!("Subject: message {n}")).collect();
    assert_eq!(same, expected);
    sending.stop().await;
    queueing.stop().await;
}

/// As Kratos lists them: newest first, so `.[0]` is the mail just sent;
/// the `next` links walk the rest without gaps or repeats.
async fn messages_list_newest_first_page_by_page(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let to = format!("pages-{}@example.com", uuid::Uuid::new_v4());
    let start = SystemClock.now();
    let mut made = Vec::new();
    for seconds in [3, 0, 2, 1] {
        let mut m = message(&to);
        m.created_at = start + chrono::Duration::seconds(seconds);
        enqueue(&app, &m).await;
        made.push((m.created_at, m.id));
    }
    made.sort_by_key(|m| std::cmp::Reverse(m.0));
    let mut url = app.admin_path(&format!("/admin/courier/messages?recipient={to}&page_size=3"));
    let mut seen = Vec::new();
    loop {
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let link =
            response.headers().get("link").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default();
        let page: Vec<Value> = response.json().await.unwrap();
        seen.extend(page.iter().map(|m| m["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap()));
        let next = link.split(',').find(|l| l.contains("rel=\"next\"")).map(|l| {
            let target = l.split('<').nth(1).unwrap().split('>').next().unwrap();
            app.admin_path(&format!("/admin{}", target.trim_start_matches("/admin")))
        });
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(seen, made.iter().map(|(_, id)| *id).collect::<Vec<_>>());
    let refused =
        app.http.get(app.admin_path("/admin/courier/messages?page_token=nonsense")).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    app.stop().await;
}
