//! The configuration's types and their defaults. Values are typed as they
//! are used (durations, sizes, choices), so serde parses each once, when
//! loaded, and a bad value is refused under its key.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::redact::redact_dsn;
use super::values::{ByteSize, Duration, TrustedNetwork};

/// `ui`, Latchkey's own block (Kratos has no pages): with `enabled`, the
/// public listener serves account pages under `/ui/` (login, registration,
/// recovery, verification, settings, error, welcome), and
/// `selfservice.default_browser_return_url` defaults to the welcome page.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct UiConfig {
    pub enabled: bool,
}

/// Kratos's `tracing` block. `provider: otel` exports spans over OTLP/HTTP
/// (`providers.otlp`); empty (the default) exports nothing and installs no
/// exporter at all. Other providers Kratos knows stop the start.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TracingConfig {
    pub provider: TracingProvider,
    /// `service.name` of the exported spans; empty means `latchkey`.
    pub service_name: String,
    /// `deployment.environment.name`, when set.
    pub deployment_environment: String,
    /// Only `otlp` is read; other providers' blocks are reported as unsupported keys.
    pub providers: TracingProviders,
}

/// `tracing.provider`: none, or `otel`, the one Latchkey exports with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TracingProvider {
    #[default]
    None,
    Otel,
}

impl std::str::FromStr for TracingProvider {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Ok(Self::None),
            "otel" => Ok(Self::Otel),
            other => Err(format!(
                "`{other}` is not supported: Latchkey exports traces only over OTLP/HTTP; \
                 set tracing.provider to `otel` (with tracing.providers.otlp) or leave it empty"
            )),
        }
    }
}

impl Serialize for TracingProvider {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(match self {
            Self::None => "",
            Self::Otel => "otel",
        })
    }
}

impl<'de> Deserialize<'de> for TracingProvider {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

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
        self.provider == TracingProvider::Otel
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

/// `security`: Latchkey's own abuse limits (Kratos has no such block), on by
/// default. Counts live in the database, so they hold across restarts and
/// across servers sharing PostgreSQL.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Security {
    pub login_throttling: LoginThrottling,
    pub send_limits: SendLimits,
}

/// `security.send_limits`: recovery, verification and sign-up mails per address, and
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

/// Code mails per address and purpose (recovery, verification, sign-up) within `window`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct AddressSendLimit {
    pub max: u64,
    pub window: Duration,
}

impl Default for AddressSendLimit {
    fn default() -> Self {
        Self { max: 5, window: Duration::hours(1) }
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
    pub interval: Duration,
    /// Rows per batch; each batch is its own short transaction.
    pub batch_size: u32,
    pub sleep: CleanupSleep,
    /// Records that expired, were used, revoked or delivered less than this
    /// long ago are kept. Kratos's default is `0s`; a day's grace keeps the
    /// "flow expired" answer (instead of "not found") and recent mail in
    /// the admin API for a while, at the cost of a day of dead rows.
    pub older_than: Duration,
}

impl Default for CleanupConfig {
    fn default() -> Self {
        Self {
            interval: Duration::hours(1),
            batch_size: 100,
            sleep: CleanupSleep::default(),
            older_than: Duration::hours(24),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CleanupSleep {
    /// Pause between tables, so a large backlog is worked off gently.
    pub tables: Duration,
}

impl Default for CleanupSleep {
    fn default() -> Self {
        Self { tables: Duration::minutes(1) }
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
                window: Duration::hours(1),
                initial_delay: Duration::from_secs(1),
                max_delay: Duration::from_secs(60),
            },
            identifier_per_ip: IdentifierThrottling {
                free_failures: 5,
                window: Duration::hours(1),
                initial_delay: Duration::from_secs(1),
                max_delay: Duration::minutes(15),
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
    pub window: Duration,
    pub initial_delay: Duration,
    pub max_delay: Duration,
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
    pub window: Duration,
}

impl Default for IpThrottling {
    fn default() -> Self {
        Self { max_failures: 30, window: Duration::minutes(15) }
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
    pub delivery_strategy: DeliveryStrategy,
    pub smtp: SmtpSettings,
    /// Retries after a failed first attempt before a message is abandoned
    /// (as in Kratos: 5 means at most 6 attempts). Unset (the default): no
    /// count, a message is retried until its code expires or
    /// `delivery_horizon` passes, so no relay outage of any length short of
    /// that loses it. Set (Kratos's default was 5), it is honoured as well.
    pub message_retries: Option<i32>,
    /// How long a message without a code is worth sending (Latchkey).
    pub delivery_horizon: Duration,
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
            delivery_strategy: DeliveryStrategy::Smtp,
            smtp: SmtpSettings::default(),
            message_retries: None,
            delivery_horizon: Duration::hours(24),
            backoff: BackoffSettings::default(),
            template_override_path: None,
            templates: Value::Null,
        }
    }
}

/// `courier.delivery_strategy`: only `smtp` is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStrategy {
    #[default]
    Smtp,
}

/// `courier.backoff`: retries wait `initial`, then twice that, and so on up
/// to `max`, each pause drawn from its upper half (jitter).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct BackoffSettings {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for BackoffSettings {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), max: Duration::minutes(10) }
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
    pub lifespan: Duration,
    pub style: String,
    pub after: After,
}

impl Default for LoginFlow {
    fn default() -> Self {
        Self {
            ui_url: String::new(),
            lifespan: Duration::hours(1),
            style: "unified".into(),
            after: After::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct RegistrationFlow {
    pub ui_url: String,
    pub lifespan: Duration,
    pub enabled: bool,
    pub style: RegistrationStyle,
    pub enable_legacy_one_step: Option<bool>,
    pub after: After,
}

impl Default for RegistrationFlow {
    fn default() -> Self {
        Self {
            ui_url: String::new(),
            lifespan: Duration::hours(1),
            enabled: true,
            style: RegistrationStyle::ProfileFirst,
            enable_legacy_one_step: None,
            after: After::default(),
        }
    }
}

/// `selfservice.flows.registration.style`; Kratos's default is `profile_first`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStyle {
    /// One step.
    Unified,
    /// Traits, then credentials.
    #[default]
    ProfileFirst,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SettingsFlow {
    pub ui_url: String,
    pub lifespan: Duration,
    /// How recent a sign-in must be to change a password or identifier.
    pub privileged_session_max_age: Duration,
    pub required_aal: RequiredAal,
    pub after: After,
}

impl Default for SettingsFlow {
    fn default() -> Self {
        Self {
            ui_url: String::new(),
            lifespan: Duration::hours(1),
            privileged_session_max_age: Duration::hours(1),
            required_aal: RequiredAal::HighestAvailable,
            after: After::default(),
        }
    }
}

/// `aal1` or `highest_available` (Kratos's default), for settings and whoami.
pub use latchkey_domain::aal::RequiredAal;

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
    /// After a sign-up or sign-in with an emailed code.
    pub code: MethodAfter,
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

    /// The code method's hooks when it has its own, else the defaults.
    pub fn code_hooks(&self) -> impl Iterator<Item = &str> {
        let hooks = if self.code.hooks.is_empty() { &self.hooks } else { &self.code.hooks };
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
    pub lifespan: Duration,
    #[serde(rename = "use")]
    pub method: FlowMethod,
    /// Tell unknown addresses that someone tried to recover them.
    pub notify_unknown_recipients: bool,
    pub after: After,
}

impl Default for RecoveryFlow {
    fn default() -> Self {
        Self {
            enabled: false,
            ui_url: String::new(),
            lifespan: Duration::hours(1),
            method: FlowMethod::Code,
            notify_unknown_recipients: false,
            after: After::default(),
        }
    }
}

/// Recovery's and verification's `use`: only `code` is built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowMethod {
    #[default]
    Code,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct VerificationFlow {
    pub enabled: bool,
    pub ui_url: String,
    pub lifespan: Duration,
    #[serde(rename = "use")]
    pub method: FlowMethod,
    /// Tell unknown addresses that someone tried to verify them.
    pub notify_unknown_recipients: bool,
    pub after: After,
}

impl Default for VerificationFlow {
    fn default() -> Self {
        Self {
            enabled: false,
            ui_url: String::new(),
            lifespan: Duration::hours(1),
            method: FlowMethod::Code,
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
    pub totp: TotpMethod,
    pub lookup_secret: LookupSecretMethod,
}

/// `selfservice.methods.totp`: authenticator apps as a second factor. Off
/// by default, as in Kratos; on, it needs `secrets.cipher`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TotpMethod {
    pub enabled: bool,
    pub config: TotpMethodConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct TotpMethodConfig {
    /// Named in the app beside the account; Kratos's default is the public
    /// base URL's host.
    pub issuer: Option<String>,
}

/// `selfservice.methods.lookup_secret`: backup recovery codes. Off by
/// default, as in Kratos; on, it needs `secrets.cipher`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct LookupSecretMethod {
    pub enabled: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CodeMethod {
    pub enabled: bool,
    /// Sign in with an emailed code instead of a password (`aal1`).
    pub passwordless_enabled: bool,
    /// Step a session up to `aal2` with an emailed code. Kratos allows this
    /// or `passwordless_enabled`, not both.
    pub mfa_enabled: bool,
    pub config: CodeMethodConfig,
}

impl Default for CodeMethod {
    fn default() -> Self {
        Self {
            enabled: true,
            passwordless_enabled: false,
            mfa_enabled: false,
            config: CodeMethodConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct CodeMethodConfig {
    /// How long a code works; shorter than Kratos's 1h by default.
    pub lifespan: Duration,
    /// Code attempts per flow.
    pub max_submissions: u64,
    /// Latchkey's own: wrong codes per address (and purpose), across flows,
    /// within the window. Past it a code is judged only on the first attempt
    /// made against it, so the owner's fresh code still works while someone
    /// else fails codes for the address. Judged guesses per address and day
    /// stay <= this + codes sent a day: 10 + 5/h x 24 = 130, a chance of at
    /// most 1.3e-4 to guess a 6-digit code.
    pub max_failures_per_address: u64,
    pub failure_window: Duration,
}

impl Default for CodeMethodConfig {
    fn default() -> Self {
        Self {
            lifespan: Duration::minutes(15),
            max_submissions: 5,
            max_failures_per_address: 10,
            failure_window: Duration::hours(24),
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
    pub lifespan: Duration,
    /// Unset means the lifespan: sessions may always be extended.
    pub earliest_possible_extend: Option<Duration>,
    pub cookie: SessionCookie,
    pub whoami: SessionWhoami,
}

/// `session.whoami`: what `GET /sessions/whoami` (and `GET /sessions`) asks of a session.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionWhoami {
    pub required_aal: RequiredAal,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            lifespan: Duration::hours(24),
            earliest_possible_extend: None,
            cookie: SessionCookie::default(),
            whoami: SessionWhoami::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct SessionCookie {
    pub name: String,
    pub persistent: bool,
    pub domain: Option<String>,
    pub path: Option<String>,
    pub same_site: Option<SameSite>,
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
    pub same_site: SameSite,
}

impl Default for Cookies {
    fn default() -> Self {
        Self { domain: None, path: "/".into(), same_site: SameSite::Lax }
    }
}

/// A cookie's `SameSite` attribute, spelt as sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum SameSite {
    #[default]
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lax => "Lax",
            Self::Strict => "Strict",
            Self::None => "None",
        }
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
    pub header_read_timeout: Duration,
    /// A request body must arrive within this time, or the answer is 408.
    pub body_read_timeout: Duration,
    /// A kept-alive connection with no request in flight is closed after
    /// this long (or after `header_read_timeout`, whichever is shorter).
    pub idle_timeout: Duration,
    /// Connections served at once per listener; more wait to be accepted.
    pub max_connections: u32,
}

impl Default for ServeLimits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
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
    pub trusted_proxies: Vec<TrustedNetwork>,
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
    pub level: LogLevel,
    pub format: LogFormat,
    pub leak_sensitive_values: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self { level: LogLevel::Info, format: LogFormat::Text, leak_sensitive_values: false }
    }
}

/// Kratos's levels (`warn` is accepted for `warning`); `fatal` and `panic`
/// log errors only, as nothing in Latchkey logs above an error.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Trace,
    Debug,
    #[default]
    Info,
    #[serde(alias = "warn")]
    Warning,
    Error,
    Fatal,
    Panic,
}

impl LogLevel {
    /// The level as `tracing`'s filters spell it.
    pub fn filter(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warn",
            LogLevel::Error | LogLevel::Fatal | LogLevel::Panic => "error",
        }
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
    /// Argon2id, as Kratos's `argon2` is; `argon2id` is taken for it too.
    #[serde(alias = "argon2id")]
    Argon2,
    #[default]
    Bcrypt,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct Argon2 {
    pub memory: ByteSize,
    pub iterations: u32,
    /// Unset means twice the number of CPUs, as Kratos does.
    pub parallelism: Option<u32>,
    pub salt_length: u32,
    pub key_length: u32,
    pub expected_duration: Duration,
    pub expected_deviation: Duration,
    pub dedicated_memory: ByteSize,
}

impl Default for Argon2 {
    fn default() -> Self {
        Self {
            memory: ByteSize::from_bytes(128 << 20),
            iterations: 1,
            parallelism: None,
            salt_length: 16,
            key_length: 32,
            expected_duration: Duration::from_millis(500),
            expected_deviation: Duration::from_millis(500),
            dedicated_memory: ByteSize::from_bytes(1 << 30),
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
