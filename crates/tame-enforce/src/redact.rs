//! Redaction before storage: secrets out of everything the enforcement
//! path stores or logs: the arguments and metadata (as JSON), identifiers
//! (session, agent, user, tool, approver) and texts (a rule's expanded
//! reason, an approval's reason).
//!
//! The engine's scanner ([`tame_engine::Scanner`]) finds the secrets; only
//! the secret category is replaced (personal data is kept: policies and
//! admins need user ids such as e-mail addresses).
//!
//! - **Arguments and metadata** get `[REDACTED:kind]` in place of each
//!   secret ([`redact_secrets`]).
//! - A **text** gets `[REDACTED:kind]` for each secret, the arguments'
//!   marker.
//! - An **identifier** gets `[REDACTED:kind:<12 hex>]`, the hex a keyed
//!   hash (HMAC-SHA256) of the secret, so the stored id stays stable (the
//!   same id maps to the same stored id, on every node and after a restart)
//!   and distinct (ids with different secrets stay apart). The server keys
//!   it with the audit secret; without one (in-memory stores, tests) the
//!   key is a fixed constant, which keeps ids stable and distinct but lets
//!   anyone who can read the stored records test a guess of the secret
//!   against the marker.
//!
//! Nothing found (the usual case) costs one pass of the scanner's automaton
//! over the string and no allocation: the answer borrows the input.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tame_engine::{Category, Kind, Scanner};

type HmacSha256 = Hmac<Sha256>;

/// Rescans after a replacement (a replacement can turn its neighbours into
/// a delimited match, as the scanner's own redaction knows); a text still
/// holding a secret after these rounds is replaced whole.
const ROUNDS: usize = 4;

/// Hex digits of the keyed hash in an identifier's marker (48 bits).
const MARKER_HEX: usize = 12;

/// Domain separation: the audit secret also keys the audit chain.
const MARKER_LABEL: &[u8] = b"tame redaction marker v1\0";

/// Domain separation of the provenance index's key.
const INDEX_LABEL: &[u8] = b"tame provenance index v1\0";

/// The key when none is configured (see the module doc).
const UNKEYED: &[u8] = b"tame redaction marker: no key configured";

static UNKEYED_REDACTOR: LazyLock<Redactor> = LazyLock::new(|| Redactor {
    // A key of HMAC-SHA256's block size is taken as is: no fallible
    // constructor.
    mac: <HmacSha256 as hmac::digest::KeyInit>::new(&padded(UNKEYED).into()),
});

/// `key` padded with zeros to HMAC-SHA256's block size (HMAC pads a
/// shorter key with zeros itself, so this is the same key).
fn padded(key: &[u8]) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (o, k) in out.iter_mut().zip(key) {
        *o = *k;
    }
    out
}

/// A redaction key that is too short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the redaction key has {0} bytes, at least 16 are needed")]
pub struct KeyError(pub usize);

/// Replaces credentials (keys, tokens, passwords) in `value` with
/// `[REDACTED:kind]`; personal data is kept (policies may need it).
/// Returns whether anything was replaced.
pub fn redact_secrets(value: &mut Value) -> bool {
    let findings = Scanner::global().redact_where(value, |kind| kind.category() == Category::Secret);
    if !findings.is_empty() {
        tracing::debug!(count = findings.len(), "secrets redacted before storage");
    }
    !findings.is_empty()
}

/// Whether `text` holds a secret the scanner finds (e.g. a request target
/// that must not be logged).
pub fn holds_secret(text: &str) -> bool {
    !secret_spans(text).is_empty()
}

/// Replaces secrets in identifiers and texts before they are stored or
/// logged. Cheap to share: a keyed HMAC state, cloned per marker.
#[derive(Clone)]
pub struct Redactor {
    mac: HmacSha256,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor").finish_non_exhaustive()
    }
}

impl Redactor {
    /// A redactor keyed with `key` (the audit secret; at least 16 bytes).
    pub fn keyed(key: &[u8]) -> Result<Redactor, KeyError> {
        if key.len() < 16 {
            return Err(KeyError(key.len()));
        }
        let mac = <HmacSha256 as Mac>::new_from_slice(key).map_err(|_| KeyError(key.len()))?;
        Ok(Redactor { mac })
    }

    /// The redactor of a state without a configured key.
    pub fn unkeyed() -> &'static Redactor {
        &UNKEYED_REDACTOR
    }

    /// `text` with each secret replaced by `[REDACTED:kind]`; borrowed when
    /// it holds none.
    pub fn text<'a>(&self, text: &'a str) -> Cow<'a, str> {
        redact_with(text, &|kind, _| format!("[REDACTED:{}]", kind.as_str()))
    }

    /// `id` with each secret replaced by `[REDACTED:kind:<keyed hash>]`;
    /// borrowed when it holds none.
    pub fn id<'a>(&self, id: &'a str) -> Cow<'a, str> {
        redact_with(id, &|kind, secret| self.marker(kind.as_str(), secret))
    }

    /// [`Redactor::id`] into an owned string (moves `id` when it holds no
    /// secret).
    pub fn id_owned(&self, id: String) -> String {
        match self.id(&id) {
            Cow::Borrowed(_) => id,
            Cow::Owned(clean) => clean,
        }
    }

    /// [`Redactor::text`] into an owned string (moves `text` when it holds
    /// no secret).
    pub fn text_owned(&self, text: String) -> String {
        match self.text(&text) {
            Cow::Borrowed(_) => text,
            Cow::Owned(clean) => clean,
        }
    }

    /// A decision's reason as stored: each value in `redacted` (original,
    /// redacted) that it quotes (a rule's `{args.password}`: a secret the
    /// scanner knows by its member's name only) replaced by its redacted
    /// form, longest first, then [`Redactor::text`].
    pub fn reason(&self, reason: &str, redacted: &mut [(String, String)]) -> String {
        if redacted.is_empty() {
            return self.text(reason).into_owned();
        }
        redacted.sort_by_key(|(original, _)| std::cmp::Reverse(original.len()));
        let mut out = reason.to_owned();
        for (original, clean) in redacted.iter() {
            if out.contains(original.as_str()) {
                out = out.replace(original.as_str(), clean);
            }
        }
        self.text_owned(out)
    }

    /// The key of the provenance index's hashes (see
    /// [`crate::provenance`]), derived from this redactor's key (the audit
    /// secret) under its own label.
    pub fn index_key(&self) -> crate::provenance::IndexKey {
        let mut mac = self.mac.clone();
        mac.update(INDEX_LABEL);
        let digest = mac.finalize().into_bytes();
        let mut key = [0u8; 16];
        for (k, d) in key.iter_mut().zip(digest.iter()) {
            *k = *d;
        }
        crate::provenance::IndexKey::from_bytes(key)
    }

    fn marker(&self, kind: &str, secret: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(MARKER_LABEL);
        mac.update(secret.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex = hex::encode(digest);
        format!("[REDACTED:{kind}:{}]", hex.get(..MARKER_HEX).unwrap_or(&hex))
    }
}

/// Collects the strings of `original` that redaction changed in `redacted`
/// (the same document with secrets replaced), as (original, redacted)
/// pairs. Members whose names were redacted are skipped (their secret is
/// in the name, which the scanner finds anywhere).
pub fn redacted_values(original: &Value, redacted: &Value, out: &mut Vec<(String, String)>) {
    let mut stack = vec![(original, redacted)];
    while let Some(pair) = stack.pop() {
        match pair {
            (Value::String(a), Value::String(b)) if a != b && a.len() >= MIN_QUOTED => {
                out.push((a.clone(), b.clone()));
            }
            (Value::Array(a), Value::Array(b)) => stack.extend(a.iter().zip(b)),
            (Value::Object(a), Value::Object(b)) => {
                stack.extend(a.iter().filter_map(|(k, v)| Some((v, b.get(k)?))));
            }
            _ => {}
        }
    }
}

/// Shorter changed values are not looked for in a reason (no secret the
/// scanner finds is this short).
const MIN_QUOTED: usize = 6;

/// The secret spans of `text`, sorted, overlapping ones merged (a token
/// used as a URL's password is found twice), each with the kind of its
/// first finding. Allocates nothing when the scanner finds nothing.
fn secret_spans(text: &str) -> Vec<(Range<usize>, Kind)> {
    let mut spans = Scanner::global().secret_spans(text);
    if spans.len() < 2 {
        return spans;
    }
    spans.sort_by_key(|(r, _)| (r.start, std::cmp::Reverse(r.end)));
    let mut merged: Vec<(Range<usize>, Kind)> = Vec::with_capacity(spans.len());
    for (range, kind) in spans {
        match merged.last_mut() {
            Some((last, _)) if range.start < last.end => last.end = last.end.max(range.end),
            _ => merged.push((range, kind)),
        }
    }
    merged
}

/// Replaces each secret span of `text` with `marker(kind, span)`, rescanning
/// the result until it holds none; fails closed: a text that still holds a
/// secret after [`ROUNDS`], or whose spans do not fall on character
/// boundaries, is replaced whole.
fn redact_with<'a>(text: &'a str, marker: &dyn Fn(Kind, &str) -> String) -> Cow<'a, str> {
    let mut current = Cow::Borrowed(text);
    for _ in 0..ROUNDS {
        let spans = secret_spans(&current);
        if spans.is_empty() {
            return current;
        }
        match replace_spans(&current, &spans, marker) {
            Some(next) => current = Cow::Owned(next),
            None => break,
        }
    }
    if secret_spans(&current).is_empty() {
        return current;
    }
    Cow::Owned(marker(Kind::GenericSecret, text))
}

fn replace_spans(text: &str, spans: &[(Range<usize>, Kind)], marker: &dyn Fn(Kind, &str) -> String) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (range, kind) in spans {
        out.push_str(text.get(at..range.start)?);
        out.push_str(&marker(*kind, text.get(range.clone())?));
        at = range.end;
    }
    out.push_str(text.get(at..)?);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";
    const OTHER: &str = "ghp_zZ3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5";

    fn keyed() -> Redactor {
        Redactor::keyed(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn nothing_found_borrows() {
        let r = keyed();
        for s in [
            "",
            "session-1",
            "alice@example.com",
            "read_file",
            "System paths are off limits (/etc/x)",
        ] {
            assert!(matches!(r.id(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(r.text(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn ids_are_stable_distinct_and_keyed() {
        let r = keyed();
        let a = r.id(&format!("sess.{TOKEN}")).into_owned();
        assert!(!a.contains(TOKEN), "{a}");
        assert!(a.starts_with("sess.[REDACTED:github_token:"), "{a}");
        assert_eq!(a, r.id(&format!("sess.{TOKEN}")));
        assert_ne!(a, r.id(&format!("sess.{OTHER}")));
        assert_ne!(a, r.id(&format!("other.{TOKEN}")));
        let other_key = Redactor::keyed(b"fedcba9876543210fedcba9876543210").unwrap();
        assert_ne!(a, other_key.id(&format!("sess.{TOKEN}")));
        assert_ne!(a, Redactor::unkeyed().id(&format!("sess.{TOKEN}")));
    }

    #[test]
    fn texts_get_the_arguments_marker() {
        let r = keyed();
        let t = r
            .text(&format!("System paths are off limits (/etc/{TOKEN})"))
            .into_owned();
        assert_eq!(t, "System paths are off limits (/etc/[REDACTED:github_token])");
    }

    #[test]
    fn a_token_used_as_a_password_is_replaced_once() {
        let r = keyed();
        let t = r.text(&format!("clone https://bob:{TOKEN}@github.com/x")).into_owned();
        assert!(!t.contains(TOKEN), "{t}");
        assert!(!t.contains("ghp_"), "{t}");
    }

    #[test]
    fn a_stored_id_redacts_to_itself() {
        // Admins look sessions up by the ids the API shows them.
        let r = keyed();
        let stored = r.id(&format!("sess.{TOKEN}")).into_owned();
        assert!(matches!(r.id(&stored), Cow::Borrowed(_)), "{stored}");
    }

    #[test]
    fn a_reason_loses_what_the_arguments_lost() {
        let r = keyed();
        let original = serde_json::json!({"user": "bob", "password": "Zq8#kL2!pW9xR4", "n": [1, {"token": TOKEN}]});
        let mut stored = original.clone();
        let found = Scanner::global().redact_where(&mut stored, |k| k.category() == tame_engine::Category::Secret);
        assert_eq!(found.len(), 2, "{stored}");
        let mut pairs = Vec::new();
        redacted_values(&original, &stored, &mut pairs);
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        let reason = r.reason(&format!("no logins as bob with Zq8#kL2!pW9xR4 ({TOKEN})"), &mut pairs);
        assert_eq!(
            reason,
            "no logins as bob with [REDACTED:generic_secret] ([REDACTED:github_token])"
        );
        // The scanner alone does not know that password.
        assert!(matches!(
            r.text("no logins as bob with Zq8#kL2!pW9xR4"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(Redactor::keyed(b"short").is_err());
    }
}
