//! Network names in conditions: `url(s)` (with or without a scheme),
//! `domain(s)` (the registrable domain by the Public Suffix List) and
//! `lookalike(a, b)` (a small edit distance, or the same UTS #39 confusable
//! skeleton).
//!
//! URLs are read as the WHATWG URL Standard reads them (the `url` crate):
//! what a browser or an HTTP client connects to, so `http://evil.com\@good.com`
//! has the host `evil.com` and `http://0x7f.1/` the host `127.0.0.1`. Hosts
//! come out lowercase, internationalized names as ASCII (punycode A-labels),
//! the form DNS and the Public Suffix List use; `lookalike` reads A-labels
//! back as the Unicode they encode before comparing.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use rapidfuzz::distance::levenshtein;
use tame_lang::{Key, Value, ValueMap};
use unicode_normalization::UnicodeNormalization;
use url::{Host, Url};

/// How much of an input an error message shows.
const SHOWN: usize = 80;

/// The input as an error message quotes it: cropped to [`SHOWN`] characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

/// What the URL Standard strips from both ends of an address.
fn trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Whether `s` starts with `scheme://` (RFC 3986: a letter, then letters,
/// digits, `+`, `-` or `.`).
fn has_scheme(s: &str) -> bool {
    let Some((scheme, _)) = s.split_once("://") else {
        return false;
    };
    let mut b = scheme.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

/// The authority of a scheme-less address (what comes before its path,
/// query or fragment), and whether it was written after `//`.
fn schemeless_authority(s: &str) -> (&str, bool) {
    let (rest, slashes) = match s.strip_prefix("//") {
        Some(r) => (r, true),
        None => (s, false),
    };
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    (rest.get(..end).unwrap_or(rest), slashes)
}

/// A parsed address: the URL, and whether a scheme was written (a
/// scheme-less address is read as if `http://` stood before it).
struct Address {
    url: Url,
    scheme: bool,
    /// The port written, for a scheme-less address (the URL elides `:80`).
    written_port: Option<u16>,
}

fn parse_address(s: &str) -> Result<Address, String> {
    let bad = |why: &dyn std::fmt::Display| format!("invalid URL `{}`: {why}", shown(s));
    let t = trim(s);
    if t.is_empty() {
        return Err(bad(&"empty"));
    }
    if has_scheme(t) {
        let url = Url::parse(t).map_err(|e| bad(&e))?;
        return Ok(Address {
            url,
            scheme: true,
            written_port: None,
        });
    }
    let rest = t.strip_prefix("//").unwrap_or(t);
    if rest.is_empty() || rest.starts_with(['/', '\\', '.', ':', '?', '#', '@']) {
        return Err(bad(&"neither `scheme://` nor a host at its start"));
    }
    let (authority, slashes) = schemeless_authority(t);
    if !slashes && authority.contains('@') {
        return Err(format!(
            "invalid URL `{}`: an e-mail address, not a URL (domain() reads both)",
            shown(s)
        ));
    }
    let url = Url::parse(&format!("http://{rest}")).map_err(|e| bad(&e))?;
    // `http://` elides a written `:80`; `https://` keeps it.
    let written_port = match url.port() {
        Some(p) => Some(p),
        None if authority.contains(':') => Url::parse(&format!("https://{rest}")).ok().and_then(|u| u.port()),
        None => None,
    };
    Ok(Address {
        url,
        scheme: false,
        written_port,
    })
}

/// The host as text: lowercase, a domain in ASCII (A-labels), an IPv4
/// address in dotted decimal, an IPv6 address without brackets; empty
/// when the URL has none (`file:///etc/passwd`).
fn host_text(url: &Url) -> String {
    match url.host() {
        Some(Host::Domain(d)) if url.has_authority() && !is_special(url.scheme()) => {
            // An opaque host (`s3://`, `postgres://`): read it as a special
            // scheme's host when it is one (IDN, IPv4 forms), else as written.
            match Host::parse(d) {
                Ok(h) => host_string(&h),
                Err(_) => d.to_lowercase(),
            }
        }
        Some(h) => host_string(&h),
        None => String::new(),
    }
}

fn is_special(scheme: &str) -> bool {
    matches!(scheme, "http" | "https" | "ws" | "wss" | "ftp" | "file")
}

fn host_string<S: AsRef<str>>(h: &Host<S>) -> String {
    match h {
        Host::Domain(d) => d.as_ref().to_ascii_lowercase(),
        Host::Ipv4(a) => a.to_string(),
        Host::Ipv6(a) => a.to_string(),
    }
}

/// The keys of `url()`'s map, allocated once.
static URL_KEYS: LazyLock<[Key; 8]> = LazyLock::new(|| {
    [
        "scheme", "host", "port", "path", "query", "fragment", "userinfo", "domain",
    ]
    .map(Key::from)
});

/// `url(s)`: a `map(string, string)` with `scheme`, `host`, `port`, `path`,
/// `query`, `fragment`, `userinfo` and `domain`.
pub(crate) fn url(s: &str) -> Result<Value, String> {
    let a = parse_address(s)?;
    let u = &a.url;
    let host = host_text(u);
    let port = if a.scheme {
        u.port_or_known_default()
    } else {
        a.written_port
    };
    let userinfo = match u.password() {
        Some(p) => format!("{}:{p}", u.username()),
        None => u.username().to_owned(),
    };
    // Empty when the host has none (no host, an empty label).
    let domain = registrable(&host).unwrap_or_default();
    let port = port.map(|p| p.to_string()).unwrap_or_default();
    let values = [
        if a.scheme { u.scheme() } else { "" },
        &host,
        &port,
        u.path(),
        u.query().unwrap_or_default(),
        u.fragment().unwrap_or_default(),
        &userinfo,
        &domain,
    ];
    let mut m = ValueMap::with_capacity_and_hasher(URL_KEYS.len(), Default::default());
    for (k, v) in URL_KEYS.iter().zip(values) {
        m.insert(k.clone(), Value::string(v));
    }
    Ok(Value::Map(Arc::new(m)))
}

/// The registrable domain of a host already in canonical form (lowercase,
/// A-labels): the public suffix and one label before it. A host that is
/// itself a public suffix or a single label (`github.io`, `localhost`) is
/// its own domain. One trailing dot (a fully qualified name) is dropped;
/// an empty label (`a..b.com`) is an error.
fn registrable(host: &str) -> Result<String, String> {
    if host.parse::<IpAddr>().is_ok() {
        return Ok(host.to_owned());
    }
    let h = host.strip_suffix('.').unwrap_or(host);
    if h.split('.').any(str::is_empty) {
        return Err(format!("`{}` has an empty label", shown(host)));
    }
    Ok(psl::domain(h.as_bytes())
        .and_then(|d| std::str::from_utf8(d.as_bytes()).ok())
        .unwrap_or(h)
        .to_owned())
}

/// `domain(s)`: the registrable domain of an e-mail address (also written
/// `Name <addr>` or `mailto:addr`), a URL with or without a scheme, or a
/// bare host; an IP address is its own domain.
pub(crate) fn domain(s: &str) -> Result<String, String> {
    let bad = |why: &str| format!("no domain in `{}`: {why}", shown(s));
    let mut t = trim(s);
    if t.is_empty() {
        return Err(bad("empty"));
    }
    // `Ada <ada@example.com>`
    if let (Some(open), Some(inner)) = (t.rfind('<'), t.strip_suffix('>')) {
        t = trim(inner.get(open + 1..).unwrap_or_default());
    }
    if let Some(addr) = t.get(..7).filter(|p| p.eq_ignore_ascii_case("mailto:")).and(t.get(7..)) {
        t = addr.split('?').next().unwrap_or_default();
    }
    if let Ok(ip) = t.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    if !has_scheme(t) {
        let (authority, slashes) = schemeless_authority(t);
        if !slashes && let Some((_, host)) = authority.rsplit_once('@') {
            let host = Host::parse(host).map_err(|e| bad(&format!("the e-mail domain `{}`: {e}", shown(host))))?;
            return registrable(&host_string(&host)).map_err(|e| bad(&e));
        }
    }
    let a = parse_address(t).map_err(|e| bad(&e))?;
    let host = host_text(&a.url);
    if host.is_empty() {
        return Err(bad("no host"));
    }
    registrable(&host).map_err(|e| bad(&e))
}

/// The form `lookalike` compares: NFC, lowercase, A-labels (`xn--…`) read
/// as the Unicode they encode.
fn normalize(s: &str) -> String {
    let lower = s.nfc().collect::<String>().to_lowercase();
    if !lower.contains("xn--") {
        return lower;
    }
    let mut out = String::with_capacity(lower.len());
    let mut rest = lower.as_str();
    // Tokens of letters, digits and `-` (labels); every other character
    // is copied as it is.
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '-'))
            .unwrap_or(rest.len());
        let (token, tail) = rest.split_at(end);
        match token.strip_prefix("xn--").and_then(idna::punycode::decode_to_string) {
            Some(u) if !u.is_empty() => out.push_str(&u),
            _ => out.push_str(token),
        }
        let mut chars = tail.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out.nfc().collect::<String>().to_lowercase()
}

/// The UTS #39 confusable skeleton of a normalized string, lowercased again
/// (the skeleton maps `0` to `O`, `1` to `l`).
fn skeleton(s: &str) -> String {
    unicode_security::skeleton(s).collect::<String>().to_lowercase()
}

/// The edits `lookalike` allows between strings whose shorter one has
/// `len` characters: none below 4 (`bob` and `rob` are different names),
/// one up to 7, two from 8 on.
fn edits_allowed(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=7 => 1,
        _ => 2,
    }
}

/// `lookalike(a, b)`: `a` and `b` differ, after normalization, but look
/// alike: the same confusable skeleton, or a few edits apart.
pub(crate) fn lookalike(a: &str, b: &str) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    if a == b {
        return false;
    }
    // The bounded edit distance first: it is the cheaper test.
    let allowed = edits_allowed(a.chars().count().min(b.chars().count()));
    if allowed > 0 {
        let args = levenshtein::Args::default().score_cutoff(allowed);
        if levenshtein::distance_with_args(a.chars(), b.chars(), &args).is_some() {
            return true;
        }
    }
    skeleton(&a) == skeleton(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> Vec<(String, String)> {
        let Ok(Value::Map(m)) = url(s) else {
            panic!("`{s}` did not parse: {:?}", url(s))
        };
        let mut v: Vec<(String, String)> = m
            .iter()
            .map(|(k, v)| match k {
                Key::String(k) => (k.to_string(), v.as_str().unwrap_or_default().to_owned()),
                other => panic!("key {other:?}"),
            })
            .collect();
        v.sort();
        v
    }

    fn part(s: &str, key: &str) -> String {
        parts(s)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no `{key}`"))
    }

    fn dom(s: &str) -> String {
        domain(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn url_parts_with_a_scheme() {
        let all = parts("HTTPS://user:pw@Example.com:8443/a/b?x=1#top");
        let want = [
            ("domain", "example.com"),
            ("fragment", "top"),
            ("host", "example.com"),
            ("path", "/a/b"),
            ("port", "8443"),
            ("query", "x=1"),
            ("scheme", "https"),
            ("userinfo", "user:pw"),
        ];
        let want: Vec<(String, String)> = want.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        assert_eq!(all, want);
        // The port connected to: the scheme's default when none is written.
        assert_eq!(part("https://example.com", "port"), "443");
        assert_eq!(part("http://example.com:80/", "port"), "80");
        assert_eq!(part("s3://bucket/key", "port"), "");
        assert_eq!(part("http://[::1]:80/", "host"), "::1");
        assert_eq!(part("postgres://db.Internal:5432/x", "host"), "db.internal");
        assert_eq!(part("file:///etc/passwd", "host"), "");
        assert_eq!(part("file:///etc/passwd", "path"), "/etc/passwd");
        assert!(url("not a url").is_err());
        assert!(url("http://:80/").is_err());
        assert!(url("http://example.com:99999/").is_err());
        assert!(url("").is_err());
    }

    #[test]
    fn url_reads_hosts_as_clients_do() {
        // A backslash ends the authority for http(s): the host is evil.com.
        assert_eq!(part("http://evil.com\\@good.com/", "host"), "evil.com");
        // Shorthand IPv4 forms are the addresses they name.
        assert_eq!(part("http://0x7f.1/", "host"), "127.0.0.1");
        assert_eq!(part("http://2130706433/", "host"), "127.0.0.1");
        // Unicode hosts in ASCII; dot segments resolved in the path.
        assert_eq!(part("https://Bücher.DE/a/../b", "host"), "xn--bcher-kva.de");
        assert_eq!(part("https://Bücher.DE/a/../b", "path"), "/b");
        assert_eq!(part("https://www.bbc.co.uk/news", "domain"), "bbc.co.uk");
    }

    #[test]
    fn url_reads_scheme_less_addresses() {
        let p = parts("www.example.com/a");
        assert!(p.contains(&("scheme".into(), "".into())), "{p:?}");
        assert!(p.contains(&("host".into(), "www.example.com".into())), "{p:?}");
        assert!(p.contains(&("path".into(), "/a".into())), "{p:?}");
        assert!(p.contains(&("port".into(), "".into())), "{p:?}");
        assert!(p.contains(&("domain".into(), "example.com".into())), "{p:?}");
        assert_eq!(part("example.com:8080/x?q=1", "port"), "8080");
        assert_eq!(part("example.com:8080/x?q=1", "path"), "/x");
        assert_eq!(part("example.com:8080/x?q=1", "query"), "q=1");
        assert_eq!(part("example.com:80", "port"), "80");
        assert_eq!(part("example.com:443", "port"), "443");
        assert_eq!(part("localhost:3000", "host"), "localhost");
        assert_eq!(part("//cdn.example.org/lib.js", "host"), "cdn.example.org");
        assert_eq!(part("  example.com  ", "host"), "example.com");
        assert_eq!(part("[::1]:8080", "host"), "::1");
        assert_eq!(part("10.0.0.5/admin", "host"), "10.0.0.5");
        // A link handed in a query is not the scheme.
        assert_eq!(part("example.com/r?to=https://evil.com", "host"), "example.com");
        // An e-mail address is not a URL; nor is a path or a `javascript:`.
        for s in [
            "ada@example.com",
            "mailto:ada@example.com",
            "/etc/passwd",
            "../x",
            "javascript:alert(1)",
        ] {
            assert!(url(s).is_err(), "{s}: {:?}", url(s));
        }
        assert!(url("ada@example.com").unwrap_err().contains("e-mail address"));
    }

    #[test]
    fn domain_by_the_public_suffix_list() {
        assert_eq!(dom("example.com"), "example.com");
        assert_eq!(dom("https://mail.google.com/x"), "google.com");
        assert_eq!(dom("a.b.example.co.uk"), "example.co.uk");
        assert_eq!(dom("www.city.kawasaki.jp"), "city.kawasaki.jp");
        // Private suffixes: each user's site is its own domain.
        assert_eq!(dom("alice.github.io"), "alice.github.io");
        assert_eq!(dom("https://x.alice.github.io/"), "alice.github.io");
        // A public suffix or a single label is its own domain.
        assert_eq!(dom("github.io"), "github.io");
        assert_eq!(dom("localhost:8080"), "localhost");
        // Unknown TLDs: the last two labels.
        assert_eq!(dom("a.b.corp.internal"), "corp.internal");
        assert_eq!(dom("Example.COM."), "example.com");
    }

    #[test]
    fn domain_of_e_mail_addresses_and_urls() {
        assert_eq!(dom("ada@Mail.Example.com"), "example.com");
        assert_eq!(dom("Ada Lovelace <ada@lists.example.org>"), "example.org");
        assert_eq!(dom("mailto:ada@example.com?subject=hi"), "example.com");
        assert_eq!(dom("\"a@b\"@example.net"), "example.net");
        assert_eq!(dom("www.example.com/a"), "example.com");
        assert_eq!(dom("example.co.uk:8080/x?q=1"), "example.co.uk");
        assert_eq!(dom("https://user@evil.com@paypal.com/"), "paypal.com");
        assert_eq!(dom("http://evil.com\\@paypal.com/"), "evil.com");
    }

    #[test]
    fn domain_handles_idn_in_one_form() {
        assert_eq!(dom("bücher.de"), "xn--bcher-kva.de");
        assert_eq!(dom("https://www.BÜCHER.de/"), "xn--bcher-kva.de");
        assert_eq!(dom("xn--bcher-kva.de"), "xn--bcher-kva.de");
        assert_eq!(dom("ada@bücher.de"), "xn--bcher-kva.de");
        // A multi-label IDN suffix (公司.cn), Unicode and punycode alike.
        assert_eq!(dom("www.example.公司.cn"), "example.xn--55qx5d.cn");
        assert_eq!(dom("www.example.xn--55qx5d.cn"), "example.xn--55qx5d.cn");
        // The Cyrillic а makes another domain, shown as such.
        assert_eq!(dom("pаypal.com"), "xn--pypal-4ve.com");
    }

    #[test]
    fn domain_of_ip_literals_is_the_address() {
        assert_eq!(dom("10.0.0.5"), "10.0.0.5");
        assert_eq!(dom("http://10.0.0.5:8080/admin"), "10.0.0.5");
        assert_eq!(dom("http://0x7f.1/"), "127.0.0.1");
        assert_eq!(dom("::1"), "::1");
        assert_eq!(dom("[2001:DB8::1]"), "2001:db8::1");
        assert_eq!(dom("http://[2001:db8::1]:443/"), "2001:db8::1");
    }

    #[test]
    fn domain_errors_on_what_has_none() {
        for s in [
            "",
            "   ",
            "ada@",
            "@",
            "http://",
            "file:///etc/passwd",
            "a b.com",
            "ada@exa mple.com",
            "<>",
            "a..b.com",
            "example.com..",
            "...",
        ] {
            let e = domain(s).expect_err(s);
            assert!(e.starts_with("no domain in `"), "{s}: {e}");
        }
        // Long inputs are cropped in the message.
        let e = domain(&format!("{} x", "a".repeat(10_000))).unwrap_err();
        assert!(e.len() < 300, "{e}");
    }

    #[test]
    fn lookalikes_by_confusable_skeleton() {
        // Cyrillic а (U+0430) in place of the Latin a.
        assert!(lookalike("pаypal.com", "paypal.com"));
        assert!(lookalike("xn--pypal-4ve.com", "paypal.com"));
        assert!(lookalike("ceo@xn--pypal-4ve.com", "ceo@paypal.com"));
        assert!(lookalike("rnicrosoft.com", "microsoft.com"));
        assert!(lookalike("paypa1", "paypal"));
        assert!(lookalike("g00gle", "google"));
        // Short strings count by their skeleton alone.
        assert!(lookalike("l", "1"));
    }

    #[test]
    fn lookalikes_by_edit_distance() {
        assert!(lookalike("gooogle.com", "google.com"));
        assert!(lookalike("paypal.co", "paypal.com"));
        assert!(lookalike("DE89370400440532013001", "DE89370400440532013000"));
        assert!(lookalike("examp1e-corp.com", "exanple-corp.com"));
        assert!(lookalike("alice", "alise"));
        // Too far apart, or too short for an edit to mean a lookalike.
        assert!(!lookalike("example.com", "example.org"));
        assert!(!lookalike("www.paypal.com", "paypal.com"));
        assert!(!lookalike("a", "b"));
        assert!(!lookalike("bob", "rob"));
        assert!(!lookalike("ab.io", "cd.io"));
        assert!(!lookalike("bank", "bind"));
    }

    #[test]
    fn equal_strings_are_not_lookalikes() {
        assert!(!lookalike("paypal.com", "paypal.com"));
        assert!(!lookalike("PayPal.com", "paypal.com"));
        assert!(!lookalike("xn--bcher-kva.de", "bücher.de"));
        // Composed and decomposed é are the same text.
        assert!(!lookalike("caf\u{e9}", "cafe\u{301}"));
        assert!(!lookalike("", ""));
    }

    #[test]
    fn long_inputs_stay_linear() {
        // A quadratic edit distance would take billions of steps here; the
        // bounded one stops after a few per character (well under a second
        // even unoptimized; the bound leaves room for a loaded machine).
        let a = "x".repeat(50_000);
        let mut b = a.clone();
        b.insert(25_000, 'y');
        let start = std::time::Instant::now();
        assert!(lookalike(&a, &b));
        assert!(!lookalike(&a, &format!("yyy{a}")));
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "{:?}",
            start.elapsed()
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panic(a in "\\PC{0,40}", b in "[a-z0-9.:/@\\[\\]%-]{0,40}") {
            let _ = domain(&a);
            let _ = domain(&b);
            let _ = url(&a);
            let _ = url(&b);
            let _ = lookalike(&a, &b);
            proptest::prop_assert!(!lookalike(&a, &a));
        }

        #[test]
        fn domain_is_idempotent(b in "[a-z0-9.-]{1,30}(\\.[a-z]{2,6})?") {
            if let Ok(d) = domain(&b) {
                proptest::prop_assert_eq!(domain(&d), Ok(d.clone()));
            }
        }
    }
}
