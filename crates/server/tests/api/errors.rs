//! Bad input gets a clear 4xx in the Kratos error envelope, never a 5xx,
//! and leaves nothing written.

use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app};
use crate::on_both_databases;

on_both_databases!(bad_requests_get_kratos_errors_and_write_nothing);

async fn bad_requests_get_kratos_errors_and_write_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.admin_path("/admin/identities");
    let cases: Vec<(&str, reqwest::RequestBuilder, u16)> = vec![
        (
            "malformed JSON",
            app.http.post(&url).header("content-type", "application/json").body("{\"traits\":"),
            400,
        ),
        (
            "wrong type",
            app.http.post(&url).json(&json!({"schema_id": "default", "traits": "x", "state": 5})),
            400,
        ),
        (
            "unknown field",
            app.http.post(&url).json(&json!({"traits": {"email": "a@b.co"}, "colour": "red"})),
            400,
        ),
        ("missing traits", app.http.post(&url).json(&json!({"schema_id": "default"})), 400),
        (
            "unknown state",
            app.http.post(&url).json(&json!({"traits": {"email": "a@b.co"}, "state": "zombie"})),
            400,
        ),
        (
            "form body",
            app.http.post(&url).header("content-type", "application/x-www-form-urlencoded").body("traits=x"),
            415,
        ),
        ("text body", app.http.post(&url).header("content-type", "text/plain").body("{}"), 415),
        (
            "oversized body",
            app.http
                .post(&url)
                .header("content-type", "application/json")
                .body(vec![b' '; 5 * 1024 * 1024 + 1]),
            413,
        ),
        (
            "unsupported credential",
            app.http.post(&url).json(&json!({"traits": {"email": "a@b.co"},
            "credentials": {"oidc": {"config": {"providers": []}}}})),
            400,
        ),
        (
            "patch not an array",
            app.http.patch(format!("{url}/{}", uuid::Uuid::new_v4())).json(&json!({"op": "x"})),
            400,
        ),
        ("NUL in traits", app.http.post(&url).json(&json!({"traits": {"email": "a\u{0}@b.co"}})), 400),
        (
            "NUL in metadata",
            app.http.post(&url).json(&json!({"traits": {"email": "a@b.co"},
            "metadata_public": {"k": "v\u{0}"}})),
            400,
        ),
        ("unknown id", app.http.get(format!("{url}/{}", uuid::Uuid::new_v4())), 404),
        ("malformed id", app.http.get(format!("{url}/not-a-uuid")), 404),
        ("unknown route", app.http.get(app.admin_path("/admin/nothing-here")), 404),
        ("wrong method", app.http.put(&url).json(&json!({})), 405),
        (
            "put without state",
            app.http
                .put(format!("{url}/{}", uuid::Uuid::new_v4()))
                .json(&json!({"schema_id": "default", "traits": {}})),
            400,
        ),
    ];
    for (name, request, status) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{name}");
        let body: Value = response.json().await.unwrap_or_else(|e| panic!("{name}: body is not JSON: {e}"));
        assert_eq!(body["error"]["code"], status, "{name}: {body}");
        assert!(body["error"]["message"].is_string(), "{name}: {body}");
        assert!(body["error"]["status"].is_string(), "{name}: {body}");
    }
    let all: Vec<Value> = app.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert!(all.is_empty(), "nothing was written: {all:?}");
    app.stop().await;
}
