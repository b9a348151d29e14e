//! The command line, shaped like Kratos's so its users feel at home:
//! `serve`, `migrate sql`, `version`.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config;
use crate::startup::{self, Application, VERSION};

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
    /// On SQLite (and `dsn: memory`) pending database migrations are applied at start.
    /// On PostgreSQL the server refuses to start until `latchkey migrate sql` has been run.
    /// Every config key can be overridden by an environment variable named after its path,
    /// upper-cased with `_`: DSN, SERVE_PUBLIC_PORT, SERVE_ADMIN_PORT, SECRETS_COOKIE, ...
    ///
    /// Slow and idle clients are cut off by `serve.limits`: header_read_timeout (10s),
    /// body_read_timeout (30s), idle_timeout (10s) and max_connections (1024 per listener).
    /// `X-Forwarded-For` is believed only from the peers listed in serve.public.trusted_proxies
    /// (addresses or CIDR networks; none by default). Failed password logins are throttled per
    /// identifier and per client address, before any hash (security.login_throttling, on by
    /// default): behind a proxy, list it there, or every client shares the proxy's address.
    Serve(ServeArgs),
    /// Manage the database schema.
    #[command(subcommand)]
    Migrate(MigrateCommand),
    /// Run the email courier on its own (serve already runs one when SMTP is configured).
    #[command(subcommand)]
    Courier(CourierCommand),
    /// Print the version.
    Version,
}

#[derive(Args)]
struct ServeArgs {
    /// Config file (YAML, Kratos key names); repeat to layer files, later ones win.
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
    },
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
            Command::Courier(CourierCommand::Watch { config, dev }) => courier_watch(config, dev).await,
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
    crate::telemetry::init(&loaded.config.log);
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
    let config = loaded.config;
    tracing::info!(dsn = %config.redacted_dsn(), "opening the database");
    let app = Application::build(&config).await.map_err(|e| e.to_string())?;
    tracing::info!(
        public = %app.public_addr(),
        admin = %app.admin_addr(),
        startup_ms = started.elapsed().as_millis() as u64,
        "latchkey is ready"
    );
    app.run_until_stopped(shutdown_signal()).await.map_err(|e| e.to_string())?;
    tracing::info!("latchkey stopped");
    Ok(())
}

async fn courier_watch(files: Vec<PathBuf>, dev: bool) -> Result<(), String> {
    let loaded = config::load(&files, std::env::vars(), dev).map_err(|e| e.to_string())?;
    crate::telemetry::init(&loaded.config.log);
    let (store, _) = startup::open_store(&loaded.config.dsn).await.map_err(|e| e.to_string())?;
    let Some(dispatcher) = startup::dispatcher(&loaded.config, store.clone()).map_err(|e| e.to_string())?
    else {
        store.close().await;
        return Err("courier.smtp.connection_uri is not set: there is nowhere to send to".into());
    };
    tracing::info!("the courier is watching the outbox");
    dispatcher.run(std::time::Duration::from_secs(1), shutdown_signal()).await;
    store.close().await;
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

fn confirm(question: &str) -> bool {
    print!("{question}");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    match std::io::stdin().lock().read_line(&mut answer) {
        Ok(0) | Err(_) => false,
        Ok(_) => matches!(answer.trim(), "y" | "Y" | "yes"),
    }
}
