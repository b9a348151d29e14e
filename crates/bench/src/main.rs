//! `latchkey-bench`: the load driver. It starts nothing itself: it drives an
//! already running Latchkey (or Ory Kratos) server with concurrent clients for
//! a fixed time per scenario and prints, per scenario, the rate of successful
//! requests, p50/p99/max latency of those requests and the error count.
//!
//! ```text
//! latchkey-bench --public http://127.0.0.1:4433 --admin http://127.0.0.1:4434 \
//!     --clients 32 --duration 10s [--warmup 2s] [--scenario NAME ...] [--password-length 20] \
//!     [--attack-attempts 1000]
//! ```
//!
//! Scenarios, run in this order (default: all but `login-code`, the two
//! `journey-*`, `recovery-request` and `login-attack`):
//!
//! * `health`: `GET /health/alive`, the HTTP baseline.
//! * `whoami`: `GET /sessions/whoami` with `X-Session-Token`; setup registers
//!   one user per client through native registration (plus a native login
//!   when the server does not run the `session` hook after registration).
//! * `login`: one native login (create the flow, submit the password) per
//!   request, reported as logins/s.
//! * `login-code` (only when asked for: it mails the users and verifies
//!   their addresses): one native passwordless login by emailed code per
//!   request, reported as logins/s: create the flow, ask for a code for the
//!   client's own user's address (`method=code`, answered 400 in
//!   `sent_email`), read it from the outbox as the journeys below do, and
//!   submit it for a session token. The server must run with `--dev` and
//!   `selfservice.methods.code.passwordless_enabled`.
//! * `registration`: one native registration of a new `bench-<uuid>@example.com`
//!   per request, reported as registrations/s; only 200 counts as success.
//! * `whoami-under-login`: whoami and login clients (`--clients` of each) at
//!   the same time, to show whether password hashing starves requests that do
//!   not hash. Selecting it also runs plain `whoami`, its point of comparison.
//! * `journey-recovery` (only when asked for: it changes the users'
//!   passwords): one complete native account recovery per request, reported
//!   as journeys/s: create the flow, ask for a code by email, read the code
//!   from `GET /admin/courier/messages?recipient=` (subjects are shown only
//!   when the server runs with `--dev`; emails may stay queued without SMTP),
//!   submit it, and set a new random password in the settings flow it hands
//!   over. Each client recovers its own user. The server must have recovery
//!   enabled (the quickstart does). A settings hook such as the quickstart's
//!   `revoke_active_sessions` ends the users' sessions, so run it last or
//!   alone. Every journey leaves an email in the outbox, and the listing the
//!   code is read from grows with them over a long run.
//! * `journey-verification` (only when asked for: it verifies the users'
//!   addresses and needs `--dev` too): one complete native email verification
//!   per request, reported as journeys/s: create the flow, ask for a code for
//!   the client's own user's address, read it from the outbox as above, and
//!   submit it. The server must have verification enabled (the quickstart
//!   does). It hashes nothing, so it shows the flow and outbox machinery
//!   without the hasher; its emails pile up in the outbox like recovery's.
//! * `login-attack` (only when asked for: it leaves a user throttled for a
//!   while): registers one user, then one address (`203.0.113.66` in
//!   `X-Forwarded-For`) sends `--attack-attempts` (1,000) wrong passwords for
//!   it over `--clients` connections while the user, from `198.51.100.23`,
//!   tries the right password every 200 ms until signed in, comes back 5 s
//!   later, and again until signed in after the attack;
//!   `--attack-rate N` paces the attack at N attempts a second.
//!   Reports how many attempts reached the hasher (400) and how many were
//!   refused before it (429), and how long each visit was kept out. The server
//!   must trust the driver as a proxy (`serve.public.trusted_proxies`).
//!
//! Login clients each send their own `X-Forwarded-For` address (`10.77.x.y`),
//! so a server that trusts the driver as a proxy throttles them apart, as it
//! would app users behind a proxy; `scripts/bench.sh` starts it that way.
//!
//! The end of the output is a table and the ratios `whoami/health` and
//! `whoami under login/alone`, both from the same run; with `--hasher`, also
//! `login/hasher`, `registration/hasher` and `journey/hasher` (one hash each). Each scenario is
//! preceded by `--warmup` of unmeasured load; requests still in flight at the
//! deadline are dropped, so the program always finishes on time. Targets must
//! be loopback unless `--allow-remote` is given. The exit status is 1 when a
//! scenario could not start (its setup or first request failed) and 2 for bad
//! arguments or an unreachable server.
//!
//! Run it optimised (`cargo run --release -p latchkey-bench -- ...`): a debug
//! build spends a whole core at a few thousand requests/s and ends up
//! measuring itself. The driver shares the machine with the server when both
//! run on one host; on a small machine compare ratios between runs, not
//! absolute rates. Every run leaves its `bench-*@example.com` identities in
//! the server's database, so point it at a throwaway one (`DSN=memory`).
//! Start that server with `SECURITY_SEND_LIMITS_ENABLED=false` (as
//! `scripts/bench.sh` does): all clients share one address, and the journeys
//! mail each user far more than five codes an hour.

mod api;
mod attack;
mod cli;
mod driver;
mod hasher;
mod login_code;
mod mailbox;
mod recovery;
mod report;
mod scenarios;
mod stats;
mod users;
mod verification;

use std::process::ExitCode;

use clap::Parser;

use crate::api::Api;
use crate::cli::Cli;
use crate::scenarios::{Bench, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(message) = cli.check_targets() {
        eprintln!("latchkey-bench: {message}");
        return ExitCode::from(2);
    }
    let api = match Api::new(&cli.public, &cli.admin) {
        Ok(api) => api,
        Err(e) => {
            eprintln!("latchkey-bench: cannot build the HTTP client: {e}");
            return ExitCode::from(2);
        }
    };
    // Both ports first: a wrong URL should fail in a second, not after the first scenario's setup.
    for probe in [api.public_alive().await, api.admin_alive().await] {
        if let Err(e) = probe {
            eprintln!(
                "latchkey-bench: {e}\n  is the server running at --public {} / --admin {}?",
                cli.public, cli.admin
            );
            return ExitCode::from(2);
        }
    }

    // Measured before the server is loaded, so the two do not compete.
    let hasher_rate = match cli.hasher.as_deref().map(hasher::parse).transpose() {
        Ok(config) => config.map(|config| {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let rate = hasher::measure(&config, threads, cli.duration);
            println!("hasher alone: {rate:.1} verifications/s ({threads} threads, {config:?})");
            rate
        }),
        Err(e) => {
            eprintln!("latchkey-bench: --hasher: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = cli.plan();
    let names: Vec<_> = plan.iter().map(|s| s.name()).collect();
    println!(
        "latchkey-bench: {} (admin {}), {} clients, {} warm-up + {} measured per scenario: {}",
        cli.public,
        cli.admin,
        cli.clients,
        humantime::format_duration(cli.warmup),
        humantime::format_duration(cli.duration),
        names.join(", ")
    );
    let settings = Settings {
        clients: usize::from(cli.clients),
        warmup: cli.warmup,
        duration: cli.duration,
        password_length: usize::from(cli.password_length),
        attack_attempts: cli.attack_attempts as usize,
        attack_rate: cli.attack_rate,
    };
    let mut bench = Bench::new(api, settings);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    for scenario in plan {
        eprintln!("{} …", scenario.name());
        match bench.run(scenario).await {
            Ok(measured) => {
                for line in &measured {
                    println!("{}", report::line(line));
                }
                lines.extend(measured);
            }
            Err(why) => {
                println!("{}: FAILED: {why}", scenario.name());
                failed.push((scenario.name(), why));
            }
        }
    }

    println!("\n{}\n{}", report::table(&lines, &failed), report::ratios(&lines).trim_end());
    if let Some(rate) = hasher_rate {
        // Each of these hashes one password per request (a journey: the new password).
        for (label, name) in
            [("login", "login"), ("registration", "registration"), ("journey-recovery", "journey")]
        {
            for line in lines.iter().filter(|l| l.label == label) {
                let own = line.summary.rate();
                println!(
                    "{:<28} {:.3}  ({own:.1} / {rate:.1} hasher alone)",
                    format!("{name}/hasher"),
                    own / rate
                );
            }
        }
    }
    if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
