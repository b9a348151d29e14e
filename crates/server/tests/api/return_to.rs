//! Redirect targets a client names when it starts a flow or logs out
//! (`return_to`, `after_verification_return_to`): the usual open-redirect
//! bypasses are refused with Kratos's error, allowed targets are kept in the
//! form a browser would read them. The test server allows
//! `http://127.0.0.1:4455` and returns there by default.

use serde_json::Value;

use crate::helpers::{Backend, PASSWORD, TestApp, register, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    hostile_return_to_is_refused_when_any_flow_starts,
    allowed_return_to_is_kept_as_a_browser_reads_it,
    hostile_after_verification_return_to_is_refused,
    logout_checks_return_to_before_ending_the_session,
);

/// Targets that must never pass for `http://127.0.0.1:4455`.
const HOSTILE: &[&str] = &[
    "https://evil.example/",
    "//evil.example/",
    "///evil.example/",
    "/\\evil.example/",
    "\\\\evil.example",
    "http://127.0.0.1:4455\\@evil.example/",
    "http://127.0.0.1:4455/%5C%5Cevil.example",
    "http://127.0.0.1:4455/%5c",
    "http:/evil.example/",
    "http:evil.example",
    "http://user@127.0.0.1:4455/",
    "http://127.0.0.1:4455@evil.example/",
    "http://127.0.0.1:4455:4455@evil.example/",
    "http://127.0.0.1.evil.example:4455/",
    "http://127.0.0.1:4456/",
    "http://127.0.0.1/",
    "https://127.0.0.1:4455/",
    "javascript:alert(1)",
    "JavaScript://127.0.0.1:4455/%0aalert(1)",
    "data:text/html,<script>alert(1)</script>",
    "http://xn--80ak6aa92e.com/",
    "http://аpple.com/",
];

/// Targets a browser would strip or rewrite: refused as unparsable.
const MANGLED: &[&str] =
    &["http://127.0.0.1:4455/\t", "\t//evil.example", "/\r\n/evil.example", "java\nscript:alert(1)"];

async fn app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        c.selfservice.flows.verification.enabled = true;
        // Hundreds of flow starts from one client in a few seconds.
        c.security.send_limits.ip.flows_per_minute = 10_000;
    })
    .await
}

async fn start(app: &TestApp, path: &str, key: &str, target: &str, token: Option<&str>) -> (u16, Value) {
    let mut request =
        app.http.get(app.public_path(path)).query(&[(key, target)]).header("accept", "application/json");
    if let Some(token) = token {
        request = request.header("x-session-token", token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// Kratos's answer to a target outside the allow-list, or (for the few a
/// browser's parser rejects too, such as `///host`) its answer to a target
/// that is not a URL.
#[track_caller]
fn assert_forbidden(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    let unparsable = body["error"]["reason"].as_str().is_some_and(|r| r.contains("Unable to parse"));
    if !unparsable {
        assert_eq!(body["error"]["id"], "self_service_flow_return_to_forbidden", "{what}: {body}");
        assert_eq!(body["error"]["reason"], "Requested return_to URL is not allowed.", "{what}: {body}");
    }
}

#[track_caller]
fn assert_unparsable(status: u16, body: &Value, what: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert!(body["error"]["reason"].as_str().unwrap().contains("Unable to parse"), "{what}: {body}");
}

async fn hostile_return_to_is_refused_when_any_flow_starts(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = register(&app, "hostile@example.com", PASSWORD).await;
    let mut starts: Vec<(String, Option<&str>)> = Vec::new();
    for kind in ["login", "registration", "recovery", "verification"] {
        for how in ["api", "browser"] {
            starts.push((format!("/self-service/{kind}/{how}"), None));
        }
    }
    starts.push(("/self-service/settings/api".into(), Some(token.as_str())));
    for (path, token) in &starts {
        for target in HOSTILE {
            let (status, body) = start(&app, path, "return_to", target, *token).await;
            assert_forbidden(status, &body, &format!("{path} return_to={target}"));
        }
        let (_, body) = start(&app, path, "return_to", "https://evil.example/", *token).await;
        assert_eq!(body["error"]["id"], "self_service_flow_return_to_forbidden");
        for target in MANGLED {
            let (status, body) = start(&app, path, "return_to", target, *token).await;
            assert_unparsable(status, &body, &format!("{path} return_to={target:?}"));
        }
        // The same endpoint works with an allowed target.
        let (status, body) = start(&app, path, "return_to", "http://127.0.0.1:4455/after", *token).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    app.stop().await;
}

async fn allowed_return_to_is_kept_as_a_browser_reads_it(backend: Backend) {
    let app = app(backend).await;
    let self_service = app.public_path("/self-service/settings/browser");
    let cases = [
        ("http://127.0.0.1:4455/after", "http://127.0.0.1:4455/after".to_string()),
        ("HTTP://127.0.0.1:4455/After?x=1#y", "http://127.0.0.1:4455/After?x=1#y".to_string()),
        ("http://127.0.0.1:4455/a/../b/./c", "http://127.0.0.1:4455/b/c".to_string()),
        ("http://127.0.0.1:4455/a/%2e%2e/b", "http://127.0.0.1:4455/b".to_string()),
        // Relative targets resolve against the default browser return URL, as in Kratos.
        ("/after", "http://127.0.0.1:4455/after".to_string()),
        ("//127.0.0.1:4455/after", "http://127.0.0.1:4455/after".to_string()),
        // Kratos also allows its own self-service endpoints.
        (self_service.as_str(), self_service.clone()),
    ];
    for (target, kept) in &cases {
        for path in ["/self-service/login/api", "/self-service/registration/browser"] {
            let (status, flow) = start(&app, path, "return_to", target, None).await;
            assert_eq!(status, 200, "{path} return_to={target}: {flow}");
            assert_eq!(flow["return_to"], kept.as_str(), "{path} return_to={target}");
        }
    }
    // A browser that signs up is sent to the normalised target.
    let (_, flow) =
        start(&app, "/self-service/registration/api", "return_to", "http://127.0.0.1:4455/x/../done", None)
            .await;
    assert_eq!(flow["return_to"], "http://127.0.0.1:4455/done");
    app.stop().await;
}

async fn hostile_after_verification_return_to_is_refused(backend: Backend) {
    let app = app(backend).await;
    for path in
        ["/self-service/registration/api", "/self-service/registration/browser", "/self-service/login/api"]
    {
        for target in HOSTILE {
            let (status, body) = start(&app, path, "after_verification_return_to", target, None).await;
            assert_forbidden(status, &body, &format!("{path} after_verification_return_to={target}"));
        }
        let (status, body) =
            start(&app, path, "after_verification_return_to", "http://127.0.0.1:4455/verified", None).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    app.stop().await;
}

async fn logout_checks_return_to_before_ending_the_session(backend: Backend) {
    let app = app(backend).await;
    let (token, _) = register(&app, "logout-target@example.com", PASSWORD).await;
    let cookie = format!("ory_kratos_session={token}");
    let logout_url = |target: &str| {
        let request = app
            .http
            .get(app.public_path("/self-service/logout/browser"))
            .query(&[("return_to", target)])
            .header("accept", "application/json")
            .header("cookie", &cookie);
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    for target in HOSTILE {
        let (status, body) = logout_url(target).await;
        assert_forbidden(status, &body, &format!("logout url return_to={target}"));
    }
    let (status, body) = logout_url("HTTP://127.0.0.1:4455/bye/../bye").await;
    assert_eq!(status, 200, "{body}");
    let logout_token = body["logout_token"].as_str().unwrap().to_string();
    assert!(body["logout_url"].as_str().unwrap().ends_with("return_to=http%3A%2F%2F127.0.0.1%3A4455%2Fbye"));

    let logout = |target: &str| {
        app.http
            .get(app.public_path("/self-service/logout"))
            .query(&[("token", logout_token.as_str()), ("return_to", target)])
            .send()
    };
    let whoami =
        || app.http.get(app.public_path("/sessions/whoami")).header("x-session-token", &token).send();
    // A browser following the link is shown the refusal on the error UI.
    for target in HOSTILE {
        let response = logout(target).await.unwrap();
        assert_eq!(response.status(), 303, "logout return_to={target}");
        assert!(response.headers()["location"].to_str().unwrap().contains("/error?id="), "{target}");
    }
    assert_eq!(whoami().await.unwrap().status(), 200, "a refused logout leaves the session alone");
    let response = logout("/bye").await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], "http://127.0.0.1:4455/bye");
    assert_eq!(whoami().await.unwrap().status(), 401);
    app.stop().await;
}
