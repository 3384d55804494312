//! Diagnostics of the condition language: parse and check errors with spans,
//! rendered with miette (line, column, a caret under the span) or as a
//! plain serializable shape for JSON.

use std::fmt;

use serde::Serialize;

use crate::ast::Span;
pub use crate::snippet::{LineIndex, SNIPPET_COLUMNS, SNIPPET_SPAN_LINES, Snippet, printable, render_snippet};

/// The 1-based line and column (in characters) of `byte_offset` in `text`.
///
/// Offsets past the end clamp to the end; an offset inside a multi-byte
/// character counts as that character.
pub fn line_col(text: &str, byte_offset: usize) -> (usize, usize) {
    let mut offset = byte_offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
    (line, column)
}

/// The plain, serializable shape of a diagnostic, for HTTP bodies,
/// `--error-format json` and Python exceptions. Lines and columns are
/// 1-based and relative to the text the diagnostic was placed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlainDiagnostic {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

macro_rules! lang_error {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $name {
            /// Lowercase, no trailing period, user text in backticks.
            pub message: String,
            /// Byte range in the condition's source.
            pub span: Span,
            /// A short note shown under the caret.
            pub label: Option<String>,
            /// A suggestion for fixing the problem.
            pub help: Option<String>,
        }

        impl $name {
            pub fn new(message: impl Into<String>, span: Span) -> Self {
                Self { message: message.into(), span, label: None, help: None }
            }

            pub fn with_label(mut self, label: impl Into<String>) -> Self {
                self.label = Some(label.into());
                self
            }

            pub fn with_help(mut self, help: impl Into<String>) -> Self {
                self.help = Some(help.into());
                self
            }

            /// Renders the error with miette: the file name, line and column,
            /// and a caret under the span. The condition starts at byte
            /// `offset` of `file_text` (0 when the text is the condition).
            pub fn render(&self, file_name: &str, file_text: &str, offset: usize) -> String {
                render(self.as_parts(), file_name, file_text, offset)
            }

            /// The plain shape of the error, placed at `offset` in `file_text`.
            pub fn plain(&self, file_text: &str, offset: usize) -> PlainDiagnostic {
                plain(self.as_parts(), file_text, offset)
            }

            fn as_parts(&self) -> Parts<'_> {
                Parts {
                    message: &self.message,
                    span: self.span,
                    label: self.label.as_deref(),
                    help: self.help.as_deref(),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.message)
            }
        }

        impl std::error::Error for $name {}
    };
}

lang_error!(
    /// A syntax error, or input refused by the parser's limits.
    ParseError
);
lang_error!(
    /// A static error found by the checker: unknown name, wrong arity, wrong type.
    CheckError
);

impl From<ParseError> for CheckError {
    fn from(e: ParseError) -> Self {
        CheckError {
            message: e.message,
            span: e.span,
            label: e.label,
            help: e.help,
        }
    }
}

struct Parts<'a> {
    message: &'a str,
    span: Span,
    label: Option<&'a str>,
    help: Option<&'a str>,
}

/// The span moved to `offset` and clamped to the text.
fn placed(span: Span, text: &str, offset: usize) -> (usize, usize) {
    let start = offset.saturating_add(span.start as usize).min(text.len());
    let end = offset.saturating_add(span.end as usize).min(text.len()).max(start);
    (start, end)
}

fn render(parts: Parts<'_>, file_name: &str, file_text: &str, offset: usize) -> String {
    let (start, end) = placed(parts.span, file_text, offset);
    render_snippet(
        &LineIndex::new(file_text),
        &Snippet {
            file_name,
            message: parts.message,
            severity: miette::Severity::Error,
            span: start..end,
            label: Some(parts.label.unwrap_or("here")),
            help: parts.help,
        },
    )
}

fn plain(parts: Parts<'_>, file_text: &str, offset: usize) -> PlainDiagnostic {
    let (start, end) = placed(parts.span, file_text, offset);
    let (line, column) = line_col(file_text, start);
    let (end_line, end_column) = line_col(file_text, end);
    PlainDiagnostic {
        message: parts.message.to_owned(),
        line,
        column,
        end_line,
        end_column,
        label: parts.label.map(str::to_owned),
        help: parts.help.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        // `é` is two bytes; the `\n` after it is column 4.
        assert_eq!(line_col(text, 7), (2, 4));
        assert_eq!(line_col(text, 8), (3, 1));
        assert_eq!(line_col(text, 1000), (3, 2));
        // Inside `é`: counts as `é`.
        assert_eq!(line_col(text, 6), (2, 3));
    }

    #[test]
    fn render_places_the_caret_inside_a_larger_file() {
        let file = "rules:\n  - condition: 'args.x == '\n";
        let offset = file.find("args").unwrap_or(0);
        let err = ParseError::new("unexpected end of condition", Span::new(10, 10)).with_help("add a value after `==`");
        let out = err.render("policies.yml", file, offset);
        assert!(out.contains("unexpected end of condition"), "{out}");
        assert!(out.contains("policies.yml:2:"), "{out}");
        assert!(out.contains("args.x =="), "{out}");
        assert!(out.contains("add a value"), "{out}");
        let p = err.plain(file, offset);
        assert_eq!((p.line, p.column), (2, 27));
    }
}
