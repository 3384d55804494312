//! Renders one diagnostic with miette over a bounded excerpt of its source:
//! the lines around the span, long lines cropped around it, control
//! characters replaced. Whatever the text (a condition of 64 KiB on one
//! line, thousands of diagnostics in a megabyte), rendering costs about the
//! same and cannot reach miette's limits (its underline padding is a format
//! width, which panics past 65,535 columns).

use std::borrow::Cow;
use std::ops::Range;

use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, MietteError, MietteSpanContents, SourceCode,
    SourceSpan, SpanContents,
};

/// Characters of a line shown around the span; longer lines are cropped,
/// with `…` where text was cut.
pub const SNIPPET_COLUMNS: usize = 100;
/// Characters kept before the span's start when a line is cropped.
const LEFT_CONTEXT: usize = 40;
/// Lines of a span shown; a longer span is cut at the end of its last shown line.
pub const SNIPPET_SPAN_LINES: usize = 8;
/// Bytes per block of the character-count index.
const BLOCK: usize = 1024;
const ELLIPSIS: char = '…';

/// Line starts and character counts of a text, so that each diagnostic's
/// line and column cost a binary search and at most one block's scan, not a
/// scan of the whole text.
#[derive(Clone, Debug)]
pub struct LineIndex<'a> {
    text: &'a str,
    /// Byte offset of each line's first byte; the first is 0. A text ending
    /// in `\n` has a last, empty line.
    starts: Vec<usize>,
    /// Characters starting before each multiple of [`BLOCK`].
    chars_before_block: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> Self {
        let bytes = text.as_bytes();
        let mut starts = vec![0];
        starts.extend(newlines(bytes).map(|i| i + 1));
        let mut chars_before_block = Vec::with_capacity(bytes.len() / BLOCK + 1);
        let mut count = 0;
        for block in bytes.chunks(BLOCK) {
            chars_before_block.push(count);
            count += char_starts(block);
        }
        chars_before_block.push(count);
        LineIndex {
            text,
            starts,
            chars_before_block,
        }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    /// The 1-based line and column (in characters) of `byte_offset`, as
    /// [`crate::line_col`] computes them.
    pub fn line_col(&self, byte_offset: usize) -> (usize, usize) {
        let offset = self.floor(byte_offset);
        let line = self.line_of(offset);
        let start = self.starts.get(line).copied().unwrap_or(0);
        (line + 1, self.chars_before(offset) - self.chars_before(start) + 1)
    }

    /// The largest char boundary at or before `offset`, within the text.
    fn floor(&self, offset: usize) -> usize {
        let mut i = offset.min(self.text.len());
        while i > 0 && !self.text.is_char_boundary(i) {
            i -= 1;
        }
        i
    }

    /// The 0-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset).saturating_sub(1)
    }

    /// Characters starting before byte `offset` (a char boundary).
    fn chars_before(&self, offset: usize) -> usize {
        let block = offset / BLOCK;
        let base = self.chars_before_block.get(block).copied().unwrap_or(0);
        let from = block * BLOCK;
        base + self.text.as_bytes().get(from..offset).map_or(0, char_starts)
    }

    /// The byte range of line `line`'s text, without its `\n` or `\r\n`.
    fn content(&self, line: usize) -> Range<usize> {
        let start = self.starts.get(line).copied().unwrap_or(self.text.len());
        let mut end = self
            .starts
            .get(line + 1)
            .map_or(self.text.len(), |&next| next.saturating_sub(1));
        if end > start && self.text.as_bytes().get(end - 1) == Some(&b'\r') {
            end -= 1;
        }
        start..end
    }
}

fn newlines(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes.iter().enumerate().filter(|&(_, &b)| b == b'\n').map(|(i, _)| i)
}

/// Bytes that start a UTF-8 character (not continuation bytes).
fn char_starts(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b & 0xC0 != 0x80).count()
}

/// One diagnostic to render.
#[derive(Clone, Debug)]
pub struct Snippet<'a> {
    /// Shown before the line and column: `policies.yml:5:17`.
    pub file_name: &'a str,
    pub message: &'a str,
    pub severity: miette::Severity,
    /// Byte range in the indexed text (clamped to it).
    pub span: Range<usize>,
    /// A note under the caret.
    pub label: Option<&'a str>,
    pub help: Option<&'a str>,
}

/// `text` with control characters other than `\n` shown as `�`, so that
/// user text echoed in a diagnostic cannot drive the terminal it is
/// printed on.
pub fn printable(text: &str) -> Cow<'_, str> {
    if text.chars().any(|c| c.is_control() && c != '\n') {
        Cow::Owned(
            text.chars()
                .map(|c| if c.is_control() && c != '\n' { '\u{FFFD}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(text)
    }
}

/// Renders `snippet` with miette (no colours): the message, `file:line:col`,
/// the lines around the span with a caret under it, the help. Control
/// characters in the text, the message, the label and the help are shown
/// as `�`.
pub fn render_snippet(index: &LineIndex<'_>, snippet: &Snippet<'_>) -> String {
    let start = index.floor(snippet.span.start);
    let end = index.floor(snippet.span.end).max(start);
    let (line, column) = index.line_col(start);
    let name = format!("{}:{line}:{column}", printable(snippet.file_name));
    let excerpt = Excerpt::new(index, start..end, name);
    let message = printable(snippet.message);
    let mut diagnostic = MietteDiagnostic::new(message.as_ref())
        .with_severity(snippet.severity)
        .with_label(LabeledSpan::new_with_span(
            snippet.label.map(|l| printable(l).into_owned()),
            excerpt.span.clone(),
        ));
    if let Some(help) = snippet.help {
        diagnostic = diagnostic.with_help(printable(help));
    }
    let report = miette::Report::new(diagnostic).with_source_code(excerpt);
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .without_syntax_highlighting()
        .without_primary_span_start();
    let mut out = String::new();
    if handler.render_report(&mut out, report.as_ref()).is_err() || out.is_empty() {
        // miette could not render: the one-line form.
        let word = match snippet.severity {
            miette::Severity::Error => "error",
            miette::Severity::Warning => "warning",
            miette::Severity::Advice => "advice",
        };
        out = format!("{word}: {}:{line}:{column}: {message}", printable(snippet.file_name));
    }
    out
}

/// The lines miette shows, cropped and cleaned, with their place in the
/// file: miette numbers the lines from `first_line` and the header names
/// the span's start in the whole file.
#[derive(Debug)]
struct Excerpt {
    name: String,
    text: String,
    /// 0-based line of the file that the excerpt's first line is.
    first_line: usize,
    /// The span, in bytes of `text`.
    span: Range<usize>,
}

impl Excerpt {
    fn new(index: &LineIndex<'_>, span: Range<usize>, name: String) -> Self {
        let text = index.text;
        let last_line = index.starts.len().saturating_sub(1);
        let l0 = index.line_of(span.start);
        // The span's last character decides its last line: a span ending
        // with a `\n` ends on that line, not the next.
        let mut l1 = if span.end > span.start {
            index.line_of(span.end - 1)
        } else {
            l0
        };
        let col_of = |line: usize, at: usize| {
            let content = index.content(line);
            let at = at.clamp(content.start, content.end);
            index.chars_before(index.floor(at)) - index.chars_before(content.start)
        };
        let c0 = col_of(l0, span.start);
        let mut c1 = col_of(l1, span.end);
        if l1 > l0 + SNIPPET_SPAN_LINES - 1 {
            l1 = l0 + SNIPPET_SPAN_LINES - 1;
            c1 = usize::MAX;
        }
        let chars_in = |line: usize| {
            let c = index.content(line);
            index.chars_before(c.end) - index.chars_before(c.start)
        };
        // Each long line is cropped on its own: around the span's start on
        // its first line, around its end on its last, from the left on
        // others (miette places a multi-line span's ends line by line).
        let window = |line: usize| {
            if chars_in(line) <= SNIPPET_COLUMNS {
                0
            } else if line == l0 {
                c0.saturating_sub(LEFT_CONTEXT)
            } else if line == l1 {
                c1.min(chars_in(line)).saturating_sub(SNIPPET_COLUMNS - LEFT_CONTEXT)
            } else {
                0
            }
        };
        let first = l0.saturating_sub(1);
        let last = (l1 + 1).min(last_line);
        let mut out = String::new();
        let (mut s, mut e) = (0, 0);
        for line in first..=last {
            let content = text.get(index.content(line)).unwrap_or("");
            let placed = push_cropped(&mut out, content, window(line));
            if line == l0 {
                s = placed.at(c0);
            }
            if line == l1 {
                e = placed.at(c1);
            }
            if line < last_line {
                out.push('\n');
            }
        }
        Excerpt {
            name,
            text: out,
            first_line: first,
            span: s..e.max(s),
        }
    }
}

/// Where one cropped line went in the excerpt.
struct Placed {
    /// Start of the line (before a left `…`).
    line_start: usize,
    /// First visible column and the offset of each visible character.
    first_col: usize,
    offsets: Vec<usize>,
    /// End of the line (after a right `…`).
    line_end: usize,
}

impl Placed {
    /// The excerpt offset of column `col` of the line, clamped to what is shown.
    fn at(&self, col: usize) -> usize {
        if col < self.first_col {
            return self.line_start;
        }
        self.offsets.get(col - self.first_col).copied().unwrap_or(self.line_end)
    }
}

/// Appends columns `w0..w0 + SNIPPET_COLUMNS` of `line` to `out`, with `…`
/// where text is cut and control characters shown as `�`.
fn push_cropped(out: &mut String, line: &str, w0: usize) -> Placed {
    let line_start = out.len();
    let mut chars = line.chars().skip(w0).peekable();
    if w0 > 0 && !line.is_empty() {
        out.push(ELLIPSIS);
    }
    let mut offsets = Vec::new();
    for c in chars.by_ref().take(SNIPPET_COLUMNS) {
        offsets.push(out.len());
        out.push(if c.is_control() && c != '\t' { '\u{FFFD}' } else { c });
    }
    if chars.peek().is_some() {
        out.push(ELLIPSIS);
    }
    Placed {
        line_start,
        first_col: w0,
        offsets,
        line_end: out.len(),
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let inner = self
            .text
            .as_str()
            .read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line() + self.first_line,
            inner.column(),
            inner.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

    use proptest::prelude::*;

    use super::*;

    fn render(text: &str, span: Range<usize>) -> String {
        render_snippet(
            &LineIndex::new(text),
            &Snippet {
                file_name: "p.yml",
                message: "bad",
                severity: miette::Severity::Error,
                span,
                label: Some("here"),
                help: None,
            },
        )
    }

    /// The source lines of a rendering (those with a line number).
    fn source_lines(out: &str) -> Vec<&str> {
        out.lines()
            .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
            .collect()
    }

    #[test]
    fn short_lines_are_shown_whole() {
        let text = "a: 1\nb: nosuch\nc: 3\n";
        let at = text.find("nosuch").unwrap();
        let out = render(text, at..at + 6);
        assert!(out.contains("[p.yml:2:4]"), "{out}");
        assert_eq!(
            source_lines(&out),
            [" 1 │ a: 1", " 2 │ b: nosuch", " 3 │ c: 3"],
            "{out}"
        );
    }

    #[test]
    fn a_long_line_is_cropped_around_the_span() {
        let text = format!("k: {}nosuch{}\nnext: 1\n", "a".repeat(100_000), "z".repeat(100_000));
        let at = text.find("nosuch").unwrap();
        let out = render(&text, at..at + 6);
        assert!(out.contains("[p.yml:1:100004]"), "{out}");
        let lines = source_lines(&out);
        assert_eq!(lines.len(), 2, "{out}");
        let first = lines[0];
        assert!(first.contains(&format!("…{}nosuch", "a".repeat(LEFT_CONTEXT))), "{out}");
        assert!(first.ends_with('…'), "{out}");
        assert_eq!(lines[1], " 2 │ next: 1", "{out}");
        // The caret is under `nosuch`.
        let caret = out.lines().find(|l| l.contains("┬")).unwrap();
        let col = |s: &str, pat: &str| s.find(pat).map(|b| s[..b].chars().count()).unwrap();
        assert_eq!(col(caret, "─"), col(first, "nosuch"), "{out}");
        assert!(out.len() < 1_500, "{out}");
    }

    #[test]
    fn control_characters_and_crlf_are_not_echoed() {
        let text = "a: 1\r\nb: \u{1b}[31mx\u{7}\r\n";
        let at = text.find('x').unwrap();
        let out = render(text, at..at + 1);
        assert!(
            !out.contains('\u{1b}') && !out.contains('\u{7}') && !out.contains('\r'),
            "{out:?}"
        );
        assert!(out.contains("b: \u{FFFD}[31mx\u{FFFD}"), "{out}");
        assert!(out.contains("[p.yml:2:9]"), "{out}");
    }

    #[test]
    fn a_span_over_many_lines_is_cut() {
        let text = "x\n".repeat(1_000);
        let out = render(&text, 10..1_990);
        let lines = source_lines(&out);
        assert_eq!(lines.len(), SNIPPET_SPAN_LINES + 2, "{out}");
        assert!(lines[0].trim_start().starts_with("5 │"), "{out}");
    }

    #[test]
    fn edges_render() {
        for (text, span) in [
            ("", 0..0),
            ("a", 1..1),
            ("a\n", 2..2),
            ("a\n", 0..2),
            ("é", 1..1),
            ("a", Range { start: 5, end: 2 }),
        ] {
            let out = render(text, span.clone());
            assert!(out.contains("bad"), "{text:?} {span:?}: {out}");
        }
    }

    proptest! {
        #[test]
        fn line_index_agrees_with_line_col(text in "[a\n\r\té€😀]{0,64}", offset in 0usize..80) {
            prop_assert_eq!(LineIndex::new(&text).line_col(offset), crate::line_col(&text, offset));
        }

        #[test]
        fn rendering_is_bounded_and_never_panics(
            lines in prop::collection::vec(("[ a\t\r\u{1b}é😀]{0,3}", 0usize..300), 0..20),
            start in 0usize..4_000,
            len in 0usize..4_000,
        ) {
            let text: String = lines.iter().map(|(s, n)| format!("{}\n", s.repeat(*n))).collect();
            let out = render(&text, start..start + len);
            prop_assert!(out.contains("bad"));
            prop_assert!(source_lines(&out).len() <= SNIPPET_SPAN_LINES + 2, "{}", out);
            prop_assert!(out.len() < 12 * 1024, "{} bytes", out.len());
        }
    }
}
