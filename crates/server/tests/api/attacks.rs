//! Defects found by attacking a running server from outside, each kept as
//! the request that showed it: the answer must be a 4xx in the Kratos error
//! envelope and the server must keep answering.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, native_flow, register, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    imported_scrypt_hashes_with_huge_parameters_are_refused,
    nul_characters_are_refused_before_they_reach_the_database,
    overlong_external_ids_are_refused,
    overlong_identifiers_are_refused_even_when_the_schema_sets_no_limit,
    clients_that_stop_reading_do_not_pin_connections,
);

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

/// Asserts a 400 in the error envelope.
async fn bad_request(response: reqwest::Response, what: &str) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or_default();
    assert_eq!(status, 400, "{what}: {body}");
    assert_eq!(body["error"]["code"], 400, "{what}: {body}");
    assert!(body["error"]["reason"].as_str().unwrap_or_default().contains("NUL"), "{what}: {body}");
}

/// PostgreSQL stores no NUL in `text` or `jsonb`: a NUL in a login
/// identifier, a trait, a `transient_payload`, an address or a `return_to`
/// was a 500 there (a trait was one on SQLite too). Every one is a 400 on
/// both databases, and nothing is written.
async fn nul_characters_are_refused_before_they_reach_the_database(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        c.selfservice.flows.verification.enabled = true;
    })
    .await;
    let (token, _) = register(&app, "nul@example.com", PASSWORD).await;
    let flow = |kind: &'static str| {
        let app = &app;
        // Only settings wants the session; login and registration refuse it.
        let token = if kind == "settings" { token.clone() } else { String::new() };
        async move {
            let response = app
                .http
                .get(app.public_path(&format!("/self-service/{kind}/api")))
                .header("x-session-token", token)
                .send()
                .await
                .unwrap();
            let flow: Value = response.json().await.unwrap();
            app.public_path(&format!("/self-service/{kind}?flow={}", flow["id"].as_str().unwrap()))
        }
    };
    let nul = "\u{0}";
    let json_submits = [
        (
            "login",
            json!({ "method": "password", "identifier": format!("nul{nul}@example.com"), "password": "x" }),
        ),
        (
            "login",
            json!({ "method": "password", "identifier": "nul@example.com", "password": PASSWORD,
                    "transient_payload": { "a": nul } }),
        ),
        (
            "registration",
            json!({ "method": "password", "password": PASSWORD,
                    "traits": { "email": "new@example.com", "name": { "first": nul } } }),
        ),
        (
            "registration",
            json!({ "method": "password", "password": PASSWORD, "traits": { "email": format!("new@example.com{nul}") } }),
        ),
        ("verification", json!({ "method": "code", "email": nul })),
        ("recovery", json!({ "method": "code", "email": format!("a{nul}@example.com") })),
        (
            "settings",
            json!({ "method": "profile", "traits": { "email": "nul@example.com", "name": { "first": nul } } }),
        ),
    ];
    for (kind, body) in json_submits {
        let url = flow(kind).await;
        let session = if kind == "settings" { token.as_str() } else { "" };
        let response =
            app.http.post(&url).header("x-session-token", session).json(&body).send().await.unwrap();
        bad_request(response, &format!("{kind} {body}")).await;
    }
    let url = flow("login").await;
    let response = app
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body("method=password&identifier=nul%00%40example.com&password=x")
        .send()
        .await
        .unwrap();
    bad_request(response, "login form").await;
    for path in [
        "/self-service/login/api?return_to=http://127.0.0.1:4455/%00",
        "/self-service/login/browser?return_to=http://127.0.0.1:4455/%00",
    ] {
        bad_request(app.http.get(app.public_path(path)).send().await.unwrap(), path).await;
    }
    for path in ["/admin/identities?credentials_identifier=%00", "/admin/courier/messages?recipient=a%00"] {
        bad_request(app.http.get(app.admin_path(path)).send().await.unwrap(), path).await;
    }
    let body = json!({ "schema_id": "default", "traits": { "email": "meta@example.com" }, "metadata_public": { "a": nul } });
    let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    bad_request(response, "admin create").await;

    // Nothing was written: only the identity registered above exists.
    let identities: Value =
        app.http.get(app.admin_path("/admin/identities")).send().await.unwrap().json().await.unwrap();
    let emails: Vec<&str> =
        identities.as_array().unwrap().iter().map(|i| i["traits"]["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["nul@example.com"]);
    // An escaped backslash before `u0000` is no NUL, and the server still signs people in.
    let flow = native_flow(&app, "login").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({ "method": "password", "identifier": "nul@example.com", "password": PASSWORD,
                       "transient_payload": { "a": "\\u0000" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    still_answers(&app).await;
    app.stop().await;
}

/// `external_id` is unique and so indexed; PostgreSQL refuses index
/// entries past about 2.7 KB, so 3,000 random characters were a 500 there
/// (SQLite took them). Create, replace, patch and batch import all refuse
/// them with a 400 and change nothing.
async fn overlong_external_ids_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    // Random, so compression cannot shrink the index entry below the limit.
    let long: String = (0..3_000).map(|_| char::from(b'a' + rand_byte() % 26)).collect();
    let create = |email: &str, external_id: &str| json!({ "schema_id": "default", "traits": { "email": email }, "external_id": external_id });
    let response = app
        .http
        .post(app.admin_path("/admin/identities"))
        .json(&create("long@example.com", &long))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(error["error"]["reason"].as_str().unwrap().contains("external_id"), "{error}");

    let fits = "k".repeat(1024);
    let response = app
        .http
        .post(app.admin_path("/admin/identities"))
        .json(&create("fits@example.com", &fits))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let identity: Value = response.json().await.unwrap();
    let url = app.admin_path(&format!("/admin/identities/{}", identity["id"].as_str().unwrap()));

    let mut replaced = create("fits@example.com", &long);
    replaced["state"] = json!("active");
    assert_eq!(app.http.put(&url).json(&replaced).send().await.unwrap().status(), 400);
    let patch = json!([{ "op": "replace", "path": "/external_id", "value": long }]);
    assert_eq!(app.http.patch(&url).json(&patch).send().await.unwrap().status(), 400);
    let stored: Value = app.http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(stored["external_id"], json!(fits));

    let batch = json!({ "identities": [{ "create": create("batch@example.com", &long) }] });
    let response = app.http.patch(app.admin_path("/admin/identities")).json(&batch).send().await.unwrap();
    assert!(response.status().is_client_error() || response.status() == 200, "{}", response.status());
    let listed: Value = app
        .http
        .get(app.admin_path("/admin/identities?credentials_identifier=batch@example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));
    still_answers(&app).await;
    app.stop().await;
}

fn rand_byte() -> u8 {
    uuid::Uuid::new_v4().as_bytes()[0]
}

/// A schema whose identifier trait has no `maxLength` (as many do): a
/// 3,000-character username overflowed PostgreSQL's index entry limit, so
/// an anonymous registration was a 500 there. Now it is the flow again
/// with a message on the field (400), and the admin API answers 400.
async fn overlong_identifiers_are_refused_even_when_the_schema_sets_no_limit(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("username.schema.json");
    let document = json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "properties": { "traits": { "type": "object", "required": ["username"], "properties": {
            "username": { "type": "string",
                          "ory.sh/kratos": { "credentials": { "password": { "identifier": true } } } }
        } } }
    });
    std::fs::write(&schema, document.to_string()).unwrap();
    let app = spawn_app_with(backend, |c| {
        c.identity.schemas = vec![latchkey::config::SchemaEntry {
            id: "default".into(),
            url: format!("file://{}", schema.display()),
        }];
    })
    .await;
    let long: String = (0..3_000).map(|_| char::from(b'a' + rand_byte() % 26)).collect();

    let flow = native_flow(&app, "registration").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({ "method": "password", "traits": { "username": long }, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let flow: Value = response.json().await.unwrap();
    let node = flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == "traits.username")
        .unwrap();
    assert!(!node["messages"].as_array().unwrap().is_empty(), "{node}");

    let body = json!({ "schema_id": "default", "traits": { "username": long } });
    let response = app.http.post(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let identities: Value =
        app.http.get(app.admin_path("/admin/identities")).send().await.unwrap().json().await.unwrap();
    assert_eq!(identities, json!([]));

    // A long but reasonable name still registers.
    let flow = native_flow(&app, "registration").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap())))
        .json(&json!({ "method": "password", "traits": { "username": "u".repeat(1000) }, "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    still_answers(&app).await;
    app.stop().await;
}

/// A client that pipelines requests and never reads the answers blocks
/// the server's writes; the idle close waited for those writes forever, so
/// each such connection held one of `serve.limits.max_connections` for
/// good and a handful of them locked everyone out. Such a connection is now
/// dropped once it has been idle and then had as long again to close.
async fn clients_that_stop_reading_do_not_pin_connections(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let app = spawn_app_with(backend, |c| {
        c.serve.limits.max_connections = 2;
        c.serve.limits.header_read_timeout = "1s".parse().unwrap();
        c.serve.limits.idle_timeout = "1s".parse().unwrap();
    })
    .await;
    let public = app.public_url.trim_start_matches("http://").to_string();
    let pipelined = "GET /self-service/login/api HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3_000);
    let mut hogs = Vec::new();
    for _ in 0..2 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        // A small receive window, so the answers back up quickly.
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream: TcpStream = socket.connect(public.parse().unwrap()).await.unwrap();
        // The server may stop reading once its writes block; what was sent is enough.
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(pipelined.as_bytes())).await;
        hogs.push(stream);
    }
    // Within a few idle periods the hogs are dropped and a normal client is served.
    let mut normal = TcpStream::connect(&public).await.unwrap();
    normal.write_all(b"GET /health/alive HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), normal.read(&mut buf))
        .await
        .expect("a client that stops reading kept its connection")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(hogs);
    app.stop().await;
}
