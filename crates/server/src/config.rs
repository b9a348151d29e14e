//! Configuration the Kratos way: YAML files with Kratos's key names, later
//! files overriding earlier ones, then environment variables named after the
//! key path (`serve.public.port` → `SERVE_PUBLIC_PORT`). Keys for features
//! not built yet are reported in one warning; invalid values stop the start
//! with the key and what was expected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use latchkey_domain::cleanup::CleanupSettings;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {reason}")]
    Yaml { path: PathBuf, reason: String },
    #[error("invalid configuration value at `{key}`: {reason}")]
    Invalid { key: String, reason: String },
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
    pub version: Option<String>,
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
}

/// Kratos's `tracing` block. `provider: otel` exports spans over OTLP/HTTP
/// (`providers.otlp`); empty (the default) exports nothing and installs no
/// exporter at all. Other providers Kratos knows stop the start.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TracingConfig {
    pub provider: String,
    /// `service.name` of the exported spans; empty means `latchkey`.
    pub service_name: String,
    /// `deployment.environment.name`, when set.
    pub deployment_environment: String,
    /// Only `otlp` is read; other providers' blocks are reported as unsupported keys.
    pub providers: TracingProviders,
}

/// The provider Latchkey exports with.
pub const TRACING_PROVIDER_OTEL: &str = "otel";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TracingProviders {
    pub otlp: OtlpConfig,
}

/// `tracing.providers.otlp`, as ory/x's otelx reads it.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// `host:port` of the collector's OTLP/HTTP endpoint; spans go to `/v1/traces`.
    pub server_url: String,
    /// Plain HTTP instead of HTTPS.
    pub insecure: bool,
    pub sampling: OtlpSampling,
    /// Sent as `Authorization` with every export.
    pub authorization_header: String,
}

/// The authorization header is a credential.
impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header = if self.authorization_header.is_empty() { "" } else { "[REDACTED]" };
        f.debug_struct("OtlpConfig")
            .field("server_url", &self.server_url)
            .field("insecure", &self.insecure)
            .field("sampling", &self.sampling)
            .field("authorization_header", &header)
            .finish()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpSampling {
    /// Share of traces started here that are kept, 0 to 1; a caller's
    /// sampling decision (in `traceparent`) is followed as it is.
    pub sampling_ratio: f64,
}

impl Default for OtlpSampling {
    fn default() -> Self {
        Self { sampling_ratio: 1.0 }
    }
}

impl TracingConfig {
    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        self.provider == TRACING_PROVIDER_OTEL
    }

    /// The collector URL spans are posted to.
    pub fn otlp_endpoint(&self) -> String {
        let otlp = &self.providers.otlp;
        let scheme = if otlp.insecure { "http" } else { "https" };
        format!("{scheme}://{}/v1/traces", otlp.server_url)
    }

    pub fn service_name(&self) -> &str {
        if self.service_name.is_empty() { "latchkey" } else { &self.service_name }
    }
}

/// Checks `tracing`: the provider, and the OTLP settings when they are used.
fn validate_tracing(tracing: &TracingConfig) -> Result<(), ConfigError> {
    match tracing.provider.as_str() {
        "" | TRACING_PROVIDER_OTEL => {}
        other => {
            return Err(invalid(
                "tracing.provider",
                format!(
                    "`{other}` is not supported: Latchkey exports traces only over OTLP/HTTP; \
                     set tracing.provider to `otel` (with tracing.providers.otlp) or leave it empty"
                ),
            ));
        }
    }
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

/// `security`: Latchkey's own abuse limits (Kratos has no such block), on by
/// default. Counts live in the database, so they hold across restarts and
/// across servers sharing PostgreSQL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Security {
    pub login_throttling: LoginThrottling,
    pub send_limits: SendLimits,
}

/// `security.send_limits`: recovery and verification mails per address, and
/// flows and code requests per client address (see `serve.public.trusted_proxies`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SendLimits {
    pub enabled: bool,
    pub address: AddressSendLimit,
    pub ip: IpSendLimit,
}

impl Default for SendLimits {
    fn default() -> Self {
        Self { enabled: true, address: AddressSendLimit::default(), ip: IpSendLimit::default() }
    }
}

/// Code mails per address and purpose (recovery, verification) within `window`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AddressSendLimit {
    pub max: u64,
    pub window: String,
}

impl Default for AddressSendLimit {
    fn default() -> Self {
        Self { max: 5, window: "1h".into() }
    }
}

/// Per client address, per minute.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IpSendLimit {
    /// Self-service flows started (`GET /self-service/<flow>/{api,browser}`).
    pub flows_per_minute: u64,
    /// Recovery and verification submits that ask for a code.
    pub codes_per_minute: u64,
}

impl Default for IpSendLimit {
    fn default() -> Self {
        Self { flows_per_minute: 60, codes_per_minute: 10 }
    }
}

/// `database.*`: how expired records are cleaned up.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct DatabaseConfig {
    pub cleanup: CleanupConfig,
}

/// `database.cleanup`: Kratos's keys (`batch_size`, `sleep.tables`,
/// `older_than`), read by `latchkey cleanup sql`, plus Latchkey's own
/// `interval`, how often `serve` runs the same cleanup itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CleanupConfig {
    /// How often `serve` cleans up; `0s` turns that off (run `cleanup sql`
    /// from cron instead).
    pub interval: String,
    /// Rows per batch; each batch is its own short transaction.
    pub batch_size: u32,
    pub sleep: CleanupSleep,
    /// Records that expired, were used, revoked or delivered less than this
    /// long ago are kept. Kratos's default is `0s`; a day's grace keeps the
    /// "flow expired" answer (instead of "not found") and recent mail in
    /// the admin API for a while, at the cost of a day of dead rows.
    pub older_than: String,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self {
            interval: "1h".into(),
            batch_size: 100,
            sleep: CleanupSleep::default(),
            older_than: "24h".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CleanupSleep {
    /// Pause between tables, so a large backlog is worked off gently.
    pub tables: String,
}

impl Default for CleanupSleep {
    fn default() -> Self {
        Self { tables: "1m".into() }
    }
}

/// `security.login_throttling`: failed password logins counted per
/// identifier (from all addresses, and from each client address) and per
/// client address in the database; past the limits, attempts are refused
/// (429) before any password is hashed.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoginThrottling {
    pub enabled: bool,
    /// One identifier, failures from every address together: a short lock,
    /// so nobody can keep the owner out for long.
    pub identifier: IdentifierThrottling,
    /// One identifier from one client address: a long lock that only the
    /// guessing source sits behind.
    pub identifier_per_ip: IdentifierThrottling,
    pub ip: IpThrottling,
}

impl Default for LoginThrottling {
    fn default() -> Self {
        Self {
            enabled: true,
            // One source paced by `identifier_per_ip` fails at most about 17
            // times in any hour, so it alone never reaches these 20.
            identifier: IdentifierThrottling {
                free_failures: 20,
                window: "1h".into(),
                initial_delay: "1s".into(),
                max_delay: "60s".into(),
            },
            identifier_per_ip: IdentifierThrottling {
                free_failures: 5,
                window: "1h".into(),
                initial_delay: "1s".into(),
                max_delay: "15m".into(),
            },
            ip: IpThrottling::default(),
        }
    }
}

/// `free_failures` in `window` freely, then a wait after each failure from
/// `initial_delay`, doubling, at most `max_delay`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IdentifierThrottling {
    pub free_failures: u64,
    pub window: String,
    pub initial_delay: String,
    pub max_delay: String,
}

impl Default for IdentifierThrottling {
    fn default() -> Self {
        LoginThrottling::default().identifier
    }
}

/// Per client address (IPv6: per /64): at most `max_failures` in `window`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IpThrottling {
    pub max_failures: u64,
    pub window: String,
}

impl Default for IpThrottling {
    fn default() -> Self {
        Self { max_failures: 30, window: "15m".into() }
    }
}

/// Kratos's feature flags that Latchkey understands. Latchkey always
/// behaves as with `use_continue_with_transitions: true`; the key is
/// accepted so Kratos configs load without a warning.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct FeatureFlags {
    pub use_continue_with_transitions: bool,
    /// `require_verified_address` answers with a form error (4000010)
    /// instead of sending a code and pointing at a verification flow.
    pub legacy_require_verified_login_error: bool,
    /// Registration's `continue_with` shows the verification flow even
    /// without the `show_verification_ui` hook.
    pub legacy_continue_with_verification_ui: bool,
}

/// `courier.*`: how queued emails leave.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CourierConfig {
    /// Only `smtp` is built.
    pub delivery_strategy: String,
    pub smtp: SmtpSettings,
    /// Retries after a failed first attempt before a message is abandoned
    /// (as in Kratos: 5 means at most 6 attempts). Unset (the default): no
    /// count, a message is retried until its code expires or
    /// `delivery_horizon` passes, so no relay outage of any length short of
    /// that loses it. Set (Kratos's default was 5), it is honoured as well.
    pub message_retries: Option<i32>,
    /// How long a message without a code is worth sending (Latchkey).
    pub delivery_horizon: String,
    /// The pause before retrying a failed send, doubling up to `max`, each
    /// with jitter (Latchkey).
    pub backoff: BackoffSettings,
    /// A directory of template overrides laid out as Kratos's.
    pub template_override_path: Option<String>,
    /// Per-template overrides: `<group>.<variant>.email.{subject, body.plaintext, body.html}` URLs
    /// (Kratos's form, e.g. `recovery_code.valid`), or `<name>.email.…` with a template's whole
    /// name (e.g. `account_recovered`); the README lists every template.
    pub templates: Value,
}

impl Default for CourierConfig {
    fn default() -> Self {
        Self {
            delivery_strategy: "smtp".into(),
            smtp: SmtpSettings::default(),
            message_retries: None,
            delivery_horizon: "24h".into(),
            backoff: BackoffSettings::default(),
            template_override_path: None,
            templates: Value::Null,
        }
    }
}

/// `courier.backoff`: retries wait `initial`, then twice that, and so on up
/// to `max`, each pause drawn from its upper half (jitter).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BackoffSettings {
    pub initial: String,
    pub max: String,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self { initial: "1s".into(), max: "10m".into() }
    }
}

impl Config {
    /// The courier's retry policy; durations are those validation checked.
    pub fn retry_policy(&self) -> latchkey_domain::courier::RetryPolicy {
        let c = &self.courier;
        let duration = |s: &str| parse_duration(s).unwrap_or_default();
        latchkey_domain::courier::RetryPolicy {
            initial_backoff: duration(&c.backoff.initial),
            max_backoff: duration(&c.backoff.max),
            horizon: chrono::Duration::from_std(duration(&c.delivery_horizon))
                .unwrap_or(chrono::Duration::MAX),
            max_attempts: c.message_retries.map(|retries| retries.saturating_add(1)),
        }
    }
}

/// `courier.smtp`; the connection URI may hold a password, so Debug hides it.
#[derive(Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SmtpSettings {
    pub connection_uri: String,
    pub from_address: String,
    pub from_name: Option<String>,
    pub headers: std::collections::BTreeMap<String, String>,
    pub local_name: Option<String>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            connection_uri: String::new(),
            from_address: "no-reply@localhost".into(),
            from_name: None,
            headers: Default::default(),
            local_name: None,
        }
    }
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("connection_uri", &redact_dsn(&self.connection_uri))
            .field("from_address", &self.from_address)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SelfService {
    /// Where browsers go after a flow when nothing else says where; defaults to the public base URL.
    pub default_browser_return_url: String,
    /// Allowed `return_to` prefixes. Empty means only our own origins
    /// (safer than Kratos's "anything goes" for an empty list).
    pub allowed_return_urls: Vec<String>,
    pub flows: Flows,
    pub methods: Methods,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Flows {
    pub login: LoginFlow,
    pub registration: RegistrationFlow,
    pub settings: SettingsFlow,
    pub recovery: RecoveryFlow,
    pub verification: VerificationFlow,
    pub error: UiOnly,
    pub logout: LogoutFlow,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct UiOnly {
    pub ui_url: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LoginFlow {
    pub ui_url: String,
    pub lifespan: String,
    pub style: String,
    pub after: After,
}

impl Default for LoginFlow {
    fn default() -> Self {
        Self {
            ui_url: String::new(),
            lifespan: "1h".into(),
            style: "unified".into(),
            after: After::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RegistrationFlow {
    pub ui_url: String,
    pub lifespan: String,
    pub enabled: bool,
    /// `unified` (one step) or `profile_first` (traits, then credentials).
    pub style: String,
    pub enable_legacy_one_step: Option<bool>,
    pub after: After,
}

impl Default for RegistrationFlow {
    fn default() -> Self {
        Self {
            ui_url: String::new(),
            lifespan: "1h".into(),
            enabled: true,
            style: "unified".into(),
            enable_legacy_one_step: None,
            after: After::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SettingsFlow {
    pub ui_url: String,
    pub lifespan: String,
    /// How recent a sign-in must be to change a password or identifier.
    pub privileged_session_max_age: String,
    /// Only `highest_available` and `aal1` mean anything without second factors.
    pub required_aal: String,
    pub after: After,
}

impl Default for SettingsFlow {
    fn default() -> Self {
        Self {
            ui_url: String::new(),
            lifespan: "1h".into(),
            privileged_session_max_age: "1h".into(),
            required_aal: "highest_available".into(),
            after: After::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LogoutFlow {
    pub after: AfterReturn,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct AfterReturn {
    pub default_browser_return_url: String,
}

/// Hooks that run after a flow succeeds, by default and per method.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct After {
    pub default_browser_return_url: String,
    pub hooks: Vec<Hook>,
    pub password: MethodAfter,
    /// Settings only: after a traits change.
    pub profile: MethodAfter,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct MethodAfter {
    pub default_browser_return_url: String,
    pub hooks: Vec<Hook>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Hook {
    pub hook: String,
    #[serde(default)]
    pub config: Option<Value>,
}

impl After {
    /// The password method's hooks when it has its own, else the defaults.
    pub fn password_hooks(&self) -> impl Iterator<Item = &str> {
        let hooks = if self.password.hooks.is_empty() { &self.hooks } else { &self.password.hooks };
        hooks.iter().map(|h| h.hook.as_str())
    }

    /// The profile method's hooks when it has its own, else the defaults.
    pub fn profile_hooks(&self) -> impl Iterator<Item = &str> {
        let hooks = if self.profile.hooks.is_empty() { &self.hooks } else { &self.profile.hooks };
        hooks.iter().map(|h| h.hook.as_str())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RecoveryFlow {
    pub enabled: bool,
    pub ui_url: String,
    pub lifespan: String,
    /// Only `code` is built.
    #[serde(rename = "use")]
    pub method: String,
    /// Tell unknown addresses that someone tried to recover them.
    pub notify_unknown_recipients: bool,
    pub after: After,
}

impl Default for RecoveryFlow {
    fn default() -> Self {
        Self {
            enabled: false,
            ui_url: String::new(),
            lifespan: "1h".into(),
            method: "code".into(),
            notify_unknown_recipients: false,
            after: After::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct VerificationFlow {
    pub enabled: bool,
    pub ui_url: String,
    pub lifespan: String,
    /// Only `code` is built.
    #[serde(rename = "use")]
    pub method: String,
    /// Tell unknown addresses that someone tried to verify them.
    pub notify_unknown_recipients: bool,
    pub after: After,
}

impl Default for VerificationFlow {
    fn default() -> Self {
        Self {
            enabled: false,
            ui_url: String::new(),
            lifespan: "1h".into(),
            method: "code".into(),
            notify_unknown_recipients: false,
            after: After::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Methods {
    pub password: PasswordMethod,
    pub code: CodeMethod,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CodeMethod {
    pub enabled: bool,
    pub config: CodeMethodConfig,
}

impl Default for CodeMethod {
    fn default() -> Self {
        Self { enabled: true, config: CodeMethodConfig::default() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CodeMethodConfig {
    /// How long a code works; shorter than Kratos's 1h by default.
    pub lifespan: String,
    /// Code attempts per flow.
    pub max_submissions: u64,
    /// Latchkey's own: wrong codes per address (and purpose), across flows,
    /// within the window. Past it a code is judged only on the first attempt
    /// made against it, so the owner's fresh code still works while someone
    /// else fails codes for the address. Judged guesses per address and day
    /// stay <= this + codes sent a day: 10 + 5/h x 24 = 130, a chance of at
    /// most 1.3e-4 to guess a 6-digit code.
    pub max_failures_per_address: u64,
    pub failure_window: String,
}

impl Default for CodeMethodConfig {
    fn default() -> Self {
        Self {
            lifespan: "15m".into(),
            max_submissions: 5,
            max_failures_per_address: 10,
            failure_window: "24h".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PasswordMethod {
    pub enabled: bool,
    pub config: PasswordMethodConfig,
}

impl Default for PasswordMethod {
    fn default() -> Self {
        Self { enabled: true, config: PasswordMethodConfig::default() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct PasswordMethodConfig {
    pub min_password_length: usize,
    pub identifier_similarity_check_enabled: bool,
    /// Latchkey never calls out to HaveIBeenPwned; this switches the bundled
    /// list of common breached passwords instead.
    pub haveibeenpwned_enabled: bool,
}

impl Default for PasswordMethodConfig {
    fn default() -> Self {
        Self {
            min_password_length: 8,
            identifier_similarity_check_enabled: true,
            haveibeenpwned_enabled: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionConfig {
    pub lifespan: String,
    /// Unset means the lifespan: sessions may always be extended.
    pub earliest_possible_extend: Option<String>,
    pub cookie: SessionCookie,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self { lifespan: "24h".into(), earliest_possible_extend: None, cookie: SessionCookie::default() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionCookie {
    pub name: String,
    pub persistent: bool,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub same_site: Option<String>,
}

impl Default for SessionCookie {
    fn default() -> Self {
        Self {
            name: "ory_kratos_session".into(),
            persistent: true,
            domain: None,
            path: None,
            same_site: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Cookies {
    pub domain: Option<String>,
    pub path: String,
    pub same_site: String,
}

impl Default for Cookies {
    fn default() -> Self {
        Self { domain: None, path: "/".into(), same_site: "Lax".into() }
    }
}

/// Hooks Latchkey runs; any other name is reported as not built yet.
pub const SUPPORTED_HOOKS: [&str; 5] =
    ["session", "revoke_active_sessions", "show_verification_ui", "verification", "require_verified_address"];

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Serve {
    pub public: Listener,
    pub admin: Listener,
    pub limits: ServeLimits,
}

/// Latchkey's own keys (Kratos has none): how long a client may take and
/// how many connections each listener serves at once, so slow or idle
/// clients cannot pin memory, tasks or file descriptors.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct ServeLimits {
    /// A connection waiting for a request head (a new or a kept-alive one)
    /// is closed when the whole head has not arrived within this time.
    pub header_read_timeout: String,
    /// A request body must arrive within this time, or the answer is 408.
    pub body_read_timeout: String,
    /// A kept-alive connection with no request in flight is closed after
    /// this long (or after `header_read_timeout`, whichever is shorter).
    pub idle_timeout: String,
    /// Connections served at once per listener; more wait to be accepted.
    pub max_connections: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: "10s".into(),
            body_read_timeout: "30s".into(),
            idle_timeout: "10s".into(),
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Listener {
    /// Defaults to loopback: exposing a listener is a deliberate act.
    pub host: String,
    pub port: Option<u16>,
    /// Where clients reach this listener; derived from the bound address when unset.
    pub base_url: String,
    /// Proxies (addresses or CIDR networks, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` is believed for the client address recorded on
    /// sessions. Empty (the default) trusts none: the peer's address is
    /// recorded. Kratos has no such key (it believes the header from
    /// anyone); only `serve.public` starts sessions, so only it uses this.
    pub trusted_proxies: Vec<String>,
    /// `serve.public.cors` (Kratos has no admin CORS; set there, it is refused).
    pub cors: Cors,
}

/// `serve.public.cors`, with Kratos's keys and defaults. Off by default.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct Cors {
    pub enabled: bool,
    /// `*`, exact origins, or origins with one `*` (`https://*.example.com`).
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub allow_credentials: bool,
    /// Seconds; 0 sends no `Access-Control-Max-Age`.
    pub max_age: u64,
}

impl Default for Cors {
    fn default() -> Self {
        let list = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
        Self {
            enabled: false,
            allowed_origins: list(&["*"]),
            allowed_methods: list(&["POST", "GET", "PUT", "PATCH", "DELETE"]),
            allowed_headers: list(&[
                "Authorization",
                "Content-Type",
                "Max-Age",
                "X-Session-Token",
                "X-XSRF-TOKEN",
                "X-CSRF-TOKEN",
            ]),
            exposed_headers: list(&["Content-Type"]),
            allow_credentials: true,
            max_age: 0,
        }
    }
}

impl Cors {
    pub fn settings(&self) -> latchkey_http::CorsSettings {
        latchkey_http::CorsSettings {
            enabled: self.enabled,
            allowed_origins: self.allowed_origins.clone(),
            allowed_methods: self.allowed_methods.clone(),
            allowed_headers: self.allowed_headers.clone(),
            exposed_headers: self.exposed_headers.clone(),
            allow_credentials: self.allow_credentials,
            max_age: self.max_age,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Log {
    pub level: String,
    pub format: LogFormat,
    pub leak_sensitive_values: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text, leak_sensitive_values: false }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Secrets never implement a revealing `Debug`.
#[derive(Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Secrets {
    pub default: Vec<String>,
    pub cookie: Vec<String>,
    pub cipher: Vec<String>,
    pub pagination: Vec<String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets([REDACTED])")
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Hashers {
    pub algorithm: HashAlgorithm,
    pub argon2: Argon2,
    pub bcrypt: Bcrypt,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    Argon2,
    #[default]
    Bcrypt,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Argon2 {
    pub memory: String,
    pub iterations: u32,
    /// Unset means twice the number of CPUs, as Kratos does.
    pub parallelism: Option<u32>,
    pub salt_length: u32,
    pub key_length: u32,
    pub expected_duration: String,
    pub expected_deviation: String,
    pub dedicated_memory: String,
}

impl Default for Argon2 {
    fn default() -> Self {
        Self {
            memory: "128MB".into(),
            iterations: 1,
            parallelism: None,
            salt_length: 16,
            key_length: 32,
            expected_duration: "500ms".into(),
            expected_deviation: "500ms".into(),
            dedicated_memory: "1GB".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Bcrypt {
    pub cost: u32,
}

impl Default for Bcrypt {
    fn default() -> Self {
        Self { cost: 12 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct IdentityConfig {
    pub default_schema_id: String,
    pub schemas: Vec<SchemaEntry>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self { default_schema_id: "default".into(), schemas: Vec::new() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchemaEntry {
    pub id: String,
    pub url: String,
}

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
/// `cleanup sql` skips validation), so a DSN and nothing else will do.
pub fn load_for_cleanup(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut merged = merged_files(files)?;
    apply_env(&mut merged, env)?;
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(merged, &mut track);
    let config: Config = serde_ignored::deserialize(de, |_| {})
        .map_err(|e| invalid(&track.path().to_string(), e.to_string()))?;
    validate_cleanup(&config)?;
    Ok(config)
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
    apply_env(&mut merged, env)?;
    if dev {
        merged.as_object_mut().expect("merged config is an object").insert("dev".into(), Value::Bool(true));
    }

    let mut unsupported = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(merged, &mut track);
    let config: Config = serde_ignored::deserialize(de, |path| unsupported.push(path.to_string()))
        .map_err(|e| invalid(&track.path().to_string(), e.to_string()))?;
    let notices = validate(&config)?;
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
        for (method, hooks) in
            [("", &after.hooks), (".password", &after.password.hooks), (".profile", &after.profile.hooks)]
        {
            for hook in hooks.iter().filter(|h| !SUPPORTED_HOOKS.contains(&h.hook.as_str())) {
                unsupported.push(format!("{path}{method}.hooks[{}]", hook.hook));
            }
        }
    }
    let mut config = config;
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

/// Checks what serde's types cannot; returns notices for values it adjusts.
fn validate(config: &Config) -> Result<Vec<String>, ConfigError> {
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
        ("serve.limits.header_read_timeout", &limits.header_read_timeout),
        ("serve.limits.body_read_timeout", &limits.body_read_timeout),
        ("serve.limits.idle_timeout", &limits.idle_timeout),
    ] {
        if parse_duration(value).is_none_or(|d| d.is_zero()) {
            return Err(invalid(key, "expected a positive duration such as 10s"));
        }
    }
    if limits.max_connections == 0 {
        return Err(invalid("serve.limits.max_connections", "expected an integer of at least 1"));
    }
    for (key, listener) in [("serve.public", &config.serve.public), ("serve.admin", &config.serve.admin)] {
        for (i, network) in listener.trusted_proxies.iter().enumerate() {
            latchkey_http::Network::parse(network)
                .map_err(|e| invalid(&format!("{key}.trusted_proxies.{i}"), e.to_string()))?;
        }
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
    parse_bytes(&a.memory)
        .ok_or_else(|| invalid("hashers.argon2.memory", "expected a size such as 128MB"))?;
    parse_bytes(&a.dedicated_memory)
        .ok_or_else(|| invalid("hashers.argon2.dedicated_memory", "expected a size such as 1GB"))?;
    for (key, value) in [
        ("hashers.argon2.expected_duration", &a.expected_duration),
        ("hashers.argon2.expected_deviation", &a.expected_deviation),
    ] {
        parse_duration(value).ok_or_else(|| invalid(key, "expected a duration such as 500ms"))?;
    }
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
    let flows = &config.selfservice.flows;
    for (key, value) in [
        ("selfservice.flows.login.lifespan", &flows.login.lifespan),
        ("selfservice.flows.registration.lifespan", &flows.registration.lifespan),
        ("selfservice.flows.settings.lifespan", &flows.settings.lifespan),
        ("selfservice.flows.recovery.lifespan", &flows.recovery.lifespan),
        ("selfservice.flows.verification.lifespan", &flows.verification.lifespan),
        ("selfservice.methods.code.config.lifespan", &config.selfservice.methods.code.config.lifespan),
        (
            "selfservice.methods.code.config.failure_window",
            &config.selfservice.methods.code.config.failure_window,
        ),
        ("selfservice.flows.settings.privileged_session_max_age", &flows.settings.privileged_session_max_age),
        ("session.lifespan", &config.session.lifespan),
    ] {
        parse_duration(value).ok_or_else(|| invalid(key, "expected a duration such as 1h or 15m"))?;
    }
    validate_cleanup(config)?;
    let throttling = &config.security.login_throttling;
    let positive = |key: &str, value: &str| {
        parse_duration(value)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| invalid(key, "expected a positive duration such as 1s or 15m"))
    };
    for (scope, limit) in
        [("identifier", &throttling.identifier), ("identifier_per_ip", &throttling.identifier_per_ip)]
    {
        let key = |field: &str| format!("security.login_throttling.{scope}.{field}");
        positive(&key("window"), &limit.window)?;
        let initial = positive(&key("initial_delay"), &limit.initial_delay)?;
        let max = positive(&key("max_delay"), &limit.max_delay)?;
        if max < initial {
            return Err(invalid(&key("max_delay"), format!("expected at least {scope}.initial_delay")));
        }
    }
    positive("security.login_throttling.ip.window", &throttling.ip.window)?;
    if throttling.ip.max_failures == 0 {
        return Err(invalid(
            "security.login_throttling.ip.max_failures",
            "expected an integer of at least 1",
        ));
    }
    if let Some(extend) = &config.session.earliest_possible_extend {
        parse_duration(extend)
            .ok_or_else(|| invalid("session.earliest_possible_extend", "expected a duration such as 1h"))?;
    }
    let sends = &config.security.send_limits;
    if parse_duration(&sends.address.window).is_none_or(|d| d.is_zero()) {
        return Err(invalid(
            "security.send_limits.address.window",
            "expected a positive duration such as 1h",
        ));
    }
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
    if !matches!(flows.settings.required_aal.as_str(), "highest_available" | "aal1") {
        return Err(invalid("selfservice.flows.settings.required_aal", "expected highest_available or aal1"));
    }
    if !matches!(flows.registration.style.as_str(), "unified" | "profile_first") {
        return Err(invalid("selfservice.flows.registration.style", "expected `unified` or `profile_first`"));
    }
    if config.selfservice.methods.password.config.min_password_length < 6 {
        return Err(invalid(
            "selfservice.methods.password.config.min_password_length",
            "expected at least 6",
        ));
    }
    for (key, same_site) in [
        ("cookies.same_site", Some(&config.cookies.same_site)),
        ("session.cookie.same_site", config.session.cookie.same_site.as_ref()),
    ] {
        if same_site.is_some_and(|s| !matches!(s.as_str(), "Lax" | "Strict" | "None")) {
            return Err(invalid(key, "expected Lax, Strict or None"));
        }
    }
    if flows.recovery.method != "code" {
        return Err(invalid("selfservice.flows.recovery.use", "only `code` is supported"));
    }
    if flows.verification.method != "code" {
        return Err(invalid("selfservice.flows.verification.use", "only `code` is supported"));
    }
    if config.courier.delivery_strategy != "smtp" {
        return Err(invalid("courier.delivery_strategy", "only `smtp` is supported"));
    }
    if config.courier.message_retries.is_some_and(|n| n < 0) {
        return Err(invalid("courier.message_retries", "expected 0 or more"));
    }
    for (key, value) in [
        ("courier.delivery_horizon", &config.courier.delivery_horizon),
        ("courier.backoff.initial", &config.courier.backoff.initial),
        ("courier.backoff.max", &config.courier.backoff.max),
    ] {
        if parse_duration(value).is_none_or(|d| d.is_zero()) {
            return Err(invalid(key, "expected a positive duration such as 1s, 10m or 24h"));
        }
    }
    if parse_duration(&config.courier.backoff.max) < parse_duration(&config.courier.backoff.initial) {
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

/// The keys the cleanup reads; `cleanup sql` checks only these.
fn validate_cleanup(config: &Config) -> Result<(), ConfigError> {
    let cleanup = &config.database.cleanup;
    for (key, value) in [
        ("database.cleanup.interval", &cleanup.interval),
        ("database.cleanup.sleep.tables", &cleanup.sleep.tables),
        ("database.cleanup.older_than", &cleanup.older_than),
        (
            "selfservice.methods.code.config.failure_window",
            &config.selfservice.methods.code.config.failure_window,
        ),
    ] {
        parse_duration(value).ok_or_else(|| invalid(key, "expected a duration such as 1h, 1m or 0s"))?;
    }
    if cleanup.batch_size == 0 {
        return Err(invalid("database.cleanup.batch_size", "expected an integer of at least 1"));
    }
    Ok(())
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

/// Sizes as Kratos writes them: `128MB`, `1GB`, `512KB` (powers of 1024).
pub fn parse_bytes(s: &str) -> Option<u64> {
    let digits = s.trim().chars().take_while(char::is_ascii_digit).collect::<String>();
    let number: u64 = digits.parse().ok()?;
    let unit = match s.trim()[digits.len()..].trim().to_ascii_uppercase().as_str() {
        "B" | "" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        "TB" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(unit)
}

/// Go-style durations (`15m`, `1h`, `500ms`, `1h30m`), at most Go's limit
/// (about 292 years), as Kratos reads them: a longer one would overflow the
/// dates computed from it (a session's expiry at every login).
pub fn parse_duration(s: &str) -> Option<Duration> {
    humantime::parse_duration(s.trim()).ok().filter(|d| *d <= Duration::from_nanos(i64::MAX as u64))
}

impl Config {
    /// The DSN with any password replaced, for logs and errors.
    pub fn redacted_dsn(&self) -> String {
        redact_dsn(&self.dsn)
    }

    /// The cleanup `database.cleanup` and the limits' windows describe;
    /// `keep_last` (the CLI's `--keep-last`) overrides `older_than`.
    /// Durations are those [`validate_cleanup`] checked.
    pub fn cleanup_settings(&self, keep_last: Option<Duration>) -> CleanupSettings {
        let cleanup = &self.database.cleanup;
        let duration = |s: &str| parse_duration(s).unwrap_or_default();
        let chrono = |d: Duration| chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX);
        CleanupSettings {
            batch_size: cleanup.batch_size.max(1),
            sleep_tables: duration(&cleanup.sleep.tables),
            keep_last: chrono(keep_last.unwrap_or_else(|| duration(&cleanup.older_than))),
            code_failure_window: chrono(duration(&self.selfservice.methods.code.config.failure_window)),
            rate_window: chrono(self.longest_rate_window()),
        }
    }

    /// How often `serve` runs the cleanup; `None` when `interval` is zero.
    pub fn cleanup_interval(&self) -> Option<Duration> {
        parse_duration(&self.database.cleanup.interval).filter(|d| !d.is_zero())
    }

    /// How long `rate_events` rows are kept at least: the longest window any
    /// rate limit counts them in, and never less than
    /// [`RATE_EVENTS_KEPT_AT_LEAST`]. Every limit that records rate events
    /// lists its window here, so the cleanup never deletes an event a limit
    /// still counts.
    pub fn longest_rate_window(&self) -> Duration {
        let throttling = &self.security.login_throttling;
        let windows = [
            self.security.send_limits.address.window.as_str(),
            throttling.identifier.window.as_str(),
            throttling.identifier_per_ip.window.as_str(),
            throttling.ip.window.as_str(),
        ];
        windows.iter().filter_map(|w| parse_duration(w)).fold(RATE_EVENTS_KEPT_AT_LEAST, Duration::max)
    }
}

/// Rate events are kept at least this long, whatever the windows: a window
/// raised (up to a day) keeps its history, and a limit with a window of up
/// to a day that is missing from [`Config::longest_rate_window`] still
/// keeps its counts.
pub const RATE_EVENTS_KEPT_AT_LEAST: Duration = Duration::from_secs(24 * 3600);

/// Hides every password a DSN can carry, for logs and errors: the one in
/// `scheme://user:password@host/…` (which may itself hold `@`, `:` or `/`:
/// the host starts after the last `@`) and the value of any `password=`
/// parameter, in a query string or a `key=value` DSN. When in doubt it hides
/// too much rather than too little.
pub fn redact_dsn(dsn: &str) -> String {
    let redacted = match dsn.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => dsn.to_string(),
            },
            None => dsn.to_string(),
        },
        None => dsn.to_string(),
    };
    redact_password_params(&redacted)
}

/// Keys whose values are secrets wherever they appear as `key=value`.
const SECRET_KEYS: [&str; 4] = ["password", "sslpassword", "pass", "pwd"];

/// Replaces the value of every `password=` (and the like) parameter. A value
/// runs until the next separator (`&`, `;` or whitespace) that starts
/// another `key=` (after its closing quote, if quoted), so a password
/// holding a bare `&` is hidden whole.
fn redact_password_params(dsn: &str) -> String {
    let bytes = dsn.as_bytes();
    let is_separator = |b: u8| matches!(b, b'?' | b'&' | b';') || b.is_ascii_whitespace();
    let starts_param = |at: usize| {
        let name = dsn[at..].bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        name > 0 && bytes.get(at + name) == Some(&b'=')
    };
    let mut out = String::with_capacity(dsn.len());
    let mut i = 0;
    while i < dsn.len() {
        let at_key = i == 0 || is_separator(bytes[i - 1]);
        let key = at_key
            .then(|| {
                // Compared as bytes: a key is ASCII, but what follows `i` may not be.
                SECRET_KEYS.iter().find(|k| {
                    bytes.get(i..i + k.len() + 1).is_some_and(|s| {
                        s[..k.len()].eq_ignore_ascii_case(k.as_bytes()) && s[k.len()] == b'='
                    })
                })
            })
            .flatten();
        let Some(key) = key else {
            let c = dsn[i..].chars().next().expect("i is on a char boundary");
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let value_start = i + key.len() + 1;
        // A quoted value (`password='a b'`) runs to its closing quote.
        let unquoted_from = match bytes.get(value_start) {
            Some(&quote @ (b'\'' | b'"')) => (value_start + 1..dsn.len())
                .find(|&j| bytes[j] == quote && bytes[j - 1] != b'\\')
                .map_or(dsn.len(), |j| j + 1),
            _ => value_start,
        };
        let value_end = (unquoted_from..dsn.len())
            .find(|&j| is_separator(bytes[j]) && bytes[j] != b'?' && starts_param(j + 1))
            .unwrap_or(dsn.len());
        out.push_str(&dsn[i..value_start]);
        out.push_str("***");
        i = value_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    const MINIMAL: &str =
        "dsn: memory\nidentity:\n  schemas:\n    - id: default\n      url: file://./s.json\n";

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
    fn serve_limits_have_safe_defaults_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "s.json", "{}");
        let a = write(dir.path(), "a.yml", MINIMAL);
        let limits = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.serve.limits;
        assert_eq!((limits.header_read_timeout.as_str(), limits.max_connections), ("10s", 1024));
        let env = vec![("SERVE_LIMITS_IDLE_TIMEOUT".to_string(), "2s".to_string())];
        let loaded = load(std::slice::from_ref(&a), env, false).unwrap();
        assert_eq!(loaded.config.serve.limits.idle_timeout, "2s");
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
    fn send_limits_are_on_by_default_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", MINIMAL);
        let sends = load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.security.send_limits;
        assert!(sends.enabled);
        assert_eq!((sends.address.max, sends.address.window.as_str()), (5, "1h"));
        assert_eq!((sends.ip.flows_per_minute, sends.ip.codes_per_minute), (60, 10));
        let env = vec![
            ("SECURITY_SEND_LIMITS_ENABLED".to_string(), "false".to_string()),
            ("SECURITY_SEND_LIMITS_ADDRESS_WINDOW".to_string(), "30m".to_string()),
        ];
        let sends = load(std::slice::from_ref(&a), env, false).unwrap().config.security.send_limits;
        assert_eq!((sends.enabled, sends.address.window.as_str()), (false, "30m"));
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
    fn cleanup_needs_no_more_configuration_than_a_dsn() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", "dsn: memory\nselfservice:\n  flows:\n    nonsense: 1\n");
        let config =
            load_for_cleanup(&[a], vec![("DATABASE_CLEANUP_BATCH_SIZE".into(), "5".into())]).unwrap();
        assert_eq!((config.dsn.as_str(), config.database.cleanup.batch_size), ("memory", 5));
        assert!(load_for_cleanup(&[], Vec::new()).is_ok());
    }

    #[test]
    fn unsupported_keys_are_collected_not_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(
            dir.path(),
            "a.yml",
            &format!(
                "{MINIMAL}courier:\n  channels: []\nselfservice:\n  flows:\n    verification:\n      ttl: 1h\n"
            ),
        );
        let loaded = load(&[a], Vec::new(), false).unwrap();
        assert_eq!(loaded.unsupported_keys, vec!["courier.channels", "selfservice.flows.verification.ttl"]);
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
        let err = load(&[a, d], Vec::new(), false).unwrap_err();
        assert!(err.to_string().contains("session.lifespan"), "{err}");
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
        assert_eq!(loaded.config.serve.public.trusted_proxies, ["127.0.0.1", "10.0.0.0/8", "fd00::/8"]);
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
            (id.free_failures, id.window.as_str(), id.initial_delay.as_str(), id.max_delay.as_str()),
            (20, "1h", "1s", "60s")
        );
        let pair = &throttling.identifier_per_ip;
        assert_eq!(
            (pair.free_failures, pair.window.as_str(), pair.initial_delay.as_str(), pair.max_delay.as_str()),
            (5, "1h", "1s", "15m")
        );
        assert_eq!((throttling.ip.max_failures, throttling.ip.window.as_str()), (30, "15m"));
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

    #[test]
    fn low_bcrypt_cost_is_raised_unless_dev() {
        let dir = tempfile::tempdir().unwrap();
        let a = write(dir.path(), "a.yml", &format!("{MINIMAL}hashers:\n  bcrypt:\n    cost: 8\n"));
        assert_eq!(load(std::slice::from_ref(&a), Vec::new(), false).unwrap().config.hashers.bcrypt.cost, 12);
        assert_eq!(load(&[a], Vec::new(), true).unwrap().config.hashers.bcrypt.cost, 8);
    }

    #[test]
    fn errors_and_debug_never_show_secrets() {
        assert_eq!(redact_dsn("postgres://u:hunter2@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact_dsn("memory"), "memory");
        assert_eq!(redact_dsn("sqlite:///var/lib/x.db?_fk=true"), "sqlite:///var/lib/x.db?_fk=true");
        assert_eq!(redact_dsn("postgres://u@db/x"), "postgres://u@db/x");
        let s = Secrets { cookie: vec!["hunter2hunter2hunter2".into()], ..Default::default() };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn dsn_passwords_are_hidden_whole() {
        // Passwords holding the characters that delimit a URL.
        for (dsn, expected) in [
            ("postgres://u:p@ss@db:5432/x", "postgres://u:***@db:5432/x"),
            ("postgres://u:a:b/c@d@db/x?sslmode=disable", "postgres://u:***@db/x?sslmode=disable"),
            ("postgres://u:s3cr%40t@db/x", "postgres://u:***@db/x"),
            ("smtps://mailer:hunter2@smtp.example.com:465/", "smtps://mailer:***@smtp.example.com:465/"),
        ] {
            assert_eq!(redact_dsn(dsn), expected);
        }
        // `password=` parameters, wherever they are and whatever they hold.
        for (dsn, expected) in [
            ("postgres://u@db/x?password=hunter2", "postgres://u@db/x?password=***"),
            (
                "postgres://db/x?sslmode=disable&Password=a&b@c/d&max_conns=5",
                "postgres://db/x?sslmode=disable&Password=***&max_conns=5",
            ),
            ("postgres://u:one@db/x?password=two", "postgres://u:***@db/x?password=***"),
            ("host=db user=u password='a b=c' dbname=x", "host=db user=u password=*** dbname=x"),
            (r#"password="x\" y=z" host=db"#, "password=*** host=db"),
            ("postgres://db/x?sslpassword=k&pwd=p", "postgres://db/x?sslpassword=***&pwd=***"),
        ] {
            assert_eq!(redact_dsn(dsn), expected);
        }
        // Keys that merely end in `password` are not secrets by that name.
        assert_eq!(redact_dsn("postgres://db/x?nopassword=1"), "postgres://db/x?nopassword=1");
        // Non-ASCII text where a key could start (found by the config fuzz target).
        assert_eq!(redact_dsn("po?????????\u{b2bd}?x"), "po?????????\u{b2bd}?x");
        assert_eq!(redact_dsn("db?x=\u{b2bd}&password=\u{b2bd}&y=1"), "db?x=\u{b2bd}&password=***&y=1");
        for secret in ["p@ss", "hunter2", "a:b/c@d", "s3cr", "a&b=c"] {
            for dsn in [format!("postgres://u:{secret}@db/x"), format!("postgres://db/x?password={secret}")] {
                assert!(!redact_dsn(&dsn).contains(secret), "{dsn}");
            }
        }
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("128MB"), Some(128 << 20));
        assert_eq!(parse_bytes("1GB"), Some(1 << 30));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_duration("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_duration("2562047h"), Some(Duration::from_secs(2_562_047 * 3600)));
        assert_eq!(parse_duration("99999999999h"), None);
    }
}
