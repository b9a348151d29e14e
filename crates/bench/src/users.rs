//! Benchmark identities: fresh emails and random passwords per run, and the
//! pool of registered users with live sessions that whoami and login share.
//! Randomness comes from UUIDv4, which draws on the operating system's CSPRNG,
//! so the crate needs no `rand`.

use std::sync::Arc;

use uuid::Uuid;

use crate::api::{Api, CallError, Credentials};

/// Registrations hash a password each; the server bounds its hashing pool,
/// and a handful in flight is enough to keep it busy without queueing
/// requests until the setup timeout.
const SETUP_CONCURRENCY: usize = 4;

const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A registered identity and one of its session tokens. The password can
/// change (the recovery journey sets a new one), so it sits behind a lock
/// that a password change holds until the server has answered.
#[derive(Debug)]
pub struct User {
    pub email: String,
    pub password: Arc<tokio::sync::Mutex<String>>,
    pub session_token: String,
}

impl User {
    fn new(credentials: Credentials, session_token: String) -> Self {
        let Credentials { email, password } = credentials;
        User { email, password: Arc::new(tokio::sync::Mutex::new(password)), session_token }
    }

    /// The current email and password; waits for a password change in flight.
    pub async fn credentials(&self) -> Credentials {
        Credentials { email: self.email.clone(), password: self.password.lock().await.clone() }
    }
}

impl Credentials {
    /// A never-used email and a password that no policy will call weak:
    /// random, long, and unrelated to the email.
    pub fn fresh(password_length: usize) -> Self {
        Credentials {
            email: format!("bench-{}@example.com", Uuid::new_v4().simple()),
            password: random_password(password_length),
        }
    }
}

/// Uniform over [A-Za-z0-9], about 5.95 bits a character.
pub fn random_password(length: usize) -> String {
    let mut password = String::with_capacity(length);
    while password.len() < length {
        let uuid = Uuid::new_v4();
        for (index, &byte) in uuid.as_bytes().iter().enumerate() {
            // Bytes 6 and 8 carry the UUID's version and variant bits, which are not random.
            // 248 = 4 × 62: rejecting larger bytes keeps the modulo unbiased.
            if index == 6 || index == 8 || byte >= 248 {
                continue;
            }
            password.push(ALPHABET[usize::from(byte) % ALPHABET.len()] as char);
            if password.len() == length {
                break;
            }
        }
    }
    password
}

/// Registers `count` users and makes sure each has a session token: from the
/// registration itself when the server runs the `session` hook after
/// registration, from a login otherwise.
pub async fn register_pool(
    api: &Arc<Api>,
    count: usize,
    password_length: usize,
) -> Result<Vec<User>, CallError> {
    let mut tasks = tokio::task::JoinSet::new();
    for lane in 0..SETUP_CONCURRENCY.min(count) {
        let api = Arc::clone(api);
        tasks.spawn(async move {
            let mut users = Vec::new();
            for _ in (lane..count).step_by(SETUP_CONCURRENCY) {
                users.push(register_one(&api, password_length).await?);
            }
            Ok::<_, CallError>(users)
        });
    }
    let mut pool = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        // A panic in a setup task is a bug in this program; surface it as one.
        let users = joined.expect("setup task panicked")?;
        pool.extend(users);
    }
    Ok(pool)
}

async fn register_one(api: &Api, password_length: usize) -> Result<User, CallError> {
    let credentials = Credentials::fresh(password_length);
    let session_token = match api.register(&credentials).await? {
        Some(token) => token,
        None => api.login(&credentials).await?,
    };
    Ok(User::new(credentials, session_token))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn passwords_have_the_asked_length_and_alphabet() {
        for length in [8, 20, 72] {
            let password = random_password(length);
            assert_eq!(password.len(), length);
            assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()), "{password}");
        }
    }

    #[test]
    fn passwords_and_emails_do_not_repeat() {
        let passwords: HashSet<_> = (0..1000).map(|_| random_password(20)).collect();
        assert_eq!(passwords.len(), 1000);
        let emails: HashSet<_> = (0..1000).map(|_| Credentials::fresh(20).email).collect();
        assert_eq!(emails.len(), 1000);
    }

    #[test]
    fn passwords_use_the_whole_alphabet() {
        // 20,000 characters over 62 symbols: each appears ~320 times, so a
        // missing one means the mapping is broken, not bad luck.
        let seen: HashSet<u8> = (0..1000).flat_map(|_| random_password(20).into_bytes()).collect();
        assert_eq!(seen.len(), ALPHABET.len());
    }

    #[test]
    fn emails_look_like_benchmark_addresses() {
        let email = Credentials::fresh(20).email;
        assert!(email.starts_with("bench-") && email.ends_with("@example.com"), "{email}");
        assert_eq!(email.len(), "bench-@example.com".len() + 32);
    }
}
