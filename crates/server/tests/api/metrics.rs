//! `/metrics/prometheus` on the admin API: after real traffic (sign-ups,
//! logins, whoami, a recovery code mailed to a real SMTP server on
//! loopback) the scrape shows each event under its route template and
//! bounded labels; the public API does not serve it. And on
//! `latchkey courier watch --expose-metrics-port`: the courier's own
//! counters for mail it delivered from a `serve` that has no relay.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_courier::test_smtp::start_server;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, code_for, create_identity, login, native_flow, quickstart_schema, register,
    spawn_app_with, spawn_app_with_mail,
};
use crate::on_both_databases;

on_both_databases!(
    traffic_shows_in_the_metrics,
    metrics_are_admin_only_and_ids_never_labels,
    courier_watch_exports_what_it_delivered
);

const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

async fn scrape(app: &TestApp) -> String {
    let response = app.http.get(app.admin_path("/metrics/prometheus")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
    response.text().await.unwrap()
}

/// The value of one series, named with its labels exactly as exported.
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn must(body: &str, series: &str) -> f64 {
    value(body, series).unwrap_or_else(|| panic!("no series {series} in:\n{body}"))
}

async fn whoami(app: &TestApp, token: &str) -> u16 {
    app.whoami(token).await.status().as_u16()
}

async fn traffic_shows_in_the_metrics(backend: Backend) {
    let (app, received) = spawn_app_with_mail(backend, |c| c.selfservice.flows.recovery.enabled = true).await;
    let email = "metrics@example.com";
    register(&app, email, PASSWORD).await;
    assert!(login(&app, email, "not-the-password-at-all").await.is_err());
    let token = login(&app, email, PASSWORD).await.unwrap();
    for _ in 0..3 {
        assert_eq!(whoami(&app, &token).await, 200);
    }

    // A recovery code goes out through the courier to the SMTP server.
    let flow = native_flow(&app, "recovery").await;
    let sent = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({ "method": "code", "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    code_for(&received, email, 0).await;
    // Delivered is not yet recorded: wait (bounded) until the outbox is empty.
    let mut body = scrape(&app).await;
    for _ in 0..200 {
        let unsent = must(&body, "latchkey_courier_queue_messages{state=\"queued\"}")
            + must(&body, "latchkey_courier_queue_messages{state=\"processing\"}");
        if unsent == 0.0 && value(&body, "latchkey_courier_messages_sent_total") == Some(1.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        body = scrape(&app).await;
    }

    // Requests, by route template, method and status.
    let login_post = |status: u16| {
        format!(
            "latchkey_http_requests_total{{api=\"public\",method=\"POST\",route=\"/self-service/login\",status=\"{status}\"}}"
        )
    };
    assert_eq!(must(&body, &login_post(200)), 1.0);
    assert_eq!(must(&body, &login_post(400)), 1.0);
    assert_eq!(
        must(
            &body,
            "latchkey_http_requests_total{api=\"public\",method=\"GET\",route=\"/sessions/whoami\",status=\"200\"}"
        ),
        3.0
    );
    assert_eq!(
        must(
            &body,
            "latchkey_http_request_duration_seconds_count{api=\"public\",method=\"POST\",route=\"/self-service/login\"}"
        ),
        2.0
    );
    let inf = body.lines().find(|l| {
        l.starts_with("latchkey_http_request_duration_seconds_bucket{")
            && l.contains("route=\"/self-service/login\"")
            && l.contains("method=\"POST\"")
            && l.contains("le=\"+Inf\"")
    });
    assert!(inf.is_some_and(|l| l.ends_with(" 2")), "{body}");

    // Flows started and how their submissions ended.
    assert_eq!(must(&body, "latchkey_flows_started_total{kind=\"login\",type=\"api\"}"), 2.0);
    assert_eq!(must(&body, "latchkey_flows_started_total{kind=\"registration\",type=\"api\"}"), 1.0);
    assert_eq!(must(&body, "latchkey_flows_started_total{kind=\"recovery\",type=\"api\"}"), 1.0);
    assert_eq!(must(&body, "latchkey_flow_submissions_total{kind=\"login\",outcome=\"success\"}"), 1.0);
    assert_eq!(must(&body, "latchkey_flow_submissions_total{kind=\"login\",outcome=\"rejected\"}"), 1.0);
    assert_eq!(
        must(&body, "latchkey_flow_submissions_total{kind=\"registration\",outcome=\"success\"}"),
        1.0
    );
    assert_eq!(must(&body, "latchkey_flow_submissions_total{kind=\"recovery\",outcome=\"continued\"}"), 1.0);

    // The first whoami reads the database, the next ones the cache. On
    // PostgreSQL a late notification of the sign-up's own writes may evict
    // once more, so only the total is exact there.
    let hits = must(&body, "latchkey_whoami_cache_lookups_total{result=\"hit\"}");
    let misses = must(&body, "latchkey_whoami_cache_lookups_total{result=\"miss\"}");
    assert_eq!(hits + misses, 3.0, "{body}");
    match backend {
        Backend::Sqlite => assert_eq!((hits, misses), (2.0, 1.0)),
        Backend::Postgres => assert!(hits >= 1.0 && misses >= 1.0, "{body}"),
    }

    // The courier: one mail delivered, none failed, the queue empty.
    assert_eq!(must(&body, "latchkey_courier_messages_sent_total"), received.lock().unwrap().len() as f64);
    assert_eq!(must(&body, "latchkey_courier_messages_sent_total"), 1.0);
    assert_eq!(must(&body, "latchkey_courier_delivery_failures_total"), 0.0);
    assert_eq!(must(&body, "latchkey_courier_messages_abandoned_total"), 0.0);
    assert_eq!(must(&body, "latchkey_courier_delivery_latency_seconds_count"), 1.0);
    assert_eq!(must(&body, "latchkey_courier_queue_messages{state=\"queued\"}"), 0.0);

    // The hashing pool: idle now; every hash (the dummy one made at start,
    // sign-up, two logins) waited for a slot once.
    assert_eq!(must(&body, "latchkey_hash_queue_length"), 0.0);
    assert_eq!(must(&body, "latchkey_hash_running"), 0.0);
    assert!(must(&body, "latchkey_hash_slots") >= 1.0);
    assert_eq!(must(&body, "latchkey_hash_wait_seconds_count"), 4.0);
    assert_eq!(must(&body, "latchkey_hash_verifications_total"), app.hash_checks() as f64);
    assert_eq!(app.hash_checks(), 2);

    // The database pool.
    let idle = must(&body, "latchkey_db_pool_connections{state=\"idle\"}");
    let in_use = must(&body, "latchkey_db_pool_connections{state=\"in_use\"}");
    let max = must(&body, "latchkey_db_pool_max_connections");
    assert!(idle + in_use >= 1.0 && idle + in_use <= max, "{body}");

    // Every family says what it is.
    for family in ["latchkey_http_requests_total counter", "latchkey_http_request_duration_seconds histogram"]
    {
        assert!(body.contains(&format!("# TYPE {family}\n")), "{family}");
    }
    app.stop().await;
}

async fn metrics_are_admin_only_and_ids_never_labels(backend: Backend) {
    let (app, _received) = spawn_app_with_mail(backend, |_| {}).await;
    let (_, identity) = register(&app, "labels@example.com", PASSWORD).await;
    let flow = native_flow(&app, "login").await;
    let flow_id = flow["id"].as_str().unwrap().to_string();
    let fetched = app
        .http
        .get(app.public_path(&format!("/self-service/login/flows?id={flow_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), 200);
    let got = app.http.get(app.admin_path(&format!("/admin/identities/{identity}"))).send().await.unwrap();
    assert_eq!(got.status(), 200);
    let unknown = uuid::Uuid::new_v4();
    let missing = app.http.get(app.public_path(&format!("/no/such/path/{unknown}"))).send().await.unwrap();
    assert_eq!(missing.status(), 404);

    // Kratos's path on the admin port, with and without the /admin prefix...
    let body = scrape(&app).await;
    let prefixed = app.http.get(app.admin_path("/admin/metrics/prometheus")).send().await.unwrap();
    assert_eq!(prefixed.status(), 200);
    assert_eq!(prefixed.headers()["content-type"], CONTENT_TYPE);
    // ...and nowhere on the public one.
    for path in ["/metrics/prometheus", "/admin/metrics/prometheus"] {
        let public = app.http.get(app.public_path(path)).send().await.unwrap();
        assert_ne!(public.status(), 200, "{path}");
        assert!(!public.text().await.unwrap().contains("latchkey_http_requests_total"), "{path}");
    }

    // Templates, never the ids the requests carried.
    for id in [identity.as_str(), flow_id.as_str(), &unknown.to_string()] {
        assert!(!body.contains(id), "{id} leaked into a label:\n{body}");
    }
    let series = |api: &str, route: &str, status: u16| {
        format!(
            "latchkey_http_requests_total{{api=\"{api}\",method=\"GET\",route=\"{route}\",status=\"{status}\"}}"
        )
    };
    assert_eq!(must(&body, &series("admin", "/admin/identities/{id}", 200)), 1.0);
    assert_eq!(must(&body, &series("public", "/self-service/login/flows", 200)), 1.0);
    assert_eq!(must(&body, &series("public", "unmatched", 404)), 1.0);
    app.stop().await;
}

/// A `latchkey courier watch` process (the real binary), killed when dropped.
struct Watcher(Child);

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The whole configuration a watcher reads, as an operator would write it.
fn watcher_config(dir: &std::path::Path, dsn: &str, smtp: u16) -> std::path::PathBuf {
    let path = dir.join("watch.yml");
    let yaml = format!(
        "dsn: {dsn}\nidentity:\n  default_schema_id: default\n  schemas:\n    - id: default\n      url: file://{}\n\
         courier:\n  smtp:\n    connection_uri: smtp://127.0.0.1:{smtp}/?disable_starttls=true\n",
        quickstart_schema().display(),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn address(n: usize) -> String {
    format!("watched-{n}@example.com")
}

/// Mail queued by a `serve` without a relay is delivered by a separate
/// `courier watch`, whose `/metrics/prometheus` (on its own port) counts it
/// and sees the shared outbox drain; `serve`'s counters stay at zero.
async fn courier_watch_exports_what_it_delivered(backend: Backend) {
    const MAILS: usize = 3;
    let (smtp, received) = start_server(false);
    let app = spawn_app_with(backend, |c| c.selfservice.flows.recovery.enabled = true).await;
    for n in 0..MAILS {
        create_identity(&app, &address(n)).await;
        let flow = native_flow(&app, "recovery").await;
        let sent = app
            .http
            .post(app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap())))
            .json(&json!({ "method": "code", "email": address(n) }))
            .send()
            .await
            .unwrap();
        assert_eq!(sent.status(), 200);
    }
    // Queued, with nobody to send it: serve's scrape shows the outbox.
    app.code_requests_served().await;
    let body = scrape(&app).await;
    assert_eq!(must(&body, "latchkey_courier_queue_messages{state=\"queued\"}"), MAILS as f64, "{body}");

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("watch.log")).unwrap();
    let mut watcher = Watcher(
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["courier", "watch", "--expose-metrics-port", &port.to_string(), "-c"])
            .arg(watcher_config(dir.path(), &app.dsn, smtp))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let metrics = format!("http://127.0.0.1:{port}/metrics/prometheus");

    // Scrape (bounded) until the watcher has counted every delivery.
    let started = Instant::now();
    let body = loop {
        let log = || std::fs::read_to_string(dir.path().join("watch.log")).unwrap_or_default();
        assert!(watcher.0.try_wait().unwrap().is_none(), "courier watch exited:\n{}", log());
        assert!(started.elapsed() < Duration::from_secs(60), "never counted {MAILS} mails:\n{}", log());
        if let Ok(response) = app.http.get(&metrics).send().await {
            assert_eq!(response.status(), 200);
            assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
            let body = response.text().await.unwrap();
            let unsent = must(&body, "latchkey_courier_queue_messages{state=\"queued\"}")
                + must(&body, "latchkey_courier_queue_messages{state=\"processing\"}");
            if must(&body, "latchkey_courier_messages_sent_total") == MAILS as f64 && unsent == 0.0 {
                break body;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for n in 0..MAILS {
        code_for(&received, &address(n), 0).await;
    }
    assert_eq!(received.lock().unwrap().len(), MAILS, "each mail once");
    assert_eq!(must(&body, "latchkey_courier_delivery_latency_seconds_count"), MAILS as f64);
    assert_eq!(must(&body, "latchkey_courier_delivery_failures_total"), 0.0);
    assert_eq!(must(&body, "latchkey_courier_messages_abandoned_total"), 0.0);
    assert!(must(&body, "latchkey_courier_dispatch_rounds_total") >= 1.0, "{body}");
    let idle = must(&body, "latchkey_db_pool_connections{state=\"idle\"}");
    let in_use = must(&body, "latchkey_db_pool_connections{state=\"in_use\"}");
    let max = must(&body, "latchkey_db_pool_max_connections");
    assert!(idle + in_use >= 1.0 && idle + in_use <= max, "{body}");
    // It serves no API and hashes nothing: those families are not exported.
    for family in ["latchkey_http_requests_total", "latchkey_flows_started_total", "latchkey_hash_slots"] {
        assert!(!body.contains(family), "{family} in:\n{body}");
    }

    // The counters are the sending process's; the queue is the shared outbox's.
    let served = scrape(&app).await;
    assert_eq!(must(&served, "latchkey_courier_messages_sent_total"), 0.0);
    assert_eq!(must(&served, "latchkey_courier_queue_messages{state=\"queued\"}"), 0.0);

    // Only Kratos's path; the rest are 404s in Kratos's error format.
    for path in ["/", "/metrics", "/admin/metrics/prometheus", "/identities"] {
        let response = app.http.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], 404, "{path}: {error}");
    }
    let posted = app.http.post(&metrics).send().await.unwrap();
    assert_eq!(posted.status(), 405);

    // SIGTERM stops both the courier and its listener.
    Command::new("kill").args(["-TERM", &watcher.0.id().to_string()]).status().unwrap();
    let status = watcher.0.wait().unwrap();
    assert!(status.success(), "stops cleanly on SIGTERM: {status}");
    assert!(app.http.get(&metrics).send().await.is_err(), "the listener closed");
    app.stop().await;
}

/// A taken metrics port stops the start with an error naming the flag and
/// the address, before the database is touched; `--help` documents the flag.
#[test]
fn courier_watch_refuses_a_taken_metrics_port() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("never-opened.db").display());
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["courier", "watch", "--expose-metrics-port", &port.to_string(), "-c"])
        .arg(watcher_config(dir.path(), &dsn, free_port()))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    let expected = format!("--expose-metrics-port: could not listen on 127.0.0.1:{port}");
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(!dir.path().join("never-opened.db").exists());

    let help = Command::new(env!("CARGO_BIN_EXE_latchkey")).args(["courier", "watch", "--help"]).output();
    let help = String::from_utf8_lossy(&help.unwrap().stdout).to_string();
    for word in ["--expose-metrics-port", "/metrics/prometheus", "serve.admin.host"] {
        assert!(help.contains(word), "{word} missing from courier watch --help: {help}");
    }
}
