//! The database cleanup end to end: `latchkey cleanup sql` (the real
//! binary) on a database a running server filled through its API, and the
//! periodic cleanup inside `serve`. What is due goes — expired flows and
//! codes, revoked sessions, delivered mail, the codes in delivered mail —
//! and what anything still reads stays.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use latchkey_domain::store::CodePurpose;
use latchkey_domain::time::Clock;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, code_for, native_flow, spawn_app_beside, spawn_app_with, submit_registration,
};
use crate::on_both_databases;

on_both_databases!(cleanup_sql_removes_what_is_due_and_keeps_the_rest, serve_cleans_up_periodically);

/// Runs `latchkey cleanup sql -c <config> <args>` and returns the rows it
/// reports per table.
fn cleanup_sql(config: &std::path::Path, args: &[&str]) -> BTreeMap<String, u64> {
    let output = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["cleanup", "sql", "-c"])
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    stdout
        .lines()
        .skip(1)
        .map(|line| {
            let (table, rows) = line.trim_end().rsplit_once(' ').unwrap();
            (table.trim().to_string(), rows.parse().unwrap())
        })
        .collect()
}

fn rows(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    let mut all: BTreeMap<String, u64> = [
        "sessions",
        "selfservice_flows",
        "one_time_codes",
        "code_failures",
        "rate_events",
        "courier_messages",
        "courier_dispatches",
        "courier_messages (bodies cleared)",
        "selfservice_errors",
    ]
    .into_iter()
    .map(|t| (t.to_string(), 0))
    .collect();
    for (table, n) in pairs {
        all.insert(table.to_string(), *n);
    }
    all
}

async fn status_of(app: &TestApp, url: &str) -> u16 {
    app.http.get(url).send().await.unwrap().status().as_u16()
}

async fn recover(app: &TestApp, email: &str) -> Value {
    let flow = native_flow(app, "recovery").await;
    let url = app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap()));
    let sent = app.http.post(&url).json(&json!({"method": "code", "email": email})).send().await.unwrap();
    assert_eq!(sent.status(), 200);
    flow
}

/// The outbox's messages to `to`, oldest first.
async fn messages_to(app: &TestApp, to: &str) -> Vec<Value> {
    let list: Value = app.get_json(&app.admin_path(&format!("/admin/courier/messages?recipient={to}"))).await;
    list.as_array().unwrap().clone()
}

async fn cleanup_sql_removes_what_is_due_and_keeps_the_rest(backend: Backend) {
    // `cleanup sql` judges by the wall clock, and the servers' clock runs
    // half an hour behind it: what they make for less than that (codes live
    // 15 minutes, sign-in flows 10 here) has expired by the time the CLI
    // looks, and the rest (other flows an hour, sessions a day) lives on.
    // The servers' own periodic cleanup is off, so only the CLI cleans here.
    let short_lived = |c: &mut latchkey::config::Config| {
        c.selfservice.flows.recovery.enabled = true;
        c.selfservice.flows.login.lifespan = "10m".parse().unwrap();
        c.database.cleanup.interval = "0s".parse().unwrap();
    };
    let app = spawn_app_with(backend, short_lived).await;
    app.clock.set_offset(-chrono::Duration::minutes(30));
    let owner = "cleanup-owner@example.com";
    let signed_in = submit_registration(&app, json!({ "email": owner }), PASSWORD).await;
    let live_token = signed_in["session_token"].as_str().unwrap().to_string();
    let signed_out =
        submit_registration(&app, json!({ "email": "cleanup-other@example.com" }), PASSWORD).await;
    let revoked = signed_out["session"]["id"].as_str().unwrap().to_string();
    let revoke = app.http.delete(app.admin_path(&format!("/admin/sessions/{revoked}"))).send().await.unwrap();
    assert_eq!(revoke.status(), 204);
    let login = native_flow(&app, "login").await;
    let registration = native_flow(&app, "registration").await;

    // A code mailed and delivered (by a second server that has SMTP), then a wrong guess.
    let recovery = recover(&app, owner).await;
    let (port, received) = latchkey_courier::test_smtp::start_server(false);
    let courier = spawn_app_beside(&app, |c| {
        short_lived(c);
        c.courier.smtp.connection_uri = format!("smtp://127.0.0.1:{port}/?disable_starttls=true");
    })
    .await;
    code_for(&received, owner, 0).await;
    let mut delivered = Value::Null;
    for _ in 0..200 {
        delivered = messages_to(&app, owner).await.remove(0);
        if delivered["status"] == "sent" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(delivered["status"], "sent");
    assert!(!delivered["body"].as_str().unwrap().is_empty());
    courier.stop().await;
    let url = app.public_path(&format!("/self-service/recovery?flow={}", recovery["id"].as_str().unwrap()));
    let guess = app.http.post(&url).json(&json!({"method": "code", "code": "000000"})).send().await.unwrap();
    assert_eq!(guess.status(), 200);
    // Another code, whose mail stays queued: no server here sends mail.
    recover(&app, owner).await;
    app.code_requests_served().await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("cleanup.yml");
    std::fs::write(
        &config,
        format!("dsn: {}\ndatabase:\n  cleanup:\n    batch_size: 2\n    sleep:\n      tables: 0s\n", app.dsn),
    )
    .unwrap();

    // Keeping the last hour, only the delivered mail's dead code goes.
    assert_eq!(
        cleanup_sql(&config, &["--keep-last", "1h"]),
        rows(&[("courier_messages (bodies cleared)", 1)])
    );
    let blanked: Value = app
        .get_json(&app.admin_path(&format!("/admin/courier/messages/{}", delivered["id"].as_str().unwrap())))
        .await;
    assert_eq!((blanked["subject"].as_str(), blanked["body"].as_str()), (Some(""), Some("")));
    assert_eq!(blanked["status"], "sent");

    // Keeping nothing, everything due goes.
    assert_eq!(
        cleanup_sql(&config, &["--keep-last", "0s"]),
        rows(&[
            ("sessions", 1),
            ("selfservice_flows", 1),
            ("one_time_codes", 2),
            ("courier_messages", 1),
            ("courier_dispatches", 1),
        ])
    );
    let flow_url = |kind: &str, flow: &Value| {
        app.public_path(&format!("/self-service/{kind}/flows?id={}", flow["id"].as_str().unwrap()))
    };
    assert_eq!(status_of(&app, &flow_url("login", &login)).await, 404);
    assert_eq!(status_of(&app, &app.admin_path(&format!("/admin/sessions/{revoked}"))).await, 404);
    let gone = app.admin_path(&format!("/admin/courier/messages/{}", delivered["id"].as_str().unwrap()));
    assert_eq!(status_of(&app, &gone).await, 404);
    // Kept: the live session, the live flows, the queued mail (code and all), the counted guess.
    let whoami =
        app.http.get(app.public_path("/sessions/whoami")).bearer_auth(&live_token).send().await.unwrap();
    assert_eq!(whoami.status(), 200);
    assert_eq!(status_of(&app, &flow_url("registration", &registration)).await, 200);
    assert_eq!(status_of(&app, &flow_url("recovery", &recovery)).await, 200);
    let queued = messages_to(&app, owner).await;
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0]["status"], "queued");
    assert!(queued[0]["body"].as_str().unwrap().contains("code"));
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    let since = app.clock.now() - chrono::Duration::hours(1);
    assert_eq!(store.count_code_failures(CodePurpose::Recovery, owner, since).await.unwrap(), 1);
    store.close().await;
    // Nothing is due twice.
    assert_eq!(cleanup_sql(&config, &["--keep-last", "0s"]), rows(&[]));
}

async fn serve_cleans_up_periodically(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.login.lifespan = "10m".parse().unwrap();
        c.database.cleanup.interval = "1s".parse().unwrap();
        c.database.cleanup.sleep.tables = "0s".parse().unwrap();
        c.database.cleanup.older_than = "0s".parse().unwrap();
    })
    .await;
    let signed_in = submit_registration(&app, json!({ "email": "periodic@example.com" }), PASSWORD).await;
    let token = signed_in["session_token"].as_str().unwrap().to_string();
    let login = native_flow(&app, "login").await;
    let registration = native_flow(&app, "registration").await;
    let flow_url = |kind: &str, flow: &Value| {
        app.public_path(&format!("/self-service/{kind}/flows?id={}", flow["id"].as_str().unwrap()))
    };
    // Past the sign-in flow's life; the registration flow lives an hour.
    app.clock.advance(Duration::from_secs(11 * 60));

    // The expired sign-in flow is answered as expired until a run deletes it.
    let mut status = 0;
    for _ in 0..300 {
        status = status_of(&app, &flow_url("login", &login)).await;
        if status == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 404, "the periodic cleanup removed the expired flow");
    assert_eq!(status_of(&app, &flow_url("registration", &registration)).await, 200);
    let whoami = app.http.get(app.public_path("/sessions/whoami")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(whoami.status(), 200);
    // Stopping waits for the cleanup task too.
    app.stop().await;
}
