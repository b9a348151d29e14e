//! Passwordless login by emailed code: create a native login flow, ask for a
//! code for the user's own address, read it from the admin courier API
//! (which shows subjects only when the server runs with `--dev`) and submit
//! it for a session. One login is one request in the statistics.

use crate::api::{Api, CallError};
use crate::mailbox::{self, LastCode};
use crate::users::User;

/// One complete login for `user`, from `client` (sent as `X-Forwarded-For`);
/// returns the new session token. Nothing about the user changes but the
/// address, which the code marks verified, so logins repeat.
pub async fn login(
    api: &Api,
    user: &User,
    last: &LastCode,
    client: Option<&str>,
) -> Result<String, CallError> {
    mailbox::prime(api, &user.email, last).await?;
    let flow = api.login_code_send(&user.email, client).await?;
    let code = mailbox::wait_for_code(api, &user.email, last).await?;
    api.login_code(&flow, &user.email, &code, client).await
}
