//! The shared storage contract, plus PostgreSQL-specific checks, each on a
//! database of its own: created through the maintenance URL in
//! `TEST_POSTGRES_URL` and dropped afterwards, so runs never see each
//! other's rows. An unreachable server fails the tests; only
//! `LATCHKEY_SKIP_POSTGRES=1` turns that into a skip, so CI cannot pass
//! without PostgreSQL by accident.

use std::future::Future;
use std::time::Duration;

use latchkey_domain::store::{Database, IdentityStore, StoreError};
use latchkey_store_postgres::{MIGRATIONS, PgStore};
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use uuid::Uuid;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Runs `test` with the DSN of a new, empty database, then drops the
/// database even when the test panicked.
async fn with_fresh_database<F, Fut>(test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    with_fresh_database_created("", &[], test).await;
}

/// As [`with_fresh_database`], with `options` added to `CREATE DATABASE` and
/// `settings` made the database's defaults for every connection to it.
async fn with_fresh_database_created<F, Fut>(options: &str, settings: &[(&str, &str)], test: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let url = std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string());
    let connected = tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(&url)).await;
    let mut admin = match connected {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return unreachable_postgres(&e.to_string()),
        Err(_) => return unreachable_postgres("connection timed out"),
    };
    let name = format!("latchkey_test_{}", Uuid::new_v4().simple());
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name} {options}"))).await.unwrap();
    for (key, value) in settings {
        admin.execute(AssertSqlSafe(format!("ALTER DATABASE {name} SET {key} TO '{value}'"))).await.unwrap();
    }
    // A task of its own, so a failed assertion comes back as a value and the
    // database is still dropped.
    let outcome = tokio::spawn(test(database_url(&url, &name))).await;
    admin.execute(AssertSqlSafe(format!("DROP DATABASE {name} WITH (FORCE)"))).await.unwrap();
    admin.close().await.unwrap();
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn unreachable_postgres(reason: &str) {
    if std::env::var("LATCHKEY_SKIP_POSTGRES").as_deref() == Ok("1") {
        println!("SKIPPED-POSTGRES: PostgreSQL is unreachable ({reason})");
        return;
    }
    panic!(
        "PostgreSQL is unreachable ({reason}); start it, point TEST_POSTGRES_URL at it, \
         or set LATCHKEY_SKIP_POSTGRES=1 to skip these tests"
    );
}

/// `url` with its database replaced by `name`, keeping any query.
fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = base[authority..].find('/').map_or(base, |i| &base[..authority + i]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// `dsn` with `params` appended to its query.
fn with_params(dsn: &str, params: &str) -> String {
    format!("{dsn}{}{params}", if dsn.contains('?') { '&' } else { '?' })
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
async fn postgres_store_meets_the_contract() {
    with_fresh_database(|dsn| async move {
        // Kratos-style pool parameters must be understood, not passed to sqlx.
        let dsn =
            with_params(&dsn, "max_conns=4&max_idle_conns=2&max_conn_lifetime=1h&max_conn_idle_time=5m");
        let store = PgStore::connect(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        latchkey_store_tests::run_all(&store).await;
        store.close().await;
    })
    .await;
}

/// Addresses are ordered bytewise and timestamps read back in UTC whatever
/// the database's collation and time zone: here a locale collation that sorts
/// "ada" before "Zoe", and an offset of +05:45.
#[tokio::test]
async fn postgres_store_meets_the_contract_under_a_locale_collation_and_time_zone() {
    let options = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'";
    with_fresh_database_created(options, &[("timezone", "Asia/Kathmandu")], |dsn| async move {
        let store = PgStore::connect(&dsn).await.unwrap();
        let mut conn = PgConnection::connect(&dsn).await.unwrap();
        let sorted: String =
            sqlx::query_scalar("SELECT string_agg(v, ' ' ORDER BY v) FROM (VALUES ('ada'), ('Zoe')) t (v)")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(sorted, "ada Zoe", "the database must not sort bytewise for this test to mean anything");
        conn.close().await.unwrap();
        store.migrate().await.unwrap();
        latchkey_store_tests::run_all(&store).await;
        store.close().await;
    })
    .await;
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

#[test]
fn database_urls_keep_server_and_query() {
    assert_eq!(database_url(DEFAULT_URL, "x"), "postgres://postgres@127.0.0.1:5432/x");
    assert_eq!(
        database_url("postgres://u:p@h/db?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(database_url("postgresql://h:5433", "x"), "postgresql://h:5433/x");
    assert_eq!(with_params("postgres://h/x?a=1", "b=2"), "postgres://h/x?a=1&b=2");
}
