//! Code requests (`latchkey_domain::flow::code_requests`): a recovery,
//! verification or code-login submit records one request and answers; the code and its
//! mail follow, off the request path. A request whose server stopped before
//! serving it is served by any server's sweep, and its code works.

use chrono::Utc;
use latchkey_domain::flow::FlowState;
use latchkey_domain::flow::login::LoginState;
use latchkey_domain::flow::recovery::RecoveryState;
use latchkey_domain::flow::verification::VerificationState;
use latchkey_domain::store::{CodePurpose, CodeRequest};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, code_for, create_identity, native_flow, spawn_app_with_mail};
use crate::on_both_databases;

on_both_databases!(requests_a_stopped_server_left_are_served_by_the_sweep);

/// Records a request for `address` in `flow` as a server would that then
/// stopped: written to the database, ten seconds old, claimed by nobody.
async fn leave_unserved(app: &TestApp, flow: &Value, purpose: CodePurpose, address: &str) {
    let flow_id: Uuid = flow["id"].as_str().unwrap().parse().unwrap();
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    let mut stored = store.get_flow(flow_id).await.unwrap().unwrap();
    stored.state = match purpose {
        CodePurpose::Recovery => {
            FlowState::Recovery(RecoveryState::SentEmail { address: address.into(), admin_issued: false })
        }
        CodePurpose::Verification => {
            FlowState::Verification(VerificationState::SentEmail { address: address.into() })
        }
        CodePurpose::Login => FlowState::Login(LoginState::SentEmail { address: address.into() }),
        other => panic!("{} codes are not asked for by address", other.as_str()),
    };
    let request = CodeRequest {
        id: Uuid::new_v4(),
        flow_id,
        purpose,
        address: address.into(),
        requested_at: Utc::now() - chrono::Duration::seconds(10),
    };
    store.record_code_request(&stored, &request).await.unwrap();
    store.close().await;
}

async fn submit(app: &TestApp, kind: &str, flow: &Value, body: Value) -> (u16, Value) {
    let url = app.public_path(&format!("/self-service/{kind}?flow={}", flow["id"].as_str().unwrap()));
    let response = app.http.post(url).json(&body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn requests_a_stopped_server_left_are_served_by_the_sweep(backend: Backend) {
    let (app, received) = spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        c.selfservice.flows.verification.enabled = true;
        c.selfservice.methods.code.passwordless_enabled = true;
    })
    .await;
    let (recovering, verifying) = ("left-recovery@example.com", "left-verification@example.com");
    create_identity(&app, recovering).await;
    let verifying_id = create_identity(&app, verifying).await;

    let recovery = native_flow(&app, "recovery").await;
    leave_unserved(&app, &recovery, CodePurpose::Recovery, recovering).await;
    let verification = native_flow(&app, "verification").await;
    leave_unserved(&app, &verification, CodePurpose::Verification, verifying).await;
    let signing_in = "left-login@example.com";
    create_identity(&app, signing_in).await;
    let login = native_flow(&app, "login").await;
    leave_unserved(&app, &login, CodePurpose::Login, signing_in).await;

    // The sweep finds both, issues their codes and mails them.
    let code = code_for(&received, recovering, 0).await;
    let (status, recovered) =
        submit(&app, "recovery", &recovery, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{recovered}");
    assert_eq!(recovered["state"], "passed_challenge");
    assert!(
        recovered["continue_with"].as_array().unwrap().iter().any(|c| c["action"] == "set_ory_session_token")
    );

    let code = code_for(&received, verifying, 0).await;
    let (status, verified) =
        submit(&app, "verification", &verification, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["state"], "passed_challenge");
    let identity: Value = app.get_json(&app.admin_path(&format!("/admin/identities/{verifying_id}"))).await;
    assert_eq!(identity["verifiable_addresses"][0]["verified"], true);

    let code = code_for(&received, signing_in, 0).await;
    let (status, signed_in) = submit(&app, "login", &login, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{signed_in}");
    assert!(signed_in["session_token"].is_string());
    app.code_requests_served().await;
    app.stop().await;
}
