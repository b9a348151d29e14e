//! Hiding the passwords a DSN or connection URI can carry, for logs, errors
//! and `Debug`.

/// Hides every password a DSN can carry, for logs and errors: the one in
/// `scheme://user:password@host/…` (which may itself hold `@`, `:` or `/`:
/// the host starts after the last `@`) and the value of any `password=`
/// parameter, in a query string or a `key=value` DSN. When in doubt it hides
/// too much rather than too little.
pub fn redact_dsn(dsn: &str) -> String {
    let redacted = match dsn.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
                None => dsn.to_string(),
            },
            None => dsn.to_string(),
        },
        None => dsn.to_string(),
    };
    redact_password_params(&redacted)
}

/// Keys whose values are secrets wherever they appear as `key=value`.
const SECRET_KEYS: [&str; 4] = ["password", "sslpassword", "pass", "pwd"];

/// Replaces the value of every `password=` (and the like) parameter. A value
/// runs until the next separator (`&`, `;` or whitespace) that starts
/// another `key=` (after its closing quote, if quoted), so a password
/// holding a bare `&` is hidden whole.
fn redact_password_params(dsn: &str) -> String {
    let bytes = dsn.as_bytes();
    let is_separator = |b: u8| matches!(b, b'?' | b'&' | b';') || b.is_ascii_whitespace();
    let starts_param = |at: usize| {
        let name = dsn[at..].bytes().take_while(|b| b.is_ascii_alphanumeric() || *b == b'_').count();
        name > 0 && bytes.get(at + name) == Some(&b'=')
    };
    let mut out = String::with_capacity(dsn.len());
    let mut i = 0;
    while i < dsn.len() {
        let at_key = i == 0 || is_separator(bytes[i - 1]);
        let key = at_key
            .then(|| {
                // Compared as bytes: a key is ASCII, but what follows `i` may not be.
                SECRET_KEYS.iter().find(|k| {
                    bytes.get(i..i + k.len() + 1).is_some_and(|s| {
                        s[..k.len()].eq_ignore_ascii_case(k.as_bytes()) && s[k.len()] == b'='
                    })
                })
            })
            .flatten();
        let Some(key) = key else {
            let c = dsn[i..].chars().next().expect("i is on a char boundary");
            out.push(c);
            i += c.len_utf8();
            continue;
        };
        let value_start = i + key.len() + 1;
        // A quoted value (`password='a b'`) runs to its closing quote.
        let unquoted_from = match bytes.get(value_start) {
            Some(&quote @ (b'\'' | b'"')) => (value_start + 1..dsn.len())
                .find(|&j| bytes[j] == quote && bytes[j - 1] != b'\\')
                .map_or(dsn.len(), |j| j + 1),
            _ => value_start,
        };
        let value_end = (unquoted_from..dsn.len())
            .find(|&j| is_separator(bytes[j]) && bytes[j] != b'?' && starts_param(j + 1))
            .unwrap_or(dsn.len());
        out.push_str(&dsn[i..value_start]);
        out.push_str("***");
        i = value_end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::Secrets;
    use super::*;

    #[test]
    fn errors_and_debug_never_show_secrets() {
        assert_eq!(redact_dsn("postgres://u:hunter2@db:5432/x"), "postgres://u:***@db:5432/x");
        assert_eq!(redact_dsn("memory"), "memory");
        assert_eq!(redact_dsn("sqlite:///var/lib/x.db?_fk=true"), "sqlite:///var/lib/x.db?_fk=true");
        assert_eq!(redact_dsn("postgres://u@db/x"), "postgres://u@db/x");
        let s = Secrets { cookie: vec!["hunter2hunter2hunter2".into()], ..Default::default() };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn dsn_passwords_are_hidden_whole() {
        // Passwords holding the characters that delimit a URL.
        for (dsn, expected) in [
            ("postgres://u:p@ss@db:5432/x", "postgres://u:***@db:5432/x"),
            ("postgres://u:a:b/c@d@db/x?sslmode=disable", "postgres://u:***@db/x?sslmode=disable"),
            ("postgres://u:s3cr%40t@db/x", "postgres://u:***@db/x"),
            ("smtps://mailer:hunter2@smtp.example.com:465/", "smtps://mailer:***@smtp.example.com:465/"),
        ] {
            assert_eq!(redact_dsn(dsn), expected);
        }
        // `password=` parameters, wherever they are and whatever they hold.
        for (dsn, expected) in [
            ("postgres://u@db/x?password=hunter2", "postgres://u@db/x?password=***"),
            (
                "postgres://db/x?sslmode=disable&Password=a&b@c/d&max_conns=5",
                "postgres://db/x?sslmode=disable&Password=***&max_conns=5",
            ),
            ("postgres://u:one@db/x?password=two", "postgres://u:***@db/x?password=***"),
            ("host=db user=u password='a b=c' dbname=x", "host=db user=u password=*** dbname=x"),
            (r#"password="x\" y=z" host=db"#, "password=*** host=db"),
            ("postgres://db/x?sslpassword=k&pwd=p", "postgres://db/x?sslpassword=***&pwd=***"),
        ] {
            assert_eq!(redact_dsn(dsn), expected);
        }
        // Keys that merely end in `password` are not secrets by that name.
        assert_eq!(redact_dsn("postgres://db/x?nopassword=1"), "postgres://db/x?nopassword=1");
        // Non-ASCII text where a key could start (found by the config fuzz target).
        assert_eq!(redact_dsn("po?????????\u{b2bd}?x"), "po?????????\u{b2bd}?x");
        assert_eq!(redact_dsn("db?x=\u{b2bd}&password=\u{b2bd}&y=1"), "db?x=\u{b2bd}&password=***&y=1");
        for secret in ["p@ss", "hunter2", "a:b/c@d", "s3cr", "a&b=c"] {
            for dsn in [format!("postgres://u:{secret}@db/x"), format!("postgres://db/x?password={secret}")] {
                assert!(!redact_dsn(&dsn).contains(secret), "{dsn}");
            }
        }
    }
}
