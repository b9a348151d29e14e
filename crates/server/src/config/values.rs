//! Values parsed once, when the configuration is loaded: durations, sizes
//! and trusted networks. Each reads from and writes back to the text form a
//! config file holds, so environment overrides (matched against the
//! serialised defaults) and error messages see the same strings as before.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Reads a value from its text form; a parse error becomes the message
/// the loader reports under the value's key.
fn from_text<'de, D: Deserializer<'de>, T: FromStr<Err: std::fmt::Display>>(
    deserializer: D,
) -> Result<T, D::Error> {
    String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
}

/// A duration as Kratos writes them (`15m`, `1h`, `500ms`, `1h30m`), at
/// most Go's limit (about 292 years): a longer one would overflow the dates
/// computed from it (a session's expiry at every login).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(std::time::Duration);

impl Duration {
    pub const ZERO: Self = Self(std::time::Duration::ZERO);

    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    pub const fn minutes(minutes: u64) -> Self {
        Self::from_secs(minutes * 60)
    }

    pub const fn hours(hours: u64) -> Self {
        Self::from_secs(hours * 3600)
    }

    pub const fn std(self) -> std::time::Duration {
        self.0
    }

    /// As chrono's duration; every value within Go's limit fits.
    pub fn chrono(self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }

    pub const fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        humantime::parse_duration(s.trim())
            .ok()
            .filter(|d| *d <= std::time::Duration::from_nanos(i64::MAX as u64))
            .map(Self)
            .ok_or_else(|| format!("expected a duration such as 1h, 15m or 500ms, got `{s}`"))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer)
    }
}

/// A size as Kratos writes them: `128MB`, `1GB`, `512KB` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(u64);

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

const UNITS: [(&str, u64); 4] = [("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let digits = text.chars().take_while(char::is_ascii_digit).count();
        let unit = text[digits..].trim().to_ascii_uppercase();
        let multiplier = match unit.as_str() {
            "B" | "" => Some(1),
            unit => UNITS.iter().find(|(name, _)| *name == unit).map(|(_, m)| *m),
        };
        text[..digits]
            .parse::<u64>()
            .ok()
            .zip(multiplier)
            .and_then(|(n, m)| n.checked_mul(m))
            .map(Self)
            .ok_or_else(|| format!("expected a size such as 128MB or 1GB, got `{s}`"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match UNITS.iter().find(|(_, m)| self.0 != 0 && self.0.is_multiple_of(*m)) {
            Some((name, m)) => write!(f, "{}{name}", self.0 / m),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer)
    }
}

/// A trusted proxy's address or network (`10.0.0.0/8`), kept with the text
/// it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedNetwork {
    text: String,
    network: latchkey_http::Network,
}

impl TrustedNetwork {
    pub fn network(&self) -> latchkey_http::Network {
        self.network
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for TrustedNetwork {
    type Err = latchkey_http::NetworkError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self { text: s.to_string(), network: latchkey_http::Network::parse(s)? })
    }
}

impl Serialize for TrustedNetwork {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for TrustedNetwork {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        from_text(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        let size = |s: &str| s.parse::<ByteSize>().map(ByteSize::bytes);
        assert_eq!(size("128MB"), Ok(128 << 20));
        assert_eq!(size("1GB"), Ok(1 << 30));
        assert_eq!(size(" 512 kb "), Ok(512 << 10));
        assert_eq!(size("42"), Ok(42));
        assert!(size("lots").is_err() && size("MB").is_err() && size("99999999999TB").is_err());
        for text in ["128MB", "1GB", "1TB", "1536KB", "42B", "0B"] {
            assert_eq!(text.parse::<ByteSize>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn durations_parse_within_gos_limit_and_print_back() {
        let duration = |s: &str| s.parse::<Duration>().map(Duration::std);
        assert_eq!(duration("15m"), Ok(std::time::Duration::from_secs(900)));
        assert_eq!(duration(" 1h30m "), Ok(std::time::Duration::from_secs(5400)));
        assert_eq!(duration("100ms"), Ok(std::time::Duration::from_millis(100)));
        assert_eq!(duration("0s"), Ok(std::time::Duration::ZERO));
        assert_eq!(duration("2562047h"), Ok(std::time::Duration::from_secs(2_562_047 * 3600)));
        assert!(duration("99999999999h").is_err() && duration("5").is_err() && duration("soon").is_err());
        for text in ["1h", "30m", "720h", "1s", "0s", "100ms", "1h30m"] {
            let parsed: Duration = text.parse().unwrap();
            assert_eq!(parsed.to_string().parse::<Duration>(), Ok(parsed), "{text}");
        }
        assert_eq!("2562047h".parse::<Duration>().unwrap().chrono(), chrono::Duration::hours(2_562_047));
    }
}
