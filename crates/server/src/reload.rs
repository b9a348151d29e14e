//! Configuration hot reload, as Kratos does it: the files `serve` was started
//! with are read again every second; when they change and still load and
//! validate, the HTTP side (every service and both routers) is rebuilt from
//! them and swapped in while connections stay open. What was bound, opened or
//! started once (`dsn`, the listeners and their limits, the hasher, the
//! courier's relay, the cleanup, logging and trace export) keeps its first
//! value until a restart, and the log names such keys when they change; an
//! invalid edit keeps the running configuration and says why in the log.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use latchkey_domain::time::Clock;
use latchkey_domain::{IdentityManager, SchemaRegistry, Store};
use latchkey_http::{AppState, BaseUrls, Metrics, SpanHooks};
use tokio::sync::watch;

use crate::config::{self, Config};
use crate::serve::Routes;
use crate::startup::{Passwords, StartError, domain_services, schema_sources};

/// Where `serve` read its configuration, to read it again.
pub struct Source {
    pub files: Vec<PathBuf>,
    pub env: Vec<(String, String)>,
    pub dev: bool,
}

/// What a rebuild reuses from the start: the store, the clock, the hasher
/// and the login failure floor, the metrics and the base URLs of the bound
/// listeners.
pub(crate) struct Parts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub passwords: Passwords,
    pub metrics: Arc<Metrics>,
    pub urls: BaseUrls,
    pub span_hooks: Option<SpanHooks>,
    pub running: Config,
}

/// Both routers for `state`, with the layers every request passes.
pub(crate) fn routers(
    state: AppState,
    cors: Option<latchkey_http::CorsLayer>,
    body_read_timeout: Duration,
    span_hooks: Option<SpanHooks>,
) -> (Router, Router) {
    let body_timeout = axum::Extension(latchkey_http::BodyReadTimeout(body_read_timeout));
    let public = latchkey_http::edge(
        latchkey_http::public_router(state.clone()).layer(body_timeout),
        cors,
        span_hooks,
    );
    let admin = latchkey_http::edge(latchkey_http::admin_router(state).layer(body_timeout), None, span_hooks);
    (public, admin)
}

impl Parts {
    /// Both routers built anew from `config`, and the services they call.
    fn rebuild(&self, config: &Config) -> Result<(Router, Router, AppState), StartError> {
        let cors = latchkey_http::cors_layer(&config.serve.public.cors.settings())
            .map_err(|e| StartError::Cors(e.to_string()))?;
        let schemas =
            Arc::new(SchemaRegistry::load(&schema_sources(config), &config.identity.default_schema_id)?);
        let identities = IdentityManager::new(
            self.store.clone(),
            self.clock.clone(),
            schemas,
            self.passwords.hasher.clone(),
        );
        let services = domain_services(
            config,
            self.store.clone(),
            self.clock.clone(),
            identities,
            self.passwords.clone(),
            self.urls.clone(),
            self.metrics.clone(),
        )?;
        let body_read_timeout = config.serve.limits.body_read_timeout.std();
        let state = AppState::new(services);
        let (public, admin) = routers(state.clone(), cors, body_read_timeout, self.span_hooks);
        Ok((public, admin, state))
    }

    /// The keys a reload cannot change, named when an edit changes them:
    /// what was opened, bound or started once (the database, the listeners
    /// and their connection limits, the hasher's threads, the courier, the
    /// cleanup, logging and trace export).
    fn needs_restart(&self, config: &Config) -> Vec<&'static str> {
        fn differ<T: serde::Serialize>(a: &T, b: &T) -> bool {
            serde_json::to_value(a).ok() != serde_json::to_value(b).ok()
        }
        let (was, now) = (&self.running, config);
        let mut keys = Vec::new();
        if was.dsn != now.dsn {
            keys.push("dsn");
        }
        if (&was.serve.public.host, was.serve.public.port) != (&now.serve.public.host, now.serve.public.port)
        {
            keys.push("serve.public.host/port");
        }
        if (&was.serve.admin.host, was.serve.admin.port) != (&now.serve.admin.host, now.serve.admin.port) {
            keys.push("serve.admin.host/port");
        }
        // The body read timeout is the one limit a rebuild applies.
        let mut limits = now.serve.limits.clone();
        limits.body_read_timeout = was.serve.limits.body_read_timeout;
        if differ(&was.serve.limits, &limits) {
            keys.push("serve.limits");
        }
        for (key, changed) in [
            ("hashers", differ(&was.hashers, &now.hashers)),
            ("courier.smtp", differ(&was.courier.smtp, &now.courier.smtp)),
            ("database.cleanup", differ(&was.database.cleanup, &now.database.cleanup)),
            ("log", differ(&was.log, &now.log)),
            ("tracing", differ(&was.tracing, &now.tracing)),
        ] {
            if changed {
                keys.push(key);
            }
        }
        keys
    }
}

/// Reads the files every second until `stop`; applies each change that loads.
pub(crate) async fn watch_files(
    source: Source,
    parts: Parts,
    public: Routes,
    admin: Routes,
    services: watch::Sender<AppState>,
    mut stop: watch::Receiver<()>,
) {
    let mut seen = read_all(&source.files);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        let now = read_all(&source.files);
        if now == seen {
            continue;
        }
        seen = now;
        let loaded = match config::load(&source.files, source.env.clone(), source.dev) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::warn!(error = %e, "the changed configuration was not applied; the running one stays");
                continue;
            }
        };
        let restart = parts.needs_restart(&loaded.config);
        if !restart.is_empty() {
            tracing::warn!(keys = %restart.join(", "), "these keys changed but apply only after a restart");
        }
        match parts.rebuild(&loaded.config) {
            Ok((new_public, new_admin, state)) => {
                public.replace(new_public);
                admin.replace(new_admin);
                services.send_replace(state);
                tracing::info!(
                    revision = loaded.config.revision.as_deref().unwrap_or("-"),
                    "configuration reloaded"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "the changed configuration was not applied; the running one stays")
            }
        }
    }
}

/// The files' bytes, or `None` for one that cannot be read right now (an
/// editor replacing it): a later read that succeeds counts as a change.
fn read_all(files: &[PathBuf]) -> Vec<Option<Vec<u8>>> {
    files.iter().map(|f| std::fs::read(f).ok()).collect()
}
