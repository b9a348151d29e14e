//! Where browsers and Ory's UIs rely on Kratos's exact behaviour: unclean
//! paths redirected, the registration style's default, the login field's
//! label taken from the schema.

use serde_json::Value;

use crate::helpers::{Backend, TestApp, names, native_flow, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    repeated_slashes_are_redirected_to_the_clean_path,
    registration_defaults_to_profile_first,
    login_identifier_is_labelled_by_the_schema,
);

async fn moved(app: &TestApp, method: reqwest::Method, url: &str) -> String {
    let response = app.http.request(method, url).send().await.unwrap();
    assert_eq!(response.status(), 301, "{url}");
    response.headers()["location"].to_str().unwrap().to_string()
}

async fn repeated_slashes_are_redirected_to_the_clean_path(backend: Backend) {
    let app = spawn_app(backend).await;
    let get = reqwest::Method::GET;
    assert_eq!(moved(&app, get.clone(), &app.public_path("//sessions/whoami")).await, "/sessions/whoami");
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        moved(&app, get.clone(), &app.public_path(&format!("//self-service/registration/flows?id={id}")))
            .await,
        format!("/self-service/registration/flows?id={id}"),
    );
    // Every method, as Go's router does it; the client repeats the request.
    assert_eq!(
        moved(&app, reqwest::Method::POST, &app.public_path("/self-service//login?flow=x")).await,
        "/self-service/login?flow=x",
    );
    assert_eq!(
        moved(&app, get.clone(), &app.public_path("//self-service/logout/browser")).await,
        "/self-service/logout/browser"
    );
    // The admin listener too, with and without the prefix.
    assert_eq!(
        moved(&app, get.clone(), &app.admin_path("//admin/identities?page_size=1")).await,
        "/admin/identities?page_size=1"
    );
    assert_eq!(moved(&app, get.clone(), &app.admin_path("/identities//")).await, "/identities/");
    // A trailing slash alone is no reason to redirect.
    let response = app.http.get(app.public_path("/sessions/whoami/")).send().await.unwrap();
    assert_eq!(response.status(), 404);

    // The SDKs follow the redirect, so a base URL ending in `/` works.
    let sdk = &app.public.client;
    let response = sdk.get(app.public_path("//health/alive")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let flow: Value =
        sdk.get(app.public_path("//self-service/login/api")).send().await.unwrap().json().await.unwrap();
    assert_eq!(flow["type"], "api");
    app.stop().await;
}

async fn registration_defaults_to_profile_first(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.selfservice.flows.registration.style = Default::default()).await;
    let flow = native_flow(&app, "registration").await;
    let names = names(&flow);
    assert!(names.iter().any(|n| n == "traits.email"), "{names:?}");
    assert!(!names.iter().any(|n| n == "password"), "screen one asks for traits only: {names:?}");
    app.stop().await;
}

async fn login_identifier_is_labelled_by_the_schema(backend: Backend) {
    let app = spawn_app(backend).await;
    let flow = native_flow(&app, "login").await;
    let identifier = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "identifier")
        .unwrap();
    // The quickstart schema has one identifier, `traits.email`, titled "E-Mail".
    assert_eq!(
        identifier["meta"]["label"],
        serde_json::json!({"id": 1070002, "text": "E-Mail", "type": "info",
            "context": {"title": "E-Mail", "name": "traits.email"}})
    );
    app.stop().await;
}
