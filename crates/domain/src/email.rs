//! Whether a submitted value is shaped like an email address, as Kratos's
//! recovery form checks it: structural only (no DNS), lenient about dots in
//! the local part, strict about anything that could break out of an SMTP
//! envelope or a mail header (whitespace, control characters, specials).

/// RFC 3696's bound: a 64-octet local part, `@`, a 255-octet domain.
pub const MAX_EMAIL_BYTES: usize = 320;

/// Punctuation RFC 5322 allows unquoted in a local part.
const LOCAL_PUNCTUATION: &str = "!#$%&'*+/=?^_`{|}~.-";

/// The form message for a submitted address that cannot be used, if any:
/// too long (no echo), or not shaped like an address (echoed without
/// control characters).
pub fn problem(submitted: &str) -> Option<crate::text::Message> {
    let value = submitted.trim();
    let length = value.chars().count();
    if length > MAX_EMAIL_BYTES {
        return Some(crate::text::max_length(MAX_EMAIL_BYTES, length));
    }
    (!is_email_address(value)).then(|| crate::text::invalid_email(&printable(value)))
}

/// What a form may show of a submitted address: nothing when it is too
/// long, else the value without control characters (no header breaks).
pub fn printable(submitted: &str) -> String {
    if submitted.chars().count() > MAX_EMAIL_BYTES {
        return String::new();
    }
    submitted.chars().filter(|c| !c.is_control()).collect()
}

pub fn is_email_address(value: &str) -> bool {
    if value.is_empty() || value.len() > MAX_EMAIL_BYTES {
        return false;
    }
    let Some((local, domain)) = value.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local.chars().all(|c| c.is_alphanumeric() || LOCAL_PUNCTUATION.contains(c));
    local_ok && is_host_name(domain)
}

/// Dot-separated labels of letters (any script, for IDNs), digits and
/// inner hyphens; a trailing dot is not accepted.
fn is_host_name(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_for_shape_and_header_safety() {
        for good in ["a@b.co", "foo.@docomo.ne.jp", "x+tag@example.com", "jürgen@bücher.de", "a@localhost"]
        {
            assert!(is_email_address(good), "{good}");
        }
        for bad in [
            "",
            "plain",
            "@b.co",
            "a@",
            "a@@b.co",
            "a b@c.de",
            "a@b.co\r\nBcc: x@y.z",
            "a@b.co\n",
            "<a@b.co>",
            "a,b@c.de",
            "a@-b.co",
            "a@b..co",
            "\"a\"@b.co",
        ] {
            assert!(!is_email_address(bad), "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(400));
        assert!(!is_email_address(&long));
        assert_eq!(problem(&long).unwrap().id, 4000017);
        let broken = problem("a@b.co\r\nBcc: x@y.z").unwrap();
        assert_eq!(broken.id, 4000040);
        assert_eq!(broken.context.unwrap()["value"], "a@b.coBcc: x@y.z");
        assert!(problem(" A@B.co ").is_none());
    }
}
