//! Configuration hot reload: `latchkey serve` applies edits to its config
//! file without a restart (a limit and a mail template here), names the new
//! revision on `/admin/health/config`, and keeps running on an invalid edit.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, quickstart_schema, spawn_app};
use crate::on_both_databases;

on_both_databases!(edits_to_the_config_file_apply_without_a_restart);

/// The server under test; killed when the test ends, passed or not.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The config file's text; the recovery mail's subject is read from `subject`.
fn config(
    dsn: &str,
    public: u16,
    admin: u16,
    revision: &str,
    flows_per_minute: u32,
    subject: &std::path::Path,
) -> String {
    format!(
        "revision: {revision}\ndsn: {dsn}\n\
         serve:\n  public:\n    port: {public}\n  admin:\n    port: {admin}\n\
         secrets:\n  cookie: [reload-test-cookie-secret-0123456789]\n\
         identity:\n  default_schema_id: default\n  schemas:\n    - id: default\n      url: file://{}\n\
         security:\n  send_limits:\n    ip:\n      flows_per_minute: {flows_per_minute}\n\
         courier:\n  templates:\n    recovery_code:\n      valid:\n        email:\n          subject: file://{}\n\
         selfservice:\n  flows:\n    recovery:\n      enabled: true\n",
        quickstart_schema().display(),
        subject.display()
    )
}

async fn edits_to_the_config_file_apply_without_a_restart(backend: Backend) {
    // A fresh database on the backend; the server under test shares it.
    let db = spawn_app(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.yml");
    let (public, admin) = (free_port(), free_port());
    let (before, after) = (dir.path().join("before.txt"), dir.path().join("after.txt"));
    std::fs::write(&before, "Before {{ .RecoveryCode }}").unwrap();
    std::fs::write(&after, "After {{ .RecoveryCode }}").unwrap();
    std::fs::write(&path, config(&db.dsn, public, admin, "one", 1000, &before)).unwrap();
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["serve", "--dev", "-c"])
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let public_url = format!("http://127.0.0.1:{public}");
    let admin_url = format!("http://127.0.0.1:{admin}");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let revision = || async {
        let response = http.get(format!("{admin_url}/admin/health/config")).send().await.ok()?;
        response.text().await.ok()
    };
    // Polls (bounded) until the server names `expected`.
    let await_revision = |expected: &'static str| async move {
        let started = Instant::now();
        loop {
            if revision().await.as_deref() == Some(expected) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "never reached {expected}:\n{}", read_log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    await_revision("one").await;

    let created = http
        .post(format!("{admin_url}/admin/identities"))
        .json(&json!({"schema_id": "default", "traits": {"email": "reload@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let recover = || async {
        let flow: Value = http
            .get(format!("{public_url}/self-service/recovery/api"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sent = http
            .post(format!("{public_url}/self-service/recovery?flow={}", flow["id"].as_str().unwrap()))
            .json(&json!({"method": "code", "email": "reload@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
    };
    let subjects = || async {
        crate::helpers::code_requests_served(&http, &format!("{admin_url}/metrics/prometheus")).await;
        let messages: Vec<Value> = http
            .get(format!("{admin_url}/admin/courier/messages"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        messages.iter().map(|m| m["subject"].as_str().unwrap_or_default().to_string()).collect::<Vec<_>>()
    };
    recover().await;
    assert!(subjects().await.iter().all(|s| s.starts_with("Before ")), "{:?}", subjects().await);

    // A lower limit and another subject, applied while the server runs.
    // A key only a restart applies (the hasher's cost) is named; the rest still applies.
    let edited =
        format!("{}hashers:\n  bcrypt:\n    cost: 13\n", config(&db.dsn, public, admin, "two", 3, &after));
    std::fs::write(&path, edited).unwrap();
    await_revision("two").await;
    assert!(
        read_log().contains("apply only after a restart") && read_log().contains("hashers"),
        "{}",
        read_log()
    );
    recover().await;
    let now = subjects().await;
    assert_eq!(now.iter().filter(|s| s.starts_with("After ")).count(), 1, "{now:?}");
    // Three flow starts a minute now: the next few starts run into it.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses
            .push(http.get(format!("{public_url}/self-service/login/api")).send().await.unwrap().status());
    }
    assert!(statuses.contains(&reqwest::StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");

    // An invalid edit is logged and changes nothing.
    std::fs::write(&path, "revision: three\nselfservice:\n  flows:\n    login:\n      lifespan: soon\n")
        .unwrap();
    let started = Instant::now();
    while !read_log().contains("was not applied") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the invalid edit was not reported:\n{}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(read_log().contains("selfservice.flows.login.lifespan"), "{}", read_log());
    assert_eq!(revision().await.as_deref(), Some("two"));
    assert_eq!(http.get(format!("{admin_url}/health/ready")).send().await.unwrap().status(), 200);
    db.stop().await;
}
