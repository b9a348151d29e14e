//! `latchkey identities import`: moving identities over from Ory Kratos.
//!
//! Reads what Kratos's admin API exports (`GET /admin/identities?include_credential=password`,
//! saved as one JSON array or as JSON lines) and writes each identity with its id, schema,
//! traits, state, metadata, addresses and their verification, and password hash, which
//! Latchkey verifies as stored (bcrypt, argon2, PBKDF2, scrypt) and rehashes at the next
//! sign-in. Ids are kept, so running the same file again skips what is already there.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use latchkey_domain::identity::{
    AddressClaim, AddressStatus, IdentityError, IdentityManager, IdentityState, NewIdentity, PasswordInput,
    Via,
};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// Identities written at once: enough to keep the database busy, few
/// enough that a SQLite writer is not queued behind dozens.
pub const DEFAULT_CONCURRENCY: usize = 8;

/// One identity as Kratos's admin API shows it; fields Latchkey does not
/// keep (recovery addresses, which follow from the traits; organization) are
/// left out.
#[derive(Deserialize)]
struct KratosIdentity {
    id: Uuid,
    #[serde(default)]
    schema_id: Option<String>,
    #[serde(default)]
    state: Option<IdentityState>,
    traits: Value,
    #[serde(default)]
    metadata_public: Option<Value>,
    #[serde(default)]
    metadata_admin: Option<Value>,
    #[serde(default)]
    external_id: Option<String>,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    verifiable_addresses: Vec<KratosAddress>,
    #[serde(default)]
    credentials: BTreeMap<String, KratosCredential>,
}

#[derive(Deserialize)]
struct KratosAddress {
    value: String,
    #[serde(default)]
    verified: bool,
    #[serde(default)]
    via: Option<Via>,
    #[serde(default)]
    status: Option<AddressStatus>,
    #[serde(default)]
    verified_at: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct KratosCredential {
    #[serde(default)]
    config: Option<Value>,
}

/// What became of one entry of the file.
enum Outcome {
    Imported,
    /// An identity with this id is already there.
    Skipped,
    Failed(String),
}

/// The counts and reasons `import` reports.
#[derive(Debug, Default)]
pub struct Summary {
    pub imported: usize,
    pub skipped: usize,
    /// Entry number (from 1), id when it could be read, and the reason.
    pub failed: Vec<(usize, Option<Uuid>, String)>,
    /// Credential types the file had that Latchkey cannot import, with counts.
    pub credentials_left: BTreeMap<String, usize>,
    pub elapsed: Duration,
}

impl Summary {
    pub fn rate(&self) -> f64 {
        let done = (self.imported + self.skipped + self.failed.len()) as f64;
        done / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The entries of an export: a JSON array, or one JSON value per line.
pub fn read_entries(path: &Path) -> Result<Vec<Value>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("could not read {}: {e}", path.display()))?;
    if text.trim_start().starts_with('[') {
        return serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a JSON array: {e}", path.display()));
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| format!("{} line {}: not JSON: {e}", path.display(), n + 1))
        })
        .collect()
}

/// Imports `entries`, `concurrency` at a time, calling `progress` after each.
pub async fn import(
    identities: &IdentityManager,
    entries: Vec<Value>,
    concurrency: usize,
    progress: impl Fn() + Sync,
) -> Summary {
    let started = Instant::now();
    let mut summary = Summary::default();
    for entry in &entries {
        for kind in entry.get("credentials").and_then(Value::as_object).into_iter().flat_map(|c| c.keys()) {
            if kind != "password" {
                *summary.credentials_left.entry(kind.clone()).or_default() += 1;
            }
        }
    }
    let results: Vec<(usize, Option<Uuid>, Outcome)> =
        futures_util::stream::iter(entries.into_iter().enumerate())
            .map(|(index, entry)| {
                let progress = &progress;
                async move {
                    let id = entry.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok());
                    let outcome = import_one(identities, entry).await;
                    progress();
                    (index + 1, id, outcome)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    for (number, id, outcome) in results {
        match outcome {
            Outcome::Imported => summary.imported += 1,
            Outcome::Skipped => summary.skipped += 1,
            Outcome::Failed(reason) => summary.failed.push((number, id, reason)),
        }
    }
    summary.failed.sort_by_key(|(number, _, _)| *number);
    summary.elapsed = started.elapsed();
    summary
}

async fn import_one(identities: &IdentityManager, entry: Value) -> Outcome {
    let identity: KratosIdentity = match serde_json::from_value(entry) {
        Ok(identity) => identity,
        Err(e) => return Outcome::Failed(format!("not an identity as Kratos exports it: {e}")),
    };
    let id = identity.id;
    match identities.get(id).await {
        Ok(_) => return Outcome::Skipped,
        Err(IdentityError::NotFound) => {}
        Err(e) => return Outcome::Failed(e.to_string()),
    }
    let password = identity
        .credentials
        .get("password")
        .and_then(|c| c.config.as_ref())
        .and_then(|config| config.get("hashed_password"))
        .and_then(Value::as_str)
        .filter(|hash| !hash.is_empty())
        .map(|hash| PasswordInput::Hashed(hash.to_string()));
    let new = NewIdentity {
        id: Some(id),
        created_at: identity.created_at,
        schema_id: identity.schema_id.filter(|s| !s.is_empty()),
        traits: identity.traits,
        state: identity.state,
        metadata_public: identity.metadata_public,
        metadata_admin: identity.metadata_admin,
        external_id: identity.external_id.filter(|s| !s.is_empty()),
        password,
        verifiable_addresses: identity
            .verifiable_addresses
            .into_iter()
            .map(|a| AddressClaim {
                via: a.via.unwrap_or_default(),
                value: a.value,
                verified: a.verified,
                status: a.status,
                verified_at: a.verified_at,
            })
            .collect(),
    };
    match identities.create(new).await {
        Ok(_) => Outcome::Imported,
        // The same id written meanwhile (another import of the file) is a
        // skip; another identity with one of its identifiers is a failure.
        Err(IdentityError::Conflict) => match identities.get(id).await {
            Ok(_) => Outcome::Skipped,
            Err(_) => Outcome::Failed("another identity already has one of its identifiers".into()),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

/// The summary as the command prints it.
pub fn report(summary: &Summary) -> String {
    let mut out = format!(
        "imported {}, skipped {} (already there), failed {} in {:.1}s ({:.0} identities/s)\n",
        summary.imported,
        summary.skipped,
        summary.failed.len(),
        summary.elapsed.as_secs_f64(),
        summary.rate()
    );
    for (kind, count) in &summary.credentials_left {
        out.push_str(&format!(
            "note: {count} identities had `{kind}` credentials, which Latchkey cannot import; \
             those people sign in with their password or recover their account\n"
        ));
    }
    for (number, id, reason) in &summary.failed {
        let id = id.map(|id| format!(" ({id})")).unwrap_or_default();
        out.push_str(&format!("failed: entry {number}{id}: {reason}\n"));
    }
    out
}
