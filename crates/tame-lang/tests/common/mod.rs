//! Test helpers: a minimal reader of the CEL conformance `.textproto` files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

use std::path::PathBuf;

/// A text-format protobuf field value.
#[derive(Debug, Clone)]
pub enum Field {
    Str(Vec<u8>),
    Scalar(String),
    Msg(Vec<(String, Field)>),
}

impl Field {
    pub fn msg(&self) -> &[(String, Field)] {
        match self {
            Field::Msg(m) => m,
            _ => &[],
        }
    }
}

pub fn get<'a>(msg: &'a [(String, Field)], key: &str) -> Option<&'a Field> {
    msg.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub fn all<'a>(msg: &'a [(String, Field)], key: &'a str) -> impl Iterator<Item = &'a Field> + 'a {
    msg.iter().filter(move |(k, _)| k == key).map(|(_, v)| v)
}

pub fn string(msg: &[(String, Field)], key: &str) -> Option<String> {
    match get(msg, key) {
        Some(Field::Str(b)) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

pub fn flag(msg: &[(String, Field)], key: &str) -> bool {
    matches!(get(msg, key), Some(Field::Scalar(s)) if s == "true")
}

/// One conformance test case.
#[derive(Debug)]
pub struct Case {
    pub file: String,
    pub section: String,
    pub name: String,
    pub expr: String,
    pub disable_macros: bool,
    pub disable_check: bool,
    pub container: Option<String>,
    /// Names declared in `type_env` and `bindings`.
    pub idents: Vec<String>,
    pub fields: Vec<(String, Field)>,
}

/// The conformance directory: `$TAME_CEL_CONFORMANCE` when set (any
/// folder of cel-spec `.textproto` files), else `../shared/conformance/cel`
/// from the repo root.
pub fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("TAME_CEL_CONFORMANCE") {
        return Some(PathBuf::from(dir));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/cel");
    dir.is_dir().then_some(dir)
}

pub fn load_cases() -> Vec<Case> {
    let Some(dir) = conformance_dir() else {
        return Vec::new();
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "textproto"));
    files.sort();
    let mut cases = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.file_stem().unwrap().to_string_lossy().into_owned();
        let top = parse_textproto(&text);
        for section in all(&top, "section") {
            let s = section.msg();
            let section_name = string(s, "name").unwrap_or_default();
            for test in all(s, "test") {
                let t = test.msg();
                let mut idents = Vec::new();
                for env in all(t, "type_env") {
                    idents.extend(string(env.msg(), "name"));
                }
                for b in all(t, "bindings") {
                    idents.extend(string(b.msg(), "key"));
                }
                cases.push(Case {
                    file: file.clone(),
                    section: section_name.clone(),
                    name: string(t, "name").unwrap_or_default(),
                    expr: string(t, "expr").unwrap_or_default(),
                    disable_macros: flag(t, "disable_macros"),
                    disable_check: flag(t, "disable_check"),
                    container: string(t, "container"),
                    idents,
                    fields: t.to_vec(),
                });
            }
        }
    }
    cases
}

#[derive(Debug, PartialEq)]
enum Tok {
    Word(String),
    Str(Vec<u8>),
    Punct(char),
}

fn tokenize(text: &str) -> Vec<Tok> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'#' {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'"' || c == b'\'' {
            let q = c;
            i += 1;
            let mut s = Vec::new();
            while i < b.len() && b[i] != q {
                if b[i] == b'\\' {
                    i += 1;
                    let e = b[i];
                    i += 1;
                    match e {
                        b'n' => s.push(b'\n'),
                        b't' => s.push(b'\t'),
                        b'r' => s.push(b'\r'),
                        b'a' => s.push(7),
                        b'b' => s.push(8),
                        b'f' => s.push(12),
                        b'v' => s.push(11),
                        b'x' => {
                            let mut v = 0u32;
                            let mut n = 0;
                            while n < 2 && i < b.len() && b[i].is_ascii_hexdigit() {
                                v = v * 16 + (b[i] as char).to_digit(16).unwrap();
                                i += 1;
                                n += 1;
                            }
                            s.push(v as u8);
                        }
                        b'u' | b'U' => {
                            let n = if e == b'u' { 4 } else { 8 };
                            let h = std::str::from_utf8(&b[i..i + n]).unwrap();
                            i += n;
                            let ch = char::from_u32(u32::from_str_radix(h, 16).unwrap()).unwrap();
                            s.extend_from_slice(ch.to_string().as_bytes());
                        }
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            let mut n = 1;
                            while n < 3 && i < b.len() && (b'0'..=b'7').contains(&b[i]) {
                                v = v * 8 + u32::from(b[i] - b'0');
                                i += 1;
                                n += 1;
                            }
                            s.push(v as u8);
                        }
                        other => s.push(other),
                    }
                } else {
                    s.push(b[i]);
                    i += 1;
                }
            }
            i += 1;
            // Adjacent strings concatenate.
            if let Some(Tok::Str(prev)) = out.last_mut() {
                prev.extend(s);
            } else {
                out.push(Tok::Str(s));
            }
        } else if b"{}<>:[],;".contains(&c) {
            out.push(Tok::Punct(c as char));
            i += 1;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !b"{}<>:[],;#\"'".contains(&b[i]) {
                i += 1;
            }
            out.push(Tok::Word(text[start..i].to_owned()));
        }
    }
    out
}

pub fn parse_textproto(text: &str) -> Vec<(String, Field)> {
    let toks = tokenize(text);
    let mut pos = 0;
    parse_fields(&toks, &mut pos)
}

fn parse_fields(toks: &[Tok], pos: &mut usize) -> Vec<(String, Field)> {
    let mut out = Vec::new();
    while let Some(Tok::Word(key)) = toks.get(*pos) {
        let key = key.clone();
        *pos += 1;
        if toks.get(*pos) == Some(&Tok::Punct(':')) {
            *pos += 1;
        }
        match toks.get(*pos) {
            Some(Tok::Punct('[')) => {
                *pos += 1;
                while toks.get(*pos) != Some(&Tok::Punct(']')) && *pos < toks.len() {
                    if toks.get(*pos) == Some(&Tok::Punct(',')) {
                        *pos += 1;
                        continue;
                    }
                    let v = parse_value(toks, pos);
                    out.push((key.clone(), v));
                }
                *pos += 1;
            }
            _ => {
                let v = parse_value(toks, pos);
                out.push((key, v));
            }
        }
        while matches!(toks.get(*pos), Some(Tok::Punct(',' | ';'))) {
            *pos += 1;
        }
    }
    out
}

fn parse_value(toks: &[Tok], pos: &mut usize) -> Field {
    match toks.get(*pos) {
        Some(Tok::Punct('{' | '<')) => {
            *pos += 1;
            let m = parse_fields(toks, pos);
            *pos += 1; // closing
            Field::Msg(m)
        }
        Some(Tok::Str(s)) => {
            *pos += 1;
            Field::Str(s.clone())
        }
        Some(Tok::Word(w)) => {
            *pos += 1;
            Field::Scalar(w.clone())
        }
        _ => {
            *pos += 1;
            Field::Scalar(String::new())
        }
    }
}
