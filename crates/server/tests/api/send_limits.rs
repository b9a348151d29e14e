//! Send limits (`security.send_limits`), driven over HTTP with mail going to
//! a real SMTP server on loopback: code mails per address and purpose are
//! capped without the answer showing it, and flow starts and code requests
//! per client address are refused with 429, `Retry-After` and the error
//! envelope, while other clients carry on.

use std::sync::{Arc, Mutex};

use latchkey::config::{Config, Hook};
use latchkey_courier::test_smtp::Received;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::{
    Backend, PASSWORD, TestApp, code_for, create_identity, native_flow, spawn_app_with_mail,
    submit_registration,
};
use crate::on_both_databases;

on_both_databases!(
    recovery_mails_are_capped_per_address_unseen,
    verification_mails_are_capped_per_address_unseen,
    unknown_addresses_count_the_same,
    parallel_sends_for_one_address_mail_exactly_the_cap,
    flow_starts_are_limited_per_client,
    code_requests_are_limited_per_client,
);

/// The default cap: five mails per address and purpose an hour.
const CAP: usize = 5;

async fn app(backend: Backend, adjust: impl FnOnce(&mut Config)) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        let verification = &mut c.selfservice.flows.verification;
        verification.enabled = true;
        verification.ui_url = "http://127.0.0.1:4455/verification".into();
        // Per-client limits out of the way, unless a test sets its own.
        let ip = &mut c.security.send_limits.ip;
        ip.flows_per_minute = 1000;
        ip.codes_per_minute = 1000;
        adjust(c);
    })
    .await
}

async fn post(app: &TestApp, kind: &str, flow_id: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/{kind}?flow={flow_id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn id(flow: &Value) -> String {
    flow["id"].as_str().unwrap().to_string()
}

/// An answer with what differs between any two flows (ids, times, the
/// URLs carrying the id) blanked.
fn blanked(mut answer: Value) -> Value {
    for key in ["id", "expires_at", "issued_at", "request_url"] {
        answer[key] = Value::Null;
    }
    answer["ui"]["action"] = Value::Null;
    answer
}

/// The outbox's messages to `to`, oldest first.
async fn outbox(app: &TestApp, to: &str) -> Vec<Value> {
    app.code_requests_served().await;
    let url = app.admin_path(&format!("/admin/courier/messages?recipient={to}"));
    let mut messages: Vec<Value> = app.get_json(&url).await;
    messages.sort_by_key(|m| m["created_at"].as_str().unwrap().to_string());
    messages
}

/// The code in a message's subject (`--dev` shows subjects).
fn code_in(message: &Value) -> String {
    let subject = message["subject"].as_str().unwrap();
    subject.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).expect("a code").to_string()
}

/// Sends `count` code requests for `email`, each in a new flow of `kind`;
/// returns the flows and the answers.
async fn send_in_new_flows(
    app: &TestApp,
    kind: &str,
    email: &str,
    count: usize,
) -> Vec<(String, u16, Value)> {
    let mut answers = Vec::new();
    for _ in 0..count {
        let flow = id(&native_flow(app, kind).await);
        let (status, body) = post(app, kind, &flow, json!({"method": "code", "email": email})).await;
        // Served one by one, so the first flows are the ones mailed.
        app.code_requests_served().await;
        answers.push((flow, status, body));
    }
    answers
}

/// Every answer is the first one, but for the flow's own id and times.
fn assert_all_alike(answers: &[(String, u16, Value)]) {
    let (_, status, first) = &answers[0];
    assert_eq!(*status, 200, "{first}");
    assert_eq!(first["state"], "sent_email");
    for (n, (_, status, body)) in answers.iter().enumerate() {
        assert_eq!(
            (*status, blanked(body.clone())),
            (200, blanked(first.clone())),
            "answer {n} differs from the first"
        );
    }
}

async fn recovery_mails_are_capped_per_address_unseen(backend: Backend) {
    let (app, received) = app(backend, |_| {}).await;
    let email = "capped-recovery@example.com";
    create_identity(&app, email).await;
    let answers = send_in_new_flows(&app, "recovery", email, 8).await;
    // Eight answers alike, five mails: the other three were capped unseen.
    assert_all_alike(&answers);
    let messages = outbox(&app, email).await;
    assert_eq!(messages.len(), CAP, "{messages:?}");
    code_for(&received, email, CAP - 1).await;

    // A capped resend in the flow of the last mail answers as always and
    // leaves that flow's code working (a sent resend would retire it).
    let last_flow = &answers[CAP - 1].0;
    let (status, resent) = post(&app, "recovery", last_flow, json!({"method": "code", "email": email})).await;
    assert_eq!((status, blanked(resent)), (200, blanked(answers[0].2.clone())));
    assert_eq!(outbox(&app, email).await.len(), CAP);
    let code = code_in(&messages[CAP - 1]);
    let (status, done) = post(&app, "recovery", last_flow, json!({"method": "code", "code": code})).await;
    assert_eq!((status, done["state"].as_str()), (200, Some("passed_challenge")), "{done}");
    // A flow whose request was capped has no code at all.
    let capped_flow = &answers[CAP].0;
    let (status, body) = post(&app, "recovery", capped_flow, json!({"method": "code", "code": code})).await;
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4060006)));

    // Verification mails are counted apart: the address still gets one.
    let flow = id(&native_flow(&app, "verification").await);
    post(&app, "verification", &flow, json!({"method": "code", "email": email})).await;
    let messages = outbox(&app, email).await;
    assert_eq!(messages.iter().filter(|m| m["template_type"] == "verification_code_valid").count(), 1);
    app.stop().await;
}

async fn verification_mails_are_capped_per_address_unseen(backend: Backend) {
    let (app, received) = app(backend, |c| {
        c.selfservice.flows.registration.after.password.hooks =
            ["session", "show_verification_ui"].map(|hook| Hook { hook: hook.into(), config: None }).into();
    })
    .await;
    let email = "capped-verification@example.com";
    let identity_id = create_identity(&app, email).await;
    let answers = send_in_new_flows(&app, "verification", email, 8).await;
    assert_all_alike(&answers);
    let messages = outbox(&app, email).await;
    assert_eq!(messages.len(), CAP, "{messages:?}");
    code_for(&received, email, CAP - 1).await;

    // A capped resend leaves the flow's code working.
    let last_flow = &answers[CAP - 1].0;
    let (status, resent) =
        post(&app, "verification", last_flow, json!({"method": "code", "email": email})).await;
    assert_eq!((status, blanked(resent)), (200, blanked(answers[0].2.clone())));
    let code = code_in(&messages[CAP - 1]);
    let (status, done) = post(&app, "verification", last_flow, json!({"method": "code", "code": code})).await;
    assert_eq!((status, done["state"].as_str()), (200, Some("passed_challenge")), "{done}");
    let identity: Value = app.get_json(&app.admin_path(&format!("/admin/identities/{identity_id}"))).await;
    assert_eq!(identity["verifiable_addresses"][0]["verified"], true);

    // The hooks are capped too: a registration for a capped address
    // succeeds and points at a verification flow, but mails nothing.
    let flooded = "flooded-before-signup@example.com";
    send_in_new_flows(&app, "verification", flooded, CAP).await;
    assert_eq!(outbox(&app, flooded).await.len(), 0, "nobody has this address yet");
    let done = submit_registration(&app, json!({ "email": flooded }), PASSWORD).await;
    let verification = done["continue_with"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["action"] == "show_verification_ui")
        .unwrap_or_else(|| panic!("{done}"));
    assert!(verification["flow"]["id"].is_string(), "{done}");
    assert_eq!(outbox(&app, flooded).await.len(), 0, "unknown-address requests counted against it");
    // Nothing went out, so the address is still pending, not sent.
    assert_eq!(done["identity"]["verifiable_addresses"][0]["status"], "pending");
    app.stop().await;
}

async fn unknown_addresses_count_the_same(backend: Backend) {
    let (app, _) = app(backend, |c| c.selfservice.flows.recovery.notify_unknown_recipients = true).await;
    let known = "known-capped@example.com";
    let stranger = "stranger-capped@example.com";
    create_identity(&app, known).await;
    let known_answers = send_in_new_flows(&app, "recovery", known, 8).await;
    let stranger_answers = send_in_new_flows(&app, "recovery", stranger, 8).await;
    // Sent or capped, known or not: one answer (but for the echoed address).
    let mut all = known_answers;
    for (flow, status, mut body) in stranger_answers {
        let text = body.to_string().replace(stranger, known);
        body = serde_json::from_str(&text).unwrap();
        all.push((flow, status, body));
    }
    assert_all_alike(&all);
    // The notices to the unknown address stop at the cap too.
    let notices = outbox(&app, stranger).await;
    assert_eq!(notices.len(), CAP, "{notices:?}");
    assert!(notices.iter().all(|m| m["template_type"] == "recovery_code_invalid"));
    assert_eq!(outbox(&app, known).await.len(), CAP);
    app.stop().await;
}

async fn parallel_sends_for_one_address_mail_exactly_the_cap(backend: Backend) {
    const FLOWS: usize = 10;
    const PER_FLOW: usize = 30;
    let (app, received) = app(backend, |_| {}).await;
    let email = "storm-sends@example.com";
    create_identity(&app, email).await;
    let mut flows = Vec::new();
    for _ in 0..FLOWS {
        flows.push(id(&native_flow(&app, "recovery").await));
    }
    let mut set = JoinSet::new();
    for flow in &flows {
        for _ in 0..PER_FLOW {
            let (http, url) =
                (app.http.clone(), app.public_path(&format!("/self-service/recovery?flow={flow}")));
            set.spawn(async move {
                let response = http.post(url).json(&json!({"method": "code", "email": email})).send().await;
                response.unwrap().status().as_u16()
            });
        }
    }
    let mut statuses = Vec::new();
    while let Some(status) = set.join_next().await {
        statuses.push(status.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(statuses.len(), FLOWS * PER_FLOW);
    assert_eq!(outbox(&app, email).await.len(), CAP);
    code_for(&received, email, CAP - 1).await;
    app.stop().await;
}

/// `GET /self-service/<kind>/<type>` from `client` (via the trusted proxy on loopback).
async fn start_flow(app: &TestApp, path: &str, client: Option<&str>) -> reqwest::Response {
    let mut request = app.http.get(app.public_path(path)).header("accept", "application/json");
    if let Some(client) = client {
        request = request.header("x-forwarded-for", client);
    }
    request.send().await.unwrap()
}

/// A 429 in Kratos's error envelope, with `Retry-After` within the minute.
async fn assert_rate_limited(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 429);
    let retry_after: u64 =
        response.headers()["retry-after"].to_str().unwrap().parse().expect("whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(response.headers()["ory-error-id"], "rate_limit_exceeded");
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(
        (error["id"].as_str(), error["code"].as_u64(), error["status"].as_str()),
        (Some("rate_limit_exceeded"), Some(429), Some("Too Many Requests")),
        "{body}"
    );
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.contains(what) && reason.contains(&format!("{retry_after} seconds")), "{reason}");
}

async fn flow_starts_are_limited_per_client(backend: Backend) {
    let (app, _) = app(backend, |c| {
        c.serve.public.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.security.send_limits.ip.flows_per_minute = 3;
    })
    .await;
    let office = Some("203.0.113.7");
    for path in
        ["/self-service/login/api", "/self-service/registration/browser", "/self-service/recovery/api"]
    {
        assert_eq!(start_flow(&app, path, office).await.status(), 200, "{path}");
    }
    // Any kind of flow, native or browser, counts against the same client.
    for path in
        ["/self-service/verification/api", "/self-service/settings/browser", "/self-service/login/browser"]
    {
        assert_rate_limited(start_flow(&app, path, office).await, "flows were started").await;
    }
    // A browser wanting HTML gets the same answer.
    let html =
        app.http.get(app.public_path("/self-service/login/browser")).header("x-forwarded-for", "203.0.113.7");
    assert_eq!(html.send().await.unwrap().status(), 429);
    // Other requests from that client are not limited.
    let fetched = app.http.get(app.public_path("/self-service/login/flows?id=not-a-flow"));
    assert_eq!(fetched.header("x-forwarded-for", "203.0.113.7").send().await.unwrap().status(), 404);
    // Other clients are unaffected: another address, the proxy itself.
    for client in [Some("198.51.100.9"), None] {
        assert_eq!(start_flow(&app, "/self-service/login/api", client).await.status(), 200);
    }
    // An IPv6 client is one /64: its neighbours share its limit, the next block does not.
    for _ in 0..3 {
        assert_eq!(start_flow(&app, "/self-service/login/api", Some("2001:db8:0:1::1")).await.status(), 200);
    }
    assert_eq!(start_flow(&app, "/self-service/login/api", Some("2001:db8:0:1::2")).await.status(), 429);
    assert_eq!(start_flow(&app, "/self-service/login/api", Some("2001:db8:0:2::1")).await.status(), 200);
    app.stop().await;
}

async fn code_requests_are_limited_per_client(backend: Backend) {
    let (app, _) = app(backend, |c| {
        c.serve.public.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.security.send_limits.ip.codes_per_minute = 2;
    })
    .await;
    let send = |kind: &'static str, flow: String, client: &'static str, body: Value| {
        let request = app
            .http
            .post(app.public_path(&format!("/self-service/{kind}?flow={flow}")))
            .header("x-forwarded-for", client)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    let office = "203.0.113.7";
    let recovery = id(&native_flow(&app, "recovery").await);
    let verification = id(&native_flow(&app, "verification").await);
    let ask = |email: &str| json!({"method": "code", "email": email});
    assert_eq!(send("recovery", recovery.clone(), office, ask("one@example.com")).await.status(), 200);
    assert_eq!(
        send("verification", verification.clone(), office, ask("two@example.com")).await.status(),
        200
    );
    // Recovery and verification requests count together, for any address.
    let refused = send("recovery", recovery.clone(), office, ask("three@example.com")).await;
    assert_rate_limited(refused, "codes were requested").await;
    let refused = send("verification", verification.clone(), office, ask("two@example.com")).await;
    assert_rate_limited(refused, "codes were requested").await;
    // Entering a code is not asking for one.
    let (status, body) = {
        let response =
            send("recovery", recovery.clone(), office, json!({"method": "code", "code": "000000"})).await;
        (response.status().as_u16(), response.json::<Value>().await.unwrap())
    };
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4060006)), "{body}");
    // Another client asks on the same flow and is answered.
    let other = send("recovery", recovery, "198.51.100.9", ask("one@example.com")).await;
    assert_eq!(other.status(), 200);
    app.stop().await;
}
