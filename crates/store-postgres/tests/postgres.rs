//! What only the PostgreSQL store has to show (upgrades keeping existing
//! rows, invalidations announced to other processes, races between
//! connections), each on a database of its own from the shared harness
//! ([`latchkey_store_tests::postgres`]).

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

use latchkey_domain::store::{
    CodePurpose, CodeStore, Database, FlowStore, IdentityStore, OneTimeCode, StoreError,
};
use latchkey_domain::time::{Clock, SystemClock};
use latchkey_store_postgres::{Invalidation, MIGRATIONS, PgStore};
use latchkey_store_tests::postgres::fresh_database;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Connection, PgConnection, SqlSafeStr};
use uuid::Uuid;

fn now() -> chrono::DateTime<chrono::Utc> {
    SystemClock.now()
}

/// Runs `test` with the DSN of a new, empty database, dropped afterwards
/// even when the test panicked.
async fn with_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(database) = fresh_database().await else { return };
    test(database.dsn.clone()).await;
}

async fn table_exists(dsn: &str, table: &str) -> bool {
    let mut conn = PgConnection::connect(dsn).await.unwrap();
    let exists = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
        .bind(table)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    exists
}

#[tokio::test]
async fn migration_status_reads_without_creating_and_migrate_is_idempotent() {
    with_fresh_database(|dsn| async move {
        let store = PgStore::connect(&dsn).await.unwrap();
        let status = store.migration_status().await.unwrap();
        assert_eq!(status.len(), MIGRATIONS.len());
        assert!(status.iter().all(|m| !m.applied), "{status:?}");
        let known: Vec<_> = MIGRATIONS.iter().map(|(v, name, _)| (*v, name.to_string())).collect();
        let reported: Vec<_> = status.iter().map(|m| (m.version, m.description.clone())).collect();
        assert_eq!(reported, known);
        assert!(!table_exists(&dsn, "_sqlx_migrations").await, "status must not create the table");

        store.migrate().await.unwrap();
        let applied = store.migration_status().await.unwrap();
        assert!(applied.iter().all(|m| m.applied), "{applied:?}");
        assert!(table_exists(&dsn, "identities").await);

        store.migrate().await.unwrap();
        assert_eq!(store.migration_status().await.unwrap(), applied);
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_creates_of_one_identifier_let_exactly_one_through() {
    with_fresh_database(|dsn| async move {
        let store = PgStore::connect(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        let email = format!("race-{}@example.com", Uuid::new_v4().simple());
        let attempts: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let identity = latchkey_store_tests::sample_identity(&email);
                tokio::spawn(async move { store.create_identity(&identity).await })
            })
            .collect();
        let mut created = 0;
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(()) => created += 1,
                Err(StoreError::Conflict(_)) => {}
                Err(e) => panic!("expected success or a conflict, got {e:?}"),
            }
        }
        assert_eq!(created, 1);
        store.close().await;
    })
    .await;
}

/// Moving an address's status changes what whoami shows, so every process's
/// cache hears about the identity, as it does for a whole-identity update;
/// a status change that matched nothing announces nothing.
#[tokio::test]
async fn setting_an_address_status_announces_an_identity_invalidation() {
    with_fresh_database(|dsn| async move {
        let store = PgStore::connect(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        let identity =
            latchkey_store_tests::sample_identity(&format!("notify-{}@example.com", Uuid::new_v4()));
        store.create_identity(&identity).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = store
            .listen_for_invalidations(move |what| {
                let _ = tx.send(what);
            })
            .await
            .unwrap();

        let address = identity.verifiable_addresses[0].id;
        let status = latchkey_domain::identity::AddressStatus::Sent;
        assert!(!store.set_address_status(Uuid::new_v4(), address, status, now()).await.unwrap());
        assert!(store.set_address_status(identity.id, address, status, now()).await.unwrap());
        let heard = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert_eq!(heard, Some(Invalidation::Identity(identity.id)));
        listener.abort();
        store.close().await;
    })
    .await;
}

/// A dropped listening connection is reported at once (caches must stop
/// trusting themselves: notifications sent meanwhile are lost), then the
/// listener reconnects by itself, says so, and hears notifications again.
#[tokio::test]
async fn a_dropped_listener_reports_the_loss_and_listens_again() {
    with_fresh_database(|dsn| async move {
        let store = PgStore::connect(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = store
            .listen_for_invalidations(move |what| {
                let _ = tx.send(what);
            })
            .await
            .unwrap();
        let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<Invalidation>| {
            tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.unwrap().unwrap()
        };

        let mut killer = PgConnection::connect(&dsn).await.unwrap();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_all(&mut killer)
        .await
        .unwrap();
        assert_eq!(killed, vec![true], "one listening connection");
        assert_eq!(next(&mut rx).await, Invalidation::Lost);
        assert_eq!(next(&mut rx).await, Invalidation::Listening);

        let identity =
            latchkey_store_tests::sample_identity(&format!("relisten-{}@example.com", Uuid::new_v4()));
        store.create_identity(&identity).await.unwrap();
        store.delete_identity(identity.id).await.unwrap();
        assert_eq!(next(&mut rx).await, Invalidation::Identity(identity.id));
        listener.abort();
        store.close().await;
    })
    .await;
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
    with_fresh_database(|dsn| async move {
        let raw = sqlx::PgPool::connect(&dsn).await.unwrap();
        let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "one_time_codes").unwrap();
        migrator_up_to(before).run(&raw).await.unwrap();

        let store = PgStore::connect(&dsn).await.unwrap();
        let identity =
            latchkey_store_tests::sample_identity(&format!("upgrade-{}@example.com", Uuid::new_v4()));
        let address = identity.recovery_addresses[0].value.clone();
        let at = now();
        // The identity row as the schema of then holds it (today's store
        // writes columns later migrations add).
        sqlx::query(
            "INSERT INTO identities (id, schema_id, state, traits, created_at, updated_at) \
             VALUES ($1, 'default', 'active', '{}', $2, $2)",
        )
        .bind(identity.id)
        .bind(at)
        .execute(&raw)
        .await
        .unwrap();
        let code = OneTimeCode {
            id: Uuid::new_v4(),
            flow_id: Uuid::new_v4(),
            purpose: CodePurpose::Recovery,
            identity_id: Some(identity.id),
            address: address.clone(),
            code_hmac: "ab".repeat(32),
            expires_at: at + chrono::Duration::minutes(15),
            used_at: None,
            created_at: at,
        };
        sqlx::query(
            "INSERT INTO recovery_codes (id, flow_id, identity_id, address, code_hmac, expires_at, used_at, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, $7)",
        )
        .bind(code.id)
        .bind(code.flow_id)
        .bind(identity.id)
        .bind(&address)
        .bind(&code.code_hmac)
        .bind(code.expires_at)
        .bind(code.created_at)
        .execute(&raw)
        .await
        .unwrap();
        for _ in 0..2 {
            sqlx::query("INSERT INTO recovery_failures (id, address, at) VALUES ($1, $2, $3)")
                .bind(Uuid::new_v4())
                .bind(&address)
                .bind(at)
                .execute(&raw)
                .await
                .unwrap();
        }

        store.migrate().await.unwrap();
        assert!(store.migration_status().await.unwrap().iter().all(|m| m.applied));
        assert_eq!(store.live_codes(code.flow_id, at).await.unwrap(), vec![code.clone()]);
        let since = at - chrono::Duration::hours(1);
        assert_eq!(store.count_code_failures(CodePurpose::Recovery, &address, since).await.unwrap(), 2);
        assert_eq!(store.count_code_failures(CodePurpose::Verification, &address, since).await.unwrap(), 0);
        assert!(store.use_code(code.id, at).await.unwrap());
        assert!(!store.use_code(code.id, at).await.unwrap());

        let indexes: Vec<String> = sqlx::query_scalar(
            "SELECT indexname::text FROM pg_indexes \
             WHERE tablename IN ('one_time_codes', 'code_failures') ORDER BY indexname",
        )
        .fetch_all(&raw)
        .await
        .unwrap();
        // The `_at` ones are the cleanup's (0009).
        assert_eq!(
            indexes,
            [
                "code_failures_address",
                "code_failures_at",
                "code_failures_pkey",
                "one_time_codes_expires_at",
                "one_time_codes_flow",
                "one_time_codes_pkey",
                "one_time_codes_used_at"
            ]
        );
        raw.close().await;
        store.close().await;
    })
    .await;
}

/// Flows in flight keep the attempts their document counted once the count
/// moves to a column of its own.
#[tokio::test]
async fn code_attempts_survive_the_code_attempts_migration() {
    with_fresh_database(|dsn| async move {
        let raw = sqlx::PgPool::connect(&dsn).await.unwrap();
        let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "code_attempts").unwrap();
        migrator_up_to(before).run(&raw).await.unwrap();
        raw.close().await;

        let store = PgStore::connect(&dsn).await.unwrap();
        let flow = || latchkey_store_tests::sent_recovery_flow("a@example.com", chrono::Duration::minutes(10));
        let (counted, fresh) = (flow(), flow());
        store.create_flow(&counted).await.unwrap();
        store.create_flow(&fresh).await.unwrap();
        // As a build that counted attempts in the flow document wrote it.
        let raw = sqlx::PgPool::connect(&dsn).await.unwrap();
        sqlx::query("UPDATE selfservice_flows SET data = jsonb_set(data, '{internal,submit_count}', '3') WHERE id = $1")
            .bind(counted.id)
            .execute(&raw)
            .await
            .unwrap();
        raw.close().await;
        store.migrate().await.unwrap();
        assert!(store.migration_status().await.unwrap().iter().all(|m| m.applied));
        assert_eq!(store.count_code_attempt(counted.id).await.unwrap(), 4);
        assert_eq!(store.count_code_attempt(fresh.id).await.unwrap(), 1);
        assert_eq!(store.get_flow(counted.id).await.unwrap(), Some(counted));
        store.close().await;
    })
    .await;
}

/// A login's hash upgrade is an identity write: every process's cache hears
/// about it; a swap that found the hash changed announces nothing.
#[tokio::test]
async fn replacing_a_password_hash_announces_an_identity_invalidation() {
    with_fresh_database(|dsn| async move {
        let store = PgStore::connect(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        let identity =
            latchkey_store_tests::sample_identity(&format!("rehash-{}@example.com", Uuid::new_v4()));
        store.create_identity(&identity).await.unwrap();
        let stored = identity.credentials.values().next().unwrap().hashed_password().unwrap().to_string();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let listener = store
            .listen_for_invalidations(move |what| {
                let _ = tx.send(what);
            })
            .await
            .unwrap();

        assert!(
            !store
                .replace_password_hash(identity.id, "$2a$04$not-the-stored-one", "$2a$05$x", now())
                .await
                .unwrap()
        );
        assert!(store.replace_password_hash(identity.id, &stored, "$2a$05$upgraded", now()).await.unwrap());
        let heard = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap();
        assert_eq!(heard, Some(Invalidation::Identity(identity.id)), "the failed swap sent nothing first");
        listener.abort();
        store.close().await;
    })
    .await;
}

/// Codes in flight when attempts start being counted per code take their
/// flow's count, so a code already guessed at gets no fresh try from the
/// upgrade; codes without a flow row start at zero.
#[tokio::test]
async fn codes_in_flight_keep_their_flows_attempts_across_the_per_code_migration() {
    with_fresh_database(|dsn| async move {
        let raw = sqlx::PgPool::connect(&dsn).await.unwrap();
        let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "one_time_code_attempts").unwrap();
        migrator_up_to(before).run(&raw).await.unwrap();
        raw.close().await;

        let store = PgStore::connect(&dsn).await.unwrap();
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
            expires_at: now() + chrono::Duration::minutes(15),
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
    })
    .await;
}

/// Mail announcing a code, queued before messages recorded their code's
/// expiry, holds no code once delivered: the cleanup blanks it. Mail still
/// queued, and mail that never carried a code, are left as they are.
#[tokio::test]
async fn code_mail_from_before_the_cleanup_migration_is_blanked_once_delivered() {
    use latchkey_domain::store::{CleanupStep, CleanupStore, OutboxStore};
    with_fresh_database(|dsn| async move {
        let raw = sqlx::PgPool::connect(&dsn).await.unwrap();
        let before = MIGRATIONS.iter().position(|(_, name, _)| *name == "cleanup").unwrap();
        migrator_up_to(before).run(&raw).await.unwrap();
        let mut ids = Vec::new();
        for (status, template) in [
            ("sent", "recovery_code_valid"),
            ("queued", "verification_code_valid"),
            ("sent", "password_changed"),
        ] {
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO courier_messages (id, status, recipient, subject, body, html_body, \
                 template_type, send_count, created_at, updated_at) VALUES ($1, $2, 'a@example.com', \
                 'Code 123456', 'Use 123456', '<p>123456</p>', $3, 0, now(), now())",
            )
            .bind(id)
            .bind(status)
            .bind(template)
            .execute(&raw)
            .await
            .unwrap();
            ids.push(id);
        }
        raw.close().await;

        let store = PgStore::connect(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        let cleared = store.cleanup_batch(CleanupStep::CourierBodies, now(), 100).await.unwrap();
        assert_eq!(cleared.courier_bodies_cleared, 1);
        let (blanked, _) = store.get_message(ids[0]).await.unwrap().unwrap();
        assert_eq!((blanked.subject.as_str(), blanked.body.as_str(), blanked.html_body), ("", "", None));
        for kept in [ids[1], ids[2]] {
            assert_eq!(store.get_message(kept).await.unwrap().unwrap().0.body, "Use 123456");
        }
        // Still queued: its code's real expiry is unknown, so 0010 leaves the
        // delivery horizon to decide rather than abandoning it unsent.
        let (queued, _) = store.get_message(ids[1]).await.unwrap().unwrap();
        assert_eq!(queued.code_expires_at, None);
        store.close().await;
    })
    .await;
}
