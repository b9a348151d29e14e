//! Start-up and shutdown: migrations on each database, graceful stops, and
//! the real binary serving the quickstart config.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use latchkey::startup::{Application, StartError};
use serde_json::json;

use crate::helpers::{Backend, TestDatabase, eventually, spawn_app_with, test_config};

#[tokio::test]
async fn postgres_refuses_to_serve_until_migrated_by_the_cli() {
    let (_db, dsn) = TestDatabase::new(Backend::Postgres).await;
    match Application::build(&test_config(&dsn)).await {
        Err(e @ StartError::PendingMigrations(_)) => assert!(e.to_string().contains("latchkey migrate sql")),
        Err(other) => panic!("unexpected error: {other}"),
        Ok(_) => panic!("started on an unmigrated database"),
    }

    let cli = || Command::new(env!("CARGO_BIN_EXE_latchkey"));
    let status = cli().args(["migrate", "sql", "status", &dsn]).output().unwrap();
    assert!(status.status.success());
    assert!(String::from_utf8_lossy(&status.stdout).contains("pending"));

    // Without --yes and without a terminal answer, nothing is applied.
    let refused = cli().args(["migrate", "sql", &dsn]).stdin(Stdio::null()).output().unwrap();
    assert!(!refused.status.success());

    let applied = cli().args(["migrate", "sql", "-e", "--yes"]).env("DSN", &dsn).output().unwrap();
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let status = cli().args(["migrate", "sql", "status", &dsn]).output().unwrap();
    let listing = String::from_utf8_lossy(&status.stdout);
    assert!(listing.contains("applied") && !listing.contains("pending"), "{listing}");

    let app = Application::build(&test_config(&dsn)).await.expect("starts once migrated");
    drop(app);
}

async fn in_flight_requests_finish_on_shutdown(backend: Backend) {
    // A deliberately slow hasher keeps the request in flight while we stop.
    let app = spawn_app_with(backend, |c| {
        c.hashers.algorithm = latchkey::config::HashAlgorithm::Argon2;
        c.hashers.argon2.memory = "32MB".parse().unwrap();
        c.hashers.argon2.iterations = 6;
        c.hashers.argon2.parallelism = Some(1);
    })
    .await;
    let request = app.http.post(app.admin_path("/admin/identities")).json(&json!({
        "traits": {"email": "slow@example.com"},
        "credentials": {"password": {"config": {"password": "a-slow-password"}}}
    }));
    let in_flight = tokio::spawn(request.send());
    // The server is hashing the password: the request is in flight.
    eventually("the request reaching the hasher", || app.hashes_running() > 0).await;
    app.stop().await;
    let response = in_flight.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
}

crate::on_both_databases!(in_flight_requests_finish_on_shutdown);

#[test]
fn the_binary_serves_the_quickstart_config_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "--dev", "-c"])
        .arg(&config)
        .env("DSN", format!("sqlite://{}", dir.path().join("q.db").display()))
        .env("SERVE_PUBLIC_PORT", "0")
        .env("SERVE_ADMIN_PORT", "0")
        .env("SERVE_PUBLIC_BASE_URL", "http://127.0.0.1:4433/")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = stderr.lines();
    let ready = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("latchkey is ready"))
        .expect("the server reports readiness");
    let admin = ready.split("admin=").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let body: serde_json::Value =
        reqwest::blocking_get(&format!("http://{admin}/health/ready")).expect("ready answers");
    assert_eq!(body["status"], "ok");
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "exits cleanly on SIGTERM: {status}");
    assert!(lines.map_while(Result::ok).any(|l| l.contains("latchkey stopped")));
}

mod reqwest {
    /// A tiny blocking GET for the process test, on its own runtime.
    pub fn blocking_get(url: &str) -> Result<serde_json::Value, String> {
        let rt =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        rt.block_on(async {
            ::reqwest::get(url).await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())
        })
    }
}

#[test]
fn config_check_names_the_mistake_and_serve_leaves_no_database_behind() {
    let dir = tempfile::tempdir().unwrap();
    let check = |file: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["config", "check", "-c"])
            .arg(file)
            .env_remove("DSN")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    };
    let quickstart =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    let (ok, text) = check(&quickstart);
    assert!(ok && text.contains("configuration is valid"), "{text}");

    let db = dir.path().join("left.db");
    let typo = dir.path().join("typo.yml");
    std::fs::write(&typo, format!("dsn: sqlite://{}\nselfservce:\n  flows: {{}}\n", db.display())).unwrap();
    let (ok, text) = check(&typo);
    assert!(!ok && text.contains("`selfservce` (did you mean `selfservice`?)"), "{text}");

    // A schema that is not there is found before the database is created.
    let schema = dir.path().join("schema.yml");
    std::fs::write(
        &schema,
        format!(
            "dsn: sqlite://{}\nidentity:\n  default_schema_id: d\n  schemas:\n    - id: d\n      url: file://{}/missing.json\n",
            db.display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let (ok, text) = check(&schema);
    assert!(!ok && text.contains("missing.json"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(["serve", "-c"])
        .arg(&schema)
        .env("SERVE_PUBLIC_PORT", "0")
        .env("SERVE_ADMIN_PORT", "0")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.json"));
    assert!(!db.exists(), "a configuration error left {} behind", db.display());
}

#[test]
fn start_up_failures_name_the_cause_and_what_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    let closed_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let quickstart =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/quickstart/latchkey.yml");
    let serve = |env: &[(&str, &str)]| {
        let started = std::time::Instant::now();
        let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        command.args(["serve", "-c"]).arg(&quickstart);
        command.env("SERVE_PUBLIC_PORT", "0").env("SERVE_ADMIN_PORT", "0").env("NO_COLOR", "1");
        for (k, v) in env {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let error = stderr.lines().rfind(|l| l.starts_with("error:")).unwrap_or_default().to_string();
        (error, started.elapsed())
    };
    let pg = std::env::var("TEST_POSTGRES_URL").ok();

    let (error, took) = serve(&[("DSN", &format!("postgres://postgres@127.0.0.1:{closed_port}/test"))]);
    assert!(error.contains("connection refused") && error.contains("`dsn` (env DSN)"), "{error}");
    // Said at once, not after the pool's 30 s of retries.
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");

    if let Some(url) = pg {
        let base = url.rsplit_once('/').unwrap().0;
        let (error, _) = serve(&[("DSN", &format!("{base}/latchkey_no_such_database"))]);
        assert!(
            error.contains("database \"latchkey_no_such_database\" does not exist")
                && error.contains("createdb")
                && !error.contains("at line"),
            "{error}"
        );
    }

    let nested = dir.path().join("no/such/dir/latchkey.db");
    let (error, _) = serve(&[("DSN", &format!("sqlite://{}", nested.display()))]);
    assert!(error.contains("does not exist") && error.contains("mkdir -p"), "{error}");
    assert!(!dir.path().join("no").exists());

    let (error, _) = serve(&[("DSN", "memory"), ("SERVE_PUBLIC_PORT", &taken_port)]);
    assert!(
        error.contains("`serve.public.port`, env SERVE_PUBLIC_PORT") && error.contains("another port"),
        "{error}"
    );
    drop(taken);
}
