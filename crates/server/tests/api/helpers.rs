//! Starts a real server per test and hands out clients for it.

use std::path::PathBuf;
use std::sync::LazyLock;

use latchkey::config::{Config, SchemaEntry};
use latchkey::startup::Application;
use ory_kratos_client::apis::configuration::Configuration;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs one scenario function as two tests, `sqlite` and `postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test]
                async fn sqlite() {
                    super::$scenario($crate::helpers::Backend::Sqlite).await
                }
                #[tokio::test]
                async fn postgres() {
                    super::$scenario($crate::helpers::Backend::Postgres).await
                }
            }
        )*
    };
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        latchkey::telemetry::init(&latchkey::config::Log::default());
    }
});

pub fn maintenance_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn quickstart_schema() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/identity.schema.json")
}

/// A database that exists for one test and is removed after it.
pub enum TestDatabase {
    /// Held so the directory outlives the test.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres {
        name: String,
    },
}

impl TestDatabase {
    pub async fn new(backend: Backend) -> (Self, String) {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let dsn = format!("sqlite://{}?_fk=true", dir.path().join("latchkey.db").display());
                (TestDatabase::Sqlite(dir), dsn)
            }
            Backend::Postgres => {
                let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
                let mut conn = pg_connect().await;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                let base = maintenance_url();
                let dsn = format!("{}/{name}", base.rsplit_once('/').unwrap().0);
                (TestDatabase::Postgres { name }, dsn)
            }
        }
    }
}

async fn pg_connect() -> sqlx::PgConnection {
    use sqlx::Connection;
    match sqlx::PgConnection::connect(&maintenance_url()).await {
        Ok(conn) => conn,
        Err(e) => panic!(
            "PostgreSQL is required for this test and is not reachable at {}: {e}. \
             Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
            maintenance_url()
        ),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { name } = self {
            let name = name.clone();
            // Drop runs inside the test's runtime; a fresh thread may block.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    let mut conn = pg_connect().await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await;
                });
            })
            .join();
        }
    }
}

/// The configuration every test server starts from: random loopback ports,
/// the quickstart schema, fast bcrypt (allowed by `dev`).
pub fn test_config(dsn: &str) -> Config {
    let mut config = Config { dsn: dsn.to_string(), dev: true, ..Default::default() };
    config.serve.public.host = "127.0.0.1".into();
    config.serve.public.port = Some(0);
    config.serve.admin.host = "127.0.0.1".into();
    config.serve.admin.port = Some(0);
    config.hashers.bcrypt.cost = 4;
    config.identity.schemas =
        vec![SchemaEntry { id: "default".into(), url: format!("file://{}", quickstart_schema().display()) }];
    config
}

pub struct TestApp {
    pub public_url: String,
    pub admin_url: String,
    pub http: reqwest::Client,
    /// The Kratos SDK pointed at the admin API.
    pub admin: Configuration,
    /// The Kratos SDK pointed at the public API.
    pub public: Configuration,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _db: TestDatabase,
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

pub async fn spawn_app_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> TestApp {
    LazyLock::force(&TRACING);
    let (db, dsn) = TestDatabase::new(backend).await;
    if let Backend::Postgres = backend {
        // A shared database is migrated by the operator before `serve`.
        let (store, _) = latchkey::startup::open_store(&dsn).await.unwrap();
        store.migrate().await.unwrap();
        store.close().await;
    }
    let mut config = test_config(&dsn);
    adjust(&mut config);
    let app = Application::build(&config).await.expect("server starts");
    let public_url = format!("http://{}", app.public_addr());
    let admin_url = format!("http://{}", app.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    let sdk = |base: &str| Configuration { base_path: base.to_string(), ..Configuration::default() };
    TestApp {
        admin: sdk(&admin_url),
        public: sdk(&public_url),
        public_url,
        admin_url,
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        stop: Some(stop),
        server: Some(server),
        _db: db,
    }
}

impl TestApp {
    /// Stops the server gracefully and waits until it has.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub fn admin_path(&self, path: &str) -> String {
        format!("{}{path}", self.admin_url)
    }

    pub fn public_path(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
