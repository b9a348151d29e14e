//! Findings of a code review, each with the request that used to go wrong:
//! emailed verification links with wrong codes, admin-issued recovery codes,
//! recovery of a deactivated identity, hostile pagination and durations, and
//! client addresses taken from `X-Forwarded-For`.

use std::sync::{Arc, Mutex};

use latchkey_courier::test_smtp::Received;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, code_for, create_identity, native_flow, register, spawn_app_with,
    spawn_app_with_mail,
};
use crate::on_both_databases;

on_both_databases!(
    verification_links_with_wrong_codes_change_nothing,
    admin_issued_codes_work_without_cookies,
    deactivated_identities_are_not_recovered,
    overflowing_numbers_are_refused,
    forwarded_for_counts_only_from_trusted_proxies,
);

const VERIFICATION_UI: &str = "http://127.0.0.1:4455/verification";
const RECOVERY_UI: &str = "http://127.0.0.1:4455/recovery";

async fn app_with_mail(backend: Backend) -> (TestApp, Arc<Mutex<Vec<Received>>>) {
    spawn_app_with_mail(backend, |c| {
        let flows = &mut c.selfservice.flows;
        flows.verification.enabled = true;
        flows.verification.ui_url = VERIFICATION_UI.into();
        flows.recovery.enabled = true;
        flows.recovery.ui_url = RECOVERY_UI.into();
        flows.settings.ui_url = "http://127.0.0.1:4455/settings".into();
    })
    .await
}

fn id(flow: &Value) -> String {
    flow["id"].as_str().unwrap().to_string()
}

/// The value of the flow's `code` input, empty when it has none.
fn code_value(flow: &Value) -> String {
    let node = flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == "code");
    node.and_then(|n| n["attributes"]["value"].as_str()).unwrap_or_default().to_string()
}

async fn fetch_flow(app: &TestApp, kind: &str, flow_id: &str, cookies: Option<&str>) -> (u16, Value) {
    let mut request = app.http.get(app.public_path(&format!("/self-service/{kind}/flows?id={flow_id}")));
    if let Some(cookies) = cookies {
        request = request.header("cookie", cookies);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Follows an emailed verification link; returns the response.
async fn follow_link(app: &TestApp, flow_id: &str, code: &str, cookies: Option<&str>) -> reqwest::Response {
    let path = format!("/self-service/verification?flow={flow_id}&code={code}");
    let mut request = app.http.get(app.public_path(&path));
    if let Some(cookies) = cookies {
        request = request.header("cookie", cookies);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("{VERIFICATION_UI}?flow={flow_id}").as_str());
    response
}

fn other_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

async fn verification_links_with_wrong_codes_change_nothing(backend: Backend) {
    let (app, received) = app_with_mail(backend).await;
    create_identity(&app, "linked@example.com").await;

    // A browser starts a flow and has a code sent.
    let mut owner = Jar::default();
    let response = app
        .http
        .get(app.public_path("/self-service/verification/browser"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    owner.store(&response);
    let flow: Value = response.json().await.unwrap();
    let csrf = flow["ui"]["nodes"][0]["attributes"]["value"].as_str().unwrap().to_string();
    let sent = app
        .http
        .post(app.public_path(&format!("/self-service/verification?flow={}", id(&flow))))
        .header("accept", "application/json")
        .header("cookie", owner.header())
        .json(&json!({"method": "code", "email": "linked@example.com", "csrf_token": csrf}))
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
    let code = code_for(&received, "linked@example.com", 0).await;
    let wrong = other_code(&code);

    // A forged link, opened without cookies or with the attacker's own: no
    // cookie is handed out, the flow stays with its browser, and the wrong
    // code is not put into the form.
    let forged = follow_link(&app, &id(&flow), wrong, None).await;
    assert!(forged.headers().get("set-cookie").is_none(), "a wrong code mints no binding");
    let mut attacker = Jar::default();
    attacker.store(
        &app.http
            .get(app.public_path("/self-service/verification/browser"))
            .header("accept", "application/json")
            .send()
            .await
            .unwrap(),
    );
    follow_link(&app, &id(&flow), wrong, Some(&attacker.header())).await;
    let (status, _) = fetch_flow(&app, "verification", &id(&flow), Some(&attacker.header())).await;
    assert_eq!(status, 403, "a wrong code does not move the flow to the attacker");
    let (status, held) = fetch_flow(&app, "verification", &id(&flow), Some(&owner.header())).await;
    assert_eq!(status, 200, "{held}");
    assert_eq!(code_value(&held), "", "a wrong code is not stored in the flow");

    // The right link still works on another device.
    let mut phone = Jar::default();
    let link = follow_link(&app, &id(&flow), &code, None).await;
    phone.store(&link);
    let (status, prefilled) = fetch_flow(&app, "verification", &id(&flow), Some(&phone.header())).await;
    assert_eq!(status, 200, "{prefilled}");
    assert_eq!(code_value(&prefilled), code);
    let (status, _) = fetch_flow(&app, "verification", &id(&flow), Some(&owner.header())).await;
    assert_eq!(status, 403);

    // Native flows: a wrong code leaves the form empty, a right one fills it.
    let native = native_flow(&app, "verification").await;
    let url = app.public_path(&format!("/self-service/verification?flow={}", id(&native)));
    let sent = app.http.post(&url).json(&json!({"method": "code", "email": "linked@example.com"}));
    assert_eq!(sent.send().await.unwrap().status(), 200);
    let code = code_for(&received, "linked@example.com", 1).await;
    follow_link(&app, &id(&native), other_code(&code), None).await;
    let (_, after_wrong) = fetch_flow(&app, "verification", &id(&native), None).await;
    assert_eq!(code_value(&after_wrong), "");
    follow_link(&app, &id(&native), &code, None).await;
    let (_, after_right) = fetch_flow(&app, "verification", &id(&native), None).await;
    assert_eq!(code_value(&after_right), code);

    // Links count as attempts, so they are no unlimited oracle: past the
    // limit (5) even the right code is not put in.
    let native = native_flow(&app, "verification").await;
    let url = app.public_path(&format!("/self-service/verification?flow={}", id(&native)));
    let sent = app.http.post(&url).json(&json!({"method": "code", "email": "linked@example.com"}));
    assert_eq!(sent.send().await.unwrap().status(), 200);
    let code = code_for(&received, "linked@example.com", 2).await;
    for _ in 0..5 {
        follow_link(&app, &id(&native), other_code(&code), None).await;
    }
    follow_link(&app, &id(&native), &code, None).await;
    let (_, limited) = fetch_flow(&app, "verification", &id(&native), None).await;
    assert_eq!(code_value(&limited), "", "the sixth attempt is refused");
    app.stop().await;
}

async fn issue_code(app: &TestApp, body: Value) -> Value {
    let response = app.http.post(app.admin_path("/admin/recovery/code")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

fn flow_of(issued: &Value) -> String {
    issued["recovery_link"].as_str().unwrap().split("flow=").nth(1).unwrap().to_string()
}

async fn admin_issued_codes_work_without_cookies(backend: Backend) {
    let (app, _) = app_with_mail(backend).await;
    let identity_id = create_identity(&app, "handed-over@example.com").await;

    // The default, a browser flow: the person handed the code has no cookie
    // the flow could be bound to, yet can read and submit it.
    let issued = issue_code(&app, json!({ "identity_id": identity_id })).await;
    let flow_id = flow_of(&issued);
    assert_eq!(issued["recovery_link"], format!("{RECOVERY_UI}?flow={flow_id}"));
    let (status, flow) = fetch_flow(&app, "recovery", &flow_id, None).await;
    assert_eq!(status, 200, "{flow}");
    assert_eq!((flow["type"].as_str(), flow["state"].as_str()), (Some("browser"), Some("sent_email")));
    let mut browser = Jar::default();
    let done = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={flow_id}")))
        .header("accept", "application/json")
        .json(&json!({"method": "code", "code": issued["recovery_code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    browser.store(&done);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["state"], "passed_challenge");
    assert_eq!(body["continue_with"][0]["action"], "show_settings_ui");
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("cookie", browser.header())
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200, "the session arrives as a cookie");
    let whoami: Value = whoami.json().await.unwrap();
    assert_eq!(whoami["identity"]["id"], identity_id.as_str());
    // The settings flow it hands over belongs to this browser.
    let settings_id = body["continue_with"][0]["flow"]["id"].as_str().unwrap();
    let (status, settings) = fetch_flow(&app, "settings", settings_id, Some(&browser.header())).await;
    assert_eq!(status, 200, "{settings}");

    // The same as a native flow: the answer carries the session token.
    let issued = issue_code(&app, json!({ "identity_id": identity_id, "flow_type": "api" })).await;
    let flow_id = flow_of(&issued);
    let done = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={flow_id}")))
        .json(&json!({"method": "code", "code": issued["recovery_code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 200);
    let body: Value = done.json().await.unwrap();
    assert_eq!(body["continue_with"][0]["action"], "set_ory_session_token");
    let token = body["continue_with"][0]["ory_session_token"].as_str().unwrap();
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);

    // Self-service browser flows still need their cookie and token.
    let response = app
        .http
        .get(app.public_path("/self-service/recovery/browser"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    let flow: Value = response.json().await.unwrap();
    let refused = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={}", id(&flow))))
        .header("accept", "application/json")
        .json(&json!({"method": "code", "email": "handed-over@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    app.stop().await;
}

async fn deactivate(app: &TestApp, identity_id: &str) {
    let response = app
        .http
        .patch(app.admin_path(&format!("/admin/identities/{identity_id}")))
        .json(&json!([{"op": "replace", "path": "/state", "value": "inactive"}]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn sessions_of(app: &TestApp, identity_id: &str) -> usize {
    let response = app
        .http
        .get(app.admin_path(&format!("/admin/identities/{identity_id}/sessions")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Vec<Value>>().await.unwrap().len()
}

async fn deactivated_identities_are_not_recovered(backend: Backend) {
    let (app, received) = app_with_mail(backend).await;
    let identity_id = create_identity(&app, "dormant@example.com").await;

    // Native: the code was sent while the identity was active.
    let flow = native_flow(&app, "recovery").await;
    let url = app.public_path(&format!("/self-service/recovery?flow={}", id(&flow)));
    let sent = app.http.post(&url).json(&json!({"method": "code", "email": "dormant@example.com"}));
    assert_eq!(sent.send().await.unwrap().status(), 200);
    let code = code_for(&received, "dormant@example.com", 0).await;
    deactivate(&app, &identity_id).await;
    let refused = app.http.post(&url).json(&json!({"method": "code", "code": code})).send().await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["id"], "identity_disabled", "{body}");
    assert_eq!(body["error"]["reason"], "This account was disabled.");
    assert_eq!(body["error"]["details"]["identity_id"], identity_id.as_str());
    assert_eq!(body["error"]["details"]["continue_with"][0]["action"], "show_recovery_ui");
    let replacement = body["error"]["details"]["continue_with"][0]["flow"]["id"].as_str().unwrap();
    let (status, fresh) = fetch_flow(&app, "recovery", replacement, None).await;
    assert_eq!(status, 200);
    assert_eq!(fresh["state"], "choose_method");
    assert_eq!(fresh["ui"]["messages"][0]["id"], 4010011);
    assert_eq!(sessions_of(&app, &identity_id).await, 0, "no session was issued");
    // The code is spent and the old flow is over.
    let again = app.http.post(&url).json(&json!({"method": "code", "code": code})).send().await.unwrap();
    assert_ne!(again.status(), 200);

    // A browser posting the form is sent to the replacement flow, without a session.
    let issued = issue_code(&app, json!({ "identity_id": identity_id })).await;
    let flow_id = flow_of(&issued);
    let refused = app
        .http
        .post(app.public_path(&format!("/self-service/recovery?flow={flow_id}")))
        .form(&[("method", "code"), ("code", issued["recovery_code"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 303);
    let location = refused.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&format!("{RECOVERY_UI}?flow=")), "{location}");
    assert!(!location.ends_with(&flow_id), "a new flow: {location}");
    let cookies: Vec<_> = refused.headers().get_all("set-cookie").iter().collect();
    assert!(
        cookies.iter().all(|c| !c.to_str().unwrap().starts_with("ory_kratos_session")),
        "no session cookie: {cookies:?}"
    );
    assert_eq!(sessions_of(&app, &identity_id).await, 0);
    app.stop().await;
}

/// A 400 in the Kratos error envelope.
async fn assert_bad_request(response: reqwest::Response, what: &str) {
    assert_eq!(response.status(), 400, "{what}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_u64(), body["error"]["status"].as_str()),
        (Some(400), Some("Bad Request"))
    );
    assert!(body["error"]["reason"].as_str().is_some_and(|r| !r.is_empty()), "{what}: {body}");
}

async fn overflowing_numbers_are_refused(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}).await;
    let (token, identity_id) = register(&app, "numbers@example.com", PASSWORD).await;

    // Admin recovery codes: lifespans past Go's limit (about 292 years) are
    // refused, like Kratos's; the limit itself is a date both databases keep.
    for expires_in in ["99999999999h", "2562048h", "18446744073709551616ns", "9223372036s999ms", "-1h", "0s"]
    {
        let response = app
            .http
            .post(app.admin_path("/admin/recovery/code"))
            .json(&json!({ "identity_id": identity_id, "expires_in": expires_in }))
            .send()
            .await
            .unwrap();
        assert_bad_request(response, expires_in).await;
    }
    let issued = issue_code(&app, json!({ "identity_id": identity_id, "expires_in": "2562047h" })).await;
    let expires_at = issued["expires_at"].as_str().unwrap();
    assert!(expires_at.starts_with("23"), "{expires_at}");
    let (status, flow) = fetch_flow(&app, "recovery", &flow_of(&issued), None).await;
    assert_eq!((status, flow["expires_at"].as_str()), (200, Some(expires_at)));

    // Page sizes, page numbers and page tokens that overflow.
    // `{"offset":"18446744073709551615","v":2}`, base64url.
    let huge_offset = "eyJvZmZzZXQiOiIxODQ0Njc0NDA3MzcwOTU1MTYxNSIsInYiOjJ9";
    let offset_lists =
        [app.admin_path(&format!("/admin/identities/{identity_id}/sessions")), app.public_path("/sessions")];
    let keyset_lists = [
        app.admin_path("/admin/identities"),
        app.admin_path("/admin/sessions"),
        app.admin_path("/admin/courier/messages"),
    ];
    let mut cases = Vec::new();
    for list in offset_lists.iter().chain(&keyset_lists) {
        for query in
            ["page_size=18446744073709551616", "page_size=-1", "page_size=0", "page_token=%00garbage%FF"]
        {
            cases.push(format!("{list}?{query}"));
        }
    }
    for list in &offset_lists {
        for query in [
            format!("page={}", u64::MAX),
            "page=18446744073709551616".into(),
            format!("page={}&page_size=1000", u64::MAX / 1000),
            format!("page_token={huge_offset}"),
        ] {
            cases.push(format!("{list}?{query}"));
        }
    }
    for url in &cases {
        let response = app.http.get(url).header("x-session-token", &token).send().await.unwrap();
        assert_bad_request(response, url).await;
    }
    // Sane values still page.
    let response = app
        .http
        .get(app.public_path("/sessions?page=0&page_size=1000"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let health = app.http.get(app.public_path("/health/alive")).send().await.unwrap();
    assert_eq!(health.status(), 200, "the server is still up");
    app.stop().await;
}

/// Signs in natively with `forwarded` as `X-Forwarded-For`; returns the
/// address recorded on the new session's device.
async fn login_from(app: &TestApp, email: &str, forwarded: &str) -> Value {
    let flow = native_flow(app, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", id(&flow))))
        .header("x-forwarded-for", forwarded)
        .json(&json!({"method": "password", "identifier": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let whoami: Value = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", body["session_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    whoami["devices"][0]["ip_address"].clone()
}

async fn forwarded_for_counts_only_from_trusted_proxies(backend: Backend) {
    // By default no proxy is trusted: a forged header is ignored and the
    // peer's own address (loopback, in tests) is recorded.
    let app = spawn_app_with(backend, |_| {}).await;
    create_identity(&app, "forwarded@example.com").await;
    assert_eq!(login_from(&app, "forwarded@example.com", "198.51.100.1").await, "127.0.0.1");
    assert_eq!(login_from(&app, "forwarded@example.com", "not an address").await, "127.0.0.1");
    // Registration records the same.
    let flow = native_flow(&app, "registration").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={}", id(&flow))))
        .header("x-forwarded-for", "198.51.100.1")
        .json(&json!({"method": "password", "traits": {"email": "forwarded-too@example.com"}, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["session"]["devices"][0]["ip_address"], "127.0.0.1", "{body}");
    app.stop().await;

    // Behind a trusted proxy: the right-most address that is not a trusted proxy.
    let app = spawn_app_with(backend, |c| {
        c.serve.public.trusted_proxies = vec!["127.0.0.1".parse().unwrap(), "10.0.0.0/8".parse().unwrap()];
    })
    .await;
    create_identity(&app, "proxied@example.com").await;
    let recorded = login_from(&app, "proxied@example.com", "198.51.100.1, 203.0.113.7, 10.1.2.3").await;
    assert_eq!(recorded, "203.0.113.7");
    // Without the header it is the proxy's own address; garbage is never recorded.
    assert_eq!(login_from(&app, "proxied@example.com", "").await, "127.0.0.1");
    assert_eq!(login_from(&app, "proxied@example.com", "203.0.113.7, <script>").await, "127.0.0.1");
    app.stop().await;
}
