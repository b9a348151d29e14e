//! What each scenario sets up and what counts as one of its requests. Every
//! scenario first makes one request of its kind outside the measurement, so
//! a missing endpoint or a misconfigured server stops it with the server's
//! own answer instead of a rate of zero and a wall of identical errors.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api::{Api, CallError, Credentials};
use crate::attack;
use crate::cli::Scenario;
use crate::driver::{self, Window};
use crate::login_code;
use crate::mailbox::LastCode;
use crate::recovery;
use crate::stats::Summary;
use crate::users::{self, User};
use crate::verification;

/// One measured row of the report.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: &'static str,
    pub unit: &'static str,
    pub clients: usize,
    pub summary: Summary,
    /// What the numbers alone do not say, printed under the line.
    pub note: Option<String>,
}

impl Line {
    pub fn new(label: &'static str, unit: &'static str, clients: usize, summary: Summary) -> Self {
        Line { label, unit, clients, summary, note: None }
    }
}

pub struct Settings {
    pub clients: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub password_length: usize,
    /// Wrong passwords the `login-attack` scenario sends.
    pub attack_attempts: usize,
    /// Their pace, per second; `None`: as fast as the clients go.
    pub attack_rate: Option<f64>,
}

pub struct Bench {
    api: Arc<Api>,
    settings: Settings,
    /// Registered once and shared: registering hashes a password per user,
    /// which would otherwise be paid again by every scenario that needs users.
    /// A failure is kept too, so later scenarios report it without retrying.
    pool: Option<Result<Arc<[User]>, String>>,
}

impl Bench {
    pub fn new(api: Api, settings: Settings) -> Self {
        Bench { api: Arc::new(api), settings, pool: None }
    }

    /// Runs one scenario; `Err` says why it could not start.
    pub async fn run(&mut self, scenario: Scenario) -> Result<Vec<Line>, String> {
        let clients = self.settings.clients;
        let line = |label, unit, summary| Line::new(label, unit, clients, summary);
        match scenario {
            Scenario::Health => {
                self.api.public_alive().await.map_err(|e| format!("probe: {e}"))?;
                Ok(vec![line("health", "req/s", self.measure(self.health()).await)])
            }
            Scenario::Whoami => {
                let pool = self.pool().await?;
                Ok(vec![line("whoami", "req/s", self.measure(self.whoami(&pool)).await)])
            }
            Scenario::Login => {
                let pool = self.pool().await?;
                self.api.login(&pool[0].credentials().await).await.map_err(|e| format!("probe: {e}"))?;
                Ok(vec![line("login", "logins/s", self.measure(self.login(&pool)).await)])
            }
            Scenario::LoginCode => {
                let pool = self.pool().await?;
                let last: Arc<[LastCode]> = pool.iter().map(|_| LastCode::default()).collect();
                login_code::login(&self.api, &pool[0], &last[0], None)
                    .await
                    .map_err(|e| format!("probe: {e}"))?;
                Ok(vec![line("login-code", "logins/s", self.measure(self.login_code(&pool, &last)).await)])
            }
            Scenario::Registration => {
                let probe = Credentials::fresh(self.settings.password_length);
                self.api.register(&probe).await.map_err(|e| format!("probe: {e}"))?;
                Ok(vec![line("registration", "registrations/s", self.measure(self.registration()).await)])
            }
            Scenario::WhoamiUnderLogin => {
                let pool = self.pool().await?;
                self.api.login(&pool[0].credentials().await).await.map_err(|e| format!("probe: {e}"))?;
                // One window for both groups, so they start, warm up and stop together.
                let window = Window::starting_now(self.settings.warmup, self.settings.duration);
                let (whoami, login) = tokio::join!(
                    driver::run(clients, window, self.whoami(&pool)),
                    driver::run(clients, window, self.login(&pool)),
                );
                Ok(vec![
                    line("whoami (under login)", "req/s", whoami),
                    line("login (under whoami)", "logins/s", login),
                ])
            }
            Scenario::JourneyRecovery => {
                let pool = self.pool().await?;
                let last: Arc<[LastCode]> = pool.iter().map(|_| LastCode::default()).collect();
                recovery::journey(&self.api, &pool[0], &last[0], self.settings.password_length)
                    .await
                    .map_err(|e| format!("probe: {e}"))?;
                let journeys = self.measure(self.journey_recovery(&pool, &last)).await;
                Ok(vec![line("journey-recovery", "journeys/s", journeys)])
            }
            Scenario::RecoveryRequest => {
                let pool = self.pool().await?;
                self.api.recovery_send(&pool[0].email).await.map_err(|e| format!("probe: {e}"))?;
                let requests = self.measure(self.recovery_request(&pool)).await;
                Ok(vec![line("recovery-request", "code requests/s", requests)])
            }
            Scenario::LoginAttack => {
                let settings = &self.settings;
                let attack = attack::Attack {
                    attempts: settings.attack_attempts,
                    rate: settings.attack_rate,
                    clients,
                    password_length: settings.password_length,
                };
                attack::run(&self.api, attack).await
            }
            Scenario::JourneyVerification => {
                let pool = self.pool().await?;
                let last: Arc<[LastCode]> = pool.iter().map(|_| LastCode::default()).collect();
                verification::journey(&self.api, &pool[0], &last[0])
                    .await
                    .map_err(|e| format!("probe: {e}"))?;
                let journeys = self.measure(self.journey_verification(&pool, &last)).await;
                Ok(vec![line("journey-verification", "journeys/s", journeys)])
            }
        }
    }

    async fn measure<F, Fut>(&self, request: F) -> Summary
    where
        F: Fn(usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), CallError>> + Send + 'static,
    {
        let window = Window::starting_now(self.settings.warmup, self.settings.duration);
        driver::run(self.settings.clients, window, request).await
    }

    /// One user (and session) per client, so no two clients share a session row.
    async fn pool(&mut self) -> Result<Arc<[User]>, String> {
        let pool = match self.pool.take() {
            Some(pool) => pool,
            None => self.register_pool().await,
        };
        self.pool = Some(pool.clone());
        pool
    }

    async fn register_pool(&self) -> Result<Arc<[User]>, String> {
        let count = self.settings.clients;
        eprintln!(
            "  registering {count} benchmark users (password length {})…",
            self.settings.password_length
        );
        let started = Instant::now();
        let pool: Arc<[User]> = users::register_pool(&self.api, count, self.settings.password_length)
            .await
            .map_err(|e| format!("setup (registering users): {e}"))?
            .into();
        eprintln!("  registered {count} users in {:.1}s", started.elapsed().as_secs_f64());
        self.api.whoami(&pool[0].session_token).await.map_err(|e| format!("setup (first whoami): {e}"))?;
        Ok(pool)
    }

    fn health(&self) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let api = Arc::clone(&self.api);
        move |_| {
            let api = Arc::clone(&api);
            Box::pin(async move { api.public_alive().await })
        }
    }

    fn whoami(&self, pool: &Arc<[User]>) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let (api, pool) = (Arc::clone(&self.api), Arc::clone(pool));
        move |client| {
            let (api, pool) = (Arc::clone(&api), Arc::clone(&pool));
            Box::pin(async move { api.whoami(&pool[client % pool.len()].session_token).await })
        }
    }

    /// One request is one whole login: the flow and the submission.
    fn login(&self, pool: &Arc<[User]>) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let (api, pool) = (Arc::clone(&self.api), Arc::clone(pool));
        move |client| {
            let (api, pool) = (Arc::clone(&api), Arc::clone(&pool));
            Box::pin(async move {
                let credentials = pool[client % pool.len()].credentials().await;
                api.login_from(&credentials, Some(&client_address(client))).await.map(drop)
            })
        }
    }

    /// One request is one whole passwordless login, for the client's own
    /// user, from the client's own address as in `login`.
    fn login_code(
        &self,
        pool: &Arc<[User]>,
        last: &Arc<[LastCode]>,
    ) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let (api, pool, last) = (Arc::clone(&self.api), Arc::clone(pool), Arc::clone(last));
        move |client| {
            let (api, pool, last) = (Arc::clone(&api), Arc::clone(&pool), Arc::clone(&last));
            Box::pin(async move {
                let index = client % pool.len();
                let address = client_address(client);
                login_code::login(&api, &pool[index], &last[index], Some(&address)).await.map(drop)
            })
        }
    }

    /// One request is one whole recovery journey, for the client's own user,
    /// ending with a new password.
    fn journey_recovery(
        &self,
        pool: &Arc<[User]>,
        last: &Arc<[LastCode]>,
    ) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let (api, pool, last) = (Arc::clone(&self.api), Arc::clone(pool), Arc::clone(last));
        let password_length = self.settings.password_length;
        move |client| {
            let (api, pool, last) = (Arc::clone(&api), Arc::clone(&pool), Arc::clone(&last));
            Box::pin(async move {
                let index = client % pool.len();
                recovery::journey(&api, &pool[index], &last[index], password_length).await
            })
        }
    }

    /// One request is a new native recovery flow and a code asked for in
    /// it: by even clients for their own user's address, by odd ones for an
    /// address nobody has.
    fn recovery_request(
        &self,
        pool: &Arc<[User]>,
    ) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let (api, pool) = (Arc::clone(&self.api), Arc::clone(pool));
        move |client| {
            let (api, pool) = (Arc::clone(&api), Arc::clone(&pool));
            Box::pin(async move {
                let email = match client % 2 {
                    0 => pool[client % pool.len()].email.clone(),
                    _ => format!("nobody-{client}@bench.example"),
                };
                api.recovery_send(&email).await.map(|_| ())
            })
        }
    }

    /// One request is one whole verification journey, for the client's own
    /// user's address.
    fn journey_verification(
        &self,
        pool: &Arc<[User]>,
        last: &Arc<[LastCode]>,
    ) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let (api, pool, last) = (Arc::clone(&self.api), Arc::clone(pool), Arc::clone(last));
        move |client| {
            let (api, pool, last) = (Arc::clone(&api), Arc::clone(&pool), Arc::clone(&last));
            Box::pin(async move {
                let index = client % pool.len();
                verification::journey(&api, &pool[index], &last[index]).await
            })
        }
    }

    /// One request is one whole registration of a new identity.
    fn registration(&self) -> impl Fn(usize) -> RequestFuture + Send + Sync + 'static {
        let api = Arc::clone(&self.api);
        let password_length = self.settings.password_length;
        move |_| {
            let api = Arc::clone(&api);
            Box::pin(async move { api.register(&Credentials::fresh(password_length)).await.map(drop) })
        }
    }
}

/// The address login client `client` claims in `X-Forwarded-For`: its own,
/// as app users behind a proxy would have, so a server that trusts the
/// driver as a proxy throttles logins per client rather than all at once.
fn client_address(client: usize) -> String {
    format!("10.77.{}.{}", client / 256 % 256, client % 256)
}

/// Boxed so the request builders can name their return type; one allocation
/// per request is noise next to an HTTP round trip.
type RequestFuture = std::pin::Pin<Box<dyn Future<Output = Result<(), CallError>> + Send>>;

#[cfg(test)]
mod tests {
    use latchkey::config::{Config, Hook, SchemaEntry};
    use latchkey::startup::Application;
    use reqwest::Url;
    use tokio::sync::oneshot;

    use super::*;

    /// The real server, in-process on random loopback ports, as the server's
    /// own HTTP tests start it, on `dsn: memory` as the bench's docs suggest.
    /// The driver cancels requests in flight at every deadline, which once
    /// made the in-memory database vanish; these tests guard against that.
    struct Server {
        public: Url,
        admin: Url,
        stop: oneshot::Sender<()>,
        serving: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    impl Server {
        async fn start(adjust: impl FnOnce(&mut Config)) -> Self {
            if std::env::var("TEST_LOG").is_ok() {
                let _ = latchkey::telemetry::init(&latchkey::config::Log::default(), &Default::default());
            }
            let mut config = Config { dsn: "memory".into(), dev: true, ..Default::default() };
            config.serve.public.host = "127.0.0.1".into();
            config.serve.public.port = Some(0);
            config.serve.admin.host = "127.0.0.1".into();
            config.serve.admin.port = Some(0);
            // The lowest cost `dev` allows: the scenarios measure the server, not bcrypt.
            config.hashers.bcrypt.cost = 4;
            // One client address and a few addresses, many times a second.
            config.security.send_limits.enabled = false;
            let schema =
                concat!(env!("CARGO_MANIFEST_DIR"), "/../../contrib/quickstart/identity.schema.json");
            config.identity.schemas =
                vec![SchemaEntry { id: "default".into(), url: format!("file://{schema}") }];
            adjust(&mut config);
            let app = Application::build(&config).await.expect("server starts");
            let url = |addr| Url::parse(&format!("http://{addr}")).unwrap();
            let (public, admin) = (url(app.public_addr()), url(app.admin_addr()));
            let (stop, stopped) = oneshot::channel::<()>();
            let serving = tokio::spawn(app.run_until_stopped(async {
                stopped.await.ok();
            }));
            Server { public, admin, stop, serving }
        }

        /// With Kratos's `session` hook after password registration, or without it.
        async fn with_session_hook(on: bool) -> Self {
            Server::start(|config| {
                config.selfservice.flows.registration.after.password.hooks =
                    if on { vec![Hook { hook: "session".into(), config: None }] } else { Vec::new() };
            })
            .await
        }

        /// Recovery enabled, as the quickstart has it, with the session hook.
        async fn with_recovery() -> Self {
            Server::start(|config| {
                journey_config(config, true);
                config.selfservice.flows.recovery.enabled = true;
            })
            .await
        }

        /// Verification enabled, as the quickstart has it, with the session hook.
        async fn with_verification() -> Self {
            Server::start(|config| {
                journey_config(config, true);
                config.selfservice.flows.verification.enabled = true;
            })
            .await
        }

        /// Passwordless login by emailed code on, with the session hook.
        async fn with_passwordless() -> Self {
            Server::start(|config| {
                journey_config(config, true);
                config.selfservice.methods.code.passwordless_enabled = true;
            })
            .await
        }

        /// The admin API's sessions of the identity `session_token` belongs
        /// to, each as the methods it was signed in with.
        async fn session_methods(&self, session_token: &str) -> Vec<Vec<String>> {
            let http = reqwest::Client::new();
            let whoami = self.public.join("sessions/whoami").unwrap();
            let response = http.get(whoami).header("X-Session-Token", session_token).send().await.unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            let session: serde_json::Value = response.json().await.unwrap();
            let id = session["identity"]["id"].as_str().unwrap();
            let url = self.admin.join(&format!("admin/identities/{id}/sessions")).unwrap();
            let response = http.get(url).query(&[("page_size", "1000")]).send().await.unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            let sessions: Vec<serde_json::Value> = response.json().await.unwrap();
            let methods = |s: &serde_json::Value| {
                let all = s["authentication_methods"].as_array().unwrap();
                all.iter().map(|m| m["method"].as_str().unwrap().to_owned()).collect()
            };
            sessions.iter().map(methods).collect()
        }

        /// Whether the admin API lists `email`'s identity with its (first) address verified.
        async fn address_verified(&self, email: &str) -> bool {
            let url = self.admin.join("admin/identities").unwrap();
            let response = reqwest::Client::new()
                .get(url)
                .query(&[("credentials_identifier", email)])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), reqwest::StatusCode::OK);
            let identities: serde_json::Value = response.json().await.unwrap();
            assert_eq!(identities.as_array().map(Vec::len), Some(1), "{identities}");
            let address = &identities[0]["verifiable_addresses"][0];
            assert_eq!(address["value"], email, "{identities}");
            address["verified"].as_bool().unwrap_or_else(|| panic!("no verified flag: {identities}"))
        }

        fn bench(&self, clients: usize) -> Bench {
            let settings = Settings {
                clients,
                warmup: Duration::from_millis(50),
                duration: Duration::from_millis(250),
                password_length: 20,
                attack_attempts: 60,
                attack_rate: None,
            };
            Bench::new(Api::new(&self.public, &self.admin).unwrap(), settings)
        }

        /// Stops gracefully and waits, so a server that fails to shut down fails the test.
        async fn stop(self) {
            self.stop.send(()).ok();
            self.serving.await.unwrap().unwrap();
        }
    }

    /// What both journeys need besides their flow: `--dev` when `dev` (so
    /// the outbox shows the codes), a cookie secret, and the session hook.
    fn journey_config(config: &mut Config, dev: bool) {
        config.dev = dev;
        config.secrets.cookie = vec!["a-test-secret-of-enough-length".into()];
        config.selfservice.flows.registration.after.password.hooks =
            vec![Hook { hook: "session".into(), config: None }];
    }

    fn assert_clean(line: &Line) {
        let s = &line.summary;
        assert!(s.ok > 0 && s.errors == 0, "{}: {s:?}", line.label);
        assert!(s.p50 <= s.p99 && s.p99 <= s.max, "{}: {s:?}", line.label);
    }

    #[tokio::test]
    async fn every_scenario_runs_against_a_server_with_the_session_hook() {
        let server = Server::with_session_hook(true).await;
        let mut bench = server.bench(3);
        let mut labels = Vec::new();
        let defaults = <Scenario as clap::ValueEnum>::value_variants().iter().filter(|s| s.is_default());
        for &scenario in defaults {
            for line in bench.run(scenario).await.unwrap() {
                assert_clean(&line);
                assert_eq!(line.clients, 3);
                labels.push((line.label, line.unit));
            }
        }
        assert_eq!(
            labels,
            [
                ("health", "req/s"),
                ("whoami", "req/s"),
                ("login", "logins/s"),
                ("registration", "registrations/s"),
                ("whoami (under login)", "req/s"),
                ("login (under whoami)", "logins/s"),
            ]
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn recovery_journeys_run_end_to_end_and_leave_the_new_passwords() {
        let server = Server::with_recovery().await;
        let mut bench = server.bench(2);
        let journeys = bench.run(Scenario::JourneyRecovery).await.unwrap();
        assert_eq!(journeys.len(), 1);
        assert_eq!((journeys[0].label, journeys[0].unit), ("journey-recovery", "journeys/s"));
        assert_clean(&journeys[0]);
        // Logins with the stored passwords: the ones the journeys set last.
        for line in bench.run(Scenario::Login).await.unwrap() {
            assert_clean(&line);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn verification_journeys_run_end_to_end_and_leave_the_addresses_verified() {
        let server = Server::with_verification().await;
        let mut bench = server.bench(2);
        // Registered first, so the test sees the addresses before any journey:
        // the registration hook only sends them a code.
        let users = bench.pool().await.unwrap();
        for user in users.iter() {
            assert!(!server.address_verified(&user.email).await, "{} before", user.email);
        }
        let journeys = bench.run(Scenario::JourneyVerification).await.unwrap();
        assert_eq!(journeys.len(), 1);
        assert_eq!((journeys[0].label, journeys[0].unit), ("journey-verification", "journeys/s"));
        assert_clean(&journeys[0]);
        assert!(journeys[0].summary.rate() > 0.0, "{:?}", journeys[0].summary);
        for user in users.iter() {
            assert!(server.address_verified(&user.email).await, "{} after", user.email);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn code_logins_run_end_to_end_and_give_working_sessions() {
        let server = Server::with_passwordless().await;
        let mut bench = server.bench(2);
        let users = bench.pool().await.unwrap();
        let logins = bench.run(Scenario::LoginCode).await.unwrap();
        assert_eq!(logins.len(), 1);
        assert_eq!((logins[0].label, logins[0].unit), ("login-code", "logins/s"));
        assert_clean(&logins[0]);
        // Every measured login left a session signed in by code (so did the
        // probe, the warm-up's and any cut off at the deadline).
        let mut by_code = 0;
        for user in users.iter() {
            let sessions = server.session_methods(&user.session_token).await;
            by_code += sessions.iter().filter(|methods| *methods == &["code"]).count();
            assert!(server.address_verified(&user.email).await, "{}", user.email);
        }
        assert!(by_code as u64 > logins[0].summary.ok, "{by_code} code sessions, {:?}", logins[0].summary);
        // And the token a code login hands out is a session whoami knows.
        for user in users.iter() {
            let token = login_code::login(&bench.api, user, &LastCode::default(), None).await.unwrap();
            bench.api.whoami(&token).await.unwrap();
            let sessions = server.session_methods(&token).await;
            assert!(sessions.iter().any(|methods| methods == &["code"]), "{sessions:?}");
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn without_passwordless_login_code_asks_for_it() {
        let server = Server::start(|config| journey_config(config, true)).await;
        let mut bench = server.bench(1);
        let error = bench.run(Scenario::LoginCode).await.unwrap_err();
        assert!(error.starts_with("probe: POST /self-service/login (code, identifier): "), "{error}");
        assert!(error.contains("SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED=true"), "{error}");
        server.stop().await;
    }

    #[tokio::test]
    async fn without_dev_mode_the_journeys_ask_for_it() {
        let server = Server::start(|config| {
            journey_config(config, false);
            config.selfservice.flows.recovery.enabled = true;
            config.selfservice.flows.verification.enabled = true;
            config.selfservice.methods.code.passwordless_enabled = true;
        })
        .await;
        let mut bench = server.bench(1);
        for scenario in [Scenario::LoginCode, Scenario::JourneyRecovery, Scenario::JourneyVerification] {
            let error = bench.run(scenario).await.unwrap_err();
            assert!(error.starts_with("probe: GET /admin/courier/messages: "), "{error}");
            assert!(
                error.contains("start the server with --dev to run the journey and login-code scenarios"),
                "{error}"
            );
        }
        server.stop().await;
    }

    /// The number just before `marker` in `text`.
    fn number_before(text: &str, marker: &str) -> u64 {
        let head = &text[..text.find(marker).unwrap_or_else(|| panic!("no {marker:?} in {text}"))];
        head.trim_end().rsplit(' ').next().unwrap().parse().unwrap()
    }

    #[tokio::test]
    async fn login_attack_counts_what_reached_the_hasher_and_lets_the_user_back_in() {
        let server = Server::start(|config| {
            config.serve.public.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
            let identifier = &mut config.security.login_throttling.identifier;
            identifier.initial_delay = "200ms".parse().unwrap();
            identifier.max_delay = "400ms".parse().unwrap();
        })
        .await;
        let mut bench = server.bench(4);
        let lines = bench.run(Scenario::LoginAttack).await.unwrap();
        let labels: Vec<_> = lines.iter().map(|l| (l.label, l.unit)).collect();
        assert_eq!(labels, [("login-attack (attacker)", "attempts/s"), ("login-attack (user)", "tries/s")]);
        let attacker = &lines[0];
        assert_eq!((attacker.summary.ok, attacker.summary.errors), (60, 0), "{:?}", attacker.summary);
        let note = attacker.note.as_deref().unwrap();
        assert!(note.starts_with("60 wrong passwords from 203.0.113.66 in "), "{note}");
        let judged = number_before(note, "reached the hasher");
        let refused = number_before(note, "refused before it");
        assert_eq!(judged + refused, 60, "{note}");
        // The free failures, plus one per lock that ended or sign-in that reset the count.
        assert!((5..=30).contains(&judged), "{note}");
        let user = &lines[1];
        assert_eq!(user.summary.errors, 0, "{:?}", user.summary);
        let note = user.note.as_deref().unwrap();
        assert!(note.contains("after the attack ended") && !note.contains("still kept out"), "{note}");
        server.stop().await;
    }

    #[tokio::test]
    async fn without_the_session_hook_users_log_in_for_their_tokens() {
        let server = Server::with_session_hook(false).await;
        let mut bench = server.bench(2);
        for line in bench.run(Scenario::Whoami).await.unwrap() {
            assert_clean(&line);
        }
        server.stop().await;
    }

    #[tokio::test]
    async fn a_failing_setup_stops_the_scenario_with_the_servers_answer() {
        let server = Server::start(|config| config.selfservice.flows.registration.enabled = false).await;
        let mut bench = server.bench(2);
        assert_eq!(bench.run(Scenario::Health).await.unwrap().len(), 1);
        let whoami = bench.run(Scenario::Whoami).await.unwrap_err();
        assert!(
            whoami.starts_with(
                "setup (registering users): GET /self-service/registration/api answered 400 Bad Request: "
            ),
            "{whoami}"
        );
        assert!(whoami.contains("self_service_flow_disabled"), "{whoami}");
        // The failed setup is remembered rather than repeated.
        assert_eq!(bench.run(Scenario::Login).await.unwrap_err(), whoami);
        let registration = bench.run(Scenario::Registration).await.unwrap_err();
        assert!(
            registration.starts_with("probe: GET /self-service/registration/api answered 400 Bad Request: "),
            "{registration}"
        );
        assert!(registration.contains("self_service_flow_disabled"), "{registration}");
        server.stop().await;
    }
}
