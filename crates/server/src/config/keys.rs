//! Which keys a configuration may name. A key Latchkey reads is fine; one
//! that Kratos's configuration schema knows but Latchkey does not read yet
//! is only reported (a Kratos configuration moves over unchanged); any other
//! key is a mistake and stops the start, with the nearest known key as a
//! suggestion. Kratos refuses unknown keys for the same reason: a misspelt
//! block would otherwise be dropped whole, and its defaults silently used.
//!
//! Kratos's keys come from `kratos-keys.json`, the shape of its schema
//! (`scripts/config-keys.py` writes it): objects by property name, `"*"` for
//! any key of a map, `"[]"` for the items of a list, `true` for a value
//! whose insides are not keys.

use std::sync::LazyLock;

use serde_json::Value;

use super::Config;

pub(super) static KRATOS_KEYS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("kratos-keys.json")).expect("kratos-keys.json is JSON")
});

/// Latchkey's own keys, as its defaults serialise.
static LATCHKEY_KEYS: LazyLock<Value> =
    LazyLock::new(|| serde_json::to_value(Config::default()).expect("the defaults serialise"));

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Item(usize),
}

/// A key Latchkey does not read, and what it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Ignored {
    /// Kratos has the key; Latchkey does not implement it yet.
    Unsupported(String),
    /// No such key; the nearest known one, if any is near.
    Unknown { key: String, suggestion: Option<String> },
}

/// The segments of a path serde ignored: list items by index, wrappers
/// (options, newtypes) left out.
pub fn segments(path: &serde_ignored::Path) -> Vec<Segment> {
    use serde_ignored::Path;
    let mut out = Vec::new();
    let mut at = path;
    loop {
        at = match at {
            Path::Root => break,
            Path::Seq { parent, index } => {
                out.push(Segment::Item(*index));
                parent
            }
            Path::Map { parent, key } => {
                out.push(Segment::Key(key.clone()));
                parent
            }
            Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => {
                parent
            }
        };
    }
    out.reverse();
    out
}

/// The key as configuration files and error messages spell it
/// (`identity.schemas.0.url`).
pub fn dotted(segments: &[Segment]) -> String {
    let parts: Vec<String> = segments
        .iter()
        .map(|s| match s {
            Segment::Key(key) => key.clone(),
            Segment::Item(index) => index.to_string(),
        })
        .collect();
    parts.join(".")
}

/// Sorts a key Latchkey ignored into Kratos's and unknown ones.
pub fn classify(segments: &[Segment]) -> Ignored {
    let key = dotted(segments);
    let mut node = &*KRATOS_KEYS;
    for (depth, segment) in segments.iter().enumerate() {
        let next = match (node, segment) {
            (Value::Bool(true), _) => return Ignored::Unsupported(key),
            (Value::Object(map), Segment::Key(name)) => map.get(name).or_else(|| map.get("*")),
            (Value::Object(map), Segment::Item(_)) => map.get("[]"),
            _ => None,
        };
        match next {
            Some(next) => node = next,
            None => {
                let suggestion = suggest(&segments[..depth], segment);
                return Ignored::Unknown { key, suggestion };
            }
        }
    }
    Ignored::Unsupported(key)
}

/// The known key nearest to `wrong` beside it under `parent`, when one is
/// a slip of the keyboard away (`selfservce`, `memroy`, `prot`).
fn suggest(parent: &[Segment], wrong: &Segment) -> Option<String> {
    let Segment::Key(wrong) = wrong else { return None };
    let mut names: Vec<&str> = Vec::new();
    for tree in [&*KRATOS_KEYS, &*LATCHKEY_KEYS] {
        if let Some(Value::Object(map)) = descend(tree, parent) {
            names.extend(map.keys().map(String::as_str).filter(|k| *k != "*" && *k != "[]"));
        }
    }
    let (distance, nearest) =
        names.into_iter().map(|name| (strsim::osa_distance(wrong, name), name)).min()?;
    // One slip, or one in four letters for longer names.
    let near = distance <= 1 || distance * 4 <= wrong.chars().count();
    near.then(|| {
        let mut path = parent.to_vec();
        path.push(Segment::Key(nearest.to_string()));
        dotted(&path)
    })
}

/// The subtree `path` leads to in a key tree (Kratos's or the defaults).
fn descend<'a>(tree: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let mut node = tree;
    for segment in path {
        node = match (node, segment) {
            (Value::Object(map), Segment::Key(name)) => map.get(name).or_else(|| map.get("*"))?,
            (Value::Object(map), Segment::Item(_)) => map.get("[]")?,
            (Value::Array(items), Segment::Item(_)) => items.first()?,
            _ => return None,
        };
    }
    Some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(key: &str) -> Vec<Segment> {
        key.split('.')
            .map(|part| match part.parse() {
                Ok(index) => Segment::Item(index),
                Err(_) => Segment::Key(part.to_string()),
            })
            .collect()
    }

    fn unknown(key: &str, suggestion: Option<&str>) -> Ignored {
        Ignored::Unknown { key: key.into(), suggestion: suggestion.map(str::to_string) }
    }

    #[test]
    fn kratos_keys_latchkey_lacks_are_only_unsupported() {
        for key in [
            "courier.channels",
            "selfservice.methods.oidc.config.providers.0.client_id",
            "selfservice.methods.webauthn.enabled",
            "session.whoami.tokenizer.templates.jwt.ttl",
            "selfservice.flows.registration.after.password.hooks.0.config.body",
            "oauth2_provider.url",
        ] {
            assert_eq!(classify(&path(key)), Ignored::Unsupported(key.into()), "{key}");
        }
    }

    #[test]
    fn misspelt_keys_are_unknown_with_the_key_meant() {
        assert_eq!(classify(&path("selfservce")), unknown("selfservce", Some("selfservice")));
        assert_eq!(
            classify(&path("hashers.argon2.memroy")),
            unknown("hashers.argon2.memroy", Some("hashers.argon2.memory"))
        );
        assert_eq!(
            classify(&path("serve.public.prot")),
            unknown("serve.public.prot", Some("serve.public.port"))
        );
        // Deeper than the slip: the path is cut where it left the known keys.
        assert_eq!(
            classify(&path("selfservce.flows.recovery.enabled")),
            unknown("selfservce.flows.recovery.enabled", Some("selfservice"))
        );
        assert_eq!(classify(&path("nonsense_block")), unknown("nonsense_block", None));
        assert_eq!(classify(&path("serve.public.colour")), unknown("serve.public.colour", None));
    }

    #[test]
    fn latchkey_own_keys_are_suggested_too() {
        // `sessions` is not Kratos's; `session` is, and so is Latchkey's `session.cache`.
        assert_eq!(classify(&path("sessions")), unknown("sessions", Some("session")));
    }
}
