//! The journey our users asked for first: a native app recovers an account
//! by emailed code, the code arriving over real SMTP, then sets a new
//! password in the settings flow it is handed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_courier::test_smtp::Received;
use ory_kratos_client::apis::{frontend_api, identity_api};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, PASSWORD, TestApp, code_for, create_identity, login, names, native_flow, spawn_app_with_mail,
};
use crate::on_both_databases;

on_both_databases!(
    native_recovery_journey,
    wrong_codes_and_limits,
    unknown_addresses_look_the_same,
    admin_issued_codes,
    browser_recovery_with_csrf,
    expired_codes_and_resends,
    unknown_addresses_are_told_when_configured,
);

async fn app_with_mail(
    backend: Backend,
    adjust: impl FnOnce(&mut latchkey::config::Config),
) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        adjust(c);
    })
    .await
}

async fn post(app: &TestApp, flow: &Value, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap())))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn native_recovery_journey(backend: Backend) {
    let (app, received) = app_with_mail(backend, |_| {}).await;
    let identity_id = create_identity(&app, "journey@example.com").await;

    // 1. The flow asks for an address.
    let flow = native_flow(&app, "recovery").await;
    assert_eq!(flow["state"], "choose_method");
    assert_eq!(names(&flow), ["csrf_token", "email", "method"]);
    let email = &flow["ui"]["nodes"][1];
    assert_eq!(
        (email["attributes"]["type"].as_str(), email["attributes"]["required"].as_bool()),
        (Some("email"), Some(true))
    );
    assert_eq!(flow["ui"]["nodes"][2]["attributes"]["value"], "code");

    // 2. A code is mailed; the flow asks for it.
    let (status, sent) = post(&app, &flow, json!({"method": "code", "email": "Journey@Example.com"})).await;
    assert_eq!(status, 200);
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(sent["ui"]["messages"][0]["id"], 1060003);
    assert!(names(&sent).contains(&"code".to_string()));
    let code = code_for(&received, "journey@example.com", 0).await;

    // 3. The code signs the user in and hands over a settings flow.
    let (status, done) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "passed_challenge");
    let token = done["continue_with"][0]["ory_session_token"].as_str().unwrap().to_string();
    assert_eq!(done["continue_with"][0]["action"], "set_ory_session_token");
    assert_eq!(done["continue_with"][1]["action"], "show_settings_ui");
    let settings_id = done["continue_with"][1]["flow"]["id"].as_str().unwrap().to_string();
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert_eq!(session.identity.as_ref().unwrap().id, identity_id);
    let method = serde_json::to_value(&session.authentication_methods).unwrap()[0]["method"].clone();
    assert_eq!(method, "code_recovery");
    // The address is proven by the code.
    let identity = identity_api::get_identity(&app.admin, &identity_id, None).await.unwrap();
    assert!(identity.verifiable_addresses.unwrap()[0].verified);
    // The code works once.
    let (status, again) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "a finished flow takes no more codes: {again}");
    assert!(again.get("continue_with").is_none_or(Value::is_null));

    // 4. The settings flow sets the new password, which then signs in.
    let settings: Value = app
        .http
        .get(app.public_path(&format!("/self-service/settings/flows?id={settings_id}")))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(settings["ui"]["messages"][0]["id"], 1060001);
    let new_password = "recovered-and-renewed-passphrase";
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/settings?flow={settings_id}")))
        .header("x-session-token", &token)
        .json(&json!({"method": "password", "password": new_password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(login(&app, "journey@example.com", new_password).await.is_ok());
    assert!(login(&app, "journey@example.com", PASSWORD).await.is_err());
    // The owner hears about the change.
    let outbox: Vec<Value> = app
        .http
        .get(app.admin_path("/admin/courier/messages?recipient=journey@example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(outbox.iter().any(|m| m["template_type"] == "password_changed"), "{outbox:?}");
    app.stop().await;
}

async fn wrong_codes_and_limits(backend: Backend) {
    let (app, received) =
        app_with_mail(backend, |c| c.selfservice.methods.code.config.max_failures_per_address = 7).await;
    create_identity(&app, "guess@example.com").await;
    let flow = native_flow(&app, "recovery").await;
    post(&app, &flow, json!({"method": "code", "email": "guess@example.com"})).await;
    let code = code_for(&received, "guess@example.com", 0).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, body) = post(&app, &flow, json!({"method": "code", "code": wrong})).await;
        assert_eq!(status, 200);
        assert_eq!(body["ui"]["messages"][0]["id"], 4060006);
        assert_eq!(body["state"], "sent_email");
    }
    // The sixth attempt is refused even with the right code; a new flow is offered.
    let old_flow_url =
        app.public_path(&format!("/self-service/recovery/flows?id={}", flow["id"].as_str().unwrap()));
    let before: Value = app.http.get(&old_flow_url).send().await.unwrap().json().await.unwrap();
    let (status, body) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["continue_with"][0]["action"], "show_recovery_ui");
    let offered = body["error"]["details"]["continue_with"][0]["flow"]["id"].clone();
    // As Kratos: the old flow is left as it was, and every further code to
    // it gets the same answer with another new flow (native apps keep their form).
    let (status, again) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(again["error"]["reason"], body["error"]["reason"]);
    assert_ne!(again["error"]["details"]["continue_with"][0]["flow"]["id"], offered);
    let old = app.http.get(&old_flow_url).send().await.unwrap();
    assert_eq!(old.status(), 200);
    let old: Value = old.json().await.unwrap();
    assert_eq!(
        (old["expires_at"].clone(), old["state"].clone()),
        (before["expires_at"].clone(), json!("sent_email"))
    );

    // Across flows: two more failures reach the per-address budget of 7;
    // past it a code is judged only on the first attempt made against it, so
    // this code, tried twice already, is refused even when right, with the
    // usual answer.
    let flow = native_flow(&app, "recovery").await;
    post(&app, &flow, json!({"method": "code", "email": "guess@example.com"})).await;
    let code = code_for(&received, "guess@example.com", 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        post(&app, &flow, json!({"method": "code", "code": wrong})).await;
    }
    let (status, body) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200);
    assert_eq!(body["ui"]["messages"][0]["id"], 4060006, "past the budget, only a code's first try counts");
    // No lockout, though: a resend brings a fresh code, right on its first try.
    post(&app, &flow, json!({"method": "code", "email": "guess@example.com"})).await;
    let fresh = code_for(&received, "guess@example.com", 2).await;
    let (status, done) = post(&app, &flow, json!({"method": "code", "code": fresh})).await;
    assert_eq!((status, done["state"].as_str()), (200, Some("passed_challenge")), "{done}");
    app.stop().await;
}

async fn unknown_addresses_look_the_same(backend: Backend) {
    // A configured subject (per-template config) also shows the template reaches the mail.
    let (app, received) = app_with_mail(backend, |c| {
        c.courier.templates = json!({"recovery_code": {"valid": {"email": {
            "subject": "base64://WW91ciBjb2RlOiB7eyAuUmVjb3ZlcnlDb2RlIH19"}}}});
    })
    .await;
    create_identity(&app, "known@example.com").await;
    let mut answers = Vec::new();
    for email in ["known@example.com", "stranger@example.com"] {
        let flow = native_flow(&app, "recovery").await;
        let (status, mut body) = post(&app, &flow, json!({"method": "code", "email": email})).await;
        // Only ids, times and the echoed address may differ.
        for key in ["id", "expires_at", "issued_at", "request_url"] {
            body[key] = Value::Null;
        }
        body["ui"]["action"] = Value::Null;
        for node in body["ui"]["nodes"].as_array_mut().unwrap() {
            if node["attributes"]["name"] == "email" {
                node["attributes"]["value"] = Value::Null;
            }
        }
        answers.push((status, body));
    }
    assert_eq!(answers[0], answers[1]);
    code_for(&received, "known@example.com", 0).await;
    let mail =
        received.lock().unwrap().iter().find(|r| r.to.iter().any(|t| t.contains("known"))).cloned().unwrap();
    assert!(
        String::from_utf8_lossy(&mail.data).contains("Subject: Your code: "),
        "the configured subject is used"
    );
    // Flows queue their mail before they answer: an empty outbox means
    // nothing will ever be sent.
    assert_eq!(app.outbox("stranger@example.com").await, Vec::<Value>::new(), "no mail to unknown addresses");
    assert!(received.lock().unwrap().iter().all(|r| !r.to.iter().any(|t| t.contains("stranger"))));
    app.stop().await;
}

async fn admin_issued_codes(backend: Backend) {
    let (app, _) = app_with_mail(backend, |_| {}).await;
    let identity_id = create_identity(&app, "support@example.com").await;
    let response = app
        .http
        .post(app.admin_path("/admin/recovery/code"))
        .json(&json!({"identity_id": identity_id, "flow_type": "api"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let issued: Value = response.json().await.unwrap();
    let code = issued["recovery_code"].as_str().unwrap();
    assert_eq!(code.len(), 6);
    let flow_id = issued["recovery_link"].as_str().unwrap().split("flow=").nth(1).unwrap().to_string();
    let flow = json!({ "id": flow_id });
    let (status, done) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["continue_with"][0]["action"], "set_ory_session_token");
    let unknown = app
        .http
        .post(app.admin_path("/admin/recovery/code"))
        .json(&json!({"identity_id": uuid::Uuid::new_v4()}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let bad = app
        .http
        .post(app.admin_path("/admin/recovery/code"))
        .json(&json!({"identity_id": identity_id, "expires_in": "-5m"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    app.stop().await;
}

async fn browser_recovery_with_csrf(backend: Backend) {
    let (app, received) = app_with_mail(backend, |_| {}).await;
    create_identity(&app, "browser-recovery@example.com").await;
    let mut jar = crate::helpers::Jar::default();
    let response = app
        .http
        .get(app.public_path("/self-service/recovery/browser"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    jar.store(&response);
    let flow: Value = response.json().await.unwrap();
    let csrf = flow["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap().to_string();
    let url = app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap()));
    let send = |body: Value, cookie: String| {
        let request =
            app.http.post(&url).header("accept", "application/json").header("cookie", cookie).json(&body);
        async move { request.send().await.unwrap() }
    };
    // Without the token: refused.
    let refused =
        send(json!({"method": "code", "email": "browser-recovery@example.com"}), jar.header()).await;
    assert_eq!(refused.status(), 403);
    let sent = send(
        json!({"method": "code", "email": "browser-recovery@example.com", "csrf_token": csrf}),
        jar.header(),
    )
    .await;
    assert_eq!(sent.status(), 200);
    let code = code_for(&received, "browser-recovery@example.com", 0).await;
    let done = send(json!({"method": "code", "code": code, "csrf_token": csrf}), jar.header()).await;
    assert_eq!(done.status(), 200);
    jar.store(&done);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["continue_with"].as_array().unwrap().len(), 1, "browsers get no token");
    assert_eq!(body["continue_with"][0]["action"], "show_settings_ui");
    assert!(jar.get("ory_kratos_session").is_some(), "the session arrives as a cookie");
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    app.stop().await;
}

async fn expired_codes_and_resends(backend: Backend) {
    // Codes live 15 minutes, the flow an hour.
    let (app, _received) = app_with_mail(backend, |_| {}).await;
    create_identity(&app, "slow@example.com").await;
    let flow = native_flow(&app, "recovery").await;
    post(&app, &flow, json!({"method": "code", "email": "slow@example.com"})).await;
    // Codes are read from the outbox (--dev shows subjects), not the relay:
    // once the clock has moved past the code, the courier rightly sends nothing.
    let stale = newest_code_in_outbox(&app, "slow@example.com").await;
    app.clock.advance(Duration::from_secs(16 * 60));
    let (status, body) = post(&app, &flow, json!({"method": "code", "code": stale})).await;
    assert_eq!(status, 200);
    assert_eq!(body["ui"]["messages"][0]["id"], 4060006, "an expired code is a wrong code");
    // A resend (a body with `email`) mails a fresh code that works.
    let (status, body) =
        post(&app, &flow, json!({"method": "code", "email": "slow@example.com", "code": stale})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("sent_email")));
    let fresh = newest_code_in_outbox(&app, "slow@example.com").await;
    assert_ne!(fresh, stale);
    let (status, done) = post(&app, &flow, json!({"method": "code", "code": fresh})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "passed_challenge");
    app.stop().await;
}

/// The code in the newest message queued for `to`.
async fn newest_code_in_outbox(app: &TestApp, to: &str) -> String {
    app.code_requests_served().await;
    let outbox: Vec<Value> = app
        .http
        .get(app.admin_path(&format!("/admin/courier/messages?recipient={to}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Listed newest first (RFC 3339 times with fractions of any length do
    // not sort as text).
    outbox[0]["subject"]
        .as_str()
        .unwrap()
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .into()
}

async fn unknown_addresses_are_told_when_configured(backend: Backend) {
    let (app, received) =
        app_with_mail(backend, |c| c.selfservice.flows.recovery.notify_unknown_recipients = true).await;
    let flow = native_flow(&app, "recovery").await;
    let (status, _) = post(&app, &flow, json!({"method": "code", "email": "nobody@example.com"})).await;
    assert_eq!(status, 200);
    code_for_any(&received, "nobody@example.com").await;
    let outbox: Vec<Value> = app
        .http
        .get(app.admin_path("/admin/courier/messages?recipient=nobody@example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(outbox[0]["template_type"], "recovery_code_invalid");
    app.stop().await;
}

/// Waits until any mail reaches `to` (bounded).
async fn code_for_any(received: &std::sync::Mutex<Vec<Received>>, to: &str) {
    for _ in 0..200 {
        if received.lock().unwrap().iter().any(|r| r.to.iter().any(|t| t.contains(to))) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no email for {to}");
}
