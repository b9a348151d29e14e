//! Native apps through the Kratos SDK: registration → whoami → logout,
//! login with right and wrong passwords, and the flow errors in between.

use ory_kratos_client::apis::{Error as SdkError, frontend_api};
use ory_kratos_client::models::PerformNativeLogoutBody;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, login, native_flow, register, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    register_whoami_logout,
    login_right_and_wrong,
    registration_rejects_bad_input_on_the_flow,
    expired_and_unknown_flows,
    api_flows_refuse_browser_traits,
);

async fn whoami_status(app: &crate::helpers::TestApp, header: (&str, String)) -> u16 {
    app.http
        .get(app.public_path("/sessions/whoami"))
        .header(header.0, header.1)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn register_whoami_logout(backend: Backend) {
    let app = spawn_app(backend).await;
    let flow = native_flow(&app, "registration").await;
    let id = flow["id"].as_str().unwrap();
    assert_eq!(flow["type"], "api");
    assert_eq!(flow["state"], "choose_method");
    assert_eq!(flow["ui"]["action"], format!("{}/self-service/registration?flow={id}", app.public_url));
    assert_eq!(flow["ui"]["method"], "POST");
    let names: Vec<&str> = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["attributes"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["csrf_token", "traits.email", "traits.name.first", "traits.name.last", "password", "method"]
    );
    let email = &flow["ui"]["nodes"][1];
    assert_eq!(email["attributes"]["type"], "email");
    assert_eq!(email["attributes"]["required"], true);
    assert_eq!(email["meta"]["label"]["id"], 1070002);
    assert_eq!(flow["ui"]["nodes"][0]["attributes"]["value"], "", "API flows carry an empty CSRF token");

    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={id}")))
        .json(&json!({"method": "password", "password": PASSWORD,
            "traits": {"email": "Native@Example.com", "name": {"first": "Nat"}}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    let token = done["session_token"].as_str().unwrap().to_string();
    assert!(token.starts_with("ory_st_") && token.len() == 39);
    assert_eq!(
        done["continue_with"],
        json!([{"action": "set_ory_session_token", "ory_session_token": token}])
    );
    assert_eq!(done["identity"]["traits"]["email"], "Native@Example.com");
    assert_eq!(done["session"]["identity"]["id"], done["identity"]["id"]);
    let identity_id = done["identity"]["id"].as_str().unwrap().to_string();

    // whoami by X-Session-Token (the SDK) and by Authorization: Bearer.
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert_eq!(session.identity.as_ref().unwrap().id, identity_id);
    assert_eq!(session.active, Some(true));
    let methods = serde_json::to_value(&session.authentication_methods).unwrap();
    assert_eq!(methods[0]["method"], "password");
    assert_eq!(whoami_status(&app, ("authorization", format!("Bearer {token}"))).await, 200);
    let response = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-kratos-authenticated-identity-id"], identity_id.as_str());
    let body: Value = response.json().await.unwrap();
    assert!(
        body["identity"].get("credentials").is_none() && body["identity"].get("metadata_admin").is_none()
    );

    frontend_api::perform_native_logout(&app.public, PerformNativeLogoutBody::new(token.clone()))
        .await
        .unwrap();
    let err = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap_err();
    match err {
        SdkError::ResponseError(r) => {
            assert_eq!(r.status, 401);
            let body: Value = serde_json::from_str(&r.content).unwrap();
            assert_eq!(body["error"]["code"], 401);
            assert!(body["error"].get("id").is_none());
        }
        other => panic!("{other}"),
    }
    // Logging out twice, or with a made-up token, is refused.
    let err = frontend_api::perform_native_logout(&app.public, PerformNativeLogoutBody::new(token))
        .await
        .unwrap_err();
    assert!(matches!(err, SdkError::ResponseError(r) if r.status == 403));
    assert_eq!(whoami_status(&app, ("x-session-token", "ory_st_nope".into())).await, 401);
    assert_eq!(app.http.get(app.public_path("/sessions/whoami")).send().await.unwrap().status(), 401);
    app.stop().await;
}

async fn login_right_and_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, "login@example.com", PASSWORD).await;
    let token = login(&app, "LOGIN@example.com", PASSWORD).await.unwrap();
    let session = frontend_api::to_session(&app.public, Some(&token), None, None).await.unwrap();
    assert_eq!(session.identity.unwrap().traits.unwrap()["email"], "login@example.com");

    // Wrong password and unknown user answer alike: 400, the flow, message 4000006.
    for (identifier, password) in
        [("login@example.com", "not-the-password"), ("nobody@example.com", PASSWORD)]
    {
        let flow = login(&app, identifier, password).await.unwrap_err();
        assert_eq!(flow["ui"]["messages"][0]["id"], 4000006, "{flow}");
        assert_eq!(flow["ui"]["messages"][0]["type"], "error");
        let identifier_node = flow["ui"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["attributes"]["name"] == "identifier")
            .unwrap();
        assert_eq!(identifier_node["attributes"]["value"], identifier);
        let password_node = flow["ui"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["attributes"]["name"] == "password")
            .unwrap();
        assert!(password_node["attributes"].get("value").is_none(), "passwords are never echoed");
    }
    let flow = login(&app, "", "").await.unwrap_err();
    let messages: Vec<_> = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["messages"].as_array().unwrap().clone())
        .collect();
    assert_eq!(messages.iter().filter(|m| m["id"] == 4000002).count(), 2, "{flow}");

    // A valid session makes a new login flow a 400, unless refresh=true.
    let response = app
        .http
        .get(app.public_path("/self-service/login/api"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["id"], "session_already_available");
    let refresh: Value = app
        .http
        .get(app.public_path("/self-service/login/api?refresh=true"))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refresh["refresh"], true);

    // Unknown methods come back on the flow.
    let flow = native_flow(&app, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({"method": "magic", "identifier": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["ui"]["messages"][0]["id"], 4010002);
    app.stop().await;
}

async fn registration_rejects_bad_input_on_the_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, "taken@example.com", PASSWORD).await;
    let cases = [
        (json!({"email": "taken@example.com"}), PASSWORD, "ui", 4000007),
        (json!({"email": "new@example.com"}), "short", "password", 4000032),
        (json!({"email": "new@example.com"}), "password123", "password", 4000034),
        (json!({"email": "similar@example.com"}), "similar@example.com1", "password", 4000031),
        (json!({"email": "not-an-email"}), PASSWORD, "traits.email", 4000001),
        (json!({}), PASSWORD, "traits.email", 4000002),
    ];
    for (traits, password, place, id) in cases {
        let flow = native_flow(&app, "registration").await;
        let response = app
            .http
            .post(
                app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap())),
            )
            .json(&json!({"method": "password", "traits": traits, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{traits} {password}");
        let body: Value = response.json().await.unwrap();
        let messages = if place == "ui" {
            body["ui"]["messages"].clone()
        } else {
            body["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == place).unwrap()
                ["messages"]
                .clone()
        };
        assert_eq!(messages[0]["id"], id, "{traits} {password}: {body}");
        if place != "password" && password == PASSWORD {
            // Submitted traits are shown back.
            if let Some(email) = traits.get("email") {
                let node = body["ui"]["nodes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|n| n["attributes"]["name"] == "traits.email")
                    .unwrap();
                assert_eq!(&node["attributes"]["value"], email);
            }
        }
    }
    // Nothing but the first identity was created.
    let all: Vec<Value> =
        app.http.get(app.admin_path("/admin/identities")).send().await.unwrap().json().await.unwrap();
    assert_eq!(all.len(), 1);
    app.stop().await;
}

async fn expired_and_unknown_flows(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.login.lifespan = "10m".parse().unwrap();
        c.selfservice.flows.registration.lifespan = "10m".parse().unwrap();
        c.session.lifespan = "1h".parse().unwrap();
    })
    .await;
    // Flows and a session start together so one move of the clock expires them all.
    let (token, _) = register(&app, "expiring@example.com", PASSWORD).await;
    assert_eq!(whoami_status(&app, ("x-session-token", token.clone())).await, 200);
    let flows = [native_flow(&app, "login").await, native_flow(&app, "registration").await];
    app.clock.advance(std::time::Duration::from_secs(61 * 60));
    assert_eq!(whoami_status(&app, ("x-session-token", token)).await, 401, "expired sessions are refused");
    for (kind, flow) in ["login", "registration"].into_iter().zip(flows) {
        let id = flow["id"].as_str().unwrap();
        let response = app
            .http
            .post(app.public_path(&format!("/self-service/{kind}?flow={id}")))
            .json(&json!({"method": "password", "identifier": "a@b.co", "password": PASSWORD, "traits": {"email": "a@b.co"}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 410, "{kind}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["id"], "self_service_flow_expired");
        let replacement = body["use_flow_id"].as_str().unwrap();
        assert_ne!(replacement, id);
        let fetched: Value = app
            .http
            .get(app.public_path(&format!("/self-service/{kind}/flows?id={replacement}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let expected = if kind == "login" { 4010001 } else { 4040001 };
        assert_eq!(fetched["ui"]["messages"][0]["id"], expected, "{fetched}");

        let fetch_expired = app
            .http
            .get(app.public_path(&format!("/self-service/{kind}/flows?id={id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(fetch_expired.status(), 410);
        let unknown = uuid::Uuid::new_v4();
        let missing = app
            .http
            .get(app.public_path(&format!("/self-service/{kind}/flows?id={unknown}")))
            .send()
            .await
            .unwrap();
        assert_eq!(missing.status(), 404);
        let submit_unknown = app
            .http
            .post(app.public_path(&format!("/self-service/{kind}?flow={unknown}")))
            .json(&json!({"method": "password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(submit_unknown.status(), 404);
        let malformed = app
            .http
            .post(app.public_path(&format!("/self-service/{kind}?flow=nope")))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(malformed.status(), 400);
    }
    app.stop().await;
}

async fn api_flows_refuse_browser_traits(backend: Backend) {
    let app = spawn_app(backend).await;
    let flow = native_flow(&app, "login").await;
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let body = json!({"method": "password", "identifier": "a@b.co", "password": PASSWORD});
    let with_origin =
        app.http.post(&url).header("origin", "http://evil.example").json(&body).send().await.unwrap();
    assert_eq!(with_origin.status(), 400);
    let with_cookie = app.http.post(&url).header("cookie", "session=1").json(&body).send().await.unwrap();
    assert_eq!(with_cookie.status(), 400);
    // Cloudflare's cookies are tolerated.
    let cf = app.http.post(&url).header("cookie", "__cf_bm=1").json(&body).send().await.unwrap();
    assert_eq!(cf.status(), 400);
    let cf_body: Value = cf.json().await.unwrap();
    assert_eq!(cf_body["ui"]["messages"][0]["id"], 4000006, "reached the credential check");

    // return_to outside the allow-list is refused at init.
    let response = app
        .http
        .get(app.public_path("/self-service/login/api?return_to=https://evil.example/"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["id"], "self_service_flow_return_to_forbidden");
    let ok = app
        .http
        .get(app.public_path("/self-service/login/api?return_to=http://127.0.0.1:4455/after"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let flow: Value = ok.json().await.unwrap();
    assert_eq!(flow["return_to"], "http://127.0.0.1:4455/after");
    app.stop().await;

    // `--dev` with DEV_DISABLE_API_FLOW_ENFORCEMENT=true: a native app in a
    // browser (Origin, cookies) may use API flows.
    let app = spawn_app_with(backend, |c| {
        c.dev = true;
        c.disable_api_flow_enforcement = true;
    })
    .await;
    let flow = native_flow(&app, "login").await;
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let from_browser = app
        .http
        .post(&url)
        .header("origin", "http://127.0.0.1:19006")
        .header("cookie", "session=1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let answer: Value = from_browser.json().await.unwrap();
    assert_eq!(answer["ui"]["messages"][0]["id"], 4000006, "reached the credential check: {answer}");
    app.stop().await;
}
