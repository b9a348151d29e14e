//! CORS for the public API (`serve.public.cors`, Kratos's keys) on top of
//! tower-http's layer. Origins may hold one `*` standing for part of a host
//! name (`https://*.example.com`), so they are matched by a predicate.
//! Credentialed answers never carry `*`: browsers refuse them, so the
//! request's own origin (or headers) is echoed instead.

use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowCredentials, AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

/// `serve.public.cors` as configured.
#[derive(Debug, Clone)]
pub struct CorsSettings {
    pub enabled: bool,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    pub allowed_headers: Vec<String>,
    pub exposed_headers: Vec<String>,
    pub allow_credentials: bool,
    /// Seconds a preflight answer may be cached; 0 sends no `Access-Control-Max-Age`.
    pub max_age: u64,
}

/// A setting that cannot be used: which list (`allowed_origins`, …), the
/// item's index when it is one item, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsError {
    pub key: &'static str,
    pub index: Option<usize>,
    pub reason: String,
}

impl std::fmt::Display for CorsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}.{i}: {}", self.key, self.reason),
            None => write!(f, "{}: {}", self.key, self.reason),
        }
    }
}

fn error(key: &'static str, index: usize, reason: impl Into<String>) -> CorsError {
    CorsError { key, index: Some(index), reason: reason.into() }
}

/// The methods Kratos's schema accepts.
const METHODS: [&str; 9] = ["POST", "GET", "PUT", "PATCH", "DELETE", "CONNECT", "HEAD", "OPTIONS", "TRACE"];

/// Why an `allowed_origins` item is not an origin pattern.
#[derive(Debug, thiserror::Error)]
enum OriginError {
    #[error("expected `*` or an origin such as https://example.com or https://*.example.com")]
    NotAnOrigin,
    #[error("expected an http:// or https:// origin")]
    Scheme,
    #[error("an origin is scheme://host[:port], with no path (not even a trailing /)")]
    Path,
    #[error("an origin is visible ASCII without spaces")]
    Characters,
    #[error("only one `*` is allowed per origin")]
    Stars,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    Any,
    Exact(String),
    /// `prefix*suffix`; the `*` stands for host-name characters only.
    Wildcard {
        prefix: String,
        suffix: String,
    },
}

impl Rule {
    fn parse(origin: &str) -> Result<Self, OriginError> {
        if origin == "*" {
            return Ok(Rule::Any);
        }
        let lower = origin.to_ascii_lowercase();
        let Some((scheme, rest)) = lower.split_once("://") else {
            return Err(OriginError::NotAnOrigin);
        };
        if scheme != "http" && scheme != "https" && scheme != "*" {
            return Err(OriginError::Scheme);
        }
        if rest.is_empty() || rest.contains('/') || rest.contains('?') || rest.contains('#') {
            return Err(OriginError::Path);
        }
        if !lower.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(OriginError::Characters);
        }
        match lower.matches('*').count() {
            0 => Ok(Rule::Exact(lower)),
            1 => {
                let (prefix, suffix) = lower.split_once('*').expect("one star");
                Ok(Rule::Wildcard { prefix: prefix.into(), suffix: suffix.into() })
            }
            _ => Err(OriginError::Stars),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            Rule::Any => true,
            Rule::Exact(exact) => exact == origin,
            Rule::Wildcard { prefix, suffix } => {
                origin.len() >= prefix.len() + suffix.len()
                    && origin.starts_with(prefix.as_str())
                    && origin.ends_with(suffix.as_str())
                    // What the star stands for stays inside the host name, so
                    // `https://*.example.com` never admits another site.
                    && origin[prefix.len()..origin.len() - suffix.len()]
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            }
        }
    }
}

/// Whether `origin` (as the browser sent it) is allowed by `rules`.
fn allowed(rules: &[Rule], origin: &HeaderValue) -> bool {
    let Ok(origin) = origin.to_str() else { return false };
    let origin = origin.to_ascii_lowercase();
    rules.iter().any(|rule| rule.matches(&origin))
}

fn header_names(key: &'static str, names: &[String]) -> Result<Vec<HeaderName>, CorsError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            HeaderName::try_from(name.as_str())
                .map_err(|_| error(key, i, format!("`{name}` is not a header name")))
        })
        .collect()
}

/// Checks the settings; `Ok(None)` when CORS is off.
pub fn cors_layer(settings: &CorsSettings) -> Result<Option<CorsLayer>, CorsError> {
    let rules = settings
        .allowed_origins
        .iter()
        .enumerate()
        .map(|(i, origin)| Rule::parse(origin).map_err(|e| error("allowed_origins", i, e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let mut methods = Vec::new();
    for (i, method) in settings.allowed_methods.iter().enumerate() {
        if !METHODS.contains(&method.as_str()) {
            return Err(error("allowed_methods", i, format!("expected one of {}", METHODS.join(", "))));
        }
        methods.push(Method::from_bytes(method.as_bytes()).expect("a listed method"));
    }
    // `*` alone allows any header, as in Kratos.
    let allowed_headers = match settings.allowed_headers.iter().any(|h| h == "*") {
        true => None,
        false => Some(header_names("allowed_headers", &settings.allowed_headers)?),
    };
    if let Some(i) = settings.exposed_headers.iter().position(|h| h == "*") {
        // With credentials browsers read `*` as a header name; without, it
        // would expose everything. Either way a list says what is meant.
        return Err(error("exposed_headers", i, "`*` is not supported; list the headers to expose"));
    }
    let exposed_headers = header_names("exposed_headers", &settings.exposed_headers)?;
    if !settings.enabled {
        return Ok(None);
    }

    let credentials = settings.allow_credentials;
    let rules: Arc<[Rule]> = rules.into();
    let origin = if !credentials && rules.contains(&Rule::Any) {
        AllowOrigin::any()
    } else {
        let rules = Arc::clone(&rules);
        AllowOrigin::predicate(move |origin, _| allowed(&rules, origin))
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(methods)
        .expose_headers(ExposeHeaders::list(exposed_headers));
    layer = match (allowed_headers, credentials) {
        (Some(list), _) => layer.allow_headers(AllowHeaders::list(list)),
        (None, true) => layer.allow_headers(AllowHeaders::mirror_request()),
        (None, false) => layer.allow_headers(AllowHeaders::any()),
    };
    if credentials {
        // Only allowed origins hear that credentials are allowed.
        layer =
            layer.allow_credentials(AllowCredentials::predicate(move |origin, _| allowed(&rules, origin)));
    }
    if settings.max_age > 0 {
        layer = layer.max_age(Duration::from_secs(settings.max_age));
    }
    Ok(Some(layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[&str]) -> Vec<Rule> {
        list.iter().map(|o| Rule::parse(o).unwrap()).collect()
    }

    fn ok(rules: &[Rule], origin: &str) -> bool {
        allowed(rules, &HeaderValue::from_str(origin).unwrap())
    }

    #[test]
    fn a_wildcard_stands_for_host_name_characters_only() {
        let r = rules(&["https://*.example.com"]);
        assert!(ok(&r, "https://app.example.com"));
        assert!(ok(&r, "https://a.b.example.com"));
        assert!(ok(&r, "HTTPS://App.Example.com"));
        assert!(!ok(&r, "https://evil-example.com"));
        assert!(!ok(&r, "https://example.com.evil.com"));
        assert!(!ok(&r, "https://example.com"));
        assert!(!ok(&r, "http://app.example.com"));
        assert!(!ok(&r, "https://evil.com/.example.com"));
        assert!(!ok(&r, "https://evil.com:1@x.example.com"));
    }

    #[test]
    fn exact_origins_match_whole() {
        let r = rules(&["https://example.com", "http://localhost:3000"]);
        assert!(ok(&r, "https://example.com"));
        assert!(ok(&r, "http://localhost:3000"));
        assert!(!ok(&r, "https://example.com:8443"));
        assert!(!ok(&r, "http://localhost:30000"));
    }

    #[test]
    fn bad_origins_are_refused() {
        for bad in ["example.com", "ftp://example.com", "https://example.com/", "https://*.*.example.com", ""]
        {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_name_the_list_and_item() {
        let settings = CorsSettings {
            enabled: true,
            allowed_origins: vec!["https://ok.example".into(), "nope".into()],
            allowed_methods: vec![],
            allowed_headers: vec![],
            exposed_headers: vec![],
            allow_credentials: true,
            max_age: 0,
        };
        let err = cors_layer(&settings).unwrap_err();
        assert_eq!((err.key, err.index), ("allowed_origins", Some(1)));
        let settings =
            CorsSettings { allowed_origins: vec![], allowed_methods: vec!["FETCH".into()], ..settings };
        assert_eq!(cors_layer(&settings).unwrap_err().key, "allowed_methods");
    }
}
