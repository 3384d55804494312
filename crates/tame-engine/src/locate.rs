//! Source positions inside a YAML file.
//!
//! serde_yaml gives typed values but no positions for them, so the file is
//! also read with saphyr's event parser (which has marks) into a small
//! located tree. Diagnostics use it to point at a rule, a key, or a
//! character inside a condition string, mapped back through the scalar's
//! quoting and escapes.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

/// Nesting deeper than this is refused (the tree is only for positions).
const MAX_DEPTH: usize = 128;

/// A YAML node with its byte span in the file, and its explicit tag
/// (`!!str`, `!custom`) if it has one, as handle and suffix
/// (`tag:yaml.org,2002:str`).
#[derive(Debug)]
pub(crate) enum YNode {
    Scalar {
        value: String,
        style: ScalarStyle,
        span: Range<usize>,
        tag: Option<Box<str>>,
    },
    Seq {
        items: Vec<YNode>,
        span: Range<usize>,
        tag: Option<Box<str>>,
    },
    Map {
        entries: Vec<(YNode, YNode)>,
        span: Range<usize>,
        tag: Option<Box<str>>,
    },
    Alias {
        span: Range<usize>,
    },
}

impl YNode {
    pub fn span(&self) -> Range<usize> {
        match self {
            YNode::Scalar { span, .. } | YNode::Seq { span, .. } | YNode::Map { span, .. } | YNode::Alias { span } => {
                span.clone()
            }
        }
    }

    /// The key and value of `key` in a mapping.
    pub fn entry(&self, key: &str) -> Option<(&YNode, &YNode)> {
        match self {
            YNode::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| matches!(k, YNode::Scalar { value, .. } if value == key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&YNode> {
        self.entry(key).map(|(_, v)| v)
    }

    pub fn items(&self) -> &[YNode] {
        match self {
            YNode::Seq { items, .. } => items,
            _ => &[],
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            YNode::Scalar { value, .. } => Some(value),
            _ => None,
        }
    }
}

/// Converts saphyr's character indices to byte offsets.
struct CharIndex {
    /// Byte offset of each char; empty when the text is ASCII.
    offsets: Vec<usize>,
    len: usize,
}

impl CharIndex {
    fn new(text: &str) -> Self {
        let offsets = if text.is_ascii() {
            Vec::new()
        } else {
            text.char_indices().map(|(i, _)| i).collect()
        };
        CharIndex {
            offsets,
            len: text.len(),
        }
    }
    fn byte(&self, char_index: usize) -> usize {
        if self.offsets.is_empty() {
            char_index.min(self.len)
        } else {
            self.offsets.get(char_index).copied().unwrap_or(self.len)
        }
    }
}

enum Frame {
    Seq(Vec<YNode>, usize, Option<Box<str>>),
    Map(Vec<(YNode, YNode)>, Option<YNode>, usize, Option<Box<str>>),
}

fn tag_text(tag: Option<&saphyr_parser::Tag>) -> Option<Box<str>> {
    tag.map(|t| format!("{}{}", t.handle, t.suffix).into_boxed_str())
}

/// Parses `text` into a located tree of its first document. A YAML syntax
/// error is returned as a message and a byte offset.
pub(crate) fn parse(text: &str) -> Result<Option<YNode>, (String, usize)> {
    let idx = CharIndex::new(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut root: Option<YNode> = None;
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| (e.info().to_owned(), idx.byte(e.marker().index())))?;
        let start = idx.byte(span.start.index());
        let end = idx.byte(span.end.index()).max(start);
        let node = match event {
            Event::Scalar(value, style, _, tag) => YNode::Scalar {
                value: value.into_owned(),
                style,
                span: start..end,
                tag: tag_text(tag.as_deref()),
            },
            Event::Alias(_) => YNode::Alias { span: start..end },
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(("nesting is too deep".into(), start));
                }
                stack.push(match event {
                    Event::SequenceStart(_, tag) => Frame::Seq(Vec::new(), start, tag_text(tag.as_deref())),
                    Event::MappingStart(_, tag) => Frame::Map(Vec::new(), None, start, tag_text(tag.as_deref())),
                    _ => continue,
                });
                continue;
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(items, s, tag)) => YNode::Seq {
                    items,
                    span: s..end.max(s),
                    tag,
                },
                _ => return Err(("unbalanced sequence".into(), start)),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(entries, _, s, tag)) => YNode::Map {
                    entries,
                    span: s..end.max(s),
                    tag,
                },
                _ => return Err(("unbalanced mapping".into(), start)),
            },
            Event::DocumentEnd if root.is_some() => break,
            _ => continue,
        };
        match stack.last_mut() {
            Some(Frame::Seq(items, ..)) => items.push(node),
            Some(Frame::Map(entries, pending, ..)) => match pending.take() {
                Some(k) => entries.push((k, node)),
                None => *pending = Some(node),
            },
            None => {
                root = Some(node);
            }
        }
    }
    Ok(root)
}

/// Maps a byte offset inside a scalar's decoded value to a byte offset in
/// the file, following the scalar's style: plain and quoted scalars exactly
/// (escapes, `''`, line folding), block scalars on a best-effort basis.
pub(crate) fn scalar_offset(text: &str, node: &YNode, decoded_offset: usize) -> usize {
    let YNode::Scalar { value, style, span, .. } = node else {
        return node.span().start;
    };
    let raw = text.get(span.clone()).unwrap_or("");
    let mut p = match style {
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => 1,
        ScalarStyle::Literal | ScalarStyle::Folded => raw.find('\n').map_or(raw.len(), |i| i + 1),
        _ => 0,
    };
    let double = matches!(style, ScalarStyle::DoubleQuoted);
    let single = matches!(style, ScalarStyle::SingleQuoted);
    for (d, c) in value.char_indices() {
        // Find where decoded char `c` comes from, skipping folded whitespace.
        let mut q = p;
        let mut found = None;
        while let Some(rc) = raw.get(q..).and_then(|r| r.chars().next()) {
            if double && rc == '\\' {
                let (dc, len) = decode_escape(raw.get(q..).unwrap_or(""));
                if dc == Some(c) {
                    found = Some((q, len));
                    break;
                }
                q += len;
                continue;
            }
            if single && rc == '\'' && c == '\'' && raw.get(q..).is_some_and(|r| r.starts_with("''")) {
                found = Some((q, 2));
                break;
            }
            if rc == c {
                found = Some((q, rc.len_utf8()));
                break;
            }
            if !rc.is_whitespace() {
                break;
            }
            q += rc.len_utf8();
        }
        let (at, len) = found.unwrap_or((p, 0));
        if d >= decoded_offset {
            return span.start + at;
        }
        p = at + len;
    }
    span.start + p.min(raw.len())
}

/// Decodes one YAML double-quoted escape at the start of `s`: the char it
/// stands for (None for an escaped line break) and its length in bytes.
fn decode_escape(s: &str) -> (Option<char>, usize) {
    let mut chars = s.chars();
    chars.next();
    let Some(e) = chars.next() else { return (None, 1) };
    let hex = |n: usize| -> (Option<char>, usize) {
        let digits = s.get(2..2 + n).unwrap_or("");
        (u32::from_str_radix(digits, 16).ok().and_then(char::from_u32), 2 + n)
    };
    match e {
        '0' => (Some('\0'), 2),
        'a' => (Some('\x07'), 2),
        'b' => (Some('\x08'), 2),
        't' | '\t' => (Some('\t'), 2),
        'n' => (Some('\n'), 2),
        'v' => (Some('\x0b'), 2),
        'f' => (Some('\x0c'), 2),
        'r' => (Some('\r'), 2),
        'e' => (Some('\x1b'), 2),
        ' ' => (Some(' '), 2),
        '"' => (Some('"'), 2),
        '/' => (Some('/'), 2),
        '\\' => (Some('\\'), 2),
        'N' => (Some('\u{85}'), 2),
        '_' => (Some('\u{a0}'), 3),
        'L' => (Some('\u{2028}'), 2),
        'P' => (Some('\u{2029}'), 2),
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        '\n' => (None, 2),
        other => (None, 1 + other.len_utf8()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond_node(text: &str) -> YNode {
        let root = parse(text).unwrap().unwrap();
        let YNode::Map { mut entries, .. } = root else {
            panic!("not a map")
        };
        entries.remove(0).1
    }

    fn check(text: &str, needle_decoded: &str, expect_in_file: &str) {
        let node = cond_node(text);
        let value = node.as_str().unwrap().to_owned();
        let d = value.find(needle_decoded).unwrap();
        let at = scalar_offset(text, &node, d);
        assert!(text[at..].starts_with(expect_in_file), "at {at}: {:?}", &text[at..]);
    }

    #[test]
    fn plain_single_and_double_quoted() {
        check("c: args.x == 1 and y\n", "y", "y\n");
        check("c: 'a == ''q'' and zz'\n", "zz", "zz'");
        check("c: 'a == ''q'' and zz'\n", "'q'", "''q''");
        check("c: \"a == \\\"q\\\" and zz\"\n", "zz", "zz\"");
        check("c: \"a == \\\"q\\\" and zz\"\n", "\"q", "\\\"q");
        check("c: \"\\u00e9 zz\"\n", "zz", "zz");
    }

    #[test]
    fn folded_plain_and_block_scalars() {
        check("c: args.x == 1\n  and zz\n", "zz", "zz\n");
        check("c: |\n  args.x == 1\n  and zz\n", "zz", "zz\n");
        check("c: >-\n  args.x == 1\n  and zz\n", "zz", "zz\n");
    }

    #[test]
    fn non_ascii_text_maps_to_bytes() {
        let text = "d: \"é\"\nc: 'zz'\n";
        let root = parse(text).unwrap().unwrap();
        let node = root.get("c").unwrap();
        assert_eq!(&text[node.span()], "'zz'");
    }

    #[test]
    fn syntax_errors_have_offsets() {
        let (msg, at) = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(!msg.is_empty());
        assert!(at > 0);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = "[".repeat(1000);
        assert!(parse(&text).is_err());
    }
}
