//! Canonical JSON (sorted keys, no whitespace) and the hash that binds an
//! approval to one exact call.
//!
//! The canonical form does not depend on how `serde_json` orders maps (the
//! `preserve_order` feature may be on elsewhere in the build), so a hash
//! computed today matches one computed by another build tomorrow.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// Writes `value` as canonical JSON: object keys sorted by their UTF-8
/// bytes, no insignificant whitespace, strings escaped as `serde_json` does.
pub fn canonical_json(value: &Value) -> String {
    let mut out = Vec::with_capacity(256);
    write_canonical(value, &mut out);
    into_string(out)
}

/// Writes a JSON object in canonical form member by member, without
/// building a `serde_json::Map` first: the caller adds the members in key
/// order (checked in debug builds).
#[derive(Debug)]
pub struct ObjectWriter<'a> {
    out: &'a mut Vec<u8>,
    last: Option<&'static str>,
}

impl<'a> ObjectWriter<'a> {
    pub fn new(out: &'a mut Vec<u8>) -> Self {
        out.push(b'{');
        ObjectWriter { out, last: None }
    }

    fn key(&mut self, key: &'static str) {
        debug_assert!(self.last.is_none_or(|last| last < key), "`{key}` is out of order");
        if self.last.is_some() {
            self.out.push(b',');
        }
        self.last = Some(key);
        write_str(key, self.out);
        self.out.push(b':');
    }

    /// A member holding any JSON value (written canonically).
    pub fn value(&mut self, key: &'static str, value: &Value) {
        self.key(key);
        write_canonical(value, self.out);
    }

    /// A member holding a string, or `null` for `None`.
    pub fn str(&mut self, key: &'static str, value: Option<&str>) {
        self.key(key);
        match value {
            Some(s) => write_str(s, self.out),
            None => self.out.extend_from_slice(b"null"),
        }
    }

    pub fn finish(self) {
        self.out.push(b'}');
    }
}

/// Bytes the writers above produced, as a string.
pub fn into_string(out: Vec<u8>) -> String {
    // Every piece written is valid UTF-8 (serde_json output and ASCII).
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            out.push(b'{');
            // A map that already iterates in key order (serde_json's default
            // BTreeMap) is written as is; otherwise the keys are sorted.
            if map.keys().is_sorted() {
                for (i, (key, v)) in map.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(key, out);
                    out.push(b':');
                    write_canonical(v, out);
                }
            } else {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (i, (key, v)) in members.into_iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(key, out);
                    out.push(b':');
                    write_canonical(v, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::String(s) => write_str(s, out),
        // Numbers, booleans and null have one serde_json rendering.
        other => write_scalar(other, out),
    }
}

/// Writes `s` as a JSON string, escaped as `serde_json` escapes it. Most
/// strings need no escape (serde_json escapes only `"`, `\\` and control
/// characters): those are copied in one piece.
fn write_str(s: &str, out: &mut Vec<u8>) {
    if needs_escape(s.as_bytes()) {
        write_scalar(s, out);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `bytes` hold a byte JSON escapes. Checked 16 bytes at a time
/// without branching inside a chunk, which the compiler turns into vector
/// compares (a plain `any` stops at each byte).
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = bytes.chunks_exact(16);
    let in_chunks = chunks
        .by_ref()
        .any(|chunk| chunk.iter().fold(false, |found, &b| found | special(b)));
    in_chunks || chunks.remainder().iter().any(|&b| special(b))
}

fn write_scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Serializing a string or a scalar into a Vec cannot fail.
    if serde_json::to_writer(&mut *out, value).is_err() {
        out.extend_from_slice(b"null");
    }
}

/// The sha256 (hex) of a call: tool name, canonical arguments and session.
/// An approval is bound to this hash, so it can release only this call.
pub fn call_hash(tool: &str, args: &Value, session_id: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [tool, canonical_json(args).as_str(), session_id] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_sorted_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [true, null], "y": "x\"y"}});
        assert_eq!(canonical_json(&v), r#"{"a":{"y":"x\"y","z":[true,null]},"b":1}"#);
    }

    #[test]
    fn unsorted_maps_are_sorted_and_strings_escaped() {
        let mut map = serde_json::Map::new();
        for k in ["zeta", "alpha", "\u{e9}t\u{e9}", "mid"] {
            map.insert(k.to_string(), json!("a\nb\u{1}\"\\\u{e9}"));
        }
        let text = canonical_json(&Value::Object(map));
        assert_eq!(
            text,
            "{\"alpha\":\"a\\nb\\u0001\\\"\\\\\u{e9}\",\"mid\":\"a\\nb\\u0001\\\"\\\\\u{e9}\",\"zeta\":\"a\\nb\\u0001\\\"\\\\\u{e9}\",\"\u{e9}t\u{e9}\":\"a\\nb\\u0001\\\"\\\\\u{e9}\"}"
        );
        assert_eq!(
            canonical_json(&json!([1.5, -2, true, null, "x"])),
            r#"[1.5,-2,true,null,"x"]"#
        );
    }

    #[test]
    fn call_hash_depends_on_every_part() {
        let args = json!({"path": "/tmp/a", "mode": 1});
        let same = json!({"mode": 1, "path": "/tmp/a"});
        let h = call_hash("write_file", &args, "s1");
        assert_eq!(h, call_hash("write_file", &same, "s1"));
        assert_ne!(h, call_hash("write_files", &args, "s1"));
        assert_ne!(h, call_hash("write_file", &json!({"path": "/tmp/b", "mode": 1}), "s1"));
        assert_ne!(h, call_hash("write_file", &args, "s2"));
        // Length prefixes keep field boundaries apart.
        assert_ne!(call_hash("ab", &json!({}), "c"), call_hash("a", &json!({}), "bc"));
    }

    #[test]
    fn every_ascii_character_is_escaped_as_serde_json_escapes_it() {
        for c in (0u8..0x80)
            .map(char::from)
            .chain(['\u{80}', '\u{e9}', '\u{2028}', '\u{1F600}'])
        {
            // In the scalar tail and at each position of a 16-byte chunk.
            let mut texts = vec![format!("a{c}b")];
            texts.extend((0..16).map(|at| format!("{}{c}{}", "x".repeat(at), "y".repeat(40 - at))));
            for s in texts {
                let mut out = Vec::new();
                write_str(&s, &mut out);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    serde_json::to_string(&s).unwrap(),
                    "{c:?} in {s:?}"
                );
            }
        }
    }

    proptest::proptest! {
        /// The copy-through path for strings that need no escape writes
        /// what serde_json writes, for any string (controls, quotes,
        /// backslashes, DEL and non-ASCII included).
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in "\\PC*[\\x00-\\x1f\\x7f\"\\\\]?\\PC*") {
            let mut out = Vec::new();
            write_str(&s, &mut out);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }
}
