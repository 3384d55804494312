//! The session's facts as conditions see them: the `session` root
//! (`session.calls`, `session.inputs`, `session.labels`,
//! `session.count(glob[, window])`, `session.called(glob)`,
//! `session.denied(glob[, window])`, `session.results(glob)`) and the
//! provenance functions (`from_input(x)`, `from_results(x[, glob])`,
//! `carries_from_results(text[, glob])`).
//!
//! The evaluator asks [`crate::SessionFacts`] for each; tool patterns
//! given as constants are compiled once, with the compiled condition.

use std::borrow::Cow;
use std::sync::Arc;

use tame_lang::{Span, Value};

use crate::ops;
use crate::program::{Cx, Fault, Node, fault};

/// A tool name or a glob of tool names (`"get_*"`, `"{send,forward}_email"`)
/// as the `session` functions take it. `*` matches any run of characters,
/// `/` included, as in a rule's `tools:`.
#[derive(Debug, Clone)]
pub struct ToolPattern {
    text: Arc<str>,
    kind: PatternKind,
}

#[derive(Debug, Clone)]
enum PatternKind {
    Exact,
    /// `prefix*suffix` (one `*`, no other special character): matched
    /// without the glob engine.
    Star {
        prefix: usize,
    },
    Glob(Arc<globset::GlobMatcher>),
}

impl ToolPattern {
    /// Reads `pattern`: a glob when it holds `*`, `?`, `[` or `{`, else an
    /// exact tool name.
    pub fn new(pattern: &str) -> Result<ToolPattern, String> {
        let kind = if !pattern.contains(['*', '?', '[', '{']) {
            PatternKind::Exact
        } else {
            let g = globset::GlobBuilder::new(pattern)
                .literal_separator(false)
                .build()
                .map_err(|e| format!("invalid tool pattern `{pattern}`: {}", e.kind()))?;
            match pattern.find('*') {
                Some(star)
                    if pattern.matches('*').count() == 1 && !pattern.contains(['?', '[', '{', '\\', ']', '}']) =>
                {
                    PatternKind::Star { prefix: star }
                }
                _ => PatternKind::Glob(Arc::new(g.compile_matcher())),
            }
        };
        Ok(ToolPattern {
            text: Arc::from(pattern),
            kind,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The tool's name when the pattern is one name, not a glob.
    pub fn exact(&self) -> Option<&str> {
        matches!(self.kind, PatternKind::Exact).then_some(&*self.text)
    }

    /// Whether `tool` matches.
    pub fn matches(&self, tool: &str) -> bool {
        match &self.kind {
            PatternKind::Exact => *self.text == *tool,
            PatternKind::Star { prefix } => {
                let (pre, post) = self.text.split_at(*prefix);
                let post = post.get(1..).unwrap_or("");
                tool.len() >= pre.len() + post.len() && tool.starts_with(pre) && tool.ends_with(post)
            }
            PatternKind::Glob(g) => g.is_match(tool),
        }
    }
}

/// A provenance question about a value (see the functions' reference
/// entries). Answers are errors when the session cannot answer them
/// reliably (a result still unreported, an index past its cap): an error
/// never makes an allow rule match.
#[derive(Debug, Clone, Copy)]
pub enum Provenance<'a> {
    /// `from_input(x)`: `x` is an entity or a run of whole tokens of one
    /// of the user's inputs.
    Input(&'a str),
    /// `from_results(x[, glob])`: `x` occurs (as an entity or a run of
    /// whole tokens) in an earlier result of matching tools.
    Results(&'a str, Option<&'a ToolPattern>),
    /// `carries_from_results(text[, glob])`: `text` holds an entity of an
    /// earlier result, or a run of at least 40 characters copied from one.
    Carries(&'a str, Option<&'a ToolPattern>),
}

/// What a session node asks.
#[derive(Clone, Debug, Copy, PartialEq, Eq)]
pub(crate) enum Fact {
    /// `session.calls`
    Calls,
    /// `session.inputs`
    Inputs,
    /// `session.labels`
    Labels,
    /// `session.count(glob[, window])`
    Count,
    /// `session.called(glob)`
    Called,
    /// `session.denied(glob[, window])`
    Denied,
    /// `session.results(glob)`
    Results,
    /// `from_input(x)`
    FromInput,
    /// `from_results(x[, glob])`
    FromResults,
    /// `carries_from_results(text[, glob])`
    Carries,
}

impl Fact {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fact::Calls => "session.calls",
            Fact::Inputs => "session.inputs",
            Fact::Labels => "session.labels",
            Fact::Count => "session.count",
            Fact::Called => "session.called",
            Fact::Denied => "session.denied",
            Fact::Results => "session.results",
            Fact::FromInput => "from_input",
            Fact::FromResults => "from_results",
            Fact::Carries => "carries_from_results",
        }
    }

    /// The global provenance function called `name` with `argc` arguments.
    pub(crate) fn provenance(name: &str, argc: usize) -> Option<Fact> {
        match (name, argc) {
            ("from_input", 1) => Some(Fact::FromInput),
            ("from_results", 1 | 2) => Some(Fact::FromResults),
            ("carries_from_results", 1 | 2) => Some(Fact::Carries),
            _ => None,
        }
    }

    /// The `session.NAME(..)` function with `argc` arguments.
    pub(crate) fn method(name: &str, argc: usize) -> Option<Fact> {
        match (name, argc) {
            ("count", 1 | 2) => Some(Fact::Count),
            ("called", 1) => Some(Fact::Called),
            ("denied", 1 | 2) => Some(Fact::Denied),
            ("results", 1) => Some(Fact::Results),
            _ => None,
        }
    }

    /// The argument (by position) that is a tool pattern, if any.
    pub(crate) fn pattern_arg(self) -> Option<usize> {
        match self {
            Fact::Count | Fact::Called | Fact::Denied | Fact::Results => Some(0),
            Fact::FromResults | Fact::Carries => Some(1),
            Fact::Calls | Fact::Inputs | Fact::Labels | Fact::FromInput => None,
        }
    }
}

/// An argument of a session node: a tool pattern compiled once when
/// constant, or any node.
#[derive(Clone)]
pub(crate) enum Arg {
    Pattern(ToolPattern),
    Node(Node),
}

/// A session fact with its arguments.
#[derive(Clone)]
pub(crate) struct SessionNode {
    pub fact: Fact,
    pub args: Vec<Arg>,
    pub span: Span,
}

impl SessionNode {
    /// `fact` over `args`, compiling constant tool patterns now (an invalid
    /// one is a compile error: the message).
    pub(crate) fn new(fact: Fact, args: Vec<Node>, span: Span) -> Result<SessionNode, String> {
        let pattern_at = fact.pattern_arg();
        let mut out = Vec::with_capacity(args.len());
        for (i, a) in args.into_iter().enumerate() {
            if Some(i) == pattern_at
                && let Node::Const(Value::String(s)) = &a
            {
                out.push(Arg::Pattern(ToolPattern::new(s)?));
                continue;
            }
            out.push(Arg::Node(a));
        }
        Ok(SessionNode { fact, args: out, span })
    }

    pub(crate) fn eval<'s>(&'s self, cx: &'s Cx<'s>) -> Result<Cow<'s, Value>, Fault> {
        let facts = cx.facts();
        let name = self.fact.name();
        let span = self.span;
        let answer = |r: Result<Value, String>| r.map(Cow::Owned).map_err(|m| fault(format!("{name}: {m}"), span));
        match self.fact {
            Fact::Calls => Ok(Cow::Owned(facts.history())),
            Fact::Inputs => Ok(Cow::Owned(facts.inputs())),
            Fact::Labels => {
                let labels: Vec<Value> = facts.labels().into_iter().map(Value::String).collect();
                Ok(Cow::Owned(Value::List(Arc::from(labels))))
            }
            Fact::Count | Fact::Denied => {
                let tool = self.tool(0, cx)?;
                let window = match self.args.get(1) {
                    None => None,
                    Some(a) => match &*self.arg(a, cx)? {
                        Value::Duration(d) => Some(*d),
                        other => return Err(fault(ops::no_overload(name, &[other]), span)),
                    },
                };
                let n = if self.fact == Fact::Count {
                    facts.count(&tool, window)
                } else {
                    facts.denied(&tool, window)
                };
                Ok(Cow::Owned(Value::Int(n)))
            }
            Fact::Called => {
                let tool = self.tool(0, cx)?;
                Ok(Cow::Owned(Value::Bool(facts.called(&tool))))
            }
            Fact::Results => {
                let tool = self.tool(0, cx)?;
                answer(facts.results(&tool))
            }
            Fact::FromInput | Fact::FromResults | Fact::Carries => {
                let first = match self.args.first() {
                    Some(a) => self.arg(a, cx)?,
                    None => return Err(fault(format!("{name}: missing argument"), span)),
                };
                let text: Cow<'_, str> = match (&*first, self.fact) {
                    (Value::String(s), _) => Cow::Borrowed(&**s),
                    (Value::Int(i), Fact::FromInput | Fact::FromResults) => Cow::Owned(i.to_string()),
                    (Value::Uint(u), Fact::FromInput | Fact::FromResults) => Cow::Owned(u.to_string()),
                    (other, _) => return Err(fault(ops::no_overload(name, &[other]), span)),
                };
                let tools = match self.args.get(1) {
                    None => None,
                    Some(_) => Some(self.tool(1, cx)?),
                };
                let question = match self.fact {
                    Fact::FromInput => Provenance::Input(&text),
                    Fact::FromResults => Provenance::Results(&text, tools.as_deref()),
                    _ => Provenance::Carries(&text, tools.as_deref()),
                };
                answer(facts.provenance(question).map(Value::Bool))
            }
        }
    }

    fn arg<'s>(&'s self, a: &'s Arg, cx: &'s Cx<'s>) -> Result<Cow<'s, Value>, Fault> {
        match a {
            Arg::Node(n) => n.eval(cx),
            Arg::Pattern(p) => Ok(Cow::Owned(Value::String(Arc::clone(&p.text)))),
        }
    }

    /// The tool pattern argument at `i`: compiled already, or read now.
    fn tool<'s>(&'s self, i: usize, cx: &'s Cx<'s>) -> Result<Cow<'s, ToolPattern>, Fault> {
        match self.args.get(i) {
            Some(Arg::Pattern(p)) => Ok(Cow::Borrowed(p)),
            Some(Arg::Node(n)) => match &*n.eval(cx)? {
                Value::String(s) => ToolPattern::new(s).map(Cow::Owned).map_err(|m| fault(m, n.span())),
                other => Err(fault(ops::no_overload(self.fact.name(), &[other]), n.span())),
            },
            None => Err(fault(format!("{}: missing tool pattern", self.fact.name()), self.span)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ToolPattern;

    #[test]
    fn patterns_match_as_rule_globs_do() {
        let cases = [
            ("send_email", "send_email", true),
            ("send_email", "send_emails", false),
            ("get_*", "get_balance", true),
            ("get_*", "get_", true),
            ("get_*", "forget_x", false),
            ("*_email", "send_email", true),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            ("mcp/*", "mcp/fs/read", true),
            ("{send,forward}_email", "forward_email", true),
            ("{send,forward}_email", "reply_email", false),
            ("read_?", "read_x", true),
        ];
        for (p, tool, want) in cases {
            let pat = ToolPattern::new(p).unwrap();
            assert_eq!(pat.matches(tool), want, "{p} vs {tool}");
            // The same answer as the glob engine a rule's `tools:` uses.
            let g = globset::GlobBuilder::new(p)
                .literal_separator(false)
                .build()
                .unwrap()
                .compile_matcher();
            assert_eq!(g.is_match(tool), want, "globset: {p} vs {tool}");
        }
        assert!(ToolPattern::new("[x").is_err());
    }
}
