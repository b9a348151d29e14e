//! NUL characters (U+0000) are refused wherever outside text comes in:
//! bodies (JSON and forms) and query strings. PostgreSQL stores none in
//! `text` or `jsonb`, so a NUL in a login identifier, a trait, a
//! `transient_payload` or a `return_to` was a 500 there (and some paths
//! failed on SQLite too); no form a person fills in holds one. Refusing
//! them at the edge gives one 400 on both databases.

use crate::error::ApiError;

pub fn refused() -> ApiError {
    ApiError::bad_request().with_reason("The request may not contain NUL characters (U+0000).")
}

/// Whether JSON text holds a `\u0000` escape inside a string, the only
/// way JSON can carry a NUL (a raw NUL byte is invalid JSON). One linear
/// scan, no allocation; `\\u0000` (an escaped backslash) is not a NUL.
pub fn json_has_nul(bytes: &[u8]) -> bool {
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match (in_string, bytes[i]) {
            (false, b'"') => in_string = true,
            (true, b'"') => in_string = false,
            (true, b'\\') => {
                let escaped = bytes.get(i + 1).copied();
                if escaped == Some(b'u') && bytes.get(i + 2..i + 6) == Some(b"0000".as_slice()) {
                    return true;
                }
                // Skip the escaped character so `\"` and `\\` do not end or start anything.
                i += 1;
            }
            _ => {}
        }
        i += 1;
    }
    false
}

pub fn check_json(bytes: &[u8]) -> Result<(), ApiError> {
    if json_has_nul(bytes) { Err(refused()) } else { Ok(()) }
}

/// A raw query string, before decoding: `%00` is the only way a NUL gets
/// into one (hyper refuses raw control bytes in the request line).
pub fn query_has_nul(query: &str) -> bool {
    query.contains("%00") || query.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nul_escape_only_inside_strings_and_not_after_an_escaped_backslash() {
        assert!(json_has_nul(br#"{"identifier":"a\u0000"}"#));
        assert!(json_has_nul(br#"{"a\u0000":1}"#));
        assert!(json_has_nul(br#"["\"", "\u0000"]"#));
        assert!(!json_has_nul(br#"{"identifier":"a\\u0000"}"#));
        assert!(!json_has_nul(br#"{"identifier":"a\u0001\u1000"}"#));
        assert!(!json_has_nul(br#"{"a":"\\"} \u0000"#));
        assert!(!json_has_nul(b"\"\\"));
        assert!(query_has_nul("return_to=http://x/%00"));
        assert!(!query_has_nul("return_to=http://x/%2500"));
    }
}
