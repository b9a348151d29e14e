//! Reading what a request says about its client: whether it wants JSON,
//! its cookies, its session credentials, and the device it comes from.

use std::net::SocketAddr;

use axum::http::{HeaderMap, header};
use latchkey_domain::session::Device;
use uuid::Uuid;

use crate::client_ip::TrustedProxies;

/// Kratos's rule: JSON when content negotiation over `text/html, text/*,
/// */*, application/json` (in that order of preference) picks JSON, or when
/// the body is exactly `application/json`.
pub fn wants_json(headers: &HeaderMap) -> bool {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    if content_type == Some("application/json") {
        return true;
    }
    const OFFERS: [&str; 4] = ["text/html", "text/*", "*/*", "application/json"];
    negotiate(headers, &OFFERS, "text/html") == "application/json"
}

/// The offer `Accept` picks, as Go's `httputil.NegotiateContentType` (which
/// Kratos uses) picks it: the highest quality wins; at equal quality an
/// exact match beats `type/*`, which beats `*/*`; at equal quality and
/// precision the earlier offer wins.
fn negotiate<'a>(headers: &HeaderMap, offers: &[&'a str], default: &'a str) -> &'a str {
    let specs: Vec<(&str, f32)> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|part| {
            let mut pieces = part.split(';').map(str::trim);
            let range = pieces.next().filter(|r| !r.is_empty())?;
            let q = pieces.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse().ok()).unwrap_or(1.0);
            Some((range, q))
        })
        .collect();
    // (offer, quality, wildness: 0 exact, 1 `type/*`, 2 `*/*`, 3 none yet)
    let mut best = (default, -1.0_f32, 3_u8);
    for offer in offers {
        for &(range, q) in &specs {
            if q == 0.0 || q < best.1 {
                continue;
            }
            let wild = if range == "*/*" {
                2
            } else if let Some(kind) = range.strip_suffix('*').filter(|k| k.ends_with('/')) {
                if !offer.starts_with(kind) {
                    continue;
                }
                1
            } else if range == *offer {
                0
            } else {
                continue;
            };
            if q > best.1 || best.2 > wild {
                best = (offer, q, wild);
            }
        }
    }
    best.0
}

/// The value of one cookie.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    cookies(headers).find(|(k, _)| *k == name).map(|(_, v)| v)
}

pub fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
}

/// The session token a request carries: `X-Session-Token`, then the session
/// cookie, then `Authorization: Bearer`, as Kratos looks them up.
pub fn session_token<'a>(headers: &'a HeaderMap, cookie_name: &str) -> Option<&'a str> {
    let header_token = headers.get("x-session-token").and_then(|v| v.to_str().ok()).filter(|t| !t.is_empty());
    header_token.or_else(|| cookie(headers, cookie_name).filter(|t| !t.is_empty())).or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    })
}

/// The device a session starts on: the client's address (see
/// [`TrustedProxies::client_ip`]) and user agent.
pub fn device(headers: &HeaderMap, peer: Option<SocketAddr>, proxies: &TrustedProxies) -> Device {
    Device {
        id: Uuid::new_v4(),
        ip_address: proxies.client_ip(headers, peer).map(|ip| ip.to_string()),
        user_agent: headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string),
        location: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        h
    }

    #[test]
    fn json_is_chosen_as_kratos_chooses_it() {
        assert!(wants_json(&headers(&[("accept", "application/json")])));
        assert!(wants_json(&headers(&[("content-type", "application/json")])));
        assert!(!wants_json(&headers(&[("content-type", "application/json; charset=utf-8")])));
        assert!(!wants_json(&headers(&[("accept", "*/*")])));
        assert!(!wants_json(&headers(&[("accept", "text/html,application/json")])));
        assert!(wants_json(&headers(&[("accept", "text/html;q=0.5, application/json")])));
        assert!(!wants_json(&headers(&[])));
        // An exact match beats a wildcard of the same quality: axios's default.
        assert!(wants_json(&headers(&[("accept", "application/json, text/plain, */*")])));
        assert!(!wants_json(&headers(&[("accept", "text/html, application/json, */*")])));
        assert!(!wants_json(&headers(&[("accept", "text/plain, */*;q=0.8")])));
        assert!(!wants_json(&headers(&[("accept", "application/json;q=0")])));
    }

    #[test]
    fn session_tokens_are_found_in_kratos_order() {
        let h = headers(&[
            ("authorization", "Bearer b"),
            ("cookie", "a=1; ory_kratos_session=c"),
            ("x-session-token", "x"),
        ]);
        assert_eq!(session_token(&h, "ory_kratos_session"), Some("x"));
        let h = headers(&[("authorization", "Bearer b"), ("cookie", "ory_kratos_session=c")]);
        assert_eq!(session_token(&h, "ory_kratos_session"), Some("c"));
        let h = headers(&[("authorization", "Bearer b")]);
        assert_eq!(session_token(&h, "ory_kratos_session"), Some("b"));
    }
}
