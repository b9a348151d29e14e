//! The start-up check every identity schema must pass: a valid JSON Schema
//! whose `traits` is an object with properties, with well-formed extension
//! keywords and only verifiable formats on verification addresses.

use serde::Deserialize;
use serde_json::Value;

use super::extension::KRATOS_KEYWORD;

const VERIFIABLE_FORMATS: [&str; 6] = ["email", "tel", "date", "time", "date-time", "no-validate"];

/// The `ory.sh/kratos` keyword; unknown keys are schema mistakes worth failing on.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KratosKeyword {
    #[serde(default)]
    pub credentials: CredentialsKeyword,
    pub verification: Option<ViaKeyword>,
    pub recovery: Option<ViaKeyword>,
    #[allow(dead_code)]
    pub organizations: Option<OrganizationsKeyword>,
}

impl KratosKeyword {
    /// Whether a login form asks for this trait by one method or another.
    pub(super) fn names_the_person(&self) -> bool {
        let c = &self.credentials;
        c.password.as_ref().is_some_and(|p| p.identifier)
            || c.webauthn.as_ref().is_some_and(|w| w.identifier)
            || c.passkey.as_ref().is_some_and(|p| p.display_name == Some(true))
            || c.totp.as_ref().is_some_and(|t| t.account_name == Some(true))
            || c.code.as_ref().is_some_and(|c| c.identifier)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CredentialsKeyword {
    pub password: Option<IdentifierKeyword>,
    pub webauthn: Option<IdentifierKeyword>,
    pub passkey: Option<PasskeyKeyword>,
    pub totp: Option<TotpKeyword>,
    pub code: Option<CodeKeyword>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IdentifierKeyword {
    #[serde(default)]
    pub identifier: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasskeyKeyword {
    pub display_name: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TotpKeyword {
    pub account_name: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeKeyword {
    #[serde(default)]
    pub identifier: bool,
    pub via: Option<crate::identity::Via>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ViaKeyword {
    pub via: Option<crate::identity::Via>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OrganizationsKeyword {
    #[allow(dead_code)]
    pub matcher: Option<OrgMatcher>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OrgMatcher {
    EmailDomain,
}

/// Why a schema cannot be used; each reads as the end of a sentence that
/// starts with the schema's name.
#[derive(Debug, thiserror::Error)]
pub enum SchemaProblem {
    #[error("is not a valid JSON Schema: {0}")]
    NotJsonSchema(#[source] Box<jsonschema::ValidationError<'static>>),
    #[error("has no `properties.traits`")]
    NoTraits,
    #[error("`properties.traits.type` must be \"object\"")]
    TraitsNotObject,
    #[error("`properties.traits` has no `properties`")]
    NoTraitProperties,
    #[error("`properties.traits.properties` must define at least one trait")]
    NoTraitDefined,
    #[error("trait `{name}` is used for verification, so its `format` must be one of {}", VERIFIABLE_FORMATS.join(", "))]
    UnverifiableFormat { name: String },
    #[error("has an invalid `{KRATOS_KEYWORD}` at {at}: {source}")]
    Keyword { at: String, source: serde_json::Error },
    #[error("does not compile: {0}")]
    Compile(#[source] Box<jsonschema::ValidationError<'static>>),
}

/// `Ok` when the schema is usable, else what is wrong with it.
pub(super) fn check(schema: &Value) -> Result<(), SchemaProblem> {
    if let Err(e) = jsonschema::meta::validate(schema) {
        return Err(SchemaProblem::NotJsonSchema(Box::new(e.to_owned())));
    }
    let traits = schema.pointer("/properties/traits").ok_or(SchemaProblem::NoTraits)?;
    if traits.get("type").is_some_and(|t| t != "object") {
        return Err(SchemaProblem::TraitsNotObject);
    }
    let props =
        traits.get("properties").and_then(Value::as_object).ok_or(SchemaProblem::NoTraitProperties)?;
    if props.is_empty() {
        return Err(SchemaProblem::NoTraitDefined);
    }
    for (name, prop) in props {
        let Some(keyword) = prop.get(KRATOS_KEYWORD) else {
            continue;
        };
        if keyword.get("verification").is_some() {
            let format = prop.get("format").and_then(Value::as_str);
            if !format.is_some_and(|f| VERIFIABLE_FORMATS.contains(&f)) {
                return Err(SchemaProblem::UnverifiableFormat { name: name.clone() });
            }
        }
    }
    check_keywords(schema, "#")
}

/// Every `ory.sh/kratos` keyword anywhere in the schema must parse.
fn check_keywords(node: &Value, path: &str) -> Result<(), SchemaProblem> {
    match node {
        Value::Object(map) => {
            for (key, value) in map {
                let here = format!("{path}/{key}");
                if key == KRATOS_KEYWORD {
                    KratosKeyword::deserialize(value)
                        .map_err(|source| SchemaProblem::Keyword { at: here, source })?;
                } else {
                    check_keywords(value, &here)?;
                }
            }
            Ok(())
        }
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_keywords(v, &format!("{path}/{i}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn with_traits(props: Value) -> Value {
        json!({"type": "object", "properties": {"traits": {"type": "object", "properties": props}}})
    }

    #[test]
    fn accepts_the_quickstart_shape() {
        let s = with_traits(json!({"email": {"type": "string", "format": "email",
            "ory.sh/kratos": {"credentials": {"password": {"identifier": true}},
                              "verification": {"via": "email"}, "recovery": {"via": "email"}}}}));
        check(&s).unwrap();
    }

    #[test]
    fn rejects_missing_traits_and_empty_properties() {
        assert!(check(&json!({"type": "object"})).unwrap_err().to_string().contains("traits"));
        assert!(check(&with_traits(json!({}))).unwrap_err().to_string().contains("at least one"));
    }

    #[test]
    fn rejects_verification_without_a_verifiable_format() {
        let s = with_traits(
            json!({"email": {"type": "string", "ory.sh/kratos": {"verification": {"via": "email"}}}}),
        );
        assert!(check(&s).unwrap_err().to_string().contains("format"));
    }

    #[test]
    fn rejects_unknown_extension_keys_and_channels() {
        let s = with_traits(json!({"email": {"type": "string",
            "ory.sh/kratos": {"credentials": {"password": {"identifer": true}}}}}));
        let err = check(&s).unwrap_err();
        assert!(err.to_string().contains("identifer"));
        // serde's own error stays the source, for the log.
        assert!(std::error::Error::source(&err).is_some_and(|e| e.is::<serde_json::Error>()));
        let s = with_traits(
            json!({"email": {"type": "string", "ory.sh/kratos": {"recovery": {"via": "pigeon"}}}}),
        );
        assert!(check(&s).is_err());
    }

    #[test]
    fn rejects_invalid_json_schema() {
        let s = json!({"type": 12, "properties": {"traits": {"properties": {"a": {}}}}});
        assert!(check(&s).unwrap_err().to_string().contains("valid JSON Schema"));
    }
}
