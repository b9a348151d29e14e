//! An identity schema compiled from bytes, then traits validated against it
//! and read through the `ory.sh/kratos` extension. Input: schema, a NUL
//! byte, traits.
#![no_main]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_domain::schema::{SchemaRegistry, SchemaSource};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (schema, traits) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    // base64:// keeps the schema off the filesystem.
    let source = SchemaSource { id: "fuzz".into(), url: format!("base64://{}", STANDARD.encode(schema)) };
    let Ok(registry) = SchemaRegistry::load(&[source], "fuzz") else {
        return;
    };
    let Ok(traits) = serde_json::from_slice::<serde_json::Value>(traits) else {
        return;
    };
    if let Ok(facts) = registry.validate_traits("fuzz", &traits) {
        drop(facts);
    }
});
