//! The storage contract, written once and run against every backend. Each
//! store crate's `tests/contract.rs` expands [`contract_tests!`] with a
//! constructor of migrated stores, and gets one named test per check
//! (`contract::codes_work_once`, ...). The list of checks lives only in
//! [`contract_checks!`], so a new check runs on every backend or none.

#[doc(hidden)]
pub mod checks;
pub mod postgres;

use std::sync::Arc;

use latchkey_domain::store::Store;
use tokio::sync::RwLock;

pub use checks::{sample_identity, sent_recovery_flow};

/// The one list of contract checks, expanded by [`contract_tests!`] (more
/// ways to run them would expand it too). `[whole_store]` marks the
/// checks that look beyond their own rows (the courier queue, the cleanup,
/// unfiltered counts): on a store shared by several tests they run alone.
#[doc(hidden)]
#[macro_export]
macro_rules! contract_checks {
    ($($then:tt)*) => {
        $crate::__contract_expand! { $($then)* ;
            migrations_are_all_applied,
            identity_round_trips_with_children,
            password_by_identifier_finds_the_owner_and_hash,
            duplicate_identifiers_conflict_and_write_nothing,
            update_replaces_children,
            list_pages_by_id_and_filters,
            delete_cascades,
            flow_round_trips,
            flow_error_round_trips,
            session_by_token_joins_the_identity,
            session_tokens_are_unique,
            [whole_store] list_and_count_sessions,
            revoke_extend_and_delete_sessions,
            second_factor_raises_the_session_and_appends_its_method,
            deleting_an_identity_deletes_its_sessions,
            [whole_store] outbox_claims_each_message_once,
            pool_usage_is_plausible,
            outbox_records_dispatches_and_filters,
            messages_list_newest_first_in_pages,
            [whole_store] outbox_holds_retries_until_their_time,
            code_and_message_are_one_unit,
            identity_change_and_notices_are_one_unit,
            session_and_notices_are_one_unit,
            code_purpose_round_trips,
            creating_a_code_retires_the_flows_earlier_unused_codes,
            live_codes_exclude_used_and_expired,
            codes_work_once,
            code_failures_count_per_address_and_window,
            code_failures_count_per_purpose,
            code_attempts_count_atomically_per_flow,
            attempts_count_atomically_per_code,
            code_attempts_only_count_live_codes,
            address_attempts_count_atomically,
            identity_found_by_recovery_address,
            identity_found_by_verifiable_address,
            deleting_an_identity_deletes_its_codes,
            set_address_status_moves_one_address,
            code_requests_are_recorded_with_their_flow,
            code_requests_are_ended_once,
            [whole_store] stale_code_requests_are_claimed_once_and_go_with_their_flow,
            password_hash_is_swapped_only_while_unchanged,
            credentials_are_set_and_removed_alone,
            totp_steps_pass_only_forward_and_once,
            lookup_codes_are_spent_once_per_set,
            available_aal_follows_the_second_factors,
            rate_events_are_admitted_atomically,
            rate_windows_count_apart_and_reset,
            [whole_store] cleanup_removes_what_is_due_and_keeps_the_rest,
            [whole_store] concurrent_cleanups_share_the_work,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_expand {
    (tests $fresh:path ; $($([$mark:ident])? $check:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $check() {
                // `None`: the backend is unavailable and its tests skipped.
                let Some(fresh) = $fresh().await else { return };
                let _turn = fresh.turn($crate::__whole_store!($($mark)?)).await;
                $crate::checks::$check(&*fresh.store).await;
                fresh.store.close().await;
            }
        )*
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __whole_store {
    () => {
        false
    };
    (whole_store) => {
        true
    };
}

/// One `#[tokio::test]` per contract check, named after it, each on the
/// store `$fresh` hands it: `$fresh` is an `async fn() -> Option<Fresh>`,
/// [`Fresh::new`] for a store of the check's own, [`Fresh::shared`] for one
/// that several checks use at once, `None` when the backend is unavailable
/// and the tests are to be skipped. The caller needs `tokio` (with `macros`
/// and `rt`) among its dev-dependencies.
///
/// ```text
/// mod contract {
///     latchkey_store_tests::contract_tests!(super::fresh_store);
/// }
/// ```
#[macro_export]
macro_rules! contract_tests {
    ($fresh:path) => {
        $crate::contract_checks!(tests $fresh);
    };
}

/// A store for one check, and what must outlive it (a temporary directory,
/// a database dropped when this is).
pub struct Fresh {
    pub store: Arc<dyn Store>,
    /// Shared with the other checks on the same data, when there are any.
    turns: Option<Arc<RwLock<()>>>,
    _keep: Box<dyn Send>,
}

impl Fresh {
    /// A store whose data no other test sees.
    pub fn new(store: impl Store + 'static, keep: impl Send + 'static) -> Self {
        Self { store: Arc::new(store), turns: None, _keep: Box::new(keep) }
    }

    /// A store on data other tests use at the same time. Checks on it take
    /// `turns`: any number at once of those that keep to their own rows, or
    /// one `[whole_store]` check alone.
    pub fn shared(store: impl Store + 'static, keep: impl Send + 'static, turns: Arc<RwLock<()>>) -> Self {
        Self { turns: Some(turns), ..Self::new(store, keep) }
    }

    /// Waits until a check may run on this store; it may while the returned
    /// value lives.
    #[doc(hidden)]
    pub async fn turn(&self, whole_store: bool) -> Box<dyn Send> {
        match (&self.turns, whole_store) {
            (None, _) => Box::new(()),
            (Some(turns), false) => Box::new(turns.clone().read_owned().await),
            (Some(turns), true) => Box::new(turns.clone().write_owned().await),
        }
    }
}
