//! What Ory Elements (contrib/elements, driven in Chromium by
//! tests/browser/suites/elements.test.mjs) sends, replayed over HTTP: an app
//! on another origin calling the browser flows with JSON, cookies and CORS.

use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, code_for, create_identity, csrf_token_of, names, spawn_app_with_mail,
};
use crate::on_both_databases;

on_both_databases!(
    recovery_code_with_the_empty_resend_field,
    two_step_registration_leaves_no_method_active,
    refresh_login_knows_the_identifier,
);

const APP: &str = "http://127.0.0.1:5173";

/// A browser flow started as the app's page does, with its cookies and CSRF token.
async fn browser_flow(app: &TestApp, kind: &str, jar: &mut Jar) -> (Value, String) {
    let response = app
        .http
        .get(app.public_path(&format!("/self-service/{kind}/browser")))
        .header("accept", "application/json")
        .header("origin", APP)
        .send()
        .await
        .unwrap();
    jar.store(&response);
    let flow: Value = response.json().await.unwrap();
    let csrf = csrf_token_of(&flow);
    (flow, csrf)
}

/// A submit as the SDK makes it: JSON, from the app's origin, with cookies.
async fn submit(app: &TestApp, kind: &str, flow: &Value, jar: &mut Jar, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/{kind}?flow={}", flow["id"].as_str().unwrap())))
        .header("accept", "application/json")
        .header("origin", APP)
        .header("cookie", jar.header())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers().get("access-control-allow-origin").and_then(|v| v.to_str().ok()),
        Some(APP)
    );
    jar.store(&response);
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn app_for_elements(
    backend: Backend,
) -> (TestApp, std::sync::Arc<std::sync::Mutex<Vec<latchkey_courier::test_smtp::Received>>>) {
    spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        c.selfservice.flows.settings.ui_url = format!("{APP}/settings");
        let cors = &mut c.serve.public.cors;
        cors.enabled = true;
        cors.allowed_origins = vec![APP.into()];
    })
    .await
}

/// Elements sends every field of the form, so the code arrives with the
/// resend button's `email` empty. Kratos reads an empty `email` as none (a
/// code attempt); reading it as a resend fails with "email is missing".
async fn recovery_code_with_the_empty_resend_field(backend: Backend) {
    let (app, received) = app_for_elements(backend).await;
    create_identity(&app, "elements-recovery@example.com").await;
    let mut jar = Jar::default();
    let (flow, csrf) = browser_flow(&app, "recovery", &mut jar).await;
    let (status, sent) = submit(
        &app,
        "recovery",
        &flow,
        &mut jar,
        json!({"method": "code", "email": "elements-recovery@example.com", "csrf_token": csrf}),
    )
    .await;
    assert_eq!((status, sent["state"].as_str()), (200, Some("sent_email")), "{sent}");
    let code = code_for(&received, "elements-recovery@example.com", 0).await;

    let (status, done) = submit(
        &app,
        "recovery",
        &flow,
        &mut jar,
        json!({"method": "code", "code": code, "email": "", "csrf_token": csrf}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["state"], "passed_challenge");
    let next = &done["continue_with"][0];
    assert_eq!(next["action"], "show_settings_ui");
    let url = next["flow"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{APP}/settings?flow=")), "{url}");
    assert!(jar.get("ory_kratos_session").is_some());
    app.stop().await;
}

/// Elements reads `active` to pick which group of nodes to show. After the
/// profile step of two-step registration Kratos leaves no method active, so
/// Elements shows the password form; an `active: profile` made it show the
/// profile group only (a "Back" button) and no password field.
async fn two_step_registration_leaves_no_method_active(backend: Backend) {
    let (app, _received) = spawn_app_with_mail(backend, |c| {
        c.selfservice.flows.registration.style = latchkey::config::RegistrationStyle::ProfileFirst;
        let cors = &mut c.serve.public.cors;
        cors.enabled = true;
        cors.allowed_origins = vec![APP.into()];
    })
    .await;
    let mut jar = Jar::default();
    let (flow, csrf) = browser_flow(&app, "registration", &mut jar).await;
    let traits = json!({"email": "two-steps@example.com"});
    let (status, second) = submit(
        &app,
        "registration",
        &flow,
        &mut jar,
        json!({"method": "profile", "traits": traits, "csrf_token": csrf}),
    )
    .await;
    assert_eq!(status, 400, "Kratos answers the next screen as 400 with the flow: {second}");
    assert_eq!(second["state"], "choose_method");
    assert!(second.get("active").is_none(), "{second}");
    assert!(names(&second).contains(&"password".to_string()));

    // Going back to the profile form leaves none active either.
    let (_, back) = submit(
        &app,
        "registration",
        &flow,
        &mut jar,
        json!({"method": "profile", "screen": "previous", "traits": traits, "csrf_token": csrf}),
    )
    .await;
    assert!(back.get("active").is_none(), "{back}");
    let (_, second) = submit(
        &app,
        "registration",
        &flow,
        &mut jar,
        json!({"method": "profile", "traits": traits, "csrf_token": csrf}),
    )
    .await;
    assert!(second.get("active").is_none(), "{second}");

    // The credentials screen signs up with what Elements sends: the hidden traits and the password.
    let (status, done) = submit(
        &app,
        "registration",
        &flow,
        &mut jar,
        json!({"method": "password", "traits": traits, "password": PASSWORD, "csrf_token": csrf}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["identity"]["traits"]["email"], "two-steps@example.com");
    app.stop().await;
}

/// A settings change past `privileged_session_max_age` sends Elements to a
/// refresh login, whose form it shows as Kratos builds it: the identifier
/// hidden and filled in, only the password asked for. Elements then submits
/// the hidden identifier with the password, and follows the answer's
/// `redirect_browser_to` back to settings.
async fn refresh_login_knows_the_identifier(backend: Backend) {
    let (app, _received) = app_for_elements(backend).await;
    create_identity(&app, "elements-refresh@example.com").await;
    let mut jar = Jar::default();
    let (flow, csrf) = browser_flow(&app, "login", &mut jar).await;
    let identifier = |flow: &Value| {
        flow["ui"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["attributes"]["name"] == "identifier")
            .cloned()
    };
    assert_eq!(identifier(&flow).unwrap()["attributes"]["type"], "text", "a first login asks for it");
    let (status, _) = submit(
        &app,
        "login",
        &flow,
        &mut jar,
        json!({"method": "password", "identifier": "elements-refresh@example.com", "password": PASSWORD, "csrf_token": csrf}),
    )
    .await;
    assert_eq!(status, 200);

    let back = app.public_path("/self-service/settings/browser");
    let response = app
        .http
        .get(app.public_path("/self-service/login/browser"))
        .query(&[("refresh", "true"), ("return_to", back.as_str())])
        .header("accept", "application/json")
        .header("origin", APP)
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    jar.store(&response);
    let refresh: Value = response.json().await.unwrap();
    assert_eq!(refresh["refresh"], true);
    let node = identifier(&refresh).unwrap();
    assert_eq!(node["attributes"]["type"], "hidden", "{node}");
    assert_eq!(node["attributes"]["value"], "elements-refresh@example.com");
    assert!(node["meta"].get("label").is_none_or(Value::is_null), "{node}");

    let csrf = csrf_token_of(&refresh);
    let (status, done) = submit(
        &app,
        "login",
        &refresh,
        &mut jar,
        json!({"method": "password", "identifier": "elements-refresh@example.com", "password": PASSWORD, "csrf_token": csrf}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    // Elements follows this back to where the refresh was asked for.
    assert_eq!(
        done["continue_with"],
        json!([{"action": "redirect_browser_to", "redirect_browser_to": back}])
    );

    // Settings asks for that refresh with a return to `GET /self-service/settings?flow=`,
    // which sends the browser on to the settings UI with its flow.
    let settings: Value = app
        .http
        .get(app.public_path("/self-service/settings/browser"))
        .header("accept", "application/json")
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = settings["id"].as_str().unwrap();
    let response = app
        .http
        .get(app.public_path(&format!("/self-service/settings?flow={id}")))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("{APP}/settings?flow={id}").as_str());

    // Without a session a refresh is an ordinary login form.
    let anonymous: Value = app
        .http
        .get(app.public_path("/self-service/login/browser?refresh=true"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(identifier(&anonymous).unwrap()["attributes"]["type"], "text");
    app.stop().await;
}
