//! The hosts a listener answers to: `allowed_hosts` entries, and the
//! parsing of an authority (`host[:port]`) shared by the Host and Origin
//! checks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One `allowed_hosts` entry: a host name or an IP address, with or
/// without a port (without: any port), or `*` (any host at all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedHost {
    /// `*`: the Host check is off.
    Any,
    /// A host name, lowercase, without a trailing dot.
    Name { name: Box<str>, port: Option<u16> },
    /// An IP address (IPv6 written in brackets when a port follows).
    Ip { ip: IpAddr, port: Option<u16> },
}

impl AllowedHost {
    /// Parses `host`, `host:port`, `1.2.3.4[:port]`, `[::1][:port]` or `*`.
    pub fn parse(s: &str) -> Result<AllowedHost, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(AllowedHost::Any);
        }
        if s.contains('*') {
            return Err(format!(
                "`{s}`: a wildcard is only allowed alone (`*`, which turns the Host check off); list each name"
            ));
        }
        let bad = || {
            format!(
                "`{s}` is not a host name or address with an optional port (e.g. `tame.example.com`, `tame.internal:8000`, `10.0.0.5`)"
            )
        };
        if s.contains(['/', '@', '?', '#', ' ']) {
            return Err(bad());
        }
        // A bare IPv6 address (no brackets, so no port).
        if let Ok(ip) = s.parse::<Ipv6Addr>() {
            return Ok(AllowedHost::Ip {
                ip: IpAddr::V6(ip),
                port: None,
            });
        }
        let authority = split_authority(s).ok_or_else(bad)?;
        match authority.ip() {
            Some(ip) => Ok(AllowedHost::Ip {
                ip,
                port: authority.port,
            }),
            None if authority.bracketed || !is_host_name(authority.host) => Err(bad()),
            None => Ok(AllowedHost::Name {
                name: trim_dot(authority.host).to_ascii_lowercase().into(),
                port: authority.port,
            }),
        }
    }

    fn permits(&self, host: Host<'_>, port: Option<u16>) -> bool {
        let (matched, wanted) = match (self, host) {
            (AllowedHost::Any, _) => return true,
            (AllowedHost::Name { name, port }, Host::Name(n)) => (name.eq_ignore_ascii_case(n), port),
            (AllowedHost::Ip { ip, port }, Host::Ip(i)) => (*ip == i, port),
            _ => return false,
        };
        matched && wanted.is_none_or(|w| Some(w) == port)
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let port = |p: &Option<u16>| p.map(|p| format!(":{p}")).unwrap_or_default();
        match self {
            AllowedHost::Any => f.write_str("*"),
            AllowedHost::Name { name, port: p } => write!(f, "{name}{}", port(p)),
            AllowedHost::Ip {
                ip: IpAddr::V6(ip),
                port: p,
            } if p.is_some() => write!(f, "[{ip}]{}", port(p)),
            AllowedHost::Ip { ip, port: p } => write!(f, "{ip}{}", port(p)),
        }
    }
}

impl std::str::FromStr for AllowedHost {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        AllowedHost::parse(s)
    }
}

/// Letters, digits, `-`, `_` and dots: what a DNS name (or a name from
/// `/etc/hosts`) is made of.
fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn trim_dot(host: &str) -> &str {
    host.strip_suffix('.').unwrap_or(host)
}

/// The host part of an authority.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host<'a> {
    Ip(IpAddr),
    /// Without its trailing dot, in the case it was sent.
    Name(&'a str),
}

/// `host[:port]` taken apart (no allocation: this runs on every request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Authority<'a> {
    pub(crate) host: &'a str,
    pub(crate) bracketed: bool,
    pub(crate) port: Option<u16>,
}

impl<'a> Authority<'a> {
    fn ip(&self) -> Option<IpAddr> {
        if self.bracketed {
            self.host.parse::<Ipv6Addr>().ok().map(IpAddr::V6)
        } else {
            self.host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
        }
    }

    pub(crate) fn host(&self) -> Host<'a> {
        match self.ip() {
            Some(ip) => Host::Ip(ip.to_canonical()),
            None => Host::Name(trim_dot(self.host)),
        }
    }
}

/// Splits `host[:port]` (IPv6 in brackets); `None` when malformed: empty,
/// user info, a bad port, or an IPv6 address without brackets.
pub(crate) fn split_authority(s: &str) -> Option<Authority<'_>> {
    let s = s.trim();
    if s.is_empty() || s.contains('@') {
        return None;
    }
    let port = |p: &str| -> Option<Option<u16>> {
        match p {
            "" => Some(None),
            p if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok().map(Some),
            _ => None,
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            after => port(after.strip_prefix(':')?)?,
        };
        return Some(Authority {
            host,
            bracketed: true,
            port,
        });
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((host, p)) => (host, port(p)?),
        None => (s, None),
    };
    if host.is_empty() || host.contains(':') {
        return None;
    }
    Some(Authority {
        host,
        bracketed: false,
        port,
    })
}

const DEFAULT_CONFIGURED_IN: &str = "`allowed_hosts` (TAME_ALLOWED_HOSTS, --allowed-host)";

/// The hosts a request may name: loopback and `localhost` always, the
/// listen address (any IP literal when listening on all addresses), and
/// the configured `allowed_hosts`.
#[derive(Debug, Clone)]
pub struct Hosts {
    listen: IpAddr,
    allowed: Vec<AllowedHost>,
    any: bool,
    configured_in: Box<str>,
}

impl Default for Hosts {
    /// A server on `127.0.0.1` with no `allowed_hosts`: loopback only.
    fn default() -> Self {
        Hosts::new(SocketAddr::from(([127, 0, 0, 1], 0)), &[])
    }
}

impl Hosts {
    /// The hosts of a server listening on `listen` with `allowed` configured.
    pub fn new(listen: SocketAddr, allowed: &[AllowedHost]) -> Hosts {
        Hosts {
            listen: listen.ip().to_canonical(),
            allowed: allowed.to_vec(),
            any: allowed.contains(&AllowedHost::Any),
            configured_in: DEFAULT_CONFIGURED_IN.into(),
        }
    }

    /// Names, for a refusal's message, where this listener's allowed hosts
    /// are configured (the server's: ``"`allowed_hosts` (TAME_ALLOWED_HOSTS,
    /// --allowed-host)"``).
    #[must_use]
    pub fn configured_in(mut self, where_: &str) -> Hosts {
        self.configured_in = where_.into();
        self
    }

    /// Where the allowed hosts are configured (see [`Hosts::configured_in`]).
    pub fn configured_where(&self) -> &str {
        &self.configured_in
    }

    /// Whether `authority` (a `Host` header's value) names this server.
    pub fn permits(&self, authority: &str) -> bool {
        if self.any {
            return true;
        }
        let Some(authority) = split_authority(authority) else {
            return false;
        };
        let host = authority.host();
        let ours = match host {
            Host::Ip(ip) => ip.is_loopback() || self.listen.is_unspecified() || ip == self.listen,
            Host::Name(name) => is_localhost(name),
        };
        ours || self.allowed.iter().any(|a| a.permits(host, authority.port))
    }
}

/// Whether `authority` (`host[:port]`) names this machine's loopback: a
/// loopback address or `localhost` (and its subdomains), any port.
pub fn is_loopback(authority: &str) -> bool {
    split_authority(authority).is_some_and(|a| match a.host() {
        Host::Ip(ip) => ip.is_loopback(),
        Host::Name(name) => is_localhost(name),
    })
}

/// `localhost` and its subdomains (RFC 6761: browsers resolve them to
/// loopback themselves, so no page can rebind them).
fn is_localhost(name: &str) -> bool {
    let suffix = name.len().checked_sub(".localhost".len()).and_then(|at| name.get(at..));
    name.eq_ignore_ascii_case("localhost") || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, allowed: &[&str]) -> Hosts {
        let allowed: Vec<AllowedHost> = allowed.iter().map(|a| AllowedHost::parse(a).unwrap()).collect();
        Hosts::new(listen.parse().unwrap(), &allowed)
    }

    #[test]
    fn loopback_and_localhost_always_pass() {
        let h = hosts("127.0.0.1:8000", &[]);
        for ok in [
            "127.0.0.1:8000",
            "127.0.0.1",
            "127.0.0.1:1",
            "127.5.6.7:9",
            "[::1]:8000",
            "[::1]",
            "[::ffff:127.0.0.1]:80",
            "localhost",
            "LOCALHOST:8000",
            "localhost.:8000",
            "app.localhost:3000",
        ] {
            assert!(h.permits(ok), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8000",
            "localhost.evil.example",
            "evillocalhost",
            "10.0.0.5:8000",
            "[2001:db8::1]:8000",
            "",
            "127.0.0.1:99999",
            "127.0.0.1:80x",
            "user@127.0.0.1",
            "::1",
            "[::1",
        ] {
            assert!(!h.permits(refused), "{refused}");
        }
    }

    #[test]
    fn the_listen_address_passes_and_all_addresses_mean_any_literal() {
        let h = hosts("10.0.0.5:8000", &[]);
        assert!(h.permits("10.0.0.5:8000"));
        assert!(h.permits("10.0.0.5"));
        assert!(!h.permits("10.0.0.6:8000"));
        assert!(!h.permits("tame.internal:8000"));
        for listen in ["0.0.0.0:8000", "[::]:8000"] {
            let h = hosts(listen, &[]);
            assert!(h.permits("10.1.2.3:8000"), "{listen}: a pod IP");
            assert!(h.permits("[2001:db8::7]:8000"), "{listen}");
            assert!(!h.permits("tame.internal:8000"), "{listen}: names need allowed_hosts");
            assert!(!h.permits("evil.example:8000"), "{listen}");
        }
    }

    #[test]
    fn allowed_hosts_match_names_ports_and_star() {
        let h = hosts(
            "0.0.0.0:8000",
            &["Tame.Example.com", "tame.internal:8443", "[2001:db8::1]:8000"],
        );
        assert!(h.permits("tame.example.com"));
        assert!(h.permits("TAME.example.COM:8000"));
        assert!(h.permits("tame.example.com.:1"));
        assert!(h.permits("tame.internal:8443"));
        assert!(!h.permits("tame.internal:8000"), "the entry names its port");
        assert!(!h.permits("tame.internal"));
        assert!(!h.permits("sub.tame.example.com"));
        let h = hosts("10.0.0.5:8000", &["203.0.113.9"]);
        assert!(h.permits("203.0.113.9:80"));
        assert!(!h.permits("203.0.113.10:80"));
        let h = hosts("10.0.0.5:8000", &["*"]);
        assert!(h.permits("anything.example:1"));
        assert!(h.permits("not even an authority"));
    }

    #[test]
    fn allowed_host_entries_are_checked() {
        for (entry, shown) in [
            ("tame.example.com", "tame.example.com"),
            ("Tame.Example.com.", "tame.example.com"),
            ("tame:8000", "tame:8000"),
            ("10.0.0.5", "10.0.0.5"),
            ("[::1]:8000", "[::1]:8000"),
            ("2001:db8::1", "2001:db8::1"),
            (" * ", "*"),
        ] {
            assert_eq!(AllowedHost::parse(entry).unwrap().to_string(), shown, "{entry}");
        }
        for bad in [
            "",
            "*.example.com",
            "http://tame.example.com",
            "tame.example.com/x",
            "a b",
            "user@host",
            "host:port",
            "host:70000",
            "[not-ip]:80",
        ] {
            let e = AllowedHost::parse(bad).unwrap_err();
            assert!(e.contains('`'), "{bad}: {e}");
        }
    }

    #[test]
    fn loopback_authorities() {
        for ok in [
            "localhost",
            "localhost:8000",
            "LOCALHOST.",
            "app.localhost",
            "127.0.0.1",
            "127.1.2.3:9",
            "[::1]:8000",
            "[::1]",
        ] {
            assert!(is_loopback(ok), "{ok}");
        }
        for refused in [
            "localhost.evil.com",
            "evillocalhost",
            "10.0.0.5",
            "[2001:db8::1]:80",
            "::1",
            "localhost:abc",
            "",
        ] {
            assert!(!is_loopback(refused), "{refused}");
        }
    }
}
