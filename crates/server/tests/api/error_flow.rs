//! The error flow: browsers whose request fails outside the form are sent to
//! the error UI with the id of a stored error, which `GET
//! /self-service/errors?id=` answers; JSON clients and native flows keep the
//! JSON error.

use serde_json::Value;

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, csrf_token_of, native_flow, register, spawn_app, spawn_app_with,
};
use crate::on_both_databases;

on_both_databases!(
    a_lost_csrf_cookie_sends_the_browser_to_the_error_ui,
    json_clients_and_native_flows_keep_json_errors,
    browser_starts_and_logout_forward_their_errors,
    stub_and_unknown_ids,
    settings_without_a_session_sends_the_browser_to_sign_in,
);

const ERROR_UI: &str = "http://127.0.0.1:4455/error";
const FORM: &str = "application/x-www-form-urlencoded";

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| c.selfservice.flows.error.ui_url = ERROR_UI.into()).await
}

/// Follows a 303 to the error UI and reads the error it names.
async fn error_behind(app: &TestApp, response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let id = location.strip_prefix(&format!("{ERROR_UI}?id=")).unwrap_or_else(|| panic!("{location}"));
    let response =
        app.http.get(app.public_path(&format!("/self-service/errors?id={id}"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let container: Value = response.json().await.unwrap();
    assert_eq!(container["id"], id);
    assert!(container["created_at"].is_string() && container["updated_at"].is_string(), "{container}");
    container["error"].clone()
}

/// A browser login flow: its id, the jar holding its CSRF cookie, and its token.
async fn browser_login(app: &TestApp) -> (String, Jar, String) {
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
    (flow["id"].as_str().unwrap().to_string(), jar, csrf)
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn a_lost_csrf_cookie_sends_the_browser_to_the_error_ui(backend: Backend) {
    let app = app(backend).await;
    let (id, _jar, csrf) = browser_login(&app).await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={id}")))
        .header("content-type", FORM)
        .body(format!("method=password&identifier=a%40b.co&password={PASSWORD}&csrf_token={}", encode(&csrf)))
        .send()
        .await
        .unwrap();
    let error = error_behind(&app, response).await;
    assert_eq!(error["id"], "security_csrf_violation");
    assert_eq!(error["code"], 403);
    assert_eq!(error["status"], "Forbidden");
    assert_eq!(error["details"]["reject_reason"], "The anti-CSRF cookie is missing from the request.");

    // A flow that does not exist is no form to show either.
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={}", uuid::Uuid::new_v4())))
        .header("content-type", FORM)
        .body("method=password")
        .send()
        .await
        .unwrap();
    assert_eq!(error_behind(&app, response).await["code"], 404);

    // A wrong password is the form's business: back to the login UI.
    let (id, jar, csrf) = browser_login(&app).await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={id}")))
        .header("cookie", jar.header())
        .header("content-type", FORM)
        .body(format!("method=password&identifier=a%40b.co&password=wrong&csrf_token={}", encode(&csrf)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("http://127.0.0.1:4455/login?flow={id}"));
    app.stop().await;
}

async fn json_clients_and_native_flows_keep_json_errors(backend: Backend) {
    let app = app(backend).await;
    let (id, _jar, csrf) = browser_login(&app).await;
    // The same lost cookie, asked for as JSON (also axios's default Accept).
    for accept in ["application/json", "application/json, text/plain, */*"] {
        let response = app
            .http
            .post(app.public_path(&format!("/self-service/login?flow={id}")))
            .header("accept", accept)
            .header("content-type", FORM)
            .body(format!("method=password&identifier=a%40b.co&password=x&csrf_token={}", encode(&csrf)))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{accept}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["id"], "security_csrf_violation");
    }
    // A native flow posted as a form by something carrying cookies.
    let flow = native_flow(&app, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .header("cookie", "some=cookie")
        .header("content-type", FORM)
        .body(format!("method=password&identifier=a%40b.co&password={PASSWORD}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["reason"].as_str().unwrap().contains("cookies"), "{body}");
    // Starting a native flow never redirects.
    let response = app
        .http
        .get(app.public_path("/self-service/login/api?return_to=https://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    // The logout URL for an SDK without a session: 401 JSON, as before.
    let response = app
        .http
        .get(app.public_path("/self-service/logout/browser"))
        .header("accept", "application/json, text/plain, */*")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}

async fn browser_starts_and_logout_forward_their_errors(backend: Backend) {
    let app = app(backend).await;
    let response = app
        .http
        .get(app.public_path("/self-service/registration/browser?return_to=https://evil.example/"))
        .send()
        .await
        .unwrap();
    let error = error_behind(&app, response).await;
    assert_eq!(error["id"], "self_service_flow_return_to_forbidden");
    assert_eq!(error["code"], 400);

    let response =
        app.http.get(app.public_path("/self-service/logout?token=ory_lo_not-a-token")).send().await.unwrap();
    assert_eq!(error_behind(&app, response).await["code"], 401);
    app.stop().await;
}

async fn stub_and_unknown_ids(backend: Backend) {
    let app = spawn_app(backend).await;
    for query in ["id=stub:500", "error=stub:500", "error=&id=stub:500"] {
        let response =
            app.http.get(app.public_path(&format!("/self-service/errors?{query}"))).send().await.unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let container: Value = response.json().await.unwrap();
        assert!(uuid::Uuid::parse_str(container["id"].as_str().unwrap()).is_ok());
        assert_eq!(container["error"]["code"], 500);
        assert_eq!(container["error"]["status"], "Internal Server Error");
        assert_eq!(container["error"]["reason"], "This is a stub error.");
    }
    for id in [uuid::Uuid::new_v4().to_string(), "does-not-exist".into(), String::new()] {
        let response =
            app.http.get(app.public_path(&format!("/self-service/errors?id={id}"))).send().await.unwrap();
        assert_eq!(response.status(), 404, "{id}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], 404);
    }
    // The admin port sends it to the public one, as Kratos does.
    let response =
        app.http.get(app.admin_path("/admin/self-service/errors?id=stub:500")).send().await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], app.public_path("/self-service/errors?id=stub:500"));
    app.stop().await;
}

async fn settings_without_a_session_sends_the_browser_to_sign_in(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = register(&app, "settings-gone@example.com", PASSWORD).await;
    let mut jar = Jar::default();
    let response = app
        .http
        .get(app.public_path("/self-service/settings/browser"))
        .header("cookie", format!("ory_kratos_session={token}"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    jar.store(&response);
    let flow: Value = response.json().await.unwrap();
    let csrf = csrf_token_of(&flow);
    // The CSRF cookie is there, the session cookie is not.
    let submit = || {
        app.http
            .post(app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())))
            .header("cookie", jar.header())
            .header("content-type", FORM)
            .body(format!("method=password&password={PASSWORD}&csrf_token={}", encode(&csrf)))
    };
    let response = submit().send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], app.public_path("/self-service/login/browser"));
    let response = submit().header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 401);
    app.stop().await;
}
