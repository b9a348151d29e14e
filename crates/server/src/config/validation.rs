//! Checks on the loaded configuration that its types cannot express:
//! ranges, positive durations, lengths, and how values fit together.

use super::{Config, ConfigError, Cors, Duration, HashAlgorithm, TracingConfig, invalid};

/// Checks `tracing`'s OTLP settings, and those needed to export when it does.
fn validate_tracing(tracing: &TracingConfig) -> Result<(), ConfigError> {
    let otlp = &tracing.providers.otlp;
    let ratio = otlp.sampling.sampling_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(invalid(
            "tracing.providers.otlp.sampling.sampling_ratio",
            format!("expected a number from 0 to 1, got {ratio}"),
        ));
    }
    if !otlp.authorization_header.is_empty()
        && axum::http::HeaderValue::from_str(&otlp.authorization_header).is_err()
    {
        // The value is a credential: not repeated here.
        return Err(invalid(
            "tracing.providers.otlp.authorization_header",
            "expected visible ASCII (a header value such as `Bearer …`)",
        ));
    }
    if !tracing.exports() {
        return Ok(());
    }
    let url = otlp.server_url.trim();
    if url.is_empty() {
        return Err(invalid(
            "tracing.providers.otlp.server_url",
            "required with tracing.provider `otel`: the collector's host:port, e.g. localhost:4318",
        ));
    }
    let authority = url.parse::<axum::http::uri::Authority>().ok();
    if url.contains("://") || url.contains('@') || authority.and_then(|a| a.port_u16()).is_none() {
        return Err(invalid(
            "tracing.providers.otlp.server_url",
            format!(
                "expected host:port such as localhost:4318 (no scheme or path; \
                 insecure: true selects http), got `{url}`"
            ),
        ));
    }
    Ok(())
}

/// Checks what serde's types cannot; returns notices for values it adjusts.
pub(super) fn validate(config: &Config) -> Result<Vec<String>, ConfigError> {
    let mut notices = Vec::new();
    if config.dsn.trim().is_empty() {
        return Err(invalid(
            "dsn",
            "a DSN is required, e.g. `memory`, `sqlite:///var/lib/latchkey/db.sqlite` or `postgres://user@host/db`",
        ));
    }
    for (key, listener) in [("serve.public", &config.serve.public), ("serve.admin", &config.serve.admin)] {
        let url = &listener.base_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid(&format!("{key}.base_url"), "expected an http:// or https:// URL"));
        }
    }
    let limits = &config.serve.limits;
    for (key, value) in [
        ("serve.limits.header_read_timeout", limits.header_read_timeout),
        ("serve.limits.body_read_timeout", limits.body_read_timeout),
        ("serve.limits.idle_timeout", limits.idle_timeout),
    ] {
        positive(key, value, "10s")?;
    }
    if limits.max_connections == 0 {
        return Err(invalid("serve.limits.max_connections", "expected an integer of at least 1"));
    }
    validate_tracing(&config.tracing)?;
    if config.serve.admin.cors != Cors::default() {
        return Err(invalid("serve.admin.cors", "CORS applies to the public API only (serve.public.cors)"));
    }
    latchkey_http::cors_layer(&config.serve.public.cors.settings()).map_err(|e| {
        let key = match e.index {
            Some(i) => format!("serve.public.cors.{}.{i}", e.key),
            None => format!("serve.public.cors.{}", e.key),
        };
        invalid(&key, e.reason)
    })?;
    for (i, secret) in config.secrets.cipher.iter().enumerate() {
        if secret.chars().count() != 32 {
            return Err(invalid(
                &format!("secrets.cipher.{i}"),
                "each cipher secret must be exactly 32 characters long",
            ));
        }
    }
    // Second-factor secrets are sealed with secrets.cipher. Deriving a key from
    // secrets.default instead would tie them to a secret rotated for other
    // reasons (Kratos makes one up at random when it is unset), and every
    // rotation would silently lock users out of their second factor; Kratos
    // too demands secrets.cipher for encryption.
    if let Some(method) = config.second_factor_methods().next()
        && config.secrets.cipher.is_empty()
    {
        return Err(invalid(
            "secrets.cipher",
            format!(
                "required when selfservice.methods.{method}.enabled is true: TOTP keys and backup codes \
                 are stored encrypted with it (a list of 32-character secrets; the first encrypts)"
            ),
        ));
    }
    let code = &config.selfservice.methods.code;
    if code.passwordless_enabled && code.mfa_enabled {
        return Err(invalid(
            "selfservice.methods.code.mfa_enabled",
            "the code method signs in either without a password (passwordless_enabled) or as a second \
             factor (mfa_enabled), not both",
        ));
    }
    for (key, list) in [
        ("secrets.default", &config.secrets.default),
        ("secrets.cookie", &config.secrets.cookie),
        ("secrets.pagination", &config.secrets.pagination),
    ] {
        if let Some(i) = list.iter().position(|s| s.chars().count() < 16) {
            return Err(invalid(&format!("{key}.{i}"), "each secret must be at least 16 characters long"));
        }
    }
    let b = &config.hashers.bcrypt;
    if !(4..=31).contains(&b.cost) {
        return Err(invalid("hashers.bcrypt.cost", "expected an integer from 4 to 31"));
    }
    if b.cost < 12 && !config.dev && config.hashers.algorithm == HashAlgorithm::Bcrypt {
        notices.push(format!(
            "hashers.bcrypt.cost {} is below 12 and was raised to 12 (allowed only with --dev)",
            b.cost
        ));
    }
    let a = &config.hashers.argon2;
    if a.iterations < 1 {
        return Err(invalid("hashers.argon2.iterations", "expected an integer of at least 1"));
    }
    if a.parallelism == Some(0) {
        return Err(invalid("hashers.argon2.parallelism", "expected an integer of at least 1"));
    }
    if a.salt_length < 16 {
        return Err(invalid("hashers.argon2.salt_length", "expected an integer of at least 16"));
    }
    if a.key_length < 16 {
        return Err(invalid("hashers.argon2.key_length", "expected an integer of at least 16"));
    }
    validate_cleanup(config)?;
    let throttling = &config.security.login_throttling;
    for (scope, limit) in
        [("identifier", &throttling.identifier), ("identifier_per_ip", &throttling.identifier_per_ip)]
    {
        let key = |field: &str| format!("security.login_throttling.{scope}.{field}");
        positive(&key("window"), limit.window, "1s or 15m")?;
        positive(&key("initial_delay"), limit.initial_delay, "1s or 15m")?;
        positive(&key("max_delay"), limit.max_delay, "1s or 15m")?;
        if limit.max_delay < limit.initial_delay {
            return Err(invalid(&key("max_delay"), format!("expected at least {scope}.initial_delay")));
        }
    }
    positive("security.login_throttling.ip.window", throttling.ip.window, "1s or 15m")?;
    if throttling.ip.max_failures == 0 {
        return Err(invalid(
            "security.login_throttling.ip.max_failures",
            "expected an integer of at least 1",
        ));
    }
    let sends = &config.security.send_limits;
    positive("security.send_limits.address.window", sends.address.window, "1h")?;
    for (key, value) in [
        ("security.send_limits.address.max", sends.address.max),
        ("security.send_limits.ip.flows_per_minute", sends.ip.flows_per_minute),
        ("security.send_limits.ip.codes_per_minute", sends.ip.codes_per_minute),
    ] {
        if value == 0 {
            return Err(invalid(
                key,
                "expected at least 1 (turn the limits off with security.send_limits.enabled)",
            ));
        }
    }
    if config.selfservice.methods.password.config.min_password_length < 6 {
        return Err(invalid(
            "selfservice.methods.password.config.min_password_length",
            "expected at least 6",
        ));
    }
    if config.courier.message_retries.is_some_and(|n| n < 0) {
        return Err(invalid("courier.message_retries", "expected 0 or more"));
    }
    let courier = &config.courier;
    for (key, value) in [
        ("courier.delivery_horizon", courier.delivery_horizon),
        ("courier.backoff.initial", courier.backoff.initial),
        ("courier.backoff.max", courier.backoff.max),
    ] {
        positive(key, value, "1s, 10m or 24h")?;
    }
    if courier.backoff.max < courier.backoff.initial {
        return Err(invalid("courier.backoff.max", "must not be shorter than courier.backoff.initial"));
    }
    if config.identity.schemas.is_empty() {
        return Err(invalid("identity.schemas", "at least one identity schema is required"));
    }
    if !config.identity.schemas.iter().any(|s| s.id == config.identity.default_schema_id) {
        return Err(invalid(
            "identity.default_schema_id",
            format!("`{}` names no entry of identity.schemas", config.identity.default_schema_id),
        ));
    }
    Ok(notices)
}

/// The keys the cleanup reads; `cleanup sql` checks only these (their
/// durations were checked as they were read).
pub(super) fn validate_cleanup(config: &Config) -> Result<(), ConfigError> {
    if config.database.cleanup.batch_size == 0 {
        return Err(invalid("database.cleanup.batch_size", "expected an integer of at least 1"));
    }
    Ok(())
}

/// Zero would turn a limit or a timeout into "always" or "never".
fn positive(key: &str, value: Duration, example: &str) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(invalid(key, format!("expected a positive duration such as {example}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::load;
    use super::super::testing::{MINIMAL, write};
    use super::*;
    use crate::config::TrustedNetwork;

    fn d(text: &str) -> Duration {
        text.parse().unwrap()
    }

    #[test]
    fn code_login_is_passwordless_or_a_second_factor_not_both() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.json", "{}");
        let a = write(dir.path(), "a.yml", MINIMAL);
        let code = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.selfservice.methods.code;
        assert!(!code.passwordless_enabled && !code.mfa_enabled, "both off by default, as in Kratos");
        let env = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>()
        };
        let on = env(&[("SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED", "true")]);
        let code = load(std::slice::from_ref(&a), on, false).unwrap().config.selfservice.methods.code;
        assert!(code.passwordless_enabled && !code.mfa_enabled);
        let both = env(&[
            ("SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED", "true"),
            ("SELFSERVICE_METHODS_CODE_MFA_ENABLED", "true"),
        ]);
        let err = load(std::slice::from_ref(&a), both, false).unwrap_err().to_string();
        assert!(err.contains("selfservice.methods.code.mfa_enabled"), "{err}");
    }

    #[test]
    fn serve_limits_have_safe_defaults_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.json", "{}");
        let a = write(dir.path(), "a.yml", MINIMAL);
        let limits = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.serve.limits;
        assert_eq!((limits.header_read_timeout, limits.max_connections), (d("10s"), 1024));
        let env = vec![("SERVE_LIMITS_IDLE_TIMEOUT".to_string(), "2s".to_string())];
        let loaded = load(std::slice::from_ref(&a), env, false).unwrap();
        assert_eq!(loaded.config.serve.limits.idle_timeout, d("2s"));
        for (name, value, key) in [
            ("SERVE_LIMITS_MAX_CONNECTIONS", "0", "serve.limits.max_connections"),
            ("SERVE_LIMITS_HEADER_READ_TIMEOUT", "0s", "serve.limits.header_read_timeout"),
            ("SERVE_LIMITS_BODY_READ_TIMEOUT", "soon", "serve.limits.body_read_timeout"),
        ] {
            let err = load(std::slice::from_ref(&a), vec![(name.to_string(), value.to_string())], false)
                .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn send_limits_are_on_by_default_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let sends = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.security.send_limits;
        assert!(sends.enabled);
        assert_eq!((sends.address.max, sends.address.window), (5, d("1h")));
        assert_eq!((sends.ip.flows_per_minute, sends.ip.codes_per_minute), (60, 10));
        let env = vec![
            ("SECURITY_SEND_LIMITS_ENABLED".to_string(), "false".to_string()),
            ("SECURITY_SEND_LIMITS_ADDRESS_WINDOW".to_string(), "30m".to_string()),
        ];
        let sends = load(std::slice::from_ref(&a), env, false).unwrap().config.security.send_limits;
        assert_eq!((sends.enabled, sends.address.window), (false, d("30m")));
        for (name, value, key) in [
            ("SECURITY_SEND_LIMITS_ADDRESS_MAX", "0", "security.send_limits.address.max"),
            ("SECURITY_SEND_LIMITS_ADDRESS_WINDOW", "0s", "security.send_limits.address.window"),
            ("SECURITY_SEND_LIMITS_IP_FLOWS_PER_MINUTE", "0", "security.send_limits.ip.flows_per_minute"),
            ("SECURITY_SEND_LIMITS_IP_CODES_PER_MINUTE", "-1", "security.send_limits.ip.codes_per_minute"),
        ] {
            let err = load(std::slice::from_ref(&a), vec![(name.to_string(), value.to_string())], false)
                .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn other_tracing_providers_and_bad_otlp_settings_are_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let refused = |yaml: &str| {
            let b = write(dir.path(), "b.yml", yaml);
            load(&[a.clone(), b], Vec::new(), false).unwrap_err().to_string()
        };
        for provider in ["jaeger", "zipkin", "datadog", "elastic-apm", "instana"] {
            let err = refused(&format!("tracing:\n  provider: {provider}\n"));
            assert!(err.contains("`tracing.provider`") && err.contains("`otel`"), "{err}");
        }
        for ratio in ["1.5", "-0.1"] {
            let err = refused(&format!(
                "tracing:\n  provider: otel\n  providers:\n    otlp:\n      server_url: c:4318\n      \
                 sampling:\n        sampling_ratio: {ratio}\n"
            ));
            assert!(err.contains("tracing.providers.otlp.sampling.sampling_ratio"), "{err}");
        }
        let err = refused("tracing:\n  provider: otel\n");
        assert!(err.contains("tracing.providers.otlp.server_url"), "{err}");
        for url in ["http://c:4318", "c:4318/v1/traces", "collector", "u:p@c:4318"] {
            let err = refused(&format!(
                "tracing:\n  provider: otel\n  providers:\n    otlp:\n      server_url: '{url}'\n"
            ));
            assert!(err.contains("tracing.providers.otlp.server_url"), "{url}: {err}");
        }
        let err = refused("tracing:\n  providers:\n    otlp:\n      server_url: c:4318\n      endpoint: x\n");
        assert!(err.contains("tracing.providers.otlp") && err.contains("endpoint"), "{err}");
        let err = refused(
            "tracing:\n  provider: otel\n  providers:\n    otlp:\n      server_url: c:4318\n      \
             authorization_header: \"Bearer line\\nbreak-secret\"\n",
        );
        assert!(err.contains("authorization_header") && !err.contains("break-secret"), "{err}");
    }

    #[test]
    fn cors_has_kratos_defaults_and_errors_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let loaded = load(std::slice::from_ref(&a), Vec::new(), false).unwrap();
        let cors = &loaded.config.serve.public.cors;
        assert!(!cors.enabled);
        assert_eq!(cors.allowed_origins, ["*"]);
        assert!(cors.allow_credentials);
        assert_eq!(cors.max_age, 0);
        let env = vec![
            ("SERVE_PUBLIC_CORS_ENABLED".into(), "true".into()),
            ("SERVE_PUBLIC_CORS_ALLOWED_ORIGINS".into(), "https://a.test,https://*.b.test".into()),
        ];
        let loaded = load(std::slice::from_ref(&a), env, false).unwrap();
        assert!(loaded.config.serve.public.cors.enabled);
        assert_eq!(loaded.config.serve.public.cors.allowed_origins, ["https://a.test", "https://*.b.test"]);
        for (yaml, key) in [
            (
                "allowed_origins: [https://a.test, 'https://*.*.b.test']",
                "serve.public.cors.allowed_origins.1",
            ),
            ("allowed_origins: [https://a.test/]", "serve.public.cors.allowed_origins.0"),
            ("allowed_methods: [GET, FETCH]", "serve.public.cors.allowed_methods.1"),
            ("allowed_headers: ['bad header']", "serve.public.cors.allowed_headers.0"),
            ("exposed_headers: ['*']", "serve.public.cors.exposed_headers.0"),
            ("max_age: -1", "serve.public.cors.max_age"),
        ] {
            let b = write(dir.path(), "b.yml", &format!("serve:\n  public:\n    cors:\n      {yaml}\n"));
            let err = load(&[a.clone(), b], Vec::new(), false).unwrap_err();
            assert!(err.to_string().contains(key), "{yaml}: {err}");
        }
        let b = write(dir.path(), "b.yml", "serve:\n  admin:\n    cors:\n      enabled: true\n");
        let err = load(&[a, b], Vec::new(), false).unwrap_err();
        assert!(err.to_string().contains("serve.admin.cors"), "{err}");
    }

    #[test]
    fn trusted_proxies_are_none_by_default_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let loaded = load(std::slice::from_ref(&a), Vec::new(), false).unwrap();
        assert!(loaded.config.serve.public.trusted_proxies.is_empty());
        let env = vec![("SERVE_PUBLIC_TRUSTED_PROXIES".into(), "127.0.0.1, 10.0.0.0/8,fd00::/8".into())];
        let loaded = load(std::slice::from_ref(&a), env, false).unwrap();
        let proxies: Vec<&str> =
            loaded.config.serve.public.trusted_proxies.iter().map(TrustedNetwork::as_str).collect();
        assert_eq!(proxies, ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
        let b =
            write(dir.path(), "b.yml", "serve:\n  public:\n    trusted_proxies: [10.0.0.1, 10.0.0.0/40]\n");
        let err = load(&[a, b], Vec::new(), false).unwrap_err();
        assert!(err.to_string().contains("serve.public.trusted_proxies.1"), "{err}");
    }

    #[test]
    fn login_throttling_is_on_by_default_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let throttling =
            load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.security.login_throttling;
        assert!(throttling.enabled);
        let id = &throttling.identifier;
        assert_eq!(
            (id.free_failures, id.window, id.initial_delay, id.max_delay),
            (20, d("1h"), d("1s"), d("60s"))
        );
        let pair = &throttling.identifier_per_ip;
        assert_eq!(
            (pair.free_failures, pair.window, pair.initial_delay, pair.max_delay),
            (5, d("1h"), d("1s"), d("15m"))
        );
        assert_eq!((throttling.ip.max_failures, throttling.ip.window), (30, d("15m")));
        let env = vec![
            ("SECURITY_LOGIN_THROTTLING_ENABLED".to_string(), "false".to_string()),
            ("SECURITY_LOGIN_THROTTLING_IP_MAX_FAILURES".to_string(), "100".to_string()),
        ];
        let throttling = load(std::slice::from_ref(&a), env, false).unwrap().config.security.login_throttling;
        assert!(!throttling.enabled);
        assert_eq!(throttling.ip.max_failures, 100);
        for (name, value, key) in [
            ("SECURITY_LOGIN_THROTTLING_IP_MAX_FAILURES", "0", "security.login_throttling.ip.max_failures"),
            ("SECURITY_LOGIN_THROTTLING_IP_WINDOW", "0s", "security.login_throttling.ip.window"),
            (
                "SECURITY_LOGIN_THROTTLING_IDENTIFIER_WINDOW",
                "soon",
                "security.login_throttling.identifier.window",
            ),
            (
                "SECURITY_LOGIN_THROTTLING_IDENTIFIER_MAX_DELAY",
                "500ms",
                "security.login_throttling.identifier.max_delay",
            ),
            (
                "SECURITY_LOGIN_THROTTLING_IDENTIFIER_PER_IP_MAX_DELAY",
                "500ms",
                "security.login_throttling.identifier_per_ip.max_delay",
            ),
        ] {
            let err = load(std::slice::from_ref(&a), vec![(name.to_string(), value.to_string())], false)
                .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
