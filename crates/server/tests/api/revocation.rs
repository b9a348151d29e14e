//! Revocation that sticks: a token hammered by `whoami` from several tasks
//! while it is revoked (logout, admin revocation, deactivation, a password
//! change) is refused by every `whoami` that starts after the revocation
//! returned. A lookup that read the session before the revocation committed
//! must not put it back in the cache afterwards.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, login, register, spawn_app, spawn_app_on, spawn_app_with};

/// As `on_both_databases!`, on a multi-threaded runtime: lookups and the
/// revocation must really run at the same time for the race to show.
macro_rules! on_both_databases_threaded {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn sqlite() {
                    super::$scenario($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn postgres() {
                    super::$scenario($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

on_both_databases_threaded!(
    native_logout_sticks_under_whoami_load,
    admin_session_revocation_sticks_under_whoami_load,
    admin_deactivation_sticks_under_whoami_load,
    password_change_revocation_sticks_under_whoami_load,
);

/// Concurrent `whoami` callers.
const TASKS: usize = 16;
/// `whoami` calls each caller makes after the revocation returned.
const AFTER: usize = 30;
/// Revocations per scenario: the race is narrow, so each test tries it more than once.
const ROUNDS: usize = 4;
/// How long another server sharing PostgreSQL may take to hear of a
/// revocation. The documented bound is the cache TTL (60 s) should a
/// notification be lost; delivered ones take milliseconds.
const ELSEWHERE: Duration = Duration::from_secs(5);

async fn whoami(http: &reqwest::Client, url: &str, token: &str) -> u16 {
    http.get(url).header("x-session-token", token).send().await.unwrap().status().as_u16()
}

/// Hammers `app`'s whoami with `token` from [`TASKS`] tasks, runs `revoke`
/// once they are under way, and then checks that every whoami that started
/// after `revoke` returned was answered 401.
async fn hammer_while(app: &TestApp, token: &str, revoke: impl Future<Output = ()>) {
    let url = app.public_path("/sessions/whoami");
    let revoked = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (http, url, token) = (app.http.clone(), url.clone(), token.to_string());
            let (revoked, sent) = (Arc::clone(&revoked), Arc::clone(&sent));
            tokio::spawn(async move {
                let (mut answered_before, mut refused_after) = (0, 0);
                while refused_after < AFTER {
                    let after = revoked.load(Ordering::SeqCst);
                    let status = whoami(&http, &url, &token).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    if after {
                        assert_eq!(status, 401, "a whoami that started after the revocation returned");
                        refused_after += 1;
                    } else if status == 200 {
                        answered_before += 1;
                    }
                }
                answered_before
            })
        })
        .collect();
    // Revoke while lookups are in flight, some of them past the cache.
    while sent.load(Ordering::SeqCst) < 4 * TASKS {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    revoke.await;
    revoked.store(true, Ordering::SeqCst);
    let mut answered_before = 0;
    for task in tasks {
        answered_before += task.await.unwrap();
    }
    assert!(answered_before > 0, "the token worked until it was revoked");
}

async fn session_id(app: &TestApp, token: &str) -> String {
    let response = app
        .http
        .get(app.public_path("/sessions/whoami"))
        .header("x-session-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let session: Value = response.json().await.unwrap();
    session["id"].as_str().unwrap().to_string()
}

async fn native_logout(app: &TestApp, token: &str) {
    let response = app
        .http
        .delete(app.public_path("/self-service/logout/api"))
        .json(&json!({ "session_token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
}

async fn revoke_session(app: &TestApp, id: &str) {
    let response = app.http.delete(app.admin_path(&format!("/admin/sessions/{id}"))).send().await.unwrap();
    assert_eq!(response.status(), 204);
}

/// Deactivates through the admin API: by JSON patch, or (`put`) by replacing
/// the identity, as Kratos's two update endpoints do.
async fn deactivate(app: &TestApp, identity_id: &str, put: bool) {
    let url = app.admin_path(&format!("/admin/identities/{identity_id}"));
    let response = if put {
        let current: Value = app.http.get(&url).send().await.unwrap().json().await.unwrap();
        let body =
            json!({ "schema_id": current["schema_id"], "traits": current["traits"], "state": "inactive" });
        app.http.put(&url).json(&body).send().await.unwrap()
    } else {
        let patch = json!([{ "op": "replace", "path": "/state", "value": "inactive" }]);
        app.http.patch(&url).json(&patch).send().await.unwrap()
    };
    assert_eq!(response.status(), 200);
    let updated: Value = response.json().await.unwrap();
    assert_eq!(updated["state"], "inactive");
}

async fn native_logout_sticks_under_whoami_load(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, "logout-race@example.com", PASSWORD).await;
    for _ in 0..ROUNDS {
        let token = login(&app, "logout-race@example.com", PASSWORD).await.unwrap();
        hammer_while(&app, &token, native_logout(&app, &token)).await;
    }
    app.stop().await;
}

async fn admin_session_revocation_sticks_under_whoami_load(backend: Backend) {
    let app = spawn_app(backend).await;
    register(&app, "revoke-race@example.com", PASSWORD).await;
    for _ in 0..ROUNDS {
        let token = login(&app, "revoke-race@example.com", PASSWORD).await.unwrap();
        let id = session_id(&app, &token).await;
        hammer_while(&app, &token, revoke_session(&app, &id)).await;
    }
    app.stop().await;
}

async fn admin_deactivation_sticks_under_whoami_load(backend: Backend) {
    let app = spawn_app(backend).await;
    for round in 0..ROUNDS {
        let (token, identity_id) =
            register(&app, &format!("deactivate-race-{round}@example.com"), PASSWORD).await;
        hammer_while(&app, &token, deactivate(&app, &identity_id, round % 2 == 1)).await;
    }
    app.stop().await;
}

/// With `revoke_active_sessions` after a password change, the other
/// devices' sessions end with the change.
async fn password_change_revocation_sticks_under_whoami_load(backend: Backend) {
    let app = spawn_app_with(backend, |c| {
        c.selfservice.flows.settings.after.password.hooks =
            vec![latchkey::config::Hook { hook: "revoke_active_sessions".into(), config: None }];
    })
    .await;
    for round in 0..ROUNDS {
        let email = format!("password-race-{round}@example.com");
        let (token, _) = register(&app, &email, PASSWORD).await;
        let other_device = login(&app, &email, PASSWORD).await.unwrap();
        let response = app
            .http
            .get(app.public_path("/self-service/settings/api"))
            .header("x-session-token", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let flow: Value = response.json().await.unwrap();
        let change = async {
            let response = app
                .http
                .post(
                    app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())),
                )
                .header("x-session-token", &token)
                .json(&json!({ "method": "password", "password": "an-entirely-new-passphrase-77" }))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        };
        hammer_while(&app, &other_device, change).await;
        assert_eq!(whoami(&app.http, &app.public_path("/sessions/whoami"), &token).await, 200);
    }
    app.stop().await;
}

/// Two servers share one PostgreSQL database; `b` is hammered (so it caches
/// the session) while `a` revokes. `b` refuses the token within
/// [`ELSEWHERE`], and from then on every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn revocation_on_one_server_sticks_on_another_sharing_postgres() {
    let a = spawn_app(Backend::Postgres).await;
    let b = spawn_app_on(&a.dsn).await;
    let url = b.public_path("/sessions/whoami");
    let until_b_refuses = |token: String| {
        let (http, url) = (b.http.clone(), url.clone());
        async move {
            let started = Instant::now();
            while whoami(&http, &url, &token).await != 401 {
                assert!(started.elapsed() < ELSEWHERE, "b still accepts the token after {ELSEWHERE:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    let (token, _) = register(&a, "shared-logout@example.com", PASSWORD).await;
    hammer_while(&b, &token, async {
        native_logout(&a, &token).await;
        until_b_refuses(token.clone()).await;
    })
    .await;

    let (token, _) = register(&a, "shared-revoke@example.com", PASSWORD).await;
    let id = session_id(&b, &token).await;
    hammer_while(&b, &token, async {
        revoke_session(&a, &id).await;
        until_b_refuses(token.clone()).await;
    })
    .await;

    let (token, identity_id) = register(&a, "shared-deactivate@example.com", PASSWORD).await;
    hammer_while(&b, &token, async {
        deactivate(&a, &identity_id, true).await;
        until_b_refuses(token.clone()).await;
    })
    .await;
    b.stop().await;
    a.stop().await;
}
