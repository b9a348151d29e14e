//! Health, version and schema endpoints, and the admin prefix rule.

use ory_kratos_client::apis::{identity_api, metadata_api};
use serde_json::Value;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(health_version_and_schemas, the_loaded_config_is_named_by_its_revision_or_digest);

async fn config_revision(app: &TestApp) -> String {
    let response = app.http.get(app.admin_path("/admin/health/config")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    response.text().await.unwrap()
}

async fn the_loaded_config_is_named_by_its_revision_or_digest(backend: Backend) {
    let plain = spawn_app(backend).await;
    let digest = config_revision(&plain).await;
    assert!(digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()), "{digest}");
    assert_eq!(config_revision(&plain).await, digest, "the same configuration, the same answer");
    // Admin only: the public port does not say which configuration runs.
    assert_eq!(plain.http.get(plain.public_path("/health/config")).send().await.unwrap().status(), 404);
    plain.stop().await;

    let other = spawn_app_with(backend, |c| c.security.send_limits.address.max = 99).await;
    let changed = config_revision(&other).await;
    assert_ne!(changed, digest, "another configuration, another digest");
    other.stop().await;

    let named = spawn_app_with(backend, |c| c.revision = Some("deploy-42".into())).await;
    assert_eq!(config_revision(&named).await, "deploy-42");
    named.stop().await;
}

async fn health_version_and_schemas(backend: Backend) {
    let app = spawn_app(backend).await;
    for base in [&app.public_url, &app.admin_url] {
        for path in ["/health/alive", "/health/ready"] {
            let response = app.http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{base}{path}");
            assert_eq!(response.headers()["cache-control"], "private, no-cache, no-store, must-revalidate");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["status"], "ok");
        }
    }
    assert_eq!(metadata_api::is_ready(&app.admin).await.unwrap().status, "ok");
    let version = metadata_api::get_version(&app.admin).await.unwrap();
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));
    // /version exists only on the admin port.
    assert_eq!(app.http.get(app.public_path("/version")).send().await.unwrap().status(), 404);

    // Admin routes answer with and without the /admin prefix.
    for path in ["/identities", "/admin/identities", "/admin/health/alive"] {
        assert_eq!(app.http.get(app.admin_path(path)).send().await.unwrap().status(), 200, "{path}");
    }

    // Each port sends the other's paths over with 307, keeping method and query.
    let response = app.http.post(app.public_path("/identities?x=1")).send().await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], format!("{}/admin/identities?x=1", app.admin_url));
    let response = app.http.get(app.public_path("/admin/identities/abc")).send().await.unwrap();
    assert_eq!(response.headers()["location"], format!("{}/admin/identities/abc", app.admin_url));
    let response = app.http.get(app.admin_path("/self-service/login/api")).send().await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["location"], format!("{}/self-service/login/api", app.public_url));
    let response = app.http.get(app.admin_path("/admin/schemas/default")).send().await.unwrap();
    assert_eq!(response.headers()["location"], format!("{}/schemas/default", app.public_url));
    assert_eq!(app.http.get(app.public_path("/admin/schemas")).send().await.unwrap().status(), 200);

    let schemas = identity_api::list_identity_schemas(&app.public, None, None, None, None).await.unwrap();
    assert_eq!(schemas.len(), 1);
    assert_eq!(schemas[0].id, "default");
    let by_id = identity_api::get_identity_schema(&app.public, "default").await.unwrap();
    assert_eq!(by_id["properties"]["traits"]["properties"]["email"]["format"], "email");
    let by_encoded = identity_api::get_identity_schema(&app.public, "ZGVmYXVsdA").await.unwrap();
    assert_eq!(by_id, by_encoded);
    let missing = app.http.get(app.public_path("/schemas/unknown")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "Identity schema `unknown` could not be found.");
    app.stop().await;
}

on_both_databases!(openapi_document_is_served);

async fn openapi_document_is_served(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app.http.get(app.public_path("/.well-known/ory/openapi.json")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", doc["openapi"]);
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/self-service/login/api", "get"),
        ("/self-service/login", "post"),
        ("/sessions/whoami", "get"),
        ("/admin/identities", "post"),
    ] {
        assert!(paths[path][method].is_object(), "{method} {path} is documented");
    }
    // Every operation it documents is routed: none falls through to the 404 fallback.
    for path in paths.keys().filter(|p| !p.contains('{')) {
        let on_admin = path.starts_with("/admin/") || path == "/version";
        let base = if on_admin { &app.admin_url } else { &app.public_url };
        let mut methods = paths[path].as_object().unwrap().keys();
        let method = methods.find(|m| *m != "parameters").unwrap().to_uppercase();
        let response =
            app.http.request(method.parse().unwrap(), format!("{base}{path}")).send().await.unwrap();
        if response.status() == 404 {
            let body: Value = response.json().await.unwrap_or_default();
            let fallback = body["error"]["message"] == "The requested resource could not be found"
                && body["error"]["reason"].is_null();
            assert!(!fallback, "{method} {path} is not routed");
        }
    }
    app.stop().await;
}
