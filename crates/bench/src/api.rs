//! The handful of Kratos API calls the scenarios make, over one shared
//! client so that every worker reuses kept-alive connections the way a real
//! app's SDK would. Failures carry the method, path, status and the start of
//! the body: the first thing anyone wants to know when a benchmark stops.

use std::fmt;
use std::time::Duration;

use reqwest::header::{ACCEPT, HeaderValue, LINK, RETRY_AFTER};
use reqwest::{Client, StatusCode, Url, redirect};
use serde::Deserialize;
use serde_json::json;

/// How much of an unexpected response body an error message quotes.
const SNIPPET_CHARS: usize = 200;

/// A request that did not end the way the scenario needs.
#[derive(Debug)]
pub enum CallError {
    /// No HTTP answer at all: refused connection, reset, timeout.
    Transport { call: &'static str, cause: String },
    /// An answer with the wrong status.
    Status { call: &'static str, status: StatusCode, snippet: String },
    /// The right status with a body that lacks what the scenario needs.
    Body { call: &'static str, problem: String },
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Transport { call, cause } => write!(f, "{call} failed: {cause}"),
            CallError::Status { call, status, snippet } if snippet.is_empty() => {
                write!(f, "{call} answered {status} with an empty body")
            }
            CallError::Status { call, status, snippet } => write!(f, "{call} answered {status}: {snippet}"),
            CallError::Body { call, problem } => write!(f, "{call}: {problem}"),
        }
    }
}

impl std::error::Error for CallError {}

const LOGIN: &str = "POST /self-service/login";

/// How a server answered one password login.
#[derive(Debug)]
pub enum LoginAnswer {
    /// 200: signed in, with this session token.
    Session(String),
    /// 400: the password was checked, and it was wrong.
    Wrong { snippet: String },
    /// 429: refused without checking (login throttling); `retry_after` in seconds when sent.
    Refused { retry_after: Option<u64>, snippet: String },
}

/// An identity's password login.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

pub struct Api {
    http: Client,
    public: String,
    admin: String,
}

#[derive(Deserialize)]
struct Flow {
    id: String,
}

#[derive(Deserialize)]
struct WithState {
    state: Option<String>,
}

/// One email in the server's outbox, as the admin courier API shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct CourierMessage {
    pub id: String,
    pub subject: String,
    pub created_at: String,
}

#[derive(Deserialize)]
struct WithToken {
    session_token: Option<String>,
}

impl Api {
    pub fn new(public: &Url, admin: &Url) -> Result<Self, reqwest::Error> {
        let mut accept_json = reqwest::header::HeaderMap::new();
        // Kratos decides between JSON and browser redirects by Accept; the SDKs always send this.
        accept_json.insert(ACCEPT, HeaderValue::from_static("application/json"));
        let http = Client::builder()
            .default_headers(accept_json)
            // A proxy from the environment would measure the proxy and could carry
            // the load off this machine despite the loopback check.
            .no_proxy()
            // A redirect means we called the wrong port or path; count it rather than follow it.
            .redirect(redirect::Policy::none())
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            // Scenarios cut requests off at their deadline; this only bounds setup calls.
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api { http, public: base(public), admin: base(admin) })
    }

    /// `GET /health/alive` on the public port.
    pub async fn public_alive(&self) -> Result<(), CallError> {
        self.alive(&self.public, "GET /health/alive (public)").await
    }

    /// `GET /health/alive` on the admin port.
    pub async fn admin_alive(&self) -> Result<(), CallError> {
        self.alive(&self.admin, "GET /health/alive (admin)").await
    }

    async fn alive(&self, base: &str, call: &'static str) -> Result<(), CallError> {
        let response = self.http.get(format!("{base}/health/alive")).send().await;
        expect_ok(call, response).await.map(drop)
    }

    pub async fn whoami(&self, session_token: &str) -> Result<(), CallError> {
        const CALL: &str = "GET /sessions/whoami";
        let response = self
            .http
            .get(format!("{}/sessions/whoami", self.public))
            .header("X-Session-Token", session_token)
            .send()
            .await;
        expect_ok(CALL, response).await.map(drop)
    }

    /// A complete native login (two requests); returns the new session token.
    pub async fn login(&self, credentials: &Credentials) -> Result<String, CallError> {
        self.login_from(credentials, None).await
    }

    /// [`login`](Self::login) as seen from `client` (sent as `X-Forwarded-For`,
    /// which a server believes only from a proxy it trusts).
    pub async fn login_from(
        &self,
        credentials: &Credentials,
        client: Option<&str>,
    ) -> Result<String, CallError> {
        match self.try_login(credentials, client).await? {
            LoginAnswer::Session(token) => Ok(token),
            LoginAnswer::Wrong { snippet } => {
                Err(CallError::Status { call: LOGIN, status: StatusCode::BAD_REQUEST, snippet })
            }
            LoginAnswer::Refused { snippet, .. } => {
                Err(CallError::Status { call: LOGIN, status: StatusCode::TOO_MANY_REQUESTS, snippet })
            }
        }
    }

    /// One native login attempt that may fail: a wrong password (400) and a
    /// throttled attempt (429) are answers here, not errors.
    pub async fn try_login(
        &self,
        credentials: &Credentials,
        client: Option<&str>,
    ) -> Result<LoginAnswer, CallError> {
        let flow = self.native_flow("GET /self-service/login/api", "login").await?;
        let body = json!({
            "method": "password",
            "identifier": credentials.email,
            "password": credentials.password,
        });
        let mut request = self
            .http
            .post(format!("{}/self-service/login", self.public))
            .query(&[("flow", &flow)])
            .json(&body);
        if let Some(client) = client {
            request = request.header("X-Forwarded-For", client);
        }
        let transport = |e: reqwest::Error| CallError::Transport { call: LOGIN, cause: error_chain(&e) };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let bytes = response.bytes().await.map_err(transport)?;
        match status {
            StatusCode::OK => match parse::<WithToken>(LOGIN, bytes.as_ref())?.session_token {
                Some(token) => Ok(LoginAnswer::Session(token)),
                None => Err(CallError::Body { call: LOGIN, problem: "200 without a session_token".into() }),
            },
            StatusCode::BAD_REQUEST => Ok(LoginAnswer::Wrong { snippet: snippet(&bytes) }),
            StatusCode::TOO_MANY_REQUESTS => {
                Ok(LoginAnswer::Refused { retry_after, snippet: snippet(&bytes) })
            }
            status => Err(CallError::Status { call: LOGIN, status, snippet: snippet(&bytes) }),
        }
    }

    /// A complete native registration (two requests). The session token is
    /// there only when the server runs the `session` hook after registration.
    pub async fn register(&self, credentials: &Credentials) -> Result<Option<String>, CallError> {
        const CALL: &str = "POST /self-service/registration";
        let flow = self.native_flow("GET /self-service/registration/api", "registration").await?;
        let body = json!({
            "method": "password",
            "traits": { "email": credentials.email },
            "password": credentials.password,
        });
        let response =
            self.http.post(format!("{}/self-service/registration", self.public)).query(&[("flow", &flow)]);
        let bytes = expect_ok(CALL, response.json(&body).send().await).await?;
        Ok(parse::<WithToken>(CALL, bytes.as_ref())?.session_token)
    }

    /// Creates a native login flow and asks for a sign-in code for `email`
    /// (`method=code`), as seen from `client`; returns the flow id. As in
    /// Kratos, the answer is 400 with the flow in `sent_email`.
    pub async fn login_code_send(&self, email: &str, client: Option<&str>) -> Result<String, CallError> {
        const CALL: &str = "POST /self-service/login (code, identifier)";
        let flow = self.native_flow("GET /self-service/login/api", "login").await?;
        let body = json!({ "method": "code", "identifier": email });
        let mut request = self
            .http
            .post(format!("{}/self-service/login", self.public))
            .query(&[("flow", &flow)])
            .json(&body);
        if let Some(client) = client {
            request = request.header("X-Forwarded-For", client);
        }
        let transport = |e: reqwest::Error| CallError::Transport { call: CALL, cause: error_chain(&e) };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if status != StatusCode::BAD_REQUEST {
            return Err(CallError::Status { call: CALL, status, snippet: snippet(&bytes) });
        }
        let answer = parse::<serde_json::Value>(CALL, bytes.as_ref())?;
        if answer["state"] != "sent_email" {
            // A server without passwordless code login answers the unknown-method message instead.
            let messages = answer["ui"]["messages"].as_array().map_or_else(Vec::new, |all| {
                all.iter().filter_map(|m| m["text"].as_str()).collect::<Vec<_>>()
            });
            return Err(CallError::Body {
                call: CALL,
                problem: format!(
                    "state {} instead of \"sent_email\" ({:?}): start the server with \
                     selfservice.methods.code.passwordless_enabled: true \
                     (SELFSERVICE_METHODS_CODE_PASSWORDLESS_ENABLED=true) to run login-code",
                    answer["state"],
                    messages.join(" ")
                ),
            });
        }
        Ok(flow)
    }

    /// Submits the emailed sign-in code in login flow `flow`, as seen from
    /// `client`; returns the new session token.
    pub async fn login_code(
        &self,
        flow: &str,
        email: &str,
        code: &str,
        client: Option<&str>,
    ) -> Result<String, CallError> {
        const CALL: &str = "POST /self-service/login (code)";
        let body = json!({ "method": "code", "code": code, "identifier": email });
        let mut request = self
            .http
            .post(format!("{}/self-service/login", self.public))
            .query(&[("flow", flow)])
            .json(&body);
        if let Some(client) = client {
            request = request.header("X-Forwarded-For", client);
        }
        let bytes = expect_ok(CALL, request.send().await).await?;
        match parse::<WithToken>(CALL, bytes.as_ref())?.session_token {
            Some(token) => Ok(token),
            None => Err(CallError::Body { call: CALL, problem: "200 without a session_token".into() }),
        }
    }

    /// Creates a native recovery flow and asks for a code for `email`; returns the flow id.
    pub async fn recovery_send(&self, email: &str) -> Result<String, CallError> {
        const CALL: &str = "POST /self-service/recovery (email)";
        let flow = self.native_flow("GET /self-service/recovery/api", "recovery").await?;
        let body = json!({ "method": "code", "email": email });
        let response =
            self.http.post(format!("{}/self-service/recovery", self.public)).query(&[("flow", &flow)]);
        let bytes = expect_ok(CALL, response.json(&body).send().await).await?;
        expect_state(CALL, bytes.as_ref(), "sent_email")?;
        Ok(flow)
    }

    /// Submits the emailed code; returns the recovery session's token and
    /// the id of the settings flow it continues with.
    pub async fn recovery_code(&self, flow: &str, code: &str) -> Result<(String, String), CallError> {
        const CALL: &str = "POST /self-service/recovery (code)";
        let body = json!({ "method": "code", "code": code });
        let response =
            self.http.post(format!("{}/self-service/recovery", self.public)).query(&[("flow", flow)]);
        let bytes = expect_ok(CALL, response.json(&body).send().await).await?;
        let done = parse::<serde_json::Value>(CALL, bytes.as_ref())?;
        let token = done["continue_with"][0]["ory_session_token"].as_str();
        let settings = done["continue_with"][1]["flow"]["id"].as_str();
        match (token, settings) {
            (Some(token), Some(settings)) => Ok((token.to_owned(), settings.to_owned())),
            _ => Err(CallError::Body {
                call: CALL,
                problem: format!(
                    "200 without a session token and settings flow in continue_with: {}",
                    snippet(bytes.as_ref())
                ),
            }),
        }
    }

    /// Sets a new password in a settings flow, as the session `session_token`.
    pub async fn settings_password(
        &self,
        flow: &str,
        session_token: &str,
        password: &str,
    ) -> Result<(), CallError> {
        const CALL: &str = "POST /self-service/settings";
        let body = json!({ "method": "password", "password": password });
        let response = self
            .http
            .post(format!("{}/self-service/settings", self.public))
            .query(&[("flow", flow)])
            .header("X-Session-Token", session_token)
            .json(&body)
            .send()
            .await;
        let bytes = expect_ok(CALL, response).await?;
        expect_state(CALL, bytes.as_ref(), "success")
    }

    /// Creates a native verification flow and asks for a code for `email`; returns the flow id.
    pub async fn verification_send(&self, email: &str) -> Result<String, CallError> {
        const CALL: &str = "POST /self-service/verification (email)";
        let flow = self.native_flow("GET /self-service/verification/api", "verification").await?;
        let body = json!({ "method": "code", "email": email });
        let response =
            self.http.post(format!("{}/self-service/verification", self.public)).query(&[("flow", &flow)]);
        let bytes = expect_ok(CALL, response.json(&body).send().await).await?;
        expect_state(CALL, bytes.as_ref(), "sent_email")?;
        Ok(flow)
    }

    /// Submits the emailed code, which verifies the address.
    pub async fn verification_code(&self, flow: &str, code: &str) -> Result<(), CallError> {
        const CALL: &str = "POST /self-service/verification (code)";
        let body = json!({ "method": "code", "code": code });
        let response =
            self.http.post(format!("{}/self-service/verification", self.public)).query(&[("flow", flow)]);
        let bytes = expect_ok(CALL, response.json(&body).send().await).await?;
        // A wrong code is a 200 too, with the flow still in `sent_email`.
        expect_state(CALL, bytes.as_ref(), "passed_challenge")
    }

    /// The newest `count` courier messages to `recipient` (the API lists
    /// newest first, as Kratos does), following the `Link: rel="next"` pages
    /// of a server whose pages are smaller. Reading only the newest keeps a
    /// poll's cost flat while a user's mail piles up over a long run.
    pub async fn courier_messages(
        &self,
        recipient: &str,
        count: usize,
    ) -> Result<Vec<CourierMessage>, CallError> {
        const CALL: &str = "GET /admin/courier/messages";
        let url = format!("{}/admin/courier/messages", self.admin);
        let mut query =
            vec![("recipient".to_owned(), recipient.to_owned()), ("page_size".into(), count.to_string())];
        let mut messages = Vec::new();
        // Bounded, so a server that keeps linking the same page cannot loop us forever.
        for _ in 0..100 {
            let response = self.http.get(&url).query(&query).send().await;
            let response =
                response.map_err(|e| CallError::Transport { call: CALL, cause: error_chain(&e) })?;
            let next =
                response.headers().get_all(LINK).iter().find_map(|v| next_page_query(v.to_str().ok()?));
            let bytes = expect_ok(CALL, Ok(response)).await?;
            messages.extend(parse::<Vec<CourierMessage>>(CALL, bytes.as_ref())?);
            match next {
                Some(next) if messages.len() < count => query = next,
                _ => return Ok(messages),
            }
        }
        Err(CallError::Body { call: CALL, problem: "more than 100 pages of messages".into() })
    }

    async fn native_flow(&self, call: &'static str, kind: &str) -> Result<String, CallError> {
        let response = self.http.get(format!("{}/self-service/{kind}/api", self.public)).send().await;
        let bytes = expect_ok(call, response).await?;
        Ok(parse::<Flow>(call, bytes.as_ref())?.id)
    }
}

/// The base URL without its trailing slash, so paths can be appended as they
/// are written in the API reference.
fn base(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Reads the whole body (an unread body would cost the connection its
/// keep-alive) and insists on 200.
async fn expect_ok(
    call: &'static str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<impl AsRef<[u8]>, CallError> {
    let transport = |e: reqwest::Error| CallError::Transport { call, cause: error_chain(&e) };
    let response = response.map_err(transport)?;
    let status = response.status();
    let bytes = response.bytes().await.map_err(transport)?;
    if status != StatusCode::OK {
        return Err(CallError::Status { call, status, snippet: snippet(&bytes) });
    }
    Ok(bytes)
}

/// Insists that the flow in a 200 body reached `want`: the status alone does not say so
/// (a wrong verification code, for one, is answered 200).
fn expect_state(call: &'static str, bytes: &[u8], want: &str) -> Result<(), CallError> {
    let state = parse::<WithState>(call, bytes)?.state;
    if state.as_deref() != Some(want) {
        return Err(CallError::Body {
            call,
            problem: format!("state {state:?} instead of {want:?}: {}", snippet(bytes)),
        });
    }
    Ok(())
}

fn parse<'a, T: Deserialize<'a>>(call: &'static str, bytes: &'a [u8]) -> Result<T, CallError> {
    serde_json::from_slice(bytes).map_err(|e| CallError::Body {
        call,
        problem: format!("unexpected 200 body ({e}): {}", snippet(bytes)),
    })
}

/// The start of a body on one line, cut on a character boundary.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut words = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = words.char_indices().nth(SNIPPET_CHARS) {
        words.truncate(cut);
        words.push('…');
    }
    words
}

/// The query of the `rel="next"` link in a `Link` header, as pairs, so it
/// is applied to the admin base URL we were given rather than to the path the
/// server saw (which may lack a proxy's prefix).
fn next_page_query(header: &str) -> Option<Vec<(String, String)>> {
    header.split(',').find_map(|link| {
        let (target, params) = link.split_once(';')?;
        if !params.split(';').any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next")) {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        // Relative or absolute: only the query is kept.
        let url = Url::parse("http://next.invalid/").ok()?.join(target).ok()?;
        Some(url.query_pairs().into_owned().collect())
    })
}

/// reqwest's own message ("error sending request for url") hides the cause
/// that matters, such as "Connection refused", in its source chain.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(
            snippet(b"{\n  \"error\": {\n    \"code\": 404\n  }\n}"),
            "{ \"error\": { \"code\": 404 } }"
        );
        let long = "é".repeat(500);
        let cut = snippet(long.as_bytes());
        assert_eq!(cut.chars().count(), SNIPPET_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(snippet(b""), "");
        assert_eq!(snippet(&[0xff, b'x']), "\u{fffd}x");
    }

    #[test]
    fn status_errors_name_the_call_status_and_body() {
        let error = CallError::Status {
            call: "GET /self-service/login/api",
            status: StatusCode::NOT_FOUND,
            snippet: "{\"error\":{\"code\":404}}".into(),
        };
        assert_eq!(
            error.to_string(),
            "GET /self-service/login/api answered 404 Not Found: {\"error\":{\"code\":404}}"
        );
        let empty =
            CallError::Status { call: "GET /x", status: StatusCode::BAD_GATEWAY, snippet: String::new() };
        assert_eq!(empty.to_string(), "GET /x answered 502 Bad Gateway with an empty body");
    }

    #[test]
    fn base_urls_lose_their_trailing_slash_only() {
        assert_eq!(base(&Url::parse("http://127.0.0.1:4433").unwrap()), "http://127.0.0.1:4433");
        assert_eq!(
            base(&Url::parse("http://127.0.0.1:4433/kratos/").unwrap()),
            "http://127.0.0.1:4433/kratos"
        );
    }

    #[test]
    fn the_next_link_gives_its_query() {
        let header = "</admin/courier/messages?recipient=a%40b.c&page_size=2&page_token=00000000-0000-0000-0000-000000000000>; rel=\"first\",\
            </admin/courier/messages?recipient=a%40b.c&page_size=2&page_token=abc>; rel=\"next\"";
        let next = next_page_query(header).unwrap();
        let pairs: Vec<_> = next.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, [("recipient", "a@b.c"), ("page_size", "2"), ("page_token", "abc")]);
        assert_eq!(next_page_query("</x?page_token=nil>; rel=\"first\""), None);
        assert_eq!(next_page_query(""), None);
    }

    #[tokio::test]
    async fn a_closed_port_is_reported_with_its_cause() {
        // Bind then drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = Url::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let api = Api::new(&url, &url).unwrap();
        let error = api.public_alive().await.unwrap_err().to_string();
        assert!(error.starts_with("GET /health/alive (public) failed: "), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");
    }
}
