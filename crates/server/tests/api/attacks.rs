//! Defects found by attacking a running server from outside, each kept as
//! the request that showed it: the answer must be a 4xx in the Kratos error
//! envelope and the server must keep answering.

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app};
use crate::on_both_databases;

on_both_databases!(imported_scrypt_hashes_with_huge_parameters_are_refused);

async fn still_answers(app: &TestApp) {
    let response = app.http.get(app.admin_path("/health/alive")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// scrypt's own parameter check multiplies r by p in 32 bits: r = p = 99,999
/// overflowed it and the request's task panicked (the connection dropped
/// with no answer); r = p = 65,536 wrapped the product to zero.
async fn imported_scrypt_hashes_with_huge_parameters_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let salt = "SPuPrXp4DWJjVN2++dztvsFsZXTTeYjUDi0fd7VYz6Y=";
    let digest = "QlJJAM9evncK2N8B+6A9mhHYR5WUfa85IBDwUAnFu4M=";
    for (i, (r, p)) in
        [(99_999u64, 99_999u64), (65_536, 65_536), (16_777_216, 4_294_967_295)].into_iter().enumerate()
    {
        let hash = format!("$scrypt$ln=1024,r={r},p={p}${salt}${digest}");
        let body = json!({
            "schema_id": "default",
            "traits": { "email": format!("scrypt{i}@example.com") },
            "credentials": { "password": { "config": { "hashed_password": hash } } },
        });
        let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
        assert_eq!(response.status(), 400, "r={r} p={p}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], 400, "{error}");
        assert!(error["error"]["reason"].as_str().unwrap().contains("scrypt"), "{error}");
        // Nothing was half-written: the address is still free.
        let listed: Value = app
            .http
            .get(app.admin_path(&format!("/admin/identities?credentials_identifier=scrypt{i}@example.com")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(listed, json!([]), "r={r} p={p}");
    }
    still_answers(&app).await;
    app.stop().await;
}
