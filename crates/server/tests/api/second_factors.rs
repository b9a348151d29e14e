//! Second factors in the settings flow (TOTP apps and backup recovery
//! codes, as Kratos's `totp` and `lookup_secret` methods), the checks a
//! login step-up will spend them with, what the database holds of them, and
//! the admin API's view and removal of them. TOTP codes are computed here
//! from the key the flow shows, as an authenticator app would.

use std::sync::Arc;

use latchkey::config::Config;
use latchkey_domain::second_factor::lookup::Verdict;
use latchkey_domain::second_factor::totp::TotpKey;
use latchkey_domain::second_factor::{LookupSecrets, SecretCipher, Totp};
use latchkey_domain::time::Clock;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, register, settings_flow, spawn_app, spawn_app_with};
use crate::on_both_databases;

on_both_databases!(
    totp_links_with_a_code_from_the_shown_key_and_unlinks,
    a_totp_code_is_accepted_once,
    lookup_codes_are_made_confirmed_revealed_and_disabled,
    a_lookup_code_works_once,
    second_factor_changes_need_a_recent_sign_in,
    the_admin_api_shows_second_factors_without_secrets_and_removes_them,
    switched_off_methods_offer_nothing,
);

const CIPHER: &str = "0123456789abcdef0123456789abcdef";

pub(crate) fn second_factors_on(c: &mut Config) {
    let methods = &mut c.selfservice.methods;
    methods.totp.enabled = true;
    methods.totp.config.issuer = Some("Latchkey Tests".into());
    methods.lookup_secret.enabled = true;
    c.secrets.cipher = vec![CIPHER.into()];
}

pub(crate) async fn submit(app: &TestApp, token: &str, flow: &Value, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/settings?flow={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// The node with this name (inputs) or id (images, texts).
pub(crate) fn node<'a>(flow: &'a Value, id: &str) -> Option<&'a Value> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["attributes"]["name"] == id || n["attributes"]["id"] == id)
}

pub(crate) fn group_ids(flow: &Value, group: &str) -> Vec<String> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["group"] == group)
        .map(|n| {
            let a = &n["attributes"];
            let id = a["name"].as_str().or(a["id"].as_str()).unwrap();
            if id == "method" { format!("method={}", a["value"].as_str().unwrap()) } else { id.to_string() }
        })
        .collect()
}

/// The TOTP key the settings flow shows in its `totp_secret_key` node.
pub(crate) fn shown_key(flow: &Value) -> (String, TotpKey) {
    let secret = node(flow, "totp_secret_key").expect("a TOTP key is offered")["attributes"]["text"]["context"]
        ["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let key = TotpKey::from_secret(&secret).expect("the key is base32");
    (secret, key)
}

/// The codes the `lookup_secret_codes` node lists, "used" for spent ones.
pub(crate) fn listed_codes(flow: &Value) -> Vec<String> {
    let text = &node(flow, "lookup_secret_codes").expect("codes are listed")["attributes"]["text"];
    assert_eq!(text["id"], 1050015);
    text["text"].as_str().unwrap().split(", ").map(str::to_string).collect()
}

/// Everything the database holds of flows and credentials, as text: what a
/// dump of it would give away.
async fn database_text(backend: Backend, dsn: &str) -> String {
    use sqlx::Connection;
    let queries = [
        "SELECT CAST(data AS TEXT) FROM selfservice_flows",
        "SELECT CAST(config AS TEXT) FROM identity_credentials",
    ];
    let mut out = String::new();
    for sql in queries {
        let rows: Vec<String> = match backend {
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(dsn).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
            }
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(dsn.split('?').next().unwrap()).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&mut conn).await.unwrap()
            }
        };
        out.extend(rows);
    }
    out
}

/// The methods as a login step-up would use them, on the server's database
/// and clock, with its cipher secret.
async fn verifiers(app: &TestApp) -> (Totp, LookupSecrets) {
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    let clock: Arc<dyn Clock> = app.clock.clone();
    let cipher = Arc::new(SecretCipher::new(&[CIPHER.into()]).unwrap());
    (
        Totp::new(store.clone(), clock.clone(), cipher.clone(), "Latchkey Tests".into()),
        LookupSecrets::new(store, clock, cipher),
    )
}

async fn identity_of(app: &TestApp, id: &str) -> Value {
    app.get_json(&app.admin_path(&format!("/admin/identities/{id}"))).await
}

/// Registers, links TOTP through settings; returns the token, the identity
/// id, the key and the code that linked it.
pub(crate) async fn with_totp(app: &TestApp, email: &str) -> (String, String, TotpKey, String) {
    let (token, id) = register(app, email, PASSWORD).await;
    let flow = settings_flow(app, &token).await;
    let (_, key) = shown_key(&flow);
    let code = key.code_at(app.clock.now());
    let (status, saved) = submit(app, &token, &flow, json!({"method": "totp", "totp_code": code})).await;
    assert_eq!(status, 200, "{saved}");
    (token, id, key, code)
}

async fn totp_links_with_a_code_from_the_shown_key_and_unlinks(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (token, identity_id) = register(&app, "totp@example.com", PASSWORD).await;
    let flow = settings_flow(&app, &token).await;

    // What Kratos offers an identity without TOTP, in its order.
    assert_eq!(group_ids(&flow, "totp"), ["totp_qr", "totp_secret_key", "totp_code", "method=totp"]);
    let qr = node(&flow, "totp_qr").unwrap();
    assert_eq!(qr["type"], "img");
    assert_eq!(qr["attributes"]["node_type"], "img");
    assert!(qr["attributes"]["src"].as_str().unwrap().starts_with("data:image/png;base64,iVBORw0KGgo"));
    assert_eq!((&qr["attributes"]["width"], &qr["attributes"]["height"]), (&json!(256), &json!(256)));
    assert_eq!(qr["meta"]["label"]["id"], 1050005);
    let secret_node = node(&flow, "totp_secret_key").unwrap();
    assert_eq!(
        (&secret_node["type"], &secret_node["attributes"]["text"]["id"]),
        (&json!("text"), &json!(1050006))
    );
    assert_eq!(secret_node["meta"]["label"]["id"], 1050017);
    let (secret, key) = shown_key(&flow);
    assert_eq!(secret.len(), 32, "160 bits in base32");
    assert_eq!(secret_node["attributes"]["text"]["text"], secret.as_str());
    let code_input = node(&flow, "totp_code").unwrap();
    assert_eq!(code_input["attributes"]["required"], true);
    assert_eq!(code_input["meta"]["label"]["id"], 1070006);
    // Fetching the flow again shows the same key: it waits in the flow.
    let fetched: Value = app
        .http
        .get(app.public_path(&format!("/self-service/settings/flows?id={}", flow["id"].as_str().unwrap())))
        .header("x-session-token", &token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown_key(&fetched).0, secret);
    // ...but sealed: the stored flow holds neither the key nor its QR code.
    let stored = database_text(backend, &app.dsn).await;
    assert!(!stored.contains(&secret) && !stored.contains("data:image/png"), "{stored}");

    // No code, then a wrong one: Kratos's messages on the code field.
    let (status, rejected) = submit(&app, &token, &flow, json!({"method": "totp", "totp_code": ""})).await;
    assert_eq!(status, 400);
    assert_eq!(node(&rejected, "totp_code").unwrap()["messages"][0]["id"], 4000002);
    let now = app.clock.now();
    let wrong =
        (0..1_000_000u32).map(|n| format!("{n:06}")).find(|c| key.matching_step(c, now).is_none()).unwrap();
    let (status, rejected) = submit(&app, &token, &flow, json!({"method": "totp", "totp_code": wrong})).await;
    assert_eq!(status, 400);
    assert_eq!(node(&rejected, "totp_code").unwrap()["messages"][0]["id"], 4000008);
    assert_eq!(shown_key(&rejected).0, secret, "the same key is still offered");
    assert!(identity_of(&app, &identity_id).await["credentials"].get("totp").is_none());

    // The right code links it.
    let (status, saved) =
        submit(&app, &token, &flow, json!({"method": "totp", "totp_code": key.code_at(app.clock.now())}))
            .await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["state"], "success");
    assert_eq!(saved["ui"]["messages"][0]["id"], 1050001);
    assert_eq!(group_ids(&saved, "totp"), ["totp_unlink"]);
    let unlink = node(&saved, "totp_unlink").unwrap();
    assert_eq!(
        (&unlink["attributes"]["type"], &unlink["attributes"]["value"]),
        (&json!("submit"), &json!("true"))
    );
    assert_eq!(unlink["meta"]["label"]["id"], 1050004);
    let identity = identity_of(&app, &identity_id).await;
    let totp = &identity["credentials"]["totp"];
    assert_eq!(totp["type"], "totp");
    assert_eq!(totp["identifiers"], json!([identity_id]), "identified by the identity's id, as in Kratos");
    // Stored sealed: neither the key nor the otpauth URL is in the database.
    let stored = database_text(backend, &app.dsn).await;
    assert!(!stored.contains(&secret) && !stored.contains("otpauth://"), "{stored}");
    // A new settings flow offers no key now, only unlinking.
    let again = settings_flow(&app, &token).await;
    assert_eq!(group_ids(&again, "totp"), ["totp_unlink"]);

    // Unlinking (the button sends only `totp_unlink`, as Kratos's does).
    let (status, unlinked) = submit(&app, &token, &again, json!({"totp_unlink": true})).await;
    assert_eq!(status, 200, "{unlinked}");
    assert_eq!(unlinked["state"], "success");
    assert!(identity_of(&app, &identity_id).await["credentials"].get("totp").is_none());
    // A fresh key is offered to link again.
    assert_eq!(group_ids(&unlinked, "totp"), ["totp_qr", "totp_secret_key", "totp_code", "method=totp"]);
    assert_ne!(shown_key(&unlinked).0, secret);
    app.stop().await;
}

async fn a_totp_code_is_accepted_once(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (_, identity_id, key, linking) = with_totp(&app, "replay@example.com").await;
    let (totp, _) = verifiers(&app).await;
    let identity = app_identity(&app, &identity_id).await;

    // The code that linked the app is spent already.
    assert!(!totp.verify(&identity, &linking).await.unwrap(), "the linking code is not taken twice");
    // The next step's code passes once; then neither it nor an older one.
    app.clock.advance(std::time::Duration::from_secs(30));
    let next = key.code_at(app.clock.now());
    assert!(totp.verify(&identity, &next).await.unwrap());
    assert!(!totp.verify(&identity, &next).await.unwrap(), "a replay within its window is refused");
    assert!(!totp.verify(&identity, &linking).await.unwrap());
    // Parallel submits of one fresh code: one gets in.
    app.clock.advance(std::time::Duration::from_secs(60));
    let fresh = key.code_at(app.clock.now());
    let results = all_at_once(8, || {
        let (totp, identity, code) = (totp.clone(), identity.clone(), fresh.clone());
        async move { totp.verify(&identity, &code).await.unwrap() }
    })
    .await;
    assert_eq!(results.iter().filter(|ok| **ok).count(), 1, "{results:?}");
    // Wrong codes and codes of other keys fail.
    app.clock.advance(std::time::Duration::from_secs(60));
    let other = TotpKey::generate("x", "y");
    assert!(!totp.verify(&identity, &other.code_at(app.clock.now())).await.unwrap());
    assert!(!totp.verify(&identity, "12345").await.unwrap());
    app.stop().await;
}

/// The identity as the domain sees it (with credentials), from the store.
async fn app_identity(app: &TestApp, id: &str) -> latchkey_domain::Identity {
    let (store, _) = latchkey::startup::open_store(&app.dsn).await.unwrap();
    store.get_identity(id.parse().unwrap()).await.unwrap().unwrap()
}

/// Runs `n` copies of `call` at once and collects their answers.
pub(crate) async fn all_at_once<T, F>(n: usize, call: impl Fn() -> F) -> Vec<T>
where
    T: Send + 'static,
    F: std::future::Future<Output = T> + Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        set.spawn(call());
    }
    set.join_all().await
}

async fn lookup_codes_are_made_confirmed_revealed_and_disabled(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (token, identity_id) = register(&app, "codes@example.com", PASSWORD).await;
    let flow = settings_flow(&app, &token).await;
    assert_eq!(group_ids(&flow, "lookup_secret"), ["lookup_secret_regenerate"]);
    assert_eq!(node(&flow, "lookup_secret_regenerate").unwrap()["meta"]["label"]["id"], 1050008);
    // Kratos's group order: profile, password, lookup_secret, totp.
    let groups: Vec<&str> =
        flow["ui"]["nodes"].as_array().unwrap().iter().map(|n| n["group"].as_str().unwrap()).collect();
    let first = |g: &str| groups.iter().position(|x| *x == g).unwrap();
    assert!(first("password") < first("lookup_secret") && first("lookup_secret") < first("totp"));

    // Confirming before making any: 400 with the reason on the form.
    let (status, rejected) = submit(&app, &token, &flow, json!({"lookup_secret_confirm": true})).await;
    assert_eq!(status, 400);
    assert_eq!(rejected["ui"]["messages"][0]["id"], 4000001);

    // Regenerate: twelve codes of eight lowercase letters and digits, shown, not saved.
    let (status, made) =
        submit(&app, &token, &flow, json!({"method": "lookup_secret", "lookup_secret_regenerate": true}))
            .await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["state"], "show_form");
    assert_eq!(group_ids(&made, "lookup_secret"), ["lookup_secret_codes", "lookup_secret_confirm"]);
    let codes = listed_codes(&made);
    assert_eq!(codes.len(), 12);
    assert!(
        codes.iter().all(|c| c.len() == 8 && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
    );
    let codes_node = node(&made, "lookup_secret_codes").unwrap();
    assert_eq!(codes_node["meta"]["label"]["id"], 1050010);
    assert_eq!(codes_node["attributes"]["text"]["context"]["secrets"][0]["id"], 1050009);
    assert_eq!(
        codes_node["attributes"]["text"]["context"]["secrets"][0]["context"]["secret"],
        codes[0].as_str()
    );
    assert!(identity_of(&app, &identity_id).await["credentials"].get("lookup_secret").is_none());
    let stored = database_text(backend, &app.dsn).await;
    assert!(codes.iter().all(|c| !stored.contains(c.as_str())), "the codes wait sealed in the flow");

    // Confirm saves them.
    let (status, saved) = submit(&app, &token, &made, json!({"lookup_secret_confirm": "true"})).await;
    assert_eq!(status, 200, "{saved}");
    assert_eq!(saved["state"], "success");
    assert_eq!(group_ids(&saved, "lookup_secret"), ["lookup_secret_reveal", "lookup_secret_disable"]);
    let credential = &identity_of(&app, &identity_id).await["credentials"]["lookup_secret"];
    assert_eq!(credential["identifiers"], json!([identity_id]));
    let stored = database_text(backend, &app.dsn).await;
    assert!(codes.iter().all(|c| !stored.contains(c.as_str())), "the codes are stored sealed");

    // Spend two, then reveal: they show as used.
    let (_, lookup) = verifiers(&app).await;
    let identity = app_identity(&app, &identity_id).await;
    assert_eq!(lookup.verify(&identity, &codes[0]).await.unwrap(), Verdict::Accepted);
    assert_eq!(lookup.verify(&identity, &codes[5]).await.unwrap(), Verdict::Accepted);
    let flow = settings_flow(&app, &token).await;
    let (status, revealed) = submit(&app, &token, &flow, json!({"lookup_secret_reveal": true})).await;
    assert_eq!(status, 200, "{revealed}");
    assert_eq!(
        group_ids(&revealed, "lookup_secret"),
        ["lookup_secret_codes", "lookup_secret_disable", "lookup_secret_regenerate"]
    );
    let listed = listed_codes(&revealed);
    let mut expected = codes.clone();
    expected[0] = "used".into();
    expected[5] = "used".into();
    assert_eq!(listed, expected);
    let secrets =
        &node(&revealed, "lookup_secret_codes").unwrap()["attributes"]["text"]["context"]["secrets"];
    assert_eq!(secrets[0]["id"], 1050014);
    assert!(secrets[0]["context"]["used_at_unix"].is_i64());
    assert_eq!(secrets[1]["id"], 1050009);
    let stored = database_text(backend, &app.dsn).await;
    assert!(codes.iter().all(|c| !stored.contains(c.as_str())), "revealed codes are not stored in clear");

    // Regenerate without confirming keeps the old codes working.
    let (_, _) = submit(&app, &token, &revealed, json!({"lookup_secret_regenerate": true})).await;
    assert_eq!(lookup.verify(&identity, &codes[1]).await.unwrap(), Verdict::Accepted);

    // Disable removes them.
    let (status, disabled) = submit(&app, &token, &revealed, json!({"lookup_secret_disable": true})).await;
    assert_eq!(status, 200, "{disabled}");
    assert_eq!(disabled["state"], "success");
    assert_eq!(group_ids(&disabled, "lookup_secret"), ["lookup_secret_regenerate"]);
    assert!(identity_of(&app, &identity_id).await["credentials"].get("lookup_secret").is_none());
    let identity = app_identity(&app, &identity_id).await;
    assert_eq!(lookup.verify(&identity, &codes[2]).await.unwrap(), Verdict::NotSetUp);
    // Nothing left to reveal.
    let flow = settings_flow(&app, &token).await;
    let (status, rejected) = submit(&app, &token, &flow, json!({"lookup_secret_reveal": true})).await;
    assert_eq!(status, 400);
    assert_eq!(rejected["ui"]["messages"][0]["id"], 4000001);
    app.stop().await;
}

async fn a_lookup_code_works_once(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (token, identity_id) = register(&app, "once@example.com", PASSWORD).await;
    let flow = settings_flow(&app, &token).await;
    let (_, made) = submit(&app, &token, &flow, json!({"lookup_secret_regenerate": true})).await;
    let codes = listed_codes(&made);
    let (status, _) = submit(&app, &token, &made, json!({"lookup_secret_confirm": true})).await;
    assert_eq!(status, 200);
    let (_, lookup) = verifiers(&app).await;
    let identity = app_identity(&app, &identity_id).await;

    assert_eq!(lookup.verify(&identity, &codes[3]).await.unwrap(), Verdict::Accepted);
    assert_eq!(lookup.verify(&identity, &codes[3]).await.unwrap(), Verdict::AlreadyUsed);
    assert_eq!(lookup.verify(&identity, " ABCDEFGH ").await.unwrap(), Verdict::Wrong);
    // Typed with capitals or spaces, a code still counts.
    assert_eq!(
        lookup.verify(&identity, &format!(" {} ", codes[4].to_uppercase())).await.unwrap(),
        Verdict::Accepted
    );
    let results = all_at_once(8, || {
        let (lookup, identity, code) = (lookup.clone(), identity.clone(), codes[7].clone());
        async move { lookup.verify(&identity, &code).await.unwrap() }
    })
    .await;
    assert_eq!(results.iter().filter(|v| **v == Verdict::Accepted).count(), 1, "{results:?}");
    assert!(results.iter().all(|v| matches!(v, Verdict::Accepted | Verdict::AlreadyUsed)));

    // New codes replace the old ones, which stop working.
    let flow = settings_flow(&app, &token).await;
    let (_, made) = submit(&app, &token, &flow, json!({"lookup_secret_regenerate": true})).await;
    let fresh = listed_codes(&made);
    let (status, _) = submit(&app, &token, &made, json!({"lookup_secret_confirm": true})).await;
    assert_eq!(status, 200);
    let identity = app_identity(&app, &identity_id).await;
    assert_eq!(lookup.verify(&identity, &codes[0]).await.unwrap(), Verdict::Wrong);
    assert_eq!(lookup.verify(&identity, &fresh[3]).await.unwrap(), Verdict::Accepted);
    app.stop().await;
}

async fn second_factor_changes_need_a_recent_sign_in(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (token, identity_id) = register(&app, "stale-factors@example.com", PASSWORD).await;
    app.clock.advance(std::time::Duration::from_secs(61 * 60));
    let flow = settings_flow(&app, &token).await;
    let (_, key) = shown_key(&flow);
    for body in [
        json!({"method": "totp", "totp_code": key.code_at(app.clock.now())}),
        json!({"lookup_secret_regenerate": true}),
        json!({"lookup_secret_reveal": true}),
        json!({"lookup_secret_disable": true}),
    ] {
        let (status, error) = submit(&app, &token, &flow, body.clone()).await;
        assert_eq!(status, 403, "{body}: {error}");
        assert_eq!(error["error"]["id"], "session_refresh_required");
    }
    let credentials = &identity_of(&app, &identity_id).await["credentials"];
    assert!(credentials.get("totp").is_none() && credentials.get("lookup_secret").is_none());
    app.stop().await;
}

async fn the_admin_api_shows_second_factors_without_secrets_and_removes_them(backend: Backend) {
    let app = spawn_app_with(backend, second_factors_on).await;
    let (token, identity_id, key, _) = with_totp(&app, "admin-factors@example.com").await;
    let flow = settings_flow(&app, &token).await;
    let (_, made) = submit(&app, &token, &flow, json!({"lookup_secret_regenerate": true})).await;
    let (status, _) = submit(&app, &token, &made, json!({"lookup_secret_confirm": true})).await;
    assert_eq!(status, 200);

    for query in ["", "?include_credential=totp&include_credential=lookup_secret"] {
        let identity: Value =
            app.get_json(&app.admin_path(&format!("/admin/identities/{identity_id}{query}"))).await;
        for kind in ["totp", "lookup_secret"] {
            let credential = &identity["credentials"][kind];
            assert_eq!(credential["type"], kind);
            assert_eq!(credential["identifiers"], json!([identity_id]));
            assert_eq!(credential["version"], 0);
            assert!(credential["created_at"].is_string() && credential["updated_at"].is_string());
            assert_eq!(credential["config"], json!({}), "never the secret, even when asked ({query})");
        }
        assert!(!identity.to_string().contains(&key.secret()));
    }

    let delete = |path: String| {
        let url = app.admin_path(&path);
        let http = app.http.clone();
        async move { http.delete(url).send().await.unwrap() }
    };
    let removed = delete(format!("/admin/identities/{identity_id}/credentials/totp")).await;
    assert_eq!(removed.status(), 204);
    let again = delete(format!("/admin/identities/{identity_id}/credentials/totp")).await;
    assert_eq!(again.status(), 404);
    let error: Value = again.json().await.unwrap();
    assert!(error["error"]["reason"].as_str().unwrap().contains("totp"), "{error}");
    // Without the /admin prefix too, as every admin route.
    assert_eq!(delete(format!("/identities/{identity_id}/credentials/lookup_secret")).await.status(), 204);
    let credentials = &identity_of(&app, &identity_id).await["credentials"];
    assert!(credentials.get("totp").is_none() && credentials.get("lookup_secret").is_none());
    assert!(credentials.get("password").is_some());
    // The user can link an app again.
    assert_eq!(group_ids(&settings_flow(&app, &token).await, "totp")[0], "totp_qr");

    // The last first factor stays; absent types and identities are 404.
    let password = delete(format!("/admin/identities/{identity_id}/credentials/password")).await;
    assert_eq!(password.status(), 400);
    for path in [
        format!("/admin/identities/{identity_id}/credentials/webauthn"),
        format!("/admin/identities/{identity_id}/credentials/nonsense"),
        format!("/admin/identities/{}/credentials/totp", uuid::Uuid::new_v4()),
        "/admin/identities/not-an-id/credentials/totp".to_string(),
    ] {
        assert_eq!(delete(path.clone()).await.status(), 404, "{path}");
    }
    app.stop().await;
}

async fn switched_off_methods_offer_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let (token, _) = register(&app, "plain@example.com", PASSWORD).await;
    let flow = settings_flow(&app, &token).await;
    assert!(group_ids(&flow, "totp").is_empty() && group_ids(&flow, "lookup_secret").is_empty());
    for body in [json!({"method": "totp", "totp_code": "123456"}), json!({"lookup_secret_regenerate": true})]
    {
        let (status, rejected) = submit(&app, &token, &flow, body).await;
        assert_eq!(status, 400);
        assert_eq!(rejected["ui"]["messages"][0]["id"], 4010004);
    }
    app.stop().await;
}
