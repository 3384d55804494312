//! CEL's strings extension: `charAt`, `indexOf`, `lastIndexOf`, `join`,
//! `split`, `replace`, `substring`, `format`, `strings.quote`, `reverse`,
//! `lowerAscii`, `upperAscii`. Indices count Unicode code points; an index
//! out of range is an error (`index out of range: 30`), as the extension's
//! specification and conformance tests say.

use std::fmt::Write as _;
use std::sync::Arc;

use tame_lang::Value;

use crate::time;

fn string(s: impl Into<Arc<str>>) -> Value {
    Value::String(s.into())
}

fn out_of_range(i: i64) -> String {
    format!("index out of range: {i}")
}

/// The number of code points of `s`, as an `i64`.
fn len_cp(s: &str) -> i64 {
    i64::try_from(s.chars().count()).unwrap_or(i64::MAX)
}

/// The byte offset of code point `i` of `s` (`i` may be the length: the
/// end); an error when `i` is negative or past the end.
fn byte_offset(s: &str, i: i64) -> Result<usize, String> {
    let n = usize::try_from(i).map_err(|_| out_of_range(i))?;
    match s.char_indices().nth(n) {
        Some((b, _)) => Ok(b),
        None if s.chars().count() == n => Ok(s.len()),
        None => Err(out_of_range(i)),
    }
}

/// The code point index of byte offset `b` (a char boundary) of `s`.
fn cp_index(s: &str, b: usize) -> i64 {
    len_cp(s.get(..b).unwrap_or(s))
}

/// `s.charAt(i)`: the character at `i`, `""` at the end.
pub(crate) fn char_at(s: &str, i: i64) -> Result<Value, String> {
    let b = byte_offset(s, i)?;
    let c: String = s.get(b..).unwrap_or_default().chars().take(1).collect();
    Ok(string(c))
}

/// `s.indexOf(sub[, from])`.
pub(crate) fn index_of(s: &str, sub: &str, from: Option<i64>) -> Result<Value, String> {
    let from = from.unwrap_or(0);
    let start = byte_offset(s, from)?;
    let rest = s.get(start..).unwrap_or_default();
    let found = rest.find(sub).map_or(-1, |b| from + cp_index(rest, b));
    Ok(Value::Int(found))
}

/// `s.lastIndexOf(sub[, last])`: `last` is the last code point index a
/// match may start at.
pub(crate) fn last_index_of(s: &str, sub: &str, last: Option<i64>) -> Result<Value, String> {
    let Some(last) = last else {
        let found = s.rfind(sub).map_or(-1, |b| cp_index(s, b));
        return Ok(Value::Int(found));
    };
    let start = byte_offset(s, last)?;
    if sub.is_empty() {
        return Ok(Value::Int(last));
    }
    // A match starting at or before `start` ends at or before this; round
    // down to a char boundary (a match ends on one).
    let mut end = start.saturating_add(sub.len()).min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let head = s.get(..end).unwrap_or_default();
    let found = head.rfind(sub).map_or(-1, |b| cp_index(s, b));
    Ok(Value::Int(found))
}

/// `list.join([sep])`: every item must be a string.
pub(crate) fn join(items: &[Value], sep: &str) -> Result<Value, String> {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let Value::String(s) = item else {
            return Err(format!(
                "no such overload: `join` needs a list of strings, item {i} is {}",
                item.type_of().name()
            ));
        };
        if i > 0 {
            out.push_str(sep);
        }
        out.push_str(s);
    }
    Ok(string(out))
}

/// `s.split(sep[, limit])`: as Go's `strings.SplitN` (a limit of 0 gives
/// no parts, a negative limit all of them; an empty separator splits
/// into characters).
pub(crate) fn split(s: &str, sep: &str, limit: Option<i64>) -> Value {
    let limit = limit.unwrap_or(-1);
    let parts: Vec<Value> = if limit == 0 {
        Vec::new()
    } else if sep.is_empty() {
        let mut chars: Vec<Value> = Vec::new();
        let max = usize::try_from(limit).unwrap_or(usize::MAX);
        for (i, (b, c)) in s.char_indices().enumerate() {
            if i + 1 == max {
                chars.push(string(s.get(b..).unwrap_or_default()));
                break;
            }
            chars.push(string(c.to_string()));
        }
        chars
    } else {
        match usize::try_from(limit) {
            Ok(n) => s.splitn(n, sep).map(string).collect(),
            Err(_) => s.split(sep).map(string).collect(),
        }
    };
    Value::List(Arc::from(parts))
}

/// `s.replace(old, new[, limit])`: the first `limit` occurrences (all for
/// a negative limit, none for 0).
pub(crate) fn replace(s: &str, old: &str, new: &str, limit: Option<i64>) -> Value {
    match limit.map(usize::try_from) {
        None | Some(Err(_)) => string(s.replace(old, new)),
        Some(Ok(n)) => string(s.replacen(old, new, n)),
    }
}

/// `s.substring(start[, end])`, end exclusive.
pub(crate) fn substring(s: &str, start: i64, end: Option<i64>) -> Result<Value, String> {
    let b = byte_offset(s, start)?;
    let e = match end {
        None => s.len(),
        Some(end) => {
            let e = byte_offset(s, end)?;
            if end < start {
                return Err(format!("invalid substring range. start: {start}, end: {end}"));
            }
            e
        }
    };
    Ok(string(s.get(b..e).unwrap_or_default()))
}

/// `s.reverse()`: the code points in reverse order.
pub(crate) fn reverse(s: &str) -> Value {
    string(s.chars().rev().collect::<String>())
}

/// `s.lowerAscii()`: ASCII letters lowered, every other character kept.
pub(crate) fn lower_ascii(s: &str) -> Value {
    string(s.to_ascii_lowercase())
}

/// `s.upperAscii()`: ASCII letters raised, every other character kept.
pub(crate) fn upper_ascii(s: &str) -> Value {
    string(s.to_ascii_uppercase())
}

/// `strings.quote(s)`: a double-quoted CEL string literal of `s`.
pub(crate) fn quote(s: &str) -> Value {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    string(out)
}

// ---------------------------------------------------------------------------
// format

/// One `%` clause: the conversion and its precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Clause {
    conversion: char,
    precision: Option<usize>,
}

fn clause_error(msg: impl std::fmt::Display) -> String {
    format!("could not parse formatting clause: {msg}")
}

fn formatting_error(msg: impl std::fmt::Display) -> String {
    format!("error during formatting: {msg}")
}

/// `fmt.format(args)`: see the registry's entry for the clauses.
pub(crate) fn format(fmt: &str, args: &[Value]) -> Result<Value, String> {
    let mut out = String::with_capacity(fmt.len());
    let mut chars = fmt.chars().peekable();
    let mut next_arg = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'%').is_some() {
            out.push('%');
            continue;
        }
        let mut precision = None;
        if chars.next_if_eq(&'.').is_some() {
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            let p = digits
                .parse::<usize>()
                .map_err(|_| clause_error("a precision needs digits after `.`"))?;
            precision = Some(p);
        }
        let conversion = chars
            .next()
            .ok_or_else(|| clause_error("the string ends in the middle of a clause"))?;
        if !matches!(conversion, 's' | 'd' | 'f' | 'e' | 'x' | 'X' | 'o' | 'b') {
            return Err(clause_error(format!("unrecognized formatting clause \"{conversion}\"")));
        }
        if precision.is_some() && !matches!(conversion, 'f' | 'e') {
            return Err(clause_error(format!("clause \"{conversion}\" takes no precision")));
        }
        let arg = args
            .get(next_arg)
            .ok_or_else(|| format!("index {next_arg} out of range"))?;
        next_arg += 1;
        format_clause(Clause { conversion, precision }, arg, &mut out)?;
    }
    Ok(string(out))
}

fn type_name(v: &Value) -> String {
    v.type_of().name()
}

/// A double's special values as the extension writes them.
fn special_double(d: f64) -> Option<&'static str> {
    if d.is_nan() {
        Some("NaN")
    } else if d.is_infinite() {
        Some(if d > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        None
    }
}

#[expect(
    clippy::cast_precision_loss,
    reason = "the extension formats integers as doubles for %f and %e"
)]
fn as_double(v: &Value) -> Option<f64> {
    match v {
        Value::Double(d) => Some(*d),
        Value::Int(i) => Some(*i as f64),
        Value::Uint(u) => Some(*u as f64),
        _ => None,
    }
}

/// `{:e}` with a sign and at least two exponent digits: `1.5e+03`.
fn scientific(d: f64, precision: usize) -> String {
    crate::funcs::go_exponent(format!("{d:.precision$e}"))
}

/// An integer in base 8 (`{:o}`) or 2 (`{:b}`), `-` before a negative one.
fn in_base(v: &Value, binary: bool) -> Option<String> {
    let digits = |u: u64| if binary { format!("{u:b}") } else { format!("{u:o}") };
    match v {
        Value::Int(i) => Some(format!("{}{}", if *i < 0 { "-" } else { "" }, digits(i.unsigned_abs()))),
        Value::Uint(u) => Some(digits(*u)),
        Value::Bool(b) if binary => Some(u8::from(*b).to_string()),
        _ => None,
    }
}

fn format_clause(clause: Clause, v: &Value, out: &mut String) -> Result<(), String> {
    let precision = clause.precision.unwrap_or(6);
    match clause.conversion {
        's' => format_string(v, out),
        'd' => match v {
            Value::Int(i) => {
                let _ = write!(out, "{i}");
                Ok(())
            }
            Value::Uint(u) => {
                let _ = write!(out, "{u}");
                Ok(())
            }
            Value::Double(_) => format_string(v, out),
            other => Err(formatting_error(format!(
                "decimal clause can only be used on integers, was given {}",
                type_name(other)
            ))),
        },
        'f' => {
            let d = as_double(v).ok_or_else(|| {
                formatting_error(format!(
                    "fixed-point clause can only be used on doubles, was given {}",
                    type_name(v)
                ))
            })?;
            match special_double(d) {
                Some(s) => out.push_str(s),
                None => {
                    let _ = write!(out, "{d:.precision$}");
                }
            }
            Ok(())
        }
        'e' => {
            let d = as_double(v).ok_or_else(|| {
                formatting_error(format!(
                    "scientific clause can only be used on doubles, was given {}",
                    type_name(v)
                ))
            })?;
            match special_double(d) {
                Some(s) => out.push_str(s),
                None => out.push_str(&scientific(d, precision)),
            }
            Ok(())
        }
        'x' | 'X' => {
            let upper = clause.conversion == 'X';
            let text = match v {
                Value::Int(i) => {
                    let sign = if *i < 0 { "-" } else { "" };
                    format!("{sign}{:x}", i.unsigned_abs())
                }
                Value::Uint(u) => format!("{u:x}"),
                Value::String(s) => hex_bytes(s.as_bytes()),
                Value::Bytes(b) => hex_bytes(b),
                other => {
                    return Err(formatting_error(format!(
                        "only integers, byte buffers, and strings can be formatted as hex, was given {}",
                        type_name(other)
                    )));
                }
            };
            out.push_str(&if upper { text.to_ascii_uppercase() } else { text });
            Ok(())
        }
        'o' => {
            let text = in_base(v, false).ok_or_else(|| {
                formatting_error(format!(
                    "octal clause can only be used on integers, was given {}",
                    type_name(v)
                ))
            })?;
            out.push_str(&text);
            Ok(())
        }
        // 'b'
        _ => {
            let text = in_base(v, true).ok_or_else(|| {
                formatting_error(format!(
                    "only integers and bools can be formatted as binary, was given {}",
                    type_name(v)
                ))
            })?;
            out.push_str(&text);
            Ok(())
        }
    }
}

fn hex_bytes(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for byte in b {
        let _ = write!(s, "{byte:02x}");
    }
    s
}

/// `%s`: any value but an optional, lists and maps item by item (map
/// entries sorted by their formatted keys).
fn format_string(v: &Value, out: &mut String) -> Result<(), String> {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Uint(u) => {
            let _ = write!(out, "{u}");
        }
        Value::Double(d) => match special_double(*d) {
            Some(s) => out.push_str(s),
            None => {
                let _ = write!(out, "{d}");
            }
        },
        Value::String(s) => out.push_str(s),
        Value::Bytes(b) => out.push_str(&String::from_utf8_lossy(b)),
        Value::Timestamp(t) => out.push_str(&time::format_timestamp(*t)),
        Value::Duration(d) => out.push_str(&time::format_duration(*d)),
        Value::Type(t) => out.push_str(&t.name()),
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                format_string(item, out)?;
            }
            out.push(']');
        }
        Value::Map(m) => {
            let mut entries = Vec::with_capacity(m.len());
            for (k, val) in m.iter() {
                let mut key = String::new();
                format_string(&crate::ops::key_to_value(k), &mut key)?;
                let mut value = String::new();
                format_string(val, &mut value)?;
                entries.push((key, value));
            }
            entries.sort();
            out.push('{');
            for (i, (k, val)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                let _ = write!(out, "{k}: {val}");
            }
            out.push('}');
        }
        Value::Optional(_) => {
            return Err(formatting_error(format!(
                "string clause can only be used on strings, bools, bytes, ints, doubles, maps, lists, types, \
                 durations, and timestamps, was given {}",
                type_name(v)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: Result<Value, String>) -> String {
        match v {
            Ok(Value::String(s)) => s.to_string(),
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn indices_count_code_points() {
        assert_eq!(s(char_at("©αT", 1)), "α");
        assert_eq!(s(char_at("abc", 3)), "");
        assert_eq!(char_at("abc", 4).unwrap_err(), "index out of range: 4");
        assert_eq!(char_at("abc", -1).unwrap_err(), "index out of range: -1");
        assert!(matches!(index_of("ta©o©αT", "©", Some(3)), Ok(Value::Int(4))));
        assert!(matches!(index_of("ta©o©αT", "©α", Some(5)), Ok(Value::Int(-1))));
        assert!(matches!(last_index_of("ta©o©αT", "©α", Some(4)), Ok(Value::Int(4))));
        assert!(matches!(
            last_index_of("bananananana", "nana", Some(7)),
            Ok(Value::Int(6))
        ));
        assert!(matches!(last_index_of("tacocat", "", None), Ok(Value::Int(7))));
        assert!(last_index_of("tacocat", "a", Some(-1)).is_err());
        assert_eq!(s(substring("ta©o©αT", 2, Some(6))), "©o©α");
        assert_eq!(
            substring("tacocat", 4, Some(3)).unwrap_err(),
            "invalid substring range. start: 4, end: 3"
        );
        assert_eq!(
            substring("tacocat", 49, Some(50)).unwrap_err(),
            "index out of range: 49"
        );
    }

    #[test]
    fn split_and_replace_follow_go() {
        let parts = |v: Value| match v {
            Value::List(l) => l
                .iter()
                .map(|x| x.as_str().unwrap_or("?").to_owned())
                .collect::<Vec<_>>(),
            _ => vec![],
        };
        assert_eq!(parts(split("a,b,c", ",", Some(2))), ["a", "b,c"]);
        assert!(parts(split("a,b", ",", Some(0))).is_empty());
        assert_eq!(parts(split("abc", "", None)), ["a", "b", "c"]);
        assert_eq!(parts(split("abc", "", Some(2))), ["a", "bc"]);
        assert_eq!(parts(split("", ",", None)), [""]);
        assert_eq!(s(Ok(replace("a-b-c", "-", "+", Some(1)))), "a+b-c");
        assert_eq!(s(Ok(replace("a-b-c", "-", "+", Some(-1)))), "a+b+c");
        assert_eq!(s(Ok(replace("ab", "", "x", None))), "xaxbx");
    }

    #[test]
    fn format_clauses() {
        let f = |fmt: &str, args: &[Value]| s(format(fmt, args));
        assert_eq!(
            f(
                "%.3f|%e|%x|%X|%o|%b",
                &[
                    Value::Double(1.2345),
                    Value::Double(2.5),
                    Value::Int(-30),
                    Value::Int(30),
                    Value::Int(11),
                    Value::Bool(true)
                ]
            ),
            "1.234|2.500000e+00|-1e|1E|13|1"
        );
        assert_eq!(f("%d%%", &[Value::Uint(7)]), "7%");
        assert_eq!(f("%.1e", &[Value::Double(-3.25)]), "-3.2e+00");
        assert_eq!(f("%.3f", &[Value::Double(123.4999)]), "123.500");
        assert_eq!(f("%f", &[Value::Int(1)]), "1.000000");
        assert_eq!(f("%e", &[Value::Double(f64::NEG_INFINITY)]), "-Infinity");
        assert!(
            format("%a", &[Value::Int(1)])
                .unwrap_err()
                .contains("unrecognized formatting clause \"a\"")
        );
        assert_eq!(format("%d %d", &[Value::Int(1)]).unwrap_err(), "index 1 out of range");
        assert!(
            format("%d", &[Value::Null])
                .unwrap_err()
                .contains("was given null_type")
        );
        assert!(format("%.2d", &[Value::Int(1)]).is_err());
        assert!(format("50%", &[]).is_err());
    }

    #[test]
    fn quote_escapes() {
        assert_eq!(s(Ok(quote("a\"b\\c\n\u{7}é"))), "\"a\\\"b\\\\c\\n\\aé\"");
        assert_eq!(s(Ok(quote("\u{1}"))), "\"\\u0001\"");
    }
}
