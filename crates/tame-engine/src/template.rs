//! Reason templates: `"System paths are off limits ({args.path})"`.
//!
//! A `{...}` holds a path into the request with the condition language's
//! syntax: a root (`tool`, `args`/`tool_args`, `agent`, `user`,
//! `metadata`/`context`, `session.id`) then `.field`, `[0]` or `["key"]`
//! steps. `{{` and `}}` are literal braces. Strings render bare, other
//! values as JSON; a missing value renders as `<missing>`.

use std::fmt::Write as _;
use std::ops::Range;
use std::sync::Arc;

use tame_lang::{Key, Value};

use crate::facade::Request;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Root {
    Tool,
    Args,
    Agent,
    User,
    Metadata,
    SessionId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    Key(Arc<str>),
    Index(i64),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Text(String),
    Path { root: Root, steps: Vec<Step> },
}

/// A compiled reason template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

/// A template error: message and the byte range inside the template text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TemplateError {
    pub message: String,
    pub span: Range<usize>,
}

impl Template {
    /// Parses a template. Returns `Ok(None)` when it has no placeholder (a
    /// static reason).
    pub fn parse(text: &str) -> Result<Option<Template>, TemplateError> {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text.char_indices().peekable();
        let mut has_path = false;
        while let Some((i, c)) = rest.next() {
            match c {
                '{' if rest.peek().map(|p| p.1) == Some('{') => {
                    rest.next();
                    literal.push('{');
                }
                '}' if rest.peek().map(|p| p.1) == Some('}') => {
                    rest.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(TemplateError {
                        message: "unmatched `}` (write `}}` for a brace)".into(),
                        span: i..i + 1,
                    });
                }
                '{' => {
                    let start = i + 1;
                    let Some(len) = text.get(start..).and_then(|s| s.find('}')) else {
                        return Err(TemplateError {
                            message: "unclosed `{` (write `{{` for a brace)".into(),
                            span: i..i + 1,
                        });
                    };
                    let end = start + len;
                    let inner = text.get(start..end).unwrap_or("");
                    let (root, steps) = parse_path(inner).map_err(|(message, sub)| TemplateError {
                        message,
                        span: start + sub.start..start + sub.end,
                    })?;
                    if !literal.is_empty() {
                        segments.push(Segment::Text(std::mem::take(&mut literal)));
                    }
                    segments.push(Segment::Path { root, steps });
                    has_path = true;
                    while rest.peek().is_some_and(|p| p.0 <= end) {
                        rest.next();
                    }
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            segments.push(Segment::Text(literal));
        }
        Ok(has_path.then_some(Template { segments }))
    }

    /// Renders the template for a request.
    pub fn render(&self, req: &Request) -> String {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Text(t) => out.push_str(t),
                Segment::Path { root, steps } => render_path(&mut out, req, root, steps),
            }
        }
        out
    }
}

/// Unescapes `{{`/`}}` of a template without placeholders.
pub(crate) fn unescape_static(text: &str) -> String {
    text.replace("{{", "{").replace("}}", "}")
}

fn render_path(out: &mut String, req: &Request, root: &Root, steps: &[Step]) {
    let opt_str = |s: &Option<Arc<str>>| s.as_ref().map_or(Value::Null, |s| Value::String(s.clone()));
    let mut cur = match root {
        Root::Tool => Value::String(req.tool.clone()),
        Root::Args => req.args.clone(),
        Root::Agent => opt_str(&req.agent_id),
        Root::User => opt_str(&req.user_id),
        Root::Metadata => req.metadata.clone(),
        Root::SessionId => opt_str(&req.session_id),
    };
    for step in steps {
        let next = match (&cur, step) {
            (Value::Map(m), Step::Key(k)) => m.get(&Key::String(k.clone())).cloned(),
            (Value::Map(m), Step::Index(i)) => m.get(&Key::Int(*i)).cloned(),
            (Value::List(l), Step::Index(i)) => usize::try_from(*i).ok().and_then(|i| l.get(i)).cloned(),
            _ => None,
        };
        match next {
            Some(v) => cur = v,
            None => {
                out.push_str("<missing>");
                return;
            }
        }
    }
    match &cur {
        Value::String(s) => out.push_str(s),
        other => {
            let _ = write!(out, "{}", crate::request::value_to_json(other));
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}
fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

type PathErr = (String, Range<usize>);

fn parse_path(inner: &str) -> Result<(Root, Vec<Step>), PathErr> {
    let s = inner.trim_end();
    let lead = s.len() - s.trim_start().len();
    let mut pos = lead;
    let bytes = s.as_bytes();
    let ident_at = |pos: usize| -> Option<usize> {
        let rest = s.get(pos..)?;
        let mut chars = rest.char_indices();
        match chars.next() {
            Some((_, c)) if is_ident_start(c) => {}
            _ => return None,
        }
        Some(pos + rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len()))
    };
    let Some(end) = ident_at(pos) else {
        return Err((
            "expected a path such as `args.path` inside `{}`".into(),
            lead..s.len().max(lead),
        ));
    };
    let name = s.get(pos..end).unwrap_or("");
    let root_span = pos..end;
    pos = end;
    let root = match name {
        "tool" | "tool_name" => Root::Tool,
        "args" | "tool_args" => Root::Args,
        "agent" | "agent_id" => Root::Agent,
        "user" | "user_id" => Root::User,
        "metadata" | "context" => Root::Metadata,
        "session_id" => Root::SessionId,
        "session" => {
            if s.get(pos..).is_some_and(|r| r.starts_with(".id")) && ident_at(pos + 1) == Some(pos + 3) {
                pos += 3;
                Root::SessionId
            } else {
                return Err(("only `session.id` can be shown in a reason".into(), root_span));
            }
        }
        other => {
            return Err((
                format!(
                    "unknown root `{other}` in reason template, expected one of `tool`, `args`, `agent`, `user`, `metadata`, `session.id`"
                ),
                root_span,
            ));
        }
    };
    let mut steps = Vec::new();
    while pos < s.len() {
        match bytes.get(pos) {
            Some(b'.') => {
                let Some(end) = ident_at(pos + 1) else {
                    return Err(("expected a field name after `.`".into(), pos..pos + 1));
                };
                steps.push(Step::Key(Arc::from(s.get(pos + 1..end).unwrap_or(""))));
                pos = end;
            }
            Some(b'[') => {
                let Some(close) = s.get(pos..).and_then(|r| r.find(']')) else {
                    return Err(("unclosed `[`".into(), pos..pos + 1));
                };
                let body = s.get(pos + 1..pos + close).unwrap_or("").trim();
                let step = if let Some(q) = body.strip_prefix('"').and_then(|b| b.strip_suffix('"')) {
                    Step::Key(Arc::from(q))
                } else if let Some(q) = body.strip_prefix('\'').and_then(|b| b.strip_suffix('\'')) {
                    Step::Key(Arc::from(q))
                } else if let Ok(i) = body.parse::<i64>() {
                    Step::Index(i)
                } else {
                    return Err((
                        format!("expected an index or a quoted key inside `[]`, found `{body}`"),
                        pos..pos + close + 1,
                    ));
                };
                steps.push(step);
                pos += close + 1;
            }
            _ => {
                return Err((
                    format!(
                        "unexpected `{}` in reason path",
                        s.get(pos..).and_then(|r| r.chars().next()).unwrap_or(' ')
                    ),
                    pos..pos + 1,
                ));
            }
        }
    }
    Ok((root, steps))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn req() -> Request {
        let mut r = Request::from_call_json(&json!({
            "tool_name": "read_file",
            "tool_args": {"path": "/etc/passwd", "n": 3, "list": ["a", "b"], "odd key": true},
            "agent_id": "bot",
            "metadata": {"team": "blue"}
        }))
        .unwrap();
        r.session_id = Some(Arc::from("s-1"));
        r
    }

    fn render(t: &str) -> String {
        Template::parse(t)
            .unwrap()
            .map(|t| t.render(&req()))
            .unwrap_or_else(|| unescape_static(t))
    }

    #[test]
    fn renders_paths() {
        assert_eq!(
            render("System paths are off limits ({args.path})"),
            "System paths are off limits (/etc/passwd)"
        );
        assert_eq!(render("{tool} by {agent} for {user}"), "read_file by bot for null");
        assert_eq!(
            render("n={tool_args.n} l={args.list[1]} k={args[\"odd key\"]}"),
            "n=3 l=b k=true"
        );
        assert_eq!(render("{metadata.team}/{context.team}/{session.id}"), "blue/blue/s-1");
        assert_eq!(render("{args.nope} {args.list[9]}"), "<missing> <missing>");
        assert_eq!(render("{args.list}"), "[\"a\",\"b\"]");
        assert_eq!(render("braces {{x}}"), "braces {x}");
    }

    #[test]
    fn static_templates_are_none() {
        assert_eq!(Template::parse("plain reason"), Ok(None));
        assert_eq!(Template::parse("a {{b}}"), Ok(None));
    }

    #[test]
    fn errors_point_into_the_template() {
        let e = Template::parse("bad {argz.path}").unwrap_err();
        assert!(e.message.contains("unknown root `argz`"), "{}", e.message);
        assert_eq!(e.span, 5..9);
        let e = Template::parse("x {args.path").unwrap_err();
        assert_eq!(e.span, 2..3);
        let e = Template::parse("x {args..p}").unwrap_err();
        assert!(e.message.contains("field name"));
        let e = Template::parse("x {session.calls}").unwrap_err();
        assert!(e.message.contains("session.id"));
    }
}
