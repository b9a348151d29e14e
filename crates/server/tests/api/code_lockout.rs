//! Code lockouts that cannot be aimed at a victim. Wrong codes are budgeted
//! per address across flows; past the budget a code is still judged on the
//! first attempt made against it, and only then. So someone failing codes
//! for an address cannot keep its owner out (a fresh code, typed right,
//! works), while guesses stay bounded by the budget plus the codes sent.
//! Recovery and verification share the path; both are driven here, on both
//! databases, with codes read from the real SMTP outbox.

use std::sync::{Arc, Mutex};

use latchkey_courier::test_smtp::Received;
use serde_json::{Value, json};

use crate::code_races::{flow_with_code, post, storm, wrong_for};
use crate::helpers::{Backend, TestApp, create_identity, spawn_app_with_mail};
use crate::on_both_databases;

on_both_databases!(
    recovery_owner_gets_in_while_an_attacker_fails_codes,
    verification_owner_gets_in_while_an_attacker_fails_codes,
    recovery_parallel_guesses_past_the_budget_get_one_try_per_code,
    verification_parallel_guesses_past_the_budget_get_one_try_per_code,
);

/// What differs between the two kinds of code flow.
#[derive(Clone, Copy)]
struct Kind {
    name: &'static str,
    /// The message id of the wrong-code answer.
    wrong_id: u64,
}

const RECOVERY: Kind = Kind { name: "recovery", wrong_id: 4060006 };
const VERIFICATION: Kind = Kind { name: "verification", wrong_id: 4070006 };

async fn app(
    backend: Backend,
    adjust: impl FnOnce(&mut latchkey::config::CodeMethodConfig),
) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        let verification = &mut c.selfservice.flows.verification;
        verification.enabled = true;
        verification.ui_url = "http://127.0.0.1:4455/verification".into();
        adjust(&mut c.selfservice.methods.code.config);
    })
    .await
}

/// Submits `code` on the flow.
async fn try_code(app: &TestApp, kind: Kind, flow: &str, code: &str) -> (u16, Value) {
    post(app, kind.name, flow, json!({"method": "code", "code": code})).await
}

/// Asserts the wrong-code answer and returns it without what changes from
/// one answer to the next (times), for comparing answers.
fn wrong_answer(kind: Kind, (status, mut body): (u16, Value)) -> Value {
    assert_eq!((status, body["ui"]["messages"][0]["id"].as_u64()), (200, Some(kind.wrong_id)), "{body}");
    assert_eq!(body["state"], "sent_email");
    for key in ["updated_at", "issued_at", "expires_at"] {
        body[key] = Value::Null;
    }
    body
}

fn passed((status, body): &(u16, Value)) -> bool {
    *status == 200 && body["state"] == "passed_challenge"
}

async fn owner_gets_in_while_an_attacker_fails_codes(backend: Backend, kind: Kind) {
    // The defaults: 10 wrong codes per address in 24h, 5 attempts per flow.
    let defaults = latchkey::config::CodeMethodConfig::default();
    assert_eq!((defaults.max_failures_per_address, defaults.failure_window), (10, "24h".parse().unwrap()));
    assert_eq!(defaults.max_submissions, 5);
    let (app, received) = app(backend, |_| {}).await;
    let email = format!("victim-{}@example.com", kind.name);
    let identity_id = create_identity(&app, &email).await;
    // Five codes in all go to the address, at most what its send limit
    // allows in an hour.
    let mut mails = 0..;
    let mut fresh_code =
        async || flow_with_code(&app, &received, kind.name, &email, mails.next().unwrap()).await;

    // Within the budget nothing changed: a code takes several tries, and the
    // right one after four wrong ones passes (and is not counted as wrong).
    let (flow, code) = fresh_code().await;
    for _ in 0..4 {
        wrong_answer(kind, try_code(&app, kind, &flow, wrong_for(&code)).await);
    }
    assert!(passed(&try_code(&app, kind, &flow, &code).await));

    // The attacker spends the rest of the budget over two more flows: five
    // wrong codes on one, the tenth on the other.
    let (flow, code) = fresh_code().await;
    for _ in 0..5 {
        wrong_answer(kind, try_code(&app, kind, &flow, wrong_for(&code)).await);
    }
    let (flow, code) = fresh_code().await;
    let wrong = wrong_answer(kind, try_code(&app, kind, &flow, wrong_for(&code)).await);
    // Past the budget a code gets no second try: the right code now is
    // refused, with exactly the answer a wrong code gets.
    let refused = wrong_answer(kind, try_code(&app, kind, &flow, &code).await);
    assert_eq!(refused, wrong, "a refused code looks like a wrong one");

    // Each fresh code the attacker has sent gets one try, and only one.
    let (flow, code) = fresh_code().await;
    let wrong = wrong_answer(kind, try_code(&app, kind, &flow, wrong_for(&code)).await);
    let refused = wrong_answer(kind, try_code(&app, kind, &flow, &code).await);
    assert_eq!(refused, wrong);

    // The owner asks for a fresh code and gets in with it, first try. A
    // verification code may come by link: following it and then submitting
    // the code is still the code's first try.
    let (flow, code) = fresh_code().await;
    if kind.name == "verification" {
        let link = format!("/self-service/verification?flow={flow}&code={code}");
        let followed = app.http.get(app.public_path(&link)).send().await.unwrap();
        assert_eq!(followed.status(), 303);
    }
    let done = try_code(&app, kind, &flow, &code).await;
    assert!(passed(&done), "{done:?}");
    if kind.name == "recovery" {
        let token = done.1["continue_with"][0]["ory_session_token"].as_str().unwrap();
        let whoami: Value = app
            .http
            .get(app.public_path("/sessions/whoami"))
            .header("x-session-token", token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(whoami["identity"]["id"], identity_id.as_str());
    }
    app.stop().await;
}

async fn recovery_owner_gets_in_while_an_attacker_fails_codes(backend: Backend) {
    owner_gets_in_while_an_attacker_fails_codes(backend, RECOVERY).await;
}

async fn verification_owner_gets_in_while_an_attacker_fails_codes(backend: Backend) {
    owner_gets_in_while_an_attacker_fails_codes(backend, VERIFICATION).await;
}

const PARALLEL: usize = 150;

async fn parallel_guesses_past_the_budget(backend: Backend, kind: Kind) {
    // Attempts per flow out of play, so only the per-code count limits.
    let (app, received) = app(backend, |code| {
        code.max_submissions = 10_000;
        code.max_failures_per_address = 2;
    })
    .await;
    let email = format!("storm-{}@example.com", kind.name);
    create_identity(&app, &email).await;
    let (flow, code) = flow_with_code(&app, &received, kind.name, &email, 0).await;
    for _ in 0..3 {
        wrong_answer(kind, try_code(&app, kind, &flow, wrong_for(&code)).await);
    }

    // Many wrong guesses at once on a fresh code: all get the wrong-code
    // answer, none fails, and the right code after them is refused.
    let (flow, code) = flow_with_code(&app, &received, kind.name, &email, 1).await;
    let body = json!({"method": "code", "code": wrong_for(&code)});
    for answer in storm(&app, kind.name, std::slice::from_ref(&flow), body, PARALLEL).await {
        wrong_answer(kind, answer);
    }
    wrong_answer(kind, try_code(&app, kind, &flow, &code).await);

    // Wrong and refused guesses look alike, so to see how many were judged,
    // send the right code many times at once: every judged one passes or
    // finds the code already used; a refused one gets the wrong-code answer.
    let (flow, code) = flow_with_code(&app, &received, kind.name, &email, 2).await;
    let body = json!({"method": "code", "code": code});
    let answers = storm(&app, kind.name, std::slice::from_ref(&flow), body, PARALLEL).await;
    let (mut judged, mut refused, mut finished) = (0, 0, 0);
    for answer in answers {
        let (status, body) = &answer;
        if passed(&answer) {
            judged += 1;
        } else if *status == 200 && body["ui"]["messages"][0]["id"].as_u64() == Some(kind.wrong_id) {
            refused += 1;
        } else if finished_flow(kind, &answer) {
            // Arrived once the flow had passed: not checked at all.
            finished += 1;
        } else {
            panic!("a second judged try (the code was used already) or a failure: {status} {body}");
        }
    }
    eprintln!("{} on {backend:?}: {judged} judged, {refused} refused, {finished} too late", kind.name);
    assert_eq!(judged, 1);
    assert_eq!(refused + finished, PARALLEL - 1);
    app.stop().await;
}

/// The answer to a code sent to a flow that has already passed (not the
/// one for a code found used, which only a judged attempt gets).
fn finished_flow(kind: Kind, (status, body): &(u16, Value)) -> bool {
    match kind.name {
        "recovery" => *status == 400 && body["state"] == "passed_challenge",
        _ => *status == 410 && body["error"]["reason"] == "An error occurred, please use the new flow.",
    }
}

async fn recovery_parallel_guesses_past_the_budget_get_one_try_per_code(backend: Backend) {
    parallel_guesses_past_the_budget(backend, RECOVERY).await;
}

async fn verification_parallel_guesses_past_the_budget_get_one_try_per_code(backend: Backend) {
    parallel_guesses_past_the_budget(backend, VERIFICATION).await;
}
