//! Login by emailed code (Kratos's `code` method): passwordless sign-in
//! (`passwordless_enabled`) for native apps and browsers, and the code as a
//! second factor (`mfa_enabled`). Codes are read from a real SMTP server on
//! loopback, or from the outbox once the clock has moved past them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey::config::Config;
use latchkey_courier::test_smtp::Received;
use ory_kratos_client::apis::{frontend_api, identity_api};
use ory_kratos_client::models::{UpdateLoginFlowBody, UpdateLoginFlowWithCodeMethod};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, code_for, create_identity, csrf_token_of, get_as, login, names,
    native_flow, register, spawn_app_with_mail, submit_registration,
};
use crate::on_both_databases;

on_both_databases!(
    native_passwordless_journey,
    browser_passwordless_sets_the_cookie,
    unknown_identifiers_answer_alike,
    wrong_codes_throttling_and_the_sixth_try,
    expired_codes_and_resends,
    code_mails_are_capped_per_address_and_client,
    without_passwordless_the_code_is_an_unknown_method,
    code_steps_a_session_up_to_aal2,
    parallel_submits_of_one_code_sign_in_once,
    code_logins_run_their_own_hooks,
);

async fn app(backend: Backend, adjust: impl FnOnce(&mut Config)) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        c.selfservice.methods.code.passwordless_enabled = true;
        // Per-client limits out of the way, unless a test sets its own.
        c.security.send_limits.ip.flows_per_minute = 1000;
        c.security.send_limits.ip.codes_per_minute = 1000;
        adjust(c);
    })
    .await
}

async fn post(app: &TestApp, flow: &Value, body: Value) -> (u16, Value) {
    post_with(app, flow, body, None).await
}

async fn post_with(app: &TestApp, flow: &Value, body: Value, token: Option<&str>) -> (u16, Value) {
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let mut request = app.http.post(url).json(&body);
    if let Some(token) = token {
        request = request.header("x-session-token", token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn node<'a>(flow: &'a Value, name: &str) -> &'a Value {
    let nodes = flow["ui"]["nodes"].as_array().unwrap();
    nodes.iter().find(|n| n["attributes"]["name"] == name).unwrap_or_else(|| panic!("no {name} in {flow}"))
}

fn message_ids(flow: &Value) -> Vec<u64> {
    flow["ui"]["messages"]
        .as_array()
        .map_or_else(Vec::new, |m| m.iter().map(|m| m["id"].as_u64().unwrap()).collect())
}

/// The newest code queued for `to`, read from the outbox (`--dev` shows subjects).
async fn newest_code_in_outbox(app: &TestApp, to: &str) -> String {
    let outbox = app.outbox(to).await;
    // Listed newest first (RFC 3339 times with fractions of any length do
    // not sort as text).
    code_in(outbox.first().expect("a mail"))
}

fn code_in(message: &Value) -> String {
    let subject = message["subject"].as_str().unwrap();
    subject.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a code").to_string()
}

/// A flow's answer without what differs between any two flows.
fn blanked(mut answer: Value) -> Value {
    for key in ["id", "expires_at", "issued_at", "request_url", "created_at", "updated_at"] {
        answer[key] = Value::Null;
    }
    answer["ui"]["action"] = Value::Null;
    for node in answer["ui"]["nodes"].as_array_mut().unwrap() {
        if node["attributes"]["name"] == "identifier" {
            node["attributes"]["value"] = Value::Null;
        }
    }
    answer
}

async fn native_passwordless_journey(backend: Backend) {
    let (app, received) = app(backend, |_| {}).await;
    let identity_id = create_identity(&app, "coder@example.com").await;

    // 1. The flow offers the code beside the password.
    let flow = native_flow(&app, "login").await;
    assert_eq!(names(&flow), ["identifier", "csrf_token", "password", "method", "method"]);
    let send = &flow["ui"]["nodes"][4];
    assert_eq!((send["group"].as_str(), send["attributes"]["value"].as_str()), (Some("code"), Some("code")));
    assert_eq!(send["meta"]["label"]["id"], 1010015);

    // 2. Naming the address sends a code; as Kratos, JSON clients get 400 and the flow.
    let (status, sent) =
        post(&app, &flow, json!({"method": "code", "identifier": "Coder@Example.com"})).await;
    assert_eq!(status, 400, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(sent["active"], "code");
    assert_eq!(message_ids(&sent), [1010014]);
    assert_eq!(names(&sent), ["csrf_token", "identifier", "method", "code", "method", "resend"]);
    let identifier = node(&sent, "identifier");
    assert_eq!(identifier["attributes"]["type"], "hidden");
    assert_eq!(identifier["attributes"]["value"], "coder@example.com");
    let code_node = node(&sent, "code");
    assert_eq!(code_node["meta"]["label"]["id"], 1070013);
    assert_eq!(code_node["attributes"]["autocomplete"], "one-time-code");
    let resend = node(&sent, "resend");
    assert_eq!(
        (resend["attributes"]["value"].as_str(), resend["meta"]["label"]["id"].as_u64()),
        (Some("code"), Some(1070008))
    );
    // The fetched flow says the same.
    let fetched: Value = app
        .get_json(&app.public_path(&format!("/self-service/login/flows?id={}", flow["id"].as_str().unwrap())))
        .await;
    assert_eq!(fetched["state"], "sent_email");

    // 3. The mail is `login_code_valid`; its code signs in (through the SDK).
    let code = code_for(&received, "coder@example.com", 0).await;
    let outbox = app.outbox("coder@example.com").await;
    assert_eq!(outbox.len(), 1);
    assert_eq!(outbox[0]["template_type"], "login_code_valid");
    let mut body = UpdateLoginFlowWithCodeMethod::new(String::new(), "code".into());
    body.code = Some(code.clone());
    body.identifier = Some("coder@example.com".into());
    let done = frontend_api::update_login_flow(
        &app.public,
        flow["id"].as_str().unwrap(),
        UpdateLoginFlowBody::Code(Box::new(body)),
        None,
        None,
    )
    .await
    .expect("the code signs in");
    let token = done.session_token.expect("native logins get a token");
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert_eq!(session.identity.as_ref().unwrap().id, identity_id);
    let methods = serde_json::to_value(&session.authentication_methods).unwrap();
    assert_eq!(methods.as_array().unwrap().len(), 1, "{methods}");
    assert_eq!((methods[0]["method"].as_str(), methods[0]["aal"].as_str()), (Some("code"), Some("aal1")));
    let aal = serde_json::to_value(session.authenticator_assurance_level).unwrap();
    assert_eq!(aal, "aal1");
    // The code proves the address.
    let identity = identity_api::get_identity(&app.admin, &identity_id, None).await.unwrap();
    assert!(identity.verifiable_addresses.unwrap()[0].verified);
    // The flow is done; the code works once.
    let (status, again) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{again}");
    assert!(again.get("session_token").is_none(), "{again}");
    app.stop().await;
}

async fn browser_passwordless_sets_the_cookie(backend: Backend) {
    let (app, received) = app(backend, |_| {}).await;
    create_identity(&app, "browser-code@example.com").await;
    let mut jar = Jar::default();
    let response = app
        .http
        .get(app.public_path("/self-service/login/browser"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    jar.store(&response);
    let flow: Value = response.json().await.unwrap();
    let csrf = csrf_token_of(&flow);
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));

    // Without the token: refused.
    let refused = app
        .http
        .post(&url)
        .header("accept", "application/json")
        .header("cookie", jar.header())
        .json(&json!({"method": "code", "identifier": "browser-code@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    // A form post is sent back to the login UI, which shows the code input.
    let form =
        [("method", "code"), ("identifier", "browser-code@example.com"), ("csrf_token", csrf.as_str())];
    let sent = app.http.post(&url).header("cookie", jar.header()).form(&form).send().await.unwrap();
    assert_eq!(sent.status(), 303);
    let location = sent.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(location, format!("http://127.0.0.1:4455/login?flow={}", flow["id"].as_str().unwrap()));
    let code = code_for(&received, "browser-code@example.com", 0).await;

    // The code signs in: a cookie, and where to go next for single-page apps.
    let done = app
        .http
        .post(&url)
        .header("accept", "application/json")
        .header("cookie", jar.header())
        .json(&json!({"method": "code", "code": code, "csrf_token": csrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    jar.store(&done);
    let body: Value = done.json().await.unwrap();
    assert!(body.get("session_token").is_none(), "browsers get no token: {body}");
    assert_eq!(body["continue_with"][0]["action"], "redirect_browser_to");
    assert_eq!(body["session"]["authentication_methods"][0]["method"], "code");
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

async fn unknown_identifiers_answer_alike(backend: Backend) {
    let (app, received) = app(backend, |_| {}).await;
    create_identity(&app, "known-coder@example.com").await;
    let mut answers = Vec::new();
    let mut flows = Vec::new();
    for identifier in ["known-coder@example.com", "stranger-coder@example.com"] {
        let flow = native_flow(&app, "login").await;
        let (status, body) = post(&app, &flow, json!({"method": "code", "identifier": identifier})).await;
        answers.push((status, blanked(body)));
        flows.push(flow);
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 400);
    code_for(&received, "known-coder@example.com", 0).await;
    // Served after the answer: once every request is, nothing went to the stranger.
    assert_eq!(app.outbox("stranger-coder@example.com").await, Vec::<Value>::new());
    assert!(received.lock().unwrap().iter().all(|r| !r.to.iter().any(|t| t.contains("stranger"))));
    // A code for either answers the same.
    let mut wrong = Vec::new();
    for flow in &flows {
        let (status, body) = post(&app, flow, json!({"method": "code", "code": "000000"})).await;
        wrong.push((status, blanked(body)));
    }
    assert_eq!(wrong[0], wrong[1]);
    assert_eq!(message_ids(&wrong[0].1), [4010008]);
    app.stop().await;
}

async fn wrong_codes_throttling_and_the_sixth_try(backend: Backend) {
    let (app, received) = app(backend, |_| {}).await;
    create_identity(&app, "guesser@example.com").await;
    let flow = native_flow(&app, "login").await;
    post(&app, &flow, json!({"method": "code", "identifier": "guesser@example.com"})).await;
    let code = code_for(&received, "guesser@example.com", 0).await;
    let wrong_code = if code == "111111" { "222222" } else { "111111" };
    // An empty code is a missing field.
    let (status, empty) = post(&app, &flow, json!({"method": "code", "code": ""})).await;
    assert_eq!(status, 400);
    assert_eq!(node(&empty, "code")["messages"][0]["id"], 4000002);
    for n in 0..5 {
        let (status, body) = post(&app, &flow, json!({"method": "code", "code": wrong_code})).await;
        assert_eq!(status, 400, "try {n}: {body}");
        assert_eq!(body["state"], "sent_email");
        assert_eq!(message_ids(&body), [4010008], "try {n}");
    }
    // Wrong codes count as failed logins: the sixth try waits.
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({"method": "code", "code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    // Once it may try, five attempts were the flow's share: even the right code is refused.
    app.clock.advance(Duration::from_secs(5));
    let (status, body) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(message_ids(&body), [4000001]);
    assert!(body["ui"]["messages"][0]["text"].as_str().unwrap().contains("submitted too often"));
    app.stop().await;
}

async fn expired_codes_and_resends(backend: Backend) {
    // Codes live 15 minutes, the flow an hour.
    let (app, _received) = app(backend, |_| {}).await;
    create_identity(&app, "slow-coder@example.com").await;
    let flow = native_flow(&app, "login").await;
    post(&app, &flow, json!({"method": "code", "identifier": "slow-coder@example.com"})).await;
    let stale = newest_code_in_outbox(&app, "slow-coder@example.com").await;
    app.clock.advance(Duration::from_secs(16 * 60));
    let (status, body) = post(&app, &flow, json!({"method": "code", "code": stale})).await;
    assert_eq!(status, 400);
    assert_eq!(message_ids(&body), [4010008], "an expired code is a wrong code");
    // A resend mails a fresh code and retires the old one.
    let resend = json!({"method": "code", "resend": "code", "identifier": "slow-coder@example.com"});
    let (status, body) = post(&app, &flow, resend.clone()).await;
    assert_eq!((status, body["state"].as_str()), (400, Some("sent_email")));
    assert_eq!(message_ids(&body), [1010014]);
    let first = newest_code_in_outbox(&app, "slow-coder@example.com").await;
    let (_, _) = post(&app, &flow, resend).await;
    let fresh = newest_code_in_outbox(&app, "slow-coder@example.com").await;
    assert_ne!(first, fresh);
    let (status, body) = post(&app, &flow, json!({"method": "code", "code": first})).await;
    assert_eq!((status, message_ids(&body)), (400, vec![4010008]), "the resend retired it");
    let (status, done) = post(&app, &flow, json!({"method": "code", "code": fresh})).await;
    assert_eq!(status, 200, "{done}");
    assert!(done["session_token"].is_string());
    // A flow past its lifespan is replaced, as for passwords.
    let late = native_flow(&app, "login").await;
    app.clock.advance(Duration::from_secs(2 * 3600));
    let (status, body) =
        post(&app, &late, json!({"method": "code", "identifier": "slow-coder@example.com"})).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["id"], "self_service_flow_expired");
    app.stop().await;
}

async fn code_mails_are_capped_per_address_and_client(backend: Backend) {
    let (app, _) = app(backend, |c| {
        c.serve.public.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.security.send_limits.ip.codes_per_minute = 7;
    })
    .await;
    let email = "capped-coder@example.com";
    create_identity(&app, email).await;
    let send = |flow: Value, client: &'static str, body: Value| {
        let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
        let request = app.http.post(url).header("x-forwarded-for", client).json(&body);
        async move { request.send().await.unwrap() }
    };
    let ask = json!({"method": "code", "identifier": email});
    let mut answers = Vec::new();
    for _ in 0..7 {
        let flow = native_flow(&app, "login").await;
        let response = send(flow, "203.0.113.7", ask.clone()).await;
        let status = response.status().as_u16();
        answers.push((status, blanked(response.json().await.unwrap())));
        app.code_requests_served().await;
    }
    // Seven answers alike, five mails (the default cap an hour).
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(app.outbox(email).await.len(), 5);
    // The client asked for seven codes this minute: the eighth is refused openly.
    let flow = native_flow(&app, "login").await;
    let refused = send(flow.clone(), "203.0.113.7", ask.clone()).await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another client is not.
    assert_eq!(send(flow, "198.51.100.9", ask).await.status(), 400);
    app.stop().await;
}

async fn without_passwordless_the_code_is_an_unknown_method(backend: Backend) {
    let (app, _) = app(backend, |c| c.selfservice.methods.code.passwordless_enabled = false).await;
    create_identity(&app, "plain@example.com").await;
    let flow = native_flow(&app, "login").await;
    assert_eq!(names(&flow), ["identifier", "csrf_token", "password", "method"]);
    let (status, code) =
        post(&app, &flow, json!({"method": "code", "identifier": "plain@example.com"})).await;
    let (other, unknown) =
        post(&app, &flow, json!({"method": "carrier-pigeon", "identifier": "plain@example.com"})).await;
    assert_eq!((status, other), (400, 400));
    assert_eq!(blanked(code.clone()), blanked(unknown));
    assert_eq!(message_ids(&code), [4010002]);
    assert_eq!(app.outbox("plain@example.com").await, Vec::<Value>::new());
    app.stop().await;
}

async fn code_steps_a_session_up_to_aal2(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let schema = two_addresses(dir.path());
    let (app, received) = app(backend, |c| {
        c.selfservice.methods.code.passwordless_enabled = false;
        c.selfservice.methods.code.mfa_enabled = true;
        c.identity.schemas = vec![latchkey::config::SchemaEntry { id: "default".into(), url: schema }];
    })
    .await;
    let (email, work) = ("second-coder@example.com", "second-coder@work.example");
    let done = submit_registration(&app, json!({ "email": email, "work": work }), PASSWORD).await;
    let token = done["session_token"].as_str().unwrap().to_string();
    // With code MFA every identity with an email address can reach aal2 (as
    // Kratos counts the code method's addresses), so under the default
    // `highest_available` whoami asks for the step-up first.
    let refused = app.whoami(&token).await;
    assert_eq!(refused.status(), 403);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["error"]["id"], "session_aal2_required", "{refused}");
    // The first factor offers no code.
    assert!(!names(&native_flow(&app, "login").await).contains(&"address".to_string()));

    let flow = step_up_flow(&app, &token).await;
    assert_eq!(flow["requested_aal"], "aal2");
    assert_eq!(flow["state"], "choose_method");
    assert_eq!(message_ids(&flow), [1010004]);
    let buttons: Vec<&Value> = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["attributes"]["name"] == "address")
        .collect();
    assert_eq!(buttons.len(), 2, "one per address: {flow}");
    let button = buttons.iter().find(|b| b["attributes"]["value"] == email).unwrap();
    assert_eq!(
        (button["group"].as_str(), button["attributes"]["type"].as_str()),
        (Some("code"), Some("submit"))
    );
    assert_eq!(button["meta"]["label"]["id"], 1010023);
    assert_eq!(button["meta"]["label"]["context"]["address"], email);

    // Only the identity's own addresses take a code.
    let (status, body) = post_with(
        &app,
        &flow,
        json!({"method": "code", "address": "someone-else@example.com"}),
        Some(&token),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(message_ids(&body), [4010010]);
    // The button posts `address` alone.
    let (status, sent) = post_with(&app, &flow, json!({"address": email}), Some(&token)).await;
    assert_eq!(status, 400, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    assert_eq!(message_ids(&sent), [1010025]);
    assert_eq!(node(&sent, "identifier")["attributes"]["value"], email);
    let code = code_for(&received, email, 0).await;
    assert!(app.outbox(work).await.is_empty(), "only the address asked for");
    // Without the session nothing is raised.
    let (status, _) = post_with(&app, &flow, json!({"method": "code", "code": code}), None).await;
    assert_eq!(status, 401);
    let (status, done) = post_with(&app, &flow, json!({"method": "code", "code": code}), Some(&token)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["session_token"], token.as_str(), "the same session, raised");
    let session = &done["session"];
    assert_eq!(session["authenticator_assurance_level"], "aal2");
    let methods: Vec<(String, String)> = session["authentication_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["method"].as_str().unwrap().into(), m["aal"].as_str().unwrap().into()))
        .collect();
    assert_eq!(methods, [("password".into(), "aal1".into()), ("code".into(), "aal2".into())]);
    let whoami: Value = app.whoami(&token).await.json().await.unwrap();
    assert_eq!(whoami["authenticator_assurance_level"], "aal2");

    // With one address and no other second factor the code goes out at
    // once, as Kratos's fast path: the flow starts in `sent_email`.
    let (token, _) = register(&app, "single-coder@example.com", PASSWORD).await;
    let flow = step_up_flow(&app, &token).await;
    assert_eq!(flow["state"], "sent_email", "{flow}");
    assert_eq!(flow["active"], "code");
    assert_eq!(message_ids(&flow), [1010025]);
    assert_eq!(node(&flow, "identifier")["attributes"]["value"], "single-coder@example.com");
    let code = code_for(&received, "single-coder@example.com", 0).await;
    let (status, done) = post_with(&app, &flow, json!({"method": "code", "code": code}), Some(&token)).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    app.stop().await;
}

async fn step_up_flow(app: &TestApp, token: &str) -> Value {
    let (status, flow) = get_as(app, "/self-service/login/api?aal=aal2", token).await;
    assert_eq!(status, 200, "{flow}");
    flow
}

/// The quickstart's `email` plus `work`, a second verifiable address.
fn two_addresses(dir: &std::path::Path) -> String {
    let path = dir.join("two.schema.json");
    let document = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": { "traits": { "type": "object", "required": ["email"], "additionalProperties": false,
            "properties": {
                "email": { "type": "string", "format": "email", "ory.sh/kratos": {
                    "credentials": { "password": { "identifier": true } },
                    "verification": { "via": "email" } } },
                "work": { "type": "string", "format": "email", "ory.sh/kratos": {
                    "verification": { "via": "email" } } }
            } } }
    });
    std::fs::write(&path, document.to_string()).unwrap();
    format!("file://{}", path.display())
}

async fn parallel_submits_of_one_code_sign_in_once(backend: Backend) {
    let (app, received) = app(backend, |_| {}).await;
    let identity_id = create_identity(&app, "racer@example.com").await;
    let flow = native_flow(&app, "login").await;
    post(&app, &flow, json!({"method": "code", "identifier": "racer@example.com"})).await;
    let code = code_for(&received, "racer@example.com", 0).await;
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let mut attempts = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let request = app.http.post(&url).json(&json!({"method": "code", "code": code}));
        attempts.spawn(async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = attempts.join_next().await {
        answers.push(answer.unwrap());
    }
    let signed_in =
        answers.iter().filter(|(status, body)| *status == 200 && body["session_token"].is_string());
    assert_eq!(signed_in.count(), 1, "{answers:?}");
    // The others were refused: the code was spent, or, past the free
    // failures the throttle counted for them, they were asked to wait.
    assert!(answers.iter().all(|(status, _)| [200, 400, 429].contains(status)), "{answers:?}");
    let sessions: Vec<Value> =
        app.get_json(&app.admin_path(&format!("/admin/identities/{identity_id}/sessions"))).await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    app.stop().await;
}

/// `after.code.hooks`, as Kratos: the code method's own hooks, else the
/// defaults; the password's hooks do not apply to it.
async fn code_logins_run_their_own_hooks(backend: Backend) {
    let (app, received) = app(backend, |c| {
        let revoke = latchkey::config::Hook { hook: "revoke_active_sessions".into(), config: None };
        c.selfservice.flows.login.after.code.hooks = vec![revoke];
    })
    .await;
    create_identity(&app, "hooked@example.com").await;
    let by_password = login(&app, "hooked@example.com", PASSWORD).await.unwrap();
    let flow = native_flow(&app, "login").await;
    post(&app, &flow, json!({"method": "code", "identifier": "hooked@example.com"})).await;
    let code = code_for(&received, "hooked@example.com", 0).await;
    let (status, done) = post(&app, &flow, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    let by_code = done["session_token"].as_str().unwrap().to_string();
    assert_eq!(app.whoami(&by_password).await.status(), 401, "the code login revoked the others");
    // A password login runs the default hooks (none): the code's session stays.
    let again = login(&app, "hooked@example.com", PASSWORD).await.unwrap();
    assert_eq!(app.whoami(&by_code).await.status(), 200);
    assert_eq!(app.whoami(&again).await.status(), 200);
    app.stop().await;
}
