//! Conversions between domain values and SQLite's text columns.

use chrono::{DateTime, SecondsFormat, Utc};
use latchkey_domain::store::{BoxError, StoreError};
use serde_json::Value;
use sqlx::sqlite::{Sqlite, SqliteRow};
use sqlx::{Decode, Row, Type};
use uuid::Uuid;

/// A failure kept whole as the error's cause, not flattened to text.
pub(crate) fn backend(e: impl Into<BoxError>) -> StoreError {
    StoreError::backend(e)
}

/// Unique violations become conflicts; everything else is a backend failure.
pub(crate) fn write_error(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_string())
        }
        _ => backend(e),
    }
}

pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub(crate) fn opt_time(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(time)
}

pub(crate) fn parse_time(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(backend)
}

pub(crate) fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(backend)
}

pub(crate) fn json(v: &Value) -> String {
    v.to_string()
}

pub(crate) fn opt_json(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

pub(crate) fn parse_json(s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(backend)
}

pub(crate) fn parse_enum<T: std::str::FromStr<Err = latchkey_domain::UnknownValue>>(
    s: &str,
) -> Result<T, StoreError> {
    s.parse().map_err(backend)
}

/// Reads one column, mapping decode failures to a backend error.
pub(crate) fn col<'r, T: Decode<'r, Sqlite> + Type<Sqlite>>(
    row: &'r SqliteRow,
    name: &str,
) -> Result<T, StoreError> {
    row.try_get(name).map_err(backend)
}

pub(crate) fn uuid_col(row: &SqliteRow, name: &str) -> Result<Uuid, StoreError> {
    parse_uuid(col(row, name)?)
}

pub(crate) fn enum_col<T: std::str::FromStr<Err = latchkey_domain::UnknownValue>>(
    row: &SqliteRow,
    name: &str,
) -> Result<T, StoreError> {
    parse_enum(col(row, name)?)
}

pub(crate) fn time_col(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_time(col(row, name)?)
}

pub(crate) fn opt_time_col(row: &SqliteRow, name: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    col::<Option<&str>>(row, name)?.map(parse_time).transpose()
}

pub(crate) fn json_col(row: &SqliteRow, name: &str) -> Result<Value, StoreError> {
    parse_json(col(row, name)?)
}

pub(crate) fn opt_json_col(row: &SqliteRow, name: &str) -> Result<Option<Value>, StoreError> {
    col::<Option<&str>>(row, name)?.map(parse_json).transpose()
}
