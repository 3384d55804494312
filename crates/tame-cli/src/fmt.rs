//! `tame fmt`: formats the conditions of policies.yml and leaves every
//! other byte alone.
//!
//! serde_yaml drops comments, so the file is never re-serialized: saphyr's
//! event parser locates each rule's `condition:` string, which is parsed
//! and printed again with [`tame_lang::pretty_lines`], and only that
//! scalar's text is replaced. What changes, exactly:
//!
//! - operators as words (`and`, `or`, `not`), parentheses only where
//!   needed, one space around operators and after commas;
//! - the scalar single-quoted on the key's line when it fits in the width,
//!   else a folded block (`>-`) with one `and`/`or` operand per line,
//!   indented two spaces past the key.
//!
//! Comments, key order, blank lines, other scalars and legacy rules stay
//! byte for byte. A condition that does not parse is an error and the file
//! is not written. Before anything is written the result is read back with
//! the loader's YAML reader and must hold the same data, with every
//! condition parsing to the same tree; otherwise nothing is written.

use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use clap::Args;
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::json;

use crate::Exit;
use crate::error::CliError;
use crate::local::{expand_targets, read_file};
use crate::output::{Out, dim};

/// The default line width, as the workspace's rustfmt.
pub const DEFAULT_WIDTH: usize = 120;

/// Nesting deeper than this is refused (as the loader's position tree does).
const MAX_DEPTH: usize = 128;

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// Policy files or directories (every *.yml / *.yaml below, not
    /// *.tests.yml); `-` formats standard input to standard output
    #[arg(required = true, value_name = "FILE|DIR|-")]
    pub files: Vec<String>,
    /// Change nothing; exit 1 when a file is not formatted (for CI)
    #[arg(long)]
    pub check: bool,
    /// The line width conditions are broken at
    #[arg(long, default_value_t = DEFAULT_WIDTH)]
    pub width: usize,
}

/// Why a text could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FmtError {
    /// 1-based line and column in the text, when known.
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// One `condition:` scalar found in the text.
#[derive(Debug)]
struct Found {
    /// The rule's index in `rules:`.
    rule: usize,
    value: String,
    style: ScalarStyle,
    tagged: bool,
    /// Byte span of the scalar (quotes and block indicator included).
    span: Range<usize>,
    /// Byte offset of the `condition` key.
    key_start: usize,
    /// Inside a flow collection (`{...}`, `[...]`): no block scalars there.
    in_flow: bool,
}

#[derive(Debug)]
enum Frame {
    Map {
        key: Option<String>,
        key_start: usize,
        expect_key: bool,
        flow: bool,
    },
    Seq {
        index: usize,
        flow: bool,
    },
}

impl Frame {
    fn flow(&self) -> bool {
        match self {
            Frame::Map { flow, .. } | Frame::Seq { flow, .. } => *flow,
        }
    }
}

/// Byte offsets of saphyr's character indices.
struct CharIndex(Vec<usize>, usize);

impl CharIndex {
    fn new(text: &str) -> Self {
        CharIndex(text.char_indices().map(|(i, _)| i).collect(), text.len())
    }
    fn byte(&self, char_index: usize) -> usize {
        self.0.get(char_index).copied().unwrap_or(self.1)
    }
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn error_at(text: &str, at: usize, message: String) -> FmtError {
    let (line, column) = line_col(text, at);
    FmtError { line, column, message }
}

/// Finds every `rules[i].condition` scalar of the text's documents.
fn find_conditions(text: &str) -> Result<Vec<Found>, FmtError> {
    let idx = CharIndex::new(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut found = Vec::new();
    for ev in Parser::new_from_str(text) {
        let (event, span) = ev.map_err(|e| {
            error_at(
                text,
                idx.byte(e.marker().index()),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        let start = idx.byte(span.start.index());
        let end = idx.byte(span.end.index()).max(start);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => continue,
            Event::DocumentStart(_) | Event::DocumentEnd => {
                stack.clear();
                continue;
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if stack.len() >= MAX_DEPTH {
                    return Err(error_at(text, start, String::from("nesting is too deep")));
                }
                let flow = stack.last().is_some_and(Frame::flow)
                    || text.get(start..).is_some_and(|t| t.starts_with(['{', '[']));
                let is_key = matches!(stack.last(), Some(Frame::Map { expect_key: true, .. }));
                if is_key && let Some(Frame::Map { key, .. }) = stack.last_mut() {
                    // A collection as a key: not a name this walk follows.
                    *key = None;
                }
                stack.push(if matches!(event, Event::MappingStart(..)) {
                    Frame::Map {
                        key: None,
                        key_start: start,
                        expect_key: true,
                        flow,
                    }
                } else {
                    Frame::Seq { index: 0, flow }
                });
                continue;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Scalar(value, style, _, tag) => {
                if let Some(Frame::Map {
                    key,
                    key_start,
                    expect_key,
                    ..
                }) = stack.last_mut()
                    && *expect_key
                {
                    *key = Some(value.into_owned());
                    *key_start = start;
                    *expect_key = false;
                    continue;
                }
                if let Some(rule) = condition_path(&stack) {
                    let key_start = match stack.last() {
                        Some(Frame::Map { key_start, .. }) => *key_start,
                        _ => start,
                    };
                    found.push(Found {
                        rule,
                        value: value.into_owned(),
                        style,
                        tagged: tag.is_some(),
                        span: start..end,
                        key_start,
                        in_flow: stack.last().is_some_and(Frame::flow),
                    });
                }
            }
            Event::Alias(_) => {
                if let Some(Frame::Map { key, expect_key, .. }) = stack.last_mut()
                    && *expect_key
                {
                    *key = None;
                    *expect_key = false;
                    continue;
                }
            }
        }
        // A value (scalar, alias or collection) is complete.
        match stack.last_mut() {
            Some(Frame::Map { expect_key, key, .. }) => {
                if *expect_key {
                    // A collection key just ended; its value comes next.
                    *expect_key = false;
                    *key = None;
                } else {
                    *expect_key = true;
                }
            }
            Some(Frame::Seq { index, .. }) => *index += 1,
            None => {}
        }
    }
    Ok(found)
}

/// `Some(i)` when the stack is at `rules[i].condition` of the document's
/// top mapping.
fn condition_path(stack: &[Frame]) -> Option<usize> {
    match stack {
        [
            Frame::Map { key: Some(rules), .. },
            Frame::Seq { index, .. },
            Frame::Map {
                key: Some(condition),
                expect_key: false,
                ..
            },
        ] if rules == "rules" && condition == "condition" => Some(*index),
        _ => None,
    }
}

/// Where a block scalar's text ends: after its last non-blank content line
/// (trailing blank lines stay in the file).
fn block_scalar_end(text: &str, start: usize, parent_indent: usize) -> usize {
    let Some(first_break) = text.get(start..).and_then(|t| t.find('\n')) else {
        return text.len();
    };
    let mut end = start + first_break;
    let mut pos = end + 1;
    while pos < text.len() {
        let rest = text.get(pos..).unwrap_or("");
        let line_len = rest.find('\n').unwrap_or(rest.len());
        let line = rest.get(..line_len).unwrap_or("").trim_end_matches('\r');
        let indent = line.len() - line.trim_start_matches(' ').len();
        if line.trim().is_empty() {
            pos += line_len + 1;
            continue;
        }
        if indent <= parent_indent {
            break;
        }
        end = pos + line.len();
        pos += line_len + 1;
    }
    end
}

/// The end of the quoted scalar starting at `start` (after its closing
/// quote).
fn quoted_end(text: &str, start: usize) -> Option<usize> {
    let rest = text.get(start..)?;
    let mut chars = rest.char_indices();
    let (_, quote) = chars.next()?;
    while let Some((i, c)) = chars.next() {
        if quote == '"' && c == '\\' {
            chars.next();
        } else if c == quote {
            // `''` inside a single-quoted scalar is an escaped quote.
            if quote == '\'' && rest.get(i + 1..).is_some_and(|r| r.starts_with('\'')) {
                chars.next();
                continue;
            }
            return Some(start + i + 1);
        }
    }
    None
}

/// A block scalar's header after the key at `key_start` (`condition: >-`):
/// where its indicator starts and a comment on that line. `None` when the
/// header is not on the key's line or carries anything but indicators.
fn block_header(text: &str, key_start: usize) -> Option<(usize, Option<String>)> {
    let rest = text.get(key_start..)?;
    let after_key = rest.strip_prefix("condition")?;
    let after_colon = after_key.trim_start_matches(' ').strip_prefix(':')?;
    let value = after_colon.trim_start_matches(' ');
    if !value.starts_with(['|', '>']) {
        return None;
    }
    let start = key_start + (rest.len() - value.len());
    let line = value.split('\n').next().unwrap_or("").trim_end_matches('\r');
    let indicators = line
        .char_indices()
        .find(|(_, c)| !matches!(c, '|' | '>' | '+' | '-' | '0'..='9'))
        .map_or(line.len(), |(i, _)| i);
    let tail = line.get(indicators..).unwrap_or("").trim();
    match tail {
        "" => Some((start, None)),
        t if t.starts_with('#') => Some((start, Some(t.to_owned()))),
        _ => None,
    }
}

/// The column (0-based, in characters) of a byte offset.
fn column_of(text: &str, at: usize) -> usize {
    let before = text.get(..at).unwrap_or("");
    before.rsplit('\n').next().map_or(0, |l| l.chars().count())
}

fn single_quoted(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Formats a policy file's text. Returns the text unchanged when there is
/// nothing to do.
pub fn format_text(text: &str, width: usize) -> Result<String, FmtError> {
    let found = find_conditions(text)?;
    let data: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| FmtError {
        line: e.location().map_or(0, |l| l.line()),
        column: e.location().map_or(0, |l| l.column()),
        message: format!("invalid YAML: {e}"),
    })?;
    let newline = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut edits: Vec<(Range<usize>, String)> = Vec::new();
    for f in &found {
        // Only what the loader reads as a string (not `condition: true`),
        // and nothing with an explicit tag.
        let is_string = rule_condition(&data, f.rule).is_some_and(|c| c.as_str() == Some(f.value.as_str()));
        if f.tagged || !is_string {
            continue;
        }
        let expr = tame_lang::parse(&f.value).map_err(|e| {
            error_at(
                text,
                f.span.start,
                format!("rules[{}].condition does not parse: {}", f.rule, e.message),
            )
        })?;
        let key_col = column_of(text, f.key_start);
        // saphyr's spans: exact for plain scalars; quoted ones may run on
        // to the next token, block ones start at their content. The exact
        // range is read from the text.
        let (span, comment) = match f.style {
            ScalarStyle::Plain => (f.span.clone(), None),
            ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => match quoted_end(text, f.span.start) {
                Some(end) => (f.span.start..end, None),
                None => continue,
            },
            ScalarStyle::Literal | ScalarStyle::Folded => match block_header(text, f.key_start) {
                Some((start, comment)) => (start..block_scalar_end(text, start, key_col), comment),
                None => continue,
            },
        };
        let same_line = !text.get(f.key_start..span.start).unwrap_or("").contains('\n');
        let one_line = single_quoted(&tame_lang::pretty(&expr));
        // `condition: '...'`: the key, a colon and a space before the value.
        let fits = key_col + "condition: ".len() + one_line.chars().count() <= width;
        let lines = tame_lang::pretty_lines(&expr, key_col + 2, width);
        let replacement = if fits || lines.len() < 2 || !same_line || f.in_flow {
            one_line
        } else {
            let pad = " ".repeat(key_col + 2);
            let mut block = String::from(">-");
            for line in &lines {
                block.push_str(newline);
                block.push_str(&pad);
                block.push_str(line);
            }
            block
        };
        let replacement = match comment {
            // A comment on a block scalar's header line stays after the value.
            Some(comment) => match replacement.split_once(newline) {
                Some((head, rest)) => format!("{head} {comment}{newline}{rest}"),
                None => format!("{replacement} {comment}"),
            },
            None => replacement,
        };
        if text.get(span.clone()) != Some(replacement.as_str()) {
            edits.push((span, replacement));
        }
    }
    if edits.is_empty() {
        return Ok(text.to_owned());
    }
    let mut out = text.to_owned();
    edits.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    for (span, replacement) in edits {
        out.replace_range(span, &replacement);
    }
    verify(&data, &out)?;
    Ok(out)
}

fn rule_condition(data: &serde_yaml::Value, rule: usize) -> Option<&serde_yaml::Value> {
    data.get("rules")?.get(rule)?.get("condition")
}

/// The data with every parseable condition replaced by its one-line form.
fn normalized(mut data: serde_yaml::Value) -> serde_yaml::Value {
    if let Some(serde_yaml::Value::Sequence(rules)) = data.get_mut("rules") {
        for rule in rules {
            if let Some(c) = rule.get_mut("condition")
                && let Some(expr) = c.as_str().and_then(|s| tame_lang::parse(s).ok())
            {
                *c = serde_yaml::Value::String(tame_lang::pretty(&expr));
            }
        }
    }
    data
}

/// The formatted text must hold the same data as the original, with every
/// condition parsing to the same tree.
fn verify(before: &serde_yaml::Value, after: &str) -> Result<(), FmtError> {
    let internal = |what: &str| FmtError {
        line: 0,
        column: 0,
        message: format!("formatting would change the file's meaning ({what}); the file is left unchanged"),
    };
    let data: serde_yaml::Value = serde_yaml::from_str(after).map_err(|e| internal(&e.to_string()))?;
    if let (Some(serde_yaml::Value::Sequence(old)), Some(serde_yaml::Value::Sequence(new))) =
        (before.get("rules"), data.get("rules"))
    {
        for (i, (a, b)) in old.iter().zip(new).enumerate() {
            let parse = |v: &serde_yaml::Value| v.get("condition")?.as_str().map(tame_lang::parse);
            if let (Some(Ok(a)), Some(Ok(b))) = (parse(a), parse(b))
                && a != b
            {
                return Err(internal(&format!("rules[{i}].condition")));
            }
        }
    }
    if normalized(before.clone()) != normalized(data) {
        return Err(internal("data outside the conditions"));
    }
    Ok(())
}

/// `tame fmt`.
pub fn fmt(args: &FmtArgs, out: &Out) -> Result<Exit, CliError> {
    if args.files.iter().any(|f| f == "-") {
        if args.files.len() > 1 {
            return Err(CliError::Input(String::from(
                "`-` (standard input) cannot be mixed with files",
            )));
        }
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::Input(format!("cannot read standard input: {e}")))?;
        let formatted = format_text(&text, args.width).map_err(|e| located("<stdin>", &e))?;
        if args.check {
            return Ok(if formatted == text { Exit::Ok } else { Exit::Error });
        }
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(formatted.as_bytes())
            .and_then(|()| stdout.flush())
            .map_err(|e| CliError::Other(format!("cannot write standard output: {e}")))?;
        return Ok(Exit::Ok);
    }
    let targets: Vec<PathBuf> = args.files.iter().map(PathBuf::from).collect();
    let mut failed = false;
    let mut unformatted = 0usize;
    let mut changed = 0usize;
    let mut unchanged = 0usize;
    for path in expand_targets(&targets)? {
        match fmt_file(&path, args) {
            Ok(true) if args.check => {
                unformatted += 1;
                report(out, &path, "not formatted");
            }
            Ok(true) => {
                changed += 1;
                report(out, &path, "formatted");
            }
            Ok(false) => unchanged += 1,
            Err(err) => {
                failed = true;
                out.error(&err);
            }
        }
    }
    if !out.json {
        let summary = if args.check {
            format!("{unformatted} not formatted, {unchanged} formatted")
        } else {
            format!("{changed} formatted, {unchanged} unchanged")
        };
        out.line(dim(summary));
    }
    Ok(if failed || unformatted > 0 {
        Exit::Error
    } else {
        Exit::Ok
    })
}

fn report(out: &Out, path: &Path, what: &str) {
    if out.json {
        out.json_line(&json!({"file": path.display().to_string(), "status": what}));
    } else {
        out.line(format!("{what}: {}", path.display()));
    }
}

fn located(origin: &str, e: &FmtError) -> CliError {
    if e.line == 0 {
        CliError::Input(format!("{origin}: {}", e.message))
    } else {
        CliError::Input(format!("{origin}:{}:{}: {}", e.line, e.column, e.message))
    }
}

/// Formats one file; `Ok(true)` when it changed (or, with `--check`,
/// would change).
fn fmt_file(path: &Path, args: &FmtArgs) -> Result<bool, CliError> {
    let text = read_file(path)?;
    let formatted = format_text(&text, args.width).map_err(|e| located(&path.display().to_string(), &e))?;
    if formatted == text {
        return Ok(false);
    }
    if !args.check {
        std::fs::write(path, formatted)
            .map_err(|e| CliError::Other(format!("cannot write `{}`: {e}", path.display())))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "\
# the header comment
version: \"1\"
rules:
  - name: a   # why a
    action: deny
    condition: \"args.x == 'y' && !has(args.z)\"   # trailing comment
    reason: keep \"this\"
  - name: b
    action: allow
    condition: true
  - {name: c, action: deny, condition: 'a.b||c.d'}
  - name: d
    action: deny
    condition: |
      tool == \"x\"
        || tool == \"y\"

  # a comment after a block
  - name: e
    action: allow
";

    #[test]
    fn rewrites_only_conditions() {
        let out = format_text(POLICY, 120).unwrap();
        assert_eq!(
            out,
            "\
# the header comment
version: \"1\"
rules:
  - name: a   # why a
    action: deny
    condition: 'args.x == \"y\" and not has(args.z)'   # trailing comment
    reason: keep \"this\"
  - name: b
    action: allow
    condition: true
  - {name: c, action: deny, condition: 'a.b or c.d'}
  - name: d
    action: deny
    condition: 'tool == \"x\" or tool == \"y\"'

  # a comment after a block
  - name: e
    action: allow
"
        );
        assert_eq!(format_text(&out, 120).unwrap(), out);
    }

    #[test]
    fn long_conditions_become_folded_blocks() {
        let text = "rules:\n  - name: a\n    action: deny\n    condition: 'aaaaaaaaaa == 1 || bbbbbbbbbb == 2 || (cccccccccc == 3 && dddddddddd == 4)'\n";
        let out = format_text(text, 44).unwrap();
        assert_eq!(
            out,
            "rules:\n  - name: a\n    action: deny\n    condition: >-\n      aaaaaaaaaa == 1 or\n      bbbbbbbbbb == 2 or\n      (cccccccccc == 3 and dddddddddd == 4)\n"
        );
        assert_eq!(format_text(&out, 44).unwrap(), out);
        // Back to one line when it fits.
        assert!(
            format_text(&out, 200)
                .unwrap()
                .contains("condition: 'aaaaaaaaaa == 1 or")
        );
    }

    #[test]
    fn block_headers_keep_their_comment() {
        let text =
            "rules:\n  - name: a\n    condition: >- # the why\n      a ==\n        1\n\n    # next\n    action: deny\n";
        assert_eq!(
            format_text(text, 120).unwrap(),
            "rules:\n  - name: a\n    condition: 'a == 1' # the why\n\n    # next\n    action: deny\n"
        );
        let crlf = "rules:\r\n  - name: a\r\n    condition: \"a  ==  1\"  # c\r\n";
        assert_eq!(
            format_text(crlf, 120).unwrap(),
            "rules:\r\n  - name: a\r\n    condition: 'a == 1'  # c\r\n"
        );
    }

    #[test]
    fn bad_input_is_located() {
        let err = format_text("rules:\n  - name: a\n    condition: 'args.x ==\n", 120).unwrap_err();
        assert!(
            err.message.contains("invalid YAML") || err.message.contains("does not parse"),
            "{err:?}"
        );
        let err = format_text(
            "rules:\n  - name: a\n    action: deny\n    condition: 'args.x == '\n",
            120,
        )
        .unwrap_err();
        assert_eq!((err.line, err.column), (4, 16));
        assert!(err.message.contains("rules[0].condition does not parse"), "{err:?}");
    }

    #[test]
    fn files_without_rules_are_unchanged() {
        let text = "# tests\ntests:\n  - {tool: a, expect: allow}\n";
        assert_eq!(format_text(text, 120).unwrap(), text);
    }
}
