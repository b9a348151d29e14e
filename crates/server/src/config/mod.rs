//! Configuration the Kratos way: YAML files with Kratos's key names, later
//! files overriding earlier ones, then environment variables named after the
//! key path (`serve.public.port` → `SERVE_PUBLIC_PORT`). Keys for features
//! not built yet are reported in one warning; invalid values stop the start
//! with the key and what was expected.
//!
//! `model` holds the types and their defaults, with durations, sizes and
//! choices typed so they are parsed once, when loaded; `loading` reads
//! files and the environment; `validation` checks what the types cannot.

mod keys;
mod loading;
mod model;
mod redact;
pub mod reference;
mod validation;
mod values;

use latchkey_domain::cleanup::CleanupSettings;
use serde::{Deserialize, Serialize};

pub use loading::{Loaded, load, load_for_cleanup, load_str, read_dsn};
pub use model::*;
pub use redact::redact_dsn;
pub use values::{ByteSize, Duration, TrustedNetwork};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {path}: {source}")]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {reason}")]
    Yaml { path: std::path::PathBuf, reason: String },
    #[error("invalid configuration value at `{key}`: {reason}")]
    Invalid { key: String, reason: String },
    #[error("{}", unknown_keys_message(.0))]
    UnknownKeys(Vec<UnknownKey>),
}

/// A key neither Latchkey nor Kratos has, and the known key it may mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    pub key: String,
    pub suggestion: Option<String>,
}

fn unknown_keys_message(keys: &[UnknownKey]) -> String {
    let named: Vec<String> = keys
        .iter()
        .map(|k| match &k.suggestion {
            Some(meant) => format!("`{}` (did you mean `{meant}`?)", k.key),
            None => format!("`{}`", k.key),
        })
        .collect();
    let noun = if keys.len() == 1 { "key" } else { "keys" };
    format!(
        "unknown configuration {noun} {}: neither Latchkey nor Ory Kratos has {}; \
         check the spelling and the indentation",
        named.join(", "),
        if keys.len() == 1 { "it" } else { "them" }
    )
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), reason: reason.into() }
}

/// The subset of Kratos's configuration Latchkey implements so far.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Config {
    /// Where data lives: `memory`, `sqlite://PATH` or `postgres://…`.
    pub dsn: String,
    /// Set by `--dev`: relaxed cookies, courier bodies shown, low bcrypt cost allowed.
    pub dev: bool,
    /// `DEV_DISABLE_API_FLOW_ENFORCEMENT=true` with `--dev` (as Kratos): API
    /// flows accept requests that carry an `Origin` or cookies, so a native
    /// app running in a browser during development can use them. Never set
    /// without `--dev`, and not a configuration key.
    #[serde(skip)]
    pub disable_api_flow_enforcement: bool,
    pub version: Option<String>,
    /// Kratos's key: a label for this configuration, answered by
    /// `GET /admin/health/config` (so a deploy can tell when it is live).
    pub revision: Option<String>,
    pub serve: Serve,
    pub log: Log,
    pub secrets: Secrets,
    pub hashers: Hashers,
    pub identity: IdentityConfig,
    pub selfservice: SelfService,
    pub session: SessionConfig,
    pub cookies: Cookies,
    pub courier: CourierConfig,
    pub database: DatabaseConfig,
    pub feature_flags: FeatureFlags,
    pub security: Security,
    pub tracing: TracingConfig,
    pub ui: UiConfig,
}

impl Config {
    /// The DSN with any password replaced, for logs and errors.
    pub fn redacted_dsn(&self) -> String {
        redact_dsn(&self.dsn)
    }

    /// The courier's retry policy.
    pub fn retry_policy(&self) -> latchkey_domain::courier::RetryPolicy {
        let c = &self.courier;
        latchkey_domain::courier::RetryPolicy {
            initial_backoff: c.backoff.initial.std(),
            max_backoff: c.backoff.max.std(),
            horizon: c.delivery_horizon.chrono(),
            max_attempts: c.message_retries.map(|retries| retries.saturating_add(1)),
        }
    }

    /// The cleanup `database.cleanup` and the limits' windows describe;
    /// `keep_last` (the CLI's `--keep-last`) overrides `older_than`.
    pub fn cleanup_settings(&self, keep_last: Option<std::time::Duration>) -> CleanupSettings {
        let cleanup = &self.database.cleanup;
        let chrono = |d: std::time::Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        CleanupSettings {
            batch_size: cleanup.batch_size.max(1),
            sleep_tables: cleanup.sleep.tables.std(),
            keep_last: keep_last.map_or_else(|| cleanup.older_than.chrono(), chrono),
            code_failure_window: self.selfservice.methods.code.config.failure_window.chrono(),
            rate_window: self.longest_rate_window().chrono(),
        }
    }

    /// The second-factor methods switched on, by key name; they need
    /// `secrets.cipher`.
    pub fn second_factor_methods(&self) -> impl Iterator<Item = &'static str> {
        let methods = &self.selfservice.methods;
        [("totp", methods.totp.enabled), ("lookup_secret", methods.lookup_secret.enabled)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
    }

    /// The TOTP issuer: `selfservice.methods.totp.config.issuer`, else (as
    /// Kratos) the host of the public base URL `public_base`.
    pub fn totp_issuer(&self, public_base: &str) -> String {
        if let Some(issuer) = self.selfservice.methods.totp.config.issuer.as_deref().filter(|i| !i.is_empty())
        {
            return issuer.to_string();
        }
        let authority = public_base.split_once("://").map_or(public_base, |(_, rest)| rest);
        let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host_port.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => host_port.split(':').next().unwrap_or_default(),
        };
        host.to_string()
    }

    /// How often `serve` runs the cleanup; `None` when `interval` is zero.
    pub fn cleanup_interval(&self) -> Option<std::time::Duration> {
        Some(self.database.cleanup.interval).filter(|d| !d.is_zero()).map(Duration::std)
    }

    /// How long `rate_events` rows are kept at least: the longest window any
    /// rate limit counts them in, and never less than
    /// [`RATE_EVENTS_KEPT_AT_LEAST`]. Every limit that records rate events
    /// lists its window here, so the cleanup never deletes an event a limit
    /// still counts.
    pub fn longest_rate_window(&self) -> Duration {
        let throttling = &self.security.login_throttling;
        [
            self.security.send_limits.address.window,
            throttling.identifier.window,
            throttling.identifier_per_ip.window,
            throttling.ip.window,
        ]
        .into_iter()
        .fold(RATE_EVENTS_KEPT_AT_LEAST, Duration::max)
    }
}

/// Rate events are kept at least this long, whatever the windows: a window
/// raised (up to a day) keeps its history, and a limit with a window of up
/// to a day that is missing from [`Config::longest_rate_window`] still
/// keeps its counts.
pub const RATE_EVENTS_KEPT_AT_LEAST: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
pub(crate) mod testing {
    use std::path::{Path, PathBuf};

    pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    pub const MINIMAL: &str =
        "dsn: memory\nidentity:\n  schemas:\n    - id: default\n      url: file://./s.json\n";
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::testing::{MINIMAL, write};
    use super::*;

    #[test]
    fn database_cleanup_is_on_by_default_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let config = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config;
        assert_eq!(config.cleanup_interval(), Some(Duration::from_secs(3600)));
        let settings = config.cleanup_settings(None);
        assert_eq!((settings.batch_size, settings.sleep_tables), (100, Duration::from_secs(60)));
        assert_eq!(settings.keep_last, chrono::Duration::hours(24));
        assert_eq!(settings.code_failure_window, chrono::Duration::hours(24));
        assert_eq!(settings.rate_window, chrono::Duration::hours(24));
        // `--keep-last` wins over older_than.
        let settings = config.cleanup_settings(Some(Duration::ZERO));
        assert_eq!(settings.keep_last, chrono::Duration::zero());

        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let off = load(std::slice::from_ref(&a), env("DATABASE_CLEANUP_INTERVAL", "0s"), false).unwrap();
        assert_eq!(off.config.cleanup_interval(), None);
        let b = write(dir.path(), "b.yml", "database:\n  cleanup:\n    batch_size: 7\n    older_than: 90m\n");
        let settings = load(&[a.clone(), b], Vec::new(), false).unwrap().config.cleanup_settings(None);
        assert_eq!((settings.batch_size, settings.keep_last), (7, chrono::Duration::minutes(90)));
        for (name, value, key) in [
            ("DATABASE_CLEANUP_BATCH_SIZE", "0", "database.cleanup.batch_size"),
            ("DATABASE_CLEANUP_OLDER_THAN", "soon", "database.cleanup.older_than"),
            ("DATABASE_CLEANUP_SLEEP_TABLES", "1x", "database.cleanup.sleep.tables"),
            ("DATABASE_CLEANUP_INTERVAL", "often", "database.cleanup.interval"),
        ] {
            let err = load(std::slice::from_ref(&a), env(name, value), false).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
            let err = load_for_cleanup(std::slice::from_ref(&a), env(name, value)).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn courier_retries_until_the_deadline_unless_message_retries_is_set() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let policy = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.retry_policy();
        assert_eq!(policy.max_attempts, None, "no default count loses mail to an outage");
        assert_eq!(policy.horizon, chrono::Duration::hours(24));
        assert_eq!(
            (policy.initial_backoff, policy.max_backoff),
            (Duration::from_secs(1), Duration::from_secs(600))
        );
        let env = vec![
            ("COURIER_MESSAGE_RETRIES".to_string(), "5".to_string()),
            ("COURIER_DELIVERY_HORIZON".to_string(), "2h".to_string()),
            ("COURIER_BACKOFF_INITIAL".to_string(), "250ms".to_string()),
            ("COURIER_BACKOFF_MAX".to_string(), "1m".to_string()),
        ];
        let policy = load(std::slice::from_ref(&a), env, false).unwrap().config.retry_policy();
        assert_eq!(policy.max_attempts, Some(6), "an explicit Kratos value is honoured: 5 retries");
        assert_eq!(policy.horizon, chrono::Duration::hours(2));
        assert_eq!(
            (policy.initial_backoff, policy.max_backoff),
            (Duration::from_millis(250), Duration::from_secs(60))
        );
        for (name, value, key) in [
            ("COURIER_MESSAGE_RETRIES", "-1", "courier.message_retries"),
            ("COURIER_DELIVERY_HORIZON", "0s", "courier.delivery_horizon"),
            ("COURIER_BACKOFF_INITIAL", "soon", "courier.backoff.initial"),
            ("COURIER_BACKOFF_MAX", "10ms", "courier.backoff.max"),
        ] {
            let err = load(std::slice::from_ref(&a), vec![(name.to_string(), value.to_string())], false)
                .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn second_factors_are_off_by_default_and_need_a_cipher_secret() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let loaded = load(std::slice::from_ref(&a), Vec::new(), false).unwrap();
        assert_eq!(loaded.config.second_factor_methods().count(), 0);
        assert_eq!(loaded.config.totp_issuer("https://id.example.com:8443/base/"), "id.example.com");
        assert_eq!(loaded.config.totp_issuer("http://[::1]:4433/"), "::1");

        let env = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
        };
        for key in ["SELFSERVICE_METHODS_TOTP_ENABLED", "SELFSERVICE_METHODS_LOOKUP_SECRET_ENABLED"] {
            let err = load(std::slice::from_ref(&a), env(&[(key, "true")]), false).unwrap_err().to_string();
            assert!(err.contains("`secrets.cipher`") && err.contains("32-character"), "{err}");
        }
        let on = load(
            std::slice::from_ref(&a),
            env(&[
                ("SELFSERVICE_METHODS_TOTP_ENABLED", "true"),
                ("SELFSERVICE_METHODS_TOTP_CONFIG_ISSUER", "Example Accounts"),
                ("SELFSERVICE_METHODS_LOOKUP_SECRET_ENABLED", "true"),
                ("SECRETS_CIPHER", "0123456789abcdef0123456789abcdef"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(on.config.second_factor_methods().collect::<Vec<_>>(), ["totp", "lookup_secret"]);
        assert_eq!(on.config.totp_issuer("https://id.example.com/"), "Example Accounts");
        // Implemented keys, so no longer named in the start-up warning.
        let b = write(
            dir.path(),
            "b.yml",
            "selfservice:\n  methods:\n    totp:\n      enabled: false\n      config:\n        issuer: X\n    \
             lookup_secret:\n      enabled: false\n",
        );
        let loaded = load(&[a, b], Vec::new(), false).unwrap();
        assert!(loaded.unsupported_keys.is_empty(), "{:?}", loaded.unsupported_keys);
    }
}
