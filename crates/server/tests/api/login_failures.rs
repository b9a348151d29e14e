//! Every failed password login answers alike, whatever the identifier was:
//! unknown, known with a wrong password, without a password credential,
//! deactivated, or holding a hash imported with other parameters than the
//! configured hasher's. Same status, same body (but for what is the flow's
//! own: its id, its times, the identifier typed), and the same work: one
//! password verification each. How long they take is measured by
//! `scripts/timing.py`, not here.

use latchkey_hash::{HasherConfig, hash_password};
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, create_identity, login, native_flow, spawn_app};
use crate::on_both_databases;

on_both_databases!(failed_logins_answer_alike_whoever_the_identifier_is);

const WRONG: &str = "not-the-password-of-anyone";

/// Creates an identity through the admin API from `credentials` and `state`.
async fn admin_create(app: &TestApp, email: &str, credentials: Option<Value>, state: &str) {
    let mut body = json!({"schema_id": "default", "traits": {"email": email}, "state": state});
    if let Some(credentials) = credentials {
        body["credentials"] = credentials;
    }
    let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

fn imported(hash: String) -> Option<Value> {
    Some(json!({"password": {"config": {"hashed_password": hash}}}))
}

/// Submits a password login on a fresh native flow: the status and the
/// answer, with what belongs to this flow alone blanked out.
async fn attempt(app: &TestApp, identifier: &str, password: &str) -> (u16, Value) {
    let flow = native_flow(app, "login").await;
    let id = flow["id"].as_str().unwrap().to_string();
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={id}")))
        .json(&json!({"method": "password", "identifier": identifier, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap().replace(&id, "<flow>");
    let mut body: Value = serde_json::from_str(&text).unwrap();
    for key in ["expires_at", "issued_at", "created_at", "updated_at"] {
        assert!(body.as_object_mut().unwrap().remove(key).is_some(), "{key} in {body}");
    }
    for node in body["ui"]["nodes"].as_array_mut().unwrap() {
        if node["attributes"]["name"] == "identifier" {
            assert_eq!(node["attributes"]["value"], identifier);
            node["attributes"]["value"] = json!("<typed>");
        }
    }
    (status, body)
}

async fn failed_logins_answer_alike_whoever_the_identifier_is(backend: Backend) {
    // The server hashes with bcrypt cost 4 (test_config).
    let app = spawn_app(backend).await;
    create_identity(&app, "known@example.com").await;
    admin_create(&app, "no-password@example.com", None, "active").await;
    let password = Some(json!({"password": {"config": {"password": PASSWORD}}}));
    admin_create(&app, "inactive@example.com", password, "inactive").await;
    let bcrypt6 = hash_password(PASSWORD.as_bytes(), &HasherConfig::Bcrypt { cost: 6 }).unwrap();
    admin_create(&app, "bcrypt6@example.com", imported(bcrypt6), "active").await;
    let argon2 = HasherConfig::Argon2 {
        memory_kib: 2048,
        iterations: 2,
        parallelism: 1,
        salt_length: 16,
        key_length: 32,
    };
    let argon2 = hash_password(PASSWORD.as_bytes(), &argon2).unwrap();
    admin_create(&app, "argon2@example.com", imported(argon2), "active").await;

    let (status, unknown) = attempt(&app, "nobody@example.com", WRONG).await;
    assert_eq!(status, 400);
    assert_eq!(unknown["ui"]["messages"][0]["id"], 4000006, "{unknown}");
    assert_eq!(unknown["state"], "choose_method");
    let cases = [
        ("known@example.com", WRONG),
        ("no-password@example.com", WRONG),
        ("no-password@example.com", PASSWORD),
        ("inactive@example.com", WRONG),
        ("bcrypt6@example.com", WRONG),
        ("argon2@example.com", WRONG),
        ("nobody@example.com", PASSWORD),
    ];
    for (identifier, password) in cases {
        let checks = app.hash_checks();
        let (status, body) = attempt(&app, identifier, password).await;
        assert_eq!((status, &body), (400, &unknown), "{identifier}");
        assert_eq!(app.hash_checks(), checks + 1, "{identifier}: one verification, no more");
    }

    // The imported hashes were right all along: only now are they used (and
    // replaced with the configured hasher's).
    for identifier in ["known@example.com", "bcrypt6@example.com", "argon2@example.com"] {
        login(&app, identifier, PASSWORD).await.unwrap();
    }
    app.stop().await;
}
