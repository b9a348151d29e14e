//! The configured identity schemas, loaded and checked once at start.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use super::extension::{self, TraitFacts};
use super::meta::{self, SchemaProblem};

/// Why a schema URL could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    File(#[source] std::io::Error),
    #[error("invalid base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("only file:// and base64:// URLs are supported")]
    Scheme,
    #[error("invalid JSON: {0}")]
    Json(#[source] serde_json::Error),
}

/// One entry of `identity.schemas`.
#[derive(Debug, Clone)]
pub struct SchemaSource {
    pub id: String,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("identity schema `{0}` could not be found")]
    NotFound(String),
    #[error("identity schema `{id}` at {url} could not be loaded: {source}")]
    Load { id: String, url: String, source: ReadError },
    #[error("identity schema `{id}` {source}")]
    Invalid { id: String, source: SchemaProblem },
    #[error("identity.default_schema_id `{0}` names no schema in identity.schemas")]
    UnknownDefault(String),
    /// Traits do not satisfy the schema; `reason` names the failing field.
    /// `missing` is the absent property for `required` failures.
    #[error("{reason}")]
    TraitsInvalid { reason: String, pointer: String, missing: Option<String> },
}

/// A loaded schema: its raw document (served by `/schemas`) and its validator.
pub struct IdentitySchema {
    pub id: String,
    pub url: String,
    pub raw: Value,
    validator: jsonschema::Validator,
}

impl IdentitySchema {
    /// The id as it appears in `schema_url`: base64url without padding.
    pub fn encoded_id(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.id.as_bytes())
    }

    /// The traits people sign in with, in schema order.
    pub fn identifier_traits(&self) -> Vec<extension::IdentifierTrait> {
        extension::identifier_traits(&self.raw)
    }
}

/// All configured schemas, by id, plus which one new identities default to.
pub struct SchemaRegistry {
    schemas: BTreeMap<String, Arc<IdentitySchema>>,
    default_id: String,
}

impl SchemaRegistry {
    /// Loads, checks and compiles every schema; any failure stops the start.
    pub fn load(sources: &[SchemaSource], default_id: &str) -> Result<Self, SchemaError> {
        let mut schemas = BTreeMap::new();
        for source in sources {
            let raw = read(&source.url).map_err(|e| SchemaError::Load {
                id: source.id.clone(),
                url: source.url.clone(),
                source: e,
            })?;
            let schema = compile(&source.id, &source.url, raw)?;
            schemas.insert(source.id.clone(), Arc::new(schema));
        }
        if !schemas.contains_key(default_id) {
            return Err(SchemaError::UnknownDefault(default_id.to_string()));
        }
        Ok(Self { schemas, default_id: default_id.to_string() })
    }

    pub fn default_id(&self) -> &str {
        &self.default_id
    }

    /// The schema new identities get unless they name another.
    pub fn default_schema(&self) -> &Arc<IdentitySchema> {
        // `load` refuses a default that names no schema.
        &self.schemas[&self.default_id]
    }

    /// Looks a schema up by its id or by the base64url form used in URLs.
    pub fn get(&self, id: &str) -> Option<&Arc<IdentitySchema>> {
        self.schemas.get(id).or_else(|| {
            let decoded = URL_SAFE_NO_PAD.decode(id).ok()?;
            self.schemas.get(std::str::from_utf8(&decoded).ok()?)
        })
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<IdentitySchema>> {
        self.schemas.values()
    }

    /// Validates traits and returns what the extension derives from them.
    pub fn validate_traits(&self, schema_id: &str, traits: &Value) -> Result<TraitFacts, SchemaError> {
        let schema =
            self.schemas.get(schema_id).ok_or_else(|| SchemaError::NotFound(schema_id.to_string()))?;
        let document = json!({ "traits": traits });
        if let Some(err) = schema.validator.iter_errors(&document).next() {
            let pointer = err.instance_path().to_string();
            let missing = match err.kind() {
                jsonschema::error::ValidationErrorKind::Required { property } => {
                    property.as_str().map(str::to_string)
                }
                _ => None,
            };
            return Err(SchemaError::TraitsInvalid {
                reason: format!("I[#{}] S[#{}] {}", pointer, err.schema_path(), err),
                pointer,
                missing,
            });
        }
        let facts = extension::collect(&schema.raw, traits);
        check_identifier_lengths(traits, &facts)?;
        Ok(facts)
    }
}

/// Identifiers and addresses are unique, so indexed: PostgreSQL refuses
/// index entries past about 2.7 KB, and a schema whose identifier trait has
/// no `maxLength` let one registration end in a 500 there. Far above any
/// real address or username.
pub const MAX_IDENTIFIER_BYTES: usize = 1024;

fn check_identifier_lengths(traits: &Value, facts: &TraitFacts) -> Result<(), SchemaError> {
    let addresses =
        facts.code_identifiers.iter().chain(&facts.verifiable_addresses).chain(&facts.recovery_addresses);
    let too_long = facts
        .password_identifiers
        .iter()
        .chain(&facts.webauthn_identifiers)
        .chain(addresses.map(|a| &a.value))
        .find(|v| v.len() > MAX_IDENTIFIER_BYTES);
    let Some(value) = too_long else { return Ok(()) };
    // The message goes on the trait that holds the value (normalisation may
    // change its length a little, so any string past the limit will do).
    let pointer = long_string(traits, "/traits").unwrap_or_default();
    Err(SchemaError::TraitsInvalid {
        reason: format!("length must be <= {MAX_IDENTIFIER_BYTES}, but got {}", value.len()),
        pointer,
        missing: None,
    })
}

/// The JSON pointer of the first string longer than the limit.
fn long_string(value: &Value, at: &str) -> Option<String> {
    match value {
        Value::String(s) if s.len() > MAX_IDENTIFIER_BYTES => Some(at.to_string()),
        Value::Object(map) => map.iter().find_map(|(k, v)| long_string(v, &format!("{at}/{k}"))),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| long_string(v, &format!("{at}/{i}")))
        }
        _ => None,
    }
}

fn compile(id: &str, url: &str, raw: Value) -> Result<IdentitySchema, SchemaError> {
    let invalid = |source| SchemaError::Invalid { id: id.to_string(), source };
    meta::check(&raw).map_err(invalid)?;
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&raw)
        .map_err(|e| invalid(SchemaProblem::Compile(Box::new(e.to_owned()))))?;
    Ok(IdentitySchema { id: id.to_string(), url: url.to_string(), raw, validator })
}

/// Reads `file://` and `base64://` URLs; remote schemas are refused so that
/// start-up never depends on the network.
fn read(url: &str) -> Result<Value, ReadError> {
    let bytes = if let Some(path) = url.strip_prefix("file://") {
        std::fs::read(PathBuf::from(path)).map_err(ReadError::File)?
    } else if let Some(data) = url.strip_prefix("base64://") {
        STANDARD
            .decode(data.trim())
            .or_else(|_| URL_SAFE_NO_PAD.decode(data.trim().trim_end_matches('=')))
            .map_err(ReadError::Base64)?
    } else {
        return Err(ReadError::Scheme);
    };
    serde_json::from_slice(&bytes).map_err(ReadError::Json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> SchemaRegistry {
        let schema = json!({"$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object", "properties": {"traits": {"type": "object", "properties": {
            "email": {"type": "string", "format": "email", "ory.sh/kratos": {
                "credentials": {"password": {"identifier": true}}, "recovery": {"via": "email"}}}},
            "required": ["email"], "additionalProperties": false}}});
        let url = format!("base64://{}", STANDARD.encode(schema.to_string()));
        SchemaRegistry::load(&[SchemaSource { id: "default".into(), url }], "default").unwrap()
    }

    #[test]
    fn validates_traits_and_names_the_failing_field() {
        let reg = registry();
        let facts = reg.validate_traits("default", &json!({"email": "A@b.co"})).unwrap();
        assert_eq!(facts.password_identifiers, vec!["a@b.co"]);
        match reg.validate_traits("default", &json!({"email": "not-an-email"})) {
            Err(SchemaError::TraitsInvalid { pointer, reason, .. }) => {
                assert_eq!(pointer, "/traits/email");
                assert!(reason.contains("#/traits/email"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(reg.validate_traits("default", &json!({})), Err(SchemaError::TraitsInvalid { .. })));
        assert!(
            matches!(reg.validate_traits("other", &json!({})), Err(SchemaError::NotFound(id)) if id == "other")
        );
    }

    #[test]
    fn finds_schemas_by_encoded_id() {
        let reg = registry();
        assert_eq!(reg.get("ZGVmYXVsdA").unwrap().id, "default");
        assert!(reg.get("nope").is_none());
    }

    #[test]
    fn refuses_unknown_default_and_remote_urls() {
        let err = SchemaRegistry::load(&[], "default").err().unwrap();
        assert!(matches!(err, SchemaError::UnknownDefault(ref id) if id == "default"), "{err:?}");
        let src = SchemaSource { id: "x".into(), url: "https://example.com/s.json".into() };
        assert!(matches!(SchemaRegistry::load(&[src], "x"), Err(SchemaError::Load { .. })));
    }
}
