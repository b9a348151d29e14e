//! Reading the configuration: YAML files merged in order, environment
//! overrides named after the key path, then serde into the typed model,
//! collecting the keys Latchkey does not use yet.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::keys::{self, Ignored};
use super::validation::{validate, validate_cleanup};
use super::{Config, ConfigError, SUPPORTED_HOOKS, UnknownKey, invalid};

/// The loaded configuration plus what the loader noticed along the way.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Keys present in the files or environment that Latchkey does not use yet.
    pub unsupported_keys: Vec<String>,
    /// Adjustments made to unsafe values (e.g. a raised bcrypt cost).
    pub notices: Vec<String>,
}

/// Only the DSN, for `migrate`: the rest of the configuration need not be valid.
pub fn read_dsn(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Option<String>, ConfigError> {
    let merged = merged_files(files)?;
    let from_env = env.into_iter().find(|(k, _)| k == "DSN").map(|(_, v)| v);
    Ok(from_env
        .or_else(|| merged.get("dsn").and_then(Value::as_str).map(str::to_string))
        .filter(|d| !d.is_empty()))
}

fn merged_files(files: &[PathBuf]) -> Result<Value, ConfigError> {
    let mut merged = Value::Object(Map::new());
    for path in files {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.clone(), source })?;
        let value = parse_yaml(&text, path)?;
        let value = resolve_relative_schema_urls(value, path.parent().unwrap_or(Path::new(".")));
        merge(&mut merged, value);
    }
    Ok(merged)
}

/// One file's text as a YAML mapping (an empty file is an empty mapping).
fn parse_yaml(text: &str, path: &Path) -> Result<Value, ConfigError> {
    let value: Value = if text.trim().is_empty() {
        Value::Object(Map::new())
    } else {
        serde_yaml_ng::from_str(text)
            .map_err(|e| ConfigError::Yaml { path: path.to_path_buf(), reason: e.to_string() })?
    };
    if !value.is_object() {
        return Err(ConfigError::Yaml {
            path: path.to_path_buf(),
            reason: "the top level must be a mapping".into(),
        });
    }
    Ok(value)
}

/// The configuration for `cleanup sql`: files and environment as for
/// [`load`], but only the keys the cleanup reads are checked (as Kratos's
/// `cleanup sql` skips validation), so a DSN and nothing else will do. A
/// value elsewhere that does not parse is left at its default.
pub fn load_for_cleanup(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    /// The keys whose values the cleanup uses as written.
    const READ: [&str; 3] = ["dsn", "database.cleanup", "selfservice.methods.code.config.failure_window"];
    let mut merged = merged_files(files)?;
    apply_env(&mut merged, env)?;
    loop {
        let mut track = serde_path_to_error::Track::new();
        let de = serde_path_to_error::Deserializer::new(&merged, &mut track);
        let error = match serde_ignored::deserialize::<_, _, Config>(de, |_| {}) {
            Ok(config) => {
                validate_cleanup(&config)?;
                return Ok(config);
            }
            Err(error) => error,
        };
        let path = track.path();
        let key = key_of(&path);
        let overlaps = |read: &str| {
            read == key || read.starts_with(&format!("{key}.")) || key.starts_with(&format!("{read}."))
        };
        // Each pass removes a value, so this ends.
        if key == "." || READ.into_iter().any(overlaps) || !remove(&mut merged, &path) {
            return Err(invalid(&key, error.to_string()));
        }
    }
}

/// A serde path as the key it names, list items by index as validation
/// names them (`serve.public.trusted_proxies.1`).
fn key_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let segments = path.iter().map(|segment| match segment {
        Segment::Seq { index } => index.to_string(),
        Segment::Map { key } => key.clone(),
        Segment::Enum { variant } => variant.clone(),
        Segment::Unknown => "?".to_string(),
    });
    let key = segments.collect::<Vec<_>>().join(".");
    if key.is_empty() { ".".to_string() } else { key }
}

/// Removes the value `path` leads to; false when there is none.
fn remove(root: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else { return false };
    let mut node = root;
    for segment in parents {
        let next = match (node, segment) {
            (Value::Object(map), Segment::Map { key }) => map.get_mut(key),
            (Value::Array(items), Segment::Seq { index }) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return false };
        node = next;
    }
    match (node, last) {
        (Value::Object(map), Segment::Map { key }) => map.remove(key).is_some(),
        (Value::Array(items), Segment::Seq { index }) if *index < items.len() => {
            items.remove(*index);
            true
        }
        _ => false,
    }
}

/// Reads `files` in order, applies environment overrides from `env`, then
/// `dev`, and validates the result.
pub fn load(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
    dev: bool,
) -> Result<Loaded, ConfigError> {
    finish_load(merged_files(files)?, env, dev)
}

/// [`load`] for one file's text, touching no file (relative schema URLs
/// stay as written). Public for the fuzz targets.
#[doc(hidden)]
pub fn load_str(
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
    dev: bool,
) -> Result<Loaded, ConfigError> {
    finish_load(parse_yaml(text, Path::new("<string>"))?, env, dev)
}

fn finish_load(
    mut merged: Value,
    env: impl IntoIterator<Item = (String, String)>,
    dev: bool,
) -> Result<Loaded, ConfigError> {
    let env: Vec<(String, String)> = env.into_iter().collect();
    let api_flows_open =
        dev && env.iter().any(|(name, value)| name == "DEV_DISABLE_API_FLOW_ENFORCEMENT" && value == "true");
    apply_env(&mut merged, env)?;
    if dev {
        merged.as_object_mut().expect("merged config is an object").insert("dev".into(), Value::Bool(true));
    }

    let mut ignored = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(merged, &mut track);
    let config: Config = serde_ignored::deserialize(de, |path| ignored.push(keys::segments(&path)))
        .map_err(|e| invalid(&key_of(&track.path()), e.to_string()))?;
    let mut unsupported = Vec::new();
    let mut unknown = Vec::new();
    for path in ignored {
        match keys::classify(&path) {
            Ignored::Unsupported(key) => unsupported.push(key),
            Ignored::Unknown { key, suggestion } => unknown.push(UnknownKey { key, suggestion }),
        }
    }
    if !unknown.is_empty() {
        return Err(ConfigError::UnknownKeys(unknown));
    }
    let notices = validate(&config)?;
    // Any style is accepted, as in Kratos; only `unified` is built.
    if config.selfservice.flows.login.style != "unified" {
        unsupported.push(format!("selfservice.flows.login.style={}", config.selfservice.flows.login.style));
    }
    for (path, after) in [
        ("selfservice.flows.login.after", &config.selfservice.flows.login.after),
        ("selfservice.flows.registration.after", &config.selfservice.flows.registration.after),
        ("selfservice.flows.settings.after", &config.selfservice.flows.settings.after),
        ("selfservice.flows.recovery.after", &config.selfservice.flows.recovery.after),
        ("selfservice.flows.verification.after", &config.selfservice.flows.verification.after),
    ] {
        let methods = [
            ("", &after.hooks),
            (".password", &after.password.hooks),
            (".code", &after.code.hooks),
            (".profile", &after.profile.hooks),
        ];
        for (method, hooks) in methods {
            for hook in hooks.iter().filter(|h| !SUPPORTED_HOOKS.contains(&h.hook.as_str())) {
                unsupported.push(format!("{path}{method}.hooks[{}]", hook.hook));
            }
        }
    }
    let mut config = config;
    config.disable_api_flow_enforcement = api_flows_open;
    apply_defaults(&mut config, &notices);
    Ok(Loaded { config, unsupported_keys: unsupported, notices })
}

/// Relative `file://` schema URLs are taken relative to the config file when
/// the file is there, so a config and its schema can travel together;
/// otherwise relative to the working directory, as Kratos does.
fn resolve_relative_schema_urls(mut value: Value, dir: &Path) -> Value {
    if let Some(schemas) = value.pointer_mut("/identity/schemas").and_then(Value::as_array_mut) {
        for entry in schemas {
            if let Some(Value::String(url)) = entry.get_mut("url")
                && let Some(rest) = url.strip_prefix("file://")
                && !rest.starts_with('/')
            {
                let beside = dir.join(rest.strip_prefix("./").unwrap_or(rest));
                if beside.exists() {
                    *url = format!("file://{}", beside.display());
                }
            }
        }
    }
    value
}

/// Objects merge key by key; anything else is replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        a.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// Every key path Latchkey understands, with its default, for env lookups.
fn known_leaves() -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&path, v, out);
                }
            }
            other => out.push((prefix.to_string(), other.clone())),
        }
    }
    let mut out = Vec::new();
    let defaults = serde_json::to_value(Config::default()).expect("defaults serialise");
    walk("", &defaults, &mut out);
    out
}

/// `SERVE_PUBLIC_PORT=4433` sets `serve.public.port`. Values are read as the
/// key's type: numbers and booleans parsed, lists as JSON arrays or
/// comma-separated.
fn apply_env(merged: &mut Value, env: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
    let leaves = known_leaves();
    for (name, raw) in env {
        let Some((path, default)) = leaves.iter().find(|(p, _)| p.to_uppercase().replace('.', "_") == name)
        else {
            continue;
        };
        let value = match default {
            Value::Array(_) => {
                if raw.trim_start().starts_with('[') {
                    serde_json::from_str(&raw)
                        .map_err(|e| invalid(path, format!("expected a JSON array: {e}")))?
                } else {
                    Value::Array(raw.split(',').map(|s| Value::String(s.trim().to_string())).collect())
                }
            }
            Value::Bool(_) => match raw.as_str() {
                "true" | "1" => Value::Bool(true),
                "false" | "0" => Value::Bool(false),
                _ => return Err(invalid(path, format!("expected true or false, got `{raw}`"))),
            },
            Value::Number(_) | Value::Null => match (raw.parse::<i64>(), raw.parse::<f64>()) {
                (Ok(n), _) => Value::from(n),
                (_, Ok(f)) if f.is_finite() => Value::from(f),
                _ => Value::String(raw),
            },
            _ => Value::String(raw),
        };
        set_path(merged, path, value);
    }
    Ok(())
}

fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    let mut parts = path.split('.').peekable();
    while let Some(part) = parts.next() {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let map = node.as_object_mut().expect("just made an object");
        if parts.peek().is_none() {
            map.insert(part.to_string(), value);
            return;
        }
        node = map.entry(part.to_string()).or_insert_with(|| Value::Object(Map::new()));
    }
}

fn apply_defaults(config: &mut Config, notices: &[String]) {
    if !notices.is_empty() && config.hashers.bcrypt.cost < 12 && !config.dev {
        config.hashers.bcrypt.cost = 12;
    }
    for (listener, default_port) in [(&mut config.serve.public, 4433), (&mut config.serve.admin, 4434)] {
        if listener.host.is_empty() {
            listener.host = "127.0.0.1".into();
        }
        listener.port.get_or_insert(default_port);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{MINIMAL, write};
    use super::*;
    use crate::config::{HashAlgorithm, LogLevel};

    #[test]
    fn later_files_and_env_override_earlier_values() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.json", "{}");
        let a = write(dir.path(), "a.yml", MINIMAL);
        let b = write(dir.path(), "b.yml", "serve:\n  public:\n    port: 5000\n");
        let env = vec![
            ("SERVE_ADMIN_PORT".to_string(), "6000".to_string()),
            ("DSN".to_string(), "sqlite:///tmp/x.db".to_string()),
            ("SECRETS_COOKIE".to_string(), "aaaaaaaaaaaaaaaa,bbbbbbbbbbbbbbbb".to_string()),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        let loaded = load(&[a, b], env, false).unwrap();
        let c = loaded.config;
        assert_eq!(c.serve.public.port, Some(5000));
        assert_eq!(c.serve.admin.port, Some(6000));
        assert_eq!(c.dsn, "sqlite:///tmp/x.db");
        assert_eq!(c.secrets.cookie.len(), 2);
        let url = &c.identity.schemas[0].url;
        assert!(url.starts_with("file:///") && url.ends_with("/s.json"), "{url}");
    }

    #[test]
    fn sign_up_by_code_is_off_unless_turned_on_and_has_its_own_hooks() {
        let c = load_str(MINIMAL, Vec::new(), false).unwrap().config;
        assert!(c.selfservice.methods.code.enabled && !c.selfservice.methods.code.passwordless_enabled);
        let env = vec![("SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED".to_string(), "true".to_string())];
        assert!(load_str(MINIMAL, env, false).unwrap().config.selfservice.methods.code.passwordless_enabled);
        let file = format!(
            "{MINIMAL}selfservice:\n  flows:\n    registration:\n      after:\n        hooks:\n          - hook: web_hook\n        code:\n          hooks:\n            - hook: session\n"
        );
        let loaded = load_str(&file, Vec::new(), false).unwrap();
        assert!(
            loaded.unsupported_keys.iter().all(|k| !k.contains("after.code")),
            "{:?}",
            loaded.unsupported_keys
        );
        let after = &loaded.config.selfservice.flows.registration.after;
        assert_eq!(after.code_hooks().collect::<Vec<_>>(), ["session"]);
        assert_eq!(after.password_hooks().collect::<Vec<_>>(), ["web_hook"], "the defaults for the rest");
    }

    #[test]
    fn the_pages_are_off_unless_turned_on() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        assert!(!load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.ui.enabled);
        let env = vec![("UI_ENABLED".to_string(), "true".to_string())];
        assert!(load(&[a], env, false).unwrap().config.ui.enabled);
    }

    #[test]
    fn cleanup_needs_no_more_configuration_than_a_dsn() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", "dsn: memory\nselfservice:\n  flows:\n    nonsense: 1\n");
        let config = load_for_cleanup(
            std::slice::from_ref(&a),
            vec![("DATABASE_CLEANUP_BATCH_SIZE".into(), "5".into())],
        )
        .unwrap();
        assert_eq!((config.dsn.as_str(), config.database.cleanup.batch_size), ("memory", 5));
        assert!(load_for_cleanup(&[], Vec::new()).is_ok());
        // Values `serve` would refuse, elsewhere than the cleanup's keys, are left at their defaults.
        let b = write(
            dir.path(),
            "b.yml",
            "selfservice:\n  flows:\n    recovery:\n      use: link\n      lifespan: soon\n\
             security:\n  login_throttling:\n    ip:\n      window: 48x\n",
        );
        let config = load_for_cleanup(&[a.clone(), b.clone()], Vec::new()).unwrap();
        assert_eq!(config.cleanup_settings(None).rate_window, chrono::Duration::hours(24));
        let err = load(&[a.clone(), b], Vec::new(), false).unwrap_err().to_string();
        assert!(err.contains("`security.login_throttling.ip.window`"), "{err}");
        let env = vec![("SELFSERVICE_METHODS_CODE_CONFIG_FAILURE_WINDOW".into(), "soon".into())];
        let err = load_for_cleanup(std::slice::from_ref(&a), env).unwrap_err();
        assert!(err.to_string().contains("selfservice.methods.code.config.failure_window"), "{err}");
        let c = write(dir.path(), "c.yml", "database: 5\n");
        assert!(load_for_cleanup(&[a, c], Vec::new()).unwrap_err().to_string().contains("`database`"));
    }

    /// Environment overrides are matched against the serialised defaults,
    /// so every typed value must serialise to a form it reads back.
    #[test]
    fn defaults_serialise_to_what_they_read_back_and_env_sets_typed_values() {
        let defaults = serde_json::to_value(Config::default()).unwrap();
        let again =
            serde_json::to_value(serde_json::from_value::<Config>(defaults.clone()).unwrap()).unwrap();
        assert_eq!(defaults, again);
        assert_eq!(defaults.pointer("/selfservice/flows/login/lifespan"), Some(&Value::from("1h")));
        assert_eq!(defaults.pointer("/hashers/argon2/memory"), Some(&Value::from("128MB")));
        assert_eq!(defaults.pointer("/cookies/same_site"), Some(&Value::from("Lax")));
        // Kratos's default for both AAL requirements.
        assert_eq!(defaults.pointer("/session/whoami/required_aal"), Some(&Value::from("highest_available")));
        assert_eq!(
            defaults.pointer("/selfservice/flows/settings/required_aal"),
            Some(&Value::from("highest_available"))
        );
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let env = env(&[
            ("SELFSERVICE_FLOWS_LOGIN_LIFESPAN", "720h"),
            ("SESSION_EARLIEST_POSSIBLE_EXTEND", "100ms"),
            ("SESSION_COOKIE_SAME_SITE", "Strict"),
            ("SELFSERVICE_FLOWS_REGISTRATION_STYLE", "unified"),
            ("HASHERS_ARGON2_MEMORY", "64MB"),
            ("TRACING_PROVIDER", "otel"),
            ("TRACING_PROVIDERS_OTLP_SERVER_URL", "c:4318"),
            ("SESSION_WHOAMI_REQUIRED_AAL", "aal1"),
        ]);
        let c = load_str(super::super::testing::MINIMAL, env, false).unwrap().config;
        assert_eq!(c.selfservice.flows.login.lifespan.std(), std::time::Duration::from_secs(720 * 3600));
        assert_eq!(
            c.session.earliest_possible_extend.map(|d| d.std()),
            Some(std::time::Duration::from_millis(100))
        );
        assert_eq!(c.session.cookie.same_site, Some(super::super::SameSite::Strict));
        assert_eq!(c.selfservice.flows.registration.style, super::super::RegistrationStyle::Unified);
        assert_eq!(c.hashers.argon2.memory.bytes(), 64 << 20);
        assert!(c.tracing.exports());
        assert_eq!(c.session.whoami.required_aal, super::super::RequiredAal::Aal1);
        for (name, value, key) in [
            ("SELFSERVICE_FLOWS_LOGIN_LIFESPAN", "soon", "selfservice.flows.login.lifespan"),
            ("SESSION_EARLIEST_POSSIBLE_EXTEND", "5", "session.earliest_possible_extend"),
            ("COOKIES_SAME_SITE", "lax", "cookies.same_site"),
            ("SELFSERVICE_FLOWS_RECOVERY_USE", "link", "selfservice.flows.recovery.use"),
            ("COURIER_DELIVERY_STRATEGY", "http", "courier.delivery_strategy"),
            ("SELFSERVICE_FLOWS_SETTINGS_REQUIRED_AAL", "aal2", "selfservice.flows.settings.required_aal"),
            ("SESSION_WHOAMI_REQUIRED_AAL", "aal2", "session.whoami.required_aal"),
            ("HASHERS_ARGON2_DEDICATED_MEMORY", "lots", "hashers.argon2.dedicated_memory"),
        ] {
            let env = vec![(name.to_string(), value.to_string())];
            let err = load_str(super::super::testing::MINIMAL, env, false).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{err}");
        }
    }

    #[test]
    fn unsupported_keys_are_collected_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.yml",
            &format!(
                "{MINIMAL}courier:\n  channels: []\nselfservice:\n  methods:\n    webauthn:\n      enabled: true\n"
            ),
        );
        let loaded = load(&[a], Vec::new(), false).unwrap();
        assert_eq!(loaded.unsupported_keys, vec!["courier.channels", "selfservice.methods.webauthn"]);
    }

    #[test]
    fn unknown_keys_stop_the_load_naming_the_key_meant() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.yml",
            &format!(
                "{MINIMAL}selfservce:\n  flows: {{}}\nhashers:\n  argon2:\n    memroy: 64MB\nserve:\n  public:\n    prot: 80\n"
            ),
        );
        let error = load(&[a], Vec::new(), false).unwrap_err().to_string();
        for part in [
            "`selfservce` (did you mean `selfservice`?)",
            "`hashers.argon2.memroy` (did you mean `hashers.argon2.memory`?)",
            "`serve.public.prot` (did you mean `serve.public.port`?)",
        ] {
            assert!(error.contains(part), "{error}");
        }
        // The shipped files name only keys Latchkey reads (the Elements file is layered on the quickstart's).
        let contrib = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib");
        let quickstart = contrib.join("quickstart/latchkey.yml");
        for files in [vec![quickstart.clone()], vec![quickstart, contrib.join("elements/latchkey.yml")]] {
            let loaded = load(&files, vec![("DSN".into(), "memory".into())], true).unwrap();
            assert!(loaded.unsupported_keys.is_empty(), "{files:?}: {:?}", loaded.unsupported_keys);
        }
    }

    #[test]
    fn invalid_values_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let err = load(std::slice::from_ref(&a), vec![("SERVE_PUBLIC_PORT".into(), "http".into())], false)
            .unwrap_err();
        assert!(err.to_string().contains("serve.public.port"), "{err}");
        let b = write(dir.path(), "b.yml", "secrets:\n  cipher: [short]\n");
        let err = load(&[a.clone(), b], Vec::new(), false).unwrap_err();
        assert!(err.to_string().contains("secrets.cipher.0"), "{err}");
        let c = write(dir.path(), "c.yml", "hashers:\n  algorithm: md5\n");
        let err = load(&[a.clone(), c], Vec::new(), false).unwrap_err();
        assert!(err.to_string().contains("hashers.algorithm"), "{err}");
        // A lifespan past Go's limit would overflow every expiry computed from it.
        let d = write(dir.path(), "d.yml", "session:\n  lifespan: 99999999999h\n");
        let err = load(&[a.clone(), d], Vec::new(), false).unwrap_err();
        assert!(err.to_string().contains("session.lifespan"), "{err}");
        // A level the log cannot use would hide every line, "ready" included.
        let e = write(dir.path(), "e.yml", "log:\n  level: infoo\n");
        let err = load(&[a.clone(), e], Vec::new(), false).unwrap_err().to_string();
        assert!(err.contains("log.level") && err.contains("infoo") && err.contains("warning"), "{err}");
        let err =
            load(std::slice::from_ref(&a), vec![("LOG_LEVEL".into(), "loud".into())], false).unwrap_err();
        assert!(err.to_string().contains("log.level"), "{err}");
        // The natural spellings are taken.
        let f = write(dir.path(), "f.yml", "log:\n  level: warn\nhashers:\n  algorithm: argon2id\n");
        let loaded = load(&[a, f], Vec::new(), false).unwrap();
        assert_eq!(loaded.config.log.level, LogLevel::Warning);
        assert_eq!(loaded.config.hashers.algorithm, HashAlgorithm::Argon2);
    }

    #[test]
    fn otel_tracing_is_accepted_with_ory_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let b = write(
            dir.path(),
            "b.yml",
            "tracing:\n  provider: otel\n  providers:\n    otlp:\n      server_url: localhost:4318\n      \
             authorization_header: Bearer s3cret-token\n",
        );
        let loaded = load(&[a.clone(), b.clone()], Vec::new(), false).unwrap();
        assert!(loaded.unsupported_keys.is_empty(), "{:?}", loaded.unsupported_keys);
        let tracing = &loaded.config.tracing;
        assert!(tracing.exports());
        assert_eq!(tracing.service_name(), "latchkey");
        assert_eq!(tracing.providers.otlp.sampling.sampling_ratio, 1.0);
        assert_eq!(tracing.otlp_endpoint(), "https://localhost:4318/v1/traces");
        let debug = format!("{:?}", loaded.config);
        assert!(!debug.contains("s3cret-token") && debug.contains("[REDACTED]"), "{debug}");

        let env = vec![
            ("TRACING_PROVIDERS_OTLP_INSECURE".into(), "true".into()),
            ("TRACING_PROVIDERS_OTLP_SAMPLING_SAMPLING_RATIO".into(), "0.25".into()),
            ("TRACING_SERVICE_NAME".into(), "auth".into()),
        ];
        let tracing = load(&[a.clone(), b], env, false).unwrap().config.tracing;
        assert_eq!(tracing.otlp_endpoint(), "http://localhost:4318/v1/traces");
        assert_eq!(tracing.providers.otlp.sampling.sampling_ratio, 0.25);
        assert_eq!(tracing.service_name(), "auth");

        // Without a provider nothing is exported, and another provider's block is only unsupported.
        let c = write(
            dir.path(),
            "c.yml",
            "tracing:\n  providers:\n    jaeger:\n      local_agent_address: a:6831\n",
        );
        let loaded = load(&[a, c], Vec::new(), false).unwrap();
        assert!(!loaded.config.tracing.exports());
        assert_eq!(loaded.unsupported_keys, vec!["tracing.providers.jaeger"]);
    }

    #[test]
    fn api_flow_enforcement_is_disabled_only_in_dev_with_the_variable() {
        let env = |value: &str| vec![("DEV_DISABLE_API_FLOW_ENFORCEMENT".to_string(), value.to_string())];
        let open = |env, dev| load_str(MINIMAL, env, dev).unwrap().config.disable_api_flow_enforcement;
        assert!(open(env("true"), true));
        assert!(!open(env("true"), false), "never without --dev");
        assert!(!open(env("1"), true), "only `true`, as Kratos reads it");
        assert!(!open(Vec::new(), true));
    }

    #[test]
    fn low_bcrypt_cost_is_raised_unless_dev() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", &format!("{MINIMAL}hashers:\n  bcrypt:\n    cost: 8\n"));
        assert_eq!(load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.hashers.bcrypt.cost, 12);
        assert_eq!(load(&[a], Vec::new(), true).unwrap().config.hashers.bcrypt.cost, 8);
    }
}
