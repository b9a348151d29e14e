//! Notices to the owner (ASVS 2.2.3, 2.5.5): an account recovery, and a
//! verified or recovery address changed or removed in settings, mail the
//! owner (the old address, for address changes) over real SMTP. Notices
//! carry no code, token or link; never-verified addresses and admin changes
//! get none; every notice template takes overrides.
//!
//! A notice is written to the outbox in the same transaction as its change,
//! so the outbox read right after the answer is the whole truth: checks that
//! no notice was written need no waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_courier::test_smtp::Received;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, code_for, create_identity, login, native_flow, spawn_app_with_mail,
};
use crate::on_both_databases;

on_both_databases!(
    recovery_tells_the_owner,
    changing_a_verified_address_tells_the_old_one,
    changing_or_removing_a_recovery_address_tells_it,
    never_verified_addresses_change_quietly,
    every_notice_takes_overrides,
);

const NOTICES: [&str; 4] = ["password_changed", "account_recovered", "address_changed", "address_removed"];
const USER_AGENT: &str = "NoticeTest/1.0 (integration)";

/// The quickstart's `email` plus `backup`, an optional recovery-only address.
fn schema(dir: &std::path::Path) -> String {
    let path = dir.join("backup.schema.json");
    let document = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": { "traits": { "type": "object", "required": ["email"], "additionalProperties": false,
            "properties": {
                "email": { "type": "string", "format": "email", "ory.sh/kratos": {
                    "credentials": { "password": { "identifier": true } },
                    "verification": { "via": "email" },
                    "recovery": { "via": "email" } } },
                "backup": { "type": "string", "format": "email", "ory.sh/kratos": {
                    "recovery": { "via": "email" } } }
            } } }
    });
    std::fs::write(&path, document.to_string()).unwrap();
    format!("file://{}", path.display())
}

struct Harness {
    app: TestApp,
    received: Arc<Mutex<Vec<Received>>>,
    _dir: tempfile::TempDir,
}

async fn harness(backend: Backend, adjust: impl FnOnce(&mut latchkey::config::Config)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let schema = schema(dir.path());
    let (app, received) = spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        c.identity.schemas = vec![latchkey::config::SchemaEntry { id: "default".into(), url: schema }];
        adjust(c);
    })
    .await;
    Harness { app, received, _dir: dir }
}

/// Creates an identity through the admin API with [`PASSWORD`]; `verified`
/// imports its `email` as a verified address.
async fn create(app: &TestApp, traits: Value, verified: bool) -> String {
    let mut body = json!({
        "schema_id": "default",
        "traits": traits,
        "credentials": { "password": { "config": { "password": PASSWORD } } },
    });
    if verified {
        body["verifiable_addresses"] =
            json!([{ "value": traits["email"], "verified": true, "via": "email", "status": "completed" }]);
    }
    let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["verifiable_addresses"][0]["verified"], verified);
    created["id"].as_str().unwrap().to_string()
}

/// Submits a settings flow (a fresh one each time) from [`USER_AGENT`].
async fn settings(app: &TestApp, token: &str, body: Value) -> Value {
    let response = app
        .http
        .get(app.public_path("/self-service/settings/api"))
        .header("x-session-token", token)
        .send()
        .await
        .unwrap();
    let flow: Value = response.json().await.unwrap();
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", token)
        .header("user-agent", USER_AGENT)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let saved: Value = response.json().await.unwrap();
    assert_eq!(saved["state"], "success", "{saved}");
    saved
}

/// Recovers the account at `email` by emailed code (the `nth` mail to it)
/// from [`USER_AGENT`]; returns the session token.
async fn recover(h: &Harness, email: &str, nth: usize) -> String {
    let flow = native_flow(&h.app, "recovery").await;
    let url = h.app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap()));
    let sent = h.app.http.post(&url).json(&json!({"method": "code", "email": email})).send().await.unwrap();
    assert_eq!(sent.status(), 200);
    let code = code_for(&h.received, email, nth).await;
    submit_code(&h.app, &url, &code).await
}

async fn submit_code(app: &TestApp, url: &str, code: &str) -> String {
    let response = app
        .http
        .post(url)
        .header("user-agent", USER_AGENT)
        .json(&json!({"method": "code", "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["state"], "passed_challenge", "{done}");
    done["continue_with"][0]["ory_session_token"].as_str().unwrap().to_string()
}

/// The notices in the outbox for `to`, oldest first (`--dev` shows bodies).
async fn notices(app: &TestApp, to: &str) -> Vec<Value> {
    let all: Vec<Value> =
        app.get_json(&app.admin_path(&format!("/admin/courier/messages?recipient={to}"))).await;
    let mut notices: Vec<Value> =
        all.into_iter().filter(|m| NOTICES.contains(&m["template_type"].as_str().unwrap())).collect();
    notices.sort_by_key(|m| m["created_at"].as_str().unwrap().to_string());
    notices
}

/// Whether `text` holds six digits in a row (what a code looks like).
fn has_code(text: &str) -> bool {
    text.as_bytes().windows(6).any(|w| w.iter().all(u8::is_ascii_digit))
}

/// A notice carries no code, no token and no link, in any of its parts, and
/// says when and from where.
async fn assert_harmless(app: &TestApp, notice: &Value, tokens: &[&str]) {
    let id: uuid::Uuid = notice["id"].as_str().unwrap().parse().unwrap();
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    let (message, _) = store.get_message(id).await.unwrap().unwrap();
    store.close().await;
    let html = message.html_body.clone().unwrap_or_default();
    for part in [&message.subject, &message.body, &html] {
        assert!(!has_code(part), "a code-like number in {part}");
        for needle in ["http", "code=", "flow=", "ory_st_", "ory_lo_", "token"] {
            assert!(!part.contains(needle), "`{needle}` in {part}");
        }
        for token in tokens {
            assert!(!part.contains(token), "a session token in {part}");
        }
    }
    assert!(message.body.contains("When: ") && message.body.contains(" UTC"), "{}", message.body);
    assert!(message.body.contains(&format!("IP address 127.0.0.1, \"{USER_AGENT}\"")), "{}", message.body);
}

/// Waits (bounded) until a mail to `to` whose subject contains `subject`
/// has reached the SMTP server.
async fn delivered(received: &Mutex<Vec<Received>>, to: &str, subject: &str) {
    for _ in 0..200 {
        let found = received.lock().unwrap().iter().any(|r| {
            r.to.iter().any(|t| t.contains(to))
                && String::from_utf8_lossy(&r.data)
                    .lines()
                    .any(|l| l.starts_with("Subject:") && l.contains(subject))
        });
        if found {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no mail `{subject}` reached {to}");
}

async fn recovery_tells_the_owner(backend: Backend) {
    let h = harness(backend, |_| {}).await;
    let identity_id = create_identity(&h.app, "recovered@example.com").await;
    assert!(notices(&h.app, "recovered@example.com").await.is_empty());

    let token = recover(&h, "recovered@example.com", 0).await;
    let sent = notices(&h.app, "recovered@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_type"], "account_recovered");
    assert_eq!(sent[0]["subject"], "Your account was recovered");
    let body = sent[0]["body"].as_str().unwrap();
    assert!(body.contains("The account for recovered@example.com was recovered"), "{body}");
    assert!(body.contains("If it was not"), "says what to do: {body}");
    assert_harmless(&h.app, &sent[0], &[&token]).await;
    delivered(&h.received, "recovered@example.com", "Your account was recovered").await;

    // A code an administrator issued tells the owner too, once used.
    let response = h
        .app
        .http
        .post(h.app.admin_path("/admin/recovery/code"))
        .json(&json!({"identity_id": identity_id, "flow_type": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let issued: Value = response.json().await.unwrap();
    let flow_id = issued["recovery_link"].as_str().unwrap().split("flow=").nth(1).unwrap().to_string();
    assert_eq!(notices(&h.app, "recovered@example.com").await.len(), 1, "issuing alone tells nobody");
    let url = h.app.public_path(&format!("/self-service/recovery?flow={flow_id}"));
    let token = submit_code(&h.app, &url, issued["recovery_code"].as_str().unwrap()).await;
    let sent = notices(&h.app, "recovered@example.com").await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["template_type"], "account_recovered");
    assert_harmless(&h.app, &sent[1], &[&token, issued["recovery_code"].as_str().unwrap()]).await;
    h.app.stop().await;
}

async fn changing_a_verified_address_tells_the_old_one(backend: Backend) {
    let h = harness(backend, |_| {}).await;
    create(&h.app, json!({"email": "old@example.com"}), true).await;
    let token = login(&h.app, "old@example.com", PASSWORD).await.unwrap();

    // Other traits changing tells nobody.
    settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "old@example.com"}})).await;
    assert!(notices(&h.app, "old@example.com").await.is_empty());

    let saved =
        settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "new@example.com"}})).await;
    assert_eq!(saved["identity"]["traits"]["email"], "new@example.com");
    let sent = notices(&h.app, "old@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_type"], "address_changed");
    assert_eq!(sent[0]["subject"], "The email address of your account was changed");
    let body = sent[0]["body"].as_str().unwrap();
    assert!(body.contains("old@example.com was replaced by another email address"), "{body}");
    assert!(!body.contains("new@example.com"), "the old address is not told the new one: {body}");
    assert_harmless(&h.app, &sent[0], &[&token]).await;
    delivered(&h.received, "old@example.com", "The email address of your account was changed").await;
    assert!(notices(&h.app, "new@example.com").await.is_empty(), "the new address gets no notice");

    // Administrators change addresses without mails (as Kratos): PATCH and PUT.
    let id = create(&h.app, json!({"email": "admin-old@example.com"}), true).await;
    let patch = json!([{"op": "replace", "path": "/traits/email", "value": "admin-new@example.com"}]);
    let response = h
        .app
        .http
        .patch(h.app.admin_path(&format!("/admin/identities/{id}")))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(notices(&h.app, "admin-old@example.com").await.is_empty());
    let id = create(&h.app, json!({"email": "put-old@example.com"}), true).await;
    let put = json!({"schema_id": "default", "state": "active", "traits": {"email": "put-new@example.com"}});
    let response =
        h.app.http.put(h.app.admin_path(&format!("/admin/identities/{id}"))).json(&put).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(notices(&h.app, "put-old@example.com").await.is_empty());
    h.app.stop().await;
}

async fn changing_or_removing_a_recovery_address_tells_it(backend: Backend) {
    let h = harness(backend, |_| {}).await;
    create(&h.app, json!({"email": "main@example.com", "backup": "backup@example.com"}), false).await;
    let token = login(&h.app, "main@example.com", PASSWORD).await.unwrap();

    // A recovery-only address cannot be verified; replacing it tells it.
    settings(
        &h.app,
        &token,
        json!({"method": "profile", "traits": {"email": "main@example.com", "backup": "backup2@example.com"}}),
    )
    .await;
    let sent = notices(&h.app, "backup@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_type"], "address_changed");
    assert_harmless(&h.app, &sent[0], &[&token]).await;

    // Removing it (nothing added) is told as a removal.
    settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "main@example.com"}})).await;
    let sent = notices(&h.app, "backup2@example.com").await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["template_type"], "address_removed");
    assert_eq!(sent[0]["subject"], "An email address was removed from your account");
    assert!(sent[0]["body"].as_str().unwrap().contains("backup2@example.com was removed"));
    assert_harmless(&h.app, &sent[0], &[&token]).await;
    delivered(&h.received, "backup2@example.com", "An email address was removed from your account").await;
    // The unchanged, never-verified main address heard nothing.
    assert!(notices(&h.app, "main@example.com").await.is_empty());
    h.app.stop().await;
}

async fn never_verified_addresses_change_quietly(backend: Backend) {
    let h = harness(backend, |_| {}).await;
    // Never verified, though it is also the recovery address: nobody showed
    // it reaches the owner (it may be a typo reaching a stranger).
    create(&h.app, json!({"email": "typo@exmaple.com"}), false).await;
    let token = login(&h.app, "typo@exmaple.com", PASSWORD).await.unwrap();
    settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "fixed@example.com"}})).await;
    assert!(notices(&h.app, "typo@exmaple.com").await.is_empty());

    // Verified by a recovery, the same address is told when it goes.
    let id = create(&h.app, json!({"email": "later@example.com"}), false).await;
    let token = recover(&h, "later@example.com", 0).await;
    let identity: Value = h.app.get_json(&h.app.admin_path(&format!("/admin/identities/{id}"))).await;
    assert_eq!(identity["verifiable_addresses"][0]["verified"], true);
    settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "moved@example.com"}})).await;
    let sent = notices(&h.app, "later@example.com").await;
    let kinds: Vec<&str> = sent.iter().map(|m| m["template_type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["account_recovered", "address_changed"]);
    h.app.stop().await;
}

async fn every_notice_takes_overrides(backend: Backend) {
    let overrides = tempfile::tempdir().unwrap();
    for (name, subject) in [
        ("account_recovered", "Custom recovered {{ .To }}"),
        ("address_changed", "Custom changed {{ .To }}"),
        ("address_removed", "Custom removed {{ .To }}"),
        ("password_changed", "Overridden by configuration below"),
    ] {
        let dir = overrides.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("email.subject.gotmpl"), subject).unwrap();
        std::fs::write(dir.join("email.body.plaintext.gotmpl"), format!("{name} from {{{{ .Device }}}}"))
            .unwrap();
    }
    let subject = overrides.path().join("password-subject.gotmpl");
    std::fs::write(&subject, "Custom password {{ .OccurredAt }}").unwrap();
    let subject = format!("file://{}", subject.display());
    let path = overrides.path().to_str().unwrap().to_string();
    let h = harness(backend, |c| {
        c.courier.template_override_path = Some(path);
        // Configuration wins over the directory.
        c.courier.templates = json!({"password_changed": {"email": {"subject": subject}}});
    })
    .await;
    create(&h.app, json!({"email": "custom@example.com", "backup": "custom-backup@example.com"}), true).await;

    let token = recover(&h, "custom@example.com", 0).await;
    settings(&h.app, &token, json!({"method": "password", "password": "a-renewed-passphrase-for-notices"}))
        .await;
    settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "custom@example.com"}})).await;
    settings(&h.app, &token, json!({"method": "profile", "traits": {"email": "custom2@example.com"}})).await;

    let device = format!("IP address 127.0.0.1, \"{USER_AGENT}\"");
    let sent = notices(&h.app, "custom@example.com").await;
    let seen: Vec<(&str, &str, &str)> = sent
        .iter()
        .map(|m| {
            (
                m["template_type"].as_str().unwrap(),
                m["subject"].as_str().unwrap(),
                m["body"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, "account_recovered");
    assert_eq!(seen[0].1, "Custom recovered custom@example.com");
    assert_eq!(seen[0].2, format!("account_recovered from {device}"));
    assert_eq!(seen[1].0, "password_changed");
    assert!(seen[1].1.starts_with("Custom password 20") && seen[1].1.ends_with(" UTC"), "{}", seen[1].1);
    assert_eq!(seen[1].2, format!("password_changed from {device}"));
    assert_eq!(seen[2].0, "address_changed");
    assert_eq!(seen[2].1, "Custom changed custom@example.com");
    let removed = notices(&h.app, "custom-backup@example.com").await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!(removed[0]["subject"], "Custom removed custom-backup@example.com");
    assert_eq!(removed[0]["body"], format!("address_removed from {device}"));
    delivered(&h.received, "custom-backup@example.com", "Custom removed custom-backup@example.com").await;
    h.app.stop().await;
}
