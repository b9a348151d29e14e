//! The SMTP [`Mailer`]: reads Kratos's `courier.smtp` settings, checks them
//! once when the server starts, and delivers messages over pooled
//! connections (a backlog after an outage goes out without a handshake per
//! message). Credentials are kept out of every error, log line and `Debug`
//! output, since delivery errors end up in the dispatch log and the outbox.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use latchkey_domain::courier::{MailError, Mailer, Message};
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use percent_encoding::percent_decode_str;

/// How long connecting, and each exchange with the server, may take. A
/// stalled server must not hold the dispatcher's batch for long.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound for one whole delivery, in case a server answers just often
/// enough to keep resetting [`IO_TIMEOUT`].
const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Pooled connections: one per message the dispatcher sends at once, each
/// reused (lettre checks it with NOOP before each send and opens a new one
/// if the relay dropped it); idle ones close after a minute, before most
/// relays would drop them.
const POOL_SIZE: u32 = latchkey_domain::courier::SENDS_AT_ONCE as u32;
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Headers the mailer writes itself; letting `headers` set them again would
/// produce duplicates or let configuration redirect mail.
const MANAGED_HEADERS: &[&str] = &[
    "from",
    "to",
    "cc",
    "bcc",
    "sender",
    "subject",
    "date",
    "message-id",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
];

/// Kratos's `courier.smtp` settings.
#[derive(Clone, PartialEq)]
pub struct SmtpConfig {
    /// `smtp://user:pass@host:port/` (STARTTLS required), with
    /// `?disable_starttls=true` for plain SMTP, or `smtps://...` (implicit
    /// TLS). `?skip_ssl_verify=true` turns certificate checks off and
    /// `?server_name=` sets the name the certificate is checked against.
    pub connection_uri: String,
    /// The envelope sender and `From` address.
    pub from_address: String,
    /// Display name in `From`.
    pub from_name: Option<String>,
    /// Extra headers added to every message.
    pub headers: BTreeMap<String, String>,
    /// Name sent in `EHLO`; lettre's default (`[127.0.0.1]`) when unset.
    pub local_name: Option<String>,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("connection_uri", &redact_uri(&self.connection_uri))
            .field("from_address", &self.from_address)
            .field("from_name", &self.from_name)
            .field("headers", &self.headers)
            .field("local_name", &self.local_name)
            .finish()
    }
}

/// The connection settings read from `connection_uri`.
#[derive(Clone, PartialEq)]
pub struct SmtpEndpoint {
    /// Host name or IP address of the server.
    pub host: String,
    /// TCP port; 25 for `smtp` and 465 for `smtps` unless the URI names one.
    pub port: u16,
    /// How the connection is protected.
    pub security: Security,
    /// Whether certificate verification is turned off (`skip_ssl_verify`).
    pub skip_ssl_verify: bool,
    /// The name the server certificate must match; the host by default.
    pub server_name: String,
    /// User name and password, percent-decoded; `None` when the URI has no
    /// user, in which case the mailer does not authenticate.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for SmtpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpEndpoint")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("skip_ssl_verify", &self.skip_ssl_verify)
            .field("server_name", &self.server_name)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish()
    }
}

/// A `courier.smtp` setting that cannot be used. None of these carries the
/// connection URI, which may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum SmtpConfigError {
    #[error("courier.smtp.connection_uri is not a valid URI: {0}")]
    Uri(#[source] url::ParseError),
    #[error("courier.smtp.connection_uri has the scheme `{0}`; expected `smtp` or `smtps`")]
    Scheme(String),
    #[error("courier.smtp.connection_uri has no host")]
    NoHost,
    #[error("courier.smtp.connection_uri: `{key}` must be true or false, not `{value}`")]
    NotABool { key: String, value: String },
    #[error("courier.smtp.connection_uri: the {what} is not valid UTF-8 once percent-decoded")]
    NotUtf8 { what: &'static str, source: std::str::Utf8Error },
    #[error("courier.smtp.from_address `{address}` is not an email address: {source}")]
    FromAddress { address: String, source: lettre::address::AddressError },
    #[error("courier.smtp.from_name must be a single line")]
    FromNameLines,
    #[error("courier.smtp.headers: `{0}` is set by the mailer and cannot be overridden")]
    ManagedHeader(String),
    #[error("courier.smtp.headers: `{0}` is not a valid header name")]
    HeaderName(String),
    #[error("courier.smtp.headers: the value of `{0}` must be a single line")]
    HeaderLines(String),
    #[error("courier.smtp.connection_uri: cannot set up TLS: {0}")]
    Tls(#[source] lettre::transport::smtp::Error),
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain SMTP, upgraded with STARTTLS; sending fails if the server does
    /// not offer it.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    ImplicitTls,
    /// No encryption at all (`disable_starttls=true`).
    None,
}

impl SmtpEndpoint {
    /// Reads a Kratos `connection_uri`. Errors say what is wrong without
    /// repeating the URI, which may hold a password.
    pub fn parse(connection_uri: &str) -> Result<SmtpEndpoint, SmtpConfigError> {
        let url = url::Url::parse(connection_uri.trim()).map_err(SmtpConfigError::Uri)?;
        let implicit_tls = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            other => return Err(SmtpConfigError::Scheme(other.to_string())),
        };
        let host = match url.host() {
            Some(url::Host::Domain(domain)) if !domain.is_empty() => domain.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(SmtpConfigError::NoHost),
        };
        let port = url.port().unwrap_or(if implicit_tls { 465 } else { 25 });

        let mut disable_starttls = false;
        let mut skip_ssl_verify = false;
        let mut server_name = None;
        for (key, value) in url.query_pairs() {
            match key.as_ref() {
                "disable_starttls" => disable_starttls = parse_bool(&key, &value)?,
                "skip_ssl_verify" => skip_ssl_verify = parse_bool(&key, &value)?,
                "server_name" if !value.is_empty() => server_name = Some(value.into_owned()),
                "server_name" => {}
                other => tracing::warn!(
                    parameter = other,
                    "ignoring unknown parameter in courier.smtp.connection_uri"
                ),
            }
        }
        let security = match (implicit_tls, disable_starttls) {
            (true, _) => Security::ImplicitTls,
            (false, false) => Security::StartTls,
            (false, true) => Security::None,
        };

        let credentials = if url.username().is_empty() {
            None
        } else {
            let user = decode(url.username(), "user name")?;
            let password = decode(url.password().unwrap_or(""), "password")?;
            Some((user, password))
        };
        Ok(SmtpEndpoint {
            server_name: server_name.unwrap_or_else(|| host.clone()),
            host,
            port,
            security,
            skip_ssl_verify,
            credentials,
        })
    }
}

/// Go's `strconv.ParseBool`, which Kratos uses for these parameters; unlike
/// Kratos, a value it cannot read is an error rather than `false`.
fn parse_bool(key: &str, value: &str) -> Result<bool, SmtpConfigError> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        other => Err(SmtpConfigError::NotABool { key: key.to_string(), value: other.to_string() }),
    }
}

fn decode(raw: &str, what: &'static str) -> Result<String, SmtpConfigError> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|source| SmtpConfigError::NotUtf8 { what, source })
}

/// The URI with its password replaced, for `Debug` output.
fn redact_uri(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("REDACTED"));
            }
            url.to_string()
        }
        Err(_) => "<invalid URI>".to_string(),
    }
}

/// Delivers messages through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    endpoint: SmtpEndpoint,
    from: Mailbox,
    headers: Vec<HeaderValue>,
    /// Forms of the password that could surface in an error (as configured
    /// and percent-decoded), blanked out of every error message.
    secrets: Vec<String>,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer").field("endpoint", &self.endpoint).field("from", &self.from).finish()
    }
}

impl SmtpMailer {
    /// Checks `config` and prepares the transport; nothing is connected yet.
    /// Errors name the setting that is wrong and never contain the password.
    /// Must run inside a Tokio runtime: the pool starts a task that closes
    /// idle connections.
    pub fn new(config: SmtpConfig) -> Result<SmtpMailer, SmtpConfigError> {
        let endpoint = SmtpEndpoint::parse(&config.connection_uri)?;

        let address: Address = config.from_address.trim().parse().map_err(|source| {
            SmtpConfigError::FromAddress { address: config.from_address.clone(), source }
        })?;
        let name = config.from_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.contains(['\r', '\n'])) {
            return Err(SmtpConfigError::FromNameLines);
        }
        let from = Mailbox::new(name.map(str::to_string), address);

        let mut headers = Vec::with_capacity(config.headers.len());
        for (name, value) in &config.headers {
            if MANAGED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(SmtpConfigError::ManagedHeader(name.clone()));
            }
            let header_name = HeaderName::new_from_ascii(name.clone())
                .map_err(|_| SmtpConfigError::HeaderName(name.clone()))?;
            if value.contains(['\r', '\n']) {
                return Err(SmtpConfigError::HeaderLines(name.clone()));
            }
            headers.push(HeaderValue::new(header_name, value.clone()));
        }

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(endpoint.host.clone())
            .port(endpoint.port)
            .timeout(Some(IO_TIMEOUT))
            .pool_config(PoolConfig::new().max_size(POOL_SIZE).idle_timeout(POOL_IDLE));
        let tls_parameters = || {
            TlsParameters::builder(endpoint.server_name.clone())
                .dangerous_accept_invalid_certs(endpoint.skip_ssl_verify)
                .dangerous_accept_invalid_hostnames(endpoint.skip_ssl_verify)
                .build()
                .map_err(SmtpConfigError::Tls)
        };
        builder = match endpoint.security {
            Security::StartTls => builder.tls(Tls::Required(tls_parameters()?)),
            Security::ImplicitTls => builder.tls(Tls::Wrapper(tls_parameters()?)),
            Security::None => builder.tls(Tls::None),
        };
        if endpoint.skip_ssl_verify && endpoint.security != Security::None {
            tracing::warn!(
                host = %endpoint.host,
                "courier.smtp.connection_uri has skip_ssl_verify=true: the SMTP server's certificate is \
                 not checked, so anyone on the network path can read and alter outgoing mail"
            );
        }
        let mut secrets = Vec::new();
        if let Some((user, password)) = &endpoint.credentials {
            if endpoint.security == Security::None {
                tracing::warn!(
                    host = %endpoint.host,
                    "courier.smtp.connection_uri has disable_starttls=true and credentials: \
                     the SMTP password is sent unencrypted"
                );
            }
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
            if !password.is_empty() {
                secrets.push(password.clone());
                if let Ok(url) = url::Url::parse(config.connection_uri.trim())
                    && let Some(raw) = url.password()
                    && raw != password
                {
                    secrets.push(raw.to_string());
                }
            }
        }
        if let Some(local_name) = config.local_name.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
            builder = builder.hello_name(ClientId::Domain(local_name.to_string()));
        }

        Ok(SmtpMailer { transport: builder.build(), endpoint, from, headers, secrets })
    }

    /// Where and how this mailer connects.
    pub fn endpoint(&self) -> &SmtpEndpoint {
        &self.endpoint
    }

    fn build_email(&self, message: &Message) -> Result<lettre::Message, MailError> {
        let to: Address = message.recipient.trim().parse().map_err(|e| {
            MailError::permanent(format!("recipient `{}` is not an email address: {e}", message.recipient))
        })?;
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(message.subject.clone());
        for header in &self.headers {
            builder = builder.raw_header(header.clone());
        }
        let result = match &message.html_body {
            Some(html) => {
                builder.multipart(MultiPart::alternative_plain_html(message.body.clone(), html.clone()))
            }
            None => builder.singlepart(SinglePart::plain(message.body.clone())),
        };
        result.map_err(|e| MailError::permanent(format!("cannot build the email: {e}")))
    }

    /// Removes anything secret from an error text before it leaves the mailer.
    fn scrub(&self, text: String) -> String {
        self.secrets.iter().fold(text, |text, secret| text.replace(secret.as_str(), "[REDACTED]"))
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let email = self.build_email(message)?;
        let server = format!("{}:{}", self.endpoint.host, self.endpoint.port);
        match tokio::time::timeout(SEND_TIMEOUT, self.transport.send(email)).await {
            Ok(Ok(response)) => {
                tracing::debug!(message_id = %message.id, %server, code = %response.code(), "email sent");
                Ok(())
            }
            Ok(Err(e)) => {
                let text = self.scrub(format!("sending through {server} failed: {e}"));
                // A 5xx reply (unknown recipient, rejected content) will be
                // the same next time; everything else (4xx, refused or
                // dropped connections, timeouts, TLS) may pass later.
                Err(if e.is_permanent() { MailError::permanent(text) } else { MailError::transient(text) })
            }
            Err(_) => Err(MailError::transient(format!(
                "sending through {server} did not finish within {} seconds",
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(uri: &str) -> SmtpConfig {
        SmtpConfig {
            connection_uri: uri.to_string(),
            from_address: "no-reply@example.com".to_string(),
            from_name: Some("Latchkey".to_string()),
            headers: BTreeMap::new(),
            local_name: None,
        }
    }

    #[test]
    fn smtp_requires_starttls_by_default() {
        let e = SmtpEndpoint::parse("smtp://mail.example.com").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.security), ("mail.example.com", 25, Security::StartTls));
        assert!(!e.skip_ssl_verify && e.credentials.is_none());
        assert_eq!(e.server_name, "mail.example.com");
    }

    #[test]
    fn smtps_is_implicit_tls_on_465() {
        let e = SmtpEndpoint::parse("smtps://mail.example.com/").unwrap();
        assert_eq!((e.port, e.security), (465, Security::ImplicitTls));
        let e = SmtpEndpoint::parse("smtps://mail.example.com:2465/?disable_starttls=true").unwrap();
        assert_eq!((e.port, e.security), (2465, Security::ImplicitTls));
    }

    #[test]
    fn query_parameters() {
        let e = SmtpEndpoint::parse("smtp://127.0.0.1:1025/?disable_starttls=true").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.security), ("127.0.0.1", 1025, Security::None));
        let e = SmtpEndpoint::parse("smtp://h:587/?skip_ssl_verify=true&disable_starttls=false").unwrap();
        assert_eq!((e.port, e.security, e.skip_ssl_verify), (587, Security::StartTls, true));
        let e = SmtpEndpoint::parse("smtps://10.0.0.5/?server_name=mail.internal").unwrap();
        assert_eq!((e.host.as_str(), e.server_name.as_str()), ("10.0.0.5", "mail.internal"));
        let e = SmtpEndpoint::parse("smtp://[::1]:25/?disable_starttls=1").unwrap();
        assert_eq!((e.host.as_str(), e.security), ("::1", Security::None));
        let err = SmtpEndpoint::parse("smtp://h/?disable_starttls=yes").unwrap_err().to_string();
        assert!(err.contains("disable_starttls") && err.contains("yes"), "{err}");
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let e =
            SmtpEndpoint::parse("smtp://ada%40example.com:p%3Ass%2Fw%40rd%20x@mail.example.com:587").unwrap();
        assert_eq!(e.credentials, Some(("ada@example.com".to_string(), "p:ss/w@rd x".to_string())));
        let e = SmtpEndpoint::parse("smtp://apikey@mail.example.com").unwrap();
        assert_eq!(e.credentials, Some(("apikey".to_string(), String::new())));
    }

    #[tokio::test]
    async fn errors_never_contain_the_password() {
        let secret = "hunter2-Secret";
        for uri in [
            format!("http://user:{secret}@mail.example.com"),
            format!("smtp://user:{secret}@:25"),
            format!("smtp://user:{secret}@host:99999"),
            format!("smtp://user:{secret}@host/?skip_ssl_verify=maybe"),
            format!("smtp://user:{secret}%FF@host"),
            format!("user:{secret}@host"),
        ] {
            let err = SmtpMailer::new(config(&uri)).unwrap_err().to_string();
            assert!(err.contains("connection_uri"), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
        let err = SmtpEndpoint::parse("ftp://h").unwrap_err().to_string();
        assert!(err.contains("`ftp`"), "{err}");
        assert!(SmtpEndpoint::parse("smtp://h/?x=1").is_ok());
    }

    #[tokio::test]
    async fn debug_output_hides_the_password() {
        let cfg = config("smtp://user:hunter2@mail.example.com/");
        let mailer = SmtpMailer::new(cfg.clone()).unwrap();
        for text in [format!("{cfg:?}"), format!("{mailer:?}")] {
            assert!(!text.contains("hunter2"), "{text}");
            assert!(text.contains("mail.example.com"), "{text}");
        }
    }

    #[tokio::test]
    async fn validates_addresses_and_headers() {
        let mut cfg = config("smtp://h/");
        cfg.from_address = "not an address".to_string();
        assert!(SmtpMailer::new(cfg).unwrap_err().to_string().contains("from_address"));

        // The server's default sender must be accepted.
        let mut cfg = config("smtp://h/");
        cfg.from_address = "no-reply@localhost".to_string();
        cfg.from_name = None;
        assert!(SmtpMailer::new(cfg).is_ok());

        let mut cfg = config("smtp://h/");
        cfg.headers.insert("Subject".to_string(), "x".to_string());
        assert!(SmtpMailer::new(cfg).unwrap_err().to_string().contains("`Subject`"));

        let mut cfg = config("smtp://h/");
        cfg.headers.insert("Bad Name".to_string(), "x".to_string());
        assert!(SmtpMailer::new(cfg).unwrap_err().to_string().contains("`Bad Name`"));

        let mut cfg = config("smtp://h/");
        cfg.headers.insert("X-Tag".to_string(), "a\r\nBcc: evil@example.com".to_string());
        assert!(SmtpMailer::new(cfg).unwrap_err().to_string().contains("single line"));

        let mut cfg = config("smtps://u:p@h/?skip_ssl_verify=true");
        cfg.headers.insert("X-Tag".to_string(), "latchkey".to_string());
        cfg.local_name = Some("latchkey.example.com".to_string());
        let mailer = SmtpMailer::new(cfg).unwrap();
        assert_eq!(mailer.endpoint().security, Security::ImplicitTls);
        assert!(mailer.endpoint().skip_ssl_verify);
    }

    #[tokio::test]
    async fn scrub_removes_raw_and_decoded_passwords() {
        let mailer = SmtpMailer::new(config("smtp://u:p%40ss-word@h/")).unwrap();
        let text = mailer.scrub("auth failed for p@ss-word (p%40ss-word)".to_string());
        assert_eq!(text, "auth failed for [REDACTED] ([REDACTED])");
    }
}
