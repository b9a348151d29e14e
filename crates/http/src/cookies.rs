//! `Set-Cookie` values for the session and CSRF cookies. Only these two
//! cookies are ever set, with attributes from the configuration, so a few
//! lines here replace a cookie library.

use axum::http::HeaderValue;

use crate::state::CookieSettings;

pub fn set(settings: &CookieSettings, name: &str, value: &str, max_age_secs: Option<i64>) -> HeaderValue {
    let mut out = format!("{name}={value}; Path={}; HttpOnly", settings.path);
    if let Some(domain) = &settings.domain {
        out.push_str(&format!("; Domain={domain}"));
    }
    if let Some(age) = max_age_secs {
        out.push_str(&format!("; Max-Age={}", age.max(0)));
    }
    if settings.secure {
        out.push_str("; Secure");
    }
    // SameSite=None is only honoured on secure cookies; fall back to Lax.
    let same_site = if settings.secure { settings.same_site.as_str() } else { "Lax" };
    out.push_str(&format!("; SameSite={same_site}"));
    HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// Expires a cookie at once.
pub fn clear(settings: &CookieSettings, name: &str) -> HeaderValue {
    set(settings, name, "", Some(0))
}
