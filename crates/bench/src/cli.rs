//! The command line: what to drive, how hard and for how long. Targets are
//! checked here, before any request leaves, so that a mistyped URL cannot
//! point a load test at somebody else's server.

use std::net::IpAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use reqwest::Url;

#[derive(Parser, Debug)]
#[command(
    name = "latchkey-bench",
    version,
    about = "Drive a running Latchkey (or Ory Kratos) server with concurrent clients and report \
throughput and latency per scenario",
    after_help = "Scenarios run in this order: health, whoami, login, login-code, registration, whoami-under-login, \
journey-recovery, journey-verification, recovery-request, login-attack. Without --scenario all of them run \
except login-code, the two journeys, recovery-request and login-attack, which run only when named: login-code \
signs the benchmark users in by emailed code (passwordless), which mails them and verifies their addresses; recovery-request asks \
for recovery codes (half for the benchmark users, half for unknown addresses) and fills the outbox; journey-recovery changes the benchmark users' \
passwords (and, with a revoke_active_sessions settings hook, ends their sessions), and \
journey-verification verifies their addresses. These three need a server started with --dev (so the admin \
courier API shows the codes), login-code with selfservice.methods.code.passwordless_enabled, \
journey-recovery with recovery enabled and journey-verification with verification enabled. login-attack sends --attack-attempts wrong passwords for one user from one \
address while that user signs in from another, and reports how many reached the hasher and how long \
the user was kept out. whoami-under-login also runs plain whoami, because it reports its rate relative \
to whoami alone.\n\nEach login client sends its own X-Forwarded-For address (10.77.x.y; login-attack: \
203.0.113.66 and 198.51.100.23). A server that trusts this machine as a proxy \
(serve.public.trusted_proxies; scripts/bench.sh sets it) counts them apart for login throttling; one \
that does not sees every client at one address, which with more clients than \
security.login_throttling.ip.max_failures logging in at once has some refused (429), and gives \
login-attack's user the attacker's address."
)]
pub struct Cli {
    /// Base URL of the public API.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4433", value_parser = parse_base_url)]
    pub public: Url,
    /// Base URL of the admin API (probed at start so a wrong port fails fast).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:4434", value_parser = parse_base_url)]
    pub admin: Url,
    /// Concurrent clients per scenario; whoami-under-login runs this many of each kind.
    #[arg(long, value_name = "N", default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub clients: u16,
    /// Measured time per scenario (humantime: 10s, 1m30s, 500ms).
    #[arg(long, value_name = "TIME", default_value = "10s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Unmeasured load before each scenario's measured time, to fill connection pools and caches.
    #[arg(long, value_name = "TIME", default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Scenario to run; repeat or list several. Default: all but login-code, the journeys, recovery-request and login-attack.
    #[arg(long = "scenario", value_name = "NAME", value_enum, num_args = 1..)]
    pub scenarios: Vec<Scenario>,
    /// Length of the random passwords given to benchmark users (8 to 72: policy minimum to bcrypt maximum).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u8).range(8..=72))]
    pub password_length: u8,
    /// Wrong passwords the login-attack scenario sends.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub attack_attempts: u32,
    /// Pace of the login-attack scenario's attempts, per second (default: as fast as --clients go).
    #[arg(long, value_name = "N", value_parser = parse_rate)]
    pub attack_rate: Option<f64>,
    /// Also measure the hasher alone, locally, with the server's parameters:
    /// `argon2:m=KiB,t=N,p=N` or `bcrypt:COST`.
    #[arg(long, value_name = "SPEC")]
    pub hasher: Option<String>,
    /// Allow --public/--admin hosts that are not loopback.
    #[arg(long)]
    pub allow_remote: bool,
}

/// Declaration order is run order: cheap baselines first, so the ratios
/// printed at the end have their denominators.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// GET /health/alive: the HTTP baseline.
    Health,
    /// GET /sessions/whoami with a session token.
    Whoami,
    /// Native login: create the flow, submit the password.
    Login,
    /// Native passwordless login: create the flow, ask for a code by email,
    /// read it from the admin courier API, submit it; needs a server with
    /// --dev and selfservice.methods.code.passwordless_enabled. Not run by
    /// default: it mails the users and verifies their addresses.
    LoginCode,
    /// Native registration of a fresh identity.
    Registration,
    /// whoami and login at the same time, to see whether hashing starves cheap requests.
    WhoamiUnderLogin,
    /// Native account recovery by emailed code, then a new password; needs a
    /// server with --dev and recovery enabled. Not run by default: it changes the users' passwords.
    JourneyRecovery,
    /// Native email verification by emailed code; needs a server with --dev
    /// and verification enabled. Not run by default: it verifies the users' addresses.
    JourneyVerification,
    /// Native recovery code requests (flow, then the address), half for the
    /// benchmark users' addresses and half for addresses nobody has. Not run
    /// by default: it fills the outbox with mail for the users.
    RecoveryRequest,
    /// One address sends wrong passwords for one user while the user signs in
    /// from another. Not run by default: it leaves that user throttled for a while.
    LoginAttack,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Health => "health",
            Scenario::Whoami => "whoami",
            Scenario::Login => "login",
            Scenario::LoginCode => "login-code",
            Scenario::Registration => "registration",
            Scenario::WhoamiUnderLogin => "whoami-under-login",
            Scenario::JourneyRecovery => "journey-recovery",
            Scenario::JourneyVerification => "journey-verification",
            Scenario::RecoveryRequest => "recovery-request",
            Scenario::LoginAttack => "login-attack",
        }
    }

    /// Whether it runs when no --scenario is given: not when it changes the
    /// benchmark users or needs a server in --dev.
    pub fn is_default(self) -> bool {
        !matches!(
            self,
            Scenario::LoginCode
                | Scenario::JourneyRecovery
                | Scenario::JourneyVerification
                | Scenario::RecoveryRequest
                | Scenario::LoginAttack
        )
    }
}

impl Cli {
    /// The scenarios to run, in run order, without repeats.
    pub fn plan(&self) -> Vec<Scenario> {
        plan(&self.scenarios)
    }

    /// Refuses non-loopback targets unless `--allow-remote` was given.
    pub fn check_targets(&self) -> Result<(), String> {
        if self.allow_remote {
            return Ok(());
        }
        for (flag, url) in [("--public", &self.public), ("--admin", &self.admin)] {
            if !is_loopback(url) {
                return Err(format!(
                    "{flag} {url} is not a loopback address; pass --allow-remote to load-test another machine"
                ));
            }
        }
        Ok(())
    }
}

fn plan(requested: &[Scenario]) -> Vec<Scenario> {
    let mut plan = if requested.is_empty() {
        Scenario::value_variants().iter().copied().filter(|s| s.is_default()).collect()
    } else {
        requested.to_vec()
    };
    if plan.contains(&Scenario::WhoamiUnderLogin) {
        plan.push(Scenario::Whoami);
    }
    plan.sort();
    plan.dedup();
    plan
}

/// Only the literal name `localhost` counts among host names: `*.localhost`
/// is loopback by RFC 6761 but the system resolver does not promise it.
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else { return false };
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => ip.is_loopback(),
        Ok(IpAddr::V6(ip)) => ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|ip| ip.is_loopback()),
        Err(_) => false,
    }
}

fn parse_base_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("scheme must be http or https, not {}", url.scheme()));
    }
    if url.host_str().is_none() {
        return Err("the URL has no host".into());
    }
    // Paths are appended to the base verbatim; a query or fragment would end up in the middle.
    if url.query().is_some() || url.fragment().is_some() {
        return Err("a base URL takes no query or fragment".into());
    }
    Ok(url)
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|e| format!("{e} (examples: 10s, 1m30s, 500ms)"))
}

fn parse_rate(value: &str) -> Result<f64, String> {
    match value.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err("expected a positive number of attempts per second, such as 10 or 0.5".into()),
    }
}

fn parse_positive_duration(value: &str) -> Result<Duration, String> {
    let duration = parse_duration(value)?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("latchkey-bench").chain(args.iter().copied()))
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:4433",
            "http://127.1.2.3/",
            "http://localhost:4433",
            "http://LOCALHOST",
            "http://[::1]:4433",
            "http://[::ffff:127.0.0.1]:4433",
            "https://127.0.0.1/kratos/",
        ] {
            assert!(is_loopback(&parse_base_url(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn other_hosts_are_not_loopback() {
        for url in [
            "http://0.0.0.0:4433",
            "http://10.0.0.1",
            "http://192.168.1.2:4433",
            "http://[::]:4433",
            "http://[2001:db8::1]",
            "http://example.com",
            "http://localhost.example.com",
            "http://app.localhost",
        ] {
            assert!(!is_loopback(&parse_base_url(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn base_urls_must_be_plain_http() {
        assert!(parse_base_url("ftp://127.0.0.1").is_err());
        assert!(parse_base_url("127.0.0.1:4433").is_err());
        assert!(parse_base_url("http://127.0.0.1:4433/?x=1").is_err());
        assert!(parse_base_url("http://127.0.0.1:4433/#top").is_err());
        assert!(parse_base_url("unix:/run/latchkey.sock").is_err());
    }

    #[test]
    fn remote_targets_need_allow_remote() {
        let refused = cli(&["--public", "http://10.1.2.3:4433"]).unwrap();
        let message = refused.check_targets().unwrap_err();
        assert!(message.contains("--public http://10.1.2.3:4433/"), "{message}");
        let admin = cli(&["--admin", "http://example.com:4434"]).unwrap();
        assert!(admin.check_targets().unwrap_err().contains("--admin"));
        let allowed = cli(&["--public", "http://10.1.2.3:4433", "--allow-remote"]).unwrap();
        assert_eq!(allowed.check_targets(), Ok(()));
        assert_eq!(cli(&[]).unwrap().check_targets(), Ok(()));
    }

    #[test]
    fn durations_use_humantime() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn defaults_match_the_quickstart_ports() {
        let cli = cli(&[]).unwrap();
        assert_eq!(cli.public.as_str(), "http://127.0.0.1:4433/");
        assert_eq!(cli.admin.as_str(), "http://127.0.0.1:4434/");
        assert_eq!(
            (cli.clients, cli.duration, cli.warmup),
            (32, Duration::from_secs(10), Duration::from_secs(2))
        );
        assert_eq!(cli.password_length, 20);
        assert_eq!(cli.attack_attempts, 1000);
    }

    #[test]
    fn flags_are_validated() {
        assert!(cli(&["--clients", "0"]).is_err());
        assert!(cli(&["--duration", "0s"]).is_err());
        assert!(cli(&["--password-length", "7"]).is_err());
        assert!(cli(&["--password-length", "73"]).is_err());
        assert!(cli(&["--scenario", "mixed"]).is_err());
        assert!(cli(&["--warmup", "0s"]).is_ok());
        assert!(cli(&["--attack-attempts", "0"]).is_err());
        assert_eq!(cli(&["--attack-rate", "2.5"]).unwrap().attack_rate, Some(2.5));
        for bad in ["0", "-1", "fast", "inf"] {
            assert!(cli(&["--attack-rate", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn report_names_are_the_command_line_names() {
        for scenario in Scenario::value_variants() {
            assert_eq!(scenario.to_possible_value().unwrap().get_name(), scenario.name());
        }
    }

    #[test]
    fn the_plan_runs_in_a_fixed_order_and_brings_whoami_along() {
        use Scenario::*;
        assert_eq!(plan(&[]), vec![Health, Whoami, Login, Registration, WhoamiUnderLogin]);
        assert_eq!(plan(&[Login, Health, Login]), vec![Health, Login]);
        assert_eq!(plan(&[WhoamiUnderLogin]), vec![Whoami, WhoamiUnderLogin]);
        let parsed =
            cli(&["--scenario", "registration", "health", "--scenario", "whoami-under-login"]).unwrap();
        assert_eq!(parsed.plan(), vec![Health, Whoami, Registration, WhoamiUnderLogin]);
        assert_eq!(plan(&[JourneyRecovery, Login]), vec![Login, JourneyRecovery]);
        assert_eq!(cli(&["--scenario", "journey-recovery"]).unwrap().plan(), vec![JourneyRecovery]);
        assert_eq!(
            plan(&[JourneyVerification, JourneyRecovery, Health]),
            vec![Health, JourneyRecovery, JourneyVerification]
        );
        assert_eq!(
            cli(&["--scenario", "journey-verification", "health"]).unwrap().plan(),
            vec![Health, JourneyVerification]
        );
        assert_eq!(plan(&[LoginAttack, Login]), vec![Login, LoginAttack]);
        assert_eq!(
            cli(&["--scenario", "login-code", "login", "registration"]).unwrap().plan(),
            vec![Login, LoginCode, Registration]
        );
    }
}
