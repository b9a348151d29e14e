//! Login throttling (`security.login_throttling`): failed password logins
//! per identifier and per client address, refused before any hash once past
//! the limits. Delays are configured so that no test waits more than a
//! second; the escalation is read from `Retry-After` on seeded histories.

use chrono::Duration;
use latchkey::config::Config;
use latchkey_domain::flow::login_throttle::{IDENTIFIER_BUCKET, identifier_subject};
use latchkey_domain::store::RateWindow;
use latchkey_domain::time::Clock;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Backend, Jar, PASSWORD, TestApp, create_identity, csrf_token_of, native_flow, spawn_app_on_with,
    spawn_app_with,
};
use crate::on_both_databases;

on_both_databases!(
    json_clients_get_429_with_retry_after_and_the_envelope,
    unknown_identifiers_are_throttled_alike,
    browser_forms_get_the_flow_back_with_a_message,
    refused_attempts_never_reach_the_hasher,
    a_success_resets_the_identifier,
    successes_do_not_count_against_the_address,
    the_wait_doubles_and_is_capped,
    the_right_password_gets_in_once_the_lock_ends,
    one_address_is_stopped_while_another_signs_in,
    one_source_cannot_lock_the_owner_out,
    several_sources_meet_only_the_identifiers_short_lock,
    parallel_attempts_get_no_more_hash_checks_than_allowed,
    counts_survive_a_restart_and_are_shared_by_servers,
    refresh_logins_are_throttled_too,
    throttling_can_be_turned_off,
);

/// The message id of a throttled login (Latchkey's own; Kratos has none).
const THROTTLED: u64 = 4019001;

/// `free` failures per identifier, then waits from `initial` doubling up to `max`.
fn identifier_limits(config: &mut Config, free: u64, initial: &str, max: &str) {
    let id = &mut config.security.login_throttling.identifier;
    id.free_failures = free;
    id.initial_delay = initial.parse().unwrap();
    id.max_delay = max.parse().unwrap();
}

/// `free` failures per identifier from one address, then waits from `initial` doubling up to `max`.
fn pair_limits(config: &mut Config, free: u64, initial: &str, max: &str) {
    let pair = &mut config.security.login_throttling.identifier_per_ip;
    pair.free_failures = free;
    pair.initial_delay = initial.parse().unwrap();
    pair.max_delay = max.parse().unwrap();
}

/// Believes `X-Forwarded-For` from the test client, and allows `max` failures per address.
fn address_limit(config: &mut Config, max: u64) {
    config.serve.public.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    config.security.login_throttling.ip.max_failures = max;
}

/// One native login attempt (a fresh flow), optionally from `client` by `X-Forwarded-For`.
async fn attempt(app: &TestApp, identifier: &str, password: &str, client: Option<&str>) -> reqwest::Response {
    let flow = native_flow(app, "login").await;
    submit(app, flow["id"].as_str().unwrap(), identifier, password, client).await
}

async fn submit(
    app: &TestApp,
    flow: &str,
    identifier: &str,
    password: &str,
    client: Option<&str>,
) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.public_path(&format!("/self-service/login?flow={flow}")))
        .json(&json!({ "method": "password", "identifier": identifier, "password": password }));
    if let Some(client) = client {
        request = request.header("x-forwarded-for", client);
    }
    request.send().await.unwrap()
}

/// The status of an attempt, its body read so the connection is reused.
async fn status_of(response: reqwest::Response) -> u16 {
    let status = response.status().as_u16();
    let _ = response.bytes().await;
    status
}

/// `n` wrong passwords for `identifier`, each expected to be judged (400).
async fn fail(app: &TestApp, identifier: &str, n: usize, client: Option<&str>) {
    for i in 0..n {
        let response = attempt(app, identifier, "wrong-password-1", client).await;
        assert_eq!(response.status(), 400, "failure {i} of {n} for {identifier}");
        let _ = response.bytes().await;
    }
}

fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn retry_after(response: &reqwest::Response) -> u64 {
    response.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

async fn json_clients_get_429_with_retry_after_and_the_envelope(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 3, "30s", "60s")).await;
    create_identity(&app, "json@example.com").await;
    fail(&app, "json@example.com", 3, None).await;

    let flow = native_flow(&app, "login").await;
    let id = flow["id"].as_str().unwrap();
    let response = submit(&app, id, "json@example.com", "wrong-password-1", None).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["ory-error-id"], "rate_limit_exceeded");
    let seconds = retry_after(&response);
    assert!((1..=30).contains(&seconds), "Retry-After: {seconds}");
    let body: Value = response.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["id"], "rate_limit_exceeded");
    assert_eq!(error["code"], 429);
    assert_eq!(error["status"], "Too Many Requests");
    assert_eq!(error["details"]["retry_after_seconds"], seconds);
    let reason = error["reason"].as_str().unwrap();
    assert!(reason.contains("this identifier") && reason.contains(&format!("{seconds} seconds")), "{reason}");
    assert!(error["message"].is_string());

    // The flow itself says so too, for a UI that shows it.
    let flow: Value = app.get_json(&app.public_path(&format!("/self-service/login/flows?id={id}"))).await;
    let message = &flow["ui"]["messages"][0];
    assert_eq!(message["id"], THROTTLED, "{flow}");
    assert_eq!(message["type"], "error");
    assert_eq!(message["context"]["retry_after_seconds"], seconds);
    app.stop().await;
}

async fn unknown_identifiers_are_throttled_alike(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 3, "30s", "60s")).await;
    create_identity(&app, "known@example.com").await;
    // Whether an account exists makes no difference: no enumeration by throttling.
    for identifier in ["known@example.com", "nobody@example.com"] {
        fail(&app, identifier, 3, None).await;
        let refused = attempt(&app, identifier, "wrong-password-1", None).await;
        assert_eq!(refused.status(), 429, "{identifier}");
        assert_eq!(retry_after(&refused), 30, "{identifier}");
    }
    // Identifiers are counted normalised: case and spaces do not earn a fresh budget.
    let refused = attempt(&app, "  Nobody@EXAMPLE.com ", "wrong-password-1", None).await;
    assert_eq!(refused.status(), 429);
    app.stop().await;
}

async fn browser_forms_get_the_flow_back_with_a_message(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 2, "30s", "60s")).await;
    create_identity(&app, "browser@example.com").await;
    let mut jar = Jar::default();
    let response = app.http.get(app.public_path("/self-service/login/browser")).send().await.unwrap();
    assert_eq!(response.status(), 303);
    jar.store(&response);
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let id = location.split("flow=").nth(1).unwrap().to_string();
    let fetch = || async {
        app.http
            .get(app.public_path(&format!("/self-service/login/flows?id={id}")))
            .header("cookie", jar.header())
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let flow = fetch().await;
    let csrf = csrf_token_of(&flow);
    let url = app.public_path(&format!("/self-service/login?flow={id}"));
    // A form post from a page, or the same flow driven by a script asking for JSON.
    let post = |password: &'static str, accept_json: bool| {
        let request = app.http.post(&url).header("cookie", jar.header());
        let request = if accept_json {
            request.json(&json!({
                "method": "password",
                "identifier": "browser@example.com",
                "password": password,
                "csrf_token": csrf,
            }))
        } else {
            request.header("content-type", "application/x-www-form-urlencoded").body(format!(
                "method=password&identifier=browser%40example.com&password={password}&csrf_token={}",
                form_encode(&csrf)
            ))
        };
        request.send()
    };
    for _ in 0..2 {
        let response = post("wrong-password-1", false).await.unwrap();
        assert_eq!(response.status(), 303);
    }
    // Throttled: back to the form like any refused login, with the message on the flow.
    let response = post(PASSWORD, false).await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], format!("http://127.0.0.1:4455/login?flow={id}"));
    let flow = fetch().await;
    let messages = flow["ui"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{flow}");
    assert_eq!(messages[0]["id"], THROTTLED);
    assert_eq!(messages[0]["type"], "error");
    let seconds = messages[0]["context"]["retry_after_seconds"].as_u64().unwrap();
    assert!((1..=30).contains(&seconds), "{flow}");
    assert!(messages[0]["text"].as_str().unwrap().contains(&format!("{seconds} seconds")));
    assert!(messages[0]["context"]["retry_at_unix"].is_i64());

    // The same browser flow driven by a script asking for JSON gets the 429.
    let response = post(PASSWORD, true).await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(retry_after(&response) >= 1);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["id"], "rate_limit_exceeded");
    app.stop().await;
}

async fn refused_attempts_never_reach_the_hasher(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 3, "30s", "60s")).await;
    create_identity(&app, "hasher@example.com").await;
    let before = app.hash_checks();
    fail(&app, "hasher@example.com", 3, None).await;
    assert_eq!(app.hash_checks(), before + 3);
    // Even the right password is refused unchecked while the lock holds.
    let refused = attempt(&app, "hasher@example.com", PASSWORD, None).await;
    assert_eq!(refused.status(), 429);
    for _ in 0..20 {
        assert_eq!(status_of(attempt(&app, "hasher@example.com", "wrong-password-1", None).await).await, 429);
    }
    assert_eq!(app.hash_checks(), before + 3);
    app.stop().await;
}

async fn a_success_resets_the_identifier(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 3, "30s", "60s")).await;
    create_identity(&app, "reset@example.com").await;
    fail(&app, "reset@example.com", 2, None).await;
    assert_eq!(status_of(attempt(&app, "reset@example.com", PASSWORD, None).await).await, 200);
    // Without the reset the second of these would be the 5th failure and refused.
    fail(&app, "reset@example.com", 3, None).await;
    assert_eq!(status_of(attempt(&app, "reset@example.com", "wrong-password-1", None).await).await, 429);
    app.stop().await;
}

async fn successes_do_not_count_against_the_address(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        identifier_limits(c, 100, "30s", "60s");
        address_limit(c, 3);
    })
    .await;
    create_identity(&app, "regular@example.com").await;
    let office = Some("192.0.2.10");
    fail(&app, "typo@example.com", 2, office).await;
    // Each success takes back its own event, so the address stays at two failures.
    for _ in 0..5 {
        assert_eq!(status_of(attempt(&app, "regular@example.com", PASSWORD, office).await).await, 200);
    }
    fail(&app, "typo@example.com", 1, office).await;
    let refused = attempt(&app, "regular@example.com", PASSWORD, office).await;
    assert_eq!(refused.status(), 429);
    app.stop().await;
}

/// Records `failures` old failures for `identifier` straight in the store:
/// half an hour ago, inside the window but long after any lock they caused,
/// as if the identifier had been failing for a while.
async fn seed_failures(app: &TestApp, identifier: &str, failures: usize) {
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    let at = app.clock.now() - Duration::minutes(30);
    let window = [RateWindow {
        bucket: IDENTIFIER_BUCKET,
        subject: identifier_subject(identifier),
        since: at - Duration::hours(1),
    }];
    for _ in 0..failures {
        let (admitted, _) = store.admit_event(&window, Uuid::new_v4(), at, &|_| true).await.unwrap();
        assert!(admitted);
    }
    store.close().await;
}

async fn the_wait_doubles_and_is_capped(backend: Backend) {
    // Two free failures, then 1 s, 2 s, 4 s, and never more than 4 s.
    let app = spawn_app_with(backend, |c| identifier_limits(c, 2, "1s", "4s")).await;
    let mut waits = Vec::new();
    for past in 1..=5 {
        let identifier = format!("escalate-{past}@example.com");
        // With `past` failures behind it (the lock they caused long over), one
        // more is judged, and the next attempt waits delay(past).
        seed_failures(&app, &identifier, past).await;
        fail(&app, &identifier, 1, None).await;
        let refused = attempt(&app, &identifier, "wrong-password-1", None).await;
        assert_eq!(refused.status(), 429, "{identifier}");
        waits.push(retry_after(&refused));
    }
    assert_eq!(waits, [1, 2, 4, 4, 4]);
    app.stop().await;
}

async fn the_right_password_gets_in_once_the_lock_ends(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 2, "500ms", "60s")).await;
    create_identity(&app, "patient@example.com").await;
    fail(&app, "patient@example.com", 2, None).await;
    let refused = attempt(&app, "patient@example.com", PASSWORD, None).await;
    assert_eq!(refused.status(), 429);
    let wait = retry_after(&refused);
    assert_eq!(wait, 1, "500 ms, rounded up");
    app.clock.advance(std::time::Duration::from_secs(wait));
    let response = attempt(&app, "patient@example.com", PASSWORD, None).await;
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    let whoami = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", done["session_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 200);
    app.stop().await;
}

async fn one_address_is_stopped_while_another_signs_in(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        identifier_limits(c, 100, "30s", "60s");
        address_limit(c, 3);
    })
    .await;
    create_identity(&app, "victim@example.com").await;
    let attacker = Some("203.0.113.7");
    // Three different identifiers: the address limit counts them all.
    for n in 0..3 {
        fail(&app, &format!("guess-{n}@example.com"), 1, attacker).await;
    }
    let before = app.hash_checks();
    let refused = attempt(&app, "victim@example.com", PASSWORD, attacker).await;
    assert_eq!(refused.status(), 429);
    let seconds = retry_after(&refused);
    assert!(seconds > 60 && seconds <= 15 * 60, "until the oldest failure ages out: {seconds}");
    let body: Value = refused.json().await.unwrap();
    assert!(body["error"]["reason"].as_str().unwrap().contains("network address"), "{body}");
    assert_eq!(app.hash_checks(), before);
    // Another address, and the user gets in.
    assert_eq!(
        status_of(attempt(&app, "victim@example.com", PASSWORD, Some("198.51.100.9")).await).await,
        200
    );
    // IPv6 is counted per /64: stepping through one's own prefix earns nothing.
    for n in 0..3 {
        fail(&app, &format!("v6-{n}@example.com"), 1, Some(&format!("2001:db8:7:7::{n}"))).await;
    }
    let refused = attempt(&app, "victim@example.com", PASSWORD, Some("2001:db8:7:7:ffff::1")).await;
    assert_eq!(refused.status(), 429);
    app.stop().await;
}

async fn one_source_cannot_lock_the_owner_out(backend: Backend) {
    // The defaults' shape: a long lock for the identifier from one address,
    // a higher free count for the identifier from everywhere.
    let app = spawn_app_with(backend, |c| {
        address_limit(c, 30);
        pair_limits(c, 3, "10m", "15m");
        identifier_limits(c, 10, "30s", "60s");
    })
    .await;
    create_identity(&app, "owner@example.com").await;
    let attacker = Some("203.0.113.50");
    fail(&app, "owner@example.com", 3, attacker).await;
    let before = app.hash_checks();
    // The guessing source waits ten minutes, however it asks...
    for password in ["wrong-password-1", PASSWORD] {
        let refused = attempt(&app, "owner@example.com", password, attacker).await;
        assert_eq!(refused.status(), 429);
        let seconds = retry_after(&refused);
        assert!((9 * 60..=10 * 60).contains(&seconds), "{seconds}");
        let body: Value = refused.json().await.unwrap();
        let reason = body["error"]["reason"].as_str().unwrap();
        assert!(reason.contains("this identifier from this network address"), "{reason}");
    }
    assert_eq!(app.hash_checks(), before, "refused unhashed");
    // ...while the owner, elsewhere, signs in at once.
    let response = attempt(&app, "owner@example.com", PASSWORD, Some("198.51.100.20")).await;
    assert_eq!(response.status(), 200);
    app.stop().await;
}

async fn several_sources_meet_only_the_identifiers_short_lock(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        address_limit(c, 30);
        pair_limits(c, 2, "10m", "15m");
        identifier_limits(c, 6, "30s", "60s");
    })
    .await;
    create_identity(&app, "target@example.com").await;
    // Three sources, two free failures each: the identifier's six.
    for source in ["203.0.113.61", "203.0.113.62", "203.0.113.63"] {
        fail(&app, "target@example.com", 2, Some(source)).await;
    }
    // Now everyone, the owner too, meets the identifier's lock: short.
    let refused = attempt(&app, "target@example.com", PASSWORD, Some("198.51.100.21")).await;
    assert_eq!(refused.status(), 429);
    let seconds = retry_after(&refused);
    assert!((1..=30).contains(&seconds), "the identifier's lock is short: {seconds}");
    let body: Value = refused.json().await.unwrap();
    let reason = body["error"]["reason"].as_str().unwrap();
    assert!(reason.contains("for this identifier. "), "{reason}");
    app.stop().await;
}

async fn parallel_attempts_get_no_more_hash_checks_than_allowed(backend: Backend) {
    const ATTEMPTS: usize = 1000;
    let app = spawn_app_with(backend, |c| identifier_limits(c, 5, "60s", "60s")).await;
    create_identity(&app, "popular@example.com").await;
    let flows: Vec<String> = {
        let mut flows = Vec::new();
        for _ in 0..50 {
            flows.push(native_flow(&app, "login").await["id"].as_str().unwrap().to_string());
        }
        flows
    };
    let before = app.hash_checks();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..ATTEMPTS {
        let http = app.http.clone();
        let url = app.public_path(&format!("/self-service/login?flow={}", flows[n % flows.len()]));
        tasks.spawn(async move {
            let body = json!({ "method": "password", "identifier": "popular@example.com", "password": "wrong-password-1" });
            let response = http.post(url).json(&body).send().await.unwrap();
            status_of(response).await
        });
    }
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(status) = tasks.join_next().await {
        *statuses.entry(status.unwrap()).or_default() += 1;
    }
    // Exactly the free failures were judged; every other attempt was refused unhashed.
    assert_eq!(statuses, [(400, 5), (429, ATTEMPTS - 5)].into_iter().collect(), "{statuses:?}");
    assert_eq!(app.hash_checks() - before, 5);
    app.stop().await;
}

async fn counts_survive_a_restart_and_are_shared_by_servers(backend: Backend) {
    let limits = |c: &mut Config| identifier_limits(c, 3, "60s", "60s");
    let app = spawn_app_with(backend, limits).await;
    create_identity(&app, "durable@example.com").await;
    fail(&app, "durable@example.com", 3, None).await;
    // A second server on the same database counts the same failures.
    let other = spawn_app_on_with(&app.dsn, limits).await;
    assert_eq!(status_of(attempt(&other, "durable@example.com", PASSWORD, None).await).await, 429);
    other.stop().await;
    let app = app.restart(limits).await;
    assert_eq!(status_of(attempt(&app, "durable@example.com", PASSWORD, None).await).await, 429);
    assert_eq!(app.hash_checks(), 0, "the restarted server hashed nothing");
    app.stop().await;
}

async fn refresh_logins_are_throttled_too(backend: Backend) {
    let app = spawn_app_with(backend, |c| identifier_limits(c, 2, "30s", "60s")).await;
    create_identity(&app, "refresh@example.com").await;
    let done: Value = attempt(&app, "refresh@example.com", PASSWORD, None).await.json().await.unwrap();
    let token = done["session_token"].as_str().unwrap().to_string();
    let refresh = || async {
        let flow: Value = app
            .http
            .get(app.public_path("/self-service/login/api?refresh=true"))
            .header("x-session-token", &token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(flow["refresh"], true);
        flow["id"].as_str().unwrap().to_string()
    };
    for expected in [400, 400, 429] {
        let flow = refresh().await;
        let response = app
            .http
            .post(app.public_path(&format!("/self-service/login?flow={flow}")))
            .header("x-session-token", &token)
            .json(&json!({ "method": "password", "identifier": "refresh@example.com", "password": "wrong-password-1" }))
            .send()
            .await
            .unwrap();
        assert_eq!(status_of(response).await, expected);
    }
    app.stop().await;
}

async fn throttling_can_be_turned_off(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        identifier_limits(c, 1, "30s", "60s");
        c.security.login_throttling.enabled = false;
    })
    .await;
    create_identity(&app, "open@example.com").await;
    fail(&app, "open@example.com", 8, None).await;
    assert_eq!(status_of(attempt(&app, "open@example.com", PASSWORD, None).await).await, 200);
    app.stop().await;
}
