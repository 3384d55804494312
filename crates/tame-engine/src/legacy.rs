//! The legacy rule conditions of the original tame server, decided as it
//! decided them.
//!
//! The original engine (Python) read `policies.yml` with `yaml.safe_load`
//! and held a rule's `conditions` when every entry of it held (a rule
//! without `conditions` matches every call to its tools):
//!
//! - `arg_contains: {key: value}`: the call's `tool_args` has `key`, and
//!   `value` is `"*"` or equals the argument. So `recipient: "*"` means
//!   "there is a recipient", whatever its value, `null` included.
//! - `arg_not_contains: {key: value}`: `tool_args` lacks `key`, or the
//!   argument does not equal `value`. `"*"` is no wildcard here: it is the
//!   one-character text `*`, as it was in the original.
//! - `session_context: {key: value}`: the session context has `key`, and
//!   `value` is `"*"` or equals the entry. The session context is
//!   `{session_id, agent_id, user_id}` with the call's `metadata` merged
//!   over it. The three ids are always in it (`null` when the call gave
//!   none; a missing session id is a fresh one, which no policy value
//!   equals), so `user_id: "*"` holds for every call and `agent_id: ~` for
//!   a call without an agent, as in the original.
//!
//! "Equals" is Python's `==` between the value `json.loads` made of the
//! call and the one `yaml.safe_load` made of the policy ([`py_equals`]):
//! numbers by exact value across int, float and bool (`1 == 1.0 == true`,
//! `0 == false`, but `9007199254740993 != 9007199254740992.0`), strings
//! exactly (`"1" != 1`), lists element by element in order, objects by key
//! set and values, `null` only to `null`. Plain YAML scalars are read as
//! YAML 1.1 reads them ([`resolve_plain`]): `yes`, `on` are `true`, `0755`
//! is 493, `1:30` is 90, `1e3` is text, `2024-01-01` a date, which no JSON
//! value equals; quoted scalars are text.
//!
//! Values are compared, never matched: `">50"` is the text `>50` and
//! `"^/etc/"` no regex. The linter points such values out and shows the
//! equivalent `condition` ([`suspicious`]).
//!
//! Where the original failed, Tame refuses to load rather than guess: a
//! `conditions` or section that is not a mapping (the original raised an
//! error on every call reaching the rule), a value its YAML loader could
//! not build (`!custom` tags, `0b_`, a 13th month, merge keys, which Tame
//! does not expand), and a condition kind other than the three (which the
//! original ignored, so the rule matched more calls than it says). Inside an
//! alias (`*name`) values are read as YAML 1.2 reads them (`yes` is text).

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, LazyLock};

use regex::Regex;
use saphyr_parser::ScalarStyle;
use tame_lang::{Key, Value};

use crate::facade::Request;
use crate::locate::YNode;

/// A value as Python's `yaml.safe_load` builds it from the policy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PyValue {
    None,
    Bool(bool),
    Int(i128),
    /// An int beyond `i128` (as written), with the bits of the float it
    /// equals exactly, if there is one.
    BigInt {
        text: Arc<str>,
        as_float: Option<u64>,
    },
    /// A float, as its bits (so that checks can be hashed and shared).
    Float(u64),
    Str(Arc<str>),
    List(Vec<PyValue>),
    /// A dict; keys are unique (a later duplicate replaced the value).
    Dict(Vec<(PyValue, PyValue)>),
    /// A value that no JSON value equals: a date, a timestamp, bytes, a set,
    /// ordered pairs.
    Opaque(&'static str),
}

impl fmt::Display for PyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PyValue::None => f.write_str("null"),
            PyValue::Bool(b) => write!(f, "{b}"),
            PyValue::Int(i) => write!(f, "{i}"),
            PyValue::BigInt { text, .. } => f.write_str(text),
            PyValue::Float(bits) => write!(f, "{:?}", f64::from_bits(*bits)),
            PyValue::Str(s) => write!(f, "{}", serde_json::Value::String(s.to_string())),
            PyValue::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            PyValue::Dict(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                f.write_str("}")
            }
            PyValue::Opaque(what) => write!(f, "<{what}>"),
        }
    }
}

impl PyValue {
    /// What kind of value this is, for messages.
    fn kind(&self) -> &'static str {
        match self {
            PyValue::None => "null",
            PyValue::Bool(_) => "a boolean",
            PyValue::Int(_) | PyValue::BigInt { .. } => "an integer",
            PyValue::Float(_) => "a float",
            PyValue::Str(_) => "text",
            PyValue::List(_) => "a list",
            PyValue::Dict(_) => "a mapping",
            PyValue::Opaque(what) => what,
        }
    }
}

// ------------------------------------------------------------ equality

/// A number as Python sees it (bools are ints).
#[derive(Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
    /// An int beyond `i128`, and the float it equals exactly, if any.
    Huge(Option<f64>),
}

fn call_number(v: &Value) -> Option<Num> {
    match v {
        Value::Bool(b) => Some(Num::Int(i128::from(*b))),
        Value::Int(i) => Some(Num::Int(i128::from(*i))),
        Value::Uint(u) => Some(Num::Int(i128::from(*u))),
        Value::Double(d) => Some(Num::Float(*d)),
        _ => None,
    }
}

fn yaml_number(v: &PyValue) -> Option<Num> {
    match v {
        PyValue::Bool(b) => Some(Num::Int(i128::from(*b))),
        PyValue::Int(i) => Some(Num::Int(*i)),
        PyValue::BigInt { as_float, .. } => Some(Num::Huge(as_float.map(f64::from_bits))),
        PyValue::Float(bits) => Some(Num::Float(f64::from_bits(*bits))),
        _ => None,
    }
}

/// Python compares an int with a float by exact value, not through a
/// rounded float.
fn int_equals_float(i: i128, f: f64) -> bool {
    const TWO_POW_127: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    f.is_finite() && f.trunc() == f && (-TWO_POW_127..TWO_POW_127).contains(&f) && f as i128 == i
}

fn numbers_equal(a: Num, b: Num) -> bool {
    match (a, b) {
        (Num::Int(a), Num::Int(b)) => a == b,
        (Num::Int(i), Num::Float(f)) | (Num::Float(f), Num::Int(i)) => int_equals_float(i, f),
        (Num::Float(a), Num::Float(b)) => a == b,
        (Num::Huge(Some(h)), Num::Float(f)) | (Num::Float(f), Num::Huge(Some(h))) => h == f,
        // A huge int is beyond every `i128`; two huge ints never both
        // come from the call.
        (Num::Huge(_), _) | (_, Num::Huge(_)) => false,
    }
}

/// Python's `value == expected`, `value` being what `json.loads` made of the
/// call and `expected` what `yaml.safe_load` made of the policy.
pub(crate) fn py_equals(value: &Value, expected: &PyValue) -> bool {
    match (value, expected) {
        (Value::Null, PyValue::None) => true,
        (Value::String(a), PyValue::Str(b)) => a == b,
        (Value::List(a), PyValue::List(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| py_equals(x, y)),
        (Value::Map(a), PyValue::Dict(b)) => {
            a.len() == b.len()
                && b.iter().all(|(k, y)| match k {
                    PyValue::Str(k) => a.get(&Key::String(k.clone())).is_some_and(|x| py_equals(x, y)),
                    // A JSON object's keys are all text.
                    _ => false,
                })
        }
        _ => match (call_number(value), yaml_number(expected)) {
            (Some(a), Some(b)) => numbers_equal(a, b),
            _ => false,
        },
    }
}

// ------------------------------------------------------------ checks

/// A key of a condition section. YAML 1.1 reads some plain keys as other
/// than text (`1`, `yes`, `~`); no argument or context entry is named by
/// those.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LegacyKey {
    Str(Arc<str>),
    NotText(PyValue),
}

impl fmt::Display for LegacyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LegacyKey::Str(s) => f.write_str(s),
            LegacyKey::NotText(v) => write!(f, "{v}"),
        }
    }
}

/// What an `arg_contains` or `session_context` entry asks of its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Expected {
    /// `"*"`: present, any value.
    Present,
    Equal(PyValue),
}

/// One legacy check; each is one atom of the decision DAG.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LegacyCheck {
    ArgContains {
        key: LegacyKey,
        expected: Expected,
    },
    ArgNotContains {
        key: LegacyKey,
        forbidden: PyValue,
    },
    SessionContext {
        key: LegacyKey,
        expected: Expected,
    },
    /// The tool's name matches one of the rule's `tools` as the original
    /// matched them, by regex (see [`read_tools`]).
    ToolMatches(ToolPatterns),
    /// `tools: []`: the original matched no tool.
    NoTool,
}

/// A rule's tool patterns as the original's regexes, compared by source.
#[derive(Clone, Debug)]
pub(crate) struct ToolPatterns {
    source: Arc<str>,
    regexes: Arc<[Regex]>,
}

impl ToolPatterns {
    /// The regexes the patterns became, as their source (`tame migrate`
    /// writes them into a `tool.matches(...)` condition).
    pub(crate) fn regex_sources(&self) -> impl Iterator<Item = &str> {
        self.regexes.iter().map(Regex::as_str)
    }
}

impl PartialEq for ToolPatterns {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl Eq for ToolPatterns {}

impl std::hash::Hash for ToolPatterns {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.source.hash(state);
    }
}

/// An entry of the session context.
enum Ctx<'r> {
    Json(&'r Value),
    /// `agent_id` or `user_id` from the call (`None`: Python's `None`).
    Id(Option<&'r str>),
    /// The session id the server makes up for a call without one.
    FreshSession,
}

impl LegacyCheck {
    /// A short description for explain traces and DOT labels.
    pub fn describe(&self) -> String {
        match self {
            LegacyCheck::ArgContains {
                key,
                expected: Expected::Present,
            } => format!("arg_contains {key} present"),
            LegacyCheck::ArgContains {
                key,
                expected: Expected::Equal(v),
            } => format!("arg_contains {key} == {v}"),
            LegacyCheck::ArgNotContains { key, forbidden } => format!("arg_not_contains {key} != {forbidden}"),
            LegacyCheck::SessionContext {
                key,
                expected: Expected::Present,
            } => format!("session_context {key} present"),
            LegacyCheck::SessionContext {
                key,
                expected: Expected::Equal(v),
            } => format!("session_context {key} == {v}"),
            LegacyCheck::ToolMatches(p) => format!("tool matches {}", p.source),
            LegacyCheck::NoTool => "tools: [] (no tool)".into(),
        }
    }

    pub fn eval(&self, req: &Request) -> bool {
        match self {
            LegacyCheck::ArgContains { key, expected } => arg(req, key).is_some_and(|v| match expected {
                Expected::Present => true,
                Expected::Equal(e) => py_equals(v, e),
            }),
            LegacyCheck::ArgNotContains { key, forbidden } => !arg(req, key).is_some_and(|v| py_equals(v, forbidden)),
            LegacyCheck::SessionContext { key, expected } => context(req, key).is_some_and(|c| match expected {
                Expected::Present => true,
                Expected::Equal(e) => match c {
                    Ctx::Json(v) => py_equals(v, e),
                    Ctx::Id(Some(s)) => matches!(e, PyValue::Str(x) if **x == *s),
                    Ctx::Id(None) => *e == PyValue::None,
                    Ctx::FreshSession => false,
                },
            }),
            LegacyCheck::ToolMatches(p) => p.regexes.iter().any(|r| r.is_match(&req.tool)),
            LegacyCheck::NoTool => false,
        }
    }
}

/// `tool_args[key]`, if the call has it.
fn arg<'r>(req: &'r Request, key: &LegacyKey) -> Option<&'r Value> {
    let (Value::Map(m), LegacyKey::Str(k)) = (&req.args, key) else {
        return None;
    };
    m.get(&Key::String(k.clone()))
}

/// `session_context[key]`, if it has it: the call's metadata over its ids.
fn context<'r>(req: &'r Request, key: &LegacyKey) -> Option<Ctx<'r>> {
    let LegacyKey::Str(k) = key else { return None };
    if let Value::Map(m) = &req.metadata
        && let Some(v) = m.get(&Key::String(k.clone()))
    {
        return Some(Ctx::Json(v));
    }
    match &**k {
        "session_id" => Some(
            req.session_id
                .as_deref()
                .map_or(Ctx::FreshSession, |s| Ctx::Id(Some(s))),
        ),
        "agent_id" => Some(Ctx::Id(req.agent_id.as_deref())),
        "user_id" => Some(Ctx::Id(req.user_id.as_deref())),
        _ => None,
    }
}

// ------------------------------------------------------------ YAML 1.1

/// PyYAML's implicit resolvers (YAML 1.1), tried in its order.
struct Resolvers {
    bool: Regex,
    float: Regex,
    int: Regex,
    null: Regex,
    timestamp: Regex,
    /// The parts of a timestamp, to build it.
    timestamp_parts: Regex,
}

static RESOLVERS: LazyLock<Option<Resolvers>> = LazyLock::new(|| {
    Some(Resolvers {
        bool: Regex::new("^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF)$").ok()?,
        float: Regex::new(concat!(
            r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
            r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
            r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
            r"|[-+]?\.(?:inf|Inf|INF)",
            r"|\.(?:nan|NaN|NAN))$"
        ))
        .ok()?,
        int: Regex::new(concat!(
            r"^(?:[-+]?0b[0-1_]+",
            r"|[-+]?0[0-7_]+",
            r"|[-+]?(?:0|[1-9][0-9_]*)",
            r"|[-+]?0x[0-9a-fA-F_]+",
            r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+)$"
        ))
        .ok()?,
        null: Regex::new("^(?:~|null|Null|NULL|)$").ok()?,
        timestamp: Regex::new(concat!(
            r"^(?:[0-9]{4}-[0-9]{2}-[0-9]{2}",
            r"|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?",
            r"(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?)$"
        ))
        .ok()?,
        timestamp_parts: Regex::new(concat!(
            r"^(?<year>[0-9]{4})-(?<month>[0-9]{1,2})-(?<day>[0-9]{1,2})",
            r"(?:(?:[Tt]|[ \t]+)(?<hour>[0-9]{1,2}):(?<minute>[0-9]{2}):(?<second>[0-9]{2})(?:\.[0-9]*)?",
            r"(?:[ \t]*(?:Z|[-+](?<tz_hour>[0-9]{1,2})(?::[0-9]{2})?))?)?$"
        ))
        .ok()?,
    })
});

const YAML_TAG: &str = "tag:yaml.org,2002:";

/// What YAML 1.1, as PyYAML resolves and builds it, makes of a plain
/// scalar; an error where PyYAML's loader failed.
pub(crate) fn resolve_plain(text: &str) -> Result<PyValue, String> {
    let r = RESOLVERS.as_ref().ok_or("the YAML 1.1 resolver did not build")?;
    if r.bool.is_match(text) {
        construct_bool(text)
    } else if r.float.is_match(text) {
        construct_float(text)
    } else if r.int.is_match(text) {
        construct_int(text)
    } else if text == "<<" {
        Err("merge keys (`<<`) are not expanded in legacy conditions; write the entries out".into())
    } else if r.null.is_match(text) {
        Ok(PyValue::None)
    } else if r.timestamp.is_match(text) {
        construct_timestamp(text)
    } else if matches!(text, "=" | "!" | "&" | "*") {
        Err(format!(
            "the original server's YAML loader could not read the plain value `{text}`; quote it"
        ))
    } else {
        Ok(PyValue::Str(Arc::from(text)))
    }
}

fn construct_bool(text: &str) -> Result<PyValue, String> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "true" | "on" => Ok(PyValue::Bool(true)),
        "no" | "false" | "off" => Ok(PyValue::Bool(false)),
        _ => Err(format!("`{text}` is not a YAML 1.1 boolean")),
    }
}

/// Splits off a leading sign, as PyYAML's constructors do.
fn split_sign(v: &str) -> (bool, &str) {
    if let Some(rest) = v.strip_prefix('-') {
        (true, rest)
    } else {
        (false, v.strip_prefix('+').unwrap_or(v))
    }
}

/// Python's `float(text)`.
fn python_float(text: &str) -> Result<f64, String> {
    text.trim()
        .parse::<f64>()
        .map_err(|_| format!("`{text}` is not a number"))
}

fn construct_float(text: &str) -> Result<PyValue, String> {
    let lowered = text.replace('_', "").to_ascii_lowercase();
    let (negative, body) = split_sign(&lowered);
    let value = if body == ".inf" {
        f64::INFINITY
    } else if body == ".nan" {
        return Ok(PyValue::Float(f64::NAN.to_bits()));
    } else if body.contains(':') {
        // Base 60, least significant part first, as PyYAML sums it.
        let mut sum = 0.0;
        let mut base: u128 = 1;
        for part in body.rsplit(':') {
            sum += python_float(part)? * base as f64;
            base = base
                .checked_mul(60)
                .ok_or_else(|| format!("`{text}` has too many parts"))?;
        }
        sum
    } else {
        python_float(body)?
    };
    Ok(PyValue::Float(if negative { -value } else { value }.to_bits()))
}

fn construct_int(text: &str) -> Result<PyValue, String> {
    let bad = || format!("`{text}` is not an integer");
    let cleaned = text.replace('_', "");
    let (negative, body) = split_sign(&cleaned);
    let n = if body == "0" {
        Nat::default()
    } else if let Some(bits) = body.strip_prefix("0b") {
        Nat::parse(bits, 2).ok_or_else(bad)?
    } else if let Some(hex) = body.strip_prefix("0x") {
        Nat::parse(hex, 16).ok_or_else(bad)?
    } else if body.starts_with('0') {
        Nat::parse(body, 8).ok_or_else(bad)?
    } else if body.contains(':') {
        // Base 60, most significant part first.
        let mut n = Nat::default();
        for part in body.split(':') {
            let digit = Nat::parse(part, 10).ok_or_else(bad)?;
            n.mul_add(60, 0);
            n = n.add(&digit);
        }
        n
    } else {
        Nat::parse(body, 10).ok_or_else(bad)?
    };
    Ok(n.into_py(negative, text))
}

/// A date or timestamp, built (and so checked) as PyYAML builds one;
/// only its kind matters here, as no JSON value equals it.
fn construct_timestamp(text: &str) -> Result<PyValue, String> {
    let bad = |why: &str| format!("`{text}` is not a valid timestamp: {why}");
    let r = RESOLVERS.as_ref().ok_or("the YAML 1.1 resolver did not build")?;
    let caps = r.timestamp_parts.captures(text).ok_or_else(|| bad("unknown form"))?;
    let num = |name: &str| -> Result<i64, String> {
        caps.name(name)
            .map_or(Ok(0), |m| m.as_str().parse::<i64>().map_err(|_| bad("not a number")))
    };
    let small = |n: i64| i8::try_from(n).map_err(|_| bad("out of range"));
    let year = i16::try_from(num("year")?).map_err(|_| bad("out of range"))?;
    if year < 1 {
        return Err(bad("the year must be 1 or later"));
    }
    jiff::civil::Date::new(year, small(num("month")?)?, small(num("day")?)?).map_err(|e| bad(&e.to_string()))?;
    if caps.name("hour").is_none() {
        return Ok(PyValue::Opaque("a date"));
    }
    jiff::civil::Time::new(small(num("hour")?)?, small(num("minute")?)?, small(num("second")?)?, 0)
        .map_err(|e| bad(&e.to_string()))?;
    if num("tz_hour")? >= 24 {
        return Err(bad("the offset must be under 24 hours"));
    }
    Ok(PyValue::Opaque("a timestamp"))
}

/// A non-negative integer of any size (little-endian 32-bit limbs), for
/// YAML ints beyond `i128`.
#[derive(Default)]
struct Nat(Vec<u32>);

impl Nat {
    /// Python's `int(s, radix)` for a string without sign or underscores.
    fn parse(s: &str, radix: u32) -> Option<Nat> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        let mut n = Nat::default();
        for c in s.chars() {
            n.mul_add(radix, c.to_digit(radix)?);
        }
        Some(n)
    }

    fn mul_add(&mut self, m: u32, a: u32) {
        let mut carry = u64::from(a);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(m) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            self.0.push(carry as u32);
        }
    }

    fn add(&self, other: &Nat) -> Nat {
        let mut out = Vec::with_capacity(self.0.len().max(other.0.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.0.len().max(other.0.len()) {
            let v = u64::from(self.0.get(i).copied().unwrap_or(0))
                + u64::from(other.0.get(i).copied().unwrap_or(0))
                + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        if carry > 0 {
            out.push(carry as u32);
        }
        Nat(out)
    }

    fn bit(&self, i: usize) -> bool {
        self.0.get(i / 32).is_some_and(|l| l >> (i % 32) & 1 == 1)
    }

    fn bit_len(&self) -> usize {
        (0..self.0.len() * 32).rev().find(|&i| self.bit(i)).map_or(0, |i| i + 1)
    }

    fn into_py(self, negative: bool, text: &str) -> PyValue {
        let bits = self.bit_len();
        if bits <= 127 {
            let magnitude = (0..bits)
                .rev()
                .fold(0i128, |acc, i| (acc << 1) | i128::from(self.bit(i)));
            return PyValue::Int(if negative { -magnitude } else { magnitude });
        }
        // Exactly a float when its significant bits fit a float's 53.
        let low = (0..bits).find(|&i| self.bit(i)).unwrap_or(0);
        let as_float = (bits <= 1024 && bits - low <= 53).then(|| {
            let mantissa = (low..bits)
                .rev()
                .fold(0u64, |acc, i| (acc << 1) | u64::from(self.bit(i)));
            let f = mantissa as f64 * 2f64.powi(low as i32);
            if negative { -f } else { f }.to_bits()
        });
        PyValue::BigInt {
            text: Arc::from(text),
            as_float,
        }
    }
}

/// What PyYAML's safe loader makes of a scalar with this text, style and
/// explicit tag.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Result<PyValue, String> {
    let core = tag.and_then(|t| t.strip_prefix(YAML_TAG));
    match (tag, core) {
        // PyYAML resolves a `!`-tagged scalar as a plain one, quoted or not.
        (None, _) if style == ScalarStyle::Plain => resolve_plain(text),
        (Some("!"), _) => resolve_plain(text),
        (None, _) => Ok(PyValue::Str(Arc::from(text))),
        (_, Some("str")) => Ok(PyValue::Str(Arc::from(text))),
        (_, Some("int")) => construct_int(text),
        (_, Some("float")) => construct_float(text),
        (_, Some("bool")) => construct_bool(text),
        (_, Some("null")) => Ok(PyValue::None),
        (_, Some("binary")) => Ok(PyValue::Opaque("bytes")),
        (_, Some("timestamp")) => construct_timestamp(text),
        (Some(t), _) => Err(format!("the tag `{t}` cannot be read on this value")),
    }
}

fn not_read(tag: &str) -> String {
    format!("the tag `{tag}` cannot be read on this value")
}

/// A mapping's entries as Python's dict keeps them: one per key, the last
/// value winning. A list or mapping key is an error, as in Python.
fn dict(entries: Vec<(PyValue, PyValue)>) -> Result<PyValue, String> {
    let mut out: Vec<(PyValue, PyValue)> = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        if matches!(k, PyValue::List(_) | PyValue::Dict(_)) {
            return Err("a mapping key must be a scalar".into());
        }
        match out.iter_mut().find(|(old, _)| *old == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    Ok(PyValue::Dict(out))
}

/// The Python value of a located YAML node; `same` is serde_yaml's reading
/// of the same node, used where the node is an alias.
fn py_from_node(node: &YNode, same: Option<&serde_yaml::Value>) -> Result<PyValue, String> {
    match node {
        YNode::Scalar { value, style, tag, .. } => scalar(value, *style, tag.as_deref()),
        YNode::Seq { items, tag, .. } => {
            let seq = same.and_then(serde_yaml::Value::as_sequence);
            let list = items
                .iter()
                .enumerate()
                .map(|(i, item)| py_from_node(item, seq.and_then(|s| s.get(i))))
                .collect::<Result<Vec<_>, _>>()?;
            match tag.as_deref() {
                None | Some("!") => Ok(PyValue::List(list)),
                Some(t) => match t.strip_prefix(YAML_TAG) {
                    Some("seq") => Ok(PyValue::List(list)),
                    Some("omap" | "pairs") => Ok(PyValue::Opaque("ordered pairs")),
                    _ => Err(not_read(t)),
                },
            }
        }
        YNode::Map { entries, tag, .. } => {
            let map = same.and_then(serde_yaml::Value::as_mapping);
            let mut out = Vec::with_capacity(entries.len());
            for (i, (k, v)) in entries.iter().enumerate() {
                let pair = map.and_then(|m| m.iter().nth(i));
                out.push((py_from_node(k, pair.map(|p| p.0))?, py_from_node(v, pair.map(|p| p.1))?));
            }
            let value = dict(out)?;
            match tag.as_deref() {
                None | Some("!") => Ok(value),
                Some(t) => match t.strip_prefix(YAML_TAG) {
                    Some("map") => Ok(value),
                    Some("set") => Ok(PyValue::Opaque("a set")),
                    _ => Err(not_read(t)),
                },
            }
        }
        YNode::Alias { .. } => same
            .map(py_from_serde)
            .unwrap_or_else(|| Err("an alias here cannot be read".into())),
    }
}

/// The Python value of what serde_yaml read (YAML 1.2: `yes` is text).
fn py_from_serde(v: &serde_yaml::Value) -> Result<PyValue, String> {
    Ok(match v {
        serde_yaml::Value::Null => PyValue::None,
        serde_yaml::Value::Bool(b) => PyValue::Bool(*b),
        serde_yaml::Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => PyValue::Int(i128::from(i)),
            (_, Some(u), _) => PyValue::Int(i128::from(u)),
            (_, _, Some(f)) => PyValue::Float(f.to_bits()),
            _ => return Err(format!("the number `{n}` cannot be read")),
        },
        serde_yaml::Value::String(s) => PyValue::Str(Arc::from(s.as_str())),
        serde_yaml::Value::Sequence(items) => PyValue::List(items.iter().map(py_from_serde).collect::<Result<_, _>>()?),
        serde_yaml::Value::Mapping(m) => dict(
            m.iter()
                .map(|(k, v)| Ok((py_from_serde(k)?, py_from_serde(v)?)))
                .collect::<Result<_, String>>()?,
        )?,
        serde_yaml::Value::Tagged(t) => return Err(not_read(&t.tag.to_string())),
    })
}

// ------------------------------------------------------------ reading

/// A problem found in a legacy rule's conditions: what, a hint, where.
#[derive(Debug)]
pub(crate) struct Problem {
    pub message: String,
    pub help: Option<String>,
    pub span: Option<Range<usize>>,
}

/// A legacy rule's conditions: its checks, and the errors and lints found
/// reading them.
#[derive(Debug, Default)]
pub(crate) struct Conditions {
    pub checks: Vec<LegacyCheck>,
    pub errors: Vec<Problem>,
    pub lints: Vec<Problem>,
}

/// A node to read: located (with a span) where the tree has it, and as
/// serde_yaml read it (for aliases, and when there is no tree).
#[derive(Clone, Copy)]
struct View<'a> {
    node: Option<&'a YNode>,
    same: Option<&'a serde_yaml::Value>,
}

impl<'a> View<'a> {
    fn span(&self) -> Option<Range<usize>> {
        self.node.map(YNode::span)
    }

    fn py(&self) -> Result<PyValue, String> {
        match (self.node, self.same) {
            (Some(n), same) => py_from_node(n, same),
            (None, Some(v)) => py_from_serde(v),
            (None, None) => Err("the value cannot be read".into()),
        }
    }

    /// The entries of a mapping; else what was found instead.
    fn entries(&self) -> Result<Vec<(View<'a>, View<'a>)>, String> {
        let map = self.same.and_then(serde_yaml::Value::as_mapping);
        match self.node {
            Some(YNode::Map { entries, tag, .. })
                if tag
                    .as_deref()
                    .is_none_or(|t| t == "!" || t.strip_prefix(YAML_TAG) == Some("map")) =>
            {
                Ok(entries
                    .iter()
                    .enumerate()
                    .map(|(i, (k, v))| {
                        let pair = map.and_then(|m| m.iter().nth(i));
                        (
                            View {
                                node: Some(k),
                                same: pair.map(|p| p.0),
                            },
                            View {
                                node: Some(v),
                                same: pair.map(|p| p.1),
                            },
                        )
                    })
                    .collect())
            }
            Some(YNode::Alias { .. }) | None if map.is_some() => Ok(map
                .into_iter()
                .flat_map(|m| m.iter())
                .map(|(k, v)| {
                    (
                        View {
                            node: None,
                            same: Some(k),
                        },
                        View {
                            node: None,
                            same: Some(v),
                        },
                    )
                })
                .collect()),
            _ => Err(match self.py() {
                Ok(v) => v.kind().to_owned(),
                Err(e) => e,
            }),
        }
    }

    fn plain_text(&self) -> Option<&'a str> {
        match self.node {
            Some(YNode::Scalar {
                value,
                style: ScalarStyle::Plain,
                tag: None,
                ..
            }) => Some(value),
            _ => None,
        }
    }
}

const KINDS: [&str; 3] = ["arg_contains", "arg_not_contains", "session_context"];

/// Reads a legacy rule's `conditions:`: `node` is its located node, `same`
/// serde_yaml's reading of it; both are `None` when the rule has none.
pub(crate) fn read_conditions(node: Option<&YNode>, same: Option<&serde_yaml::Value>) -> Conditions {
    let mut out = Conditions::default();
    if node.is_none() && same.is_none() {
        return out;
    }
    let view = View { node, same };
    let sections = match view.entries() {
        Ok(s) => s,
        Err(found) => {
            out.errors.push(Problem {
                message: format!("`conditions` must be a mapping, found {found}"),
                help: Some(format!(
                    "give it one or more of {}, or leave `conditions` out; the original server failed on every call reaching this rule",
                    KINDS.map(|k| format!("`{k}`")).join(", ")
                )),
                span: view.span(),
            });
            return out;
        }
    };
    for (k, v) in sections {
        let kind = match k.py() {
            Ok(PyValue::Str(s)) if KINDS.contains(&&*s) => s,
            Ok(other) => {
                out.errors.push(Problem {
                    message: format!("unknown legacy condition `{}`", k.plain_text().map_or_else(|| other.to_string(), str::to_owned)),
                    help: Some(format!(
                        "the legacy conditions are {}; the original server ignored any other (so the rule matched more calls than it says), which Tame refuses: remove it, or write the rule with a `condition`",
                        KINDS.map(|k| format!("`{k}`")).join(", ")
                    )),
                    span: k.span(),
                });
                continue;
            }
            Err(e) => {
                out.errors.push(Problem {
                    message: e,
                    help: None,
                    span: k.span(),
                });
                continue;
            }
        };
        let entries = match v.entries() {
            Ok(e) => e,
            Err(found) => {
                out.errors.push(Problem {
                    message: format!("`{kind}` must be a mapping of names to values, found {found}"),
                    help: Some("the original server failed on every call reaching this rule".into()),
                    span: v.span().or(k.span()),
                });
                continue;
            }
        };
        for (name, value) in entries {
            let key = match name.py() {
                Ok(PyValue::Str(s)) => LegacyKey::Str(s),
                Ok(other) => {
                    out.lints.push(Problem {
                        message: format!(
                            "`{}` in `{kind}` is read as {} ({other}), which names no argument or context entry",
                            name.plain_text().unwrap_or("this key"),
                            other.kind()
                        ),
                        help: Some("the original server's YAML 1.1 loader read it so, and the check never held; quote the key to name an entry".into()),
                        span: name.span(),
                    });
                    LegacyKey::NotText(other)
                }
                Err(e) => {
                    out.errors.push(Problem {
                        message: format!("`{kind}`: {e}"),
                        help: None,
                        span: name.span(),
                    });
                    continue;
                }
            };
            let py = match value.py() {
                Ok(py) => py,
                Err(e) => {
                    out.errors.push(Problem {
                        message: format!("`{kind}.{key}`: {e}"),
                        help: None,
                        span: value.span(),
                    });
                    continue;
                }
            };
            lint_value(&mut out.lints, &kind, &key, &py, value);
            let star = matches!(&py, PyValue::Str(s) if &**s == "*");
            out.checks.push(match &*kind {
                "arg_contains" => LegacyCheck::ArgContains {
                    key,
                    expected: if star { Expected::Present } else { Expected::Equal(py) },
                },
                "arg_not_contains" => LegacyCheck::ArgNotContains { key, forbidden: py },
                _ => LegacyCheck::SessionContext {
                    key,
                    expected: if star { Expected::Present } else { Expected::Equal(py) },
                },
            });
        }
    }
    out
}

/// How a legacy rule's `tools` decide.
#[derive(Debug)]
pub(crate) enum ToolsRead {
    /// Tame's tool switch means what the original meant: names and `*`, `?`
    /// globs, or every tool when `tools` is left out.
    Switch,
    /// The rule holds for every tool name, and this check decides (regex
    /// patterns, `tools: []`).
    Check(LegacyCheck),
    Error(Problem),
}

/// Reads a legacy rule's `tools` (its located node, `None` when left out).
///
/// The original matched a name against each pattern `p` (other than `*`)
/// as Python's `re.match("^" + p.replace("*", ".*").replace("?", ".") + "$",
/// name)`. Names and `*`, `?` mean the same in Tame's tool switch; a
/// pattern with other regex syntax (`fs.read`, `read_(file|dir)`) is
/// matched as that regex.
pub(crate) fn read_tools(node: Option<&YNode>) -> ToolsRead {
    let error = |message: String, node: &YNode| {
        ToolsRead::Error(Problem {
            message,
            help: Some("the original server failed on every call reaching this rule".into()),
            span: Some(node.span()),
        })
    };
    let Some(node) = node else { return ToolsRead::Switch };
    let items = match node {
        YNode::Seq { items, .. } => items,
        YNode::Alias { .. } => return ToolsRead::Switch,
        other => {
            let found = py_from_node(other, None).map_or_else(|e| e, |v| v.kind().to_owned());
            return error(format!("`tools` must be a list of tool names, found {found}"), other);
        }
    };
    if items.is_empty() {
        return ToolsRead::Check(LegacyCheck::NoTool);
    }
    let mut patterns = Vec::with_capacity(items.len());
    for item in items {
        match py_from_node(item, None) {
            Ok(PyValue::Str(p)) => patterns.push(p),
            Ok(other) => {
                return error(
                    format!("a tool name must be text, found {} ({other})", other.kind()),
                    item,
                );
            }
            Err(e) => return error(e, item),
        }
    }
    const REGEX_SYNTAX: &[char] = &['.', '+', '(', ')', '[', ']', '{', '}', '|', '\\', '^', '$'];
    if !patterns.iter().any(|p| &**p != "*" && p.contains(REGEX_SYNTAX)) {
        return ToolsRead::Switch;
    }
    let mut regexes = Vec::with_capacity(patterns.len());
    for p in &patterns {
        let source = if &**p == "*" {
            String::from("(?s).*")
        } else {
            // `^(?:^p$)` anchored at the start as `re.match` is; Python's
            // `$` also matches before a final newline.
            format!("^(?:^{}\\n?\\z)", p.replace('*', ".*").replace('?', "."))
        };
        match Regex::new(&source) {
            Ok(r) => regexes.push(r),
            Err(e) => {
                return error(
                    format!(
                        "tool pattern `{p}` is read as a regex, as the original server read it, and it does not compile: {e}"
                    ),
                    node,
                );
            }
        }
    }
    ToolsRead::Check(LegacyCheck::ToolMatches(ToolPatterns {
        source: Arc::from(patterns.iter().map(|p| &**p).collect::<Vec<_>>().join(", ")),
        regexes: Arc::from(regexes),
    }))
}

// ------------------------------------------------------------ lints

/// The current format's expression for a legacy key.
fn lhs(kind: &str, key: &LegacyKey) -> String {
    let name = key.to_string();
    let ident = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let root = if kind == "session_context" {
        match name.as_str() {
            "agent_id" => return "agent".into(),
            "user_id" => return "user".into(),
            "session_id" => return "session.id".into(),
            _ => "metadata",
        }
    } else {
        "args"
    };
    if ident {
        format!("{root}.{name}")
    } else {
        format!("{root}[{}]", quoted(&name))
    }
}

fn quoted(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// "The call has argument `key`" in the current format.
fn has_arg(key: &LegacyKey) -> String {
    let lhs = lhs("arg_contains", key);
    if lhs.contains('[') {
        format!("({} in args)", quoted(&key.to_string()))
    } else {
        format!("has({lhs})")
    }
}

/// `test` on the value of `key` as a condition of `kind`: negated, and
/// holding for a missing argument, for `arg_not_contains`.
fn condition_for(kind: &str, key: &LegacyKey, test: &str) -> String {
    if kind == "arg_not_contains" {
        format!("condition: '!{} || !({test})'", has_arg(key))
    } else {
        format!("condition: '{test}'")
    }
}

/// The CEL literal of a scalar, if it has one.
fn cel_literal(v: &PyValue) -> Option<String> {
    match v {
        PyValue::None => Some("null".into()),
        PyValue::Bool(b) => Some(b.to_string()),
        PyValue::Int(i) => Some(i.to_string()),
        PyValue::Float(bits) if f64::from_bits(*bits).is_finite() => Some(format!("{:?}", f64::from_bits(*bits))),
        PyValue::Str(s) => Some(quoted(s)),
        _ => None,
    }
}

fn lint_value(lints: &mut Vec<Problem>, kind: &str, key: &LegacyKey, value: &PyValue, view: View<'_>) {
    let mut push = |message: String, help: String| {
        lints.push(Problem {
            message,
            help: Some(help),
            span: view.span(),
        })
    };
    match value {
        PyValue::Str(s) if &**s == "*" && kind == "arg_not_contains" => push(
            "`\"*\"` in `arg_not_contains` is the text `*`, not a wildcard".into(),
            format!(
                "only `arg_contains` and `session_context` read `\"*\"` as \"present\", as in the original server; for \"no `{key}` argument\" write `condition: '!{}'`",
                has_arg(key)
            ),
        ),
        PyValue::Str(s) => {
            if let Some((message, cond)) = suspicious(kind, key, s) {
                push(
                    message,
                    format!(
                        "legacy values are compared for equality, as in the original server; the equivalent in the current format is `{cond}`"
                    ),
                );
            }
        }
        PyValue::List(items) if !items.is_empty() => {
            if let Some(literals) = items.iter().map(cel_literal).collect::<Option<Vec<_>>>() {
                let test = format!("{} in [{}]", lhs(kind, key), literals.join(", "));
                push(
                    format!("`{key}` is compared with the whole list, not with each of its items"),
                    format!(
                        "the original server compared lists for equality; if any of the items was meant, the current format says `{}`",
                        condition_for(kind, key, &test)
                    ),
                );
            }
        }
        _ => {}
    }
    // Plain values that YAML 1.1 reads other than as YAML 1.2 (and most
    // readers) would.
    if let Some(text) = view.plain_text() {
        let body = text.trim_start_matches(['-', '+']);
        let surprising = match value {
            PyValue::Bool(_) => !matches!(text.to_ascii_lowercase().as_str(), "true" | "false"),
            PyValue::Int(_) | PyValue::BigInt { .. } => {
                text.contains([':', '_'])
                    || (body.len() > 1 && body.starts_with('0') && !body.starts_with("0x") && !body.starts_with("0b"))
            }
            PyValue::Float(_) => text.contains([':', '_']),
            PyValue::Opaque(_) => true,
            _ => false,
        };
        if surprising {
            push(
                format!(
                    "the plain value `{text}` is read as {} ({value}), not as text",
                    value.kind()
                ),
                format!(
                    "the original server's YAML 1.1 loader read it so, and Tame does too; quote it (`\"{text}\"`) to compare text"
                ),
            );
        }
    }
}

/// If a legacy text value looks like it meant a regex, a range or a time
/// window, the message and the equivalent `condition`.
pub(crate) fn suspicious(kind: &str, key: &LegacyKey, value: &str) -> Option<(String, String)> {
    let lhs = lhs(kind, key);
    let v = value.trim();
    // Ranges: >50, >= 10, <3, <=7.5, 10-20
    for op in [">=", "<=", ">", "<"] {
        if let Some(num) = v.strip_prefix(op)
            && num.trim().parse::<f64>().is_ok()
        {
            return Some((
                format!("legacy value `{value}` is compared for equality, not as a range"),
                condition_for(kind, key, &format!("{lhs} {op} {}", num.trim())),
            ));
        }
    }
    let time = |s: &str| {
        let s = s.trim();
        let Some((h, m)) = s.split_once(':') else {
            return false;
        };
        h.len() <= 2 && m.len() == 2 && h.parse::<u8>().is_ok_and(|h| h < 24) && m.parse::<u8>().is_ok_and(|m| m < 60)
    };
    if let Some((a, b)) = v.split_once('-') {
        if time(a) && time(b) {
            let minutes = r#"now.getHours("UTC") * 60 + now.getMinutes("UTC")"#;
            return Some((
                format!("legacy value `{value}` is compared for equality, not as a time window"),
                format!(
                    "condition: '{minutes} >= {} and {minutes} < {}'",
                    clock_minutes(a),
                    clock_minutes(b)
                ),
            ));
        }
        if a.trim().parse::<f64>().is_ok() && b.trim().parse::<f64>().is_ok() {
            return Some((
                format!("legacy value `{value}` is compared for equality, not as a range"),
                condition_for(kind, key, &format!("{lhs} >= {} and {lhs} <= {}", a.trim(), b.trim())),
            ));
        }
    }
    let alternation = v.split('|').count() > 1 && v.split('|').all(|part| !part.is_empty());
    let regexy = alternation
        || v.starts_with('^')
        || v.ends_with('$')
        || v.contains(".*")
        || v.contains(".+")
        || v.contains("\\d")
        || v.contains("\\w")
        || v.contains("\\s")
        || v.contains("\\.")
        || (v.contains('[') && v.contains(']'));
    if regexy && regex::Regex::new(v).is_ok() {
        return Some((
            format!("legacy value `{value}` looks like a regex but is compared for equality"),
            condition_for(kind, key, &format!("{lhs}.matches({})", quoted(v))),
        ));
    }
    None
}

fn clock_minutes(t: &str) -> u32 {
    let (h, m) = t.trim().split_once(':').unwrap_or((t, "0"));
    h.parse::<u32>().unwrap_or(0) * 60 + m.parse::<u32>().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn py(text: &str) -> PyValue {
        resolve_plain(text).unwrap()
    }

    fn float(f: f64) -> PyValue {
        PyValue::Float(f.to_bits())
    }

    fn s(text: &str) -> PyValue {
        PyValue::Str(Arc::from(text))
    }

    #[test]
    fn plain_scalars_resolve_as_yaml_1_1() {
        assert_eq!(py("yes"), PyValue::Bool(true));
        assert_eq!(py("Off"), PyValue::Bool(false));
        assert_eq!(py("y"), s("y"));
        assert_eq!(py("0755"), PyValue::Int(493));
        assert_eq!(py("0o17"), s("0o17"));
        assert_eq!(py("0x1F"), PyValue::Int(31));
        assert_eq!(py("-0b101"), PyValue::Int(-5));
        assert_eq!(py("1_000"), PyValue::Int(1000));
        assert_eq!(py("1:30"), PyValue::Int(90));
        assert_eq!(py("0:30"), s("0:30"));
        assert_eq!(py("09"), s("09"));
        assert_eq!(py("1:30.5"), float(90.5));
        assert_eq!(py("1e3"), s("1e3"));
        assert_eq!(py("1.0e+3"), float(1000.0));
        assert_eq!(py("1."), float(1.0));
        assert_eq!(py(".5"), float(0.5));
        assert_eq!(py("-.5"), s("-.5"));
        assert_eq!(py("-.inf"), float(f64::NEG_INFINITY));
        assert_eq!(py("~"), PyValue::None);
        assert_eq!(py(""), PyValue::None);
        assert_eq!(py("2024-01-01"), PyValue::Opaque("a date"));
        assert_eq!(py("2001-12-14t21:59:43.10-05:00"), PyValue::Opaque("a timestamp"));
        assert_eq!(py("hello"), s("hello"));
        assert!(resolve_plain("0b_").is_err());
        assert!(resolve_plain("2024-02-30").is_err());
        assert!(resolve_plain("<<").is_err());
    }

    #[test]
    fn ints_beyond_128_bits_keep_their_exact_float() {
        // 2^128 is a float exactly; 2^128 + 1 is none.
        let PyValue::BigInt { as_float, .. } = py("340282366920938463463374607431768211456") else {
            panic!("not a big int")
        };
        assert_eq!(as_float.map(f64::from_bits), Some(2f64.powi(128)));
        let PyValue::BigInt { as_float, .. } = py("340282366920938463463374607431768211457") else {
            panic!("not a big int")
        };
        assert_eq!(as_float, None);
        assert_eq!(py("170141183460469231731687303715884105727"), PyValue::Int(i128::MAX));
    }

    #[test]
    fn equality_is_pythons() {
        let eq = |call: serde_json::Value, yaml: &str| py_equals(&crate::json_to_value(&call), &py(yaml));
        assert!(eq(json!(1), "1.0"));
        assert!(eq(json!(1.0), "1"));
        assert!(eq(json!(true), "1"));
        assert!(eq(json!(false), "0.0"));
        assert!(eq(json!(true), "yes"));
        assert!(!eq(json!("1"), "1"));
        assert!(!eq(json!(9_007_199_254_740_993_i64), "9007199254740992.0"));
        assert!(eq(json!(9_007_199_254_740_992_i64), "9007199254740992.0"));
        assert!(eq(json!(-0.0), "0"));
        assert!(!eq(json!(1.0), ".nan"));
        assert!(eq(json!(null), "~"));
        assert!(!eq(json!(null), "0"));
        assert!(!eq(json!("2024-01-01"), "2024-01-01"));
        assert!(eq(
            json!(3.402_823_669_209_385e38),
            "340282366920938463463374607431768211456"
        ));
        assert!(!eq(json!(u64::MAX), "18446744073709551616"));
        let list = PyValue::List(vec![PyValue::Int(1), PyValue::Bool(true)]);
        assert!(py_equals(&crate::json_to_value(&json!([1.0, 1])), &list));
        assert!(!py_equals(&crate::json_to_value(&json!([1])), &list));
        let dict = PyValue::Dict(vec![(s("a"), PyValue::Int(1))]);
        assert!(py_equals(&crate::json_to_value(&json!({"a": true})), &dict));
        assert!(!py_equals(&crate::json_to_value(&json!({"a": 1, "b": 1})), &dict));
        let int_key = PyValue::Dict(vec![(PyValue::Int(1), s("a"))]);
        assert!(!py_equals(&crate::json_to_value(&json!({"1": "a"})), &int_key));
    }

    #[test]
    fn suspicious_values_get_an_equivalent_condition() {
        let key = |k: &str| LegacyKey::Str(Arc::from(k));
        let (m, c) = suspicious("arg_contains", &key("amount"), ">50").unwrap();
        assert!(m.contains("range"));
        assert_eq!(c, "condition: 'args.amount > 50'");
        let (_, c) = suspicious("arg_contains", &key("path"), "^/etc/.*").unwrap();
        assert_eq!(c, r#"condition: 'args.path.matches("^/etc/.*")'"#);
        let (_, c) = suspicious("arg_not_contains", &key("query"), "password|secret").unwrap();
        assert_eq!(
            c,
            r#"condition: '!has(args.query) || !(args.query.matches("password|secret"))'"#
        );
        let (_, c) = suspicious("arg_contains", &key("file-name"), "^x$").unwrap();
        assert_eq!(c, r#"condition: 'args["file-name"].matches("^x$")'"#);
        let (_, c) = suspicious("session_context", &key("tier"), "1-3").unwrap();
        assert_eq!(c, "condition: 'metadata.tier >= 1 and metadata.tier <= 3'");
        let (m, _) = suspicious("session_context", &key("hours"), "09:00-17:00").unwrap();
        assert!(m.contains("time window"));
        assert!(suspicious("arg_contains", &key("path"), "/etc").is_none());
        assert!(suspicious("arg_contains", &key("path"), "file.txt").is_none());
    }
}
