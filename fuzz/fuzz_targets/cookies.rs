//! The Cookie header and the CSRF check built on it: the CSRF cookie's
//! secret against a submitted masked token. Input: the Cookie header, a
//! newline, the submitted `csrf_token`.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_http::fuzzing::{cookie, cookies, csrf_hash, csrf_is_valid_secret, csrf_mask, csrf_verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cookie_header, submitted) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(cookie_header) {
        headers.append(header::COOKIE, value);
    }
    let csrf_cookie = latchkey_http::csrf_cookie_name("http://127.0.0.1:4433/");
    for (name, value) in cookies(&headers) {
        assert!(!name.contains(';') && !value.contains(';'));
    }
    let Some(secret) = cookie(&headers, &csrf_cookie) else {
        return;
    };
    let submitted = String::from_utf8_lossy(submitted);
    let accepted = csrf_verify(secret, &submitted);
    assert!(!accepted || csrf_is_valid_secret(secret), "a token verified against an invalid secret");
    if csrf_is_valid_secret(secret) {
        // A freshly masked token always verifies, and never equals the secret.
        let masked = csrf_mask(secret);
        assert!(csrf_verify(secret, &masked));
        assert_ne!(masked, secret);
    }
    assert_eq!(csrf_hash(secret).len(), 64);
});
