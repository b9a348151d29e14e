//! Email templates: an operator's template text compiled, then rendered with
//! data that partly comes from users (addresses, traits). Input: template,
//! a NUL byte, the data as a JSON object.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_courier::Templates;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

fuzz_target!(|data: &[u8]| {
    let (source, data) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else {
        return;
    };
    let url = format!("base64://{}", STANDARD.encode(source));
    let config = json!({"recovery_code": {"valid": {"email": {
        "subject": url, "body": {"plaintext": url, "html": url}}}}});
    let Ok(templates) = Templates::builtin().with_config(&config) else {
        return;
    };
    let data: Map<String, Value> = serde_json::from_slice(data).unwrap_or_default();
    let rendered = templates.render("recovery_code_valid", &data).expect("a built-in type renders");
    // A subject is a header: it must never break onto a new line.
    assert!(!rendered.subject.contains(['\r', '\n']), "{:?}", rendered.subject);
    // Values are escaped in HTML, so markup can only come from the template.
    if !source.contains('<') {
        assert!(!rendered.html.unwrap_or_default().contains('<'));
    }
});
