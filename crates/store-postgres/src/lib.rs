//! Latchkey's server storage: every port on PostgreSQL through one sqlx
//! pool, sized and tuned from the same DSN query parameters Kratos reads.

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
use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::store::{Database, MigrationState, PoolUsage, StoreError};
use sqlx::migrate::{Migrate, Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool, SqlSafeStr};

use crate::codec::backend;
use uuid::Uuid;

/// Version, name and SQL of every migration, in order: the same versions and
/// names as the SQLite store, so `migrate status` reads alike on both.
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

const DEFAULT_MAX_CONNECTIONS: u32 = 16;

/// The PostgreSQL implementation of every port.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) pool: PgPool,
}

impl PgStore {
    /// Opens a pool on a `postgres://` or `postgresql://` DSN. The pool
    /// settings Kratos takes from the query (`max_conns`, `max_conn_lifetime`,
    /// `max_conn_idle_time`, `connect_timeout`) are applied here and removed,
    /// as is `max_idle_conns`, which sqlx's pool has no equivalent for;
    /// everything else (`sslmode`, `application_name`, ...) goes to sqlx.
    pub async fn connect(dsn: &str) -> Result<Self, StoreError> {
        let (dsn, settings) = split_pool_settings(dsn)?;
        let options: PgConnectOptions = dsn.parse().map_err(backend)?;
        let mut pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .max_lifetime(settings.max_lifetime)
            .idle_timeout(settings.idle_timeout);
        if let Some(timeout) = settings.acquire_timeout {
            pool = pool.acquire_timeout(timeout);
        }
        // One connection first, on its own deadline: the pool would retry a
        // refused or failed connection until its acquire timeout and then
        // report only that it timed out.
        let wait = settings.acquire_timeout.unwrap_or(FIRST_CONNECTION_TIMEOUT).min(FIRST_CONNECTION_TIMEOUT);
        match tokio::time::timeout(wait, options.connect()).await {
            Ok(Ok(first)) => drop(first),
            Ok(Err(e)) => return Err(StoreError::backend(explain_connect_error(&options, &e))),
            Err(_) => {
                return Err(StoreError::backend(format!(
                    "no answer from {}:{} within {}s: check the host and port in `dsn` (env DSN), \
                     and that no firewall drops the connection",
                    options.get_host(),
                    options.get_port(),
                    wait.as_secs()
                )));
            }
        }
        let pool = pool.connect_with(options).await.map_err(backend)?;
        Ok(Self { pool })
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

/// How long the first connection at start may take.
const FIRST_CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A failed first connection as the operator needs it: the root cause and
/// what to change, without the driver's internals.
fn explain_connect_error(options: &PgConnectOptions, e: &sqlx::Error) -> String {
    let (host, port) = (options.get_host(), options.get_port());
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing accepts connections at {host}:{port} (connection refused): is PostgreSQL running, \
             and on this port? Change the host or port in `dsn` (env DSN)"
        ),
        sqlx::Error::Io(io) => {
            format!("could not reach {host}:{port}: {io}; check the host and port in `dsn` (env DSN)")
        }
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("3D000") => format!(
                "database \"{database}\" does not exist on {host}:{port}: create it with \
                 `createdb -h {host} -p {port} -U {user} {database}` (or `CREATE DATABASE {database};` in psql), \
                 or name another in `dsn` (env DSN)"
            ),
            Some("28000") if db.message().contains("does not exist") => format!(
                "PostgreSQL has no role \"{user}\": create it with `createuser -h {host} -p {port} {user}`, \
                 or name another user in `dsn` (env DSN)"
            ),
            Some("28000" | "28P01") => format!(
                "PostgreSQL refused user \"{user}\": {}; check the user and password in `dsn` (env DSN)",
                db.message()
            ),
            _ => format!("PostgreSQL refused the connection: {}", db.message()),
        },
        other => other.to_string(),
    }
}

/// The channel on which writes announce what `whoami` caches must forget.
pub const INVALIDATION_CHANNEL: &str = "latchkey_session_cache";

/// What another process changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    Identity(Uuid),
    Session(Uuid),
    /// A notification that could not be understood: forget everything.
    All,
    /// The listening connection dropped, so notifications may be missed until
    /// [`Invalidation::Listening`]: forget everything and cache nothing.
    Lost,
    /// Listening again after [`Invalidation::Lost`].
    Listening,
}

impl Invalidation {
    fn parse(payload: &str) -> Invalidation {
        let id = |s: &str| Uuid::parse_str(s).ok();
        match payload.split_once(':') {
            Some(("i", rest)) => id(rest).map_or(Invalidation::All, Invalidation::Identity),
            Some(("s", rest)) => id(rest).map_or(Invalidation::All, Invalidation::Session),
            _ => Invalidation::All,
        }
    }
}

/// Tells every process sharing this database (this one included), once the
/// transaction `conn` is in commits, that cached `whoami` answers about
/// `payload` are stale.
pub(crate) async fn announce(conn: &mut sqlx::PgConnection, payload: String) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(INVALIDATION_CHANNEL)
        .bind(payload)
        .execute(conn)
        .await
        .map_err(backend)?;
    Ok(())
}

impl PgStore {
    /// Runs one write and announces `payload` in the same transaction, so
    /// that PostgreSQL delivers the notification exactly when the write
    /// commits: no write goes unannounced, no announcement precedes its write.
    pub(crate) async fn execute_announced(
        &self,
        write: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
        payload: String,
    ) -> Result<sqlx::postgres::PgQueryResult, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let done = write.execute(&mut *tx).await.map_err(backend)?;
        announce(&mut tx, payload).await?;
        tx.commit().await.map_err(backend)?;
        Ok(done)
    }

    /// Listens for invalidations and hands each to `on`. When the connection
    /// drops, `on` gets [`Invalidation::Lost`] at once, and
    /// [`Invalidation::Listening`] once a new connection listens again; the
    /// listener reconnects on its own, every second until it succeeds.
    pub async fn listen_for_invalidations(
        &self,
        on: impl Fn(Invalidation) + Send + Sync + 'static,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        let mut listener = self.invalidation_listener().await.map_err(backend)?;
        let store = self.clone();
        Ok(tokio::spawn(async move {
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => on(Invalidation::parse(notification.payload())),
                    // Told before reconnecting, so nothing is cached in between.
                    lost => {
                        let error =
                            lost.err().map_or_else(|| "connection closed".to_string(), |e| e.to_string());
                        tracing::warn!(%error, "session cache listener lost its connection; caching is off until it is back");
                        on(Invalidation::Lost);
                        listener = store.relisten().await;
                        on(Invalidation::Listening);
                    }
                }
            }
        }))
    }

    /// A connection listening on [`INVALIDATION_CHANNEL`] that reports a drop
    /// instead of reconnecting behind the caller's back.
    async fn invalidation_listener(&self) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.eager_reconnect(false);
        listener.listen(INVALIDATION_CHANNEL).await?;
        Ok(listener)
    }

    async fn relisten(&self) -> sqlx::postgres::PgListener {
        loop {
            match self.invalidation_listener().await {
                Ok(listener) => return listener,
                Err(e) => {
                    tracing::warn!(error = %e, "session cache listener could not reconnect");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

/// True for DSNs this crate opens.
pub fn handles(dsn: &str) -> bool {
    dsn.starts_with("postgres://") || dsn.starts_with("postgresql://")
}

/// Pool settings read from the DSN query.
#[derive(Debug, PartialEq)]
struct PoolSettings {
    max_connections: u32,
    /// sqlx has no connect-only timeout; waiting for a pooled connection
    /// (which includes opening one) is the nearest thing.
    acquire_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl Default for PoolSettings {
    /// Absent parameters keep sqlx's lifetime and idle defaults.
    fn default() -> Self {
        let defaults = PgPoolOptions::new();
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            acquire_timeout: None,
            max_lifetime: defaults.get_max_lifetime(),
            idle_timeout: defaults.get_idle_timeout(),
        }
    }
}

/// Takes the Go-driver pool parameters out of `dsn`, which sqlx would
/// otherwise ignore with a warning on every connection, and returns the rest
/// of the DSN untouched.
fn split_pool_settings(dsn: &str) -> Result<(String, PoolSettings), StoreError> {
    let invalid = |key: &str, value: &str| StoreError::backend(format!("invalid `{key}={value}` in the DSN"));
    let mut settings = PoolSettings::default();
    let Some((base, query)) = dsn.split_once('?') else {
        return Ok((dsn.to_string(), settings));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "max_conns" => {
                settings.max_connections =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| invalid(key, value))?;
            }
            // Go's zero durations mean "no limit".
            "max_conn_lifetime" => {
                let lifetime = go_duration(value).ok_or_else(|| invalid(key, value))?;
                settings.max_lifetime = Some(lifetime).filter(|d| !d.is_zero());
            }
            "max_conn_idle_time" => {
                let idle = go_duration(value).ok_or_else(|| invalid(key, value))?;
                settings.idle_timeout = Some(idle).filter(|d| !d.is_zero());
            }
            // libpq's whole seconds, where zero or less means wait forever:
            // keep sqlx's default then rather than a timeout that never fires.
            "connect_timeout" => {
                let seconds: i64 = value.parse().map_err(|_| invalid(key, value))?;
                settings.acquire_timeout =
                    u64::try_from(seconds).ok().filter(|s| *s > 0).map(Duration::from_secs);
            }
            "max_idle_conns" => {}
            _ => kept.push(pair),
        }
    }
    let dsn = if kept.is_empty() { base.to_string() } else { format!("{base}?{}", kept.join("&")) };
    Ok((dsn, settings))
}

/// Parses a Go `time.Duration` string such as `1h30m` or `500ms`; `None` when
/// malformed.
fn go_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    if s.is_empty() {
        return None;
    }
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut rest = s;
    let mut seconds = 0.0;
    while !rest.is_empty() {
        let (number, tail) = rest.split_at(rest.find(|c| !is_number(c))?);
        let (unit, tail) = tail.split_at(tail.find(is_number).unwrap_or(tail.len()));
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        seconds += number.parse::<f64>().ok()? * scale;
        rest = tail;
    }
    Duration::try_from_secs_f64(seconds).ok()
}

#[async_trait]
impl Database for PgStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        Self::migrator().run(&self.pool).await.map_err(backend)
    }

    /// Read-only: a database nobody has migrated yet is reported as having
    /// nothing applied instead of gaining an empty migrations table.
    async fn migration_status(&self) -> Result<Vec<MigrationState>, StoreError> {
        let migrator = Self::migrator();
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        let table_exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(&*migrator.table_name)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
        let applied = if table_exists {
            conn.list_applied_migrations(&migrator.table_name).await.map_err(backend)?
        } else {
            Vec::new()
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
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(backend)?;
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
    fn recognises_postgres_dsns() {
        assert!(handles("postgres://u@h/db") && handles("postgresql://u@h/db"));
        assert!(!handles("sqlite://x") && !handles("memory") && !handles("cockroach://x"));
    }

    #[test]
    fn takes_kratos_pool_parameters_out_of_the_dsn() {
        let (dsn, settings) = split_pool_settings(
            "postgres://u:p@h:5432/kratos?sslmode=disable&max_conns=20&max_idle_conns=4\
             &max_conn_lifetime=1h30m&max_conn_idle_time=0&connect_timeout=5&application_name=lk",
        )
        .unwrap();
        assert_eq!(dsn, "postgres://u:p@h:5432/kratos?sslmode=disable&application_name=lk");
        assert_eq!(
            settings,
            PoolSettings {
                max_connections: 20,
                acquire_timeout: Some(Duration::from_secs(5)),
                max_lifetime: Some(Duration::from_secs(5400)),
                idle_timeout: None,
            }
        );

        let (dsn, settings) = split_pool_settings("postgres://h/db?max_conns=3").unwrap();
        assert_eq!((dsn.as_str(), settings.max_connections), ("postgres://h/db", 3));
        let (dsn, settings) = split_pool_settings("postgres://h/db").unwrap();
        assert_eq!((dsn.as_str(), settings), ("postgres://h/db", PoolSettings::default()));
        assert_eq!(PoolSettings::default().max_connections, 16);
        assert_eq!(split_pool_settings("postgres://h/db?connect_timeout=0").unwrap().1.acquire_timeout, None);
    }

    #[test]
    fn rejects_malformed_pool_parameters() {
        for bad in ["max_conns=0", "max_conns=many", "max_conn_lifetime=10", "max_conn_idle_time=1d"] {
            assert!(split_pool_settings(&format!("postgres://h/db?{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(go_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("2m30s"), Some(Duration::from_secs(150)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "10", "h", "-1s", "1x"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }
}
