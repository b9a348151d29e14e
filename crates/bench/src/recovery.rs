//! The native account-recovery journey: ask for a code by email, read it
//! from the admin courier API (which shows subjects only when the server runs
//! with `--dev`), submit it, and set a new password in the settings flow the
//! recovery hands over. One journey is one request in the statistics.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{Api, CallError, CourierMessage};
use crate::users::{User, random_password};

/// What the admin API shows instead of subjects and bodies outside `--dev`.
const REDACTED: &str = "<redacted-unless-dev-mode>";
/// The message is written in the same transaction as the code, so it is
/// there at once; the wait only covers a server that queues it later.
const CODE_WAIT: Duration = Duration::from_secs(2);
const CODE_POLL: Duration = Duration::from_millis(10);
const CALL: &str = "GET /admin/courier/messages";

/// The per-client memory of a journey: the courier message whose code the
/// client used last, so a slow outbox cannot hand it the previous code.
#[derive(Debug, Default)]
pub struct LastCode(Mutex<Option<String>>);

/// One complete journey for `user`; on success the user's stored password is
/// the new one.
pub async fn journey(
    api: &Arc<Api>,
    user: &User,
    last: &LastCode,
    password_length: usize,
) -> Result<(), CallError> {
    let flow = api.recovery_send(&user.email).await?;
    let (message, code) = wait_for_code(api, &user.email, last).await?;
    *last.0.lock().expect("last code lock") = Some(message);
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

/// Polls the outbox for the newest code for `email` that is not the last one used.
async fn wait_for_code(api: &Api, email: &str, last: &LastCode) -> Result<(String, String), CallError> {
    let give_up = Instant::now() + CODE_WAIT;
    loop {
        let messages = api.courier_messages(email).await?;
        if messages.iter().any(|m| m.subject == REDACTED) {
            return Err(CallError::Body {
                call: CALL,
                problem: format!(
                    "subjects read {REDACTED}, so the recovery code cannot be read; \
                     start the server with --dev to run journey-recovery"
                ),
            });
        }
        let previous = last.0.lock().expect("last code lock").clone();
        if let Some((message, code)) = newest_code(&messages).filter(|(id, _)| Some(id) != previous.as_ref())
        {
            return Ok((message, code));
        }
        if Instant::now() >= give_up {
            return Err(CallError::Body {
                call: CALL,
                problem: format!(
                    "no new message with a 6-digit code in its subject for {email} after {}s \
                     ({} messages to that address)",
                    CODE_WAIT.as_secs(),
                    messages.len()
                ),
            });
        }
        tokio::time::sleep(CODE_POLL).await;
    }
}

/// The id and code of the newest message whose subject holds a 6-digit number.
fn newest_code(messages: &[CourierMessage]) -> Option<(String, String)> {
    messages
        .iter()
        .filter_map(|m| Some((m, six_digits(&m.subject)?)))
        .max_by(|(a, _), (b, _)| timestamp_key(&a.created_at).cmp(&timestamp_key(&b.created_at)))
        .map(|(m, code)| (m.id.clone(), code.to_owned()))
}

/// The first run of exactly six ASCII digits.
fn six_digits(text: &str) -> Option<&str> {
    text.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 6)
}

/// RFC 3339 timestamps compare as text except for the fraction, which may
/// have any number of digits (`…:05Z` is later than `…:04.9Z` but sorts
/// before it): compare the seconds, then the fraction padded to nine digits.
/// All are UTC (`Z`) as the server writes them.
fn timestamp_key(at: &str) -> (&str, String) {
    let at = at.trim_end_matches('Z');
    let (seconds, fraction) = at.split_once('.').unwrap_or((at, ""));
    (seconds, format!("{fraction:0<9}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, subject: &str, created_at: &str) -> CourierMessage {
        CourierMessage { id: id.into(), subject: subject.into(), created_at: created_at.into() }
    }

    #[test]
    fn codes_are_six_digit_runs() {
        assert_eq!(six_digits("123456 is your account recovery code"), Some("123456"));
        assert_eq!(six_digits("Code: 012345."), Some("012345"));
        assert_eq!(six_digits("1234567 and 12345"), None);
        assert_eq!(six_digits(REDACTED), None);
    }

    #[test]
    fn the_newest_message_with_a_code_wins() {
        let messages = [
            message("a", "111111 is your account recovery code", "2025-01-01T10:00:04.9Z"),
            message("b", "222222 is your account recovery code", "2025-01-01T10:00:05Z"),
            message("c", "Please verify your address", "2025-01-01T10:00:06Z"),
            message("d", "333333 is your account recovery code", "2025-01-01T10:00:04.95Z"),
        ];
        assert_eq!(newest_code(&messages), Some(("b".into(), "222222".into())));
        assert_eq!(newest_code(&messages[2..3]), None);
        assert_eq!(newest_code(&[]), None);
    }

    #[test]
    fn fractions_of_any_length_compare_by_value() {
        assert!(timestamp_key("2025-01-01T10:00:04.5Z") > timestamp_key("2025-01-01T10:00:04.123456789Z"));
        assert!(timestamp_key("2025-01-01T10:00:05Z") > timestamp_key("2025-01-01T10:00:04.999Z"));
        assert_eq!(timestamp_key("2025-01-01T10:00:05.1Z"), timestamp_key("2025-01-01T10:00:05.100Z"));
    }
}
