//! CORS on the public API (`serve.public.cors`): preflights and simple
//! requests from allowed, wildcard and refused origins; off by default.

use reqwest::{Method, Response};

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(cors_is_off_by_default, allowed_origins_and_wildcards, credentials_with_any_origin);

async fn preflight(app: &TestApp, origin: &str) -> Response {
    app.http
        .request(Method::OPTIONS, app.public_path("/sessions/whoami"))
        .header("origin", origin)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-session-token")
        .send()
        .await
        .unwrap()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

async fn cors_is_off_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = preflight(&app, "https://app.example.com").await;
    // No preflight answer: the request reaches the route (whoami answers any method).
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), None);
    let response = app
        .http
        .get(app.public_path("/health/alive"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

async fn allowed_origins_and_wildcards(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        let cors = &mut c.serve.public.cors;
        cors.enabled = true;
        cors.allowed_origins = vec!["https://exact.test".into(), "https://*.example.com".into()];
        cors.max_age = 600;
    })
    .await;

    for origin in ["https://exact.test", "https://app.example.com", "https://a.b.example.com"] {
        let response = preflight(&app, origin).await;
        assert!(response.status().is_success(), "{origin}: {}", response.status());
        assert_eq!(header(&response, "access-control-allow-origin"), Some(origin));
        assert_eq!(header(&response, "access-control-allow-credentials"), Some("true"));
        let methods = header(&response, "access-control-allow-methods").unwrap();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            assert!(methods.contains(method), "{methods}");
        }
        let headers = header(&response, "access-control-allow-headers").unwrap().to_ascii_lowercase();
        assert!(headers.contains("x-session-token"), "{headers}");
        assert_eq!(header(&response, "access-control-max-age"), Some("600"));
        assert!(header(&response, "vary").unwrap().to_ascii_lowercase().contains("origin"));
    }

    // Look-alikes of the wildcard and of the exact origin get nothing.
    for origin in [
        "https://evil-example.com",
        "https://example.com.evil.com",
        "https://example.com",
        "http://app.example.com",
        "https://exact.test.evil.com",
        "null",
    ] {
        let response = preflight(&app, origin).await;
        assert_eq!(header(&response, "access-control-allow-origin"), None, "{origin}");
        assert_eq!(header(&response, "access-control-allow-credentials"), None, "{origin}");
    }

    // An actual request: the origin is echoed and Content-Type exposed.
    let response = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(header(&response, "access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(header(&response, "access-control-allow-credentials"), Some("true"));
    assert_eq!(
        header(&response, "access-control-expose-headers").map(str::to_ascii_lowercase).as_deref(),
        Some("content-type")
    );

    // The admin API has no CORS.
    let response = app
        .http
        .request(Method::OPTIONS, app.admin_path("/identities"))
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "access-control-allow-origin"), None);
}

/// Kratos's default origin list is `*`; with credentials (also its default)
/// browsers refuse a literal `*`, so the origin is echoed instead.
async fn credentials_with_any_origin(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.serve.public.cors.enabled = true).await;
    let response = preflight(&app, "https://anywhere.test").await;
    assert_eq!(header(&response, "access-control-allow-origin"), Some("https://anywhere.test"));
    assert_eq!(header(&response, "access-control-allow-credentials"), Some("true"));
    assert_eq!(header(&response, "access-control-max-age"), None);
    let app = spawn_app_with(backend, |c| {
        c.serve.public.cors.enabled = true;
        c.serve.public.cors.allow_credentials = false;
    })
    .await;
    let response = preflight(&app, "https://anywhere.test").await;
    assert_eq!(header(&response, "access-control-allow-origin"), Some("*"));
    assert_eq!(header(&response, "access-control-allow-credentials"), None);
}
