//! Timestamps as the wire and both databases agree on them.

use chrono::{DateTime, SubsecRound, Utc};

/// The current time truncated to microseconds, the precision PostgreSQL keeps,
/// so a value read back from either database equals the one written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
