//! JSON paths for findings and schema violations: `$.body.to[2]`, `$['odd key']`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// One step from a JSON value to a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment<'a> {
    /// Object member name (already redacted when the name held a finding).
    Key(Cow<'a, str>),
    /// Array index.
    Index(usize),
}

/// True when `name` can be written in dot notation (`$.name`).
fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Appends one segment: `.name` for identifier-like names, `['name']` (with
/// `\'` and `\\` escaped) otherwise, `[i]` for indexes.
pub(crate) fn push_segment(out: &mut String, seg: &Segment<'_>) {
    match seg {
        Segment::Key(name) if is_identifier(name) => {
            out.push('.');
            out.push_str(name);
        }
        Segment::Key(name) => {
            out.push_str("['");
            for c in name.chars() {
                match c {
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    c if u32::from(c) < 0x20 => {
                        let _ = write!(out, "\\u{:04x}", u32::from(c));
                    }
                    c => out.push(c),
                }
            }
            out.push_str("']");
        }
        Segment::Index(i) => {
            let _ = write!(out, "[{i}]");
        }
    }
}

/// Formats a whole path starting at `$`.
pub(crate) fn format_path<'s, 'a: 's>(segments: impl IntoIterator<Item = &'s Segment<'a>>) -> String {
    let mut out = String::from("$");
    for seg in segments {
        push_segment(&mut out, seg);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_paths() {
        let key = |k: &'static str| Segment::Key(Cow::Borrowed(k));
        assert_eq!(format_path(&[]), "$");
        assert_eq!(
            format_path(&[key("body"), key("to"), Segment::Index(2)]),
            "$.body.to[2]"
        );
        assert_eq!(
            format_path(&[key("first name"), key("it's")]),
            "$['first name']['it\\'s']"
        );
        assert_eq!(format_path(&[key("9lives")]), "$['9lives']");
        assert_eq!(format_path(&[key("")]), "$['']");
    }
}
