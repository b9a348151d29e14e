//! A password held in memory only as long as needed: it cannot be printed by
//! accident (`Debug` is redacted, there is no `Display`) and its buffer is
//! wiped when dropped.

use std::fmt;

use zeroize::Zeroize as _;

/// A plaintext password on its way to being hashed or verified.
// No `PartialEq`: comparing plaintexts is never what callers should do.
#[derive(Clone)]
pub struct SecretPassword(String);

impl SecretPassword {
    /// Wraps a plaintext password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The plaintext; keep the borrow short and never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The plaintext as the bytes that get hashed (UTF-8, unnormalised, as
    /// Kratos hashes them).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Length in bytes, e.g. for a policy check.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the password is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl From<String> for SecretPassword {
    fn from(password: String) -> Self {
        Self(password)
    }
}

impl From<&str> for SecretPassword {
    fn from(password: &str) -> Self {
        Self(password.to_owned())
    }
}

impl Drop for SecretPassword {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let pw = SecretPassword::new("hunter2");
        assert_eq!(format!("{pw:?}"), "[REDACTED]");
        assert_eq!(format!("{:?}", Some(&pw)), "Some([REDACTED])");
        assert_eq!(pw.expose(), "hunter2");
        assert_eq!(pw.as_bytes(), b"hunter2");
        assert_eq!(pw.len(), 7);
    }
}
