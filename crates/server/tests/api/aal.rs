//! Authenticator assurance levels as Kratos enforces them: an identity with
//! a second factor (TOTP, backup codes) is `aal2`-capable, and with
//! `required_aal: highest_available` (the default for whoami and settings)
//! its `aal1` sessions are refused with 403 `session_aal2_required` until
//! they step up; a password sign-in sends browsers to that step-up; linking
//! a factor raises the linking session; recovery hands out an `aal1` session
//! that must step up before settings. TOTP codes are computed from the key
//! the settings flow shows.

use std::time::Duration;

use latchkey::config::{Config, RequiredAal};
use latchkey_domain::second_factor::totp::TotpKey;
use latchkey_domain::time::Clock;
use ory_kratos_client::apis::{Error, frontend_api};
use ory_kratos_client::models::{UpdateLoginFlowBody, UpdateLoginFlowWithPasswordMethod};
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, code_for, csrf_token_of, get_as, native_flow, settings_flow,
    spawn_app_with, spawn_app_with_mail,
};
use crate::on_both_databases;
use crate::second_factors::{second_factors_on, submit as submit_settings, with_totp};

on_both_databases!(
    native_sessions_below_the_available_aal_are_refused_until_they_step_up,
    aal1_requirements_let_aal1_sessions_through,
    removing_second_factors_lowers_the_available_aal,
    browsers_are_sent_to_the_step_up,
    recovery_asks_for_the_second_factor_before_settings,
);

const SETTINGS_UI: &str = "http://127.0.0.1:4455/settings";

fn with_factors(c: &mut Config) {
    second_factors_on(c);
    c.selfservice.flows.settings.ui_url = SETTINGS_UI.into();
}

fn step_up_login(app: &TestApp) -> String {
    app.public_path("/self-service/login/browser?aal=aal2")
}

/// A query value as the server encodes it (`application/x-www-form-urlencoded`).
fn encoded(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => (b as char).to_string(),
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A native password sign-in through the SDK: the token and the session.
async fn sign_in(app: &TestApp, email: &str) -> (String, ory_kratos_client::models::Session) {
    let flow = native_flow(app, "login").await;
    let body = UpdateLoginFlowBody::Password(Box::new(UpdateLoginFlowWithPasswordMethod::new(
        email.into(),
        "password".into(),
        PASSWORD.into(),
    )));
    let done = frontend_api::update_login_flow(&app.public, flow["id"].as_str().unwrap(), body, None, None)
        .await
        .expect("the password is right");
    (done.session_token.expect("native logins return a token"), *done.session)
}

/// Kratos's `session_aal2_required` with the step-up login in both places.
fn assert_aal2_required(body: &Value, redirect_browser_to: &str) {
    assert_eq!(body["error"]["id"], "session_aal2_required", "{body}");
    assert_eq!(body["error"]["code"], 403);
    assert_eq!(body["error"]["status"], "Forbidden");
    assert_eq!(
        body["error"]["message"],
        "Session does not fulfill the requested Authenticator Assurance Level"
    );
    assert_eq!(
        body["error"]["reason"],
        "An active session was found but it does not fulfill the requested Authenticator Assurance Level. Please verify yourself with a second factor to resolve this issue."
    );
    assert_eq!(body["redirect_browser_to"], redirect_browser_to);
    assert_eq!(body["error"]["details"]["redirect_browser_to"], redirect_browser_to);
}

/// Steps a native session up with the TOTP code of the next time step.
async fn step_up(app: &TestApp, token: &str, key: &TotpKey) -> Value {
    let (status, flow) = get_as(app, "/self-service/login/api?aal=aal2", token).await;
    assert_eq!(status, 200, "{flow}");
    app.clock.advance(Duration::from_secs(30));
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", token)
        .json(&json!({"method": "totp", "totp_code": key.code_at(app.clock.now())}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn native_sessions_below_the_available_aal_are_refused_until_they_step_up(backend: Backend) {
    let app = spawn_app_with(backend, with_factors).await;
    let (linked, _, key, _) = with_totp(&app, "native-aal@example.com").await;

    // Linking proved the app: Kratos adds the method at aal2 to that session.
    let session = frontend_api::to_session(&app.public, Some(&linked), None, None).await.unwrap();
    let methods = serde_json::to_value(&session.authentication_methods).unwrap();
    assert_eq!(session.authenticator_assurance_level.map(|a| a.to_string()), Some("aal2".into()));
    assert_eq!((methods[0]["method"].as_str(), methods[0]["aal"].as_str()), (Some("password"), Some("aal1")));
    assert_eq!((methods[1]["method"].as_str(), methods[1]["aal"].as_str()), (Some("totp"), Some("aal2")));
    assert!(session.authenticated_at.is_some());

    // A password sign-in is aal1; the answer keeps the identity back.
    let (token, session) = sign_in(&app, "native-aal@example.com").await;
    assert_eq!(session.authenticator_assurance_level.map(|a| a.to_string()), Some("aal1".into()));
    assert!(session.identity.is_none(), "no identity until the second factor");

    // Whoami (the SDK sees a 403) and the session list refuse it.
    match frontend_api::to_session(&app.public, Some(&token), None, None).await {
        Err(Error::ResponseError(r)) => {
            assert_eq!(r.status.as_u16(), 403);
            assert_aal2_required(&serde_json::from_str(&r.content).unwrap(), &step_up_login(&app));
        }
        other => panic!("whoami let an aal1 session through: {other:?}"),
    }
    let (status, body) = get_as(&app, "/sessions", &token).await;
    assert_eq!(status, 403);
    assert_aal2_required(&body, &step_up_login(&app));

    // Settings too: starting, fetching (back to the settings UI) and submitting (back to the submit).
    let (status, body) = get_as(&app, "/self-service/settings/api", &token).await;
    assert_eq!(status, 403);
    assert_aal2_required(&body, &step_up_login(&app));
    let flow = settings_flow(&app, &linked).await;
    let id = flow["id"].as_str().unwrap();
    let (status, body) = get_as(&app, &format!("/self-service/settings/flows?id={id}"), &token).await;
    assert_eq!(status, 403);
    let back = format!("{SETTINGS_UI}?flow={id}");
    assert_aal2_required(&body, &format!("{}&return_to={}", step_up_login(&app), encoded(&back)));
    let (status, body) = submit_settings(
        &app,
        &token,
        &flow,
        json!({"method": "profile", "traits": {"email": "x@example.com"}}),
    )
    .await;
    assert_eq!(status, 403);
    let back = app.public_path(&format!("/self-service/settings?flow={id}"));
    assert_aal2_required(&body, &format!("{}&return_to={}", step_up_login(&app), encoded(&back)));

    // Stepped up, everything answers.
    let done = step_up(&app, &token, &key).await;
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert_eq!(session.authenticator_assurance_level.map(|a| a.to_string()), Some("aal2".into()));
    assert!(session.identity.is_some());
    let (status, _) = get_as(&app, "/sessions", &token).await;
    assert_eq!(status, 200);
    let (status, fetched) = get_as(&app, &format!("/self-service/settings/flows?id={id}"), &token).await;
    assert_eq!(status, 200, "{fetched}");

    // A refresh by password keeps what the session proved (Kratos adds the
    // method to that session): still aal2, so nothing is held back.
    let (status, refresh) = get_as(&app, "/self-service/login/api?refresh=true", &token).await;
    assert_eq!(status, 200, "{refresh}");
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", refresh["id"].as_str().unwrap())))
        .header("x-session-token", &token)
        .json(&json!({"method": "password", "identifier": "native-aal@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refreshed: Value = response.json().await.unwrap();
    let session = &refreshed["session"];
    assert_eq!(session["authenticator_assurance_level"], "aal2");
    assert!(session["identity"].is_object());
    let methods: Vec<&str> = session["authentication_methods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["method"].as_str().unwrap())
        .collect();
    assert_eq!(methods, ["password", "totp", "password"]);
    let (status, _) = get_as(&app, "/sessions/whoami", refreshed["session_token"].as_str().unwrap()).await;
    assert_eq!(status, 200);
    app.stop().await;
}

async fn aal1_requirements_let_aal1_sessions_through(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        with_factors(c);
        c.session.whoami.required_aal = RequiredAal::Aal1;
    })
    .await;
    with_totp(&app, "aal1-whoami@example.com").await;
    let (token, session) = sign_in(&app, "aal1-whoami@example.com").await;
    assert!(session.identity.is_some(), "whoami would answer: the identity is shown");
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert_eq!(session.authenticator_assurance_level.map(|a| a.to_string()), Some("aal1".into()));
    // Settings keeps its own requirement (highest_available).
    let (status, body) = get_as(&app, "/self-service/settings/api", &token).await;
    assert_eq!(status, 403);
    assert_aal2_required(&body, &step_up_login(&app));
    app.stop().await;

    let app = spawn_app_with(backend, |c| {
        with_factors(c);
        c.selfservice.flows.settings.required_aal = RequiredAal::Aal1;
    })
    .await;
    with_totp(&app, "aal1-settings@example.com").await;
    let (token, _) = sign_in(&app, "aal1-settings@example.com").await;
    let (status, flow) = get_as(&app, "/self-service/settings/api", &token).await;
    assert_eq!(status, 200, "{flow}");
    let (status, saved) = submit_settings(
        &app,
        &token,
        &flow,
        json!({"method": "profile", "traits": {"email": "aal1-settings@example.com"}}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");
    let (status, _) = get_as(&app, "/sessions/whoami", &token).await;
    assert_eq!(status, 403, "whoami keeps highest_available");
    app.stop().await;
}

async fn removing_second_factors_lowers_the_available_aal(backend: Backend) {
    let app = spawn_app_with(backend, with_factors).await;
    let (linked, identity_id, _, _) = with_totp(&app, "lost-phone@example.com").await;
    // Backup codes too.
    let flow = settings_flow(&app, &linked).await;
    let (_, made) = submit_settings(&app, &linked, &flow, json!({"lookup_secret_regenerate": true})).await;
    let (status, _) = submit_settings(&app, &linked, &made, json!({"lookup_secret_confirm": true})).await;
    assert_eq!(status, 200);

    let (token, _) = sign_in(&app, "lost-phone@example.com").await;
    let (status, _) = get_as(&app, "/sessions/whoami", &token).await;
    assert_eq!(status, 403);
    // Refusing costs no read: the identity's level comes with the cached session.
    let misses_before = cache_misses(&app).await;
    for _ in 0..10 {
        assert_eq!(get_as(&app, "/sessions/whoami", &token).await.0, 403);
    }
    // (PostgreSQL may evict once more on a late notification of the sign-in's own writes.)
    assert!(cache_misses(&app).await - misses_before <= 1.0, "refusals were answered from the cache");
    let delete = |kind: &str| {
        app.http.delete(app.admin_path(&format!("/admin/identities/{identity_id}/credentials/{kind}"))).send()
    };
    assert_eq!(delete("totp").await.unwrap().status(), 204);
    let (status, _) = get_as(&app, "/sessions/whoami", &token).await;
    assert_eq!(status, 403, "the backup codes still make it aal2");
    assert_eq!(delete("lookup_secret").await.unwrap().status(), 204);
    let (status, session) = get_as(&app, "/sessions/whoami", &token).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["authenticator_assurance_level"], "aal1");
    assert_eq!(session["identity"]["id"], identity_id.as_str());
    let (status, _) = get_as(&app, "/self-service/settings/api", &token).await;
    assert_eq!(status, 200);

    // Unlinking in settings lowers it the same way.
    let (linked, _, _, _) = with_totp(&app, "unlink@example.com").await;
    let (token, _) = sign_in(&app, "unlink@example.com").await;
    assert_eq!(get_as(&app, "/sessions/whoami", &token).await.0, 403);
    let flow = settings_flow(&app, &linked).await;
    let (status, _) = submit_settings(&app, &linked, &flow, json!({"totp_unlink": true})).await;
    assert_eq!(status, 200);
    assert_eq!(get_as(&app, "/sessions/whoami", &token).await.0, 200);
    // The session that linked keeps its aal2: removing a factor changes no session.
    let (_, session) = get_as(&app, "/sessions/whoami", &linked).await;
    assert_eq!(session["authenticator_assurance_level"], "aal2");
    app.stop().await;
}

async fn cache_misses(app: &TestApp) -> f64 {
    let body = app.http.get(app.metrics_url()).send().await.unwrap().text().await.unwrap();
    let series = "latchkey_whoami_cache_lookups_total{result=\"miss\"} ";
    let line = body.lines().find(|l| l.starts_with(series)).expect("whoami's cache is measured");
    line[series.len()..].trim().parse().unwrap()
}

async fn browser_get(app: &TestApp, url: &str, jar: &mut Jar, json: bool) -> reqwest::Response {
    let mut request = app.http.get(url).header("cookie", jar.header());
    if json {
        request = request.header("accept", "application/json");
    }
    let response = request.send().await.unwrap();
    jar.store(&response);
    response
}

/// A browser login flow started at `init` (JSON), submitted with the password.
async fn browser_password_login(
    app: &TestApp,
    init: &str,
    email: &str,
    jar: &mut Jar,
    json: bool,
) -> reqwest::Response {
    let flow: Value = browser_get(app, &app.public_path(init), jar, true).await.json().await.unwrap();
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let csrf = csrf_token_of(&flow);
    let mut request = app.http.post(url).header("cookie", jar.header());
    request = if json {
        request.header("accept", "application/json").json(
            &json!({"method": "password", "identifier": email, "password": PASSWORD, "csrf_token": csrf}),
        )
    } else {
        request.form(&[
            ("method", "password"),
            ("identifier", email),
            ("password", PASSWORD),
            ("csrf_token", &csrf),
        ])
    };
    let response = request.send().await.unwrap();
    jar.store(&response);
    response
}

fn location(response: &reqwest::Response) -> String {
    response.headers()["location"].to_str().unwrap().to_string()
}

async fn browsers_are_sent_to_the_step_up(backend: Backend) {
    let app = spawn_app_with(backend, with_factors).await;
    let email = "browser-aal@example.com";
    let (_, _, key, _) = with_totp(&app, email).await;

    // A page posting the password form is sent to the step-up login (303),
    // signed in at aal1, with the flow's return_to passed on.
    let mut jar = Jar::default();
    let after = "http://127.0.0.1:4455/after";
    let init = format!("/self-service/login/browser?return_to={}", encoded(after));
    let response = browser_password_login(&app, &init, email, &mut jar, false).await;
    assert_eq!(response.status(), 303);
    let step_up = format!("{}&return_to={}", step_up_login(&app), encoded(after));
    assert_eq!(location(&response), step_up);
    assert!(jar.get("ory_kratos_session").is_some(), "the aal1 session arrives as a cookie");
    let whoami = browser_get(&app, &app.public_path("/sessions/whoami"), &mut jar, true).await;
    assert_eq!(whoami.status(), 403);

    // Following it: the step-up login flow, the code, then where the browser first wanted to go.
    let response = browser_get(&app, &step_up, &mut jar, false).await;
    assert_eq!(response.status(), 303);
    let id = location(&response).split("flow=").nth(1).unwrap().to_string();
    let flow: Value =
        browser_get(&app, &app.public_path(&format!("/self-service/login/flows?id={id}")), &mut jar, true)
            .await
            .json()
            .await
            .unwrap();
    assert_eq!(flow["requested_aal"], "aal2");
    app.clock.advance(Duration::from_secs(30));
    let code = key.code_at(app.clock.now());
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={id}")))
        .header("cookie", jar.header())
        .form(&[("method", "totp"), ("totp_code", code.as_str()), ("csrf_token", &csrf_token_of(&flow))])
        .send()
        .await
        .unwrap();
    jar.store(&response);
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), after);
    let whoami: Value =
        browser_get(&app, &app.public_path("/sessions/whoami"), &mut jar, true).await.json().await.unwrap();
    assert_eq!(whoami["authenticator_assurance_level"], "aal2");

    // A single-page app gets 422 browser_location_change_required instead.
    let mut jar = Jar::default();
    let response = browser_password_login(&app, "/self-service/login/browser", email, &mut jar, true).await;
    assert_eq!(response.status(), 422);
    assert!(jar.get("ory_kratos_session").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["id"], "browser_location_change_required");
    assert_eq!(body["redirect_browser_to"], step_up_login(&app));

    // Settings: a page is sent to the step-up, back to this very start when
    // it named a return_to; JSON gets the 403.
    let settings = app.public_path("/self-service/settings/browser");
    let response = browser_get(&app, &settings, &mut jar, false).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), step_up_login(&app));
    let with_return = format!("{settings}?return_to={}", encoded(after));
    let response = browser_get(&app, &with_return, &mut jar, false).await;
    assert_eq!(location(&response), format!("{}&return_to={}", step_up_login(&app), encoded(&with_return)));
    let response = browser_get(&app, &settings, &mut jar, true).await;
    assert_eq!(response.status(), 403);
    assert_aal2_required(&response.json().await.unwrap(), &step_up_login(&app));
    app.stop().await;
}

async fn recovery_asks_for_the_second_factor_before_settings(backend: Backend) {
    let (app, received) = spawn_app_with_mail(backend, |c| {
        with_factors(c);
        c.selfservice.flows.recovery.enabled = true;
        c.ui.enabled = true;
    })
    .await;
    let email = "recover-aal@example.com";
    let (_, _, key, _) = with_totp(&app, email).await;

    // Native: the code signs in at aal1 and hands over a settings flow, as in Kratos.
    let flow = native_flow(&app, "recovery").await;
    let url = app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap()));
    let post = |body: Value| {
        let request = app.http.post(&url).json(&body);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, _) = post(json!({"method": "code", "email": email})).await;
    assert_eq!(status, 200);
    let code = code_for(&received, email, 0).await;
    let (status, done) = post(json!({"method": "code", "code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["continue_with"][0]["action"], "set_ory_session_token");
    assert_eq!(done["continue_with"][1]["action"], "show_settings_ui");
    let token = done["continue_with"][0]["ory_session_token"].as_str().unwrap().to_string();
    let settings_id = done["continue_with"][1]["flow"]["id"].as_str().unwrap().to_string();

    // Whoami and the settings flow want the second factor first.
    let (status, body) = get_as(&app, "/sessions/whoami", &token).await;
    assert_eq!(status, 403);
    assert_aal2_required(&body, &step_up_login(&app));
    let (status, body) =
        get_as(&app, &format!("/self-service/settings/flows?id={settings_id}"), &token).await;
    assert_eq!(status, 403);
    let back = format!("{SETTINGS_UI}?flow={settings_id}");
    assert_aal2_required(&body, &format!("{}&return_to={}", step_up_login(&app), encoded(&back)));

    // The TOTP code steps the recovery session up; then the new password goes in.
    let done = step_up(&app, &token, &key).await;
    let methods = &done["session"]["authentication_methods"];
    assert_eq!(
        (methods[0]["method"].as_str(), methods[1]["method"].as_str()),
        (Some("code_recovery"), Some("totp"))
    );
    let (status, settings) =
        get_as(&app, &format!("/self-service/settings/flows?id={settings_id}"), &token).await;
    assert_eq!(status, 200, "{settings}");
    let (status, saved) = submit_settings(
        &app,
        &token,
        &settings,
        json!({"method": "password", "password": "a-new-and-long-passphrase"}),
    )
    .await;
    assert_eq!(status, 200, "{saved}");

    // A browser's account page sends it to the step-up login, which returns to it.
    let mut jar = Jar::default();
    let flow: Value = browser_get(&app, &app.public_path("/self-service/recovery/browser"), &mut jar, true)
        .await
        .json()
        .await
        .unwrap();
    let csrf = csrf_token_of(&flow);
    let url = app.public_path(&format!("/self-service/recovery?flow={}", flow["id"].as_str().unwrap()));
    let send = |body: Value, cookie: String| {
        let request =
            app.http.post(&url).header("accept", "application/json").header("cookie", cookie).json(&body);
        async move { request.send().await.unwrap() }
    };
    assert_eq!(
        send(json!({"method": "code", "email": email, "csrf_token": csrf}), jar.header()).await.status(),
        200
    );
    let code = code_for(&received, email, 1).await;
    let done = send(json!({"method": "code", "code": code, "csrf_token": csrf}), jar.header()).await;
    assert_eq!(done.status(), 200);
    jar.store(&done);
    let body: Value = done.json().await.unwrap();
    let settings_id = body["continue_with"][0]["flow"]["id"].as_str().unwrap().to_string();
    let page = app.public_path(&format!("/ui/settings?flow={settings_id}"));
    let response = browser_get(&app, &page, &mut jar, false).await;
    assert_eq!(response.status(), 303);
    let back = format!("{SETTINGS_UI}?flow={settings_id}");
    assert_eq!(location(&response), format!("{}&return_to={}", step_up_login(&app), encoded(&back)));
    app.stop().await;
}
