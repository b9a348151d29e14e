//! The PostgreSQL test harness every crate's tests share: a database per
//! test ([`fresh_database`]) or per group of tests that keep to their own
//! rows ([`shared_database`]), created through the maintenance URL in
//! `TEST_POSTGRES_URL` and dropped afterwards, so runs never see each other's
//! rows. An unreachable
//! server fails the test; only `LATCHKEY_SKIP_POSTGRES=1` turns that into a
//! skip, announced as `SKIPPED-POSTGRES` (which CI looks for), so a run cannot
//! pass without PostgreSQL by accident.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tokio::sync::RwLock;
use uuid::Uuid;

/// Where `TEST_POSTGRES_URL` points when unset.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The server's maintenance database, through which test databases are
/// created and dropped.
pub fn maintenance_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A database that exists until this is dropped, even when the test
/// panicked.
#[derive(Debug)]
pub struct FreshDatabase {
    /// Connects to this database, with the maintenance URL's user and query.
    pub dsn: String,
    name: String,
}

/// A new, empty database; `None` when PostgreSQL is unreachable and
/// `LATCHKEY_SKIP_POSTGRES=1` (the caller returns: the test is skipped).
pub async fn fresh_database() -> Option<FreshDatabase> {
    fresh_database_created("", &[]).await
}

/// As [`fresh_database`], with `options` added to `CREATE DATABASE` and
/// `settings` made the database's defaults for every connection to it.
pub async fn fresh_database_created(options: &str, settings: &[(&str, &str)]) -> Option<FreshDatabase> {
    let url = maintenance_url();
    let mut admin = connect_maintenance(&url).await?;
    let name = format!("latchkey_test_{}", Uuid::new_v4().simple());
    admin.execute(AssertSqlSafe(format!("CREATE DATABASE {name} {options}"))).await.unwrap();
    let database = FreshDatabase { dsn: database_url(&url, &name), name };
    for (key, value) in settings {
        let set = format!("ALTER DATABASE {} SET {key} TO '{value}'", database.name);
        admin.execute(AssertSqlSafe(set)).await.unwrap();
    }
    admin.close().await.unwrap();
    Some(database)
}

/// A database the tests of this process share while any of them runs.
struct Shared {
    /// The options and settings it was created with.
    kind: String,
    database: FreshDatabase,
    users: usize,
    turns: Arc<RwLock<()>>,
}

static SHARED: Mutex<Vec<Shared>> = Mutex::new(Vec::new());
/// Held while a shared database is created, so only one test creates it.
static CREATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A use of a database several tests of this process share: created by the
/// first and dropped when the last use ends. A database per test costs far
/// more than most tests (each `DROP DATABASE` waits for a checkpoint), so
/// tests that keep to rows of their own share one. (Run one test at a time,
/// and each creates and drops it anew: as slow as a database each.)
#[derive(Debug)]
pub struct SharedDatabase {
    pub dsn: String,
    /// Tests on this database that must run alone take these for writing,
    /// the others for reading.
    pub turns: Arc<RwLock<()>>,
    kind: String,
}

/// A use of the shared database, created when no test is using it and
/// then handed to `set_up` (given its DSN) before any test uses it; `None`
/// when PostgreSQL is unreachable and skipping is allowed.
pub async fn shared_database<F, Fut>(set_up: F) -> Option<SharedDatabase>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    shared_database_created("", &[], set_up).await
}

/// As [`shared_database`], shared only with tests asking for the same
/// [`fresh_database_created`] arguments.
pub async fn shared_database_created<F, Fut>(
    options: &str,
    settings: &[(&str, &str)],
    set_up: F,
) -> Option<SharedDatabase>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let kind = format!("{options} {settings:?}");
    let _creating = CREATING.lock().await;
    let existing = shared().iter_mut().find(|s| s.kind == kind).map(|s| {
        s.users += 1;
        (s.database.dsn.clone(), s.turns.clone())
    });
    if let Some((dsn, turns)) = existing {
        return Some(SharedDatabase { dsn, turns, kind });
    }
    let database = fresh_database_created(options, settings).await?;
    // Under the lock: nobody uses the database before it is set up, and a
    // set-up that panicked leaves no database behind for the next test.
    set_up(database.dsn.clone()).await;
    let (dsn, turns) = (database.dsn.clone(), Arc::new(RwLock::new(())));
    shared().push(Shared { kind: kind.clone(), database, users: 1, turns: turns.clone() });
    Some(SharedDatabase { dsn, turns, kind })
}

/// The shared databases; a test that panicked cannot have left the list
/// half-changed, so a poisoned lock is still good.
fn shared() -> MutexGuard<'static, Vec<Shared>> {
    SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Drop for SharedDatabase {
    fn drop(&mut self) {
        let mut shared = shared();
        let Some(at) = shared.iter().position(|s| s.kind == self.kind) else { return };
        shared[at].users -= 1;
        // Taken out under the lock, dropped (a blocking round trip) outside it.
        let done = (shared[at].users == 0).then(|| shared.swap_remove(at));
        drop(shared);
        drop(done);
    }
}

/// A connection to the maintenance database, or `None` when unreachable and
/// skipping is allowed.
async fn connect_maintenance(url: &str) -> Option<PgConnection> {
    let reason = match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(url)).await {
        Ok(Ok(conn)) => return Some(conn),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "connection timed out".to_string(),
    };
    if std::env::var("LATCHKEY_SKIP_POSTGRES").as_deref() == Ok("1") {
        println!("SKIPPED-POSTGRES: PostgreSQL is unreachable ({reason})");
        return None;
    }
    panic!(
        "PostgreSQL is unreachable at {url} ({reason}); start it (scripts/postgres.sh, or \
         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start), point \
         TEST_POSTGRES_URL at it, or set LATCHKEY_SKIP_POSTGRES=1 to skip these tests"
    );
}

impl Drop for FreshDatabase {
    fn drop(&mut self) {
        let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        // Drop may run inside the test's runtime, which must not block: a
        // thread of its own with a runtime of its own may.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&maintenance_url()).await?;
                admin.execute(AssertSqlSafe(drop)).await?;
                admin.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// `url` with its database replaced by `name`, keeping any query.
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let authority = base.find("://").map_or(0, |i| i + 3);
    let server = base[authority..].find('/').map_or(base, |i| &base[..authority + i]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// `dsn` with `params` appended to its query.
pub fn with_params(dsn: &str, params: &str) -> String {
    format!("{dsn}{}{params}", if dsn.contains('?') { '&' } else { '?' })
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
