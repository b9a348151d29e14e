//! Builds the running server from a [`Config`]: opens storage (migrating
//! SQLite, checking PostgreSQL), loads identity schemas, binds both
//! listeners and serves until told to stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::serve::Routes;
use latchkey_courier::{SmtpConfig, SmtpMailer};
use latchkey_domain::aal::AalPolicy;
use latchkey_domain::cleanup::{self, CleanupSettings};
use latchkey_domain::courier::Dispatcher;
use latchkey_domain::flow::code::CodeSettings;
use latchkey_domain::flow::code_requests::{CodeRequestSweeper, sweep_periodically};
use latchkey_domain::flow::login::{LoginHooks, RequireVerified};
use latchkey_domain::flow::login::{LoginService, LoginSettings};
use latchkey_domain::flow::login_code::{CodeLogin, CodeLoginSettings};
use latchkey_domain::flow::login_floor::FailureFloor;
use latchkey_domain::flow::login_throttle::{
    AddressLimit, IdentifierLimit, LoginThrottle, LoginThrottleSettings,
};
use latchkey_domain::flow::recovery::{RecoveryService, RecoverySettings};
use latchkey_domain::flow::registration::{RegistrationService, RegistrationSettings};
use latchkey_domain::flow::registration_code::RegistrationCodes;
use latchkey_domain::flow::settings::{SettingsService, SettingsSettings};
use latchkey_domain::flow::verification::{VerificationService, VerificationSettings};
use latchkey_domain::password_policy::PasswordPolicy;
use latchkey_domain::schema::{IdentitySchema, SchemaSource};
use latchkey_domain::second_factor::{LookupSecrets, SecondFactors, SecretCipher, Totp};
use latchkey_domain::send_limits::{SendLimitSettings, SendLimits};
use latchkey_domain::session_cache::{CachingStore, SessionCache};
use latchkey_domain::session_service::SessionService;
use latchkey_domain::time::{Clock, SystemClock};
use latchkey_domain::{IdentityManager, SchemaRegistry, Store};
use latchkey_hash::{HasherConfig, PasswordHasher};
use latchkey_http::{AppState, BaseUrls, CookieSettings, Metrics, Services, TrustedProxies, WebSettings};
use latchkey_store_postgres::{Invalidation, PgStore};
use latchkey_store_sqlite::SqliteStore;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::{Config, HashAlgorithm, RegistrationStyle};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not open the database at {dsn}: {reason}")]
    Database { dsn: String, reason: String },
    #[error(
        "the database schema is not current ({0} migration(s) pending); apply them with `latchkey migrate sql -e --yes` (DSN from the environment) or `latchkey migrate sql -c CONFIG --yes`"
    )]
    PendingMigrations(usize),
    #[error("unsupported DSN {0}: expected `memory`, `sqlite://PATH` or `postgres://…`")]
    UnsupportedDsn(String),
    #[error(transparent)]
    Schema(#[from] latchkey_domain::SchemaError),
    #[error("courier.smtp: {0}")]
    Courier(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("serve.public.cors: {0}")]
    Cors(String),
    #[error("could not listen on {addr}{}: {source}{}", key_hint(.key), in_use_hint(.source))]
    Bind { addr: String, key: Option<&'static str>, source: std::io::Error },
    #[error("courier.smtp.connection_uri is not set: there is nowhere to send to")]
    NoRelay,
    #[error("--expose-metrics-port: {0}")]
    MetricsListener(String),
    #[error("secrets.cipher is not set: selfservice.methods.{0} stores its secrets encrypted with it")]
    NoCipherSecret(&'static str),
}

/// The key (and its variable) that sets a listener's port.
fn key_hint(key: &Option<&'static str>) -> String {
    key.map(|key| format!(" (`{key}`, env {})", key.to_uppercase().replace('.', "_"))).unwrap_or_default()
}

fn in_use_hint(source: &std::io::Error) -> &'static str {
    match source.kind() {
        std::io::ErrorKind::AddrInUse => {
            "; another process listens there (another latchkey?): stop it or choose another port"
        }
        std::io::ErrorKind::AddrNotAvailable => "; this machine has no such address: change the host",
        _ => "",
    }
}

/// Which backend a DSN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend_of(dsn: &str) -> Option<Backend> {
    if latchkey_store_sqlite::handles(dsn) {
        Some(Backend::Sqlite)
    } else if latchkey_store_postgres::handles(dsn) {
        Some(Backend::Postgres)
    } else {
        None
    }
}

/// Connects to the database, wrapped in the `whoami` cache. On PostgreSQL,
/// other processes' writes evict through notifications, the cache is off
/// while the listener reconnects, and a shorter time-to-live (the bound the
/// README documents) limits what a lost notification could leave stale.
async fn open_cached_store(
    dsn: &str,
    metrics: Arc<Metrics>,
) -> Result<(Arc<dyn Store>, Backend, Option<JoinHandle<()>>), StartError> {
    let redacted = crate::config::redact_dsn(dsn);
    let fail =
        |e: latchkey_domain::StoreError| StartError::Database { dsn: redacted.clone(), reason: cause(e) };
    let mut listener = None;
    let (raw, backend, cache): (Arc<dyn Store>, _, _) = match backend_of(dsn) {
        Some(Backend::Sqlite) => {
            // The embedded database has one writer process: this one.
            let cache = Arc::new(SessionCache::new(100_000, Duration::from_secs(600)));
            (Arc::new(SqliteStore::connect(dsn).await.map_err(fail)?), Backend::Sqlite, cache)
        }
        Some(Backend::Postgres) => {
            let pg = PgStore::connect(dsn).await.map_err(fail)?;
            let cache = Arc::new(SessionCache::new(100_000, Duration::from_secs(60)));
            let evict = Arc::clone(&cache);
            let handle = pg
                .listen_for_invalidations(move |what| match what {
                    Invalidation::Identity(id) => evict.evict_identity(id),
                    Invalidation::Session(id) => evict.evict_session(id),
                    Invalidation::All => evict.clear(),
                    Invalidation::Lost => evict.suspend(),
                    Invalidation::Listening => evict.resume(),
                })
                .await
                .map_err(fail)?;
            listener = Some(handle);
            (Arc::new(pg), Backend::Postgres, cache)
        }
        None => return Err(StartError::UnsupportedDsn(redacted)),
    };
    Ok((Arc::new(CachingStore::new(raw, cache).with_recorder(metrics)), backend, listener))
}

/// A store error's cause as start-up reports it: the cause alone, as
/// "database error" is already said by "could not open the database".
fn cause(e: latchkey_domain::StoreError) -> String {
    match e {
        latchkey_domain::StoreError::Backend(cause) => cause.to_string(),
        other => other.to_string(),
    }
}

/// Connects to the database a DSN names, without migrating.
pub async fn open_store(dsn: &str) -> Result<(Arc<dyn Store>, Backend), StartError> {
    let redacted = crate::config::redact_dsn(dsn);
    let fail =
        |e: latchkey_domain::StoreError| StartError::Database { dsn: redacted.clone(), reason: cause(e) };
    match backend_of(dsn) {
        Some(Backend::Sqlite) => {
            Ok((Arc::new(SqliteStore::connect(dsn).await.map_err(fail)?), Backend::Sqlite))
        }
        Some(Backend::Postgres) => {
            Ok((Arc::new(PgStore::connect(dsn).await.map_err(fail)?), Backend::Postgres))
        }
        None => Err(StartError::UnsupportedDsn(redacted)),
    }
}

/// The hasher `hashers.*` describes.
pub fn hasher_config(config: &Config) -> HasherConfig {
    match config.hashers.algorithm {
        HashAlgorithm::Bcrypt => HasherConfig::Bcrypt { cost: config.hashers.bcrypt.cost },
        HashAlgorithm::Argon2 => {
            let a = &config.hashers.argon2;
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
            let memory = a.memory.bytes() / 1024;
            HasherConfig::Argon2 {
                memory_kib: u32::try_from(memory).unwrap_or(u32::MAX),
                iterations: a.iterations,
                parallelism: a.parallelism.unwrap_or(2 * cpus),
                salt_length: a.salt_length,
                key_length: a.key_length,
            }
        }
    }
}

/// The courier's dispatcher, when `courier.smtp.connection_uri` is set.
pub fn dispatcher(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
) -> Result<Option<Dispatcher>, StartError> {
    let Some(mailer) = smtp_mailer(config)? else {
        return Ok(None);
    };
    Ok(Some(Dispatcher::new(store, clock, Arc::new(mailer), config.retry_policy())))
}

/// The SMTP relay `courier.smtp` names, if any (nothing is connected yet).
fn smtp_mailer(config: &Config) -> Result<Option<SmtpMailer>, StartError> {
    let smtp = &config.courier.smtp;
    if smtp.connection_uri.is_empty() {
        return Ok(None);
    }
    let mailer = SmtpMailer::new(SmtpConfig {
        connection_uri: smtp.connection_uri.clone(),
        from_address: smtp.from_address.clone(),
        from_name: smtp.from_name.clone(),
        headers: smtp.headers.clone(),
        local_name: smtp.local_name.clone(),
    })
    .map_err(|e| StartError::Courier(e.into()))?;
    Ok(Some(mailer))
}

/// A server with both listeners bound, ready to run.
pub struct Application {
    public: TcpListener,
    admin: TcpListener,
    state: AppState,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// PostgreSQL's cache-invalidation listener; it holds a pooled connection.
    listener: Option<AbortOnDrop>,
    courier: Option<Dispatcher>,
    /// The periodic database cleanup and its interval, unless turned off.
    cleanup: Option<(CleanupSettings, Duration)>,
    limits: crate::serve::Limits,
    body_read_timeout: Duration,
    passwords: Passwords,
    /// `serve.public.cors`, when enabled.
    cors: Option<latchkey_http::CorsLayer>,
    /// Set when spans are exported (`tracing.provider: otel`).
    span_hooks: Option<latchkey_http::SpanHooks>,
    /// The configuration it was built from, to tell what a reload changes.
    running: Config,
    /// Where to read the configuration again, when hot reload is on.
    reload: Option<crate::reload::Source>,
}

/// Made once per process and kept across reloads: the hashing threads, and
/// what password logins have learned about the cost of each kind of hash.
#[derive(Clone)]
pub(crate) struct Passwords {
    pub hasher: PasswordHasher,
    pub failure_floor: FailureFloor,
}

/// Stops a background task when its owner goes away, built or not run.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Application {
    pub async fn build(config: &Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// [`build`](Self::build) with every time-based rule reading `clock`
    /// (tests move it forward rather than wait).
    pub async fn build_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        // Checked when the configuration was loaded; checked again for
        // configurations built in code.
        let cors = latchkey_http::cors_layer(&config.serve.public.cors.settings())
            .map_err(|e| StartError::Cors(e.to_string()))?;
        // Made first: the store, the hasher and the courier report into it.
        let metrics = Arc::new(Metrics::new());
        let schemas = preflight(config)?;
        let (store, listener) = open_current_store(config, metrics.clone()).await?;
        let passwords =
            Passwords { hasher: hasher(config, &metrics).await, failure_floor: FailureFloor::new() };
        let (public, admin, urls) = bind_listeners(config).await?;
        let identities =
            IdentityManager::new(store.clone(), clock.clone(), schemas, passwords.hasher.clone());
        let services = domain_services(
            config,
            store.clone(),
            clock.clone(),
            identities,
            passwords.clone(),
            urls,
            metrics.clone(),
        )?;
        let courier = courier(config, store.clone(), clock.clone(), metrics)?;
        Ok(Self {
            public,
            admin,
            state: AppState::new(services),
            store,
            clock,
            listener,
            courier,
            cleanup: periodic_cleanup(config),
            limits: crate::serve::Limits::from_config(&config.serve.limits),
            body_read_timeout: config.serve.limits.body_read_timeout.std(),
            passwords,
            cors,
            span_hooks: config.tracing.exports().then_some(crate::trace_export::SPAN_HOOKS),
            running: config.clone(),
            reload: None,
        })
    }

    /// Watches the files `source` names and applies their changes while
    /// running (see `crate::reload`).
    pub fn reload_from(mut self, source: crate::reload::Source) -> Self {
        self.reload = Some(source);
        self
    }

    /// The server's password hasher; its [`PasswordHasher::verifications`]
    /// count shows how many login attempts reached it.
    pub fn password_hasher(&self) -> PasswordHasher {
        self.passwords.hasher.clone()
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public.local_addr().expect("bound listener has an address")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr().expect("bound listener has an address")
    }

    /// Serves both APIs until `shutdown` resolves, then lets in-flight
    /// requests finish and closes the database.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
        let wait = |mut rx: tokio::sync::watch::Receiver<()>| async move {
            let _ = rx.changed().await;
        };
        let (public_router, admin_router) =
            crate::reload::routers(self.state.clone(), self.cors, self.body_read_timeout, self.span_hooks);
        let (public_routes, admin_routes) = (Routes::new(public_router), Routes::new(admin_router));
        // The services in force: the start's, until a reload replaces them.
        let services = tokio::sync::watch::Sender::new(self.state.clone());
        let reload = self.reload.take().map(|source| {
            let parts = crate::reload::Parts {
                store: self.store.clone(),
                clock: self.clock.clone(),
                passwords: self.passwords.clone(),
                metrics: self.state.metrics.clone(),
                urls: (*self.state.urls).clone(),
                span_hooks: self.span_hooks,
                running: self.running.clone(),
            };
            let watching = crate::reload::watch_files(
                source,
                parts,
                public_routes.clone(),
                admin_routes.clone(),
                services.clone(),
                stop_rx.clone(),
            );
            tokio::spawn(watching)
        });
        let public = crate::serve::serve(self.public, public_routes, self.limits, stop_rx.clone());
        // The courier stops with the listeners; a send in progress finishes first.
        let courier = self.courier.take().map(|dispatcher| {
            let stop = wait(stop_rx.clone());
            tokio::spawn(async move { dispatcher.run(std::time::Duration::from_secs(1), stop).await })
        });
        // Code requests a stopped server left unserved, served with the
        // services in force (a reload replaces them); one taken when the
        // listeners stop is ended by its transaction or claimed again later.
        let sweeper = {
            let (store, clock) = (self.store.clone(), self.clock.clone());
            let services = services.subscribe();
            let current = move || {
                let state = services.borrow();
                CodeRequestSweeper::new(
                    store.clone(),
                    clock.clone(),
                    state.recovery.clone(),
                    state.verification.clone(),
                    state.login.code_login().cloned(),
                )
            };
            let stop = wait(stop_rx.clone());
            tokio::spawn(sweep_periodically(current, std::time::Duration::from_secs(1), stop))
        };
        // So does the cleanup; a batch cut short rolls back.
        let cleanup = self.cleanup.take().map(|(settings, every)| {
            let stop = wait(stop_rx.clone());
            tokio::spawn(cleanup::run_periodically(
                self.store.clone(),
                self.clock.clone(),
                settings,
                every,
                stop,
            ))
        });
        let admin = crate::serve::serve(self.admin, admin_routes, self.limits, stop_rx);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(());
        });
        tokio::join!(public, admin);
        let _ = sweeper.await;
        for task in [courier, cleanup, reload].into_iter().flatten() {
            let _ = task.await;
        }
        // Dropping the guard aborts the listener and returns its connection.
        drop(self.listener);
        self.store.close().await;
        Ok(())
    }
}

/// The store with its schema current, and on PostgreSQL the cache's
/// invalidation listener (stopped if the start fails later).
async fn open_current_store(
    config: &Config,
    metrics: Arc<Metrics>,
) -> Result<(Arc<dyn Store>, Option<AbortOnDrop>), StartError> {
    let (store, backend, listener) = open_cached_store(&config.dsn, metrics).await?;
    let listener = listener.map(AbortOnDrop);
    let db_error = |e: latchkey_domain::StoreError| StartError::Database {
        dsn: config.redacted_dsn(),
        reason: cause(e),
    };
    match backend {
        // The embedded database belongs to this process: keep it current.
        Backend::Sqlite => store.migrate().await.map_err(db_error)?,
        // A shared database is migrated deliberately, by an operator.
        Backend::Postgres => {
            let pending =
                store.migration_status().await.map_err(db_error)?.iter().filter(|m| !m.applied).count();
            if pending > 0 {
                // The listener holds a pooled connection.
                drop(listener);
                store.close().await;
                return Err(StartError::PendingMigrations(pending));
            }
        }
    }
    Ok((store, listener))
}

/// The identity use cases on the configured database, for commands that
/// write identities without serving (`identities import`): SQLite is
/// migrated as `serve` does, PostgreSQL must be current.
pub async fn identity_manager(config: &Config) -> Result<IdentityManager, StartError> {
    let schemas = preflight(config)?;
    let (store, _listener) = open_current_store(config, Arc::new(Metrics::new())).await?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hasher = PasswordHasher::new(hasher_config(config), cpus);
    Ok(IdentityManager::new(store, Arc::new(SystemClock), schemas, hasher))
}

/// What can be checked of a configuration without opening its database or
/// binding its ports: the identity schemas load, the mail templates parse,
/// the SMTP relay's URL reads, second factors have their cipher secret.
/// Runs before the database opens, so a mistake here leaves no new database
/// file behind; `latchkey config check` runs it too.
pub fn preflight(config: &Config) -> Result<Arc<SchemaRegistry>, StartError> {
    templates(config)?;
    smtp_mailer(config)?;
    if let Some(method) = config.second_factor_methods().next() {
        SecretCipher::new(&config.secrets.cipher).ok_or(StartError::NoCipherSecret(method))?;
    }
    Ok(Arc::new(SchemaRegistry::load(&schema_sources(config), &config.identity.default_schema_id)?))
}

pub(crate) fn schema_sources(config: &Config) -> Vec<SchemaSource> {
    config.identity.schemas.iter().map(|s| SchemaSource { id: s.id.clone(), url: s.url.clone() }).collect()
}

/// The hasher, sized to the machine and reporting into `metrics`, with its
/// dummy hash made: the first unknown identifier would otherwise wait for
/// it, and stand out by that wait.
async fn hasher(config: &Config, metrics: &Metrics) -> PasswordHasher {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hasher =
        PasswordHasher::new(hasher_config(config), cpus).with_wait_observer(metrics.hash_wait_observer());
    metrics.watch_hasher(hasher.clone());
    if let Err(e) = hasher.prepare_dummy().await {
        tracing::warn!(error = %e, "could not make the dummy password hash");
    }
    hasher
}

/// Both listeners, and the base URLs clients reach them at.
async fn bind_listeners(config: &Config) -> Result<(TcpListener, TcpListener, BaseUrls), StartError> {
    let (public, admin) = (&config.serve.public, &config.serve.admin);
    let public_listener =
        bind(&public.host, public.port.unwrap_or(4433)).await.map_err(|e| e.for_key("serve.public.port"))?;
    let admin_listener =
        bind(&admin.host, admin.port.unwrap_or(4434)).await.map_err(|e| e.for_key("serve.admin.port"))?;
    let urls = BaseUrls::new(
        &base_url(&public.base_url, &public_listener),
        &base_url(&admin.base_url, &admin_listener),
    );
    Ok((public_listener, admin_listener, urls))
}

/// The domain services the handlers call, wired to one another.
pub(crate) fn domain_services(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    identities: IdentityManager,
    passwords: Passwords,
    urls: BaseUrls,
    metrics: Arc<Metrics>,
) -> Result<Services, StartError> {
    let web = web_settings(config, &urls);
    let codes = Arc::new(code_settings(config));
    let templates = templates(config)?;
    let send_limits = send_limits(config, store.clone(), clock.clone());
    let flows = &config.selfservice.flows;
    let code_enabled = config.selfservice.methods.code.enabled;
    let verification = VerificationService::new(
        store.clone(),
        clock.clone(),
        templates.clone(),
        send_limits.clone(),
        VerificationSettings {
            public_base: urls.public.clone(),
            enabled: flows.verification.enabled && code_enabled,
            lifespan: flows.verification.lifespan.chrono(),
            codes: codes.clone(),
            notify_unknown_recipients: flows.verification.notify_unknown_recipients,
            return_url: web.verification_return_url.clone(),
        },
    );
    let factors = second_factors(config, store.clone(), clock.clone(), &urls.public)?;
    let throttle = LoginThrottle::new(store.clone(), clock.clone(), login_throttle_settings(config));
    let code_method = &config.selfservice.methods.code;
    let code_login = CodeLogin::new(
        store.clone(),
        clock.clone(),
        templates.clone(),
        send_limits.clone(),
        throttle.clone(),
        CodeLoginSettings {
            // As in Kratos, passwordless sign-in switches the method on.
            passwordless: code_method.passwordless_enabled,
            mfa: code_mfa(config),
            codes: codes.clone(),
            session_lifespan: web.session_lifespan,
        },
    );
    let login = LoginService::new(
        store.clone(),
        clock.clone(),
        passwords.hasher,
        passwords.failure_floor,
        throttle,
        verification.clone(),
        login_settings(config, &urls, &web, identities.schemas().default_schema()),
    )
    .with_second_factors(factors.clone())
    .with_code(code_login);
    let settings = SettingsService::new(
        store.clone(),
        clock.clone(),
        identities.clone(),
        templates.clone(),
        verification.clone(),
        factors,
        SettingsSettings {
            public_base: urls.public.clone(),
            lifespan: flows.settings.lifespan.chrono(),
            privileged_session_max_age: flows.settings.privileged_session_max_age.chrono(),
            password_policy: password_policy(config),
            revoke_sessions_after_password: flows
                .settings
                .after
                .password_hooks()
                .any(|h| h == "revoke_active_sessions"),
            required_aal: AalPolicy { required: flows.settings.required_aal, code_mfa: code_mfa(config) },
        },
    );
    let mut registration = RegistrationService::new(
        store.clone(),
        clock.clone(),
        identities.clone(),
        verification.clone(),
        registration_settings(config, &urls, &web),
    );
    let code_method = &config.selfservice.methods.code;
    if code_method.enabled && code_method.passwordless_enabled {
        registration = registration.with_codes(RegistrationCodes {
            codes: codes.clone(),
            renderer: templates.clone(),
            limits: send_limits.clone(),
            issue_session: flows.registration.after.code_hooks().any(|h| h == "session"),
        });
    }
    let recovery = RecoveryService::new(
        store.clone(),
        clock.clone(),
        identities.clone(),
        templates,
        settings.clone(),
        send_limits.clone(),
        RecoverySettings {
            public_base: urls.public.clone(),
            enabled: flows.recovery.enabled && code_enabled,
            lifespan: flows.recovery.lifespan.chrono(),
            codes,
            notify_unknown_recipients: flows.recovery.notify_unknown_recipients,
            session_lifespan: web.session_lifespan,
            privileged_session_max_age: flows.settings.privileged_session_max_age.chrono(),
        },
    );
    Ok(Services {
        health: latchkey_domain::health::Health::new(store.clone()),
        // The configuration as loaded, hashed when it names no revision.
        config_revision: latchkey_http::config_revision(
            config.revision.as_deref(),
            &serde_json::to_vec(config).unwrap_or_default(),
        ),
        sessions: SessionService::new(
            store.clone(),
            clock.clone(),
            web.session_lifespan,
            web.earliest_possible_extend,
            AalPolicy { required: config.session.whoami.required_aal, code_mfa: code_mfa(config) },
        ),
        flows: latchkey_domain::flow::Flows::new(store.clone()),
        flow_errors: latchkey_domain::flow::errors::FlowErrors::new(store.clone(), clock.clone()),
        clock,
        outbox: latchkey_domain::courier::Outbox::new(store),
        identities,
        login,
        registration,
        settings,
        recovery,
        verification,
        send_limits,
        urls: Arc::new(urls),
        web: Arc::new(web),
        version: VERSION,
        metrics,
    })
}

/// `selfservice.methods.totp` and `.lookup_secret`, sealing with
/// `secrets.cipher` (which loading demands when either is on).
pub(crate) fn second_factors(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    public_base: &str,
) -> Result<SecondFactors, StartError> {
    let Some(method) = config.second_factor_methods().next() else {
        return Ok(SecondFactors::default());
    };
    let cipher = SecretCipher::new(&config.secrets.cipher).ok_or(StartError::NoCipherSecret(method))?;
    let cipher = Arc::new(cipher);
    let methods = &config.selfservice.methods;
    Ok(SecondFactors {
        totp: methods.totp.enabled.then(|| {
            Totp::new(store.clone(), clock.clone(), cipher.clone(), config.totp_issuer(public_base))
        }),
        lookup: methods.lookup_secret.enabled.then(|| LookupSecrets::new(store, clock, cipher)),
    })
}

/// The mail templates: the built-in ones, overridden from a directory and
/// by `courier.templates`.
fn templates(config: &Config) -> Result<Arc<dyn latchkey_domain::courier::Renderer>, StartError> {
    let courier = &config.courier;
    let templates =
        latchkey_courier::Templates::load(courier.template_override_path.as_deref().map(Path::new))
            .and_then(|t| t.with_config(&courier.templates))
            .map_err(|e| StartError::Courier(e.into()))?;
    Ok(Arc::new(templates))
}

/// Whether an emailed code is a second factor.
fn code_mfa(config: &Config) -> bool {
    let code = &config.selfservice.methods.code;
    code.enabled && code.mfa_enabled
}

/// `selfservice.methods.code`.
fn code_settings(config: &Config) -> CodeSettings {
    let code = &config.selfservice.methods.code.config;
    CodeSettings {
        secrets: code_secrets(config),
        lifespan: code.lifespan.chrono(),
        max_submissions: code.max_submissions,
        address_failure_limit: code.max_failures_per_address,
        address_failure_window: code.failure_window.chrono(),
    }
}

/// `security.send_limits`, with a warning when every client would share one count.
fn send_limits(config: &Config, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> SendLimits {
    let sends = &config.security.send_limits;
    if sends.enabled
        && config.serve.public.trusted_proxies.is_empty()
        && is_loopback(&config.serve.public.host)
    {
        tracing::warn!(
            "security.send_limits counts flows and code requests per client address, and \
             serve.public.trusted_proxies is empty: behind a reverse proxy every client shares \
             the proxy's address and its limit"
        );
    }
    SendLimits::new(
        store,
        clock,
        SendLimitSettings {
            enabled: sends.enabled,
            address_max: sends.address.max,
            address_window: sends.address.window.chrono(),
            flows_per_minute: sends.ip.flows_per_minute,
            codes_per_minute: sends.ip.codes_per_minute,
        },
    )
}

/// `selfservice.flows.login` and the hooks after a password login.
fn login_settings(
    config: &Config,
    urls: &BaseUrls,
    web: &WebSettings,
    schema: &IdentitySchema,
) -> LoginSettings {
    let login = &config.selfservice.flows.login;
    let hooks = |names: Vec<&str>| {
        let has_hook = |name: &str| names.contains(&name);
        LoginHooks {
            revoke_active_sessions: has_hook("revoke_active_sessions"),
            send_verification: has_hook("verification"),
            show_verification_ui: has_hook("show_verification_ui"),
            require_verified_address: match has_hook("require_verified_address") {
                false => RequireVerified::Off,
                true if config.feature_flags.legacy_require_verified_login_error => {
                    RequireVerified::FormError
                }
                true => RequireVerified::SendCode,
            },
        }
    };
    LoginSettings {
        public_base: urls.public.clone(),
        lifespan: login.lifespan.chrono(),
        session_lifespan: web.session_lifespan,
        password_hooks: hooks(login.after.password_hooks().collect()),
        code_hooks: hooks(login.after.code_hooks().collect()),
        identifier_label: latchkey_domain::flow::login::identifier_label(schema),
    }
}

/// `selfservice.flows.registration`.
fn registration_settings(config: &Config, urls: &BaseUrls, web: &WebSettings) -> RegistrationSettings {
    let registration = &config.selfservice.flows.registration;
    RegistrationSettings {
        public_base: urls.public.clone(),
        lifespan: registration.lifespan.chrono(),
        session_lifespan: web.session_lifespan,
        enabled: registration.enabled,
        two_step: registration.style == RegistrationStyle::ProfileFirst
            && registration.enable_legacy_one_step != Some(true),
        issue_session: registration.after.password_hooks().any(|h| h == "session"),
        password_policy: password_policy(config),
    }
}

/// `selfservice.methods.password.config`.
fn password_policy(config: &Config) -> PasswordPolicy {
    let password = &config.selfservice.methods.password.config;
    PasswordPolicy {
        min_length: password.min_password_length,
        identifier_similarity_check: password.identifier_similarity_check_enabled,
        breached_check: password.haveibeenpwned_enabled,
    }
}

/// The courier's dispatcher, reporting into `metrics`, unless there is no relay.
fn courier(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
) -> Result<Option<Dispatcher>, StartError> {
    let courier = dispatcher(config, store, clock)?.map(|d| d.with_recorder(metrics));
    if courier.is_none() {
        tracing::warn!(
            "courier.smtp.connection_uri is not set: emails stay queued until a courier sends them"
        );
    }
    Ok(courier)
}

/// The cleanup `serve` runs and how often, unless `database.cleanup.interval` is 0s.
fn periodic_cleanup(config: &Config) -> Option<(CleanupSettings, Duration)> {
    let cleanup = config.cleanup_interval().map(|every| (config.cleanup_settings(None), every));
    if cleanup.is_none() {
        tracing::info!(
            "database.cleanup.interval is 0s: run `latchkey cleanup sql` to remove expired records"
        );
    }
    cleanup
}

/// `security.login_throttling`.
fn login_throttle_settings(config: &Config) -> LoginThrottleSettings {
    let throttling = &config.security.login_throttling;
    let identifier = |limit: &crate::config::IdentifierThrottling| IdentifierLimit {
        free_failures: limit.free_failures,
        window: limit.window.chrono(),
        initial_delay: limit.initial_delay.chrono(),
        max_delay: limit.max_delay.chrono(),
    };
    LoginThrottleSettings {
        enabled: throttling.enabled,
        identifier: identifier(&throttling.identifier),
        identifier_per_address: identifier(&throttling.identifier_per_ip),
        address: AddressLimit {
            max_failures: throttling.ip.max_failures,
            window: throttling.ip.window.chrono(),
        },
    }
}

/// Keys for one-time codes: `secrets.cookie`, else `secrets.default`, else a
/// random key for this process (codes then die with it; a warning says so).
fn code_secrets(config: &Config) -> Vec<String> {
    let configured =
        if config.secrets.cookie.is_empty() { &config.secrets.default } else { &config.secrets.cookie };
    if !configured.is_empty() {
        return configured.clone();
    }
    tracing::warn!(
        "secrets.cookie is not set: recovery and verification codes use a random key and stop working on restart"
    );
    vec![latchkey_domain::session::random_token("")]
}

/// Browser-facing settings: UI URLs default to the built-in pages under the
/// public base URL (served when `ui.enabled`, which also makes the welcome
/// page the default return URL); `return_to` is limited to our own origins
/// unless configured.
fn web_settings(config: &Config, urls: &BaseUrls) -> WebSettings {
    let ss = &config.selfservice;
    let or_default = |configured: &str, fallback: String| {
        if configured.is_empty() { fallback } else { configured.to_string() }
    };
    let landing = if config.ui.enabled { "/ui/welcome" } else { "/" };
    let default_return = or_default(&ss.default_browser_return_url, format!("{}{landing}", urls.public));
    let origin = |url: &str| -> String {
        url.split_once("://")
            .map(|(scheme, rest)| format!("{scheme}://{}", rest.split('/').next().unwrap_or_default()))
            .unwrap_or_default()
    };
    for entry in ss.allowed_return_urls.iter().filter(|e| !latchkey_http::allowed_return_url_is_usable(e)) {
        tracing::warn!(
            entry = entry.as_str(),
            "ignoring a selfservice.allowed_return_urls entry: not a URL, or a wildcard broader than *.example.com"
        );
    }
    let allowed_return_urls = if ss.allowed_return_urls.is_empty() {
        vec![origin(&default_return), origin(&urls.public)]
    } else {
        ss.allowed_return_urls.clone()
    };
    let session = &config.session;
    let lifespan = session.lifespan.chrono();
    let extend = session.earliest_possible_extend.map_or(lifespan, |extend| extend.chrono());
    WebSettings {
        login_ui_url: or_default(&ss.flows.login.ui_url, format!("{}/ui/login", urls.public)),
        registration_ui_url: or_default(
            &ss.flows.registration.ui_url,
            format!("{}/ui/registration", urls.public),
        ),
        settings_ui_url: or_default(&ss.flows.settings.ui_url, format!("{}/ui/settings", urls.public)),
        recovery_ui_url: or_default(&ss.flows.recovery.ui_url, format!("{}/ui/recovery", urls.public)),
        verification_ui_url: or_default(
            &ss.flows.verification.ui_url,
            format!("{}/ui/verification", urls.public),
        ),
        verification_return_url: or_default(
            &ss.flows.verification.after.default_browser_return_url,
            default_return.clone(),
        ),
        registration_shows_verification: config.feature_flags.legacy_continue_with_verification_ui
            || ss.flows.registration.after.password_hooks().any(|h| h == "show_verification_ui"),
        settings_shows_verification: ss
            .flows
            .settings
            .after
            .profile_hooks()
            .any(|h| h == "show_verification_ui"),
        recovery_code_lifespan: ss.methods.code.config.lifespan.chrono(),
        error_ui_url: or_default(&ss.flows.error.ui_url, format!("{}/ui/error", urls.public)),
        logout_return_url: or_default(
            &ss.flows.logout.after.default_browser_return_url,
            default_return.clone(),
        ),
        default_browser_return_url: default_return,
        allowed_return_urls,
        trusted_proxies: TrustedProxies::new(
            config.serve.public.trusted_proxies.iter().map(|n| n.network()).collect(),
        ),
        cookies: CookieSettings {
            secure: !config.dev,
            domain: session.cookie.domain.clone().or_else(|| config.cookies.domain.clone()),
            path: session.cookie.path.clone().unwrap_or_else(|| config.cookies.path.clone()),
            same_site: session.cookie.same_site.unwrap_or(config.cookies.same_site).as_str().to_string(),
        },
        session_cookie_name: session.cookie.name.clone(),
        session_cookie_persistent: session.cookie.persistent,
        csrf_cookie_name: latchkey_http::csrf_cookie_name(&format!("{}/", urls.public)),
        session_lifespan: lifespan,
        earliest_possible_extend: extend,
        dev: config.dev,
        pages: config.ui.enabled,
        enforce_api_flows: !config.disable_api_flow_enforcement,
    }
}

/// The configured base URL, or one derived from the bound address (port 0
/// picks a free port, so only the listener knows it).
fn base_url(configured: &str, listener: &TcpListener) -> String {
    if !configured.is_empty() {
        return configured.to_string();
    }
    match listener.local_addr() {
        Ok(addr) => format!("http://{addr}/"),
        Err(_) => String::new(),
    }
}

/// A listener on loopback is reached through a proxy on the same host.
fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

pub(crate) async fn bind(host: &str, port: u16) -> Result<TcpListener, StartError> {
    let addr = format!("{host}:{port}");
    TcpListener::bind(&addr).await.map_err(|source| StartError::Bind { addr, key: None, source })
}

impl StartError {
    /// A listener's error, naming the key that chose its port.
    fn for_key(self, key: &'static str) -> Self {
        match self {
            StartError::Bind { addr, source, .. } => StartError::Bind { addr, key: Some(key), source },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Both stores must offer the same migrations, or `migrate sql status`
    /// would mean different things per database.
    #[test]
    fn both_stores_have_the_same_migration_versions_and_names() {
        let names =
            |m: &[(i64, &str, &str)]| m.iter().map(|(v, n, _)| (*v, n.to_string())).collect::<Vec<_>>();
        assert_eq!(names(latchkey_store_sqlite::MIGRATIONS), names(latchkey_store_postgres::MIGRATIONS));
    }

    /// With the pages on, browsers land on the welcome page unless a
    /// return URL is configured; the flows' UI URLs are the pages either way.
    #[test]
    fn the_pages_make_the_welcome_page_the_default_return() {
        let urls = latchkey_http::BaseUrls::new("http://127.0.0.1:4433/", "http://127.0.0.1:4434/");
        let mut config = crate::config::Config::default();
        let off = super::web_settings(&config, &urls);
        assert!(!off.pages);
        assert_eq!(off.default_browser_return_url, "http://127.0.0.1:4433/");
        config.ui.enabled = true;
        let on = super::web_settings(&config, &urls);
        assert!(on.pages);
        assert_eq!(on.default_browser_return_url, "http://127.0.0.1:4433/ui/welcome");
        assert_eq!(on.logout_return_url, "http://127.0.0.1:4433/ui/welcome");
        assert_eq!(on.login_ui_url, "http://127.0.0.1:4433/ui/login");
        assert_eq!(on.error_ui_url, "http://127.0.0.1:4433/ui/error");
        config.selfservice.default_browser_return_url = "https://app.example.com/".into();
        assert_eq!(
            super::web_settings(&config, &urls).default_browser_return_url,
            "https://app.example.com/"
        );
    }
}
