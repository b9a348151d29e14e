//! The Prometheus registry and `GET /metrics/prometheus` on the admin API
//! (where Kratos serves it, in the same text format 0.0.4) and on
//! `courier watch --expose-metrics-port` (the courier's part). Requests are
//! counted by route template, never by raw path, so ids in URLs cannot
//! multiply the series; every other label takes a handful of fixed values.
//! Gauges that mirror state elsewhere (the courier's queue, the database
//! pool, the hashing pool) are read when scraped, so they cost nothing
//! between scrapes.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use latchkey_domain::flow::login::LoginOutcome;
use latchkey_domain::flow::recovery::RecoveryOutcome;
use latchkey_domain::flow::registration::RegistrationOutcome;
use latchkey_domain::flow::settings::SettingsOutcome;
use latchkey_domain::flow::verification::VerificationOutcome;
use latchkey_domain::flow::{FlowKind, FlowType};
use latchkey_domain::health::Health;
use latchkey_domain::metrics::Recorder;
use latchkey_hash::{PasswordHasher, WaitObserver};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};

use crate::error::ApiError;
use crate::state::AppState;

/// Request latency: from a millisecond (a cached whoami) to the slowest
/// hashing login.
const REQUEST_BUCKETS: [f64; 13] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Time a hash waited for a free slot: zero when idle, seconds in a storm.
const HASH_WAIT_BUCKETS: [f64; 12] = [0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Queued → sent: a second normally, hours when a relay was down.
const DELIVERY_BUCKETS: [f64; 10] = [1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 43200.0, 86400.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    api: &'static str,
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowStartLabels {
    kind: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowOutcomeLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// How a flow submission ended; `Success` is a completed flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlowOutcome {
    /// The flow is done: signed in, registered, recovered, verified, saved.
    Success,
    /// A step done and another to come (a code sent, the next screen).
    Continued,
    /// Refused with form errors; the flow can be submitted again.
    Rejected,
    /// Refused by a rate limit.
    Throttled,
    /// The flow could not go on (expired, replaced, an error).
    Failed,
}

impl FlowOutcome {
    fn as_str(self) -> &'static str {
        match self {
            FlowOutcome::Success => "success",
            FlowOutcome::Continued => "continued",
            FlowOutcome::Rejected => "rejected",
            FlowOutcome::Throttled => "throttled",
            FlowOutcome::Failed => "failed",
        }
    }
}

/// How a domain service's answer to a submission counts.
pub(crate) trait Classify {
    fn outcome(&self) -> FlowOutcome;
}

impl Classify for LoginOutcome {
    fn outcome(&self) -> FlowOutcome {
        match self {
            LoginOutcome::Accepted { .. } | LoginOutcome::SteppedUp { .. } => FlowOutcome::Success,
            LoginOutcome::Rejected(_) | LoginOutcome::Unverified { .. } => FlowOutcome::Rejected,
            LoginOutcome::Throttled { .. } => FlowOutcome::Throttled,
            LoginOutcome::CodeSent(_) => FlowOutcome::Continued,
        }
    }
}

impl Classify for RegistrationOutcome {
    fn outcome(&self) -> FlowOutcome {
        match self {
            RegistrationOutcome::Accepted { .. } => FlowOutcome::Success,
            RegistrationOutcome::NextScreen(_) => FlowOutcome::Continued,
            RegistrationOutcome::Rejected(_) => FlowOutcome::Rejected,
        }
    }
}

impl Classify for SettingsOutcome {
    fn outcome(&self) -> FlowOutcome {
        match self {
            SettingsOutcome::Saved { .. } => FlowOutcome::Success,
            SettingsOutcome::Shown(_) => FlowOutcome::Continued,
            SettingsOutcome::Rejected(_) | SettingsOutcome::RefreshRequired(_) => FlowOutcome::Rejected,
        }
    }
}

impl Classify for RecoveryOutcome {
    fn outcome(&self) -> FlowOutcome {
        match self {
            RecoveryOutcome::Recovered { .. } => FlowOutcome::Success,
            RecoveryOutcome::Updated(_) => FlowOutcome::Continued,
            RecoveryOutcome::Rejected(_) => FlowOutcome::Rejected,
            RecoveryOutcome::Replaced { .. } | RecoveryOutcome::IdentityDisabled { .. } => {
                FlowOutcome::Failed
            }
        }
    }
}

impl Classify for VerificationOutcome {
    fn outcome(&self) -> FlowOutcome {
        match self {
            VerificationOutcome::Verified(_) => FlowOutcome::Success,
            VerificationOutcome::Updated(_) => FlowOutcome::Continued,
            VerificationOutcome::Rejected(_) => FlowOutcome::Rejected,
            VerificationOutcome::Replaced { .. } => FlowOutcome::Failed,
        }
    }
}

/// Every metric Latchkey exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: HistogramFamily<LatencyLabels>,
    flows_started: Family<FlowStartLabels, Counter>,
    flow_submissions: Family<FlowOutcomeLabels, Counter>,
    whoami_cache: Family<ResultLabel, Counter>,
    mail_sent: Counter,
    mail_failed: Counter,
    mail_abandoned: Counter,
    dispatch_rounds: Counter,
    delivery_seconds: Histogram,
    courier_queue: Family<StateLabel, Gauge>,
    code_requests: Gauge,
    hash_wait_seconds: Histogram,
    hash_queue: Gauge,
    hash_running: Gauge,
    hash_slots: Gauge,
    hash_verifications: Counter,
    db_connections: Family<StateLabel, Gauge>,
    db_max_connections: Gauge,
    /// Read on scrape; set once the hasher exists (it reports into us).
    hasher: OnceLock<PasswordHasher>,
    /// One scrape at a time refreshes the read-on-scrape values.
    scraping: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family, for `serve`.
    pub fn new() -> Self {
        Self::exporting(true)
    }

    /// The courier's families and the database pool's, for `courier watch`:
    /// it serves no API and hashes no passwords, so the rest would be zeros.
    pub fn for_courier() -> Self {
        Self::exporting(false)
    }

    /// `server`: also the API's, flows' and hashing's families. Those not
    /// exported still exist, unregistered, so recording into them is harmless.
    fn exporting(server: bool) -> Self {
        let mut registry = Registry::with_prefix("latchkey");
        let requests = Family::<RequestLabels, Counter>::default();
        register_if(
            &mut registry,
            server,
            "http_requests",
            "HTTP requests answered, by API, method, route template and status",
            requests.clone(),
        );
        let request_seconds: HistogramFamily<LatencyLabels> =
            Family::new_with_constructor(|| Histogram::new(REQUEST_BUCKETS));
        register_if(
            &mut registry,
            server,
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by API, method and route template",
            request_seconds.clone(),
        );
        let flows_started = Family::<FlowStartLabels, Counter>::default();
        register_if(
            &mut registry,
            server,
            "flows_started",
            "Self-service flows started, by kind and type",
            flows_started.clone(),
        );
        let flow_submissions = Family::<FlowOutcomeLabels, Counter>::default();
        register_if(
            &mut registry,
            server,
            "flow_submissions",
            "Self-service flow submissions by kind and outcome; outcome=\"success\" is a completed flow",
            flow_submissions.clone(),
        );
        let whoami_cache = Family::<ResultLabel, Counter>::default();
        register_if(
            &mut registry,
            server,
            "whoami_cache_lookups",
            "Session lookups by token answered from the cache (hit) or the database (miss)",
            whoami_cache.clone(),
        );
        let mail_sent = Counter::default();
        registry.register("courier_messages_sent", "Emails delivered by this process", mail_sent.clone());
        let mail_failed = Counter::default();
        registry.register(
            "courier_delivery_failures",
            "Failed delivery attempts by this process (retried or abandoned)",
            mail_failed.clone(),
        );
        let mail_abandoned = Counter::default();
        registry.register(
            "courier_messages_abandoned",
            "Emails this process gave up on",
            mail_abandoned.clone(),
        );
        let dispatch_rounds = Counter::default();
        registry.register(
            "courier_dispatch_rounds",
            "Rounds in which this process's courier read the outbox and tried what was due",
            dispatch_rounds.clone(),
        );
        let delivery_seconds = Histogram::new(DELIVERY_BUCKETS);
        registry.register(
            "courier_delivery_latency_seconds",
            "Time from queueing an email to its delivery",
            delivery_seconds.clone(),
        );
        let courier_queue = Family::<StateLabel, Gauge>::default();
        registry.register(
            "courier_queue_messages",
            "Emails not yet delivered in the shared outbox: queued (waiting or to be retried) or processing",
            courier_queue.clone(),
        );
        let code_requests = Gauge::default();
        registry.register(
            "code_requests_pending",
            "Recovery and verification code requests recorded but not yet turned into a code and its email",
            code_requests.clone(),
        );
        let hash_wait_seconds = Histogram::new(HASH_WAIT_BUCKETS);
        register_if(
            &mut registry,
            server,
            "hash_wait_seconds",
            "Time a password hash waited for a free hashing slot",
            hash_wait_seconds.clone(),
        );
        let hash_queue = Gauge::default();
        register_if(
            &mut registry,
            server,
            "hash_queue_length",
            "Password hashes waiting for a free slot",
            hash_queue.clone(),
        );
        let hash_running = Gauge::default();
        register_if(&mut registry, server, "hash_running", "Password hashes running", hash_running.clone());
        let hash_slots = Gauge::default();
        register_if(
            &mut registry,
            server,
            "hash_slots",
            "Password hashes that may run at once",
            hash_slots.clone(),
        );
        let hash_verifications = Counter::default();
        register_if(
            &mut registry,
            server,
            "hash_verifications",
            "Password verifications (dummy ones for unknown identifiers included)",
            hash_verifications.clone(),
        );
        let db_connections = Family::<StateLabel, Gauge>::default();
        registry.register(
            "db_pool_connections",
            "Database connections open in this process's pool, idle or in use",
            db_connections.clone(),
        );
        let db_max_connections = Gauge::default();
        registry.register(
            "db_pool_max_connections",
            "The most connections this process's pool may open",
            db_max_connections.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            flows_started,
            flow_submissions,
            whoami_cache,
            mail_sent,
            mail_failed,
            mail_abandoned,
            dispatch_rounds,
            delivery_seconds,
            courier_queue,
            code_requests,
            hash_wait_seconds,
            hash_queue,
            hash_running,
            hash_slots,
            hash_verifications,
            db_connections,
            db_max_connections,
            hasher: OnceLock::new(),
            scraping: tokio::sync::Mutex::new(()),
        }
    }

    /// What the password hasher reports each wait to.
    pub fn hash_wait_observer(&self) -> WaitObserver {
        let histogram = self.hash_wait_seconds.clone();
        Arc::new(move |waited: Duration| histogram.observe(waited.as_secs_f64()))
    }

    /// The hasher whose queue and counts are read on scrape.
    pub fn watch_hasher(&self, hasher: PasswordHasher) {
        let _ = self.hasher.set(hasher);
    }

    pub(crate) fn flow_started(&self, kind: FlowKind, flow_type: FlowType) {
        let r#type = match flow_type {
            FlowType::Api => "api",
            FlowType::Browser => "browser",
        };
        self.flows_started.get_or_create(&FlowStartLabels { kind: kind.as_str(), r#type }).inc();
    }

    /// Counts a submission by how it ended (an error is `failed`) and hands
    /// the result back, so handlers wrap the call they already make.
    pub(crate) fn submitted<T: Classify, E>(&self, kind: FlowKind, result: Result<T, E>) -> Result<T, E> {
        let outcome = result.as_ref().map_or(FlowOutcome::Failed, Classify::outcome);
        let labels = FlowOutcomeLabels { kind: kind.as_str(), outcome: outcome.as_str() };
        self.flow_submissions.get_or_create(&labels).inc();
        result
    }

    fn request(&self, api: &'static str, method: &Method, route: String, status: u16, took: Duration) {
        let method = method_label(method);
        self.request_seconds
            .get_or_create(&LatencyLabels { api, method, route: route.clone() })
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&RequestLabels { api, method, route, status }).inc();
    }

    /// Refreshes what is read on scrape, then encodes everything.
    async fn render(&self, health: &Health) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self.scraping.lock().await;
        match health.unsent().await {
            Ok(unsent) => {
                let set = |state, n: u64| {
                    self.courier_queue
                        .get_or_create(&StateLabel { state })
                        .set(i64::try_from(n).unwrap_or(i64::MAX));
                };
                set("queued", unsent.queued);
                set("processing", unsent.processing);
            }
            // The gauge keeps its last value; the scrape still answers.
            Err(e) => tracing::warn!(error = %e, "could not count the courier's queue for metrics"),
        }
        match health.code_requests_pending().await {
            Ok(n) => {
                self.code_requests.set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            Err(e) => tracing::warn!(error = %e, "could not count the pending code requests for metrics"),
        }
        let pool = health.pool_usage();
        self.db_connections.get_or_create(&StateLabel { state: "idle" }).set(i64::from(pool.idle));
        self.db_connections
            .get_or_create(&StateLabel { state: "in_use" })
            .set(i64::from(pool.size.saturating_sub(pool.idle)));
        self.db_max_connections.set(i64::from(pool.max));
        if let Some(hasher) = self.hasher.get() {
            let gauge = |g: &Gauge, n: usize| g.set(i64::try_from(n).unwrap_or(i64::MAX));
            gauge(&self.hash_queue, hasher.queued());
            gauge(&self.hash_running, hasher.running());
            gauge(&self.hash_slots, hasher.slots());
            // The hasher keeps the count; scrapes are serialised, so the
            // counter catches up without ever going back.
            let behind = hasher.verifications().saturating_sub(self.hash_verifications.get());
            self.hash_verifications.inc_by(behind);
        }
        let mut body = String::new();
        prometheus_text::encode(&mut body, &self.registry)?;
        Ok(body)
    }
}

impl Recorder for Metrics {
    fn whoami_cache(&self, hit: bool) {
        let result = if hit { "hit" } else { "miss" };
        self.whoami_cache.get_or_create(&ResultLabel { result }).inc();
    }

    fn mail_sent(&self, latency: Duration) {
        self.mail_sent.inc();
        self.delivery_seconds.observe(latency.as_secs_f64());
    }

    fn mail_failed(&self) {
        self.mail_failed.inc();
    }

    fn mail_abandoned(&self) {
        self.mail_abandoned.inc();
    }

    fn dispatch_round(&self) {
        self.dispatch_rounds.inc();
    }
}

/// Registers `metric` when this process exports it.
fn register_if(registry: &mut Registry, export: bool, name: &str, help: &str, metric: impl Metric) {
    if export {
        registry.register(name, help, metric);
    }
}

/// Methods outside the usual set share one label, so clients cannot invent series.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Which listener a router serves, as the `api` label.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Api(pub &'static str);

/// Counts and times every request under its route template; requests that
/// match no route (404s, probes for random paths) share `route="unmatched"`.
pub(crate) async fn track(
    State((metrics, api)): State<(Arc<Metrics>, Api)>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |path| path.as_str().to_string());
    let response = next.run(request).await;
    metrics.request(api.0, &method, route, response.status().as_u16(), started.elapsed());
    response
}

/// `GET /metrics/prometheus` on the admin API.
pub(crate) async fn scrape(State(state): State<AppState>) -> Result<Response, ApiError> {
    respond(&state.metrics, &state.health).await
}

/// What `courier watch`'s metrics listener reads: its registry, and the
/// database whose outbox and pool it reports.
#[derive(Clone)]
pub(crate) struct CourierSource {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) health: Health,
}

/// `GET /metrics/prometheus` on `courier watch --expose-metrics-port`.
pub(crate) async fn scrape_courier(State(source): State<CourierSource>) -> Result<Response, ApiError> {
    respond(&source.metrics, &source.health).await
}

/// The text exposition could not be written.
#[derive(Debug, thiserror::Error)]
#[error("could not encode the metrics: {0}")]
struct EncodeError(#[source] std::fmt::Error);

async fn respond(metrics: &Metrics, health: &Health) -> Result<Response, ApiError> {
    let body = metrics.render(health).await.map_err(|e| ApiError::internal(EncodeError(e)))?;
    Ok(([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], body).into_response())
}
