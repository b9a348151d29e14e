//! Session management: a user's own sessions, the admin session API, and
//! the `revoke_active_sessions` login hook.

use ory_kratos_client::apis::{frontend_api, identity_api};
use serde_json::Value;

use crate::helpers::{Backend, PASSWORD, login, register, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    my_sessions,
    admin_sessions,
    login_can_revoke_other_sessions,
    two_step_registration,
    deactivating_an_identity_ends_its_sessions_at_once,
    whoami_shows_an_identity_change_at_once,
    extending_waits_until_the_session_is_near_its_end,
);

async fn my_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (first, _) = register(&app, "multi@example.com", PASSWORD).await;
    let second = login(&app, "multi@example.com", PASSWORD).await.unwrap();
    let third = login(&app, "multi@example.com", PASSWORD).await.unwrap();

    let others = frontend_api::list_my_sessions(&app.public, None, None, None, None, Some(&third), None)
        .await
        .unwrap();
    assert_eq!(others.len(), 2, "the current session is not listed");
    let response =
        app.http.get(app.public_path("/sessions")).header("x-session-token", &third).send().await.unwrap();
    assert_eq!(response.headers()["x-total-count"], "2");

    // The current session cannot be revoked this way; another one can.
    let current = frontend_api::to_session(&app.public, Some(&third), None, None).await.unwrap();
    let response = app
        .http
        .delete(app.public_path(&format!("/sessions/{}", current.id)))
        .header("x-session-token", &third)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let second_session = frontend_api::to_session(&app.public, Some(&second), None, None).await.unwrap();
    frontend_api::disable_my_session(&app.public, &second_session.id, Some(&third), None).await.unwrap();
    assert!(frontend_api::to_session(&app.public, Some(&second), None, None).await.is_err());

    let revoked = frontend_api::disable_my_other_sessions(&app.public, Some(&third), None).await.unwrap();
    assert_eq!(revoked.count, Some(1));
    assert!(frontend_api::to_session(&app.public, Some(&first), None, None).await.is_err());
    assert!(frontend_api::to_session(&app.public, Some(&third), None, None).await.is_ok());

    // Another identity's session is not mine to revoke.
    let (stranger, _) = register(&app, "stranger@example.com", PASSWORD).await;
    let response = app
        .http
        .delete(app.public_path(&format!("/sessions/{}", current.id)))
        .header("x-session-token", &stranger)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(app.http.get(app.public_path("/sessions")).send().await.unwrap().status(), 401);
    app.stop().await;
}

async fn admin_sessions(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, identity_id) = register(&app, "admin-view@example.com", PASSWORD).await;
    login(&app, "admin-view@example.com", PASSWORD).await.unwrap();
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();

    let all: Vec<Value> =
        app.http.get(app.admin_path("/admin/sessions")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.len(), 2);
    assert!(all[0]["identity"].is_null() && all[0]["devices"] == serde_json::json!([]));
    let expanded =
        identity_api::get_session(&app.admin, &session.id, Some(vec!["identity".into()])).await.unwrap();
    assert_eq!(expanded.identity.unwrap().id, identity_id);
    let of_identity =
        identity_api::list_identity_sessions(&app.admin, &identity_id, None, None, None, None, None)
            .await
            .unwrap();
    assert_eq!(of_identity.len(), 2);

    let extended = identity_api::extend_session(&app.admin, &session.id).await.unwrap();
    assert!(extended.expires_at.unwrap() >= session.expires_at.clone().unwrap());

    identity_api::disable_session(&app.admin, &session.id).await.unwrap();
    assert!(frontend_api::to_session(&app.public, Some(&token), None, None).await.is_err());
    let active =
        identity_api::list_identity_sessions(&app.admin, &identity_id, None, None, None, None, Some(true))
            .await
            .unwrap();
    assert_eq!(active.len(), 1);

    identity_api::delete_identity_sessions(&app.admin, &identity_id).await.unwrap();
    let left = identity_api::list_identity_sessions(&app.admin, &identity_id, None, None, None, None, None)
        .await
        .unwrap();
    assert!(left.is_empty());
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(
        app.http.get(app.admin_path(&format!("/admin/sessions/{unknown}"))).send().await.unwrap().status(),
        404
    );
    assert_eq!(
        app.http.delete(app.admin_path(&format!("/admin/sessions/{unknown}"))).send().await.unwrap().status(),
        404
    );
    // Unknown sessions cannot be extended, unknown identities have no sessions to list or delete.
    let extend =
        app.http.patch(app.admin_path(&format!("/admin/sessions/{unknown}/extend"))).send().await.unwrap();
    assert_eq!(extend.status(), 404);
    let of_unknown = app.admin_path(&format!("/admin/identities/{unknown}/sessions"));
    assert_eq!(app.http.get(&of_unknown).send().await.unwrap().status(), 404);
    assert_eq!(app.http.delete(&of_unknown).send().await.unwrap().status(), 404);
    app.stop().await;
}

async fn login_can_revoke_other_sessions(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.login.after.password.hooks =
            vec![latchkey::config::Hook { hook: "revoke_active_sessions".into(), config: None }];
    })
    .await;
    let (first, _) = register(&app, "single@example.com", PASSWORD).await;
    let second = login(&app, "single@example.com", PASSWORD).await.unwrap();
    assert!(frontend_api::to_session(&app.public, Some(&first), None, None).await.is_err());
    assert!(frontend_api::to_session(&app.public, Some(&second), None, None).await.is_ok());
    app.stop().await;
}

async fn two_step_registration(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.registration.style = latchkey::config::RegistrationStyle::ProfileFirst
    })
    .await;
    let flow = crate::helpers::native_flow(&app, "registration").await;
    let names: Vec<&str> = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["attributes"]["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"password"), "screen one asks for traits only: {names:?}");
    let url = app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap()));
    let response = app
        .http
        .post(&url)
        .json(&serde_json::json!({"method": "profile", "traits": {"email": "two@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "the next screen comes back as 400, as in Kratos");
    let next: Value = response.json().await.unwrap();
    assert_eq!(next["ui"]["messages"][0]["id"], 1040009);
    let email = next["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "traits.email")
        .unwrap();
    assert_eq!(email["attributes"]["type"], "hidden");
    let response = app
        .http
        .post(&url)
        .json(&serde_json::json!({"method": "password", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["identity"]["traits"]["email"], "two@example.com");
    app.stop().await;
}

/// Two servers share one PostgreSQL database: a session revoked through one
/// stops working on the other at once, although the other had cached it.
#[tokio::test]
async fn revocation_reaches_every_server_sharing_postgres() {
    let a = spawn_app(Backend::Postgres).await;
    let b = crate::helpers::spawn_app_on(&a.dsn).await;
    let (token, identity_id) = register(&a, "shared@example.com", PASSWORD).await;
    let whoami = |app: &crate::helpers::TestApp| {
        let request =
            app.http.get(app.public_path("/sessions/whoami")).header("x-session-token", token.clone());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(whoami(&b).await, 200, "b caches the session");
    assert_eq!(whoami(&b).await, 200);
    identity_api::delete_identity_sessions(&a.admin, &identity_id).await.unwrap();
    // Notifications are asynchronous; allow them a moment, bounded.
    let mut status = 200;
    for _ in 0..50 {
        status = whoami(&b).await;
        if status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 401);
    b.stop().await;
    a.stop().await;
}

async fn deactivating_an_identity_ends_its_sessions_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, identity_id) = register(&app, "deactivate@example.com", PASSWORD).await;
    for _ in 0..2 {
        assert!(frontend_api::to_session(&app.public, Some(&token), None, None).await.is_ok());
    }
    let mut op = ory_kratos_client::models::JsonPatch::new("replace".into(), "/state".into());
    op.value = Some(Some(serde_json::json!("inactive")));
    identity_api::patch_identity(&app.admin, &identity_id, Some(vec![op])).await.unwrap();
    assert!(frontend_api::to_session(&app.public, Some(&token), None, None).await.is_err());
    app.stop().await;
}

/// whoami's answer is rendered once per cached session: a change to the
/// identity must still show on the very next call.
async fn whoami_shows_an_identity_change_at_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, identity_id) = register(&app, "render@example.com", PASSWORD).await;
    let whoami = || async {
        let response = app.whoami(&token).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["x-kratos-authenticated-identity-id"], identity_id.as_str());
        response.json::<Value>().await.unwrap()
    };
    let first = whoami().await;
    assert_eq!(whoami().await, first, "a cached answer is the same answer");
    assert_eq!(first["identity"]["traits"]["email"], "render@example.com");
    assert_eq!(first["active"], true);

    let patch = serde_json::json!([{ "op": "add", "path": "/metadata_public", "value": { "plan": "pro" } }]);
    let response = app
        .http
        .patch(app.admin_path(&format!("/admin/identities/{identity_id}")))
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let after = whoami().await;
    assert_eq!(after["identity"]["metadata_public"]["plan"], "pro");
    assert_eq!(after["id"], first["id"]);
    app.stop().await;
}

/// `session.earliest_possible_extend`: a session with more time left than
/// that is answered as it is, not rewritten; once inside it, extended.
async fn extending_waits_until_the_session_is_near_its_end(backend: Backend) {
    let early =
        spawn_app_with(backend, |c| c.session.earliest_possible_extend = Some("1h".parse().unwrap())).await;
    let (token, _) = register(&early, "extend-early@example.com", PASSWORD).await;
    let session = frontend_api::to_session(&early.public, Some(&token), None, None).await.unwrap();
    let extended = identity_api::extend_session(&early.admin, &session.id).await.unwrap();
    assert_eq!(extended.expires_at, session.expires_at, "23 h left is more than 1 h: untouched");
    early.stop().await;

    let late =
        spawn_app_with(backend, |c| c.session.earliest_possible_extend = Some("24h".parse().unwrap())).await;
    let (token, _) = register(&late, "extend-late@example.com", PASSWORD).await;
    let session = frontend_api::to_session(&late.public, Some(&token), None, None).await.unwrap();
    let extended = identity_api::extend_session(&late.admin, &session.id).await.unwrap();
    let at = |t: Option<String>| chrono::DateTime::parse_from_rfc3339(&t.unwrap()).unwrap();
    assert!(at(extended.expires_at) > at(session.expires_at), "inside the window: pushed out");
    late.stop().await;
}
