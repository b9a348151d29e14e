//! Browsers: cookie-carrying flows with CSRF protection, answered as JSON
//! (single-page apps) or with redirects (server-rendered pages).

use serde_json::{Value, json};

use crate::helpers::{Backend, Jar, PASSWORD, TestApp, register, spawn_app};
use crate::on_both_databases;

on_both_databases!(spa_registration_checks_csrf, html_login_redirects_and_sets_cookies, browser_logout);

fn csrf_of(flow: &Value) -> String {
    flow["ui"]["nodes"].as_array().unwrap().iter().find(|n| n["attributes"]["name"] == "csrf_token").unwrap()
        ["attributes"]["value"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn start(app: &TestApp, jar: &mut Jar, kind: &str, json: bool) -> reqwest::Response {
    let mut request = app
        .http
        .get(app.public_path(&format!("/self-service/{kind}/browser")))
        .header("cookie", jar.header());
    if json {
        request = request.header("accept", "application/json");
    }
    let response = request.send().await.unwrap();
    jar.store(&response);
    response
}

async fn spa_registration_checks_csrf(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut jar = Jar::default();
    let response = start(&app, &mut jar, "registration", true).await;
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set_cookie.starts_with("csrf_token_")
            && set_cookie.contains("HttpOnly")
            && set_cookie.contains("SameSite=Lax")
    );
    assert!(!set_cookie.contains("Secure"), "--dev serves plain http");
    let flow: Value = response.json().await.unwrap();
    assert_eq!(flow["type"], "browser");
    let token = csrf_of(&flow);
    assert!(!token.is_empty());
    let url = app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap()));
    let body = |csrf: Option<&str>| {
        let mut b =
            json!({"method": "password", "password": PASSWORD, "traits": {"email": "spa@example.com"}});
        if let Some(csrf) = csrf {
            b["csrf_token"] = json!(csrf);
        }
        b
    };

    // Missing token, wrong token, missing cookie: 403 security_csrf_violation.
    let attempts = [
        (jar.header(), body(None)),
        (jar.header(), body(Some("d3Jvbmc="))),
        (String::new(), body(Some(&token))),
    ];
    for (cookie, body) in attempts {
        let response = app
            .http
            .post(&url)
            .header("cookie", cookie)
            .header("accept", "application/json")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["id"], "security_csrf_violation");
        assert!(error["error"]["details"]["reject_reason"].is_string());
    }
    // Fetching a browser flow needs its cookie too.
    let fetch = format!("/self-service/registration/flows?id={}", flow["id"].as_str().unwrap());
    assert_eq!(app.http.get(app.public_path(&fetch)).send().await.unwrap().status(), 403);
    let fetched: Value = app
        .http
        .get(app.public_path(&fetch))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(csrf_of(&fetched), token, "masked afresh for every response");

    // The right token (even a freshly masked one) succeeds.
    let response = app
        .http
        .post(&url)
        .header("cookie", jar.header())
        .header("accept", "application/json")
        .json(&body(Some(&csrf_of(&fetched))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    jar.store(&response);
    let done: Value = response.json().await.unwrap();
    assert!(done.get("session_token").is_none(), "browsers get a cookie, not a token");
    assert_eq!(done["continue_with"][0]["action"], "redirect_browser_to");
    assert_eq!(done["continue_with"][0]["redirect_browser_to"], "http://127.0.0.1:4455/welcome");
    assert!(jar.get("ory_kratos_session").is_some());
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    let session: Value = whoami.json().await.unwrap();
    assert_eq!(session["identity"]["traits"]["email"], "spa@example.com");

    // Signed in: starting another registration is refused for JSON clients.
    let again = start(&app, &mut jar, "registration", true).await;
    assert_eq!(again.status(), 400);
    app.stop().await;
}

async fn html_login_redirects_and_sets_cookies(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, "html@example.com", PASSWORD).await;
    let mut jar = Jar::default();
    let response = start(&app, &mut jar, "login", false).await;
    assert_eq!(response.status(), 303);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("http://127.0.0.1:4455/login?flow="), "{location}");
    let id = location.split("flow=").nth(1).unwrap();
    let flow: Value = app
        .http
        .get(app.public_path(&format!("/self-service/login/flows?id={id}")))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = app.public_path(&format!("/self-service/login?flow={id}"));
    let form = |password: &str| {
        format!(
            "method=password&identifier=html%40example.com&password={password}&csrf_token={}",
            form_encode(&csrf_of(&flow))
        )
    };
    // A wrong password sends the browser back to the form.
    let response = app
        .http
        .post(&url)
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form("wrong-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("http://127.0.0.1:4455/login?flow={id}"));

    let response = app
        .http
        .post(&url)
        .header("cookie", jar.header())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "http://127.0.0.1:4455/welcome");
    jar.store(&response);
    let cookie = jar.get("ory_kratos_session").unwrap();
    assert!(cookie.starts_with("ory_st_"));
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("cookie", jar.header())
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);

    // Signed-in browsers asking for a login form are sent on.
    let again = start(&app, &mut jar, "login", false).await;
    assert_eq!(again.status(), 303);
    assert_eq!(again.headers()["location"], "http://127.0.0.1:4455/welcome");
    app.stop().await;
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

async fn browser_logout(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, _) = register(&app, "bye@example.com", PASSWORD).await;
    let mut jar = Jar::default();
    // No session: 401 for JSON clients; a browser is sent to the error UI.
    let response = app
        .http
        .get(app.public_path("/self-service/logout/browser"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app.http.get(app.public_path("/self-service/logout/browser")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert!(response.headers()["location"].to_str().unwrap().contains("/ui/error?id="));
    // A browser holding the session cookie.
    let cookie = format!("ory_kratos_session={token}");
    let response = app
        .http
        .get(app.public_path("/self-service/logout/browser?return_to=http://127.0.0.1:4455/bye"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let logout_token = body["logout_token"].as_str().unwrap();
    assert!(logout_token.starts_with("ory_lo_"));
    let logout_url = body["logout_url"].as_str().unwrap();
    assert!(logout_url.contains(logout_token) && logout_url.contains("return_to="));

    let response = app.http.get(logout_url).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "http://127.0.0.1:4455/bye");
    jar.store(&response);
    assert!(
        response
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().starts_with("ory_kratos_session=;"))
    );
    let whoami =
        app.http.get(app.public_path("/sessions/whoami")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(whoami.status(), 401);
    // The logout link works once; again, the browser is shown why on the error UI.
    let again = app.http.get(logout_url).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert!(again.headers()["location"].to_str().unwrap().contains("/ui/error?id="));
    app.stop().await;
}
