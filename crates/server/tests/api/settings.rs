//! The settings flow: changing a password or traits with a session, the
//! privileged-session rule, and who may touch whose flow.

use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, login, register, settings_flow, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    password_change_through_settings,
    settings_needs_the_owner,
    stale_sessions_must_sign_in_again
);

async fn submit(app: &TestApp, token: &str, flow: &Value, body: Value) -> reqwest::Response {
    app.http
        .post(app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

fn node<'a>(flow: &'a Value, name: &str, group: &str) -> &'a Value {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == name && n["group"] == group)
        .unwrap_or_else(|| panic!("no {name} node in {group}: {flow}"))
}

async fn password_change_through_settings(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.settings.after.password.hooks =
            vec![latchkey::config::Hook { hook: "revoke_active_sessions".into(), config: None }];
    })
    .await;
    let (token, identity_id) = register(&app, "settings@example.com", PASSWORD).await;
    let other_device = login(&app, "settings@example.com", PASSWORD).await.unwrap();

    let flow = settings_flow(&app, &token).await;
    assert_eq!(flow["state"], "show_form");
    assert_eq!(flow["identity"]["id"], identity_id.as_str());
    assert_eq!(node(&flow, "traits.email", "profile")["attributes"]["value"], "settings@example.com");
    assert_eq!(node(&flow, "method", "profile")["attributes"]["value"], "profile");
    assert_eq!(node(&flow, "password", "password")["attributes"]["autocomplete"], "new-password");
    assert_eq!(node(&flow, "method", "password")["meta"]["label"]["id"], 1070003);

    // A weak password is refused on the flow.
    let response = submit(&app, &token, &flow, json!({"method": "password", "password": "password"})).await;
    assert_eq!(response.status(), 400);
    let rejected: Value = response.json().await.unwrap();
    assert_eq!(node(&rejected, "password", "password")["messages"][0]["id"], 4000034);

    let new_password = "an-entirely-new-passphrase-77";
    let response = submit(&app, &token, &flow, json!({"method": "password", "password": new_password})).await;
    assert_eq!(response.status(), 200);
    let saved: Value = response.json().await.unwrap();
    assert_eq!(saved["state"], "success");
    assert_eq!(saved["id"], flow["id"], "the same flow, saved");
    assert_eq!(saved["ui"]["messages"][0]["id"], 1050001);
    assert_eq!(saved["ui"]["messages"][0]["type"], "success");

    assert!(login(&app, "settings@example.com", new_password).await.is_ok());
    let old = login(&app, "settings@example.com", PASSWORD).await.unwrap_err();
    assert_eq!(old["ui"]["messages"][0]["id"], 4000006);
    // The hook ended the other device's session; this one lives on.
    let whoami = |t: String| {
        let r = app.http.get(app.public_path("/sessions/whoami")).header("x-session-token", t);
        async move { r.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(whoami(other_device).await, 401);
    assert_eq!(whoami(token.clone()).await, 200);

    // Profile: traits change and are validated.
    let flow = settings_flow(&app, &token).await;
    let response =
        submit(&app, &token, &flow, json!({"method": "profile", "traits": {"email": "nope"}})).await;
    assert_eq!(response.status(), 400);
    let response = submit(
        &app,
        &token,
        &flow,
        json!({"method": "profile", "traits": {"email": "renamed@example.com", "name": {"first": "Re"}}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    let saved: Value = response.json().await.unwrap();
    assert_eq!(saved["identity"]["traits"]["email"], "renamed@example.com");
    assert!(
        login(&app, "renamed@example.com", new_password).await.is_ok(),
        "the identifier follows the trait"
    );
    app.stop().await;
}

async fn settings_needs_the_owner(backend: Backend) {
    let app = spawn_app(backend).await;
    let (alice, _) = register(&app, "alice@example.com", PASSWORD).await;
    let (mallory, _) = register(&app, "mallory@example.com", PASSWORD).await;
    assert_eq!(
        app.http.get(app.public_path("/self-service/settings/api")).send().await.unwrap().status(),
        401
    );
    let flow = settings_flow(&app, &alice).await;
    let response =
        submit(&app, &mallory, &flow, json!({"method": "password", "password": "mallorys-new-passphrase"}))
            .await;
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["id"], "security_identity_mismatch");
    let fetch = format!("/self-service/settings/flows?id={}", flow["id"].as_str().unwrap());
    let response =
        app.http.get(app.public_path(&fetch)).header("x-session-token", &mallory).send().await.unwrap();
    assert_eq!(response.status(), 403);
    let response =
        app.http.get(app.public_path(&fetch)).header("x-session-token", &alice).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let no_session = app
        .http
        .post(app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({"method": "password", "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_session.status(), 401);
    app.stop().await;
}

async fn stale_sessions_must_sign_in_again(backend: Backend) {
    // A sign-in is privileged for an hour.
    let app = spawn_app(backend).await;
    let (token, _) = register(&app, "stale@example.com", PASSWORD).await;
    app.clock.advance(std::time::Duration::from_secs(61 * 60));
    let flow = settings_flow(&app, &token).await;
    let response =
        submit(&app, &token, &flow, json!({"method": "password", "password": "a-brand-new-passphrase-1"}))
            .await;
    assert_eq!(response.status(), 403);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["id"], "session_refresh_required");
    let redirect = error["redirect_browser_to"].as_str().unwrap();
    assert!(redirect.contains("/self-service/login/browser?refresh=true&return_to="), "{redirect}");
    // Changing the identifier is a credential change too; other traits are not.
    let response =
        submit(&app, &token, &flow, json!({"method": "profile", "traits": {"email": "other@example.com"}}))
            .await;
    assert_eq!(response.status(), 403);
    let response = submit(
        &app,
        &token,
        &flow,
        json!({"method": "profile", "traits": {"email": "stale@example.com", "name": {"last": "Old"}}}),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(login(&app, "stale@example.com", PASSWORD).await.is_ok(), "the password did not change");
    app.stop().await;
}
