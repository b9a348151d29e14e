//! Input Kratos refuses, refused the same way: malformed addresses on the
//! code flows, flow ids that are not UUIDs, and fields Kratos leaves out
//! when they are empty instead of sending `null`.

use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, native_flow, register, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    malformed_addresses_are_refused_and_never_mailed,
    flow_ids_that_are_not_uuids_are_not_found,
    empty_fields_are_left_out,
    disabled_flows_are_refused_as_kratos_does,
);

async fn post(app: &TestApp, kind: &str, flow: &Value, body: Value) -> (u16, String) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/{kind}?flow={}", flow["id"].as_str().unwrap())))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn email_messages(flow: &Value) -> Vec<Value> {
    let node = flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == "email");
    node.unwrap()["messages"].as_array().cloned().unwrap_or_default()
}

async fn malformed_addresses_are_refused_and_never_mailed(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.secrets.cookie = vec!["a-test-secret-of-enough-length".into()];
        let flows = &mut c.selfservice.flows;
        flows.recovery.enabled = true;
        flows.recovery.notify_unknown_recipients = true;
        flows.verification.enabled = true;
        flows.verification.notify_unknown_recipients = true;
    })
    .await;
    let header_break = "victim@example.com\r\nBcc: attacker@evil.example";
    let oversized = format!("{}@example.com", "a".repeat(1_000));
    for kind in ["recovery", "verification"] {
        let flow = native_flow(&app, kind).await;

        let (status, text) =
            post(&app, kind, &flow, json!({"method": "code", "email": "not-an-email"})).await;
        assert_eq!(status, 400, "{kind}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(answer["id"], flow["id"], "the flow comes back");
        assert_eq!(answer["state"], "choose_method");
        let messages = email_messages(&answer);
        assert_eq!(messages.len(), 1, "{answer}");
        assert_eq!(
            (messages[0]["id"].as_u64(), messages[0]["type"].as_str()),
            (Some(4000040), Some("error"))
        );
        assert_eq!(messages[0]["context"]["value"], "not-an-email");

        let (status, text) = post(&app, kind, &flow, json!({"method": "code", "email": header_break})).await;
        assert_eq!(status, 400, "{kind}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(email_messages(&answer)[0]["id"], 4000040);
        assert!(!text.contains("\\r") && !text.contains("\\n"), "{text}");

        let (status, text) = post(&app, kind, &flow, json!({"method": "code", "email": oversized})).await;
        assert_eq!(status, 400, "{kind}: {text}");
        let answer: Value = serde_json::from_str(&text).unwrap();
        let message = &email_messages(&answer)[0];
        assert_eq!(message["id"], 4000017, "{message}");
        assert_eq!(message["context"]["max_length"], 320);
        assert!(!text.contains(&"a".repeat(321)), "the oversized value is echoed");

        // A well-formed address still works on the same flow.
        let (status, text) =
            post(&app, kind, &flow, json!({"method": "code", "email": "ok@example.com"})).await;
        assert_eq!(status, 200, "{kind}: {text}");
    }

    // Only the well-formed (unknown) address was written to, once per flow.
    app.code_requests_served().await;
    let messages: Vec<Value> = app.get_json(&app.admin_path("/admin/courier/messages")).await;
    let recipients: Vec<&str> = messages.iter().map(|m| m["recipient"].as_str().unwrap()).collect();
    assert_eq!(recipients, ["ok@example.com", "ok@example.com"], "{messages:?}");
    // Kratos names the channel of an email message.
    assert!(messages.iter().all(|m| m["channel"] == "email"), "{messages:?}");
    let one: Value = app
        .http
        .get(app.admin_path(&format!("/admin/courier/messages/{}", messages[0]["id"].as_str().unwrap())))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["channel"], "email");
    app.stop().await;
}

async fn flow_ids_that_are_not_uuids_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, _) = register(&app, "ids@example.com", PASSWORD).await;
    for kind in ["login", "registration", "recovery", "verification", "settings"] {
        for id in ["not-a-uuid", "", "1%27%20OR%201=1", "00000000-0000-0000-0000-000000000000"] {
            let response = app
                .http
                .get(app.public_path(&format!("/self-service/{kind}/flows?id={id}")))
                .header("x-session-token", &token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 404, "{kind} {id}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], 404);
            assert_eq!(body["error"]["message"], "Unable to locate the resource");
        }
        let missing =
            app.http.get(app.public_path(&format!("/self-service/{kind}/flows"))).send().await.unwrap();
        assert_eq!(missing.status(), 404, "{kind} without id");
    }
    app.stop().await;
}

fn assert_no_nulls(value: &Value, path: &str) {
    match value {
        Value::Null => panic!("`{path}` is null"),
        Value::Object(map) => map.iter().for_each(|(k, v)| assert_no_nulls(v, &format!("{path}.{k}"))),
        Value::Array(items) => {
            items.iter().enumerate().for_each(|(i, v)| assert_no_nulls(v, &format!("{path}[{i}]")))
        }
        _ => {}
    }
}

async fn empty_fields_are_left_out(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, _) = register(&app, "empty@example.com", PASSWORD).await;

    // A settings flow without anything to continue with has no `continue_with`.
    let response = app
        .http
        .get(app.public_path("/self-service/settings/api"))
        .header("x-session-token", &token)
        .send()
        .await;
    let flow: Value = response.unwrap().json().await.unwrap();
    assert!(flow.get("continue_with").is_none(), "{flow}");
    let (status, text) = post_settings(&app, &flow, &token).await;
    assert_eq!(status, 200, "{text}");
    let saved: Value = serde_json::from_str(&text).unwrap();
    assert!(saved.get("continue_with").is_none(), "{saved}");

    // A device whose location is unknown has no `location`.
    let whoami: Value = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device = &whoami["devices"][0];
    assert!(device["id"].is_string() && device.get("location").is_none(), "{whoami}");
    assert_no_nulls(&whoami["devices"], "devices");

    // Without `expand=identity`, an admin's session has no `identity` key.
    let sessions: Vec<Value> = app.get_json(&app.admin_path("/admin/sessions?expand=devices")).await;
    assert!(!sessions.is_empty());
    for session in &sessions {
        assert!(session.get("identity").is_none(), "{session}");
        assert_no_nulls(&session["devices"], "devices");
    }
    let id = sessions[0]["id"].as_str().unwrap();
    let one: Value = app.get_json(&app.admin_path(&format!("/admin/sessions/{id}"))).await;
    assert!(one.get("identity").is_none(), "{one}");
    let expanded: Value =
        app.get_json(&app.admin_path(&format!("/admin/sessions/{id}?expand=identity"))).await;
    assert!(expanded["identity"]["id"].is_string(), "{expanded}");
    app.stop().await;
}

async fn post_settings(app: &TestApp, flow: &Value, token: &str) -> (u16, String) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", token)
        .json(&json!({"method": "profile", "traits": {"email": "empty@example.com"}}))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A flow switched off answers its start and its submit with Kratos's 400
/// `self_service_flow_disabled`, naming the flow.
async fn disabled_flows_are_refused_as_kratos_does(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.registration.enabled = false;
        c.selfservice.flows.recovery.enabled = false;
        c.selfservice.flows.verification.enabled = false;
    })
    .await;
    for (kind, name) in
        [("registration", "Registration"), ("recovery", "Recovery"), ("verification", "Verification")]
    {
        for path in [format!("/self-service/{kind}/api"), format!("/self-service/{kind}/browser")] {
            let response = app
                .http
                .get(app.public_path(&path))
                .header("accept", "application/json")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{path}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["id"], "self_service_flow_disabled", "{path}: {body}");
            assert_eq!(body["error"]["reason"], format!("{name} is not allowed because it was disabled."));
        }
        // A browser is shown it on the error UI.
        let response =
            app.http.get(app.public_path(&format!("/self-service/{kind}/browser"))).send().await.unwrap();
        assert_eq!(response.status(), 303);
        assert!(response.headers()["location"].to_str().unwrap().contains("/ui/error?id="));
        let submit = format!("/self-service/{kind}?flow={}", uuid::Uuid::new_v4());
        let response =
            app.http.post(app.public_path(&submit)).json(&json!({"method": "code"})).send().await.unwrap();
        assert_eq!(response.status(), 400, "{submit}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["id"], "self_service_flow_disabled", "{submit}: {body}");
    }
    app.stop().await;
}
