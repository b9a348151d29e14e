//! The shared storage contract, one test per check, on a database the
//! checks share and again on one with a locale collation and a time zone.

use latchkey_domain::store::Database;
use latchkey_store_postgres::PgStore;
use latchkey_store_tests::Fresh;
use latchkey_store_tests::postgres::{SharedDatabase, shared_database, shared_database_created, with_params};
use sqlx::{Connection, PgConnection};

/// A migrated store on the database this binary's contract tests share,
/// opened with the pool parameters Kratos's DSNs carry (they must be
/// understood, not passed to sqlx).
async fn shared_store() -> Option<Fresh> {
    let database = shared_database().await?;
    let dsn =
        with_params(&database.dsn, "max_conns=4&max_idle_conns=2&max_conn_lifetime=1h&max_conn_idle_time=5m");
    migrated(&dsn, database).await
}

/// As [`shared_store`], on a database whose collation and time zone would
/// show any reliance on the defaults: addresses must still be ordered
/// bytewise and timestamps read back in UTC. Its locale collation sorts
/// "ada" before "Zoe"; its offset is +05:45.
async fn shared_store_under_locale_and_time_zone() -> Option<Fresh> {
    let options = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'";
    let database = shared_database_created(options, &[("timezone", "Asia/Kathmandu")]).await?;
    let mut conn = PgConnection::connect(&database.dsn).await.unwrap();
    let sorted: String =
        sqlx::query_scalar("SELECT string_agg(v, ' ' ORDER BY v) FROM (VALUES ('ada'), ('Zoe')) t (v)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(sorted, "ada Zoe", "the database must not sort bytewise for these tests to mean anything");
    conn.close().await.unwrap();
    let dsn = database.dsn.clone();
    migrated(&dsn, database).await
}

async fn migrated(dsn: &str, database: SharedDatabase) -> Option<Fresh> {
    let store = PgStore::connect(dsn).await.unwrap();
    // Idempotent: only the first test on the database has anything to do.
    store.migrate().await.unwrap();
    let turns = database.turns.clone();
    Some(Fresh::shared(store, database, turns))
}

mod contract {
    latchkey_store_tests::contract_tests!(super::shared_store);
}

mod contract_under_locale_and_time_zone {
    latchkey_store_tests::contract_tests!(super::shared_store_under_locale_and_time_zone);
}
