//! The native email-verification journey: ask for a code for the user's own
//! address, read it from the admin courier API (which shows subjects only
//! when the server runs with `--dev`) and submit it, which marks the address
//! verified. One journey is one request in the statistics.

use crate::api::{Api, CallError};
use crate::mailbox::{self, LastCode};
use crate::users::User;

/// One complete journey for `user`. Nothing else about the user changes,
/// and an address already verified is verified again, so journeys repeat.
pub async fn journey(api: &Api, user: &User, last: &LastCode) -> Result<(), CallError> {
    mailbox::prime(api, &user.email, last).await?;
    let flow = api.verification_send(&user.email).await?;
    let code = mailbox::wait_for_code(api, &user.email, last).await?;
    api.verification_code(&flow, &code).await
}
