//! The rules a new password must meet at registration and in settings: long
//! enough, short enough for bcrypt, not a variant of the account's own
//! identifiers and not one of the passwords that attackers try first. The
//! violations carry Kratos's message ids and context keys so that Kratos UIs
//! translate them, while the English wording is Latchkey's own. Everything runs
//! in memory on a bundled list, so a check costs microseconds and never reaches
//! the network or a password hasher.

// The bundled list `data/common-passwords.txt` is Django 5.2.19's
// `django/contrib/auth/common-passwords.txt.gz` (PyPI package `Django`,
// BSD-3-Clause, Copyright (c) Django Software Foundation and individual
// contributors), which Django documents as Royce Williams's 20,000 most common
// passwords, un-hexed, lower-cased and de-duplicated. We decompressed it and kept
// the 19,313 entries of at least 4 characters, in their original order; the
// licence text and the exact steps are in `data/README.md`.

use std::collections::HashSet;
use std::sync::LazyLock;

use serde_json::{Value, json};

/// bcrypt silently ignores everything past its 72nd byte, so a longer password
/// would be accepted but only partly protect the account.
pub const MAX_PASSWORD_BYTES: usize = 72;

const COMMON_PASSWORDS_TEXT: &str = include_str!("../data/common-passwords.txt");

/// Lets a long password skip the set (and its first-use construction) entirely;
/// a test keeps this in step with the data file.
const LONGEST_COMMON_PASSWORD_BYTES: usize = 66;

static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS_TEXT.lines().filter(|line| !line.is_empty()).collect());

/// A shared run shorter than this is too common (`"a"`, `"123"`) to say that a
/// password was derived from an identifier.
const MIN_SHARED_RUN: usize = 4;
/// The longest-common-substring rule only fires on runs at least this long.
const MIN_COMMON_SUBSTRING: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Counted in characters (Unicode scalar values), as a person counts them.
    pub min_length: usize,
    pub identifier_similarity_check: bool,
    /// Checks the bundled list only; there is no online breach lookup.
    pub breached_check: bool,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        Self { min_length: 8, identifier_similarity_check: true, breached_check: true }
    }
}

/// Why a password was refused. It holds lengths only, never the password, so it
/// is safe to log, to debug-print and to send back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.text())]
pub enum PolicyViolation {
    /// Lengths in characters.
    TooShort {
        min_length: usize,
        actual_length: usize,
    },
    /// Lengths in bytes, the unit bcrypt truncates in.
    TooLong {
        max_length: usize,
        actual_length: usize,
    },
    TooSimilarToIdentifier,
    Breached,
}

impl PolicyViolation {
    /// Kratos's message id, which UIs key their translations on.
    pub fn message_id(&self) -> u32 {
        match self {
            Self::TooSimilarToIdentifier => 4000031,
            Self::TooShort { .. } => 4000032,
            Self::TooLong { .. } => 4000033,
            Self::Breached => 4000034,
        }
    }

    /// The message context under Kratos's keys. Kratos sends none for the
    /// similarity message; an empty object keeps the field an object for
    /// clients that expect one.
    pub fn context(&self) -> Value {
        match *self {
            Self::TooShort { min_length, actual_length } => {
                json!({"min_length": min_length, "actual_length": actual_length})
            }
            Self::TooLong { max_length, actual_length } => {
                json!({"max_length": max_length, "actual_length": actual_length})
            }
            Self::TooSimilarToIdentifier => json!({}),
            // The bundled list has no counts; 1 stands for "is on the list".
            Self::Breached => json!({"breaches": 1}),
        }
    }

    pub fn text(&self) -> String {
        match *self {
            Self::TooShort { min_length, actual_length } => format!(
                "Choose a longer password: it needs at least {min_length} characters and this one has {actual_length}."
            ),
            Self::TooLong { max_length, actual_length } => format!(
                "Choose a shorter password: it may take up at most {max_length} bytes and this one takes {actual_length} \
                 (letters outside basic Latin take more than one byte each)."
            ),
            Self::TooSimilarToIdentifier => {
                "Choose a password that does not resemble your email address or username.".to_string()
            }
            Self::Breached => {
                "Choose a different password: this one is among the most common passwords seen in data breaches."
                    .to_string()
            }
        }
    }
}

impl PasswordPolicy {
    /// Checks `password` against the policy and reports the first rule it
    /// breaks, cheapest rules first. `identifiers` are the account's login
    /// identifiers (emails, usernames); empty ones are ignored.
    pub fn check(&self, password: &str, identifiers: &[String]) -> Result<(), PolicyViolation> {
        let chars = password.chars().count();
        if chars < self.min_length {
            return Err(PolicyViolation::TooShort { min_length: self.min_length, actual_length: chars });
        }
        if password.len() > MAX_PASSWORD_BYTES {
            return Err(PolicyViolation::TooLong {
                max_length: MAX_PASSWORD_BYTES,
                actual_length: password.len(),
            });
        }
        if !self.identifier_similarity_check && !self.breached_check {
            return Ok(());
        }
        let lowered = password.to_lowercase();
        if self.identifier_similarity_check
            && identifiers.iter().any(|identifier| resembles_identifier(&lowered, identifier))
        {
            return Err(PolicyViolation::TooSimilarToIdentifier);
        }
        if self.breached_check && is_common_password(&lowered) {
            return Err(PolicyViolation::Breached);
        }
        Ok(())
    }
}

fn is_common_password(lowered: &str) -> bool {
    lowered.len() <= LONGEST_COMMON_PASSWORD_BYTES && COMMON_PASSWORDS.contains(lowered)
}

/// Kratos compares a password with each identifier by Levenshtein distance and
/// by the longest common substring relative to the password. We keep that idea
/// with our own thresholds, working on characters of the lower-cased strings.
/// The candidates are the identifier and, for an email, its local part (the text
/// before the last `@`), since people build passwords from their name rather
/// than their domain. The password resembles the identifier when, for some
/// candidate `c`:
///
/// 1. it equals `c`;
/// 2. one of the two contains the other and the shorter has at least
///    [`MIN_SHARED_RUN`] characters (so a two-letter username does not ban
///    every password with those letters in it);
/// 3. their edit distance is at most 30% of the longer one's length, i.e. the
///    password is `c` with a few characters changed, added or removed;
/// 4. they share a run of at least [`MIN_COMMON_SUBSTRING`] characters that
///    makes up at least half of the password.
///
/// The local part is a substring of the identifier, so rule 4 on the whole
/// identifier already covers it there. Cost is O(password × identifier) with the
/// password capped at 72 bytes, a few thousand steps for a usual email.
fn resembles_identifier(lowered_password: &str, identifier: &str) -> bool {
    let identifier = identifier.to_lowercase();
    if identifier.is_empty() {
        return false;
    }
    let password: Vec<char> = lowered_password.chars().collect();
    let whole: Vec<char> = identifier.chars().collect();
    if resembles(&password, &whole) {
        return true;
    }
    let shared = longest_common_substring(&password, &whole);
    if shared >= MIN_COMMON_SUBSTRING && shared * 2 >= password.len() {
        return true;
    }
    match identifier.rsplit_once('@') {
        Some((local, _)) if !local.is_empty() => {
            let local: Vec<char> = local.chars().collect();
            resembles(&password, &local)
        }
        _ => false,
    }
}

/// Rules 1 to 3 of [`resembles_identifier`].
fn resembles(password: &[char], candidate: &[char]) -> bool {
    if password == candidate {
        return true;
    }
    let (shorter, longer) =
        if password.len() <= candidate.len() { (password, candidate) } else { (candidate, password) };
    if shorter.len() >= MIN_SHARED_RUN && longer.windows(shorter.len()).any(|window| window == shorter) {
        return true;
    }
    // The distance is at least the length difference, so a far longer or
    // shorter candidate cannot pass and need not be computed.
    let limit = longer.len() * 3 / 10;
    longer.len() - shorter.len() <= limit && edit_distance(password, candidate) <= limit
}

fn edit_distance(a: &[char], b: &[char]) -> usize {
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn longest_common_substring(a: &[char], b: &[char]) -> usize {
    // run[j + 1] is the length of the common run ending at the current a[i] and b[j].
    let mut run = vec![0usize; b.len() + 1];
    let mut best = 0;
    for ca in a {
        for j in (0..b.len()).rev() {
            run[j + 1] = if *ca == b[j] { run[j] + 1 } else { 0 };
            best = best.max(run[j + 1]);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(identifiers: &[&str]) -> Vec<String> {
        identifiers.iter().map(|identifier| identifier.to_string()).collect()
    }

    fn check(password: &str, identifiers: &[&str]) -> Result<(), PolicyViolation> {
        PasswordPolicy::default().check(password, &ids(identifiers))
    }

    const STRONG: &str = "vT7#qLm2@xZ9!rWp";

    #[test]
    fn defaults_match_kratos() {
        let policy = PasswordPolicy::default();
        assert_eq!(policy.min_length, 8);
        assert!(policy.identifier_similarity_check);
        assert!(policy.breached_check);
    }

    #[test]
    fn strong_random_looking_password_is_accepted() {
        assert_eq!(check(STRONG, &["foo@example.com", "foo"]), Ok(()));
        assert_eq!(check("Kq3-vl8z", &[]), Ok(()), "exactly the minimum length");
    }

    #[test]
    fn too_short_counts_characters() {
        assert_eq!(check("Kq3-vl8", &[]), Err(PolicyViolation::TooShort { min_length: 8, actual_length: 7 }));
        assert_eq!(check("", &[]), Err(PolicyViolation::TooShort { min_length: 8, actual_length: 0 }));
        let policy = PasswordPolicy { min_length: 12, ..PasswordPolicy::default() };
        assert_eq!(
            policy.check(STRONG.get(..11).unwrap(), &[]),
            Err(PolicyViolation::TooShort { min_length: 12, actual_length: 11 })
        );
        let lenient = PasswordPolicy { min_length: 0, ..PasswordPolicy::default() };
        assert_eq!(lenient.check("", &[]), Ok(()));
    }

    #[test]
    fn too_long_counts_bytes() {
        let at_limit = "x7Q".repeat(24);
        assert_eq!(at_limit.len(), 72);
        assert_eq!(check(&at_limit, &[]), Ok(()));
        let over = format!("{at_limit}z");
        assert_eq!(check(&over, &[]), Err(PolicyViolation::TooLong { max_length: 72, actual_length: 73 }));
    }

    #[test]
    fn non_ascii_lengths() {
        // Seven characters but fourteen bytes: short, whatever the byte count.
        assert_eq!(check("ééééééé", &[]), Err(PolicyViolation::TooShort { min_length: 8, actual_length: 7 }));
        assert_eq!(check("éàüøßçñå", &[]), Ok(()));
        assert_eq!(check(&"😀".repeat(8), &[]), Ok(()));
        // 24 euro signs are 72 bytes; 25 are 75 and past bcrypt's limit.
        assert_eq!(check(&"€".repeat(24), &[]), Ok(()));
        assert_eq!(
            check(&"€".repeat(25), &[]),
            Err(PolicyViolation::TooLong { max_length: 72, actual_length: 75 })
        );
    }

    #[test]
    fn similarity_examples_from_the_rule() {
        let email = ["foo@example.com"];
        for password in ["foo@example.com1", "examplefoo", "FOO@EXAMPLE.COM", "foo@example.com"] {
            assert_eq!(check(password, &email), Err(PolicyViolation::TooSimilarToIdentifier), "{password}");
        }
        assert_eq!(check("correct horse battery staple", &email), Ok(()));
    }

    #[test]
    fn similarity_containment() {
        // The password contains a username, or is contained in one.
        assert_eq!(
            check("alice-in-wonderland-1865", &["alice"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
        assert_eq!(
            check("longusername", &["verylongusername2024"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
        // The local part of an email counts on its own, even where the shared
        // run is under half the password.
        assert_eq!(
            check("Zw9-margarethe-Kp-lantern-77", &["margarethe@example.org"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
        // Runs under four characters are too common to mean anything.
        assert_eq!(check("xk-maple-lantern-42", &["xk"]), Ok(()));
        assert_eq!(check("maple-lantern-foo-42", &["foo@example.com"]), Ok(()));
    }

    #[test]
    fn similarity_edit_distance() {
        // No shared run covers half the password and neither contains the
        // other, but three substitutions turn one into the other.
        let identifier: Vec<char> = "j.random.hacker".chars().collect();
        let password: Vec<char> = "j-rand0m-hacker".chars().collect();
        assert_eq!(edit_distance(&password, &identifier), 3);
        assert_eq!(longest_common_substring(&password, &identifier), 6);
        assert_eq!(
            check("J-Rand0m-Hacker", &["j.random.hacker"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
        // Only the local part is close: against the whole email the distance is
        // large and the shared run "hacker" is under half the password.
        let whole: Vec<char> = "j.random.hacker@example.com".chars().collect();
        assert!(edit_distance(&password, &whole) > whole.len() * 3 / 10);
        assert_eq!(
            check("J-Rand0m-Hacker", &["j.random.hacker@example.com"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
    }

    #[test]
    fn similarity_common_substring() {
        let a: Vec<char> = "examplefoo".chars().collect();
        let b: Vec<char> = "foo@example.com".chars().collect();
        assert_eq!(longest_common_substring(&a, &b), 7);
        // "example" is 7 of 21 characters: under half, so allowed.
        assert_eq!(check("my example passphrase", &["alice@example.com"]), Ok(()));
        // "gmail.com" is more than half of "gmail.com1".
        assert_eq!(check("gmail.com1", &["ab@gmail.com"]), Err(PolicyViolation::TooSimilarToIdentifier));
    }

    #[test]
    fn edit_distance_is_levenshtein() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(edit_distance(&chars("kitten"), &chars("sitting")), 3);
        assert_eq!(edit_distance(&chars(""), &chars("abc")), 3);
        assert_eq!(edit_distance(&chars("flaw"), &chars("lawn")), 2);
        assert_eq!(edit_distance(&chars("héllo"), &chars("hello")), 1);
    }

    #[test]
    fn similarity_checks_every_identifier_and_skips_empty_ones() {
        assert_eq!(check(STRONG, &["", ""]), Ok(()));
        assert_eq!(
            check("bob.builder.99", &["", "someone@example.com", "bob.builder"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
        // Identifiers are meant to arrive lower-cased; a stray capital must not
        // let a copy through.
        assert_eq!(
            check("foo@example.com1", &["Foo@Example.com"]),
            Err(PolicyViolation::TooSimilarToIdentifier)
        );
    }

    #[test]
    fn similarity_can_be_disabled() {
        let policy = PasswordPolicy { identifier_similarity_check: false, ..PasswordPolicy::default() };
        assert_eq!(policy.check("foo@example.com1", &ids(&["foo@example.com"])), Ok(()));
    }

    #[test]
    fn breached_passwords_are_rejected() {
        for password in ["password", "123456789", "qwerty123", "iloveyou", "1q2w3e4r5t", "trustno1"] {
            assert!(COMMON_PASSWORDS.contains(password), "{password} should be in the data file");
            assert_eq!(check(password, &[]), Err(PolicyViolation::Breached), "{password}");
        }
        // The list is lower-case; the lookup is case-insensitive.
        assert_eq!(check("PassWord", &[]), Err(PolicyViolation::Breached));
        assert_eq!(check("QWERTY123", &[]), Err(PolicyViolation::Breached));
        // Short entries matter once an operator lowers the minimum.
        let lenient = PasswordPolicy { min_length: 4, ..PasswordPolicy::default() };
        assert_eq!(lenient.check("dragon", &[]), Err(PolicyViolation::Breached));
        // Non-ASCII entries are on the list too.
        assert_eq!(lenient.check("пароль", &[]), Err(PolicyViolation::Breached));
    }

    #[test]
    fn breached_check_can_be_disabled() {
        let policy = PasswordPolicy { breached_check: false, ..PasswordPolicy::default() };
        assert_eq!(policy.check("password", &[]), Ok(()));
    }

    #[test]
    fn rules_apply_in_order() {
        // Short wins over similar and breached.
        assert_eq!(
            check("foo", &["foo"]),
            Err(PolicyViolation::TooShort { min_length: 8, actual_length: 3 })
        );
        // Short (in characters) wins over long (in bytes).
        let strict = PasswordPolicy { min_length: 30, ..PasswordPolicy::default() };
        assert_eq!(
            strict.check(&"€".repeat(25), &[]),
            Err(PolicyViolation::TooShort { min_length: 30, actual_length: 25 })
        );
        // Long wins over similar.
        let long = "a".repeat(80);
        assert_eq!(
            check(&long, std::slice::from_ref(&long.as_str())),
            Err(PolicyViolation::TooLong { max_length: 72, actual_length: 80 })
        );
        // Similar wins over breached.
        assert_eq!(check("password", &["password"]), Err(PolicyViolation::TooSimilarToIdentifier));
        assert_eq!(check("password", &["someone@example.com"]), Err(PolicyViolation::Breached));
    }

    #[test]
    fn message_ids_and_context() {
        let short = PolicyViolation::TooShort { min_length: 8, actual_length: 5 };
        assert_eq!(short.message_id(), 4000032);
        assert_eq!(short.context(), json!({"min_length": 8, "actual_length": 5}));
        let long = PolicyViolation::TooLong { max_length: 72, actual_length: 80 };
        assert_eq!(long.message_id(), 4000033);
        assert_eq!(long.context(), json!({"max_length": 72, "actual_length": 80}));
        assert_eq!(PolicyViolation::TooSimilarToIdentifier.message_id(), 4000031);
        assert_eq!(PolicyViolation::TooSimilarToIdentifier.context(), json!({}));
        assert_eq!(PolicyViolation::Breached.message_id(), 4000034);
        assert_eq!(PolicyViolation::Breached.context(), json!({"breaches": 1}));
        assert!(short.text().contains('8') && short.text().contains('5'));
        assert!(long.text().contains("72") && long.text().contains("80"));
        assert_eq!(long.to_string(), long.text());
    }

    #[test]
    fn violations_never_reveal_the_password() {
        let cases = [
            ("zq8#", vec![]),
            ("€€€€€€€€€€€€€€€€€€€€€€€€€", vec![]),
            ("foo@example.com1", vec!["foo@example.com"]),
            ("qwerty123", vec![]),
        ];
        for (password, identifiers) in cases {
            let violation = check(password, &identifiers).unwrap_err();
            for shown in [format!("{violation:?}"), format!("{violation}"), violation.context().to_string()] {
                assert!(!shown.contains(password), "{shown}");
                assert!(!shown.to_lowercase().contains(&password.to_lowercase()), "{shown}");
            }
        }
    }

    #[test]
    fn data_file_is_well_formed() {
        let entries: Vec<&str> = COMMON_PASSWORDS_TEXT.lines().collect();
        assert!((10_000..=100_000).contains(&entries.len()), "{} entries", entries.len());
        assert_eq!(COMMON_PASSWORDS.len(), entries.len(), "no duplicates or blank lines");
        for entry in &entries {
            assert!(entry.chars().count() >= 4, "{entry:?} is shorter than 4 characters");
            assert_eq!(entry.to_lowercase(), *entry, "{entry:?} is not lower-case");
            assert_eq!(entry.trim(), *entry, "{entry:?} has surrounding space");
        }
        let longest = entries.iter().map(|entry| entry.len()).max().unwrap();
        assert_eq!(longest, LONGEST_COMMON_PASSWORD_BYTES);
    }

    #[test]
    fn checks_take_microseconds() {
        let policy = PasswordPolicy::default();
        let identifiers = ids(&["someone.with.a.long.name@example.com", "someone"]);
        let _ = policy.check(STRONG, &identifiers);
        let start = std::time::Instant::now();
        for _ in 0..1_000 {
            assert_eq!(policy.check(STRONG, &identifiers), Ok(()));
        }
        // Generous for an unoptimised build on a busy machine; a hash or a
        // linear scan of the list would blow well past it.
        assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
    }
}
