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
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_string(key, out);
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::String(s) => push_string(s, out),
        // Numbers, booleans and null have one serde_json rendering already.
        other => out.push_str(&other.to_string()),
    }
}

fn push_string(s: &str, out: &mut String) {
    // Serializing a &str with serde_json cannot fail.
    match serde_json::to_string(s) {
        Ok(quoted) => out.push_str(&quoted),
        Err(_) => out.push_str("\"\""),
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
}
