//! A login that upgrades an outdated password hash writes that hash and
//! nothing else, and only if it is still the one it verified: an admin's
//! deactivation or password change made while the login was hashing stands.
//! The server hashes with argon2; identities are imported with bcrypt hashes.

use std::time::Instant;

use latchkey::config::{Config, HashAlgorithm};
use latchkey_hash::{HasherConfig, hash_password, verify_password};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, eventually, login, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    rehash_changes_only_the_hash,
    rehash_never_undoes_a_concurrent_admin_change,
    a_change_made_while_the_password_is_checked_refuses_the_login,
);

const OLD_PASSWORD: &str = "imported-passphrase-1";
const ADMIN_PASSWORD: &str = "set-by-an-admin-passphrase";

fn argon2(c: &mut Config, memory: &str, iterations: u32) {
    c.hashers.algorithm = HashAlgorithm::Argon2;
    c.hashers.argon2.memory = memory.parse().unwrap();
    c.hashers.argon2.iterations = iterations;
    c.hashers.argon2.parallelism = Some(1);
}

fn bcrypt4(password: &str) -> String {
    hash_password(password.as_bytes(), &HasherConfig::Bcrypt { cost: 4 }).unwrap()
}

/// Imports an identity whose password is stored as `hash`; returns its id.
async fn import(app: &TestApp, email: &str, hash: &str) -> String {
    let body = json!({
        "schema_id": "default",
        "traits": {"email": email, "name": {"first": "Ada", "last": "Lovelace"}},
        "metadata_public": {"plan": "pro"},
        "credentials": {"password": {"config": {"hashed_password": hash}}},
    });
    let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

/// The identity as the admin API shows it, with its password config.
async fn identity(app: &TestApp, id: &str) -> Value {
    let path = app.admin_path(&format!("/admin/identities/{id}?include_credential=password"));
    app.http.get(path).send().await.unwrap().json().await.unwrap()
}

fn hash_of(identity: &Value) -> String {
    identity["credentials"]["password"]["config"]["hashed_password"].as_str().unwrap().to_string()
}

/// Everything but the credentials.
fn without_credentials(identity: &Value) -> Value {
    let mut rest = identity.clone();
    rest.as_object_mut().unwrap().remove("credentials");
    rest
}

async fn rehash_changes_only_the_hash(backend: Backend) {
    let app = spawn_app_with(backend, |c| argon2(c, "1MB", 1)).await;
    let id = import(&app, "rehash@example.com", &bcrypt4(OLD_PASSWORD)).await;
    let before = identity(&app, &id).await;

    login(&app, "rehash@example.com", OLD_PASSWORD).await.unwrap();
    let after = identity(&app, &id).await;
    let hash = hash_of(&after);
    assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{hash}");
    assert!(verify_password(OLD_PASSWORD.as_bytes(), &hash).unwrap());
    // State, traits, metadata, addresses and timestamps are as they were.
    assert_eq!(without_credentials(&after), without_credentials(&before));
    assert_eq!(
        after["credentials"]["password"]["identifiers"],
        before["credentials"]["password"]["identifiers"]
    );
    // Once upgraded, a login leaves the hash alone.
    login(&app, "rehash@example.com", OLD_PASSWORD).await.unwrap();
    assert_eq!(hash_of(&identity(&app, &id).await), hash);

    // Only the lanes differ (a hash made on a host with more CPUs): kept.
    let other_host = HasherConfig::Argon2 {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 4,
        salt_length: 16,
        key_length: 32,
    };
    let wide = hash_password(OLD_PASSWORD.as_bytes(), &other_host).unwrap();
    let id = import(&app, "wide@example.com", &wide).await;
    login(&app, "wide@example.com", OLD_PASSWORD).await.unwrap();
    assert_eq!(hash_of(&identity(&app, &id).await), wide);
    app.stop().await;
}

/// What an admin does while a login is busy hashing.
#[derive(Clone, Copy, Debug)]
enum AdminChange {
    Deactivate,
    SetPassword,
}

async fn apply(app: &TestApp, id: &str, change: AdminChange, email: &str) {
    let response = match change {
        AdminChange::Deactivate => {
            let patch = json!([{"op": "replace", "path": "/state", "value": "inactive"}]);
            app.http.patch(app.admin_path(&format!("/admin/identities/{id}"))).json(&patch).send().await
        }
        AdminChange::SetPassword => {
            let body = json!({
                "schema_id": "default",
                "state": "active",
                "traits": {"email": email, "name": {"first": "Ada", "last": "Lovelace"}},
                "metadata_public": {"plan": "pro"},
                "credentials": {"password": {"config": {"hashed_password": bcrypt4(ADMIN_PASSWORD)}}},
            });
            app.http.put(app.admin_path(&format!("/admin/identities/{id}"))).json(&body).send().await
        }
    };
    assert_eq!(response.unwrap().status(), 200);
}

async fn rehash_never_undoes_a_concurrent_admin_change(backend: Backend) {
    // A deliberately slow argon2, so the admin's write lands while the login
    // is hashing: after the login read the identity and checked the password,
    // before it stores the new hash.
    let app = spawn_app_with(backend, |c| argon2(c, "64MB", 12)).await;
    for change in [AdminChange::Deactivate, AdminChange::SetPassword] {
        let mut raced = false;
        // A loaded machine may delay the login past the admin's write; try again then.
        for attempt in 0..4 {
            let email = format!("race-{change:?}-{attempt}@example.com").to_lowercase();
            let id = import(&app, &email, &bcrypt4(OLD_PASSWORD)).await;
            let before = identity(&app, &id).await;
            let checks = app.hash_checks();
            let (login_result, admin_done) = tokio::join!(
                async { login(&app, &email, OLD_PASSWORD).await.map(|_| Instant::now()) },
                async {
                    // The login has checked the password and the hasher is
                    // busy: almost always with the slow rehash, as checking
                    // the bcrypt hash takes a millisecond. A write that lands
                    // during the check instead refuses the login, which then
                    // does not count as a race below.
                    let hashing = || app.hash_checks() > checks && app.hashes_running() > 0;
                    eventually("the login hashing", hashing).await;
                    apply(&app, &id, change, &email).await;
                    Instant::now()
                },
            );

            let after = identity(&app, &id).await;
            assert_eq!(after["traits"], before["traits"]);
            match change {
                AdminChange::Deactivate => assert_eq!(after["state"], "inactive", "the deactivation stands"),
                AdminChange::SetPassword => {
                    assert_eq!(after["state"], "active");
                    let hash = hash_of(&after);
                    assert!(
                        verify_password(ADMIN_PASSWORD.as_bytes(), &hash).unwrap(),
                        "the admin's password stands"
                    );
                    assert!(!verify_password(OLD_PASSWORD.as_bytes(), &hash).unwrap());
                }
            }
            // The race happened when the login was accepted (it read the
            // identity before the admin's write) yet finished after it.
            if login_result.is_ok_and(|login_done| login_done > admin_done) {
                eprintln!("{change:?} on {backend:?}: raced on attempt {attempt}");
                raced = true;
                if let AdminChange::SetPassword = change {
                    assert!(login(&app, &email, OLD_PASSWORD).await.is_err());
                    assert!(login(&app, &email, ADMIN_PASSWORD).await.is_ok());
                }
                break;
            }
        }
        assert!(raced, "{change:?}: the admin's write never landed during a login's rehash");
    }
    app.stop().await;
}

/// Creates an identity whose password the server hashes with its own (slow) settings.
async fn create(app: &TestApp, email: &str) -> String {
    let body = json!({
        "schema_id": "default",
        "traits": {"email": email, "name": {"first": "Ada", "last": "Lovelace"}},
        "credentials": {"password": {"config": {"password": OLD_PASSWORD}}},
    });
    let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
}

async fn a_change_made_while_the_password_is_checked_refuses_the_login(backend: Backend) {
    // The stored hash is slow to verify, so the admin's write lands after the
    // login read the identity and before its password check ends; the login
    // must then act on the identity as it is, not as it was read.
    let app = spawn_app_with(backend, |c| argon2(c, "64MB", 12)).await;
    for change in [AdminChange::Deactivate, AdminChange::SetPassword] {
        let mut raced = false;
        for attempt in 0..4 {
            let email = format!("check-{change:?}-{attempt}@example.com").to_lowercase();
            let id = create(&app, &email).await;
            let checks = app.hash_checks();
            let (login_result, landed_mid_check) =
                tokio::join!(async { login(&app, &email, OLD_PASSWORD).await.map(|_| ()) }, async {
                    // The login's password check is running (no other hash is).
                    let checking = || app.hash_checks() > checks && app.hashes_running() > 0;
                    eventually("the login's password check", checking).await;
                    apply(&app, &id, change, &email).await;
                    app.hashes_running() > 0
                },);
            // Only a login still verifying when the admin's write returned counts.
            if landed_mid_check {
                assert!(login_result.is_err(), "{change:?}: the login must not pass on the identity it read");
                let sessions = app
                    .http
                    .get(app.admin_path(&format!("/admin/identities/{id}/sessions")))
                    .send()
                    .await
                    .unwrap()
                    .json::<Value>()
                    .await
                    .unwrap();
                assert_eq!(sessions, json!([]), "{change:?}: no session was issued");
                raced = true;
                break;
            }
        }
        assert!(raced, "{change:?}: the admin's write never landed during a password check");
    }
    app.stop().await;
}
