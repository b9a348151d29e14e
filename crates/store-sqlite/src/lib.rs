//! Latchkey's embedded default: every storage port on one SQLite file in WAL
//! mode (or in memory for throwaway runs).

mod cleanup;
mod code_requests;
mod codec;
mod codes;
mod courier;
mod flows;
mod identities;
mod rates;
mod sessions;

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::store::{Database, MigrationState, PoolUsage, StoreError};
use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlSafeStr, SqliteConnection, SqlitePool};

/// Version, name and SQL of every migration, in order. The PostgreSQL store
/// keeps the same versions and names.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "identities", include_str!("../migrations/0001_identities.sql")),
    (2, "flows_sessions", include_str!("../migrations/0002_flows_sessions.sql")),
    (3, "courier", include_str!("../migrations/0003_courier.sql")),
    (4, "recovery", include_str!("../migrations/0004_recovery.sql")),
    (5, "one_time_codes", include_str!("../migrations/0005_one_time_codes.sql")),
    (6, "code_attempts", include_str!("../migrations/0006_code_attempts.sql")),
    (7, "rate_events", include_str!("../migrations/0007_rate_events.sql")),
    (8, "one_time_code_attempts", include_str!("../migrations/0008_one_time_code_attempts.sql")),
    (9, "cleanup", include_str!("../migrations/0009_cleanup.sql")),
    (10, "courier_backoff", include_str!("../migrations/0010_courier_backoff.sql")),
    (11, "selfservice_errors", include_str!("../migrations/0011_selfservice_errors.sql")),
    (12, "code_requests", include_str!("../migrations/0012_code_requests.sql")),
    (13, "second_factors", include_str!("../migrations/0013_second_factors.sql")),
    (14, "available_aal", include_str!("../migrations/0014_available_aal.sql")),
];

/// The SQLite implementation of every port.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// For `memory`: a connection outside the pool that keeps the shared
    /// in-memory database alive whatever the pool does with its own.
    _keeper: Option<Arc<Mutex<SqliteConnection>>>,
}

impl SqliteStore {
    /// Opens `dsn`: `memory`, `sqlite::memory:`, `sqlite://PATH` or a bare path.
    /// Query parameters other than `mode` are ignored (Kratos-style DSNs carry
    /// Go driver flags such as `_fk=true`).
    pub async fn connect(dsn: &str) -> Result<Self, StoreError> {
        if is_memory(dsn) {
            // A uniquely named shared-cache database: every pooled connection
            // sees the same data, and it lives as long as one connection is
            // open, which the keeper guarantees even if the pool drops its own
            // (a cancelled request can make it do so).
            let options = base_options()
                .filename(format!("file:latchkey-memory-{}", uuid::Uuid::new_v4().simple()))
                .in_memory(true)
                .shared_cache(true);
            let keeper = options.connect().await.map_err(codec::backend)?;
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await
                .map_err(codec::backend)?;
            return Ok(Self { pool, _keeper: Some(Arc::new(Mutex::new(keeper))) });
        }
        let pool = {
            let (path, params) = split_dsn(dsn);
            if let Some(missing) = missing_directory(&path) {
                return Err(StoreError::backend(format!(
                    "the directory {} for the SQLite file does not exist: create it (`mkdir -p {0}`) \
                     or change the path in `dsn` (env DSN)",
                    missing.display()
                )));
            }
            let mut options = base_options()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            if params.iter().any(|(k, v)| k == "mode" && v == "ro") {
                options = options.read_only(true);
            }
            SqlitePoolOptions::new().max_connections(8).connect_with(options).await
        }
        .map_err(codec::backend)?;
        Ok(Self { pool, _keeper: None })
    }

    fn migrator() -> Migrator {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, name, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*name),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect::<Vec<_>>();
        Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
    }
}

fn base_options() -> SqliteConnectOptions {
    SqliteConnectOptions::new().foreign_keys(true).busy_timeout(Duration::from_secs(5))
}

/// True for the DSNs that mean a throwaway in-memory database.
pub fn is_memory(dsn: &str) -> bool {
    matches!(dsn, "memory" | "sqlite::memory:" | "sqlite://:memory:" | ":memory:")
        || dsn.contains("mode=memory")
}

/// True for DSNs this crate opens.
pub fn handles(dsn: &str) -> bool {
    is_memory(dsn) || dsn.starts_with("sqlite:") || dsn.starts_with("file:")
}

/// The directory a database file would go in, when it is not there
/// (SQLite would say only "unable to open database file").
fn missing_directory(path: &str) -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(path).parent()?;
    (!dir.as_os_str().is_empty() && !dir.is_dir()).then(|| dir.to_path_buf())
}

fn split_dsn(dsn: &str) -> (String, Vec<(String, String)>) {
    let rest = dsn
        .strip_prefix("sqlite://")
        .or_else(|| dsn.strip_prefix("sqlite:"))
        .or_else(|| dsn.strip_prefix("file:"))
        .unwrap_or(dsn);
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect();
    (path.to_string(), params)
}

#[async_trait]
impl Database for SqliteStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        Self::migrator().run(&self.pool).await.map_err(codec::backend)
    }

    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(codec::backend)?;
        let migrator = Self::migrator();
        // Asking must not write: no migrations table means nothing is applied.
        let table_exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?")
                .bind(migrator.table_name.as_ref())
                .fetch_optional(&mut *conn)
                .await
                .map_err(codec::backend)?;
        let applied = match table_exists {
            Some(_) => conn.list_applied_migrations(&migrator.table_name).await.map_err(codec::backend)?,
            None => Vec::new(),
        };
        Ok(MIGRATIONS
            .iter()
            .map(|(version, name, _)| MigrationState {
                version: *version,
                description: name.to_string(),
                applied: applied.iter().any(|a| a.version == *version),
            })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(codec::backend)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pool_usage(&self) -> PoolUsage {
        PoolUsage {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_kratos_style_dsns() {
        assert_eq!(split_dsn("sqlite:///var/lib/db.sqlite?_fk=true").0, "/var/lib/db.sqlite");
        assert_eq!(split_dsn("sqlite://./db.sqlite?_fk=true&mode=rwc").1.len(), 2);
        assert_eq!(split_dsn("/tmp/x.db").0, "/tmp/x.db");
        assert!(is_memory("memory") && is_memory("sqlite::memory:"));
        assert!(handles("sqlite:///x") && !handles("postgres://x"));
    }

    /// A database failure keeps the driver's error as its cause, and says
    /// what failed in its own text.
    #[tokio::test]
    async fn backend_errors_keep_their_cause() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: SQLite itself fails.
        let dsn = format!("sqlite://{}", dir.path().display());
        let Err(error) = SqliteStore::connect(&dsn).await else { panic!("opened a directory as a database") };
        let StoreError::Backend(cause) = &error else { panic!("not a backend error: {error:?}") };
        assert!(cause.downcast_ref::<sqlx::Error>().is_some(), "{cause:?}");
        let source = std::error::Error::source(&error).expect("a source");
        assert_eq!(error.to_string(), format!("database error: {source}"));
    }

    /// A file in a missing directory is refused before SQLite tries, with
    /// what to do, and nothing is created.
    #[tokio::test]
    async fn a_missing_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let dsn = format!("sqlite://{}", missing.join("latchkey.db").display());
        let Err(error) = SqliteStore::connect(&dsn).await else {
            panic!("opened a file in a missing directory")
        };
        assert!(error.to_string().contains(&format!("mkdir -p {}", missing.display())), "{error}");
        assert!(!missing.exists());
    }
}
