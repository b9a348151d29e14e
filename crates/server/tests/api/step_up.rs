//! Login at AAL2 (`?aal=aal2`): a signed-in session steps up with a TOTP
//! code or a backup recovery code, as Kratos's `totp` and `lookup_secret`
//! login strategies do. Codes are computed from the key the settings flow
//! shows.

use std::time::Duration;

use latchkey_domain::time::Clock;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, csrf_token_of, get_as, login, names, register, settings_flow,
    spawn_app_with,
};
use crate::on_both_databases;
use crate::second_factors::{
    all_at_once, group_ids, listed_codes, node, second_factors_on, submit as submit_settings, with_totp,
};

on_both_databases!(
    native_step_up_with_totp_raises_the_same_session,
    a_backup_code_steps_up_once,
    no_second_factor_offers_no_method,
    browser_step_up_keeps_the_cookie_and_says_where_to_go,
    a_burst_of_wrong_codes_gets_only_the_free_guesses_judged,
);

async fn step_up_flow(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut request = app.http.get(app.public_path("/self-service/login/api?aal=aal2"));
    if let Some(token) = token {
        request = request.header("x-session-token", token);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn submit(app: &TestApp, token: &str, flow: &Value, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A fresh aal1 session by password, the identity's second factor set up
/// by an earlier one (which linking raised to aal2): its token and id.
async fn sign_in(app: &TestApp, email: &str) -> (String, String) {
    let flow: Value =
        app.http.get(app.public_path("/self-service/login/api")).send().await.unwrap().json().await.unwrap();
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({"method": "password", "identifier": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal1");
    let token = done["session_token"].as_str().unwrap().to_string();
    (token, done["session"]["id"].as_str().unwrap().to_string())
}

/// Whoami refuses an aal1 session of an identity with a second factor
/// (`session.whoami.required_aal: highest_available`, the default).
async fn whoami_wants_aal2(app: &TestApp, token: &str) {
    let (status, body) = get_as(app, "/sessions/whoami", token).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["id"], "session_aal2_required");
}

async fn whoami(app: &TestApp, token: &str) -> Value {
    let (status, body) = get_as(app, "/sessions/whoami", token).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Registers and saves backup codes through settings; returns the
/// (now aal2) token and the codes.
async fn with_codes(app: &TestApp, email: &str) -> (String, Vec<String>) {
    let (token, _) = register(app, email, PASSWORD).await;
    let flow = settings_flow(app, &token).await;
    let (_, made) = submit_settings(app, &token, &flow, json!({"lookup_secret_regenerate": true})).await;
    let codes = listed_codes(&made);
    let (status, _) = submit_settings(app, &token, &made, json!({"lookup_secret_confirm": true})).await;
    assert_eq!(status, 200);
    (token, codes)
}

async fn native_step_up_with_totp_raises_the_same_session(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (linked, _, key, _) = with_totp(&app, "stepup@example.com").await;
    // Linking proved the app: that session is aal2 already, as in Kratos.
    assert_eq!(whoami(&app, &linked).await["authenticator_assurance_level"], "aal2");
    let (token, session_id) = sign_in(&app, "stepup@example.com").await;
    // Read (and cached) by whoami before the step-up: the raise must show at once.
    whoami_wants_aal2(&app, &token).await;

    // No session: the first factor comes first.
    let (status, refused) = step_up_flow(&app, None).await;
    assert_eq!(status, 401, "{refused}");
    assert_eq!(refused["error"]["id"], "session_aal1_required");
    // An unknown level.
    let response = app.http.get(app.public_path("/self-service/login/api?aal=aal7")).send().await.unwrap();
    assert_eq!(response.status(), 400);

    let (status, flow) = step_up_flow(&app, Some(&token)).await;
    assert_eq!(status, 200, "{flow}");
    assert_eq!(flow["requested_aal"], "aal2");
    assert_eq!(flow["ui"]["messages"][0]["id"], 1010004);
    assert_eq!(names(&flow), ["csrf_token", "totp_code", "method"]);
    assert_eq!(group_ids(&flow, "totp"), ["totp_code", "method=totp"]);
    let code_node = node(&flow, "totp_code").unwrap();
    assert_eq!(code_node["meta"]["label"]["id"], 1010006);
    assert_eq!(code_node["attributes"]["required"], true);
    let submit_node =
        flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["value"] == "totp");
    assert_eq!(submit_node.unwrap()["meta"]["label"]["id"], 1010009);

    // A wrong code and the password method: the flow back, 400.
    let (status, wrong) = submit(&app, &token, &flow, json!({"method": "totp", "totp_code": "000000"})).await;
    assert_eq!(status, 400, "{wrong}");
    assert_eq!(wrong["ui"]["messages"][0]["id"], 4000008);
    assert_eq!(node(&wrong, "totp_code").unwrap()["attributes"]["value"], "");
    let (status, password) = submit(
        &app,
        &token,
        &flow,
        json!({"method": "password", "identifier": "stepup@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 400, "{password}");
    assert_eq!(password["ui"]["messages"][0]["id"], 4010002);
    whoami_wants_aal2(&app, &token).await;

    // The next step's code (the linking one is spent) raises the session.
    app.clock.advance(Duration::from_secs(30));
    let code = key.code_at(app.clock.now());
    let (status, done) = submit(&app, &token, &flow, json!({"method": "totp", "totp_code": code})).await;
    assert_eq!(status, 200, "{done}");
    let session = &done["session"];
    assert_eq!(session["id"], session_id.as_str());
    assert_eq!(done["session_token"], token.as_str(), "no new token");
    assert_eq!(session["authenticator_assurance_level"], "aal2");
    let methods = session["authentication_methods"].as_array().unwrap();
    assert_eq!(methods.len(), 2);
    assert_eq!((methods[0]["method"].as_str(), methods[0]["aal"].as_str()), (Some("password"), Some("aal1")));
    assert_eq!((methods[1]["method"].as_str(), methods[1]["aal"].as_str()), (Some("totp"), Some("aal2")));
    assert!(methods[1]["completed_at"].is_string());
    let after = whoami(&app, &token).await;
    assert_eq!(after["authenticator_assurance_level"], "aal2");
    assert_eq!(after["authentication_methods"], session["authentication_methods"]);

    // Already at aal2: nothing to step up to.
    let (status, again) = step_up_flow(&app, Some(&token)).await;
    assert_eq!(status, 400, "{again}");
    assert_eq!(again["error"]["id"], "session_already_available");
    // Unless refreshing: the second factor again, said as a refresh.
    let response = app
        .http
        .get(app.public_path("/self-service/login/api?aal=aal2&refresh=true"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refresh: Value = response.json().await.unwrap();
    assert_eq!(refresh["refresh"], true);
    assert_eq!(refresh["ui"]["messages"].as_array().unwrap().len(), 1);
    assert_eq!(refresh["ui"]["messages"][0]["id"], 1010003);
    assert_eq!(group_ids(&refresh, "totp"), ["totp_code", "method=totp"]);
    let (status, replay) = submit(&app, &token, &flow, json!({"method": "totp", "totp_code": code})).await;
    assert_eq!(status, 400, "{replay}");
    app.stop().await;
}

async fn a_backup_code_steps_up_once(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (_, codes) = with_codes(&app, "backup@example.com").await;
    let (token, _) = sign_in(&app, "backup@example.com").await;
    let (status, flow) = step_up_flow(&app, Some(&token)).await;
    assert_eq!(status, 200, "{flow}");
    assert!(group_ids(&flow, "totp").is_empty(), "only the identity's own factors");
    assert_eq!(group_ids(&flow, "lookup_secret"), ["lookup_secret", "method=lookup_secret"]);
    assert_eq!(node(&flow, "lookup_secret").unwrap()["meta"]["label"]["id"], 1010007);

    let (status, wrong) =
        submit(&app, &token, &flow, json!({"method": "lookup_secret", "lookup_secret": "zzzzzzzz"})).await;
    assert_eq!(status, 400, "{wrong}");
    assert_eq!(wrong["ui"]["messages"][0]["id"], 4000016);
    let (status, done) =
        submit(&app, &token, &flow, json!({"method": "lookup_secret", "lookup_secret": codes[2]})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    assert_eq!(done["session"]["authentication_methods"][1]["method"], "lookup_secret");

    // A second session cannot use the spent code.
    let other = login(&app, "backup@example.com", PASSWORD).await.unwrap();
    let (_, flow) = step_up_flow(&app, Some(&other)).await;
    let (status, spent) =
        submit(&app, &other, &flow, json!({"method": "lookup_secret", "lookup_secret": codes[2]})).await;
    assert_eq!(status, 400, "{spent}");
    assert_eq!(spent["ui"]["messages"][0]["id"], 4000012);
    whoami_wants_aal2(&app, &other).await;
    app.stop().await;
}

async fn no_second_factor_offers_no_method(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (token, _) = register(&app, "plain@example.com", PASSWORD).await;
    let (status, flow) = step_up_flow(&app, Some(&token)).await;
    assert_eq!(status, 200, "{flow}");
    assert_eq!(names(&flow), ["csrf_token"]);
    assert_eq!(flow["ui"]["messages"][0]["id"], 1010004);
    let (status, refused) =
        submit(&app, &token, &flow, json!({"method": "totp", "totp_code": "123456"})).await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["ui"]["messages"][0]["id"], 4000011);
    app.stop().await;
}

async fn browser_step_up_keeps_the_cookie_and_says_where_to_go(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (_, _, key, _) = with_totp(&app, "browser@example.com").await;
    let (token, _) = sign_in(&app, "browser@example.com").await;
    let mut jar = Jar::default();
    let cookie = |jar: &Jar| format!("{}; ory_kratos_session={token}", jar.header());
    let response = app
        .http
        .get(app.public_path("/self-service/login/browser?aal=aal2"))
        .header("cookie", cookie(&jar))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    jar.store(&response);
    assert_eq!(response.status(), 200);
    let flow: Value = response.json().await.unwrap();
    assert_eq!(flow["requested_aal"], "aal2");
    app.clock.advance(Duration::from_secs(30));
    let body = json!({
        "method": "totp",
        "totp_code": key.code_at(app.clock.now()),
        "csrf_token": csrf_token_of(&flow),
    });
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .header("cookie", cookie(&jar))
        .header("accept", "application/json")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set: Vec<&str> =
        response.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
    let session_cookie = set.iter().find(|c| c.starts_with("ory_kratos_session="));
    assert!(
        session_cookie.unwrap().starts_with(&format!("ory_kratos_session={token};")),
        "the same token: {set:?}"
    );
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    assert!(done.get("session_token").is_none());
    assert_eq!(done["continue_with"][0]["action"], "redirect_browser_to");
    assert_eq!(done["continue_with"][0]["redirect_browser_to"], "http://127.0.0.1:4455/welcome");

    // A page posting the form is sent on (303) with its cookie re-sent.
    let other = login(&app, "browser@example.com", PASSWORD).await.unwrap();
    let mut jar = Jar::default();
    let cookie = |jar: &Jar| format!("{}; ory_kratos_session={other}", jar.header());
    let response = app
        .http
        .get(app.public_path("/self-service/login/browser?aal=aal2"))
        .header("cookie", cookie(&jar))
        .send()
        .await
        .unwrap();
    jar.store(&response);
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let id = location.split("flow=").nth(1).unwrap().to_string();
    let flow: Value = app
        .http
        .get(app.public_path(&format!("/self-service/login/flows?id={id}")))
        .header("cookie", cookie(&jar))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(flow["requested_aal"], "aal2");
    app.clock.advance(Duration::from_secs(30));
    let form = format!(
        "method=totp&totp_code={}&csrf_token={}",
        key.code_at(app.clock.now()),
        urlencoding(&csrf_token_of(&flow))
    );
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={id}")))
        .header("cookie", cookie(&jar))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "http://127.0.0.1:4455/welcome");
    assert_eq!(whoami(&app, &other).await["authenticator_assurance_level"], "aal2");

    // Without a session a browser cannot step up either: 401 as JSON, the
    // error UI for pages.
    let url = app.public_path("/self-service/login/browser?aal=aal2");
    let response = app.http.get(&url).header("accept", "application/json").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["id"], "session_aal1_required");
    let response = app.http.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"].to_str().unwrap().contains("error?id="));
    app.stop().await;
}

async fn a_burst_of_wrong_codes_gets_only_the_free_guesses_judged(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let free = app_config_free_per_address();
    let (_, _, key, _) = with_totp(&app, "burst@example.com").await;
    let (token, _) = sign_in(&app, "burst@example.com").await;
    let (_, flow) = step_up_flow(&app, Some(&token)).await;
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let now = app.clock.now();
    // Never the right code, nor one of the steps around it.
    let right: Vec<String> = (-2..=2).map(|s| key.code_at(now + chrono::Duration::seconds(30 * s))).collect();
    let wrong = (0..1_000_000u32).map(|n| format!("{n:06}")).find(|c| !right.contains(c)).unwrap();
    let statuses = all_at_once(50, || {
        let (http, url, token, wrong) = (app.http.clone(), url.clone(), token.clone(), wrong.clone());
        async move {
            let response = http
                .post(&url)
                .header("x-session-token", &token)
                .json(&json!({"method": "totp", "totp_code": wrong}))
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }
    })
    .await;
    let judged = statuses.iter().filter(|s| **s == 400).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!((judged, refused), (free as usize, 50 - free as usize), "{statuses:?}");

    // While the wait lasts even the right code (the next step's, one step
    // of skew ahead) is not looked at.
    let code = key.code_at(app.clock.now() + chrono::Duration::seconds(30));
    let response = app
        .http
        .post(&url)
        .header("x-session-token", &token)
        .json(&json!({"method": "totp", "totp_code": code}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["id"], "rate_limit_exceeded");
    whoami_wants_aal2(&app, &token).await;

    // The first wait past the free guesses is a second; then the right code gets in.
    app.clock.advance(Duration::from_secs(2));
    let (status, done) = submit(&app, &token, &flow, json!({"method": "totp", "totp_code": code})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["session"]["authenticator_assurance_level"], "aal2");
    app.stop().await;
}

/// The default free failures of one identifier from one address.
fn app_config_free_per_address() -> u64 {
    latchkey::config::Config::default().security.login_throttling.identifier_per_ip.free_failures
}

fn urlencoding(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
