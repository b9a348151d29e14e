//! Code attempt limits under concurrency: many wrong codes sent at the same
//! moment to one recovery or verification flow are checked at most
//! `max_submissions` times, and the per-address budget holds across flows
//! (past it, a code gets its first try only: see `code_lockout` for that
//! under parallel guessing).
//! Every other request gets the too-many-attempts answer (or, once the flow
//! is spent, the expired one), never a check and never a 5xx.

use std::sync::{Arc, Mutex};

use latchkey_courier::test_smtp::Received;
use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::helpers::{Backend, TestApp, code_for, create_identity, native_flow, spawn_app_with_mail};
use crate::on_both_databases;

on_both_databases!(
    parallel_wrong_codes_on_one_recovery_flow,
    parallel_wrong_codes_on_one_verification_flow,
    address_limit_holds_across_parallel_flows,
);

const PARALLEL: usize = 40;
const MAX_SUBMISSIONS: u64 = 5;

async fn app(backend: Backend, address_limit: u64) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        let verification = &mut c.selfservice.flows.verification;
        verification.enabled = true;
        verification.ui_url = "http://127.0.0.1:4455/verification".into();
        let code = &mut c.selfservice.methods.code.config;
        code.max_submissions = MAX_SUBMISSIONS;
        code.max_failures_per_address = address_limit;
        // These races mail one address more codes than the send limit allows.
        c.security.send_limits.address.max = 1_000;
    })
    .await
}

pub(crate) async fn post(app: &TestApp, kind: &str, flow_id: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/{kind}?flow={flow_id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Starts a native flow of `kind` and has a code sent to `email`; returns
/// the flow id and the code.
pub(crate) async fn flow_with_code(
    app: &TestApp,
    received: &Mutex<Vec<Received>>,
    kind: &str,
    email: &str,
    nth: usize,
) -> (String, String) {
    let flow = native_flow(app, kind).await;
    let id = flow["id"].as_str().unwrap().to_string();
    let (status, _) = post(app, kind, &id, json!({"method": "code", "email": email})).await;
    assert_eq!(status, 200);
    (id, code_for(received, email, nth).await)
}

pub(crate) fn wrong_for(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

/// How the parallel answers came out.
#[derive(Debug, Default)]
struct Tally {
    /// The wrong-code answer (`wrong_id` on the flow): the code was compared,
    /// or refused for its address, which looks the same.
    checked: usize,
    /// Refused without a check: too many attempts, or the flow is spent.
    refused: usize,
}

/// Sends `count` copies of `body` to each flow at the same moment.
pub(crate) async fn storm(
    app: &TestApp,
    kind: &str,
    flows: &[String],
    body: Value,
    count: usize,
) -> Vec<(u16, Value)> {
    let mut set = JoinSet::new();
    for flow in flows {
        for _ in 0..count {
            let (http, path, body) = (
                app.http.clone(),
                app.public_path(&format!("/self-service/{kind}?flow={flow}")),
                body.clone(),
            );
            set.spawn(async move {
                let response = http.post(path).json(&body).send().await.unwrap();
                let status = response.status().as_u16();
                (status, response.json::<Value>().await.unwrap_or(Value::Null))
            });
        }
    }
    let mut answers = Vec::new();
    while let Some(answer) = set.join_next().await {
        answers.push(answer.unwrap());
    }
    answers
}

fn tally(answers: &[(u16, Value)], wrong_id: u64) -> Tally {
    let mut tally = Tally::default();
    for (status, body) in answers {
        assert!(*status < 500, "no request may fail: {status} {body}");
        if *status == 200 && body["ui"]["messages"][0]["id"].as_u64() == Some(wrong_id) {
            tally.checked += 1;
        } else {
            // Recovery answers 400 with a new flow to continue with,
            // verification 410 `self_service_flow_replaced`; a request that
            // arrives after the flow was spent gets the expired answer
            // (verification: 303 to the replacement).
            assert!(matches!(status, 303 | 400 | 410), "{status} {body}");
            tally.refused += 1;
        }
    }
    tally
}

async fn parallel_wrong_codes_on_one_flow(backend: Backend, kind: &str, wrong_id: u64) {
    // A generous per-address limit leaves only the per-flow one in play.
    let (app, received) = app(backend, 1000).await;
    let email = format!("storm-{kind}@example.com");
    create_identity(&app, &email).await;
    let (flow, code) = flow_with_code(&app, &received, kind, &email, 0).await;
    let answers = storm(
        &app,
        kind,
        std::slice::from_ref(&flow),
        json!({"method": "code", "code": wrong_for(&code)}),
        PARALLEL,
    )
    .await;
    let tally = tally(&answers, wrong_id);
    eprintln!("{kind} on {backend:?}: {} of {PARALLEL} parallel wrong codes were checked", tally.checked);
    assert_eq!(tally.checked as u64, MAX_SUBMISSIONS, "{tally:?}");
    assert_eq!(tally.refused, PARALLEL - MAX_SUBMISSIONS as usize);
    // The flow is spent: even the right code is not checked any more.
    let (status, body) = post(&app, kind, &flow, json!({"method": "code", "code": code})).await;
    assert!(matches!(status, 303 | 400 | 410), "{status} {body}");
    app.stop().await;
}

async fn parallel_wrong_codes_on_one_recovery_flow(backend: Backend) {
    parallel_wrong_codes_on_one_flow(backend, "recovery", 4060006).await;
}

async fn parallel_wrong_codes_on_one_verification_flow(backend: Backend) {
    parallel_wrong_codes_on_one_flow(backend, "verification", 4070006).await;
}

async fn address_limit_holds_across_parallel_flows(backend: Backend) {
    const ADDRESS_LIMIT: u64 = 7;
    const FLOWS: usize = 4;
    let (app, received) = app(backend, ADDRESS_LIMIT).await;
    let email = "storm-address@example.com";
    create_identity(&app, email).await;
    let mut flows = Vec::new();
    for nth in 0..FLOWS {
        flows.push(flow_with_code(&app, &received, "recovery", email, nth).await);
    }
    // No code is ever "000000" and "111111" at once, so one of them is wrong everywhere.
    let wrong = if flows.iter().any(|(_, c)| c == "000000") { "111111" } else { "000000" };
    let ids: Vec<String> = flows.iter().map(|(id, _)| id.clone()).collect();
    let answers =
        storm(&app, "recovery", &ids, json!({"method": "code", "code": wrong}), PARALLEL / FLOWS).await;
    let tally = tally(&answers, 4060006);
    // Each flow took exactly its own limit and refused the rest. Past the
    // address limit a code is refused with the wrong-code answer (by
    // design, so an attacker cannot tell), so over HTTP these 20 answers
    // cannot show how many were compared; the store's contract test shows
    // the address count is atomic.
    assert_eq!(tally.checked as u64, FLOWS as u64 * MAX_SUBMISSIONS, "{tally:?}");
    assert_eq!(tally.checked + tally.refused, PARALLEL);
    // Every one of those wrong codes counted against the address, so it is
    // past its budget: a fresh flow's right code is refused after one wrong
    // try on it, with the usual wrong-code answer, ...
    let (flow, code) = flow_with_code(&app, &received, "recovery", email, FLOWS).await;
    let (status, body) = post(&app, "recovery", &flow, json!({"method": "code", "code": wrong})).await;
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4060006)), "{body}");
    let (status, body) = post(&app, "recovery", &flow, json!({"method": "code", "code": code})).await;
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(4060006)), "{body}");
    // ... and judged on its first try, so the owner's fresh code still works.
    let (flow, code) = flow_with_code(&app, &received, "recovery", email, FLOWS + 1).await;
    let (status, body) = post(&app, "recovery", &flow, json!({"method": "code", "code": code})).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("passed_challenge")), "{body}");
    app.stop().await;
}
