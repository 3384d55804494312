//! Built-in functions: CEL's standard library and Tame's additions
//! (`glob`, `clean_path`/`within`, `lower`/`upper`/`trim`, `ip`/`cidr`;
//! `url`, `domain` and `lookalike` live in `net.rs`).

use std::net::IpAddr;
use std::sync::Arc;

use tame_lang::Value;

use crate::net;
use crate::ops::no_overload;
use crate::optional;
use crate::strings;
use crate::time::{self, TsPart};

/// Largest compiled program a `matches` pattern may produce.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A built-in function, resolved by name and arity at compile time. A
/// receiver (`x.f(y)`) is passed as the first argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Size,
    Contains,
    StartsWith,
    EndsWith,
    Matches,
    ToInt,
    ToUint,
    ToDouble,
    ToString,
    ToBytes,
    ToBool,
    Dyn,
    TypeOf,
    Timestamp,
    Duration,
    Part(TsPart),
    Lower,
    Upper,
    Trim,
    Glob,
    CleanPath,
    Within,
    Ip,
    Cidr,
    IsIp,
    InCidr,
    Url,
    Domain,
    Lookalike,
    // CEL strings extension (`strings.rs`)
    LowerAscii,
    UpperAscii,
    CharAt,
    IndexOf,
    LastIndexOf,
    Join,
    Split,
    Replace,
    Substring,
    Format,
    Quote,
    Reverse,
    // CEL optionals (`optional.rs`)
    OptOf,
    OptNone,
    OptOfNonZero,
    OptHasValue,
    OptValue,
    OptOrValue,
    OptOr,
}

impl Builtin {
    /// Resolves `name` called with `argc` arguments (receiver included).
    /// `receiver` says whether it was called as `x.name(..)`.
    pub(crate) fn resolve(name: &str, receiver: bool, argc: usize) -> Option<Builtin> {
        use Builtin as B;
        let b = match (name, receiver, argc) {
            ("size", _, 1) => B::Size,
            ("contains", true, 2) => B::Contains,
            ("startsWith", true, 2) => B::StartsWith,
            ("endsWith", true, 2) => B::EndsWith,
            ("matches", _, 2) => B::Matches,
            ("int", false, 1) => B::ToInt,
            ("uint", false, 1) => B::ToUint,
            ("double", false, 1) => B::ToDouble,
            ("string", false, 1) => B::ToString,
            ("bytes", false, 1) => B::ToBytes,
            ("bool", false, 1) => B::ToBool,
            ("dyn", false, 1) => B::Dyn,
            ("type", false, 1) => B::TypeOf,
            ("timestamp", false, 1) => B::Timestamp,
            ("duration", false, 1) => B::Duration,
            (n, true, 1 | 2) if TsPart::from_name(n).is_some() => B::Part(TsPart::from_name(n)?),
            ("lower", _, 1) => B::Lower,
            ("upper", _, 1) => B::Upper,
            ("lowerAscii", _, 1) => B::LowerAscii,
            ("upperAscii", _, 1) => B::UpperAscii,
            ("charAt", true, 2) => B::CharAt,
            ("indexOf", true, 2 | 3) => B::IndexOf,
            ("lastIndexOf", true, 2 | 3) => B::LastIndexOf,
            ("join", true, 1 | 2) => B::Join,
            ("split", true, 2 | 3) => B::Split,
            ("replace", true, 3 | 4) => B::Replace,
            ("substring", true, 2 | 3) => B::Substring,
            ("format", true, 2) => B::Format,
            ("strings.quote", false, 1) => B::Quote,
            ("reverse", true, 1) => B::Reverse,
            ("optional.of", false, 1) => B::OptOf,
            ("optional.none", false, 0) => B::OptNone,
            ("optional.ofNonZeroValue", false, 1) => B::OptOfNonZero,
            ("hasValue", true, 1) => B::OptHasValue,
            ("value", true, 1) => B::OptValue,
            ("orValue", true, 2) => B::OptOrValue,
            ("or", true, 2) => B::OptOr,
            ("trim", _, 1) => B::Trim,
            ("glob", _, 2) => B::Glob,
            ("clean_path", false, 1) => B::CleanPath,
            ("within", false, 2) => B::Within,
            ("ip", false, 1) => B::Ip,
            ("cidr", false, 1) => B::Cidr,
            ("isIP" | "is_ip", _, 1) => B::IsIp,
            ("containsIP" | "in_cidr", _, 2) => B::InCidr,
            ("url", false, 1) => B::Url,
            ("domain", false, 1) => B::Domain,
            ("lookalike", false, 2) => B::Lookalike,
            _ => return None,
        };
        Some(b)
    }

    /// Whether the name is a built-in at all (for "wrong arity" messages).
    pub(crate) fn known_name(name: &str) -> bool {
        (0..5).any(|n| Self::resolve(name, true, n).is_some() || Self::resolve(name, false, n).is_some())
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Builtin::Size => "size",
            Builtin::Contains => "contains",
            Builtin::StartsWith => "startsWith",
            Builtin::EndsWith => "endsWith",
            Builtin::Matches => "matches",
            Builtin::ToInt => "int",
            Builtin::ToUint => "uint",
            Builtin::ToDouble => "double",
            Builtin::ToString => "string",
            Builtin::ToBytes => "bytes",
            Builtin::ToBool => "bool",
            Builtin::Dyn => "dyn",
            Builtin::TypeOf => "type",
            Builtin::Timestamp => "timestamp",
            Builtin::Duration => "duration",
            Builtin::Part(_) => "timestamp accessor",
            Builtin::Lower => "lower",
            Builtin::Upper => "upper",
            Builtin::Trim => "trim",
            Builtin::Glob => "glob",
            Builtin::CleanPath => "clean_path",
            Builtin::Within => "within",
            Builtin::Ip => "ip",
            Builtin::Cidr => "cidr",
            Builtin::IsIp => "isIP",
            Builtin::InCidr => "containsIP",
            Builtin::Url => "url",
            Builtin::Domain => "domain",
            Builtin::Lookalike => "lookalike",
            Builtin::LowerAscii => "lowerAscii",
            Builtin::UpperAscii => "upperAscii",
            Builtin::CharAt => "charAt",
            Builtin::IndexOf => "indexOf",
            Builtin::LastIndexOf => "lastIndexOf",
            Builtin::Join => "join",
            Builtin::Split => "split",
            Builtin::Replace => "replace",
            Builtin::Substring => "substring",
            Builtin::Format => "format",
            Builtin::Quote => "strings.quote",
            Builtin::Reverse => "reverse",
            Builtin::OptOf => "optional.of",
            Builtin::OptNone => "optional.none",
            Builtin::OptOfNonZero => "optional.ofNonZeroValue",
            Builtin::OptHasValue => "hasValue",
            Builtin::OptValue => "value",
            Builtin::OptOrValue => "orValue",
            Builtin::OptOr => "or",
        }
    }

    /// Calls the function. Every built-in is pure, so calls on constants
    /// are folded at compile time.
    pub(crate) fn call(self, args: &[&Value]) -> Result<Value, String> {
        let bad = || no_overload(self.name(), args);
        match (self, args) {
            (Builtin::Size, [v]) => size(v).ok_or_else(bad),
            (Builtin::Contains, [Value::String(s), Value::String(t)]) => Ok(Value::Bool(s.contains(&**t))),
            (Builtin::StartsWith, [Value::String(s), Value::String(t)]) => Ok(Value::Bool(s.starts_with(&**t))),
            (Builtin::EndsWith, [Value::String(s), Value::String(t)]) => Ok(Value::Bool(s.ends_with(&**t))),
            (Builtin::Matches, [Value::String(s), Value::String(p)]) => {
                let re = compile_regex(p)?;
                Ok(Value::Bool(re.is_match(s)))
            }
            (Builtin::ToInt, [v]) => to_int(v).ok_or_else(bad)?,
            (Builtin::ToUint, [v]) => to_uint(v).ok_or_else(bad)?,
            (Builtin::ToDouble, [v]) => to_double(v).ok_or_else(bad)?,
            (Builtin::ToString, [v]) => to_string(v).ok_or_else(bad)?,
            (Builtin::ToBytes, [Value::String(s)]) => Ok(Value::Bytes(Arc::from(s.as_bytes()))),
            (Builtin::ToBytes, [v @ Value::Bytes(_)]) => Ok((*v).clone()),
            (Builtin::ToBool, [v @ Value::Bool(_)]) => Ok((*v).clone()),
            (Builtin::ToBool, [Value::String(s)]) => match &**s {
                "true" | "True" | "TRUE" | "t" | "1" => Ok(Value::Bool(true)),
                "false" | "False" | "FALSE" | "f" | "0" => Ok(Value::Bool(false)),
                _ => Err(format!("invalid bool `{s}`")),
            },
            (Builtin::Dyn, [v]) => Ok((*v).clone()),
            (Builtin::TypeOf, [v]) => Ok(Value::Type(v.type_of())),
            (Builtin::Timestamp, [Value::String(s)]) => time::parse_timestamp(s).map(Value::Timestamp),
            (Builtin::Timestamp, [Value::Int(i)]) => time::ts_from_seconds(*i).map(Value::Timestamp),
            (Builtin::Timestamp, [v @ Value::Timestamp(_)]) => Ok((*v).clone()),
            (Builtin::Duration, [Value::String(s)]) => time::parse_duration(s).map(Value::Duration),
            (Builtin::Duration, [v @ Value::Duration(_)]) => Ok((*v).clone()),
            (Builtin::Part(p), [Value::Timestamp(t)]) => Ok(Value::Int(p.of_timestamp(*t, &jiff::tz::TimeZone::UTC))),
            (Builtin::Part(p), [Value::Timestamp(t), Value::String(tz)]) => {
                let tz = time::parse_tz(tz)?;
                Ok(Value::Int(p.of_timestamp(*t, &tz)))
            }
            (Builtin::Part(p), [Value::Duration(d)]) => p.of_duration(*d).map(Value::Int).ok_or_else(bad),
            (Builtin::Lower, [Value::String(s)]) => Ok(Value::String(Arc::from(s.to_lowercase()))),
            (Builtin::Upper, [Value::String(s)]) => Ok(Value::String(Arc::from(s.to_uppercase()))),
            (Builtin::Trim, [Value::String(s)]) => Ok(Value::String(Arc::from(s.trim()))),
            (Builtin::Glob, [Value::String(s), Value::String(p)]) => Ok(Value::Bool(compile_glob(p)?.is_match(&**s))),
            (Builtin::CleanPath, [Value::String(s)]) => Ok(Value::String(Arc::from(clean_path(s)))),
            (Builtin::Within, [Value::String(p), Value::String(dir)]) => Ok(Value::Bool(within(p, dir))),
            (Builtin::Ip, [Value::String(s)]) => parse_ip(s).map(|ip| Value::String(Arc::from(ip.to_string()))),
            (Builtin::Cidr, [Value::String(s)]) => parse_cidr(s).map(|c| Value::String(Arc::from(c.to_string()))),
            (Builtin::IsIp, [Value::String(s)]) => Ok(Value::Bool(s.parse::<IpAddr>().is_ok())),
            (Builtin::InCidr, [Value::String(a), Value::String(b)]) => {
                // Either order: `cidr(c).containsIP(ip)` and `in_cidr(ip, c)`.
                let (net, ip) = if a.contains('/') { (a, b) } else { (b, a) };
                let net = parse_cidr(net)?;
                let ip = parse_ip(ip)?;
                Ok(Value::Bool(net.contains(ip)))
            }
            (Builtin::Url, [Value::String(s)]) => net::url(s),
            (Builtin::Domain, [Value::String(s)]) => net::domain(s).map(|d| Value::String(Arc::from(d))),
            (Builtin::Lookalike, [Value::String(a), Value::String(b)]) => Ok(Value::Bool(net::lookalike(a, b))),
            (Builtin::LowerAscii, [Value::String(s)]) => Ok(strings::lower_ascii(s)),
            (Builtin::UpperAscii, [Value::String(s)]) => Ok(strings::upper_ascii(s)),
            (Builtin::CharAt, [Value::String(s), Value::Int(i)]) => strings::char_at(s, *i),
            (Builtin::IndexOf, [Value::String(s), Value::String(sub)]) => strings::index_of(s, sub, None),
            (Builtin::IndexOf, [Value::String(s), Value::String(sub), Value::Int(i)]) => {
                strings::index_of(s, sub, Some(*i))
            }
            (Builtin::LastIndexOf, [Value::String(s), Value::String(sub)]) => strings::last_index_of(s, sub, None),
            (Builtin::LastIndexOf, [Value::String(s), Value::String(sub), Value::Int(i)]) => {
                strings::last_index_of(s, sub, Some(*i))
            }
            (Builtin::Join, [Value::List(l)]) => strings::join(l, ""),
            (Builtin::Join, [Value::List(l), Value::String(sep)]) => strings::join(l, sep),
            (Builtin::Split, [Value::String(s), Value::String(sep)]) => Ok(strings::split(s, sep, None)),
            (Builtin::Split, [Value::String(s), Value::String(sep), Value::Int(n)]) => {
                Ok(strings::split(s, sep, Some(*n)))
            }
            (Builtin::Replace, [Value::String(s), Value::String(old), Value::String(new)]) => {
                Ok(strings::replace(s, old, new, None))
            }
            (Builtin::Replace, [Value::String(s), Value::String(old), Value::String(new), Value::Int(n)]) => {
                Ok(strings::replace(s, old, new, Some(*n)))
            }
            (Builtin::Substring, [Value::String(s), Value::Int(a)]) => strings::substring(s, *a, None),
            (Builtin::Substring, [Value::String(s), Value::Int(a), Value::Int(b)]) => {
                strings::substring(s, *a, Some(*b))
            }
            (Builtin::Format, [Value::String(f), Value::List(l)]) => strings::format(f, l),
            (Builtin::Quote, [Value::String(s)]) => Ok(strings::quote(s)),
            (Builtin::Reverse, [Value::String(s)]) => Ok(strings::reverse(s)),
            (Builtin::OptOf, [v]) => Ok(Value::Optional(Some(Arc::new((*v).clone())))),
            (Builtin::OptNone, []) => Ok(Value::Optional(None)),
            (Builtin::OptOfNonZero, [v]) => Ok(optional::of_non_zero(v)),
            (Builtin::OptHasValue, [Value::Optional(o)]) => Ok(Value::Bool(o.is_some())),
            (Builtin::OptValue, [Value::Optional(o)]) => optional::value(o.as_deref()),
            (Builtin::OptOrValue, [Value::Optional(o), default]) => {
                Ok(o.as_deref().cloned().unwrap_or_else(|| (*default).clone()))
            }
            (Builtin::OptOr, [Value::Optional(o), other @ Value::Optional(_)]) => Ok(match o {
                Some(_) => Value::Optional(o.clone()),
                None => (*other).clone(),
            }),
            _ => Err(bad()),
        }
    }
}

fn size(v: &Value) -> Option<Value> {
    let n = match v {
        Value::String(s) => s.chars().count(),
        Value::Bytes(b) => b.len(),
        Value::List(l) => l.len(),
        Value::Map(m) => m.len(),
        _ => return None,
    };
    Some(Value::Int(i64::try_from(n).unwrap_or(i64::MAX)))
}

const TWO_63: f64 = 9_223_372_036_854_775_808.0;
const TWO_64: f64 = 18_446_744_073_709_551_616.0;

fn range(what: &str) -> String {
    format!("range error: value out of {what} range")
}

fn to_int(v: &Value) -> Option<Result<Value, String>> {
    Some(match v {
        Value::Int(i) => Ok(Value::Int(*i)),
        Value::Uint(u) => i64::try_from(*u).map(Value::Int).map_err(|_| range("int")),
        Value::Double(d) => {
            if d.is_finite() && *d >= -TWO_63 && *d < TWO_63 {
                // In range; `as` truncates toward zero, as CEL requires.
                #[expect(clippy::cast_possible_truncation, reason = "range checked")]
                let i = *d as i64;
                Ok(Value::Int(i))
            } else {
                Err(range("int"))
            }
        }
        Value::String(s) => s
            .parse::<i64>()
            .map(Value::Int)
            .map_err(|_| format!("invalid int `{s}`")),
        Value::Timestamp(t) => Ok(Value::Int(t.as_second())),
        _ => return None,
    })
}

fn to_uint(v: &Value) -> Option<Result<Value, String>> {
    Some(match v {
        Value::Uint(u) => Ok(Value::Uint(*u)),
        Value::Int(i) => u64::try_from(*i).map(Value::Uint).map_err(|_| range("uint")),
        Value::Double(d) => {
            if d.is_finite() && *d > -1.0 && *d < TWO_64 {
                #[expect(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "range checked")]
                let u = *d as u64;
                Ok(Value::Uint(u))
            } else {
                Err(range("uint"))
            }
        }
        Value::String(s) => s
            .parse::<u64>()
            .map(Value::Uint)
            .map_err(|_| format!("invalid uint `{s}`")),
        _ => return None,
    })
}

fn to_double(v: &Value) -> Option<Result<Value, String>> {
    #[expect(clippy::cast_precision_loss, reason = "CEL converts to the nearest double")]
    Some(match v {
        Value::Double(d) => Ok(Value::Double(*d)),
        Value::Int(i) => Ok(Value::Double(*i as f64)),
        Value::Uint(u) => Ok(Value::Double(*u as f64)),
        Value::String(s) => s
            .parse::<f64>()
            .map(Value::Double)
            .map_err(|_| format!("invalid double `{s}`")),
        _ => return None,
    })
}

/// CEL's text form of a double: shortest round-trip digits, exponent form
/// for very large or small magnitudes (`1e+100`).
pub(crate) fn format_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let a = d.abs();
    if a != 0.0 && !(1e-4..1e21).contains(&a) {
        go_exponent(format!("{d:e}"))
    } else {
        format!("{d}")
    }
}

/// Rust's exponent form (`1e100`, `1.5e-7`) as CEL (Go) writes it: a sign
/// and at least two digits (`1e+100`, `1.5e-07`).
pub(crate) fn go_exponent(s: String) -> String {
    match s.split_once('e') {
        Some((m, e)) => {
            let (sign, digits) = match e.strip_prefix('-') {
                Some(rest) => ('-', rest),
                None => ('+', e),
            };
            format!("{m}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

fn to_string(v: &Value) -> Option<Result<Value, String>> {
    let s = match v {
        Value::String(_) => return Some(Ok(v.clone())),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Double(d) => format_double(*d),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) => return Some(Err("invalid UTF-8 in bytes to string conversion".into())),
        },
        Value::Timestamp(t) => time::format_timestamp(*t),
        Value::Duration(d) => time::format_duration(*d),
        Value::Type(t) => t.name(),
        _ => return None,
    };
    Some(Ok(Value::String(Arc::from(s))))
}

/// Compiles a `matches` pattern: RE2 syntax, linear time, bounded size.
pub(crate) fn compile_regex(p: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(p)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex `{p}`: {e}"))
}

/// Compiles a `glob` pattern: `*` stays within a path segment, `**`
/// crosses `/`.
pub(crate) fn compile_glob(p: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(p)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("invalid glob `{p}`: {e}"))
}

/// A path split into its components, lexically cleaned: empty and `.`
/// components dropped, a `..` removing the component before it; `..` at
/// the root stays at the root, leading `..` of a relative path are kept.
/// POSIX only: `/` separates, `\` is an ordinary character.
#[derive(Debug, PartialEq, Eq)]
struct CleanPath<'a> {
    rooted: bool,
    parts: Vec<&'a str>,
}

impl<'a> CleanPath<'a> {
    fn new(path: &'a str) -> Self {
        let rooted = path.starts_with('/');
        let mut parts: Vec<&str> = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => match parts.last() {
                    Some(&last) if last != ".." => {
                        parts.pop();
                    }
                    // `/..` is `/`.
                    _ if rooted => {}
                    _ => parts.push(".."),
                },
                _ => parts.push(part),
            }
        }
        CleanPath { rooted, parts }
    }
}

impl std::fmt::Display for CleanPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.rooted, self.parts.is_empty()) {
            (true, _) => write!(f, "/{}", self.parts.join("/")),
            (false, true) => f.write_str("."),
            (false, false) => f.write_str(&self.parts.join("/")),
        }
    }
}

/// `clean_path(p)`: the shortest path lexically equal to `p` (as Go's
/// `path.Clean`): `/tmp/../etc/x` is `/etc/x`, `a//b/./c/` is `a/b/c`,
/// `/..` is `/`, `../etc/x` stays, the empty path is `.`. Symbolic links are
/// not resolved (nothing here touches the file system).
pub(crate) fn clean_path(path: &str) -> String {
    CleanPath::new(path).to_string()
}

/// `within(p, dir)`: `clean_path(p)` is `clean_path(dir)` or lies beneath
/// it, comparing whole components (`/tmpx` is not within `/tmp`). Both must
/// be absolute or both relative; `../x` is not within `.`.
pub(crate) fn within(path: &str, dir: &str) -> bool {
    let p = CleanPath::new(path);
    let d = CleanPath::new(dir);
    p.rooted == d.rooted
        && p.parts.len() >= d.parts.len()
        && p.parts.iter().zip(&d.parts).all(|(a, b)| a == b)
        // `..` only leads a clean path: past `d`'s own, more climb out of it.
        && p.parts.get(d.parts.len()) != Some(&"..")
}

fn parse_ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>().map_err(|_| format!("invalid IP address `{s}`"))
}

/// An IP network `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            (IpAddr::V6(_), IpAddr::V4(a)) => self.contains(IpAddr::V6(a.to_ipv6_mapped())),
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

pub(crate) fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let bad = || format!("invalid CIDR `{s}`");
    let (a, p) = s.split_once('/').ok_or_else(bad)?;
    let addr: IpAddr = a.parse().map_err(|_| bad())?;
    let prefix: u8 = p.parse().map_err(|_| bad())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    if prefix > max {
        return Err(bad());
    }
    Ok(Cidr { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Value {
        Value::string(x)
    }

    #[test]
    fn doubles_print_like_cel() {
        assert_eq!(format_double(1.5), "1.5");
        assert_eq!(format_double(1e100), "1e+100");
        assert_eq!(format_double(1e-7), "1e-07");
        assert_eq!(format_double(-0.0), "-0");
        assert_eq!(format_double(123.0), "123");
    }

    #[test]
    fn cidr_contains() {
        let net = parse_cidr("10.0.0.0/8").unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        let v6 = parse_cidr("fd00::/8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        let r = Builtin::InCidr
            .call(&[&s("192.168.1.7"), &s("192.168.0.0/16")])
            .unwrap();
        assert!(matches!(r, Value::Bool(true)));
    }

    #[test]
    fn globs_respect_separators() {
        let g = compile_glob("/home/*/**").unwrap();
        assert!(g.is_match("/home/ann/notes/a.txt"));
        assert!(!g.is_match("/etc/passwd"));
        let one = compile_glob("/tmp/*").unwrap();
        assert!(one.is_match("/tmp/x"));
        assert!(!one.is_match("/tmp/x/y"));
    }

    #[test]
    fn conversions_check_ranges() {
        assert!(Builtin::ToInt.call(&[&Value::Uint(u64::MAX)]).is_err());
        assert!(Builtin::ToInt.call(&[&Value::Double(1e19)]).is_err());
        assert!(Builtin::ToInt.call(&[&Value::Double(f64::NAN)]).is_err());
        assert!(matches!(
            Builtin::ToInt.call(&[&Value::Double(-1.9)]),
            Ok(Value::Int(-1))
        ));
        assert!(Builtin::ToUint.call(&[&Value::Int(-1)]).is_err());
        assert!(matches!(Builtin::ToUint.call(&[&s("42")]), Ok(Value::Uint(42))));
        assert!(Builtin::ToBool.call(&[&s("yes")]).is_err());
        assert!(
            Builtin::ToString
                .call(&[&Value::Bytes(Arc::from(&[0xff_u8][..]))])
                .is_err()
        );
    }

    #[test]
    fn clean_path_is_lexical() {
        for (path, clean) in [
            ("/tmp/../etc/shadow", "/etc/shadow"),
            ("/tmp/../etc/cron.d/x", "/etc/cron.d/x"),
            ("//a//b/./c/", "/a/b/c"),
            ("/..", "/"),
            ("/../../etc", "/etc"),
            ("/", "/"),
            ("///", "/"),
            ("../etc/x", "../etc/x"),
            ("a/../../b", "../b"),
            ("a/..", "."),
            ("./a/", "a"),
            ("", "."),
            (".", "."),
            ("..", ".."),
            ("/tmp/./x/", "/tmp/x"),
            // POSIX only: a backslash is part of a name.
            (r"C:\tmp\..\x", r"C:\tmp\..\x"),
            // No percent-decoding: `%2e%2e` is a name.
            ("/tmp/%2e%2e/etc", "/tmp/%2e%2e/etc"),
        ] {
            assert_eq!(clean_path(path), clean, "{path:?}");
        }
    }

    #[test]
    fn within_compares_whole_components() {
        assert!(within("/tmp/x", "/tmp"));
        assert!(within("/tmp", "/tmp/"));
        assert!(within("/tmp/a/../b", "/tmp"));
        assert!(within("/etc/passwd", "/"));
        assert!(!within("/tmpx", "/tmp"));
        assert!(!within("/tmp/../etc/shadow", "/tmp"));
        assert!(!within("/", "/tmp"));
        assert!(within("/tmp/../etc/shadow", "/etc"));
        // Relative paths are within relative directories only.
        assert!(!within("tmp/x", "/tmp"));
        assert!(!within("/tmp/x", "tmp"));
        assert!(within(".github/workflows/ci.yml", ".github/workflows"));
        assert!(within("./.github/workflows/../workflows/ci.yml", ".github/workflows"));
        assert!(within("a/b", "."));
        assert!(!within("../a", "."));
        assert!(within("../a", ".."));
        assert!(!within("../../a", ".."));
        let call = |p: &str, d: &str| Builtin::Within.call(&[&s(p), &s(d)]).unwrap();
        assert!(matches!(call("/tmp/x", "/tmp"), Value::Bool(true)));
        let cleaned = Builtin::CleanPath.call(&[&s("/tmp/../etc/shadow")]).unwrap();
        assert_eq!(cleaned.as_str(), Some("/etc/shadow"));
        assert!(Builtin::CleanPath.call(&[&Value::Int(1)]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn clean_path_is_idempotent(path in "[/.ab]{0,24}") {
            let once = clean_path(&path);
            proptest::prop_assert_eq!(clean_path(&once), once.clone());
            proptest::prop_assert!(!once.is_empty());
            proptest::prop_assert!(once == "/" || !once.ends_with('/'));
            proptest::prop_assert!(!once.contains("//") && !once.contains("/./"));
        }

        #[test]
        fn within_means_beneath_the_clean_dir(path in "[/.ab]{0,16}", dir in "[/.ab]{0,12}") {
            let (p, d) = (clean_path(&path), clean_path(&dir));
            if within(&path, &dir) {
                // `.` is the one directory its relative paths do not start with.
                proptest::prop_assert!(d == "." || p.starts_with(&d), "{p} within {d}");
                proptest::prop_assert!(
                    d == "." || d == "/" || p == d || p.get(d.len()..).is_some_and(|rest| rest.starts_with('/'))
                );
            }
            // A path is within itself and its parent.
            proptest::prop_assert!(within(&path, &path));
            let parent = format!("{path}/..");
            if !p.ends_with("..") && p != "/" && p != "." {
                proptest::prop_assert!(within(&path, &parent), "{path} not within {parent}");
            }
        }
    }
}
