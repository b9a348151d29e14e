//! What an attacker sends before anyone signs up: form and JSON bombs,
//! oversized bodies, query strings and cookies, and clients that connect
//! and then dawdle. Each is refused with a 4xx (or the connection closed)
//! and the server keeps answering.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{Backend, TestApp, native_flow, spawn_app, spawn_app_with, submit_registration};
use crate::on_both_databases;

on_both_databases!(
    form_bombs_are_refused_on_every_submit_endpoint,
    deep_json_and_crowded_forms_are_refused,
    submit_bodies_are_small_but_admin_imports_are_not,
    transient_payload_must_be_a_small_object,
    long_query_strings_and_cookies_are_refused,
    slow_clients_are_cut_off,
    idle_keep_alive_connections_are_closed,
    connections_beyond_the_cap_wait,
);

const FORM: &str = "application/x-www-form-urlencoded";
const SUBMITS: [&str; 5] = ["login", "registration", "recovery", "verification", "settings"];

async fn still_answers(app: &TestApp) {
    let response = app.http.get(app.public_path("/health/alive")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Status and body; the body must be the Kratos error envelope.
async fn refused(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], status, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    (status, body)
}

async fn post_form(app: &TestApp, kind: &str, body: String) -> reqwest::Response {
    app.http
        .post(app.public_path(&format!("/self-service/{kind}?flow=x")))
        // As JSON: a browser would be sent to the error UI with the same error.
        .header("accept", "application/json")
        .header("content-type", FORM)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn form_bombs_are_refused_on_every_submit_endpoint(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.recovery.enabled = true;
        c.selfservice.flows.verification.enabled = true;
    })
    .await;
    for kind in SUBMITS {
        // The issue's body (200,000 dots, then `=1`) is over the submit limit.
        let (status, _) = refused(post_form(&app, kind, format!("{}=1", ".".repeat(200_000))).await).await;
        assert_eq!(status, 413, "{kind}");
        // Within the limit, the nesting bound refuses it before building anything.
        let (status, body) = refused(post_form(&app, kind, format!("{}=1", ".".repeat(60_000))).await).await;
        assert_eq!(status, 400, "{kind}");
        assert!(body["error"]["reason"].as_str().unwrap().contains("field names"), "{body}");
        still_answers(&app).await;
    }
    app.stop().await;
}

async fn deep_json_and_crowded_forms_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let flow = native_flow(&app, "login").await;
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let send = |content_type: &'static str, body: String| {
        app.http.post(&url).header("content-type", content_type).body(body).send()
    };

    let deep = format!(r#"{{"method":"password","x":{}1{}}}"#, "[".repeat(5_000), "]".repeat(5_000));
    let (status, body) = refused(send("application/json", deep).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["reason"].as_str().unwrap().contains("nested too deeply"), "{body}");
    // 40 levels is within serde_json's own limit but over ours.
    let forty = format!(r#"{{"x":{}1{}}}"#, "[".repeat(40), "]".repeat(40));
    assert_eq!(refused(send("application/json", forty).await.unwrap()).await.0, 400);

    let crowded = (0..300).map(|i| format!("f{i}=1")).collect::<Vec<_>>().join("&");
    let (status, body) = refused(send(FORM, crowded).await.unwrap()).await;
    assert_eq!(status, 400);
    assert!(body["error"]["reason"].as_str().unwrap().contains("256 fields"), "{body}");
    let long_name = format!("traits.{}=1", "n".repeat(300));
    assert_eq!(refused(send(FORM, long_name).await.unwrap()).await.0, 400);
    let seventeen = format!("{}=1", vec!["a"; 17].join("."));
    assert_eq!(refused(send(FORM, seventeen).await.unwrap()).await.0, 400);

    // The admin API bounds JSON nesting too.
    let mut metadata = json!(1);
    for _ in 0..40 {
        metadata = json!([metadata]);
    }
    let response = app
        .http
        .post(app.admin_path("/admin/identities"))
        .json(&json!({"schema_id": "default", "traits": {"email": "deep@example.com"}, "metadata_public": metadata}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused(response).await.0, 400);
    still_answers(&app).await;
    app.stop().await;
}

async fn submit_bodies_are_small_but_admin_imports_are_not(backend: Backend) {
    let app = spawn_app(backend).await;
    let flow = native_flow(&app, "login").await;
    let url = app.public_path(&format!("/self-service/login?flow={}", flow["id"].as_str().unwrap()));
    let big = json!({"method": "password", "identifier": "a@b.co", "password": "p".repeat(100 * 1024)});
    let (status, body) = refused(app.http.post(&url).json(&big).send().await.unwrap()).await;
    assert_eq!(status, 413);
    assert!(body["error"]["reason"].as_str().unwrap().contains("65536"), "{body}");

    // About 1.2 MiB of identities imported in one admin request.
    let filler = "m".repeat(2_000);
    let identities: Vec<Value> = (0..600)
        .map(|i| {
            json!({"create": {"schema_id": "default", "traits": {"email": format!("import-{i}@example.com")},
                   "metadata_public": {"note": filler}}})
        })
        .collect();
    let body = json!({ "identities": identities });
    assert!(serde_json::to_vec(&body).unwrap().len() > 1024 * 1024);
    let response = app.http.patch(app.admin_path("/admin/identities")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    let results = done["identities"].as_array().unwrap();
    assert_eq!(results.len(), 600);
    assert!(results.iter().all(|r| r["action"] == "create"), "{}", results[0]);
    app.stop().await;
}

async fn transient_payload_must_be_a_small_object(backend: Backend) {
    let app = spawn_app(backend).await;
    let flow = native_flow(&app, "registration").await;
    let url = app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap()));
    let attempt = |payload: Value| {
        app.http
            .post(&url)
            .json(&json!({"method": "password", "traits": {"email": "payload@example.com"},
                          "password": crate::helpers::PASSWORD, "transient_payload": payload}))
            .send()
    };
    for bad in [json!("a string"), json!([1, 2]), json!(null), json!({"big": "x".repeat(20_000)})] {
        let (status, body) = refused(attempt(bad).await.unwrap()).await;
        assert_eq!(status, 400);
        assert!(body["error"]["reason"].as_str().unwrap().contains("transient_payload"), "{body}");
    }
    // Nothing was half-written: the same flow still registers with a proper payload.
    let response = attempt(json!({"campaign": "spring"})).await.unwrap();
    assert_eq!(response.status(), 200);
    // Forms nest it like any other field; a flat form value is not an object.
    let flow = native_flow(&app, "registration").await;
    let url = app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap()));
    let form = |payload: &str| {
        format!(
            "method=password&traits.email=form%40example.com&password={}&{payload}",
            crate::helpers::PASSWORD
        )
    };
    let flat = app.http.post(&url).header("content-type", FORM).body(form("transient_payload=x")).send();
    assert_eq!(refused(flat.await.unwrap()).await.0, 400);
    let nested = app.http.post(&url).header("content-type", FORM).body(form("transient_payload.a=x")).send();
    assert_eq!(nested.await.unwrap().status(), 200);
    // Registration still works as before.
    let done =
        submit_registration(&app, json!({"email": "other@example.com"}), crate::helpers::PASSWORD).await;
    assert!(done["identity"]["id"].is_string());
    app.stop().await;
}

async fn long_query_strings_and_cookies_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let login = app.public_path("/self-service/login/api");

    let long = format!("{login}?return_to={}", "a".repeat(40 * 1024));
    assert_eq!(refused(app.http.get(&long).send().await.unwrap()).await.0, 414);
    let many = format!("{login}?{}", (0..600).map(|i| format!("p{i}=1")).collect::<Vec<_>>().join("&"));
    assert_eq!(refused(app.http.get(&many).send().await.unwrap()).await.0, 400);
    let admin_long =
        app.admin_path(&format!("/admin/identities?credentials_identifier={}", "a".repeat(40 * 1024)));
    assert_eq!(refused(app.http.get(&admin_long).send().await.unwrap()).await.0, 414);

    let big_cookie = format!("a={}", "c".repeat(20 * 1024));
    let response = app.http.get(&login).header("cookie", big_cookie).send().await.unwrap();
    assert_eq!(refused(response).await.0, 431);
    let crowded = (0..100).map(|i| format!("c{i}=1")).collect::<Vec<_>>().join("; ");
    let response =
        app.http.get(app.public_path("/sessions/whoami")).header("cookie", crowded).send().await.unwrap();
    assert_eq!(refused(response).await.0, 431);
    // A head beyond what the connection buffers is refused before routing.
    let huge = format!("a={}", "h".repeat(100 * 1024));
    let response = app.http.get(&login).header("x-filler", huge).send().await.unwrap();
    assert_eq!(response.status(), 431);
    // So are more than 100 headers.
    let mut crowded = app.http.get(&login);
    for i in 0..150 {
        crowded = crowded.header(format!("x-h{i}"), "1");
    }
    assert_eq!(crowded.send().await.unwrap().status(), 431);
    still_answers(&app).await;
    app.stop().await;
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Reads until the peer closes (true) or `limit` passes (false).
async fn closed_within(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (false, seen),
            Ok(Ok(0)) | Ok(Err(_)) => return (true, seen),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

async fn slow_clients_are_cut_off(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.serve.limits.header_read_timeout = "300ms".parse().unwrap();
        c.serve.limits.body_read_timeout = "300ms".parse().unwrap();
    })
    .await;

    // Slowloris: a header sent one byte at a time never completes in time.
    let stream = TcpStream::connect(addr(&app.public_url)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let dribble = tokio::spawn(async move {
        let head = format!("GET /health/alive HTTP/1.1\r\nHost: x\r\nX-Slow: {}", "s".repeat(200));
        for byte in head.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let started = Instant::now();
    let (closed, seen) = closed_within(&mut read, Duration::from_secs(3)).await;
    assert!(closed, "a slowloris connection was kept open");
    assert!(started.elapsed() >= Duration::from_millis(250), "{:?}", started.elapsed());
    assert!(!String::from_utf8_lossy(&seen).contains("200 OK"));
    dribble.abort();

    // A body that never arrives in full gets 408.
    let mut stream = TcpStream::connect(addr(&app.public_url)).await.unwrap();
    let head = "POST /self-service/login?flow=x HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":";
    stream.write_all(head.as_bytes()).await.unwrap();
    let (_, seen) = closed_within(&mut stream, Duration::from_secs(3)).await;
    let answer = String::from_utf8_lossy(&seen);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    still_answers(&app).await;
    app.stop().await;
}

/// One complete request on a raw connection; returns once the response is read.
async fn request_on(stream: &mut TcpStream, path: &str) -> String {
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_string))
                .and_then(|l| l.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

async fn idle_keep_alive_connections_are_closed(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.serve.limits.idle_timeout = "300ms".parse().unwrap();
        c.serve.limits.header_read_timeout = "10s".parse().unwrap();
    })
    .await;
    let mut stream = TcpStream::connect(addr(&app.public_url)).await.unwrap();
    assert!(request_on(&mut stream, "/health/alive").await.starts_with("HTTP/1.1 200"));
    // Kept alive: a second request on the same connection is served.
    assert!(request_on(&mut stream, "/health/alive").await.starts_with("HTTP/1.1 200"));
    let idle_from = Instant::now();
    let (closed, _) = closed_within(&mut stream, Duration::from_secs(3)).await;
    assert!(closed, "an idle connection was kept open");
    assert!(idle_from.elapsed() >= Duration::from_millis(250), "{:?}", idle_from.elapsed());

    // The admin listener follows the same rule.
    let mut stream = TcpStream::connect(addr(&app.admin_url)).await.unwrap();
    assert!(request_on(&mut stream, "/admin/health/alive").await.starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut stream, Duration::from_secs(3)).await.0);
    app.stop().await;
}

async fn connections_beyond_the_cap_wait(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.serve.limits.max_connections = 2;
        c.serve.limits.header_read_timeout = "20s".parse().unwrap();
        c.serve.limits.idle_timeout = "20s".parse().unwrap();
    })
    .await;
    let public = addr(&app.public_url);
    let first = TcpStream::connect(&public).await.unwrap();
    let mut second = TcpStream::connect(&public).await.unwrap();
    assert!(request_on(&mut second, "/health/alive").await.starts_with("HTTP/1.1 200"));

    // The third connection is made (the kernel queues it) but not served.
    let mut third = TcpStream::connect(&public).await.unwrap();
    third.write_all(b"GET /health/alive HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 1024];
    let waited = tokio::time::timeout(Duration::from_millis(700), third.read(&mut buf)).await;
    assert!(waited.is_err(), "a connection beyond the cap was served");

    // One leaves; the waiting one is served.
    drop(first);
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf)).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop((second, third));
    app.stop().await;
}
