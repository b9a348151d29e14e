//! The request headers that identify a client: the session token (header,
//! cookie or bearer, in Kratos's order), content negotiation and the device
//! a session starts on. Input: header values separated by newlines.
#![no_main]

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use latchkey_domain::session::hash_token;
use latchkey_http::fuzzing::{device, session_token, wants_json};
use latchkey_http::{Network, TrustedProxies};
use libfuzzer_sys::fuzz_target;

const NAMES: [HeaderName; 7] = [
    HeaderName::from_static("x-session-token"),
    header::COOKIE,
    header::AUTHORIZATION,
    header::ACCEPT,
    header::CONTENT_TYPE,
    HeaderName::from_static("x-forwarded-for"),
    header::USER_AGENT,
];

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for (name, value) in NAMES.iter().cycle().zip(data.split(|&b| b == b'\n')) {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name.clone(), value);
        }
    }
    if let Some(token) = session_token(&headers, "ory_kratos_session") {
        assert!(!token.is_empty());
        assert_eq!(hash_token(token).len(), 64);
    }
    let _ = wants_json(&headers);
    // Loopback is a trusted proxy here, so `X-Forwarded-For` is parsed too.
    let proxies = TrustedProxies::new(vec![Network::parse("127.0.0.0/8").expect("a valid network")]);
    let device = device(&headers, Some(([127, 0, 0, 1], 4433).into()), &proxies);
    if let Some(ip) = device.ip_address {
        assert!(ip.parse::<std::net::IpAddr>().is_ok(), "only parsed addresses are recorded: {ip}");
    }
});
