//! The native account-recovery journey: ask for a code by email, read it
//! from the admin courier API (which shows subjects only when the server runs
//! with `--dev`), submit it, and set a new password in the settings flow the
//! recovery hands over. One journey is one request in the statistics.

use std::sync::Arc;

use crate::api::{Api, CallError};
use crate::mailbox::{self, LastCode};
use crate::users::{User, random_password};

/// One complete journey for `user`; on success the user's stored password is
/// the new one.
pub async fn journey(
    api: &Arc<Api>,
    user: &User,
    last: &LastCode,
    password_length: usize,
) -> Result<(), CallError> {
    mailbox::prime(api, &user.email, last).await?;
    let flow = api.recovery_send(&user.email).await?;
    let code = mailbox::wait_for_code(api, &user.email, last).await?;
    let (token, settings) = api.recovery_code(&flow, &code).await?;
    let new_password = random_password(password_length);
    // Spawned, holding the user's password lock: the driver abandons a request
    // in flight at its deadline, but once the server may have changed the
    // password, the stored one must follow, and nobody may read it meanwhile.
    let mut stored = Arc::clone(&user.password).lock_owned().await;
    let api = Arc::clone(api);
    let change = tokio::spawn(async move {
        api.settings_password(&settings, &token, &new_password).await?;
        *stored = new_password;
        Ok(())
    });
    change.await.expect("password change task panicked")
}
