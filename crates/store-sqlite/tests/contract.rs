//! The shared storage contract, one test per check, each on a fresh SQLite
//! file (as deployed) and again in memory; and upgrades that must keep
//! existing rows.

use std::borrow::Cow;

use chrono::Duration;
use latchkey_domain::store::{CodePurpose, CodeStore, Database, FlowStore, OneTimeCode};
use latchkey_domain::time::{Clock, SystemClock};
use latchkey_store_sqlite::{MIGRATIONS, SqliteStore};
use latchkey_store_tests::Fresh;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, SqlSafeStr, SqliteConnection};
use uuid::Uuid;

fn now() -> chrono::DateTime<chrono::Utc> {
    SystemClock.now()
}

/// A migrated store on a file of its own, removed with the directory.
async fn file_store() -> Option<Fresh> {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}?_fk=true", dir.path().join("latchkey.db").display());
    let store = SqliteStore::connect(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    Some(Fresh::new(store, dir))
}

async fn memory_store() -> Option<Fresh> {
    let store = SqliteStore::connect("memory").await.unwrap();
    store.migrate().await.unwrap();
    Some(Fresh::new(store, ()))
}

mod contract {
    latchkey_store_tests::contract_tests!(super::file_store);
}

mod contract_in_memory {
    latchkey_store_tests::contract_tests!(super::memory_store);
}

/// A migrator that knows only the first `count` migrations, as an older
/// build would.
fn migrator_up_to(count: usize) -> Migrator {
    let migrations = MIGRATIONS[..count]
        .iter()
        .map(|(version, name, sql)| {
            Migration::new(*version, Cow::Borrowed(*name), MigrationType::Simple, sql.into_sql_str(), false)
        })
        .collect::<Vec<_>>();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

/// Recovery codes and failures written before codes had a purpose keep
/// working after the upgrade, as recovery ones.
#[tokio::test]
async fn recovery_codes_survive_the_one_time_codes_migration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latchkey.db");
    let dsn = format!("sqlite://{}", path.display());
    let mut conn = SqliteConnection::connect(&format!("{dsn}?mode=rwc")).await.unwrap();
    let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "one_time_codes").unwrap();
    migrator_up_to(before).run(&mut conn).await.unwrap();

    let store = SqliteStore::connect(&dsn).await.unwrap();
    let identity = latchkey_store_tests::sample_identity(&format!("upgrade-{}@example.com", Uuid::new_v4()));
    let address = identity.recovery_addresses[0].value.clone();
    let at = now();
    // The identity row as the schema of then holds it (today's store writes
    // columns later migrations add).
    sqlx::query(
        "INSERT INTO identities (id, schema_id, state, traits, created_at, updated_at) \
         VALUES (?, 'default', 'active', '{}', ?, ?)",
    )
    .bind(identity.id.to_string())
    .bind(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .bind(at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    .execute(&mut conn)
    .await
    .unwrap();
    let code = OneTimeCode {
        id: Uuid::new_v4(),
        flow_id: Uuid::new_v4(),
        purpose: CodePurpose::Recovery,
        identity_id: Some(identity.id),
        address: address.clone(),
        code_hmac: "ab".repeat(32),
        expires_at: at + Duration::minutes(15),
        used_at: None,
        created_at: at,
    };
    let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    sqlx::query(
        "INSERT INTO recovery_codes (id, flow_id, identity_id, address, code_hmac, expires_at, used_at, \
         created_at) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
    )
    .bind(code.id.to_string())
    .bind(code.flow_id.to_string())
    .bind(identity.id.to_string())
    .bind(&address)
    .bind(&code.code_hmac)
    .bind(time(code.expires_at))
    .bind(time(code.created_at))
    .execute(&mut conn)
    .await
    .unwrap();
    for _ in 0..2 {
        sqlx::query("INSERT INTO recovery_failures (id, address, at) VALUES (?, ?, ?)")
            .bind(Uuid::new_v4().to_string())
            .bind(&address)
            .bind(time(at))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    store.migrate().await.unwrap();
    assert!(store.migration_status().await.unwrap().iter().all(|m| m.applied));
    assert_eq!(store.live_codes(code.flow_id, at).await.unwrap(), vec![code.clone()]);
    let since = at - Duration::hours(1);
    assert_eq!(store.count_code_failures(CodePurpose::Recovery, &address, since).await.unwrap(), 2);
    assert_eq!(store.count_code_failures(CodePurpose::Verification, &address, since).await.unwrap(), 0);
    assert!(store.use_code(code.id, at).await.unwrap());
    assert!(!store.use_code(code.id, at).await.unwrap());

    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name IN ('one_time_codes', 'code_failures') \
         AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    // The `_at` ones are the cleanup's (0009).
    assert_eq!(
        indexes,
        [
            "code_failures_address",
            "code_failures_at",
            "one_time_codes_expires_at",
            "one_time_codes_flow",
            "one_time_codes_used_at"
        ]
    );
    conn.close().await.unwrap();
    store.close().await;
}

/// Flows in flight keep the attempts their document counted once the count
/// moves to a column of its own.
#[tokio::test]
async fn code_attempts_survive_the_code_attempts_migration() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let mut conn = SqliteConnection::connect(&format!("{dsn}?mode=rwc")).await.unwrap();
    let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "code_attempts").unwrap();
    migrator_up_to(before).run(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::connect(&dsn).await.unwrap();
    let (counted, fresh) = (
        latchkey_store_tests::sent_recovery_flow("a@example.com", chrono::Duration::minutes(10)),
        latchkey_store_tests::sent_recovery_flow("a@example.com", chrono::Duration::minutes(10)),
    );
    store.create_flow(&counted).await.unwrap();
    store.create_flow(&fresh).await.unwrap();
    // As a build that counted attempts in the flow document wrote it.
    let mut conn = SqliteConnection::connect(&dsn).await.unwrap();
    sqlx::query(
        "UPDATE selfservice_flows SET data = json_set(data, '$.internal.submit_count', 3) WHERE id = ?",
    )
    .bind(counted.id.to_string())
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.migration_status().await.unwrap().iter().all(|m| m.applied));
    assert_eq!(store.count_code_attempt(counted.id).await.unwrap(), 4);
    assert_eq!(store.count_code_attempt(fresh.id).await.unwrap(), 1);
    assert_eq!(store.get_flow(counted.id).await.unwrap(), Some(counted));
    store.close().await;
}

/// Codes in flight when attempts start being counted per code take their
/// flow's count, so a code already guessed at gets no fresh try from the
/// upgrade; codes without a flow row start at zero.
#[tokio::test]
async fn codes_in_flight_keep_their_flows_attempts_across_the_per_code_migration() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let mut conn = SqliteConnection::connect(&format!("{dsn}?mode=rwc")).await.unwrap();
    let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "one_time_code_attempts").unwrap();
    migrator_up_to(before).run(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let store = SqliteStore::connect(&dsn).await.unwrap();
    let flow = latchkey_store_tests::sent_recovery_flow("a@example.com", chrono::Duration::minutes(10));
    store.create_flow(&flow).await.unwrap();
    for _ in 0..3 {
        store.count_code_attempt(flow.id).await.unwrap();
    }
    let code = |flow_id| OneTimeCode {
        id: Uuid::new_v4(),
        flow_id,
        purpose: CodePurpose::Recovery,
        identity_id: None,
        address: "a@example.com".into(),
        code_hmac: "ab".repeat(32),
        expires_at: now() + Duration::minutes(15),
        used_at: None,
        created_at: now(),
    };
    let (tried, flowless) = (code(flow.id), code(Uuid::new_v4()));
    store.create_code(&tried, None).await.unwrap();
    store.create_code(&flowless, None).await.unwrap();
    store.migrate().await.unwrap();
    assert!(store.migration_status().await.unwrap().iter().all(|m| m.applied));
    let at = now();
    assert_eq!(store.count_live_code_attempt(flow.id, at).await.unwrap(), vec![(tried, 4)]);
    assert_eq!(store.count_live_code_attempt(flowless.flow_id, at).await.unwrap(), vec![(flowless, 1)]);
    store.close().await;
}

/// Mail announcing a code, queued before messages recorded their code's
/// expiry, holds no code once delivered: the cleanup blanks it. Mail still
/// queued, and mail that never carried a code, are left as they are.
#[tokio::test]
async fn code_mail_from_before_the_cleanup_migration_is_blanked_once_delivered() {
    use latchkey_domain::store::{CleanupStep, CleanupStore, OutboxStore};
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let mut conn = SqliteConnection::connect(&format!("{dsn}?mode=rwc")).await.unwrap();
    let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "cleanup").unwrap();
    migrator_up_to(before).run(&mut conn).await.unwrap();
    let at = now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut ids = Vec::new();
    for (status, template) in
        [("sent", "recovery_code_valid"), ("queued", "verification_code_valid"), ("sent", "password_changed")]
    {
        let id = Uuid::new_v4();
        sqlx::query(
            "INSERT INTO courier_messages (id, status, recipient, subject, body, html_body, template_type, \
             send_count, created_at, updated_at) VALUES (?, ?, 'a@example.com', 'Code 123456', \
             'Use 123456', '<p>123456</p>', ?, 0, ?, ?)",
        )
        .bind(id.to_string())
        .bind(status)
        .bind(template)
        .bind(&at)
        .bind(&at)
        .execute(&mut conn)
        .await
        .unwrap();
        ids.push(id);
    }
    conn.close().await.unwrap();

    let store = SqliteStore::connect(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    let cleared = store.cleanup_batch(CleanupStep::CourierBodies, now(), 100).await.unwrap();
    assert_eq!(cleared.courier_bodies_cleared, 1);
    let body = |i: usize| {
        let store = store.clone();
        let id = ids[i];
        async move {
            let (m, _) = store.get_message(id).await.unwrap().unwrap();
            (m.subject, m.body, m.html_body)
        }
    };
    assert_eq!(body(0).await, (String::new(), String::new(), None));
    for kept in [1, 2] {
        assert_eq!(body(kept).await.1, "Use 123456");
    }
    // Still queued: its code's real expiry is unknown, so 0010 leaves the
    // delivery horizon to decide rather than abandoning it unsent.
    let (queued, _) = store.get_message(ids[1]).await.unwrap().unwrap();
    assert_eq!(queued.code_expires_at, None);
    store.close().await;
}
