//! Reads the `ory.sh/kratos` keyword alongside a traits document, so that
//! login identifiers and addresses are derived from traits and never entered
//! twice.

use serde::Deserialize;
use serde_json::Value;
use unicode_normalization::UnicodeNormalization;

use super::meta::KratosKeyword;
use crate::identity::Via;

pub(super) const KRATOS_KEYWORD: &str = "ory.sh/kratos";

/// An address named by a trait, normalised.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AddressRef {
    pub via: Via,
    pub value: String,
}

/// What the traits say about signing in and reaching the person.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraitFacts {
    pub password_identifiers: Vec<String>,
    pub webauthn_identifiers: Vec<String>,
    pub code_identifiers: Vec<AddressRef>,
    pub verifiable_addresses: Vec<AddressRef>,
    pub recovery_addresses: Vec<AddressRef>,
    /// The trait marked `totp.account_name`, named in the TOTP app.
    pub totp_account_name: Option<String>,
}

/// Canonical form of identifiers and addresses, so that lookalikes compare
/// equal: trimmed, NFKC-normalised, invisible control and format characters
/// removed, lower-cased (as Kratos does). Phone numbers are only trimmed and
/// normalised.
pub fn normalize(value: &str, via: Via) -> String {
    let folded = value.trim().nfkc().filter(|c| !c.is_control() && !is_invisible(*c));
    match via {
        Via::Email => folded.collect::<String>().to_lowercase(),
        Via::Sms => folded.collect(),
    }
}

/// Zero-width and bidirectional marks that render as nothing but would make
/// two identical-looking identifiers differ.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}')
}

pub(super) fn collect(schema: &Value, traits: &Value) -> TraitFacts {
    let mut facts = TraitFacts::default();
    if let Some(node) = schema.pointer("/properties/traits") {
        walk(schema, node, traits, &mut facts, 0);
    }
    for list in [&mut facts.password_identifiers, &mut facts.webauthn_identifiers] {
        list.sort();
        list.dedup();
    }
    for list in [&mut facts.code_identifiers, &mut facts.verifiable_addresses, &mut facts.recovery_addresses]
    {
        list.sort();
        list.dedup();
    }
    facts
}

/// A trait a person signs in with (any method's identifier, a passkey's
/// display name, a TOTP account name): its path (`traits.email`) and title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentifierTrait {
    pub name: String,
    pub title: Option<String>,
}

pub(super) fn identifier_traits(schema: &Value) -> Vec<IdentifierTrait> {
    let mut found = Vec::new();
    if let Some(node) = schema.pointer("/properties/traits") {
        find_identifiers(schema, node, "traits", &mut found, 0);
    }
    found
}

fn find_identifiers(root: &Value, node: &Value, name: &str, found: &mut Vec<IdentifierTrait>, depth: usize) {
    if depth > 32 {
        return;
    }
    let node = match node.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
            Some(target) => target,
            None => return,
        },
        _ => node,
    };
    if let Some(keyword) = node.get(KRATOS_KEYWORD)
        && let Ok(keyword) = KratosKeyword::deserialize(keyword)
        && keyword.names_the_person()
    {
        let title = node.get("title").and_then(Value::as_str).map(str::to_string);
        found.push(IdentifierTrait { name: name.to_string(), title });
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (key, sub) in props {
            find_identifiers(root, sub, &format!("{name}.{key}"), found, depth + 1);
        }
    }
}

/// Local `$ref`s are followed; the depth bound stops reference cycles.
fn walk(root: &Value, node: &Value, value: &Value, facts: &mut TraitFacts, depth: usize) {
    if depth > 32 {
        return;
    }
    let node = match node.get("$ref").and_then(Value::as_str) {
        Some(r) if r.starts_with('#') => match root.pointer(&r[1..]) {
            Some(target) => target,
            None => return,
        },
        _ => node,
    };
    if let (Some(keyword), Some(text)) = (node.get(KRATOS_KEYWORD), value.as_str())
        && let Ok(keyword) = KratosKeyword::deserialize(keyword)
    {
        apply(&keyword, text, facts);
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = node.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if let Some(v) = map.get(name) {
                        walk(root, sub, v, facts, depth + 1);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = node.get("items").filter(|i| i.is_object()) {
                for v in items {
                    walk(root, sub, v, facts, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn apply(keyword: &KratosKeyword, text: &str, facts: &mut TraitFacts) {
    let creds = &keyword.credentials;
    if creds.password.as_ref().is_some_and(|p| p.identifier) {
        facts.password_identifiers.push(normalize(text, Via::Email));
    }
    if creds.webauthn.as_ref().is_some_and(|p| p.identifier) {
        facts.webauthn_identifiers.push(normalize(text, Via::Email));
    }
    if let Some(code) = creds.code.as_ref().filter(|c| c.identifier) {
        let via = code.via.unwrap_or_default();
        facts.code_identifiers.push(AddressRef { via, value: normalize(text, via) });
    }
    if creds.totp.as_ref().and_then(|t| t.account_name) == Some(true) {
        facts.totp_account_name = Some(text.to_string());
    }
    if let Some(v) = &keyword.verification {
        let via = v.via.unwrap_or_default();
        facts.verifiable_addresses.push(AddressRef { via, value: normalize(text, via) });
    }
    if let Some(r) = &keyword.recovery {
        let via = r.via.unwrap_or_default();
        facts.recovery_addresses.push(AddressRef { via, value: normalize(text, via) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn derives_identifiers_and_addresses_from_nested_traits() {
        let schema = json!({"properties": {"traits": {"type": "object", "properties": {
            "email": {"type": "string", "ory.sh/kratos": {
                "credentials": {"password": {"identifier": true}},
                "verification": {"via": "email"}, "recovery": {"via": "email"}}},
            "phones": {"type": "array", "items": {"$ref": "#/definitions/phone"}},
            "name": {"type": "object", "properties": {"nick": {"type": "string",
                "ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}}}}
        }}}, "definitions": {"phone": {"type": "string",
            "ory.sh/kratos": {"verification": {"via": "sms"}}}}});
        let traits = json!({"email": " Foo@Ｅxample.COM\u{200B} ", "phones": ["+4912345"],
            "name": {"nick": "Neo"}});
        let facts = collect(&schema, &traits);
        assert_eq!(facts.password_identifiers, vec!["foo@example.com", "neo"]);
        assert_eq!(
            facts.verifiable_addresses,
            vec![
                AddressRef { via: Via::Email, value: "foo@example.com".into() },
                AddressRef { via: Via::Sms, value: "+4912345".into() },
            ]
        );
        assert_eq!(facts.recovery_addresses.len(), 1);
    }

    #[test]
    fn ignores_missing_and_non_string_values() {
        let schema = json!({"properties": {"traits": {"properties": {
            "email": {"ory.sh/kratos": {"credentials": {"password": {"identifier": true}}}}}}}});
        assert_eq!(collect(&schema, &json!({})), TraitFacts::default());
        assert_eq!(collect(&schema, &json!({"email": 5})), TraitFacts::default());
    }

    #[test]
    fn the_totp_account_name_is_the_marked_trait_as_typed() {
        let schema = json!({"properties": {"traits": {"properties": {
            "email": {"type": "string", "ory.sh/kratos": {"credentials": {
                "password": {"identifier": true}, "totp": {"account_name": true}}}}}}}});
        let facts = collect(&schema, &json!({"email": "Ada@Example.com"}));
        assert_eq!(facts.totp_account_name.as_deref(), Some("Ada@Example.com"));
        assert_eq!(facts.password_identifiers, vec!["ada@example.com"]);
        assert_eq!(collect(&schema, &json!({})).totp_account_name, None);
    }
}
