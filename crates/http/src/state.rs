//! What every handler can reach: the domain services, the base URLs links
//! are built from, and the browser-facing settings (UI URLs, cookies).

use std::sync::Arc;

use chrono::Duration;
use latchkey_domain::IdentityManager;
use latchkey_domain::flow::login::LoginService;
use latchkey_domain::flow::recovery::RecoveryService;
use latchkey_domain::flow::registration::RegistrationService;
use latchkey_domain::flow::settings::SettingsService;
use latchkey_domain::flow::verification::VerificationService;
use latchkey_domain::send_limits::SendLimits;
use latchkey_domain::time::Clock;

/// `serve.public.base_url` and `serve.admin.base_url`, without a trailing slash.
#[derive(Debug, Clone)]
pub struct BaseUrls {
    pub public: String,
    pub admin: String,
}

impl BaseUrls {
    pub fn new(public: &str, admin: &str) -> Self {
        Self {
            public: public.trim_end_matches('/').to_string(),
            admin: admin.trim_end_matches('/').to_string(),
        }
    }
}

/// Cookie attributes shared by the session and CSRF cookies.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// False only in `--dev`, so cookies work over plain http.
    pub secure: bool,
    pub domain: Option<String>,
    pub path: String,
    /// `Lax`, `Strict` or `None`; forced to `Lax` when not secure.
    pub same_site: String,
}

/// Where browsers are sent and which cookies they get.
#[derive(Debug, Clone)]
pub struct WebSettings {
    pub default_browser_return_url: String,
    /// Allowed `return_to` prefixes; never empty (defaults to our own origins).
    pub allowed_return_urls: Vec<String>,
    pub login_ui_url: String,
    pub registration_ui_url: String,
    pub settings_ui_url: String,
    pub recovery_ui_url: String,
    pub verification_ui_url: String,
    /// Where a finished verification flow sends the user (its `ui.action`).
    pub verification_return_url: String,
    /// The `show_verification_ui` hook after registration (or the legacy flag):
    /// `continue_with` names the verification flow a code went out in.
    pub registration_shows_verification: bool,
    /// The same hook after a settings change.
    pub settings_shows_verification: bool,
    /// How long an admin-issued recovery code lives unless the request says otherwise.
    pub recovery_code_lifespan: Duration,
    pub error_ui_url: String,
    pub logout_return_url: String,
    pub cookies: CookieSettings,
    pub session_cookie_name: String,
    pub session_cookie_persistent: bool,
    /// `csrf_token_<hex sha256 of the public base URL>`.
    pub csrf_cookie_name: String,
    pub session_lifespan: Duration,
    pub earliest_possible_extend: Duration,
    /// `serve.public.trusted_proxies`: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: crate::client_ip::TrustedProxies,
    /// `--dev`: courier bodies are shown, cookies work without TLS, and
    /// `/ui/dev/mail` lists the outbox.
    pub dev: bool,
    /// `ui.enabled`: the account pages under `/ui/` are served.
    pub pages: bool,
    /// API flows refuse requests with an `Origin` or cookies (browsers), unless
    /// `--dev` with `DEV_DISABLE_API_FLOW_ENFORCEMENT=true` turned that off.
    pub enforce_api_flows: bool,
}

/// What every handler reaches through `State`. axum clones the state for
/// each request, so it is one `Arc` (one shared count to touch) rather than
/// a dozen: cloning and dropping the services one by one cost more CPU per
/// request than answering `whoami` itself (docs/performance.md).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    pub fn new(services: Services) -> Self {
        Self(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

pub struct Services {
    /// Readiness and the readings metrics report.
    pub health: latchkey_domain::health::Health,
    /// What `/admin/health/config` answers (see `admin::health::config_revision`).
    pub config_revision: String,
    /// Where every time the handlers decide by comes from.
    pub clock: Arc<dyn Clock>,
    pub identities: IdentityManager,
    pub login: LoginService,
    pub registration: RegistrationService,
    pub settings: SettingsService,
    pub recovery: RecoveryService,
    pub verification: VerificationService,
    pub sessions: latchkey_domain::session_service::SessionService,
    pub flows: latchkey_domain::flow::Flows,
    /// Errors kept for the error UI (the error flow).
    pub flow_errors: latchkey_domain::flow::errors::FlowErrors,
    pub outbox: latchkey_domain::courier::Outbox,
    /// Per-client limits on starting flows and asking for codes.
    pub send_limits: SendLimits,
    pub urls: Arc<BaseUrls>,
    pub web: Arc<WebSettings>,
    pub version: &'static str,
    /// What `/metrics/prometheus` exports.
    pub metrics: Arc<crate::metrics::Metrics>,
}
