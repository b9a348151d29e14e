//! Configuration as operators write it: Kratos's quickstart file, layered
//! files, environment overrides, and errors that name the key.

use std::path::PathBuf;
use std::process::Command;

use latchkey::config;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Kratos's own email-password quickstart, with only its schema URL pointed
/// at a file that exists here.
fn kratos_quickstart(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(fixture("kratos-quickstart.yml")).unwrap();
    let schema = crate::helpers::quickstart_schema();
    let text = text
        .replace("file:///etc/config/kratos/identity.schema.json", &format!("file://{}", schema.display()));
    let path = dir.join("kratos.yml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn kratos_quickstart_config_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let loaded = config::load(&[kratos_quickstart(dir.path())], Vec::new(), false).unwrap();
    let c = &loaded.config;
    assert_eq!(c.dsn, "memory");
    assert_eq!(c.serve.public.base_url, "http://127.0.0.1:4433/");
    assert_eq!(c.hashers.bcrypt.cost, 12, "cost 8 is raised outside --dev");
    assert_eq!(c.identity.default_schema_id, "default");
    assert_eq!(c.selfservice.flows.login.lifespan, "10m".parse().unwrap());
    assert!(c.selfservice.flows.registration.after.password_hooks().any(|h| h == "session"));
    assert_eq!(c.courier.smtp.connection_uri, "smtps://test:test@mailslurper:1025/?skip_ssl_verify=true");
    let verification = &c.selfservice.flows.verification;
    assert!(verification.enabled);
    assert!(verification.ui_url.ends_with("/verification"), "{}", verification.ui_url);
    assert!(!verification.after.default_browser_return_url.is_empty());
    assert!(c.serve.public.cors.enabled, "Kratos's quickstart turns CORS on");
    assert!(loaded.unsupported_keys.iter().any(|k| k == "ciphers"), "{:?}", loaded.unsupported_keys);
    // Implemented now, so taken from the file rather than named as unsupported.
    assert!(!loaded.unsupported_keys.iter().any(|k| k.starts_with("selfservice.methods.totp")));
    assert!(c.selfservice.methods.totp.enabled);
    let dev = config::load(&[kratos_quickstart(dir.path())], Vec::new(), true).unwrap();
    assert_eq!(dev.config.hashers.bcrypt.cost, 8);
}

fn latchkey() -> Command {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
}

#[test]
fn an_invalid_value_stops_the_start_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let output = latchkey()
        .args(["serve", "-c"])
        .arg(kratos_quickstart(dir.path()))
        .env("SERVE_PUBLIC_PORT", "not-a-port")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("serve.public.port"), "{stderr}");
}

#[test]
fn secrets_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let output = latchkey()
        .args(["serve", "-c"])
        .arg(kratos_quickstart(dir.path()))
        .env("DSN", "postgres://postgres:hunter2-db-password@127.0.0.1:5432/latchkey_does_not_exist")
        .env("SECRETS_COOKIE", "hunter2-cookie-secret-value")
        .env("LOG_LEVEL", "trace")
        .output()
        .unwrap();
    assert!(!output.status.success(), "the database does not exist");
    let all =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(all.contains("postgres://postgres:***@127.0.0.1:5432/latchkey_does_not_exist"), "{all}");
    for secret in ["hunter2-db-password", "hunter2-cookie-secret-value", "PLEASE-CHANGE-ME", "32-LONG-SECRET"]
    {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[test]
fn dsn_passwords_with_delimiters_never_reach_the_output() {
    let dir = tempfile::tempdir().unwrap();
    for (dsn, secrets) in [
        (
            "postgres://postgres:hun@ter2:db/pw@127.0.0.1:5432/latchkey_does_not_exist",
            &["hun@ter2", "ter2:db", "db/pw"][..],
        ),
        (
            "postgres://postgres@127.0.0.1:5432/latchkey_does_not_exist?sslmode=disable&password=hunter2-query",
            &["hunter2-query"][..],
        ),
    ] {
        let output = latchkey()
            .args(["serve", "-c"])
            .arg(kratos_quickstart(dir.path()))
            .env("DSN", dsn)
            .env("LOG_LEVEL", "trace")
            .output()
            .unwrap();
        assert!(!output.status.success(), "the database does not exist");
        let all =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(all.contains("127.0.0.1:5432/latchkey_does_not_exist"), "the DSN is named: {all}");
        for secret in secrets {
            assert!(!all.contains(secret), "{secret} leaked: {all}");
        }
    }
}

#[test]
fn help_explains_the_commands() {
    let output = latchkey().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for word in ["serve", "migrate", "version", "Kratos"] {
        assert!(help.contains(word), "{word} missing from --help: {help}");
    }
    let output = latchkey().args(["version"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(env!("CARGO_PKG_VERSION")));
}
