//! A stand-in for the server in tests: the native login, registration and
//! whoami calls as the Kratos wire reference describes them, strict about the
//! shapes the benchmark sends (flow id in the query, `method: password`, the
//! session token header) and nothing else, so the scenarios can be run end
//! to end before the real self-service endpoints exist.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use reqwest::Url;
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Default)]
struct Accounts {
    flows: HashSet<String>,
    passwords: HashMap<String, String>,
    sessions: HashSet<String>,
}

#[derive(Clone)]
struct Fake {
    accounts: Arc<Mutex<Accounts>>,
    session_hook: bool,
}

type Reply = (StatusCode, Json<Value>);

/// Serves until the test's runtime ends. `session_hook` mirrors Kratos's
/// `session` hook after registration; `self_service` false leaves only
/// `/health/alive`, as the Latchkey of today does.
pub async fn start(session_hook: bool, self_service: bool) -> Url {
    let fake = Fake { accounts: Arc::default(), session_hook };
    let mut router = Router::new().route("/health/alive", get(|| async { Json(json!({"status": "ok"})) }));
    if self_service {
        router = router
            .route("/self-service/registration/api", get(new_flow))
            .route("/self-service/login/api", get(new_flow))
            .route("/self-service/registration", post(register))
            .route("/self-service/login", post(login))
            .route("/sessions/whoami", get(whoami));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    tokio::spawn(async move { axum::serve(listener, router.with_state(fake)).await.unwrap() });
    url
}

async fn new_flow(State(fake): State<Fake>, headers: HeaderMap) -> Reply {
    if headers.get("accept").is_none_or(|accept| accept != "application/json") {
        return error(StatusCode::NOT_ACCEPTABLE, "the SDKs send Accept: application/json");
    }
    let id = Uuid::new_v4().to_string();
    fake.accounts.lock().unwrap().flows.insert(id.clone());
    (StatusCode::OK, Json(json!({"id": id, "type": "api", "ui": {"nodes": []}})))
}

/// Takes the flow out of the query; unknown flows get Kratos's 404.
fn use_flow(fake: &Fake, query: &HashMap<String, String>) -> Result<(), Reply> {
    let flow = query.get("flow").ok_or_else(|| error(StatusCode::BAD_REQUEST, "flow missing"))?;
    if !fake.accounts.lock().unwrap().flows.remove(flow) {
        return Err(error(StatusCode::NOT_FOUND, "unknown flow"));
    }
    Ok(())
}

async fn register(
    State(fake): State<Fake>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Reply {
    if let Err(reply) = use_flow(&fake, &query) {
        return reply;
    }
    let (Some(email), Some(password)) = (body["traits"]["email"].as_str(), body["password"].as_str()) else {
        return error(StatusCode::BAD_REQUEST, "traits.email and password are required");
    };
    if body["method"] != "password" || password.len() < 8 || password.contains(email) {
        return error(StatusCode::BAD_REQUEST, "password policy");
    }
    let mut accounts = fake.accounts.lock().unwrap();
    if accounts.passwords.insert(email.to_owned(), password.to_owned()).is_some() {
        return error(StatusCode::BAD_REQUEST, "an account with the same identifier exists already");
    }
    let identity = json!({"id": Uuid::new_v4(), "traits": {"email": email}});
    if !fake.session_hook {
        return (StatusCode::OK, Json(json!({"identity": identity, "continue_with": []})));
    }
    let token = format!("ory_st_{}", Uuid::new_v4().simple());
    accounts.sessions.insert(token.clone());
    (StatusCode::OK, Json(json!({"identity": identity, "session_token": token, "session": {}})))
}

async fn login(
    State(fake): State<Fake>,
    Query(query): Query<HashMap<String, String>>,
    Json(body): Json<Value>,
) -> Reply {
    if let Err(reply) = use_flow(&fake, &query) {
        return reply;
    }
    let mut accounts = fake.accounts.lock().unwrap();
    let known = body["identifier"].as_str().and_then(|email| accounts.passwords.get(email));
    if body["method"] != "password"
        || known.is_none()
        || known.map(String::as_str) != body["password"].as_str()
    {
        return error(StatusCode::BAD_REQUEST, "The provided credentials are invalid");
    }
    let token = format!("ory_st_{}", Uuid::new_v4().simple());
    accounts.sessions.insert(token.clone());
    (StatusCode::OK, Json(json!({"session_token": token, "session": {}, "continue_with": null})))
}

async fn whoami(State(fake): State<Fake>, headers: HeaderMap) -> Reply {
    let token = headers.get("x-session-token").and_then(|value| value.to_str().ok());
    match token {
        Some(token) if fake.accounts.lock().unwrap().sessions.contains(token) => {
            (StatusCode::OK, Json(json!({"active": true})))
        }
        _ => error(StatusCode::UNAUTHORIZED, "No valid session credentials found in the request."),
    }
}

fn error(status: StatusCode, reason: &str) -> Reply {
    (status, Json(json!({"error": {"code": status.as_u16(), "reason": reason}})))
}
