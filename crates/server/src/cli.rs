//! The command line, shaped like Kratos's so its users feel at home:
//! `serve`, `migrate sql`, `cleanup sql`, `courier watch`, `version`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use latchkey_domain::time::{Clock, SystemClock};

use crate::config;
use crate::startup::{self, Application, VERSION};
use crate::watch::Watcher;

#[derive(Parser)]
#[command(
    name = "latchkey",
    version = VERSION,
    about = "Latchkey: a self-hosted identity and account server that speaks the Ory Kratos API",
    long_about = "Latchkey handles sign-up, sign-in, account recovery, verification and account settings \
for native apps and browsers. It speaks Ory Kratos's HTTP API, so Kratos SDKs and UIs work against it \
unchanged. Data lives in an embedded SQLite file by default, or in PostgreSQL.\n\n\
Start with:  latchkey serve -c contrib/quickstart/latchkey.yml --dev"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the public API (default 127.0.0.1:4433) and the admin API (default 127.0.0.1:4434).
    ///
    /// Self-service flows: login, registration, settings, recovery and verification (the last two
    /// when `selfservice.flows.<name>.enabled` is true; codes go out through the courier).
    ///
    /// With ui.enabled (on in the quickstart) the public API also serves account pages under /ui/
    /// (login, registration, recovery, verification, settings, error, welcome); with --dev,
    /// /ui/dev/mail lists the courier's messages so codes can be read without a mail server.
    ///
    /// On SQLite (and `dsn: memory`) pending database migrations are applied at start.
    /// On PostgreSQL the server refuses to start until `latchkey migrate sql` has been run.
    /// Every config key can be overridden by an environment variable named after its path,
    /// upper-cased with `_`: DSN, SERVE_PUBLIC_PORT, SERVE_ADMIN_PORT, SECRETS_COOKIE, ...
    ///
    /// Every database.cleanup.interval (1h; 0s turns it off) serve runs what `latchkey cleanup sql`
    /// does, removing expired flows, codes and sessions and old mail; several servers on one
    /// PostgreSQL share the work.
    ///
    /// Slow and idle clients are cut off by `serve.limits`: header_read_timeout (10s),
    /// body_read_timeout (30s), idle_timeout (10s) and max_connections (1024 per listener).
    /// `X-Forwarded-For` is believed only from the peers listed in serve.public.trusted_proxies
    /// (addresses or CIDR networks; none by default).
    ///
    /// CORS for the public API is off unless serve.public.cors.enabled is true (Kratos's keys:
    /// allowed_origins, which may hold one `*` per origin as in https://*.example.com,
    /// allowed_methods, allowed_headers, exposed_headers, allow_credentials, max_age).
    ///
    /// Every request gets an id (X-Request-Id when sane, else a UUID), echoed in the response
    /// and as error.request; one `request completed` line per request names its route, status
    /// and latency. log.format: json writes one JSON object per line; colour is used only on a
    /// terminal. tracing.provider: otel exports request spans (with their store and hashing spans)
    /// over OTLP/HTTP to tracing.providers.otlp.server_url, continuing a caller's W3C traceparent;
    /// other providers stop the start.
    ///
    /// Second factors, set up in the settings flow: selfservice.methods.totp (authenticator apps;
    /// config.issuer names the service in the app) and selfservice.methods.lookup_secret (backup
    /// codes). Both are off by default and need secrets.cipher (32-character secrets), which seals
    /// their secrets in the database; the start fails without it.
    ///
    /// Abuse limits are on by default (README, "Security defaults"): failed password logins are
    /// throttled per identifier, per identifier and client address, and per client address,
    /// before any hash (security.login_throttling); recovery and verification mails are capped per
    /// address, and flow starts and code requests per client address (security.send_limits).
    /// Behind a proxy, list it in serve.public.trusted_proxies, or every client shares the
    /// proxy's limits.
    Serve(ServeArgs),
    /// Manage the database schema.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Delete expired and spent records from the database.
    #[command(subcommand)]
    Cleanup(CleanupCommand),
    /// Run the email courier on its own (serve already runs one when SMTP is configured).
    #[command(subcommand)]
    Courier(CourierCommand),
    /// Manage identities from the command line.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
    /// Check configuration files without starting anything.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum IdentitiesCommand {
    /// Import identities exported from Ory Kratos, with their password hashes.
    ///
    /// FILE holds what Kratos's admin API answers to `GET /admin/identities?include_credential=password`
    /// (one JSON array, or one identity per line). Each identity keeps its id, schema, traits, state,
    /// metadata, verified addresses and password hash (bcrypt, argon2, PBKDF2 or scrypt, verified as
    /// stored and rehashed at the next sign-in). Identities already there (by id) are skipped, so a
    /// file can be imported again after fixing what failed. Writes to the database the config names,
    /// migrating SQLite as `serve` does; PostgreSQL must be migrated first. Prints how many were
    /// imported, skipped and failed (with each reason); exits 1 when any failed.
    Import {
        /// The export: a JSON array or JSON lines.
        file: PathBuf,
        /// Config file(s), as for `serve` (the DSN and identity schemas are read from them).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Development mode, as for `serve`.
        #[arg(long)]
        dev: bool,
        /// Identities written at once.
        #[arg(long, default_value_t = crate::import::DEFAULT_CONCURRENCY)]
        concurrency: usize,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print every configuration key (Kratos's and Latchkey's own) with what Latchkey does with it,
    /// its environment variable and default, as Markdown (docs/configuration.md).
    Reference,
    /// Validate the configuration as `serve` would, without opening the database or binding ports.
    ///
    /// Checks every key (a key neither Latchkey nor Kratos has stops it, naming the key you may
    /// have meant), every value, the identity schemas and the mail templates, with the environment
    /// overrides applied. Names the Kratos keys Latchkey does not implement yet. Exits 0 when
    /// `serve` would accept the configuration, 1 with the reason when not.
    Check {
        /// Config file(s), as for `serve`.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Check as `serve --dev` would load it.
        #[arg(long)]
        dev: bool,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Config file (YAML, Kratos key names); repeat to layer files, later ones win. Edits apply
    /// within a second without a restart, except dsn, the listeners and serve.limits, hashers,
    /// courier.smtp, database.cleanup, log and tracing (named in the log when they change); an
    /// invalid edit is logged and the running configuration stays.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Vec<PathBuf>,
    /// Development mode: cookies without `Secure`, courier bodies visible, low bcrypt cost allowed.
    /// Never use in production.
    #[arg(long)]
    dev: bool,
    /// Accepted for compatibility with Kratos: `serve` always runs the courier when
    /// `courier.smtp.connection_uri` is set.
    #[arg(long)]
    watch_courier: bool,
    /// Accepted for compatibility with Kratos; Latchkey sends no telemetry.
    #[arg(long, hide = true)]
    sqa_opt_out: bool,
}

#[derive(Subcommand)]
enum CourierCommand {
    /// Send queued emails until stopped (SIGINT/SIGTERM); several watchers may share a PostgreSQL database.
    Watch {
        /// Config file(s), as for `serve`.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
        /// Development mode, as for `serve`.
        #[arg(long)]
        dev: bool,
        /// Serve Prometheus metrics at GET /metrics/prometheus on this port, on serve.admin.host
        /// (127.0.0.1 unless configured): messages sent, failed and abandoned, delivery latency,
        /// the outbox's queue and the database pool. 0 serves none.
        #[arg(long, value_name = "PORT", default_value_t = 0)]
        expose_metrics_port: u16,
    },
}

#[derive(Subcommand)]
enum CleanupCommand {
    /// Delete expired flows and codes, spent counters, dead sessions and old mail (`cleanup sql [DSN]`).
    ///
    /// Deleted: flows that expired (with their codes); one-time codes that expired or were used;
    /// wrong-code records and rate-limit events older than every window that counts them (the
    /// longest configured window, at least 24h for rate events); sessions that expired or were
    /// revoked; delivered or abandoned emails with their delivery attempts. Each only once it has
    /// been so for longer than --keep-last. Delivered emails whose code has expired have their
    /// subject and bodies blanked, so the database holds no old codes. Live flows and sessions,
    /// queued mail and counted failures are never touched.
    ///
    /// Rows go in batches of --batch-size, each its own short transaction, table after table with
    /// --sleep-tables between them, until nothing is due; the rows deleted per table are printed at
    /// the end. It is safe to interrupt and to run while servers are up, also from several hosts
    /// at once on PostgreSQL. `serve` runs the same cleanup every database.cleanup.interval.
    ///
    /// The database comes from the DSN argument, -e (the DSN environment variable) or the config
    /// files (-c); the other settings from database.cleanup in the config files and environment
    /// (DATABASE_CLEANUP_BATCH_SIZE, ...), which the flags override.
    Sql(CleanupSqlArgs),
}

#[derive(Args)]
struct CleanupSqlArgs {
    #[command(flatten)]
    target: Target,
    /// Keep records that expired, were used, revoked or delivered less than this long ago, e.g.
    /// 24h or 0s [default: database.cleanup.older_than, 24h].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_arg)]
    keep_last: Option<std::time::Duration>,
    /// Rows per batch [default: database.cleanup.batch_size, 100].
    #[arg(
        short = 'b',
        long = "batch-size",
        visible_alias = "database.cleanup.batch_size",
        value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    batch_size: Option<u32>,
    /// Pause between tables [default: database.cleanup.sleep.tables, 1m].
    #[arg(
        long = "sleep-tables",
        visible_alias = "database.cleanup.sleep.tables",
        value_name = "DURATION",
        value_parser = parse_duration_arg
    )]
    sleep_tables: Option<std::time::Duration>,
}

fn parse_duration_arg(s: &str) -> Result<std::time::Duration, String> {
    s.parse()
        .map(config::Duration::std)
        .map_err(|_: String| format!("`{s}` is not a duration such as 24h, 90m or 0s"))
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Apply pending SQL migrations (`migrate sql [DSN]`), or list them (`migrate sql status`).
    Sql(SqlArgs),
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct SqlArgs {
    #[command(subcommand)]
    action: Option<SqlAction>,
    #[command(flatten)]
    target: Target,
    /// Apply without asking for confirmation.
    #[arg(short = 'y', long)]
    yes: bool,
}

#[derive(Subcommand)]
enum SqlAction {
    /// Apply pending migrations (the default action).
    Up {
        #[command(flatten)]
        target: Target,
        /// Apply without asking for confirmation.
        #[arg(short = 'y', long)]
        yes: bool,
    },
    /// List every migration and whether it is applied.
    Status {
        #[command(flatten)]
        target: Target,
    },
}

/// Where the database is: a DSN argument, the `DSN` environment variable, or a config file.
#[derive(Args, Clone)]
struct Target {
    /// Database URL, e.g. postgres://user@127.0.0.1:5432/latchkey or sqlite:///var/lib/latchkey/db.sqlite
    #[arg(value_name = "DSN")]
    dsn: Option<String>,
    /// Read the DSN from the `DSN` environment variable.
    #[arg(short = 'e', long = "read-from-env")]
    read_from_env: bool,
    /// Read the DSN from this config file (repeatable).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Vec<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Migrate(MigrateCommand::Sql(args)) => match args.action {
                None => migrate_up(args.target, args.yes).await,
                Some(SqlAction::Up { target, yes }) => migrate_up(target, yes || args.yes).await,
                Some(SqlAction::Status { target }) => migrate_status(target).await,
            },
            Command::Cleanup(CleanupCommand::Sql(args)) => cleanup_sql(args).await,
            Command::Courier(CourierCommand::Watch { config, dev, expose_metrics_port }) => {
                courier_watch(config, dev, expose_metrics_port).await
            }
            Command::Config(ConfigCommand::Check { config, dev }) => config_check(config, dev),
            Command::Config(ConfigCommand::Reference) => {
                print!("{}", config::reference::markdown());
                Ok(())
            }
            Command::Identities(IdentitiesCommand::Import { file, config, dev, concurrency }) => {
                import_identities(file, config, dev, concurrency).await
            }
            Command::Version => {
                println!("latchkey {VERSION}");
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), String> {
    let started = std::time::Instant::now();
    let loaded = config::load(&args.config, std::env::vars(), args.dev).map_err(|e| e.to_string())?;
    let telemetry =
        crate::telemetry::init(&loaded.config.log, &loaded.config.tracing).map_err(|e| e.to_string())?;
    if !loaded.unsupported_keys.is_empty() {
        tracing::warn!(
            keys = %loaded.unsupported_keys.join(", "),
            "these configuration keys belong to features Latchkey does not implement yet; they have no effect"
        );
    }
    for notice in &loaded.notices {
        tracing::warn!("{notice}");
    }
    if loaded.config.dev {
        tracing::warn!("running in --dev mode: do not use it in production");
    }
    if loaded.config.disable_api_flow_enforcement {
        tracing::warn!("DEV_DISABLE_API_FLOW_ENFORCEMENT: API flows accept requests from browsers");
    }
    let config = loaded.config;
    tracing::info!(dsn = %config.redacted_dsn(), "opening the database");
    let app =
        Application::build(&config).await.map_err(|e| e.to_string())?.reload_from(crate::reload::Source {
            files: args.config.clone(),
            env: std::env::vars().collect(),
            dev: args.dev,
        });
    tracing::info!(
        public = %app.public_addr(),
        admin = %app.admin_addr(),
        startup_ms = started.elapsed().as_millis() as u64,
        "latchkey is ready"
    );
    let result = app.run_until_stopped(shutdown_signal()).await.map_err(|e| e.to_string());
    // The last requests' spans leave before the process does.
    telemetry.shutdown().await;
    result?;
    tracing::info!("latchkey stopped");
    Ok(())
}

async fn import_identities(
    file: PathBuf,
    files: Vec<PathBuf>,
    dev: bool,
    concurrency: usize,
) -> Result<(), String> {
    let loaded = config::load(&files, std::env::vars(), dev).map_err(|e| e.to_string())?;
    let entries = crate::import::read_entries(&file)?;
    let identities = startup::identity_manager(&loaded.config).await.map_err(|e| e.to_string())?;
    let bar = indicatif::ProgressBar::new(entries.len() as u64).with_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} identities, {per_sec}, {eta} left")
            .expect("the template parses"),
    );
    let summary = crate::import::import(&identities, entries, concurrency, || bar.inc(1)).await;
    bar.finish_and_clear();
    print!("{}", crate::import::report(&summary));
    if summary.failed.is_empty() {
        Ok(())
    } else {
        Err(format!("{} identities were not imported (reasons above)", summary.failed.len()))
    }
}

fn config_check(files: Vec<PathBuf>, dev: bool) -> Result<(), String> {
    let loaded = config::load(&files, std::env::vars(), dev).map_err(|e| e.to_string())?;
    startup::preflight(&loaded.config).map_err(|e| e.to_string())?;
    for notice in &loaded.notices {
        println!("note: {notice}");
    }
    if !loaded.unsupported_keys.is_empty() {
        println!(
            "note: these Kratos keys have no effect in Latchkey yet: {}",
            loaded.unsupported_keys.join(", ")
        );
    }
    let named: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let named = if named.is_empty() { "the defaults".to_string() } else { named.join(", ") };
    println!("configuration is valid: {named}");
    Ok(())
}

async fn courier_watch(files: Vec<PathBuf>, dev: bool, metrics_port: u16) -> Result<(), String> {
    let loaded = config::load(&files, std::env::vars(), dev).map_err(|e| e.to_string())?;
    let telemetry =
        crate::telemetry::init(&loaded.config.log, &loaded.config.tracing).map_err(|e| e.to_string())?;
    let watcher = Watcher::build(&loaded.config, metrics_port).await.map_err(|e| e.to_string())?;
    if let Some(addr) = watcher.metrics_addr() {
        tracing::info!(%addr, "serving the courier's metrics at /metrics/prometheus");
    }
    tracing::info!("the courier is watching the outbox");
    watcher.run_until_stopped(shutdown_signal()).await;
    // The last sends' spans leave before the process does.
    telemetry.shutdown().await;
    Ok(())
}

/// SIGINT or SIGTERM: stop accepting, let in-flight requests finish. The
/// handlers are installed at once, not when the future is first polled, so
/// a signal that arrives early still ends the process gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    #[cfg(unix)]
    let interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    async move {
        #[cfg(unix)]
        {
            let wait = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(terminate) => {},
                () = wait(interrupt) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing in-flight work");
    }
}

fn resolve_dsn(target: &Target) -> Result<String, String> {
    if let Some(dsn) = &target.dsn {
        return Ok(dsn.clone());
    }
    if target.read_from_env {
        return std::env::var("DSN")
            .map_err(|_| "-e was given but the DSN environment variable is not set".to_string());
    }
    if !target.config.is_empty() {
        return config::read_dsn(&target.config, std::env::vars())
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the config files set no `dsn`".to_string());
    }
    Err("name the database: a DSN argument, -e (DSN environment variable) or -c CONFIG".into())
}

async fn migrate_status(target: Target) -> Result<(), String> {
    let dsn = resolve_dsn(&target)?;
    let (store, _) = startup::open_store(&dsn).await.map_err(|e| e.to_string())?;
    let status = store.migration_status().await.map_err(|e| e.to_string())?;
    println!("{:<8} {:<10} NAME", "VERSION", "STATE");
    for m in &status {
        println!("{:<8} {:<10} {}", m.version, if m.applied { "applied" } else { "pending" }, m.description);
    }
    store.close().await;
    Ok(())
}

async fn migrate_up(target: Target, yes: bool) -> Result<(), String> {
    let dsn = resolve_dsn(&target)?;
    let (store, _) = startup::open_store(&dsn).await.map_err(|e| e.to_string())?;
    let pending: Vec<_> = store
        .migration_status()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|m| !m.applied)
        .collect();
    if pending.is_empty() {
        println!("The database schema is current; nothing to apply.");
        store.close().await;
        return Ok(());
    }
    println!("Pending migrations on {}:", config::redact_dsn(&dsn));
    for m in &pending {
        println!("  {} {}", m.version, m.description);
    }
    if !yes && !confirm("Apply them now? [y/N] ") {
        store.close().await;
        return Err("aborted: nothing was applied (pass --yes to skip this question)".into());
    }
    store.migrate().await.map_err(|e| e.to_string())?;
    println!("Applied {} migration(s).", pending.len());
    store.close().await;
    Ok(())
}

async fn cleanup_sql(args: CleanupSqlArgs) -> Result<(), String> {
    let dsn = resolve_dsn(&args.target)?;
    let loaded =
        config::load_for_cleanup(&args.target.config, std::env::vars()).map_err(|e| e.to_string())?;
    let mut settings = loaded.cleanup_settings(args.keep_last);
    if let Some(batch_size) = args.batch_size {
        settings.batch_size = batch_size;
    }
    if let Some(sleep) = args.sleep_tables {
        settings.sleep_tables = sleep;
    }
    let (store, _) = startup::open_store(&dsn).await.map_err(|e| e.to_string())?;
    let pending = store.migration_status().await.map_err(|e| e.to_string())?.iter().any(|m| !m.applied);
    if pending {
        store.close().await;
        return Err("the database schema is not current: run `latchkey migrate sql` first".into());
    }
    // A one-off run from the command line: the wall clock is the only one there is.
    let now = SystemClock.now();
    eprintln!(
        "Cleaning up {}: records done before {} (keep-last {}), {} rows per batch, {} between tables.",
        config::redact_dsn(&dsn),
        settings.before(latchkey_domain::store::CleanupStep::Flows, now).to_rfc3339(),
        humantime::format_duration(settings.keep_last.to_std().unwrap_or_default()),
        settings.batch_size,
        humantime::format_duration(settings.sleep_tables),
    );
    let mut progress = |step: latchkey_domain::store::CleanupStep,
                        done: &latchkey_domain::store::CleanupReport| {
        eprintln!("  {}: {}", step.as_str(), step.batch_rows(done));
    };
    let report = latchkey_domain::cleanup::run(store.as_ref(), &settings, now, &mut progress).await;
    store.close().await;
    let report =
        report.map_err(|e| format!("the cleanup stopped: {e}; what was deleted so far stays deleted"))?;
    println!("{:<36} {:>10}", "TABLE", "ROWS");
    for (table, rows) in report.rows() {
        println!("{table:<36} {rows:>10}");
    }
    Ok(())
}

fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    match std::io::stdin().lock().read_line(&mut answer) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(answer.trim(), "y" | "Y" | "yes"),
    }
}
