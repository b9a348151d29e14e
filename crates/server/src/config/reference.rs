//! The configuration reference (`docs/configuration.md`), made from the code:
//! every key of Kratos's configuration schema with what Latchkey does with
//! it, and Latchkey's own keys, each with its default and environment
//! variable. `latchkey config reference` prints it; a test fails when the
//! committed document differs.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Config;
use super::keys::KRATOS_KEYS;

/// What Latchkey does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Support {
    /// Kratos's key, read by Latchkey.
    Supported,
    /// Kratos's key; accepted, named in one warning at start, no effect.
    Ignored,
    /// Latchkey's own key; Kratos does not have it.
    Own,
}

impl Support {
    fn label(self) -> &'static str {
        match self {
            Support::Supported => "supported",
            Support::Ignored => "accepted, no effect yet",
            Support::Own => "Latchkey's own",
        }
    }
}

/// One row: the key as files spell it (`[]` a list item, `*` any name).
struct Row {
    key: String,
    support: Support,
    default: Option<String>,
}

/// The reference as Markdown.
pub fn markdown() -> String {
    let defaults = serde_json::to_value(Config::default()).expect("the defaults serialise");
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    let mut kratos = Vec::new();
    leaves(&KRATOS_KEYS, String::new(), &mut kratos);
    for key in kratos {
        let support = match read_by_latchkey(&defaults, &key) {
            Some(_) => Support::Supported,
            None => Support::Ignored,
        };
        let default = read_by_latchkey(&defaults, &key).flatten().map(shown);
        rows.insert(key.clone(), Row { key, support, default });
    }
    let mut own = Vec::new();
    default_leaves(&defaults, String::new(), &mut own);
    for (key, value) in own {
        // A list, map or block Kratos has is listed by its keys above.
        let support = if kratos_has(&key) { Support::Supported } else { Support::Own };
        if support == Support::Supported && rows.keys().any(|k| k.starts_with(&format!("{key}."))) {
            continue;
        }
        rows.entry(key.clone()).or_insert(Row { key, support, default: Some(shown(&value)) });
    }

    let mut out = String::from(
        "# Configuration reference\n\n\
         Generated from the code by `latchkey config reference`; a test fails when this file and the code \
         differ (`UPDATE_DOCS=1 cargo test -p latchkey --lib reference` rewrites it). The README's \
         [Configuration](../README.md#configuration) section says what the keys mean.\n\n\
         Every key of Ory Kratos's configuration schema is listed with what Latchkey does with it:\n\n\
         - **supported**: read and honoured;\n\
         - **accepted, no effect yet**: a Kratos configuration that sets it loads, and the start names it in \
         one warning;\n\
         - **Latchkey's own**: not a Kratos key.\n\n\
         Any other key stops the start, naming the key it most likely meant. `[]` stands for an item of a \
         list, `*` for any name. Every key can also be set by an environment variable: its path upper-cased, \
         with `_` for the dots (`serve.public.port` is `SERVE_PUBLIC_PORT`); keys inside lists and maps \
         cannot.\n\n\
         | key | environment | Latchkey | default |\n|---|---|---|---|\n",
    );
    for row in rows.values() {
        let env = if row.key.contains("[]") || row.key.contains('*') {
            String::new()
        } else {
            format!("`{}`", row.key.to_uppercase().replace(['.', '-'], "_"))
        };
        let default = row.default.as_deref().map(|d| format!("`{d}`")).unwrap_or_default();
        out.push_str(&format!("| `{}` | {env} | {} | {default} |\n", row.key, row.support.label()));
    }
    out
}

/// Every leaf of Kratos's key tree, dotted.
fn leaves(node: &Value, prefix: String, out: &mut Vec<String>) {
    match node {
        Value::Object(map) => {
            for (name, child) in map {
                // A free map beside named keys adds no key of its own.
                if name == "*" && child == &Value::Bool(true) && map.len() > 1 {
                    continue;
                }
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                leaves(child, key, out);
            }
        }
        _ => out.push(prefix),
    }
}

/// Latchkey's own keys from its defaults: the leaves, with values.
fn default_leaves(node: &Value, prefix: String, out: &mut Vec<(String, Value)>) {
    match node {
        Value::Object(map) if !map.is_empty() => {
            for (name, child) in map {
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                default_leaves(child, key, out);
            }
        }
        other => out.push((prefix, other.clone())),
    }
}

/// Whether Kratos's schema has `key`, or a block it does not look inside
/// that holds it.
fn kratos_has(key: &str) -> bool {
    let mut node = &*KRATOS_KEYS;
    for segment in key.split('.') {
        node = match node {
            Value::Bool(true) => return true,
            Value::Object(map) => match map.get(segment).or_else(|| map.get("*")) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
    }
    true
}

/// Whether Latchkey's configuration model has `key` (some), with its
/// default when the key is a plain value (some(some)).
fn read_by_latchkey<'a>(defaults: &'a Value, key: &str) -> Option<Option<&'a Value>> {
    let mut node = defaults;
    for segment in key.split('.') {
        node = match node {
            Value::Object(map) if map.is_empty() => return Some(None),
            Value::Object(map) => match segment {
                "*" | "[]" => return Some(None),
                name => map.get(name)?,
            },
            // A list, or a value Latchkey keeps whole (templates, a hook's
            // config): what is inside is read with it.
            Value::Array(_) | Value::Null => return Some(None),
            _ => return None,
        };
    }
    Some(Some(node).filter(|v| !v.is_object()))
}

/// A default as the table shows it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "\"\"".into(),
        Value::String(s) => s.clone(),
        Value::Null => "none".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_document_matches_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let made = markdown();
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &made).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == made,
            "docs/configuration.md differs from the code; run `UPDATE_DOCS=1 cargo test -p latchkey --lib reference`"
        );
    }

    #[test]
    fn keys_are_marked_by_what_latchkey_does() {
        let made = markdown();
        let row = |key: &str| {
            made.lines().find(|l| l.starts_with(&format!("| `{key}` |"))).unwrap_or_else(|| panic!("{key}"))
        };
        assert!(row("serve.public.port").contains("| supported |"));
        assert!(row("serve.public.port").contains("`SERVE_PUBLIC_PORT`"));
        assert!(row("selfservice.methods.code.passwordless_enabled").contains("supported"));
        assert!(row("selfservice.methods.webauthn.enabled").contains("accepted, no effect yet"));
        assert!(row("courier.channels.[].id").contains("accepted, no effect yet"));
        assert!(row("serve.public.trusted_proxies").contains("Latchkey's own"));
        assert!(row("log.level").contains("`info`"));
    }
}
