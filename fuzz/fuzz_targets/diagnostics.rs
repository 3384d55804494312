//! Fuzzes diagnostics: a policy text is loaded and every diagnostic (errors
//! and lints) is rendered, and a span taken from the input is rendered over
//! the text directly. Rendering never panics and stays bounded: an excerpt
//! of a few cropped lines whatever the text.
//!
//! Input: two bytes of span start, two of span length, two of repeat
//! count, then the text. A part of the text between two `\x01` bytes is
//! repeated that many times (up to about 1 MiB), so long lines and big
//! files are a few bytes of input away.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tame_engine::{Diagnostic, Policy};
use tame_lang::{LineIndex, Snippet, line_col, render_snippet};

/// At most this many bytes of excerpt, gutter and caret lines per rendering,
/// beside the message and the help (which miette wraps and indents).
const EXCERPT_BYTES: usize = 16 * 1024;
/// A rule's name in a headline is cut to 64 characters.
const RULE_ECHO_BYTES: usize = 64 * 4 + 16;

fn expand(text: &str, count: usize) -> String {
    let mut parts = text.splitn(3, '\x01');
    let (Some(head), Some(middle), Some(tail)) = (parts.next(), parts.next(), parts.next()) else {
        return text.to_owned();
    };
    let count = count.min((1 << 20) / middle.len().max(1));
    let mut out = String::with_capacity(head.len() + middle.len() * count + tail.len());
    out.push_str(head);
    for _ in 0..count {
        out.push_str(middle);
    }
    out.push_str(tail);
    out
}

fn check_rendered(d: &Diagnostic) {
    let words = d.message.len() + d.help.as_ref().map_or(0, String::len) + d.file.len();
    assert!(
        d.rendered.len() <= 4 * words + RULE_ECHO_BYTES * 4 + EXCERPT_BYTES,
        "rendering of {} bytes for `{}`",
        d.rendered.len(),
        d.message
    );
    assert!(!d.rendered.is_empty());
    assert!(
        d.rule.as_ref().is_none_or(|r| r.chars().count() <= 65),
        "rule name echoed whole"
    );
    assert!(
        !d.rendered.chars().any(|c| c.is_control() && c != '\n'),
        "control characters rendered"
    );
}

fuzz_target!(|data: &[u8]| {
    let [s0, s1, l0, l1, n0, n1, rest @ ..] = data else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let text = expand(text, usize::from(u16::from_le_bytes([*n0, *n1])));

    // A span straight into the renderer, anywhere in (or past) the text.
    let start = usize::from(u16::from_le_bytes([*s0, *s1])) * text.len().max(1) / 65_536;
    let len = usize::from(u16::from_le_bytes([*l0, *l1]));
    let index = LineIndex::new(&text);
    assert_eq!(index.line_col(start), line_col(&text, start));
    let out = render_snippet(
        &index,
        &Snippet {
            file_name: "fuzz.yml",
            message: "fuzz",
            severity: miette::Severity::Error,
            span: start..start + len,
            label: Some("here"),
            help: None,
        },
    );
    assert!(out.len() <= EXCERPT_BYTES, "rendering of {} bytes", out.len());

    // The text as a condition: its parse error rendered inside a file.
    if text.len() <= tame_lang::MAX_SOURCE_LEN + 1024
        && let Err(e) = tame_lang::parse(&text)
    {
        let file = format!("rules:\n  - condition: '{text}'\n");
        let out = e.render("fuzz.yml", &file, "rules:\n  - condition: '".len());
        assert!(out.len() <= 4 * e.message.len() + EXCERPT_BYTES);
        let _ = e.plain(&file, 0);
    }

    // The text as a policy: every diagnostic rendered.
    match Policy::from_yaml(&text, "fuzz.yml") {
        Ok(p) => p.lints().iter().for_each(check_rendered),
        Err(e) => {
            assert!(e.errors().next().is_some(), "a failed load must carry an error");
            e.diagnostics.iter().for_each(check_rendered);
            let _ = e.to_string();
        }
    }
});
