//! Sign-up by emailed code (`selfservice.methods.code.passwordless_enabled`),
//! as Kratos's `code` registration strategy answers it: the traits send a
//! `registration_code_valid` mail, the code makes the identity with its
//! address verified and signs it in with method `code`. Raw HTTP: the Rust
//! SDK cannot decode UI nodes or `continue_with` (see `helpers::native_flow`).

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use latchkey::config::{Config, Hook, SchemaEntry};
use latchkey_courier::test_smtp::Received;
use ory_kratos_client::apis::{frontend_api, identity_api};
use ory_kratos_client::models::session_authentication_method::MethodEnum;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, code_for, create_identity, native_flow, spawn_app_with_mail,
    submit_registration,
};
use crate::on_both_databases;

on_both_databases!(
    native_sign_up_by_code_makes_a_verified_identity_and_its_session,
    browser_sign_up_by_code_sets_the_session_cookie,
    a_wrong_code_is_refused_and_the_sixth_try_is_too_many,
    an_expired_code_is_refused,
    a_resend_retires_the_old_code,
    a_taken_address_is_told_after_the_code_and_nothing_is_written,
    invalid_traits_are_refused_before_any_mail,
    traits_changed_at_the_code_step_are_refused,
    concurrent_submits_of_one_right_code_make_one_identity,
    the_code_method_off_is_refused_like_an_unknown_method,
    password_registration_still_works_beside_it,
    without_the_session_hook_the_identity_is_made_unsigned_in,
    code_requests_count_toward_the_client_limit,
    past_the_address_cap_no_new_code_is_sent_and_the_old_one_works,
    a_schema_without_a_code_identifier_is_told_so,
);

/// A schema whose email is a password and a code identifier, verifiable and
/// recoverable, as Kratos's `code.identity.schema.json` stub marks it.
pub const SCHEMA: &str = r#"{
  "$id": "https://latchkey.example/schemas/code-sign-up.json",
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "properties": {
    "traits": {
      "type": "object",
      "properties": {
        "email": {
          "type": "string",
          "format": "email",
          "title": "E-Mail",
          "ory.sh/kratos": {
            "credentials": {
              "password": { "identifier": true },
              "code": { "identifier": true, "via": "email" }
            },
            "verification": { "via": "email" },
            "recovery": { "via": "email" }
          }
        },
        "name": { "type": "string", "title": "Name", "maxLength": 64 }
      },
      "required": ["email"],
      "additionalProperties": false
    }
  }
}"#;

type Mail = Arc<Mutex<Vec<Received>>>;

/// A server with sign-up by code on (and its `session` hook), mailing a
/// real SMTP server; the schema file lives as long as the returned handle.
async fn code_app(
    backend: Backend,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, Mail, tempfile::NamedTempFile) {
    let mut schema = tempfile::NamedTempFile::new().unwrap();
    schema.write_all(SCHEMA.as_bytes()).unwrap();
    let url = format!("file://{}", schema.path().display());
    let (app, mail) = spawn_app_with_mail(backend, |c| {
        c.identity.schemas = vec![SchemaEntry { id: "default".into(), url }];
        c.selfservice.methods.code.passwordless_enabled = true;
        c.selfservice.flows.registration.after.code.hooks =
            vec![Hook { hook: "session".into(), config: None }];
        adjust(c);
    })
    .await;
    (app, mail, schema)
}

fn flow_id(flow: &Value) -> &str {
    flow["id"].as_str().unwrap()
}

fn node<'a>(flow: &'a Value, name: &str) -> Option<&'a Value> {
    flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == name)
}

/// The flow's nodes as `(group, name, type, value)`.
fn shape(flow: &Value) -> Vec<(String, String, String, Value)> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let a = &n["attributes"];
            (text(&n["group"]), text(&a["name"]), text(&a["type"]), a["value"].clone())
        })
        .collect()
}

fn message_ids(flow: &Value) -> Vec<u64> {
    flow["ui"]["messages"].as_array().unwrap().iter().map(|m| m["id"].as_u64().unwrap()).collect()
}

/// Submits `body` to the native registration flow `id`.
async fn submit(app: &TestApp, id: &str, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={id}")))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Starts a native flow and sends a code for `traits`; returns the flow id.
async fn send_code(app: &TestApp, traits: Value) -> String {
    let flow = native_flow(app, "registration").await;
    let (status, sent) = submit(app, flow_id(&flow), json!({"method": "code", "traits": traits})).await;
    assert_eq!(status, 400, "Kratos answers a code sent with 400 and the flow: {sent}");
    assert_eq!(sent["state"], "sent_email", "{sent}");
    flow_id(&flow).to_string()
}

/// Identities whose credentials name `email`, through the admin API.
async fn identities_named(app: &TestApp, email: &str) -> Vec<Value> {
    app.get_json(&app.admin_path(&format!("/admin/identities?credentials_identifier={email}"))).await
}

async fn native_sign_up_by_code_makes_a_verified_identity_and_its_session(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let flow = native_flow(&app, "registration").await;
    // Beside the password, the form offers a button that sends a code.
    let nodes = flow["ui"]["nodes"].as_array().unwrap();
    let send =
        nodes.iter().find(|n| n["attributes"]["name"] == "method" && n["attributes"]["value"] == "code");
    let send = send.expect("a method=code submit is offered");
    assert_eq!((send["group"].as_str(), send["attributes"]["type"].as_str()), (Some("code"), Some("submit")));
    assert_eq!(send["meta"]["label"]["id"], 1040006);
    assert!(node(&flow, "traits.email").is_some() && node(&flow, "password").is_some());

    let traits = json!({"email": "Ada@Example.com", "name": "Ada"});
    let (status, sent) = submit(&app, flow_id(&flow), json!({"method": "code", "traits": traits})).await;
    assert_eq!(status, 400, "{sent}");
    assert_eq!((sent["state"].as_str(), sent["active"].as_str()), (Some("sent_email"), Some("code")));
    assert_eq!(message_ids(&sent), [1040005]);
    let hidden = |name: &str, value: Value| ("default".to_string(), name.to_string(), "hidden".into(), value);
    let code_node =
        |name: &str, kind: &str, value: Value| ("code".to_string(), name.into(), kind.into(), value);
    assert_eq!(
        shape(&sent),
        [
            hidden("csrf_token", json!("")),
            hidden("traits.email", json!("Ada@Example.com")),
            hidden("traits.name", json!("Ada")),
            code_node("method", "hidden", json!("code")),
            code_node("code", "text", Value::Null),
            code_node("method", "submit", json!("code")),
            code_node("resend", "submit", json!("code")),
        ],
        "{sent}"
    );
    assert_eq!(node(&sent, "code").unwrap()["meta"]["label"]["id"], 1070012);

    // The code goes to the normalised address, in the registration template.
    let code = code_for(&mail, "ada@example.com", 0).await;
    let mails = app.outbox("ada@example.com").await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0]["template_type"], "registration_code_valid", "{}", mails[0]);
    assert!(identities_named(&app, "ada@example.com").await.is_empty(), "no identity before the code");

    let (status, done) =
        submit(&app, flow_id(&flow), json!({"method": "code", "code": code, "traits": traits})).await;
    assert_eq!(status, 200, "{done}");
    let token = done["session_token"].as_str().expect("the session hook signs in").to_string();
    assert_eq!(done["continue_with"][0]["action"], "set_ory_session_token");
    assert_eq!(done["continue_with"][0]["ory_session_token"], token.as_str());
    let session = &done["session"];
    assert_eq!(session["authentication_methods"][0]["method"], "code", "{session}");
    assert_eq!(session["authenticator_assurance_level"], "aal1");
    let address = &done["identity"]["verifiable_addresses"][0];
    assert_eq!(
        (address["value"].as_str(), address["verified"].as_bool()),
        (Some("ada@example.com"), Some(true))
    );
    assert_eq!(address["status"], "completed");

    let whoami = app.whoami(&token).await;
    assert_eq!(whoami.status(), 200);
    let whoami: Value = whoami.json().await.unwrap();
    assert_eq!(whoami["identity"]["id"], done["identity"]["id"]);
    assert_eq!(whoami["authentication_methods"][0]["method"], "code");

    // The official SDK reads the session and the identity.
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    let methods = session.authentication_methods.unwrap_or_default();
    assert_eq!(methods[0].method, Some(MethodEnum::Code));
    let id = done["identity"]["id"].as_str().unwrap();
    let identity = identity_api::get_identity(&app.admin, id, None).await.unwrap();
    let address = &identity.verifiable_addresses.unwrap()[0];
    assert_eq!((address.value.as_str(), address.verified), ("ada@example.com", true));

    // The identity has a code credential for its address; its password credential holds no hash.
    let stored: Value = app.get_json(&app.admin_path(&format!("/admin/identities/{id}"))).await;
    assert_eq!(stored["credentials"]["code"]["identifiers"], json!(["ada@example.com"]), "{stored}");
    let password = &stored["credentials"]["password"];
    assert!(password.get("config").is_none_or(|c| c.get("hashed_password").is_none()), "{stored}");
    assert_eq!(stored["traits"], json!({"email": "Ada@Example.com", "name": "Ada"}));
    assert_eq!(stored["verifiable_addresses"][0]["verified"], true);

    // The flow is done: the code does not work twice.
    let (status, again) =
        submit(&app, flow_id(&flow), json!({"method": "code", "code": code, "traits": traits})).await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(message_ids(&again), [4010003]);
}

async fn browser_sign_up_by_code_sets_the_session_cookie(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let mut jar = Jar::default();
    let started = app.http.get(app.public_path("/self-service/registration/browser")).send().await.unwrap();
    assert_eq!(started.status(), 303);
    jar.store(&started);
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let id = location.split("flow=").nth(1).unwrap().to_string();
    let fetch = |jar: &Jar| {
        let request = app
            .http
            .get(app.public_path(&format!("/self-service/registration/flows?id={id}")))
            .header("cookie", jar.header());
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let flow = fetch(&jar).await;
    let csrf = node(&flow, "csrf_token").unwrap()["attributes"]["value"].as_str().unwrap().to_string();
    let post = |form: Vec<(&'static str, String)>, jar: &Jar| {
        let request = app
            .http
            .post(app.public_path(&format!("/self-service/registration?flow={id}")))
            .header("cookie", jar.header())
            .form(&form);
        async move { request.send().await.unwrap() }
    };

    let sent = post(
        vec![
            ("method", "code".into()),
            ("traits.email", "grace@example.com".into()),
            ("csrf_token", csrf.clone()),
        ],
        &jar,
    )
    .await;
    assert_eq!(sent.status(), 303);
    assert_eq!(sent.headers()["location"], format!("http://127.0.0.1:4455/registration?flow={id}").as_str());
    let shown = fetch(&jar).await;
    assert_eq!(shown["state"], "sent_email", "{shown}");
    assert!(node(&shown, "csrf_token").is_some(), "the code form keeps the CSRF token");
    let code = code_for(&mail, "grace@example.com", 0).await;

    // As a browser posts the form: the hidden fields, the code, the token.
    let done = post(
        vec![
            ("method", "code".into()),
            ("traits.email", "grace@example.com".into()),
            ("code", code),
            ("csrf_token", csrf),
        ],
        &jar,
    )
    .await;
    assert_eq!(done.status(), 303);
    assert_eq!(done.headers()["location"], "http://127.0.0.1:4455/welcome");
    jar.store(&done);
    let cookie = jar.get("ory_kratos_session").expect("the session cookie is set");
    assert!(!cookie.is_empty());
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let whoami: Value = whoami.json().await.unwrap();
    assert_eq!(whoami["identity"]["traits"]["email"], "grace@example.com");
    assert_eq!(whoami["identity"]["verifiable_addresses"][0]["verified"], true);
    assert_eq!(whoami["authentication_methods"][0]["method"], "code");
}

async fn a_wrong_code_is_refused_and_the_sixth_try_is_too_many(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let id = send_code(&app, json!({"email": "wrong@example.com"})).await;
    let code = code_for(&mail, "wrong@example.com", 0).await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    for _ in 0..5 {
        let (status, refused) = submit(&app, &id, json!({"method": "code", "code": wrong})).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(message_ids(&refused), [4040003], "{refused}");
        assert_eq!(refused["state"], "sent_email");
        assert!(node(&refused, "code").is_some(), "the code form stays");
    }
    // Kratos: five tries per flow; the sixth is refused even with the right code.
    let (status, refused) = submit(&app, &id, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(message_ids(&refused), [4000001]);
    let text = refused["ui"]["messages"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("The request was submitted too often."), "{text}");
    assert!(identities_named(&app, "wrong@example.com").await.is_empty());
}

async fn an_expired_code_is_refused(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let id = send_code(&app, json!({"email": "late@example.com"})).await;
    let code = code_for(&mail, "late@example.com", 0).await;
    // Past the code's 15 minutes, within the flow's hour.
    app.clock.advance(std::time::Duration::from_secs(16 * 60));
    let (status, refused) = submit(&app, &id, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(message_ids(&refused), [4040003]);
    assert!(identities_named(&app, "late@example.com").await.is_empty());
}

async fn a_resend_retires_the_old_code(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let traits = json!({"email": "again@example.com"});
    let id = send_code(&app, traits.clone()).await;
    let first = code_for(&mail, "again@example.com", 0).await;
    let (status, resent) =
        submit(&app, &id, json!({"method": "code", "resend": "code", "traits": traits})).await;
    assert_eq!(status, 400, "{resent}");
    assert_eq!((resent["state"].as_str(), message_ids(&resent)), (Some("sent_email"), vec![1040005]));
    let second = code_for(&mail, "again@example.com", 1).await;
    if first != second {
        let (status, refused) = submit(&app, &id, json!({"method": "code", "code": first})).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(message_ids(&refused), [4040003]);
    }
    let (status, done) = submit(&app, &id, json!({"method": "code", "code": second, "traits": traits})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["identity"]["traits"]["email"], "again@example.com");
}

async fn a_taken_address_is_told_after_the_code_and_nothing_is_written(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let owner = create_identity(&app, "taken@example.com").await;
    // As in Kratos the code goes out: only the mailbox's owner reads what follows.
    let id = send_code(&app, json!({"email": "taken@example.com", "name": "Mallory"})).await;
    let code = code_for(&mail, "taken@example.com", 0).await;
    let (status, refused) = submit(&app, &id, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(message_ids(&refused), [4000007], "{refused}");
    // Back to the first screen with the traits to change.
    assert_eq!(refused["state"], "choose_method");
    assert_eq!(node(&refused, "traits.email").unwrap()["attributes"]["value"], "taken@example.com");
    assert_eq!(node(&refused, "traits.email").unwrap()["attributes"]["type"], "email");
    let named = identities_named(&app, "taken@example.com").await;
    assert_eq!(named.len(), 1);
    assert_eq!(named[0]["id"], owner.as_str());
    assert_eq!(
        named[0]["traits"],
        json!({"email": "taken@example.com"}),
        "the owner's identity is untouched"
    );
    let all: Vec<Value> = app.get_json(&app.admin_path("/admin/identities")).await;
    assert_eq!(all.len(), 1, "no half-written identity: {all:?}");
}

async fn invalid_traits_are_refused_before_any_mail(backend: Backend) {
    let (app, _mail, _schema) = code_app(backend, |_| {}).await;
    let flow = native_flow(&app, "registration").await;
    let (status, refused) =
        submit(&app, flow_id(&flow), json!({"method": "code", "traits": {"email": "not-an-address"}})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["state"], "choose_method");
    let messages = &node(&refused, "traits.email").unwrap()["messages"];
    assert!(!messages.as_array().unwrap().is_empty(), "{refused}");
    let (status, refused) =
        submit(&app, flow_id(&flow), json!({"method": "code", "traits": {"name": "Nobody"}})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(node(&refused, "traits.email").unwrap()["messages"][0]["id"], 4000002, "{refused}");
    let (status, refused) = submit(&app, flow_id(&flow), json!({"method": "code"})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(message_ids(&refused), [4000002], "{refused}");
    assert!(app.outbox("not-an-address").await.is_empty());
    let all: Vec<Value> = app.get_json(&app.admin_path("/admin/courier/messages")).await;
    assert!(all.is_empty(), "nothing was mailed: {all:?}");
}

async fn traits_changed_at_the_code_step_are_refused(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let id = send_code(&app, json!({"email": "first@example.com", "name": "First"})).await;
    let code = code_for(&mail, "first@example.com", 0).await;
    for swapped in
        [json!({"email": "other@example.com"}), json!({"email": "first@example.com", "name": "Eve"})]
    {
        let (status, refused) =
            submit(&app, &id, json!({"method": "code", "code": code, "traits": swapped})).await;
        assert_eq!(status, 400, "{refused}");
        assert_eq!(message_ids(&refused), [4000036], "{refused}");
    }
    // The code was not spent on them.
    let (status, done) = submit(&app, &id, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["identity"]["traits"], json!({"email": "first@example.com", "name": "First"}));
}

async fn concurrent_submits_of_one_right_code_make_one_identity(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |_| {}).await;
    let id = send_code(&app, json!({"email": "race@example.com"})).await;
    let code = code_for(&mail, "race@example.com", 0).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (http, path) =
            (app.http.clone(), app.public_path(&format!("/self-service/registration?flow={id}")));
        let body = json!({"method": "code", "code": code});
        set.spawn(async move {
            let response = http.post(path).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = set.join_next().await {
        answers.push(answer.unwrap());
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{answers:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{answers:?}");
    assert_eq!(identities_named(&app, "race@example.com").await.len(), 1);
}

async fn the_code_method_off_is_refused_like_an_unknown_method(backend: Backend) {
    let (app, _mail, _schema) =
        code_app(backend, |c| c.selfservice.methods.code.passwordless_enabled = false).await;
    let flow = native_flow(&app, "registration").await;
    assert!(node(&flow, "method").is_none_or(|n| n["attributes"]["value"] != "code"));
    assert!(!flow["ui"]["nodes"].as_array().unwrap().iter().any(|n| n["group"] == "code"), "{flow}");
    let (status, refused) =
        submit(&app, flow_id(&flow), json!({"method": "code", "traits": {"email": "off@example.com"}})).await;
    let (unknown_status, unknown) = submit(
        &app,
        flow_id(&flow),
        json!({"method": "carrier-pigeon", "traits": {"email": "off@example.com"}}),
    )
    .await;
    assert_eq!((status, unknown_status), (400, 400));
    assert_eq!(message_ids(&refused), message_ids(&unknown));
    assert_eq!(message_ids(&refused), [4010003]);
    let all: Vec<Value> = app.get_json(&app.admin_path("/admin/courier/messages")).await;
    assert!(all.is_empty());
}

async fn password_registration_still_works_beside_it(backend: Backend) {
    let (app, _mail, _schema) = code_app(backend, |c| {
        c.selfservice.flows.registration.after.password.hooks =
            vec![Hook { hook: "session".into(), config: None }];
    })
    .await;
    let done = submit_registration(&app, json!({"email": "pw@example.com"}), PASSWORD).await;
    assert_eq!(done["session"]["authentication_methods"][0]["method"], "password");
    assert_eq!(done["identity"]["verifiable_addresses"][0]["verified"], false);
    // The same identity can be reached by its code identifier as well.
    let id = done["identity"]["id"].as_str().unwrap();
    let stored: Value = app.get_json(&app.admin_path(&format!("/admin/identities/{id}"))).await;
    assert_eq!(stored["credentials"]["password"]["identifiers"], json!(["pw@example.com"]));
    assert_eq!(stored["credentials"]["code"]["identifiers"], json!(["pw@example.com"]));
    // Two steps (profile first): the credentials screen offers both methods.
    let (app, _mail, _schema) = code_app(backend, |c| {
        c.selfservice.flows.registration.style = latchkey::config::RegistrationStyle::ProfileFirst;
    })
    .await;
    let flow = native_flow(&app, "registration").await;
    assert!(node(&flow, "password").is_none() && !flow["ui"]["nodes"].to_string().contains("1040006"));
    let (status, second) =
        submit(&app, flow_id(&flow), json!({"method": "profile", "traits": {"email": "two@example.com"}}))
            .await;
    assert_eq!(status, 400, "{second}");
    assert!(node(&second, "password").is_some());
    assert!(second["ui"]["nodes"].to_string().contains("1040006"), "{second}");
    let (status, sent) = submit(&app, flow_id(&flow), json!({"method": "code"})).await;
    assert_eq!(status, 400, "{sent}");
    assert_eq!(sent["state"], "sent_email");
    let back = node(&sent, "screen").expect("two steps offer the way back");
    assert_eq!(back["attributes"]["value"], "credential-selection");
    // Back to the methods, as Kratos's profile strategy takes that button.
    let (status, methods) = submit(
        &app,
        flow_id(&flow),
        json!({"method": "profile", "screen": "credential-selection", "traits": {"email": "two@example.com"}}),
    )
    .await;
    assert_eq!((status, methods["state"].as_str()), (400, Some("choose_method")), "{methods}");
    assert!(node(&methods, "password").is_some() && node(&methods, "code").is_none(), "{methods}");
}

async fn without_the_session_hook_the_identity_is_made_unsigned_in(backend: Backend) {
    let (app, mail, _schema) =
        code_app(backend, |c| c.selfservice.flows.registration.after.code.hooks.clear()).await;
    let id = send_code(&app, json!({"email": "quiet@example.com"})).await;
    let code = code_for(&mail, "quiet@example.com", 0).await;
    let (status, done) = submit(&app, &id, json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert!(done.get("session").is_none() && done.get("session_token").is_none(), "{done}");
    assert_eq!(done["identity"]["verifiable_addresses"][0]["verified"], true);
}

async fn code_requests_count_toward_the_client_limit(backend: Backend) {
    let (app, _mail, _schema) = code_app(backend, |c| c.security.send_limits.ip.codes_per_minute = 2).await;
    let id = send_code(&app, json!({"email": "busy@example.com"})).await;
    let (status, _) = submit(&app, &id, json!({"method": "code", "resend": "code"})).await;
    assert_eq!(status, 400);
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={id}")))
        .json(&json!({"method": "code", "resend": "code"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    // Checking a code mails nothing and is not counted.
    let (status, refused) = submit(&app, &id, json!({"method": "code", "code": "123456"})).await;
    assert_eq!(status, 400, "{refused}");
}

async fn past_the_address_cap_no_new_code_is_sent_and_the_old_one_works(backend: Backend) {
    let (app, mail, _schema) = code_app(backend, |c| c.security.send_limits.address.max = 1).await;
    let traits = json!({"email": "capped@example.com"});
    let id = send_code(&app, traits.clone()).await;
    let first = code_for(&mail, "capped@example.com", 0).await;
    // The resend answers as a sent code does, but nothing more is mailed.
    let (status, resent) =
        submit(&app, &id, json!({"method": "code", "resend": "code", "traits": traits})).await;
    assert_eq!((status, message_ids(&resent)), (400, vec![1040005]), "{resent}");
    let mails = app.outbox("capped@example.com").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let (status, done) = submit(&app, &id, json!({"method": "code", "code": first})).await;
    assert_eq!(status, 200, "{done}");
}

async fn a_schema_without_a_code_identifier_is_told_so(backend: Backend) {
    let (app, _mail) =
        spawn_app_with_mail(backend, |c| c.selfservice.methods.code.passwordless_enabled = true).await;
    let flow = native_flow(&app, "registration").await;
    let (status, refused) =
        submit(&app, flow_id(&flow), json!({"method": "code", "traits": {"email": "nocode@example.com"}}))
            .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(message_ids(&refused), [4000009], "{refused}");
    assert_eq!(refused["state"], "choose_method");
    let all: Vec<Value> = app.get_json(&app.admin_path("/admin/courier/messages")).await;
    assert!(all.is_empty());
}
