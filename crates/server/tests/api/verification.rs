//! Email verification by code, native and browser, with codes read from a
//! real SMTP server on loopback: the flow itself, the hooks that start it
//! (registration, a settings email change, a refused login), and its limits.
//!
//! Identities and their addresses are read through the Kratos SDK; flows
//! are driven over raw HTTP because the SDK cannot decode UI nodes (see
//! `helpers::native_flow`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::config::Hook;
use latchkey_courier::test_smtp::Received;
use ory_kratos_client::apis::{frontend_api, identity_api};
use ory_kratos_client::models::VerifiableIdentityAddress;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, code_for, create_identity, eventually, login, names, native_flow,
    spawn_app_with_mail, submit_registration,
};
use crate::on_both_databases;

on_both_databases!(
    native_verification_journey,
    browser_verification_and_email_links,
    registration_shows_the_verification_flow,
    settings_email_change_needs_verifying,
    login_requires_a_verified_address,
    wrong_codes_and_limits,
    unknown_addresses_look_the_same,
    expired_and_finished_flows_are_replaced,
    browsers_are_sent_to_verification,
    login_hooks_can_send_a_code,
);

const RETURN_URL: &str = "http://127.0.0.1:4455/verified";

fn hook(name: &str) -> Hook {
    Hook { hook: name.into(), config: None }
}

async fn app_with_mail(
    backend: Backend,
    adjust: impl FnOnce(&mut latchkey::config::Config),
) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        let flow = &mut c.selfservice.flows.verification;
        flow.enabled = true;
        flow.ui_url = "http://127.0.0.1:4455/verification".into();
        flow.after.default_browser_return_url = RETURN_URL.into();
        adjust(c);
    })
    .await
}

async fn post(app: &TestApp, flow_id: &str, body: Value) -> (u16, Value) {
    post_to(app, &format!("/self-service/verification?flow={flow_id}"), body).await
}

async fn post_to(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app.http.post(app.public_path(path)).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn address(app: &TestApp, identity_id: &str) -> VerifiableIdentityAddress {
    let identity = identity_api::get_identity(&app.admin, identity_id, None).await.unwrap();
    identity.verifiable_addresses.unwrap().remove(0)
}

/// `GET /self-service/verification/flows?id=`, with the browser's cookies if any.
async fn fetch(app: &TestApp, flow_id: &str, cookies: Option<&str>) -> (u16, Value) {
    let mut request =
        app.http.get(app.public_path(&format!("/self-service/verification/flows?id={flow_id}")));
    if let Some(cookies) = cookies {
        request = request.header("cookie", cookies);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn id(flow: &Value) -> &str {
    flow["id"].as_str().unwrap()
}

/// How many emails to `to` the requests answered so far have queued: all
/// they will ever send, so "none" needs no waiting for the courier.
async fn mails_to(app: &TestApp, to: &str) -> usize {
    app.outbox(to).await.len()
}

fn reached(received: &Mutex<Vec<Received>>, to: &str) -> bool {
    received.lock().unwrap().iter().any(|r| r.to.iter().any(|t| t.contains(to)))
}

async fn native_verification_journey(backend: Backend) {
    // The verification templates take overrides as the recovery ones do.
    let (app, received) = app_with_mail(backend, |c| {
        c.courier.templates = json!({"verification_code": {"valid": {"email": {
            "subject": "base64://Q29uZmlybSB5b3VyIGFkZHJlc3M6IHt7IC5WZXJpZmljYXRpb25Db2RlIH19"}}}});
    })
    .await;
    let identity_id = create_identity(&app, "verify-me@example.com").await;
    let before = address(&app, &identity_id).await;
    assert_eq!((before.verified, before.status.as_str()), (false, "pending"));

    // The flow asks for an address; native flows carry no CSRF node.
    let flow = native_flow(&app, "verification").await;
    assert_eq!(flow["state"], "choose_method");
    assert_eq!(flow["type"], "api");
    assert_eq!(names(&flow), ["email", "method"]);
    assert_eq!(flow["ui"]["nodes"][0]["attributes"]["required"], true);
    assert_eq!(flow["ui"]["nodes"][1]["attributes"]["value"], "code");
    assert!(
        flow["ui"]["action"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/self-service/verification?flow={}", id(&flow)))
    );

    // A code is mailed; the address is now "sent".
    let (status, sent) =
        post(&app, id(&flow), json!({"method": "code", "email": "Verify-Me@Example.com"})).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(sent["ui"]["messages"][0]["id"], 1080003);
    assert_eq!(names(&sent), ["code", "method", "method", "email"]);
    assert_eq!(sent["ui"]["nodes"][0]["meta"]["label"]["id"], 1070011);
    assert_eq!(sent["ui"]["nodes"][3]["attributes"]["value"], "verify-me@example.com");
    // The code is issued after the answer (see `code_requests`).
    app.code_requests_served().await;
    assert_eq!(address(&app, &identity_id).await.status, "sent");
    let code = code_for(&received, "verify-me@example.com", 0).await;
    let mail = received.lock().unwrap()[0].data.clone();
    assert!(String::from_utf8_lossy(&mail).contains(&format!("Subject: Confirm your address: {code}")));

    // A wrong code is answered on the flow.
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (status, body) = post(&app, id(&flow), json!({"method": "code", "code": wrong})).await;
    assert_eq!(status, 200);
    assert_eq!(body["ui"]["messages"][0]["id"], 4070006);
    assert_eq!(body["state"], "sent_email");

    // The right one verifies, even without `method`.
    let (status, done) = post(&app, id(&flow), json!({"code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "passed_challenge");
    assert_eq!(done["ui"]["method"], "GET");
    assert_eq!(done["ui"]["action"], RETURN_URL);
    assert_eq!(done["ui"]["messages"][0]["id"], 1080002);
    let link = &done["ui"]["nodes"][0];
    assert_eq!((link["type"].as_str(), link["attributes"]["href"].as_str()), (Some("a"), Some(RETURN_URL)));
    let after = address(&app, &identity_id).await;
    assert_eq!((after.verified, after.status.as_str()), (true, "completed"));
    assert!(after.verified_at.is_some());

    // Fetching the flow shows the same result.
    let (_, fetched) = fetch(&app, id(&flow), None).await;
    assert_eq!(fetched["state"], "passed_challenge");
    app.stop().await;
}

async fn browser_verification_and_email_links(backend: Backend) {
    let (app, received) = app_with_mail(backend, |_| {}).await;
    let identity_id = create_identity(&app, "browser-verify@example.com").await;
    let mut jar = Jar::default();
    let response = app
        .http
        .get(app.public_path("/self-service/verification/browser?return_to=http://127.0.0.1:4455/after"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    jar.store(&response);
    let flow: Value = response.json().await.unwrap();
    assert_eq!(names(&flow), ["csrf_token", "email", "method"]);
    let csrf = flow["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap().to_string();
    let url = app.public_path(&format!("/self-service/verification?flow={}", id(&flow)));
    let send = |body: Value| {
        let request = app
            .http
            .post(&url)
            .header("accept", "application/json")
            .header("cookie", jar.header())
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let refused = send(json!({"method": "code", "email": "browser-verify@example.com"})).await;
    assert_eq!(refused.status(), 403, "browsers must send the CSRF token");
    let sent =
        send(json!({"method": "code", "email": "browser-verify@example.com", "csrf_token": csrf})).await;
    assert_eq!(sent.status(), 200);
    let code = code_for(&received, "browser-verify@example.com", 0).await;

    // The link in the email puts the code into the form and sends the browser to the UI.
    let mail = received.lock().unwrap().last().unwrap().data.clone();
    let text = String::from_utf8_lossy(&mail).replace("=\r\n", "").replace("=3D", "=");
    let emailed = format!("/self-service/verification?flow={}&code={code}", id(&flow));
    assert!(text.contains(&emailed), "the email carries the link: {text}");
    // It opens on another device: that browser gets its own CSRF cookie, and the flow moves to it.
    let mut phone = Jar::default();
    let link = app.http.get(app.public_path(&emailed)).send().await.unwrap();
    assert_eq!(link.status(), 303);
    phone.store(&link);
    let location = link.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("http://127.0.0.1:4455/verification?flow={}", id(&flow)));
    let (status, prefilled) = fetch(&app, id(&flow), Some(&phone.header())).await;
    assert_eq!(status, 200);
    let node = |flow: &Value, name: &str| {
        flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == name).cloned()
    };
    assert_eq!(node(&prefilled, "code").unwrap()["attributes"]["value"], code.as_str());
    assert!(!address(&app, &identity_id).await.verified, "following a link spends nothing");
    let (status, _) = fetch(&app, id(&flow), Some(&jar.header())).await;
    assert_eq!(status, 403, "the first browser no longer holds the flow");

    // Submitting it verifies; the flow continues to its own return_to.
    let phone_csrf = node(&prefilled, "csrf_token").unwrap()["attributes"]["value"].clone();
    let done = app
        .http
        .post(&url)
        .header("accept", "application/json")
        .header("cookie", phone.header())
        .json(&json!({"method": "code", "code": code, "csrf_token": phone_csrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(done["ui"]["action"], "http://127.0.0.1:4455/after");
    assert!(address(&app, &identity_id).await.verified);

    // Browsers asking for HTML are sent to the UI.
    let response = app
        .http
        .get(app.public_path("/self-service/verification/browser"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(
        response.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("http://127.0.0.1:4455/verification?flow=")
    );
    app.stop().await;
}

async fn registration_shows_the_verification_flow(backend: Backend) {
    let (app, received) = app_with_mail(backend, |c| {
        c.selfservice.flows.registration.after.password.hooks =
            vec![hook("session"), hook("show_verification_ui")];
    })
    .await;
    // `after_verification_return_to` must be an allowed URL, like `return_to`.
    let init = "/self-service/registration/api?after_verification_return_to=";
    let refused =
        app.http.get(app.public_path(&format!("{init}https://evil.example/"))).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let flow: Value = app
        .http
        .get(app.public_path(&format!("{init}http://127.0.0.1:4455/after-verification")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, done) = post_to(
        &app,
        &format!("/self-service/registration?flow={}", id(&flow)),
        json!({"method": "password", "traits": {"email": "new-user@example.com"}, "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let items = done["continue_with"].as_array().unwrap();
    assert_eq!(items[0]["action"], "set_ory_session_token");
    assert_eq!(items[1]["action"], "show_verification_ui");
    assert_eq!(items[1]["flow"]["verifiable_address"], "new-user@example.com");
    assert!(items[1]["flow"].get("url").is_none(), "native flows have no UI url");
    let addresses = &done["identity"]["verifiable_addresses"];
    assert_eq!(
        (addresses[0]["verified"].as_bool(), addresses[0]["status"].as_str()),
        (Some(false), Some("sent"))
    );

    // The named flow waits for the code that was mailed.
    let verification_id = items[1]["flow"]["id"].as_str().unwrap();
    let (_, flow) = fetch(&app, verification_id, None).await;
    assert_eq!((flow["state"].as_str(), flow["type"].as_str()), (Some("sent_email"), Some("api")));
    assert_eq!(flow["ui"]["messages"][0]["id"], 1080003);
    let code = code_for(&received, "new-user@example.com", 0).await;
    let (status, verified) = post(&app, verification_id, json!({"method": "code", "code": code})).await;
    assert_eq!((status, verified["state"].as_str()), (200, Some("passed_challenge")));
    assert_eq!(verified["ui"]["action"], "http://127.0.0.1:4455/after-verification");
    let identity_id = done["identity"]["id"].as_str().unwrap();
    assert!(address(&app, identity_id).await.verified);

    // Without the hook the code still goes out, but continue_with stays quiet.
    let (plain, plain_mail) = app_with_mail(backend, |_| {}).await;
    let done = submit_registration(&plain, json!({ "email": "quiet@example.com" }), PASSWORD).await;
    let actions: Vec<&str> =
        done["continue_with"].as_array().unwrap().iter().map(|i| i["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["set_ory_session_token"]);
    code_for(&plain_mail, "quiet@example.com", 0).await;
    plain.stop().await;
    app.stop().await;
}

async fn settings_email_change_needs_verifying(backend: Backend) {
    let (app, received) = app_with_mail(backend, |c| {
        c.selfservice.flows.settings.after.profile.hooks = vec![hook("show_verification_ui")];
    })
    .await;
    let done = submit_registration(&app, json!({ "email": "before@example.com" }), PASSWORD).await;
    let token = done["session_token"].as_str().unwrap().to_string();
    let identity_id = done["identity"]["id"].as_str().unwrap().to_string();
    assert_eq!(done["continue_with"].as_array().unwrap().len(), 1, "no show_verification_ui hook here");
    // Registration mailed a code; verify through a flow of our own so the
    // change below visibly resets a verified address.
    code_for(&received, "before@example.com", 0).await;
    let verification = native_flow(&app, "verification").await;
    post(&app, id(&verification), json!({"method": "code", "email": "before@example.com"})).await;
    let fresh = code_for(&received, "before@example.com", 1).await;
    let (status, _) = post(&app, id(&verification), json!({"method": "code", "code": fresh})).await;
    assert_eq!(status, 200);
    assert!(address(&app, &identity_id).await.verified);

    let settings: Value = app
        .http
        .get(app.public_path("/self-service/settings/api"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/settings?flow={}", id(&settings))))
        .header("x-session-token", &token)
        .json(&json!({"method": "profile", "traits": {"email": "after@example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let saved: Value = response.json().await.unwrap();
    assert_eq!(saved["state"], "success");
    let item = &saved["continue_with"][0];
    assert_eq!(item["action"], "show_verification_ui", "{saved}");
    assert_eq!(item["flow"]["verifiable_address"], "after@example.com");
    let changed = address(&app, &identity_id).await;
    assert_eq!(
        (changed.value.as_str(), changed.verified, changed.status.as_str()),
        ("after@example.com", false, "sent")
    );
    let code = code_for(&received, "after@example.com", 0).await;
    let (status, _) =
        post(&app, item["flow"]["id"].as_str().unwrap(), json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200);
    let verified = address(&app, &identity_id).await;
    assert_eq!((verified.verified, verified.status.as_str()), (true, "completed"));
    // whoami sees the change at once (its cache was evicted).
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert!(session.identity.unwrap().verifiable_addresses.unwrap()[0].verified);
    app.stop().await;
}

async fn login_requires_a_verified_address(backend: Backend) {
    let (app, received) = app_with_mail(backend, |c| {
        c.selfservice.flows.login.after.password.hooks = vec![hook("require_verified_address")];
    })
    .await;
    let identity_id = create_identity(&app, "unverified@example.com").await;
    let refused = login(&app, "unverified@example.com", PASSWORD).await.unwrap_err();
    assert_eq!(refused["error"]["code"], 403, "{refused}");
    assert_eq!(refused["error"]["id"], "session_verified_address_required");
    let item = &refused["error"]["details"]["continue_with"][0];
    assert_eq!(item["action"], "show_verification_ui");
    assert_eq!(item["flow"]["verifiable_address"], "unverified@example.com");
    assert!(item["flow"]["url"].as_str().unwrap().starts_with("http://127.0.0.1:4455/verification?flow="));
    let sessions =
        identity_api::list_identity_sessions(&app.admin, &identity_id, None, None, None, None, None).await;
    assert!(sessions.unwrap().is_empty(), "no session for an unverified login");

    let code = code_for(&received, "unverified@example.com", 0).await;
    let (status, _) =
        post(&app, item["flow"]["id"].as_str().unwrap(), json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200);
    assert!(login(&app, "unverified@example.com", PASSWORD).await.is_ok());

    // Imported as verified: signs in straight away.
    let imported: Value = app
        .http
        .post(app.admin_path("/admin/identities"))
        .json(&json!({
            "schema_id": "default",
            "traits": {"email": "imported@example.com"},
            "credentials": {"password": {"config": {"password": PASSWORD}}},
            "verifiable_addresses": [{"value": "imported@example.com", "via": "email", "verified": true, "status": "completed"}],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(imported["verifiable_addresses"][0]["verified"], true, "{imported}");
    assert!(login(&app, "imported@example.com", PASSWORD).await.is_ok());
    app.stop().await;

    // The legacy flag answers on the form instead.
    let (legacy, _) = app_with_mail(backend, |c| {
        c.selfservice.flows.login.after.password.hooks = vec![hook("require_verified_address")];
        c.feature_flags.legacy_require_verified_login_error = true;
    })
    .await;
    create_identity(&legacy, "legacy@example.com").await;
    let refused = login(&legacy, "legacy@example.com", PASSWORD).await.unwrap_err();
    assert_eq!(refused["ui"]["messages"][0]["id"], 4000010, "{refused}");
    legacy.stop().await;

    // With verification off there is no flow to point at: the form says so.
    let (off, _) = app_with_mail(backend, |c| {
        c.selfservice.flows.login.after.password.hooks = vec![hook("require_verified_address")];
        c.selfservice.flows.verification.enabled = false;
    })
    .await;
    create_identity(&off, "nowhere@example.com").await;
    let refused = login(&off, "nowhere@example.com", PASSWORD).await.unwrap_err();
    assert_eq!(refused["ui"]["messages"][0]["id"], 4000010, "{refused}");
    off.stop().await;
}

async fn wrong_codes_and_limits(backend: Backend) {
    let (app, received) =
        app_with_mail(backend, |c| c.selfservice.methods.code.config.max_failures_per_address = 7).await;
    let identity_id = create_identity(&app, "guess-v@example.com").await;
    let flow = native_flow(&app, "verification").await;
    post(&app, id(&flow), json!({"method": "code", "email": "guess-v@example.com"})).await;
    let code = code_for(&received, "guess-v@example.com", 0).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, body) = post(&app, id(&flow), json!({"method": "code", "code": wrong})).await;
        assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4070006)));
    }
    // The sixth attempt is refused even with the right code: use the new flow.
    let (status, body) = post(&app, id(&flow), json!({"method": "code", "code": code})).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["id"], "self_service_flow_replaced");
    let replacement = body["use_flow_id"].as_str().unwrap().to_string();
    assert_ne!(replacement, id(&flow));
    // As Kratos: the old flow is left as it was; a further code gets the same answer.
    let (status, again) = post(&app, id(&flow), json!({"method": "code", "code": code})).await;
    assert_eq!((status, &again["error"]["id"]), (410, &json!("self_service_flow_replaced")), "{again}");
    let (_, old) = fetch(&app, id(&flow), None).await;
    assert_eq!((&old["expires_at"], &old["state"]), (&flow["expires_at"], &json!("sent_email")));
    assert!(!address(&app, &identity_id).await.verified);
    let (_, fresh) = fetch(&app, &replacement, None).await;
    assert_eq!(
        (fresh["state"].as_str(), fresh["ui"]["messages"][0]["id"].as_u64()),
        (Some("choose_method"), Some(4000001))
    );

    // Across flows: two more failures reach the per-address budget of 7;
    // past it a code is judged only on the first attempt made against it, so
    // this code, tried twice already, gets the usual answer even when right.
    post(&app, &replacement, json!({"method": "code", "email": "guess-v@example.com"})).await;
    let code = code_for(&received, "guess-v@example.com", 1).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..2 {
        post(&app, &replacement, json!({"method": "code", "code": wrong})).await;
    }
    let (status, body) = post(&app, &replacement, json!({"method": "code", "code": code})).await;
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4070006)));
    assert!(!address(&app, &identity_id).await.verified);
    // No lockout, though: a resend brings a fresh code, right on its first try.
    post(&app, &replacement, json!({"method": "code", "email": "guess-v@example.com"})).await;
    let fresh = code_for(&received, "guess-v@example.com", 2).await;
    let (status, done) = post(&app, &replacement, json!({"method": "code", "code": fresh})).await;
    assert_eq!((status, done["state"].as_str()), (200, Some("passed_challenge")), "{done}");
    assert!(address(&app, &identity_id).await.verified);
    app.stop().await;
}

async fn unknown_addresses_look_the_same(backend: Backend) {
    let (app, received) = app_with_mail(backend, |_| {}).await;
    create_identity(&app, "known-v@example.com").await;
    let known = native_flow(&app, "verification").await;
    let unknown = native_flow(&app, "verification").await;
    let (s1, a) = post(&app, id(&known), json!({"method": "code", "email": "known-v@example.com"})).await;
    let (s2, b) = post(&app, id(&unknown), json!({"method": "code", "email": "nobody-v@example.com"})).await;
    assert_eq!((s1, s2), (200, 200));
    let shape = |f: &Value| (f["state"].clone(), f["ui"]["messages"].clone(), names(f));
    assert_eq!(shape(&a), shape(&b));
    code_for(&received, "known-v@example.com", 0).await;
    assert_eq!(mails_to(&app, "nobody-v@example.com").await, 0);
    assert!(!reached(&received, "nobody-v@example.com"));
    // No code verifies an unknown address.
    let (status, body) = post(&app, id(&unknown), json!({"method": "code", "code": "123456"})).await;
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4070006)));

    // Missing or unusable input is a 400 on the form, never a crash.
    let fresh = native_flow(&app, "verification").await;
    let (status, body) = post(&app, id(&fresh), json!({"method": "code"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["ui"]["nodes"][0]["messages"][0]["id"], 4000002);
    let (status, body) = post(&app, id(&fresh), json!({"method": "link", "email": "x@example.com"})).await;
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (400, Some(4010006)));
    let (status, _) = post(&app, "not-a-uuid", json!({"method": "code"})).await;
    assert_eq!(status, 400);
    let (status, _) = post(&app, &uuid::Uuid::new_v4().to_string(), json!({"method": "code"})).await;
    assert_eq!(status, 404);
    app.stop().await;

    // With notify_unknown_recipients, the unknown address hears about the attempt.
    let (told, told_mail) =
        app_with_mail(backend, |c| c.selfservice.flows.verification.notify_unknown_recipients = true).await;
    let flow = native_flow(&told, "verification").await;
    post(&told, id(&flow), json!({"method": "code", "email": "stranger-v@example.com"})).await;
    eventually("a notice to stranger-v", || reached(&told_mail, "stranger-v@example.com")).await;
    let mail =
        told_mail.lock().unwrap().iter().find(|r| r.to.iter().any(|t| t.contains("stranger-v"))).cloned();
    let text = String::from_utf8_lossy(&mail.expect("a notice").data).to_string();
    assert!(text.contains("Email verification request"), "{text}");
    told.stop().await;
}

async fn expired_and_finished_flows_are_replaced(backend: Backend) {
    // Verification flows live an hour.
    let (app, received) = app_with_mail(backend, |_| {}).await;
    create_identity(&app, "late-v@example.com").await;
    let flow = native_flow(&app, "verification").await;
    app.clock.advance(Duration::from_secs(61 * 60));
    // As Kratos: an expired flow sends the client to its replacement.
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/verification?flow={}", id(&flow))))
        .json(&json!({"method": "code", "email": "late-v@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&app.public_path("/self-service/verification/flows?id=")), "{location}");
    let replacement: Value = app.http.get(&location).send().await.unwrap().json().await.unwrap();
    assert_ne!(replacement["id"], flow["id"]);
    assert_eq!(replacement["ui"]["messages"][0]["id"], 4070005);
    assert_eq!(replacement["state"], "choose_method");
    assert_eq!(mails_to(&app, "late-v@example.com").await, 0, "nothing is sent on an expired flow");
    assert!(!reached(&received, "late-v@example.com"));
    app.stop().await;

    // A finished flow takes no more input: 410 with the flow to use instead.
    let (app, received) = app_with_mail(backend, |_| {}).await;
    create_identity(&app, "twice-v@example.com").await;
    let flow = native_flow(&app, "verification").await;
    post(&app, id(&flow), json!({"method": "code", "email": "twice-v@example.com"})).await;
    let first = code_for(&received, "twice-v@example.com", 0).await;
    // A resend retires the code sent before it.
    post(&app, id(&flow), json!({"method": "code", "email": "twice-v@example.com"})).await;
    let code = code_for(&received, "twice-v@example.com", 1).await;
    if first != code {
        let (status, body) = post(&app, id(&flow), json!({"method": "code", "code": first})).await;
        assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4070006)));
    }
    let (status, _) = post(&app, id(&flow), json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200);
    let (status, body) = post(&app, id(&flow), json!({"method": "code", "code": code})).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["id"], "self_service_flow_replaced");
    assert!(body["use_flow_id"].is_string());
    app.stop().await;
}

/// A browser flow as a single-page app starts it: JSON, with the CSRF cookie in `jar`.
async fn spa_flow(app: &TestApp, jar: &mut Jar, kind: &str) -> (Value, String) {
    let response = app
        .http
        .get(app.public_path(&format!("/self-service/{kind}/browser")))
        .header("accept", "application/json")
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    jar.store(&response);
    let flow: Value = response.json().await.unwrap();
    let csrf =
        flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == "csrf_token");
    let csrf = csrf.unwrap()["attributes"]["value"].as_str().unwrap().to_string();
    (flow, csrf)
}

async fn browsers_are_sent_to_verification(backend: Backend) {
    let (app, received) = app_with_mail(backend, |c| {
        c.selfservice.flows.registration.after.password.hooks =
            vec![hook("session"), hook("show_verification_ui")];
        c.selfservice.flows.login.after.password.hooks = vec![hook("require_verified_address")];
    })
    .await;
    // A single-page app registering: continue_with shows the verification UI and redirects there.
    let mut jar = Jar::default();
    let (flow, csrf) = spa_flow(&app, &mut jar, "registration").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={}", id(&flow))))
        .header("accept", "application/json")
        .header("cookie", jar.header())
        .json(&json!({"method": "password", "traits": {"email": "spa-v@example.com"}, "password": PASSWORD, "csrf_token": csrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    let items = done["continue_with"].as_array().unwrap();
    assert_eq!(items[0]["action"], "show_verification_ui", "{done}");
    let url = items[0]["flow"]["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:4455/verification?flow="), "{url}");
    assert_eq!(
        (items[1]["action"].as_str(), items[1]["redirect_browser_to"].as_str()),
        (Some("redirect_browser_to"), Some(url))
    );
    // The browser's own CSRF cookie opens the verification flow it is sent to.
    let verification_id = items[0]["flow"]["id"].as_str().unwrap();
    let (status, shown) = fetch(&app, verification_id, Some(&jar.header())).await;
    assert_eq!(status, 200);
    assert_eq!((shown["type"].as_str(), shown["state"].as_str()), (Some("browser"), Some("sent_email")));
    code_for(&received, "spa-v@example.com", 0).await;

    // A server-rendered login by an unverified user lands on the verification UI, without a session.
    let mut jar = Jar::default();
    let (flow, csrf) = spa_flow(&app, &mut jar, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", id(&flow))))
        .header("cookie", jar.header())
        .form(&[
            ("method", "password"),
            ("identifier", "spa-v@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with("http://127.0.0.1:4455/verification?flow="), "{location}");
    jar.store(&response);
    assert!(jar.get("ory_kratos_session").is_none());
    code_for(&received, "spa-v@example.com", 1).await;
    app.stop().await;
}

async fn login_hooks_can_send_a_code(backend: Backend) {
    let (app, received) = app_with_mail(backend, |c| {
        c.selfservice.flows.login.after.password.hooks =
            vec![hook("verification"), hook("show_verification_ui")];
    })
    .await;
    let identity_id = create_identity(&app, "login-v@example.com").await;
    let flow = native_flow(&app, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", id(&flow))))
        .json(&json!({"method": "password", "identifier": "login-v@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    assert!(done["session_token"].is_string(), "the login itself succeeds");
    let item = &done["continue_with"][0];
    assert_eq!(item["action"], "show_verification_ui", "{done}");
    let code = code_for(&received, "login-v@example.com", 0).await;
    let (status, _) =
        post(&app, item["flow"]["id"].as_str().unwrap(), json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200);
    assert!(address(&app, &identity_id).await.verified);
    // Verified now: the next login sends nothing and names no flow.
    let token = login(&app, "login-v@example.com", PASSWORD).await.unwrap();
    assert!(token.starts_with("ory_st_"));
    assert_eq!(mails_to(&app, "login-v@example.com").await, 1);
    app.stop().await;
}
