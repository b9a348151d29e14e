//! Redirect targets a client names (`return_to`, `after_verification_return_to`)
//! checked against `selfservice.allowed_return_urls`. Targets are parsed as a
//! browser parses them (the WHATWG URL standard, which the `url` crate follows)
//! and compared part by part, never as strings: a target a browser would read
//! as another host cannot slip through a prefix match. What passes is
//! returned re-serialised, so the browser is sent to exactly what was checked.

use url::{Host, Url};

/// Why a target was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// Not a URL, or one holding characters a browser strips or rewrites.
    Unparsable,
    /// A URL, but not one the allow-list covers.
    NotAllowed,
}

/// Checks `raw` against `allowed` and returns it, absolute and normalised.
/// A relative target resolves against `base`, as Kratos fills a missing host
/// and scheme from the default browser return URL.
pub fn check(raw: &str, base: &Url, allowed: &[String]) -> Result<Url, Refused> {
    // Browsers drop tabs and newlines anywhere and read `\` as `/`; refuse
    // rather than guess which reading a later hop will take.
    if raw.chars().any(|c| c.is_control()) {
        return Err(Refused::Unparsable);
    }
    if raw.contains('\\') || raw.to_ascii_lowercase().contains("%5c") {
        return Err(Refused::NotAllowed);
    }
    // `https:/host` or `https:host` means another host to a browser reading it
    // from one page and a path to one reading it from another.
    if let Some((_, rest)) = split_scheme(raw.trim_start_matches(' '))
        && !rest.starts_with("//")
    {
        return Err(Refused::NotAllowed);
    }
    let target = base.join(raw).map_err(|_| Refused::Unparsable)?;
    if !matches!(target.scheme(), "http" | "https")
        || !target.username().is_empty()
        || target.password().is_some()
    {
        return Err(Refused::NotAllowed);
    }
    let covered = allowed.iter().filter_map(|a| Allowed::parse(a)).any(|a| a.covers(&target));
    if covered { Ok(target) } else { Err(Refused::NotAllowed) }
}

/// Whether an allow-list entry can allow anything: a URL whose host is
/// exact or a wildcard no broader than `*.example.com`.
pub fn usable(entry: &str) -> bool {
    Allowed::parse(entry).is_some()
}

/// `scheme:` and what follows, when `raw` starts with a scheme.
fn split_scheme(raw: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = raw.split_once(':')?;
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

/// One allow-list entry, parsed.
struct Allowed {
    scheme: String,
    host: AllowedHost,
    port: Option<u16>,
    /// Without a trailing slash; empty allows every path.
    path: String,
}

enum AllowedHost {
    Exact(String),
    /// `*.example.com`: any host under `example.com`, not `example.com` itself.
    SubdomainsOf(String),
}

impl Allowed {
    fn parse(entry: &str) -> Option<Allowed> {
        let url = Url::parse(entry).ok()?;
        let host = url.host_str()?;
        let host = match host.strip_prefix("*.") {
            // A bare `*.com`-style wildcard would cover every site; need two labels.
            Some(domain) if domain.contains('.') && !domain.contains('*') => {
                AllowedHost::SubdomainsOf(domain.to_string())
            }
            Some(_) => return None,
            None if host.contains('*') => return None,
            None => AllowedHost::Exact(host.to_string()),
        };
        Some(Allowed {
            scheme: url.scheme().to_string(),
            host,
            port: url.port_or_known_default(),
            path: url.path().trim_end_matches('/').to_string(),
        })
    }

    fn covers(&self, target: &Url) -> bool {
        let host_ok = match (&self.host, target.host()) {
            (AllowedHost::Exact(host), Some(target)) => target.to_string() == *host,
            (AllowedHost::SubdomainsOf(domain), Some(Host::Domain(target))) => target
                .strip_suffix(domain.as_str())
                .and_then(|sub| sub.strip_suffix('.'))
                .is_some_and(|sub| !sub.is_empty()),
            _ => false,
        };
        // The parser has already resolved `.` and `..` (also percent-encoded)
        // in the target's path, so a prefix here cannot be climbed out of.
        let path = target.path();
        let path_ok = self.path.is_empty()
            || path == self.path
            || path.strip_prefix(self.path.as_str()).is_some_and(|rest| rest.starts_with('/'));
        self.scheme == target.scheme() && host_ok && self.port == target.port_or_known_default() && path_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://app.example.com/welcome";

    fn allowed() -> Vec<String> {
        vec![
            "https://app.example.com".into(),
            "https://docs.example.com/guide/".into(),
            "https://*.tenants.example.com".into(),
            "http://127.0.0.1:4455".into(),
            "https://bücher.example".into(),
        ]
    }

    fn run(raw: &str) -> Result<String, Refused> {
        check(raw, &Url::parse(BASE).unwrap(), &allowed()).map(String::from)
    }

    #[track_caller]
    fn allows(raw: &str, expected: &str) {
        assert_eq!(run(raw), Ok(expected.to_string()), "{raw:?}");
    }

    #[track_caller]
    fn refuses(raw: &str) {
        assert!(run(raw).is_err(), "{raw:?} was allowed as {:?}", run(raw));
    }

    #[test]
    fn allowed_targets_come_back_normalised() {
        allows("https://app.example.com", "https://app.example.com/");
        allows("https://app.example.com/dashboard?tab=1#top", "https://app.example.com/dashboard?tab=1#top");
        allows("https://docs.example.com/guide", "https://docs.example.com/guide");
        allows("https://docs.example.com/guide/intro", "https://docs.example.com/guide/intro");
        allows("http://127.0.0.1:4455/welcome", "http://127.0.0.1:4455/welcome");
        allows("https://a.tenants.example.com/x", "https://a.tenants.example.com/x");
        allows("https://a.b.tenants.example.com/", "https://a.b.tenants.example.com/");
        allows("https://app.example.com:443/", "https://app.example.com/");
    }

    #[test]
    fn mixed_case_schemes_and_hosts_compare_as_browsers_read_them() {
        allows("HTTPS://APP.Example.COM/Path", "https://app.example.com/Path");
        refuses("https://DOCS.example.com/GUIDE/intro");
    }

    #[test]
    fn relative_targets_resolve_against_the_default_return_url() {
        allows("/settings", "https://app.example.com/settings");
        allows("settings", "https://app.example.com/settings");
        allows("?x=1", "https://app.example.com/welcome?x=1");
        // Only a colon before any slash makes a scheme.
        allows("/a:b", "https://app.example.com/a:b");
    }

    #[test]
    fn backslashes_raw_or_encoded_are_refused() {
        refuses("https://app.example.com\\@evil.com");
        refuses("/\\evil.com");
        refuses("\\\\evil.com");
        refuses("https://app.example.com/%5Cevil.com");
        refuses("https://app.example.com/%5cevil.com");
        refuses("/%5C%5Cevil.com");
    }

    #[test]
    fn scheme_relative_and_slash_light_targets_do_not_change_host() {
        refuses("//evil.com");
        refuses("//evil.com/https://app.example.com");
        refuses("///evil.com");
        refuses("https:/evil.com");
        refuses("https:evil.com");
        refuses("https:///evil.com");
        refuses("https:/app.example.com");
        // To a browser this is app.example.com; it is still allowed that way.
        allows("//app.example.com/x", "https://app.example.com/x");
    }

    #[test]
    fn userinfo_is_refused_even_for_an_allowed_host() {
        refuses("https://user@app.example.com/");
        refuses("https://user:pass@app.example.com/");
        refuses("https://app.example.com@evil.com");
        refuses("https://app.example.com:443@evil.com/");
        refuses("https://evil.com#@app.example.com");
        refuses("https://evil.com?@app.example.com");
    }

    #[test]
    fn only_http_and_https_are_redirect_schemes() {
        refuses("javascript:alert(1)");
        refuses("JavaScript://app.example.com/%0aalert(1)");
        refuses("data:text/html,<script>alert(1)</script>");
        refuses("vbscript:msgbox(1)");
        refuses("file:///etc/passwd");
        refuses("ftp://app.example.com/");
        refuses("http://app.example.com/");
    }

    #[test]
    fn dot_segments_cannot_climb_out_of_an_allowed_path() {
        refuses("https://docs.example.com/guide/../admin");
        refuses("https://docs.example.com/guide/%2e%2e/admin");
        refuses("https://docs.example.com/guide/%2E%2E/%2e%2E/admin");
        refuses("https://docs.example.com/guide/./../admin");
        allows("https://docs.example.com/guide/a/../b", "https://docs.example.com/guide/b");
        allows("https://docs.example.com/x/../guide/b", "https://docs.example.com/guide/b");
    }

    #[test]
    fn path_prefixes_end_at_a_segment_boundary() {
        refuses("https://docs.example.com/guidebook");
        refuses("https://docs.example.com/guide-evil");
        refuses("https://docs.example.com/");
    }

    #[test]
    fn wildcards_match_real_subdomains_only() {
        refuses("https://tenants.example.com/");
        refuses("https://evil-tenants.example.com/");
        refuses("https://eviltenants.example.com/");
        refuses("https://a.tenants.example.com.evil.com/");
        refuses("http://a.tenants.example.com/");
    }

    #[test]
    fn lookalike_hosts_are_refused() {
        refuses("https://app.example.com.evil.com/");
        refuses("https://app.example.comevil.com/");
        refuses("https://evilapp.example.com/");
        refuses("https://app.example.com./");
        refuses("https://xn--pp-8cd.example.com/"); // Cyrillic "а" for the first letter
        refuses("https://аpp.example.com/");
    }

    #[test]
    fn idn_hosts_compare_in_their_ascii_form() {
        allows("https://bücher.example/", "https://xn--bcher-kva.example/");
        allows("https://xn--bcher-kva.example/a", "https://xn--bcher-kva.example/a");
        allows("https://BÜCHER.example/", "https://xn--bcher-kva.example/");
        refuses("https://bucher.example/");
    }

    #[test]
    fn control_characters_are_refused_even_where_browsers_strip_them() {
        refuses("https://app.example.com/\t");
        refuses("https://evil\t.com/");
        refuses("java\nscript:alert(1)");
        refuses("/\r\n/evil.com");
        refuses("\t//evil.com");
        refuses("https://app.example.com/\u{0}");
        refuses("https://app.example.com/\u{7f}");
        assert_eq!(run("https://app.example.com/\n"), Err(Refused::Unparsable));
    }

    #[test]
    fn ports_must_match() {
        refuses("https://app.example.com:8443/");
        refuses("http://127.0.0.1:4456/");
        refuses("http://127.0.0.1/");
        refuses("http://127.0.0.1:80/");
        // Another spelling of the same address and port is the same target.
        allows("http://2130706433:4455/", "http://127.0.0.1:4455/");
        allows("http://127.0.0.1:04455/a", "http://127.0.0.1:4455/a");
    }

    #[test]
    fn unsafe_wildcards_in_the_allow_list_allow_nothing() {
        let base = Url::parse(BASE).unwrap();
        for entry in ["https://*", "https://*.com", "https://a.*.example.com", "https://*example.com"] {
            let allowed = vec![entry.to_string()];
            for raw in ["https://evil.com/", "https://a.example.com/", "https://a.b.example.com/"] {
                assert!(check(raw, &base, &allowed).is_err(), "{entry} allowed {raw}");
            }
        }
    }

    #[test]
    fn allow_list_entries_are_judged_usable_or_not() {
        assert!(allowed().iter().all(|entry| usable(entry)));
        for entry in
            ["https://*", "https://*.com", "https://a.*.example.com", "https://*example.com", "/path", ""]
        {
            assert!(!usable(entry), "{entry}");
        }
    }

    #[test]
    fn garbage_is_refused_not_a_panic() {
        for raw in [
            "http://",
            "https://[::1",
            "https://%zz/",
            "http://a b/",
            "https://exa mple.com",
            "http://:4455/",
        ] {
            assert!(run(raw).is_err(), "{raw:?}");
        }
    }
}
