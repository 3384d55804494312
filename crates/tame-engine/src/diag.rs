//! Diagnostics of policy files: one serializable shape for every frontend,
//! rendered with miette (file:line:column, the line, a caret under the text).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Serialize;
use tame_lang::diag::printable;
use tame_lang::{LineIndex, Snippet};

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One error or warning about a policy file. The same shape is used for
/// HTTP bodies, `--error-format json` and Python exceptions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// What is wrong: lowercase, user text in backticks.
    pub message: String,
    /// The file (origin) the policy came from.
    pub file: String,
    /// 1-based line of the offending text (0 when unknown).
    pub line: usize,
    /// 1-based column, in characters (0 when unknown).
    pub column: usize,
    /// The rule the diagnostic is about, if any.
    pub rule: Option<String>,
    pub help: Option<String>,
    /// The human rendering: `file:line:col`, the source line, a caret.
    pub rendered: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rendered)
    }
}

/// A policy that could not be loaded: every diagnostic of the file (errors
/// first, in file order; warnings found along the way are kept too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyError {
    /// The errors only (not the warnings).
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    /// A single error without a location (I/O and the like).
    pub(crate) fn plain(file: &str, message: String) -> Self {
        let rendered = format!("error: {file}: {message}");
        PolicyError {
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                message,
                file: file.to_owned(),
                line: 0,
                column: 0,
                rule: None,
                help: None,
                rendered,
            }],
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors().count();
        let file = self.diagnostics.first().map(|d| d.file.as_str()).unwrap_or("policy");
        writeln!(f, "{file}: {n} error{} in policy", if n == 1 { "" } else { "s" })?;
        for d in &self.diagnostics {
            writeln!(f, "{}", d.rendered.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for PolicyError {}

/// 1-based line and column (in characters) of a byte offset in `text`.
pub use tame_lang::line_col;

pub(crate) fn floor_char_boundary(text: &str, mut i: usize) -> usize {
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Characters of a rule's name kept in diagnostics.
const MAX_RULE_ECHO: usize = 64;

/// `text` cut to `max` characters and `…` when longer.
fn elide(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((cut, _)) => Cow::Owned(format!("{}…", text.get(..cut).unwrap_or(text))),
        None => Cow::Borrowed(text),
    }
}

/// Collects diagnostics for one file and renders them.
#[derive(Debug)]
pub(crate) struct Reporter<'a> {
    pub file: &'a str,
    /// Lines of `text`, so each diagnostic is placed without rescanning it.
    lines: LineIndex<'a>,
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub fn new(file: &'a str, text: &'a str) -> Self {
        Reporter {
            file,
            lines: LineIndex::new(text),
            diagnostics: Vec::new(),
        }
    }

    /// The file's text.
    pub fn text(&self) -> &'a str {
        self.lines.text()
    }

    /// 1-based line and column (in characters) of a byte offset in the file.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        self.lines.line_col(offset)
    }

    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// Builds a diagnostic pointing at `span` (byte offsets in the file).
    pub fn make(
        &self,
        severity: Severity,
        message: String,
        span: Option<Range<usize>>,
        label: Option<String>,
        rule: Option<&str>,
        help: Option<String>,
    ) -> Diagnostic {
        let (line, column) = match &span {
            Some(s) => self.lines.line_col(s.start),
            None => (0, 0),
        };
        // A rule's name is repeated in each of its diagnostics: a long one
        // is cut, so a file cannot multiply its size in the answer.
        let rule = rule.map(|r| elide(r, MAX_RULE_ECHO));
        let headline = match &rule {
            Some(r) => format!("{message} (rule `{r}`)"),
            None => message.clone(),
        };
        let rendered = render(
            self.file,
            &self.lines,
            severity,
            &headline,
            span,
            label,
            help.as_deref(),
        );
        Diagnostic {
            severity,
            message,
            file: self.file.to_owned(),
            line,
            column,
            rule: rule.map(Cow::into_owned),
            help,
            rendered,
        }
    }

    pub fn error(&mut self, message: String, span: Option<Range<usize>>, rule: Option<&str>, help: Option<String>) {
        let d = self.make(Severity::Error, message, span, None, rule, help);
        self.diagnostics.push(d);
    }
}

/// Renders one diagnostic with miette, without colours so the output is the
/// same on every terminal and in JSON.
pub(crate) fn render(
    file: &str,
    lines: &LineIndex<'_>,
    severity: Severity,
    message: &str,
    span: Option<Range<usize>>,
    label: Option<String>,
    help: Option<&str>,
) -> String {
    let Some(span) = span else {
        let (word, _) = severity_word(severity);
        let mut out = format!("{word}: {file}: {}", printable(message));
        if let Some(h) = help {
            out.push_str("\n  help: ");
            out.push_str(&printable(h));
        }
        return out;
    };
    let text = lines.text();
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
    // A zero-width caret still shows; make it one character when possible.
    let end = if end > start {
        end
    } else {
        start
            + text
                .get(start..)
                .and_then(|s| s.chars().next())
                .map_or(0, char::len_utf8)
    };
    tame_lang::render_snippet(
        lines,
        &Snippet {
            file_name: file,
            message,
            severity: match severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            },
            span: start..end,
            label: label.as_deref(),
            help,
        },
    )
}

fn severity_word(s: Severity) -> (&'static str, ()) {
    match s {
        Severity::Error => ("error", ()),
        Severity::Warning => ("warning", ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_chars() {
        let t = "ab\ncdé\nf";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 8), (3, 1));
        assert_eq!(line_col(t, 100), (3, 2));
    }

    #[test]
    fn render_shows_location_and_caret() {
        let text = "rules:\n  - name: x\n    action: allw\n";
        let start = text.find("allw").unwrap_or(0);
        let out = render(
            "p.yml",
            &LineIndex::new(text),
            Severity::Error,
            "unknown action `allw`",
            Some(start..start + 4),
            None,
            Some("use allow"),
        );
        assert!(out.contains("p.yml:3:13"), "{out}");
        assert!(out.contains("action: allw"), "{out}");
        assert!(out.contains("────"), "{out}");
        assert!(out.contains("use allow"), "{out}");
    }
}
