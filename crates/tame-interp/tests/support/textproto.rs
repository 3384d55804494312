//! A small reader for protobuf text format, enough for the CEL conformance
//! files (`SimpleTestFile`).
//!
//! Why hand-written: the conformance data ships without its `.proto`
//! descriptors, and the text-format crates need descriptors (or generated
//! types) to parse. This reader is schema-less: it turns the text into a
//! tree of named fields, and the runner interprets the tree. It handles
//! `#` comments, `name: value`, `name { ... }` / `name: { ... }` /
//! `name < ... >`, `[ext.name]` field names, lists `[a, b]`, optional `,`
//! or `;` separators, adjacent string literals and the C-style escapes of
//! text format (`\n`, `\303`, `\xff`, `\u270c`, ...). Strings are bytes.

use std::fmt;

/// A field value.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    /// A string literal (bytes; text format strings need not be UTF-8).
    Str(Vec<u8>),
    /// A bare word or number: `true`, `NULL_VALUE`, `-12`, `1e+10`, `inf`.
    Word(String),
    Msg(Msg),
}

/// A message: fields in file order (repeated fields appear repeatedly).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Msg {
    pub fields: Vec<(String, Val)>,
}

impl Msg {
    pub fn get(&self, name: &str) -> Option<&Val> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Val> + 'a {
        self.fields.iter().filter(move |(n, _)| n == name).map(|(_, v)| v)
    }

    pub fn msg(&self, name: &str) -> Option<&Msg> {
        match self.get(name) {
            Some(Val::Msg(m)) => Some(m),
            _ => None,
        }
    }

    pub fn msgs<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Msg> + 'a {
        self.all(name).filter_map(|v| match v {
            Val::Msg(m) => Some(m),
            _ => None,
        })
    }

    pub fn string(&self, name: &str) -> Option<String> {
        match self.get(name) {
            Some(Val::Str(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Some(Val::Word(w)) => Some(w.clone()),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Val::Word(w)) if w == "true" || w == "1")
    }

    /// Whether a field of this name appears anywhere below this message.
    pub fn mentions(&self, name: &str) -> bool {
        self.fields.iter().any(|(n, v)| {
            n == name
                || match v {
                    Val::Msg(m) => m.mentions(name),
                    _ => false,
                }
        })
    }
}

#[derive(Debug)]
pub struct Error {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(Vec<u8>),
    Ext(String),
    Punct(char),
}

struct Lexer<'a> {
    src: &'a [u8],
    pos: usize,
    line: usize,
}

impl<'a> Lexer<'a> {
    fn err<T>(&self, message: impl Into<String>) -> Result<T, Error> {
        Err(Error {
            line: self.line,
            message: message.into(),
        })
    }

    fn peek_byte(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while let Some(b) = self.peek_byte() {
            match b {
                b'\n' => {
                    self.line += 1;
                    self.pos += 1;
                }
                b' ' | b'\t' | b'\r' => self.pos += 1,
                b'#' => {
                    while let Some(c) = self.peek_byte() {
                        if c == b'\n' {
                            break;
                        }
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn tokens(mut self) -> Result<Vec<(Tok, usize)>, Error> {
        let mut out = Vec::new();
        loop {
            self.skip_space();
            let Some(b) = self.peek_byte() else {
                return Ok(out);
            };
            let line = self.line;
            let tok = match b {
                b'"' | b'\'' => {
                    // Adjacent literals concatenate.
                    let mut bytes = self.string(b)?;
                    loop {
                        self.skip_space();
                        match self.peek_byte() {
                            Some(q @ (b'"' | b'\'')) => bytes.extend(self.string(q)?),
                            _ => break,
                        }
                    }
                    Tok::Str(bytes)
                }
                b'{' | b'}' | b'<' | b'>' | b':' | b',' | b';' | b']' => {
                    self.pos += 1;
                    Tok::Punct(b as char)
                }
                b'[' => {
                    // `[type.googleapis.com/x.Y]` is an extension/Any field
                    // name; `[` followed by a value starts a list.
                    let rest = &self.src[self.pos + 1..];
                    let end = rest.iter().position(|&c| c == b']');
                    let is_name = end.is_some_and(|e| {
                        e > 0
                            && rest[..e]
                                .iter()
                                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'/' | b'_'))
                            && rest[0].is_ascii_alphabetic()
                    });
                    match (is_name, end) {
                        (true, Some(e)) => {
                            let name = String::from_utf8_lossy(&rest[..e]).into_owned();
                            self.pos += e + 2;
                            Tok::Ext(name)
                        }
                        _ => {
                            self.pos += 1;
                            Tok::Punct('[')
                        }
                    }
                }
                c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' || c == b'+' || c == b'.' => {
                    let start = self.pos;
                    while let Some(c) = self.peek_byte() {
                        if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'+' | b'.') {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                    Tok::Word(String::from_utf8_lossy(&self.src[start..self.pos]).into_owned())
                }
                other => return self.err(format!("unexpected character `{}`", other as char)),
            };
            out.push((tok, line));
        }
    }

    fn string(&mut self, quote: u8) -> Result<Vec<u8>, Error> {
        self.pos += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek_byte() else {
                return self.err("unterminated string");
            };
            self.pos += 1;
            match b {
                b'\n' => return self.err("newline in string"),
                q if q == quote => return Ok(out),
                b'\\' => {
                    let Some(e) = self.peek_byte() else {
                        return self.err("bad escape");
                    };
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'a' => out.push(0x07),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'v' => out.push(0x0b),
                        b'\\' | b'\'' | b'"' | b'?' => out.push(e),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek_byte() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push((v & 0xff) as u8);
                        }
                        b'x' | b'X' => {
                            let mut v = 0u32;
                            let mut n = 0;
                            while n < 2 {
                                match self.peek_byte().and_then(|d| (d as char).to_digit(16)) {
                                    Some(d) => {
                                        v = v * 16 + d;
                                        self.pos += 1;
                                        n += 1;
                                    }
                                    None => break,
                                }
                            }
                            if n == 0 {
                                return self.err("bad \\x escape");
                            }
                            out.push(v as u8);
                        }
                        b'u' | b'U' => {
                            let len = if e == b'u' { 4 } else { 8 };
                            let hex = self.src.get(self.pos..self.pos + len).unwrap_or_default();
                            let code = std::str::from_utf8(hex)
                                .ok()
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32);
                            let Some(c) = code else {
                                return self.err("bad unicode escape");
                            };
                            self.pos += len;
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        other => return self.err(format!("unknown escape `\\{}`", other as char)),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Parser {
    fn line(&self) -> usize {
        self.toks.get(self.pos).or(self.toks.last()).map_or(0, |(_, l)| *l)
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, Error> {
        Err(Error {
            line: self.line(),
            message: message.into(),
        })
    }

    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(&Tok::Punct(c)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Fields until `close` (or the end of input when `None`).
    fn message(&mut self, close: Option<char>) -> Result<Msg, Error> {
        let mut msg = Msg::default();
        loop {
            match (self.peek().cloned(), close) {
                (None, None) => return Ok(msg),
                (None, Some(c)) => return self.err(format!("missing `{c}`")),
                (Some(Tok::Punct(p)), Some(c)) if p == c => {
                    self.pos += 1;
                    return Ok(msg);
                }
                (Some(Tok::Word(name) | Tok::Ext(name)), _) => {
                    self.pos += 1;
                    let colon = self.eat(':');
                    let vals = self.value(colon)?;
                    for v in vals {
                        msg.fields.push((name.clone(), v));
                    }
                    let _ = self.eat(',') || self.eat(';');
                }
                (Some(t), _) => return self.err(format!("expected a field name, found {t:?}")),
            }
        }
    }

    fn value(&mut self, colon: bool) -> Result<Vec<Val>, Error> {
        if self.eat('{') {
            return Ok(vec![Val::Msg(self.message(Some('}'))?)]);
        }
        if self.eat('<') {
            return Ok(vec![Val::Msg(self.message(Some('>'))?)]);
        }
        if !colon {
            return self.err("expected `:` or a message");
        }
        if self.eat('[') {
            let mut out = Vec::new();
            while !self.eat(']') {
                out.extend(self.value(true)?);
                let _ = self.eat(',');
                if self.peek().is_none() {
                    return self.err("unterminated list");
                }
            }
            return Ok(out);
        }
        match self.peek().cloned() {
            Some(Tok::Str(s)) => {
                self.pos += 1;
                Ok(vec![Val::Str(s)])
            }
            Some(Tok::Word(w)) => {
                self.pos += 1;
                Ok(vec![Val::Word(w)])
            }
            other => self.err(format!("expected a value, found {other:?}")),
        }
    }
}

/// Parses a whole text-format document.
pub fn parse(text: &str) -> Result<Msg, Error> {
    let toks = Lexer {
        src: text.as_bytes(),
        pos: 0,
        line: 1,
    }
    .tokens()?;
    Parser { toks, pos: 0 }.message(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_messages_and_lists() {
        let m = parse("name: \"x\" # comment\n section { test: < a: 1 b: [1, 2] > } flag: true; s: 'a' \"b\"").unwrap();
        assert_eq!(m.string("name").as_deref(), Some("x"));
        assert!(m.flag("flag"));
        assert_eq!(m.string("s").as_deref(), Some("ab"));
        let t = m.msg("section").unwrap().msg("test").unwrap();
        assert_eq!(t.all("b").count(), 2);
        assert!(m.mentions("a"));
    }

    #[test]
    fn escapes_are_bytes() {
        let m = parse(r#"a: "\303\277" b: "\xff\x00" c: "\u270c" d: "\a\b\f\n\r\t\v\"\'\\""#).unwrap();
        assert_eq!(m.get("a"), Some(&Val::Str(vec![0xc3, 0xbf])));
        assert_eq!(m.get("b"), Some(&Val::Str(vec![0xff, 0])));
        assert_eq!(m.get("c"), Some(&Val::Str("\u{270c}".as_bytes().to_vec())));
        assert_eq!(m.get("d"), Some(&Val::Str(b"\x07\x08\x0c\n\r\t\x0b\"'\\".to_vec())));
    }

    #[test]
    fn extension_names_and_errors() {
        let m = parse("v { [type.googleapis.com/google.protobuf.Duration] { seconds: 1 } }").unwrap();
        assert!(
            m.msg("v")
                .unwrap()
                .msg("type.googleapis.com/google.protobuf.Duration")
                .is_some()
        );
        assert!(parse("a { b: 1").is_err());
        assert!(parse("a: \"open").is_err());
        assert!(parse("a 1").is_err());
    }
}
