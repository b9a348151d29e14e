//! Error mapping and row decoding. PostgreSQL's native types line up with
//! the domain's, so columns decode straight into uuids, timestamps and JSON;
//! only the text enumerations need parsing.

use std::str::FromStr;

use latchkey_domain::store::{BoxError, StoreError};
use sqlx::postgres::PgRow;
use sqlx::{Decode, Postgres, Row, Type};

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

/// Reads the column `name`; sqlx's error already names the column.
pub(crate) fn col<'r, T>(row: &'r PgRow, name: &str) -> Result<T, StoreError>
where
    T: Decode<'r, Postgres> + Type<Postgres>,
{
    row.try_get(name).map_err(backend)
}

/// Reads a text column holding one of the domain's enumerations.
pub(crate) fn enum_col<T: FromStr<Err = latchkey_domain::UnknownValue>>(
    row: &PgRow,
    name: &str,
) -> Result<T, StoreError> {
    col::<&str>(row, name)?.parse().map_err(backend)
}
