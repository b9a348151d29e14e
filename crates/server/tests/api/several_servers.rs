//! Several servers on one database (README "Several servers"): two `serve`
//! processes and a `latchkey courier watch` share flows, sessions,
//! revocations, throttling counters and the outbox. Every dispatcher mails
//! the same real SMTP server, so they all compete for the same messages.
//!
//! SQLite caveats (the same scenarios run there): servers on one SQLite
//! file share flows, sessions, counters and the outbox, but nothing tells a
//! server that another revoked a session, so a logout elsewhere is only seen
//! once that server's cache entry expires (10 minutes); the eviction bound
//! is checked on PostgreSQL only.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use latchkey::config::Config;
use latchkey_courier::test_smtp::{Received, start_server};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, code_for, create_identity, dispatchers_caught_up, native_flow,
    quickstart_schema, spawn_app_on_with, spawn_app_with,
};
use crate::on_both_databases;

on_both_databases!(a_killed_dispatchers_claim_is_taken_over);

// On a multi-threaded runtime: both servers, their dispatchers and the
// clients all live in the test's runtime, and on one thread the clients'
// polling starves the dispatchers (each real server has its own runtime).
mod recoveries_across_two_servers {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::recoveries_across_two_servers(crate::helpers::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::recoveries_across_two_servers(crate::helpers::Backend::Postgres).await
    }
}

/// Recoveries run across the two servers.
const RECOVERIES: usize = 300;
/// How many of them are in flight at once.
const PARALLEL: usize = 16;
/// Every how many recoveries the session is also logged out (on one server, watched on the other).
const LOGOUT_EVERY: usize = 10;
/// README "Using PostgreSQL": a revocation reaches another server's cache
/// within its time-to-live even if the notification is lost (delivered
/// ones take milliseconds).
const EVICTION_BOUND: Duration = Duration::from_secs(60);
/// How long all the mail may take to drain once every recovery is done.
const DRAIN: Duration = Duration::from_secs(60);
const SECRET: &str = "a-test-secret-of-enough-length";

/// The configuration every server here shares: the same secrets, the
/// limits of issue 10 lifted (every request comes from one client address,
/// and this test is about sharing, not limits), and login throttling with
/// a small allowance so that a lock shows quickly.
fn shared(config: &mut Config, smtp: Option<u16>) {
    config.selfservice.flows.recovery.enabled = true;
    config.secrets.cookie = vec![SECRET.into()];
    let sends = &mut config.security.send_limits;
    sends.ip.flows_per_minute = 1_000_000;
    sends.ip.codes_per_minute = 1_000_000;
    sends.address.max = 1_000;
    let throttling = &mut config.security.login_throttling;
    throttling.ip.max_failures = 1_000_000;
    throttling.identifier.free_failures = 3;
    throttling.identifier.initial_delay = "60s".parse().unwrap();
    throttling.identifier.max_delay = "60s".parse().unwrap();
    if let Some(port) = smtp {
        config.courier.smtp.connection_uri = smtp_uri(port);
    }
}

fn smtp_uri(port: u16) -> String {
    format!("smtp://127.0.0.1:{port}/?disable_starttls=true")
}

/// A `latchkey courier watch` process (the real binary), killed when dropped.
struct Watcher {
    child: Child,
    /// Its `/metrics/prometheus`, to see its rounds.
    metrics: String,
}

impl Watcher {
    fn start(dir: &Path, name: &str, dsn: &str, smtp: u16) -> Watcher {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join(format!("{name}.yml"));
        // The whole configuration, as `serve` would read it, not just the courier's part.
        let yaml = format!(
            "dsn: {dsn}\nidentity:\n  default_schema_id: default\n  schemas:\n    - id: default\n      url: file://{}\n\
             courier:\n  smtp:\n    connection_uri: {}\n",
            quickstart_schema().display(),
            smtp_uri(smtp)
        );
        std::fs::write(&config, yaml).unwrap();
        let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["courier", "watch", "--expose-metrics-port", &port.to_string(), "-c"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Watcher { child, metrics: format!("http://127.0.0.1:{port}/metrics/prometheus") }
    }

    /// SIGKILL: no chance to finish the send or give the claim back.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn assert_running(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "courier watch exited early");
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn post_recovery(app: &TestApp, flow: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={flow}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// `whoami`'s status and the identity it names.
async fn whoami(app: &TestApp, token: &str) -> (u16, Option<String>) {
    let response = app.whoami(token).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    (status, body["identity"]["id"].as_str().map(str::to_string))
}

fn address(n: usize) -> String {
    // Fixed width, so that no address contains another.
    format!("several-{n:04}@example.com")
}

/// One native recovery spread over both servers: the flow made on one, the
/// address submitted on one, the code on the other, the new password set on
/// either. Returns the recovered session's token.
async fn recover(apps: &[TestApp; 2], received: &Mutex<Vec<Received>>, n: usize, identity: &str) -> String {
    let email = address(n);
    let (flow_on, email_on, settings_on) = (n % 2, (n / 2) % 2, (n / 4) % 2);
    let flow = native_flow(&apps[flow_on], "recovery").await;
    let flow = flow["id"].as_str().unwrap().to_string();
    let (status, sent) =
        post_recovery(&apps[email_on], &flow, json!({"method": "code", "email": email})).await;
    assert_eq!((status, sent["state"].as_str()), (200, Some("sent_email")), "{sent}");
    let code = code_for(received, &email, 0).await;
    let (status, done) =
        post_recovery(&apps[1 - email_on], &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    let token = done["continue_with"][0]["ory_session_token"].as_str().unwrap().to_string();
    let settings = done["continue_with"][1]["flow"]["id"].as_str().unwrap();
    let response = apps[settings_on]
        .http
        .post(apps[settings_on].public_path(&format!("/self-service/settings?flow={settings}")))
        .header("x-session-token", &token)
        .json(&json!({"method": "password", "password": format!("renewed-passphrase-{n}-of-several")}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    for app in apps {
        assert_eq!(whoami(app, &token).await, (200, Some(identity.to_string())), "recovery {n}");
    }
    token
}

async fn native_logout(app: &TestApp, token: &str) {
    let response = app
        .http
        .delete(app.public_path("/self-service/logout/api"))
        .json(&json!({ "session_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

/// Logs out on `apps[on]` a session the other server has just cached; on
/// PostgreSQL the other refuses it within [`EVICTION_BOUND`]. Returns how
/// long that took (zero on SQLite, where it is not awaited).
async fn logout_seen_elsewhere(apps: &[TestApp; 2], on: usize, token: &str, backend: Backend) -> Duration {
    let other = &apps[1 - on];
    assert_eq!(whoami(other, token).await.0, 200);
    native_logout(&apps[on], token).await;
    assert_eq!(whoami(&apps[on], token).await.0, 401);
    let started = Instant::now();
    // SQLite: no notification reaches the other server (see the module's comment).
    if let Backend::Postgres = backend {
        while whoami(other, token).await.0 != 401 {
            assert!(
                started.elapsed() < EVICTION_BOUND,
                "the other server still accepts a logged-out session"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    match backend {
        Backend::Postgres => started.elapsed(),
        Backend::Sqlite => Duration::ZERO,
    }
}

async fn messages(app: &TestApp, query: &str) -> Vec<Value> {
    app.get_json(&app.admin_path(&format!("/admin/courier/messages?{query}"))).await
}

fn code_in(mail: &Received) -> bool {
    let text = String::from_utf8_lossy(&mail.data).replace("=\r\n", "");
    text.lines()
        .find(|l| l.starts_with("Subject:"))
        .is_some_and(|s| s.split(|c: char| !c.is_ascii_digit()).any(|w| w.len() == 6))
}

/// Mails received per recipient: (all, carrying a code).
fn per_recipient(received: &Mutex<Vec<Received>>) -> BTreeMap<String, (usize, usize)> {
    let mut counts = BTreeMap::<String, (usize, usize)>::new();
    for mail in received.lock().unwrap().iter() {
        for to in &mail.to {
            let entry = counts.entry(to.trim_matches(['<', '>']).to_string()).or_default();
            entry.0 += 1;
            entry.1 += usize::from(code_in(mail));
        }
    }
    counts
}

async fn recoveries_across_two_servers(backend: Backend) {
    let (port, received) = start_server(false);
    let a = spawn_app_with(backend, |c| shared(c, Some(port))).await;
    let b = spawn_app_on_with(&a.dsn, |c| shared(c, Some(port))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut watcher = Watcher::start(dir.path(), "watch", &a.dsn, port);
    let apps = Arc::new([a, b]);

    let mut identities = Vec::new();
    for n in 0..RECOVERIES {
        identities.push(create_identity(&apps[n % 2], &address(n)).await);
    }
    let identities = Arc::new(identities);

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..PARALLEL {
        let (apps, received, next, identities) =
            (Arc::clone(&apps), Arc::clone(&received), Arc::clone(&next), Arc::clone(&identities));
        workers.spawn(async move {
            let mut slowest_eviction = Duration::ZERO;
            loop {
                let n = next.fetch_add(1, Ordering::SeqCst);
                if n >= RECOVERIES {
                    return slowest_eviction;
                }
                let token = recover(&apps, &received, n, &identities[n]).await;
                if n % LOGOUT_EVERY == 0 {
                    let took = logout_seen_elsewhere(&apps, (n / LOGOUT_EVERY) % 2, &token, backend).await;
                    slowest_eviction = slowest_eviction.max(took);
                }
            }
        });
    }
    let mut slowest_eviction = Duration::ZERO;
    while let Some(worker) = workers.join_next().await {
        slowest_eviction = slowest_eviction.max(worker.unwrap());
    }
    let recovered_in = started.elapsed();

    // Each recovery mails a code, then notices of the recovery and of the
    // new password: wait (bounded) for all of them, then count exactly.
    let expected = 3 * RECOVERIES;
    let drained = Instant::now();
    while received.lock().unwrap().len() < expected {
        assert!(drained.elapsed() < DRAIN, "{} of {expected} mails arrived", received.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second copy of any of them would have been sent by now.
    let couriers = [apps[0].metrics_url(), apps[1].metrics_url(), watcher.metrics.clone()];
    dispatchers_caught_up(&apps[0].http, &couriers).await;
    for n in 0..RECOVERIES {
        let outbox = messages(&apps[n % 2], &format!("recipient={}", address(n))).await;
        assert_eq!(outbox.len(), 3, "{outbox:?}");
        for message in &outbox {
            assert_eq!((message["status"].as_str(), message["send_count"].as_i64()), (Some("sent"), Some(1)));
        }
    }
    let counts = per_recipient(&received);
    for n in 0..RECOVERIES {
        assert_eq!(counts.get(&address(n)), Some(&(3, 1)), "mails (all, with a code) to {}", address(n));
    }
    assert_eq!(received.lock().unwrap().len(), expected, "no mail to anyone else, none twice");
    watcher.assert_running();

    // A login lock earned on one server holds on the other.
    let target = address(1);
    for app in [&apps[0], &apps[1], &apps[0]] {
        assert_eq!(login_status(app, &target, "wrong-password-1").await, 400);
    }
    for app in apps.iter() {
        assert_eq!(login_status(app, &target, PASSWORD).await, 429);
    }
    eprintln!(
        "{backend:?}: {RECOVERIES} recoveries ({PARALLEL} at a time) across two servers in {recovered_in:?}; \
         {expected} mails, each once; slowest logout seen elsewhere after {slowest_eviction:?}"
    );
    watcher.kill();
    let [a, b] = Arc::try_unwrap(apps).ok().unwrap();
    b.stop().await;
    a.stop().await;
}

async fn login_status(app: &TestApp, identifier: &str, password: &str) -> u16 {
    let flow = native_flow(app, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({ "method": "password", "identifier": identifier, "password": password }))
        .send()
        .await
        .unwrap();
    response.status().as_u16()
}

/// An SMTP relay that takes a message's data and never acknowledges it, so
/// the dispatcher talking to it is stuck mid-send. Returns its port and a
/// flag raised once a message's data has arrived.
fn stalling_relay() -> (u16, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stalled);
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let _ = writer.write_all(b"220 stall.test ESMTP\r\n");
            let (mut line, mut in_data) = (Vec::new(), false);
            loop {
                line.clear();
                if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                    break;
                }
                if in_data {
                    if line == b".\r\n" {
                        flag.store(true, Ordering::SeqCst);
                        break;
                    }
                    continue;
                }
                let verb = String::from_utf8_lossy(line.get(..4).unwrap_or_default()).to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "DATA" => {
                        in_data = true;
                        b"354 go ahead\r\n"
                    }
                    "QUIT" => b"221 bye\r\n",
                    _ => b"250 OK\r\n",
                };
                let _ = writer.write_all(reply);
            }
            // The end of data is never answered; the connection stays open.
            held.push(writer);
        }
    });
    (port, stalled)
}

/// Moves every claim's lease into the past: what five minutes (the
/// dispatcher's lease) would do, without waiting for them.
async fn expire_leases(backend: Backend, dsn: &str) {
    use sqlx::Connection;
    let sql =
        "UPDATE courier_messages SET lease_until = '1970-01-01T00:00:00.000000Z' WHERE status = 'processing'";
    let done = match backend {
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(dsn).await.unwrap();
            let sql = "UPDATE courier_messages SET lease_until = now() - interval '1 hour' \
                       WHERE status = 'processing'";
            sqlx::query(sql).execute(&mut conn).await.unwrap().rows_affected()
        }
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(dsn.split('?').next().unwrap()).await.unwrap();
            sqlx::query(sql).execute(&mut conn).await.unwrap().rows_affected()
        }
    };
    assert_eq!(done, 1, "one message was claimed");
}

/// A `courier watch` is killed in the middle of a send (its relay has the
/// data but never answered). Its claim survives: once the lease has run out,
/// one of the two `serve` dispatchers or another `courier watch` sends the
/// message, exactly once, and the code in it works.
async fn a_killed_dispatchers_claim_is_taken_over(backend: Backend) {
    // The first server has no SMTP: the mail waits in the outbox.
    let first = spawn_app_with(backend, |c| shared(c, None)).await;
    let owner = "stalled@example.com";
    create_identity(&first, owner).await;
    let flow = native_flow(&first, "recovery").await;
    let flow = flow["id"].as_str().unwrap().to_string();
    let (status, _) = post_recovery(&first, &flow, json!({"method": "code", "email": owner})).await;
    assert_eq!(status, 200);

    let dir = tempfile::tempdir().unwrap();
    let (stall_port, stalled) = stalling_relay();
    let doomed = Watcher::start(dir.path(), "doomed", &first.dsn, stall_port);
    let waiting = Instant::now();
    while !stalled.load(Ordering::SeqCst) {
        assert!(waiting.elapsed() < Duration::from_secs(30), "the doomed courier never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    doomed.kill();
    let claimed = messages(&first, &format!("recipient={owner}")).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["status"], "processing", "the claim outlives its dispatcher");

    // Two serving dispatchers and another courier process, all on one relay.
    let (port, received) = start_server(false);
    let a = spawn_app_on_with(&first.dsn, |c| shared(c, Some(port))).await;
    let b = spawn_app_on_with(&first.dsn, |c| shared(c, Some(port))).await;
    let watcher = Watcher::start(dir.path(), "watch", &first.dsn, port);
    expire_leases(backend, &first.dsn).await;
    let code = code_for(&received, owner, 0).await;
    let waiting = Instant::now();
    loop {
        let message = messages(&a, &format!("recipient={owner}")).await.remove(0);
        if message["status"] == "sent" {
            // The killed attempt was never recorded; the delivery was.
            assert_eq!(message["send_count"], 1);
            break;
        }
        assert!(waiting.elapsed() < DRAIN, "the message was not marked sent: {message}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Had another dispatcher claimed it too, its copy would be in by now.
    dispatchers_caught_up(&a.http, &[a.metrics_url(), b.metrics_url(), watcher.metrics.clone()]).await;
    assert_eq!(received.lock().unwrap().len(), 1, "sent once");
    let (status, done) = post_recovery(&b, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!((status, done["state"].as_str()), (200, Some("passed_challenge")), "{done}");
    b.stop().await;
    a.stop().await;
    first.stop().await;
}
