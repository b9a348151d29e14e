//! The shared storage contract, one test per check, on a database the
//! checks share and again on one with a locale collation and a time zone.

use latchkey_domain::store::Database;
use latchkey_store_postgres::PgStore;
use latchkey_store_tests::Fresh;
use latchkey_store_tests::postgres::{shared_database, shared_database_created, with_params};
use sqlx::{Connection, PgConnection};

/// Pool parameters as Kratos's DSNs carry them: the store must understand
/// them, not pass them to sqlx.
const POOL_PARAMS: &str = "max_conns=4&max_idle_conns=2&max_conn_lifetime=1h&max_conn_idle_time=5m";

/// A store on the database this binary's contract tests share, migrated
/// once by whichever test created it.
async fn shared_store() -> Option<Fresh> {
    let database = shared_database(migrate).await?;
    let store = PgStore::connect(&with_params(&database.dsn, POOL_PARAMS)).await.unwrap();
    let turns = database.turns.clone();
    Some(Fresh::shared(store, database, turns))
}

/// As [`shared_store`], on a database whose collation and time zone would
/// show any reliance on the defaults: addresses must still be ordered
/// bytewise and timestamps read back in UTC. Its locale collation sorts
/// "ada" before "Zoe"; its offset is +05:45.
async fn shared_store_under_locale_and_time_zone() -> Option<Fresh> {
    let options = "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'";
    let settings = [("timezone", "Asia/Kathmandu")];
    let database = shared_database_created(options, &settings, async |dsn| {
        let mut conn = PgConnection::connect(&dsn).await.unwrap();
        let sorted: String =
            sqlx::query_scalar("SELECT string_agg(v, ' ' ORDER BY v) FROM (VALUES ('ada'), ('Zoe')) t (v)")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(sorted, "ada Zoe", "the database must not sort bytewise for these tests to mean anything");
        conn.close().await.unwrap();
        migrate(dsn).await;
    })
    .await?;
    let store = PgStore::connect(&database.dsn).await.unwrap();
    let turns = database.turns.clone();
    Some(Fresh::shared(store, database, turns))
}

async fn migrate(dsn: String) {
    let store = PgStore::connect(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    store.close().await;
}

mod contract {
    latchkey_store_tests::contract_tests!(super::shared_store);
}

mod contract_under_locale_and_time_zone {
    latchkey_store_tests::contract_tests!(super::shared_store_under_locale_and_time_zone);
}
