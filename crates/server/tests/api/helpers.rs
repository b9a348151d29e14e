//! Starts a real server per test and hands out clients for it.

use std::path::PathBuf;
use std::sync::{Arc, LazyLock};

use latchkey::config::{Config, Hook, SchemaEntry};
use latchkey::startup::Application;
use latchkey_courier::test_smtp::{Received, start_server};
use latchkey_domain::time::TestClock;
use latchkey_store_tests::postgres::{FreshDatabase, fresh_database};
use ory_kratos_client::apis::configuration::Configuration;
use ory_kratos_client::apis::identity_api;
use ory_kratos_client::models::CreateIdentityBody;
use serde_json::{Value, json};
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
        let _ = latchkey::telemetry::init(&latchkey::config::Log::default(), &Default::default());
    }
});

pub fn quickstart_schema() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/identity.schema.json")
}

/// A database that exists for one test and is removed after it.
pub enum TestDatabase {
    /// Held so the directory outlives the test.
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    /// Dropped with this, by the harness every crate's tests share.
    Postgres(#[allow(dead_code)] FreshDatabase),
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
                // These tests are not skipped: a server test without its database proves nothing.
                let database = fresh_database()
                    .await
                    .expect("PostgreSQL is unreachable, and the server's tests do not skip it");
                let dsn = database.dsn.clone();
                (TestDatabase::Postgres(database), dsn)
            }
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
    // Retries within a second, so tests of failed sends never wait long.
    config.courier.backoff.initial = "100ms".parse().unwrap();
    config.courier.backoff.max = "500ms".parse().unwrap();
    config.identity.schemas =
        vec![SchemaEntry { id: "default".into(), url: format!("file://{}", quickstart_schema().display()) }];
    let ss = &mut config.selfservice;
    ss.default_browser_return_url = "http://127.0.0.1:4455/welcome".into();
    ss.allowed_return_urls = vec!["http://127.0.0.1:4455".into()];
    ss.flows.login.ui_url = "http://127.0.0.1:4455/login".into();
    ss.flows.registration.ui_url = "http://127.0.0.1:4455/registration".into();
    // Most tests register in one request; the ones about two steps say so.
    ss.flows.registration.style = latchkey::config::RegistrationStyle::Unified;
    ss.flows.registration.after.password.hooks = vec![Hook { hook: "session".into(), config: None }];
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
    /// Where this server keeps its data, for a second server on the same database.
    pub dsn: String,
    /// The server's clock: `app.clock.advance(d)` moves it past lifespans and windows.
    pub clock: Arc<TestClock>,
    /// The server's hasher, for counting the verifications it ran.
    hasher: latchkey_hash::PasswordHasher,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _db: Option<TestDatabase>,
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
    start(dsn, Some(db), Arc::default(), adjust).await
}

/// Another server on an existing database (the first keeps it alive).
pub async fn spawn_app_on(dsn: &str) -> TestApp {
    spawn_app_on_with(dsn, |_| {}).await
}

/// [`spawn_app_on`] with the configuration adjusted.
pub async fn spawn_app_on_with(dsn: &str, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(dsn.to_string(), None, Arc::default(), adjust).await
}

/// Another server on `app`'s database that reads `app`'s clock.
pub async fn spawn_app_beside(app: &TestApp, adjust: impl FnOnce(&mut Config)) -> TestApp {
    start(app.dsn.clone(), None, app.clock.clone(), adjust).await
}

async fn start(
    dsn: String,
    db: Option<TestDatabase>,
    clock: Arc<TestClock>,
    adjust: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = test_config(&dsn);
    adjust(&mut config);
    let app = Application::build_with_clock(&config, clock.clone()).await.expect("server starts");
    let hasher = app.password_hasher();
    let public_url = format!("http://{}", app.public_addr());
    let admin_url = format!("http://{}", app.admin_addr());
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // Clients drop a pooled connection well before the server closes it as
    // idle (10 s): otherwise a request sent just as the server closes gets
    // a reset, which a loaded machine makes likely.
    let client = |redirect: reqwest::redirect::Policy| {
        let idle = std::time::Duration::from_secs(4);
        reqwest::Client::builder().redirect(redirect).pool_idle_timeout(idle).build().unwrap()
    };
    let sdk = |base: &str| Configuration {
        base_path: base.to_string(),
        client: client(reqwest::redirect::Policy::default()),
        ..Configuration::default()
    };
    TestApp {
        admin: sdk(&admin_url),
        public: sdk(&public_url),
        public_url,
        admin_url,
        http: client(reqwest::redirect::Policy::none()),
        dsn,
        clock,
        hasher,
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

    /// Stops the server and starts a new one on the same database, configured
    /// afresh, on the same clock (time does not go back).
    pub async fn restart(mut self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let db = self._db.take();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
        start(self.dsn.clone(), db, self.clock.clone(), adjust).await
    }

    /// Password verifications the server has run (dummy ones included).
    pub fn hash_checks(&self) -> u64 {
        self.hasher.verifications()
    }

    /// Password hashes (and verifications) running right now: nonzero
    /// while a request is busy hashing.
    pub fn hashes_running(&self) -> usize {
        self.hasher.running()
    }

    /// The outbox's messages to `to`, newest first, as the admin API lists
    /// them, once every code request made so far is served: then it is
    /// everything the requests answered so far will ever send.
    pub async fn outbox(&self, to: &str) -> Vec<Value> {
        self.code_requests_served().await;
        self.get_json(&self.admin_path(&format!("/admin/courier/messages?recipient={to}"))).await
    }

    /// Waits (bounded) until no recovery or verification code request is
    /// pending: each request answered so far has its code and mail written,
    /// or was capped.
    pub async fn code_requests_served(&self) {
        code_requests_served(&self.http, &self.metrics_url()).await;
    }

    /// Where this server's metrics are scraped.
    pub fn metrics_url(&self) -> String {
        self.admin_path("/metrics/prometheus")
    }

    /// `GET /sessions/whoami` with the session token in `X-Session-Token`.
    pub async fn whoami(&self, token: &str) -> reqwest::Response {
        self.http
            .get(self.public_path("/sessions/whoami"))
            .header("x-session-token", token)
            .send()
            .await
            .unwrap()
    }

    pub fn admin_path(&self, path: &str) -> String {
        format!("{}{path}", self.admin_url)
    }

    pub fn public_path(&self, path: &str) -> String {
        format!("{}{path}", self.public_url)
    }

    /// GETs `url` (from `admin_path` or `public_path`) and decodes the JSON answer.
    pub async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> T {
        self.http.get(url).send().await.unwrap().json().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A strong password no policy objects to.
pub const PASSWORD: &str = "correct-horse-battery-staple-42";

/// Starts a native flow. Raw HTTP, not the SDK: the Rust SDK (26.2.0) cannot
/// decode UI nodes (its `node_type`-tagged enum swallows the field its
/// variants require), so it fails on every flow, Kratos's included.
pub async fn native_flow(app: &TestApp, kind: &str) -> serde_json::Value {
    let response = app.http.get(app.public_path(&format!("/self-service/{kind}/api"))).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Registers through the native flow; returns the session token and identity id.
/// Raw HTTP again: the SDK cannot decode `continue_with` items either (the
/// same tagged-enum problem, on `action`).
pub async fn register(app: &TestApp, email: &str, password: &str) -> (String, String) {
    let done = submit_registration(app, serde_json::json!({ "email": email }), password).await;
    let token = done["session_token"].as_str().expect("the session hook is on").to_string();
    (token, done["identity"]["id"].as_str().unwrap().to_string())
}

pub async fn submit_registration(
    app: &TestApp,
    traits: serde_json::Value,
    password: &str,
) -> serde_json::Value {
    let flow = native_flow(app, "registration").await;
    let response = app
        .http
        .post(app.public_path(&format!("/self-service/registration?flow={}", flow["id"].as_str().unwrap())))
        .json(&serde_json::json!({ "method": "password", "traits": traits, "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Signs in through the native flow; returns the session token.
pub async fn login(app: &TestApp, identifier: &str, password: &str) -> Result<String, serde_json::Value> {
    use ory_kratos_client::apis::{Error, frontend_api};
    use ory_kratos_client::models::{UpdateLoginFlowBody, UpdateLoginFlowWithPasswordMethod};
    let flow = native_flow(app, "login").await;
    let body = UpdateLoginFlowBody::Password(Box::new(UpdateLoginFlowWithPasswordMethod::new(
        identifier.into(),
        "password".into(),
        password.into(),
    )));
    match frontend_api::update_login_flow(&app.public, flow["id"].as_str().unwrap(), body, None, None).await {
        Ok(done) => Ok(done.session_token.expect("native logins return a token")),
        Err(Error::ResponseError(r)) => Err(serde_json::from_str(&r.content).unwrap()),
        Err(other) => panic!("login failed: {other}"),
    }
}

/// A minimal cookie jar for browser tests: remembers `Set-Cookie` values.
#[derive(Default)]
pub struct Jar(std::collections::BTreeMap<String, String>);

impl Jar {
    pub fn store(&mut self, response: &reqwest::Response) {
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            let expired = text.contains("Max-Age=0");
            if expired || value.is_empty() {
                self.0.remove(name);
            } else {
                self.0.insert(name.to_string(), value.to_string());
            }
        }
    }

    pub fn header(&self) -> String {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    pub fn get(&self, prefix: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.as_str())
    }
}

/// A server whose courier mails a real SMTP server on loopback; returns what it received.
pub async fn spawn_app_with_mail(
    backend: Backend,
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, std::sync::Arc<std::sync::Mutex<Vec<Received>>>) {
    let (port, received) = start_server(false);
    let app = spawn_app_with(backend, |c| {
        c.courier.smtp.connection_uri = format!("smtp://127.0.0.1:{port}/?disable_starttls=true");
        c.secrets.cookie = vec!["a-test-secret-of-enough-length".into()];
        adjust(c);
    })
    .await;
    (app, received)
}

/// Creates an identity with an email trait and [`PASSWORD`] through the admin API.
pub async fn create_identity(app: &TestApp, email: &str) -> String {
    let body = CreateIdentityBody::new("default".into(), json!({ "email": email }));
    let mut body = body;
    body.credentials = Some(Box::new(ory_kratos_client::models::IdentityWithCredentials {
        password: Some(Box::new(ory_kratos_client::models::IdentityWithCredentialsPassword {
            config: Some(Box::new(ory_kratos_client::models::IdentityWithCredentialsPasswordConfig {
                password: Some(PASSWORD.into()),
                ..Default::default()
            })),
        })),
        ..Default::default()
    }));
    identity_api::create_identity(&app.admin, Some(body)).await.unwrap().id
}

/// Waits for the `nth` code mailed to `to` (bounded) and reads it from the
/// subject; mails without a code (notices) are not counted.
pub async fn code_for(received: &std::sync::Mutex<Vec<Received>>, to: &str, nth: usize) -> String {
    let code_in = |mail: &Received| {
        let text = String::from_utf8_lossy(&mail.data).replace("=\r\n", "");
        let subject = text.lines().find(|l| l.starts_with("Subject:"))?.to_string();
        subject.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).map(str::to_string)
    };
    // Bounded, but generous: on a loaded machine (the whole suite at once)
    // a dispatcher polling every second can take several rounds.
    for _ in 0..600 {
        let codes: Vec<String> = received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.to.iter().any(|t| t.contains(to)))
            .filter_map(code_in)
            .collect();
        if let Some(code) = codes.get(nth) {
            return code.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no email for {to}");
}

/// Waits (bounded) until `done` holds, checking every few milliseconds.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Rounds the courier scraped at `metrics` has finished
/// (`latchkey_courier_dispatch_rounds_total`).
pub async fn dispatch_rounds(http: &reqwest::Client, metrics: &str) -> u64 {
    let body = http.get(metrics).send().await.unwrap().text().await.unwrap();
    let total = body.lines().find_map(|l| l.strip_prefix("latchkey_courier_dispatch_rounds_total "));
    total.unwrap_or_else(|| panic!("no dispatch rounds in:\n{body}")).parse().unwrap()
}

/// Waits (bounded) until each courier scraped at `metrics` has finished a
/// round that began after this call. A courier's rounds follow one
/// another, so every send any of them had started is done and recorded,
/// and each has read the outbox since.
pub async fn dispatchers_caught_up(http: &reqwest::Client, metrics: &[String]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // The round in progress now may have begun earlier; the one after it did not.
    let mut targets = Vec::new();
    for url in metrics {
        targets.push(dispatch_rounds(http, url).await + 2);
    }
    for (url, target) in metrics.iter().zip(targets) {
        while dispatch_rounds(http, url).await < target {
            assert!(std::time::Instant::now() < deadline, "the courier at {url} stopped dispatching");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// Waits (bounded) until the server scraped at `metrics` has no recovery
/// or verification code request pending (`latchkey_code_requests_pending`).
pub async fn code_requests_served(http: &reqwest::Client, metrics: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let body = http.get(metrics).send().await.unwrap().text().await.unwrap();
        let pending = body.lines().find_map(|l| l.strip_prefix("latchkey_code_requests_pending "));
        let pending: u64 =
            pending.unwrap_or_else(|| panic!("no pending code requests in:\n{body}")).parse().unwrap();
        if pending == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{pending} code requests were never served");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `GET` of a public `path` as the session `token`: the status and the JSON body.
pub async fn get_as(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let response = app.http.get(app.public_path(path)).header("x-session-token", token).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// A native settings flow for the session `token`.
pub async fn settings_flow(app: &TestApp, token: &str) -> serde_json::Value {
    let (status, flow) = get_as(app, "/self-service/settings/api", token).await;
    assert_eq!(status, 200, "{flow}");
    flow
}

/// The names of a flow's nodes, in order.
pub fn names(flow: &Value) -> Vec<String> {
    flow["ui"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["attributes"]["name"].as_str().unwrap().to_string())
        .collect()
}

/// The masked CSRF token a browser flow's form carries (its `csrf_token` node).
pub fn csrf_token_of(flow: &Value) -> String {
    let nodes = flow["ui"]["nodes"].as_array().expect("a flow has nodes");
    let node = nodes
        .iter()
        .find(|n| n["attributes"]["name"] == "csrf_token")
        .expect("a browser flow has a CSRF token");
    node["attributes"]["value"].as_str().expect("the token is a string").to_string()
}
