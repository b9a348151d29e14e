//! The shared storage contract on a fresh SQLite file and on `memory`.

use latchkey_domain::store::Database;
use latchkey_store_sqlite::SqliteStore;

#[tokio::test]
async fn sqlite_file_store_meets_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let dsn = format!("sqlite://{}?_fk=true", dir.path().join("latchkey.db").display());
    let store = SqliteStore::connect(&dsn).await.unwrap();
    store.migrate().await.unwrap();
    latchkey_store_tests::run_all(&store).await;
}

#[tokio::test]
async fn sqlite_memory_store_meets_the_contract() {
    let store = SqliteStore::connect("memory").await.unwrap();
    store.migrate().await.unwrap();
    latchkey_store_tests::run_all(&store).await;
}
