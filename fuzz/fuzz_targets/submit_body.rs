//! Self-service submit bodies, parsed as every submit endpoint parses them
//! before any flow or CSRF check: the first byte picks the content type.
#![no_main]

use axum::response::IntoResponse;
use libfuzzer_sys::fuzz_target;

const CONTENT_TYPES: [&str; 4] =
    ["application/json", "application/x-www-form-urlencoded", "application/vnd.kratos+json", ""];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let content_type = CONTENT_TYPES[usize::from(pick) % CONTENT_TYPES.len()];
    match latchkey_http::parse_submit_body(content_type, body) {
        // The handlers read the value and may echo parts of it back.
        Ok(value) => drop(serde_json::to_vec(&value)),
        Err(error) => drop(error.into_response()),
    }
});
