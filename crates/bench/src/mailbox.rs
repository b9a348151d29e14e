//! Reads the emailed codes the journey and login-code scenarios need from the outbox, through the admin courier API.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{Api, CallError, CourierMessage};

/// What the admin API shows instead of subjects and bodies outside `--dev`.
const REDACTED: &str = "<redacted-unless-dev-mode>";
/// Latchkey queues the message tens of milliseconds after the answer (the
/// code is made off the request path); the wait covers that and a busy server.
const CODE_WAIT: Duration = Duration::from_secs(2);
const CODE_POLL: Duration = Duration::from_millis(10);
/// Longer than Latchkey's pause before it queues a code mail: a code asked
/// for just before [`prime`] (by a request an earlier scenario abandoned at
/// its deadline) lands within it, and is then remembered as used.
const LATE_MAIL: Duration = Duration::from_millis(100);
/// How many of an address's newest messages a poll reads: a journey's code
/// is among the last few, whatever piled up before it.
const NEWEST: usize = 16;
const CALL: &str = "GET /admin/courier/messages";

/// The per-client memory of a journey: the courier message whose code the
/// client used last, so a slow outbox cannot hand it the previous code.
#[derive(Debug, Default)]
pub struct LastCode(Mutex<Option<String>>);

/// Before a client's first journey, remembers the newest code already
/// queued for `email` (a registration hook's, or one still on its way) as used, so that
/// [`wait_for_code`] waits for the journey's own.
pub async fn prime(api: &Api, email: &str, last: &LastCode) -> Result<(), CallError> {
    if last.0.lock().expect("last code lock").is_some() {
        return Ok(());
    }
    tokio::time::sleep(LATE_MAIL).await;
    let messages = api.courier_messages(email, NEWEST).await?;
    if let Some((message, _)) = newest_code(&messages) {
        last.0.lock().expect("last code lock").get_or_insert(message);
    }
    Ok(())
}

/// Polls the outbox for the newest code for `email` that is not the last one
/// used, remembers its message in `last` and returns the code.
pub async fn wait_for_code(api: &Api, email: &str, last: &LastCode) -> Result<String, CallError> {
    let give_up = Instant::now() + CODE_WAIT;
    loop {
        let messages = api.courier_messages(email, NEWEST).await?;
        if messages.iter().any(|m| m.subject == REDACTED) {
            return Err(CallError::Body {
                call: CALL,
                problem: format!(
                    "subjects read {REDACTED}, so the emailed code cannot be read; \
                     start the server with --dev to run the journey and login-code scenarios"
                ),
            });
        }
        {
            // Checked and taken under one lock; it is never held across an await.
            let mut previous = last.0.lock().expect("last code lock");
            if let Some((message, code)) =
                newest_code(&messages).filter(|(id, _)| Some(id) != previous.as_ref())
            {
                *previous = Some(message);
                return Ok(code);
            }
        }
        if Instant::now() >= give_up {
            return Err(CallError::Body {
                call: CALL,
                problem: format!(
                    "no new message with a 6-digit code in its subject for {email} after {}s \
                     ({} recent messages to that address); with send limits on, the address \
                     may have had its hourly codes: start the server with \
                     SECURITY_SEND_LIMITS_ENABLED=false",
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
        assert_eq!(six_digits("654321 is your verification code"), Some("654321"));
        assert_eq!(six_digits("Code: 012345."), Some("012345"));
        assert_eq!(six_digits("1234567 and 12345"), None);
        assert_eq!(six_digits(REDACTED), None);
    }

    #[test]
    fn the_newest_message_with_a_code_wins() {
        let messages = [
            message("a", "111111 is your account recovery code", "2025-01-01T10:00:04.9Z"),
            message("b", "222222 is your verification code", "2025-01-01T10:00:05Z"),
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
