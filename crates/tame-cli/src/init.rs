//! `tame init`: a starting policy from a list of tools.
//!
//! The tools come from an MCP server's `tools/list` (the server command is
//! started as `tame mcp-proxy` starts it), from a tools file (the tool
//! protocol's `tools.yaml`, a `tools:` list of `{name, description,
//! input_schema}`, or a saved `tools/list` answer), or from names on the
//! command line. Each tool is sorted by what it does, from the MCP
//! annotations when the server gives them and else from the words of its
//! name: reads are allowed; writes, deletes and sends (anything that
//! reaches the network or other people) need approval; tools not listed
//! fall to the default, deny. The policy is written with a test per rule
//! and compiled, and its tests run, before it is printed.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde_json::Value;
use tame_engine::Policy;

use crate::Exit;
use crate::error::CliError;
use crate::local::{policy_error, read_file};
use crate::output::Out;

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Tool names (each sorted by the words of its name)
    #[arg(value_name = "TOOL")]
    pub tools: Vec<String>,
    /// A tools file: the tool protocol's tools.yaml, a `tools:` list of
    /// {name, description, input_schema}, or a saved MCP tools/list answer
    #[arg(long, value_name = "FILE")]
    pub tools_file: Option<PathBuf>,
    /// Write the policy to FILE instead of standard output
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Overwrite FILE when it exists
    #[arg(long)]
    pub force: bool,
    /// Put `# yaml-language-server: $schema=PATH|URL` first, for editors
    /// (e.g. the output of `tame schema policy` saved beside the policy)
    #[arg(long, value_name = "PATH|URL")]
    pub schema: Option<String>,
    /// Seconds to wait for the MCP server's answers
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub mcp_timeout: u64,
    /// The MCP server to ask for its tools (`tools/list`), after `--`
    #[arg(last = true, value_name = "MCP_SERVER_COMMAND")]
    pub command: Vec<String>,
}

/// What a tool does, as far as a starting policy cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Delete,
    Send,
    Write,
    Read,
}

impl Kind {
    /// The rule a tool of this kind goes to: name, action, description, reason.
    fn rule(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Kind::Delete => (
                "approve_deletes",
                "approve",
                "Tools that delete, drop or destroy",
                "Deleting needs a human's approval ({tool})",
            ),
            Kind::Send => (
                "approve_sends",
                "approve",
                "Tools that send messages, money or requests to others or the network",
                "Sending needs a human's approval ({tool})",
            ),
            Kind::Write => (
                "approve_writes",
                "approve",
                "Tools that create, change or run things",
                "Changes need a human's approval ({tool})",
            ),
            Kind::Read => ("allow_reads", "allow", "Tools that only read", "Reading is allowed"),
        }
    }
}

/// One tool, sorted, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sorted {
    pub name: String,
    pub kind: Kind,
    pub why: String,
}

/// Hints a tool source may give beside the name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hints {
    pub read_only: Option<bool>,
    pub destructive: Option<bool>,
    /// Seed 002's `requires_approval`.
    pub requires_approval: Option<bool>,
}

const DELETE_WORDS: &[&str] = &[
    "delete",
    "del",
    "remove",
    "rm",
    "rmdir",
    "drop",
    "destroy",
    "purge",
    "erase",
    "unlink",
    "truncate",
    "wipe",
    "revoke",
    "uninstall",
    "kill",
    "terminate",
    "deprovision",
    "archive",
];
const SEND_WORDS: &[&str] = &[
    "send", "email", "mail", "sms", "message", "notify", "publish", "post", "tweet", "reply", "comment", "share",
    "invite", "transfer", "pay", "payment", "purchase", "buy", "order", "charge", "refund", "fetch", "http", "request",
    "browse", "navigate", "download", "upload", "webhook", "curl", "slack", "chat",
];
const WRITE_WORDS: &[&str] = &[
    "write", "create", "update", "edit", "set", "put", "patch", "add", "insert", "append", "move", "mv", "rename",
    "copy", "cp", "mkdir", "save", "store", "upsert", "modify", "change", "merge", "commit", "push", "deploy",
    "execute", "exec", "run", "start", "stop", "restart", "install", "apply", "approve", "assign", "close", "lock",
    "unlock", "enable", "disable", "grant", "import", "replace", "fork", "tag", "label",
];
const READ_WORDS: &[&str] = &[
    "read",
    "get",
    "list",
    "ls",
    "search",
    "find",
    "query",
    "select",
    "show",
    "describe",
    "view",
    "cat",
    "head",
    "tail",
    "stat",
    "lookup",
    "look",
    "inspect",
    "check",
    "count",
    "info",
    "status",
    "diff",
    "grep",
    "ping",
    "explain",
    "preview",
    "peek",
    "watch",
    "resolve",
    "validate",
    "summarize",
    "summary",
    "tree",
];

/// The lowercase words of a tool name: split at `_`, `-`, `.`, `/`, `:`,
/// spaces and lower-to-upper case changes (`getUser` is `get user`).
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        cur.extend(c.to_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sorts one tool: annotations first, then the first word of its name that
/// names an action; a name without one counts as a write (approval).
pub fn sort_tool(name: &str, hints: &Hints) -> Sorted {
    let sorted = |kind: Kind, why: String| Sorted {
        name: name.to_owned(),
        kind,
        why,
    };
    if hints.destructive == Some(true) && hints.read_only != Some(true) {
        return sorted(Kind::Delete, String::from("MCP annotation destructiveHint"));
    }
    if hints.requires_approval == Some(true) {
        return sorted(Kind::Write, String::from("requires_approval: true"));
    }
    let words = words(name);
    let found = words.iter().find_map(|w| {
        [
            (DELETE_WORDS, Kind::Delete),
            (SEND_WORDS, Kind::Send),
            (WRITE_WORDS, Kind::Write),
            (READ_WORDS, Kind::Read),
        ]
        .into_iter()
        .find(|(list, _)| list.contains(&w.as_str()))
        .map(|(_, kind)| (kind, w.clone()))
    });
    if hints.read_only == Some(true) {
        // The server says it only reads; a name that says it sends (a
        // fetch) still reaches the network.
        if let Some((Kind::Send, word)) = &found {
            return sorted(Kind::Send, format!("the word `{word}` (the server marks it read-only)"));
        }
        return sorted(Kind::Read, String::from("MCP annotation readOnlyHint"));
    }
    match found {
        Some((kind, word)) => sorted(kind, format!("the word `{word}`")),
        None => sorted(
            Kind::Write,
            String::from("no word of its name says what it does: treated as a change"),
        ),
    }
}

/// Escapes glob characters so the name matches only itself in `tools:`.
fn literal_glob(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// A YAML double-quoted scalar (JSON's string syntax is valid YAML).
fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// The starting policy for the sorted tools.
pub fn policy_text(tools: &[Sorted], source: &str, schema: Option<&str>) -> String {
    let mut y = String::new();
    if let Some(schema) = schema {
        let _ = writeln!(y, "# yaml-language-server: $schema={schema}");
    }
    let _ = writeln!(
        y,
        "# A starting policy written by `tame init` from {source}.\n\
         # Each tool was sorted by its MCP annotations or the words of its name (the\n\
         # comment says which): review the lists, then tighten the rules with\n\
         # conditions (see docs/language.md). Check it with `tame check` and `tame test`."
    );
    y.push_str("version: \"1\"\n");
    let _ = writeln!(y, "description: {}", quoted(&format!("Starting policy for {source}")));
    y.push_str("default: deny                # tools not listed below\nrules:\n");
    let mut kinds: Vec<Kind> = tools.iter().map(|t| t.kind).collect();
    kinds.sort();
    kinds.dedup();
    for kind in &kinds {
        let (name, action, description, reason) = kind.rule();
        let _ = writeln!(y, "  - name: {name}");
        let _ = writeln!(y, "    description: {}", quoted(description));
        let _ = writeln!(y, "    action: {action}");
        y.push_str("    tools:\n");
        for t in tools.iter().filter(|t| t.kind == *kind) {
            let _ = writeln!(y, "      - {}   # {}", quoted(&literal_glob(&t.name)), t.why);
        }
        let _ = writeln!(y, "    reason: {}", quoted(reason));
    }
    y.push_str("tests:\n");
    for kind in &kinds {
        let (rule, action, _, _) = kind.rule();
        if let Some(first) = tools.iter().find(|t| t.kind == *kind) {
            let _ = writeln!(
                y,
                "  - name: {}",
                quoted(&format!("{} is {}", first.name, past(action)))
            );
            let _ = writeln!(y, "    call: {{tool_name: {}, tool_args: {{}}}}", quoted(&first.name));
            let _ = writeln!(y, "    expect: {action}");
            let _ = writeln!(y, "    rule: {rule}");
        }
    }
    let unlisted = unlisted_name(tools);
    let _ = writeln!(y, "  - name: {}", quoted("a tool not listed is denied"));
    let _ = writeln!(y, "    call: {{tool_name: {}, tool_args: {{}}}}", quoted(&unlisted));
    y.push_str("    expect: deny\n");
    y
}

fn past(action: &str) -> &'static str {
    match action {
        "allow" => "allowed",
        "approve" => "approved",
        _ => "denied",
    }
}

/// A tool name none of the tools has.
fn unlisted_name(tools: &[Sorted]) -> String {
    let mut name = String::from("some_unlisted_tool");
    while tools.iter().any(|t| t.name == name) {
        name.push('_');
    }
    name
}

/// Tools (names and hints) from a tools file's text.
pub fn tools_from_file_text(text: &str, origin: &str) -> Result<Vec<(String, Hints)>, CliError> {
    let doc: Value =
        serde_yaml::from_str(text).map_err(|e| CliError::Input(format!("{origin}: not YAML or JSON: {e}")))?;
    // A JSON-RPC answer, its result, or the file itself.
    let body = doc.get("result").unwrap_or(&doc);
    let tools = match body {
        Value::Array(_) => body,
        _ => body.get("tools").ok_or_else(|| {
            CliError::Input(format!(
                "{origin}: no tools found: expected `tools:` (a list of {{name, ...}} or a map of name to runner) \
                 or a list"
            ))
        })?,
    };
    let mut out = Vec::new();
    match tools {
        // The tool protocol's tools.yaml: name -> runner.
        Value::Object(map) => {
            for name in map.keys() {
                out.push((name.clone(), Hints::default()));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let tool = tame_integrations::McpTool::from_json(item)
                    .map_err(|e| CliError::Input(format!("{origin}: tools[{i}]: {e}")))?;
                let hints = Hints {
                    read_only: tool.read_only,
                    destructive: tool.destructive,
                    requires_approval: item.get("requires_approval").and_then(Value::as_bool),
                };
                out.push((tool.name, hints));
            }
        }
        _ => {
            return Err(CliError::Input(format!(
                "{origin}: `tools` must be a list or a map of tools"
            )));
        }
    }
    Ok(out)
}

/// `tame init`.
pub fn init(args: &InitArgs, out: &Out) -> Result<Exit, CliError> {
    let sources = usize::from(!args.tools.is_empty())
        + usize::from(args.tools_file.is_some())
        + usize::from(!args.command.is_empty());
    if sources != 1 {
        return Err(CliError::Input(String::from(
            "give the tools one way: names (`tame init read_file delete_file`), --tools-file FILE, \
             or an MCP server command after `--`",
        )));
    }
    let (found, source): (Vec<(String, Hints)>, String) = if let Some(path) = &args.tools_file {
        let text = read_file(path)?;
        let origin = path.display().to_string();
        (
            tools_from_file_text(&text, &origin)?,
            format!("the tools file `{origin}`"),
        )
    } else if !args.command.is_empty() {
        let tools = tame_integrations::list_mcp_tools(&args.command, Duration::from_secs(args.mcp_timeout))
            .map_err(|e| CliError::Other(format!("{e:#}")))?;
        let found = tools
            .into_iter()
            .map(|t| {
                let hints = Hints {
                    read_only: t.read_only,
                    destructive: t.destructive,
                    requires_approval: None,
                };
                (t.name, hints)
            })
            .collect();
        (found, format!("the MCP server `{}`", args.command.join(" ")))
    } else {
        let found = args.tools.iter().map(|n| (n.clone(), Hints::default())).collect();
        (found, String::from("a list of tool names"))
    };
    let mut sorted: Vec<Sorted> = Vec::new();
    for (name, hints) in found {
        if name.trim().is_empty() {
            return Err(CliError::Input(String::from("a tool name is empty")));
        }
        if name.chars().any(char::is_control) {
            return Err(CliError::Input(format!(
                "the tool name {} holds a control character",
                quoted(&name)
            )));
        }
        if sorted.iter().any(|t| t.name == name) {
            out.warning(format!("tool `{name}` is listed twice; kept once"));
            continue;
        }
        sorted.push(sort_tool(&name, &hints));
    }
    if sorted.is_empty() {
        return Err(CliError::Input(format!("no tools found in {source}")));
    }
    let text = policy_text(&sorted, &source, args.schema.as_deref());
    // Never hand out a policy that does not compile or fails its tests.
    let origin = args
        .output
        .as_ref()
        .map_or_else(|| String::from("<tame init>"), |p| p.display().to_string());
    let policy = Policy::from_yaml(&text, &origin).map_err(|e| policy_error(Path::new(&origin), &e))?;
    if let Some(failed) = policy.tests().iter().map(|t| t.run(&policy)).find(|o| !o.passed) {
        return Err(CliError::Other(format!(
            "internal error: the generated policy fails its test `{}`",
            failed.name
        )));
    }
    match &args.output {
        Some(path) => {
            crate::output::write_generated(path, &text, args.force)?;
            let count = |k: Kind| sorted.iter().filter(|t| t.kind == k).count();
            out.line(format!(
                "wrote {}: {} tools ({} read, {} write, {} delete, {} send)",
                path.display(),
                sorted.len(),
                count(Kind::Read),
                count(Kind::Write),
                count(Kind::Delete),
                count(Kind::Send)
            ));
        }
        None => out.line(text.trim_end()),
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(name: &str) -> Kind {
        sort_tool(name, &Hints::default()).kind
    }

    #[test]
    fn names_sort_by_their_first_action_word() {
        assert_eq!(kind("read_file"), Kind::Read);
        assert_eq!(kind("getUser"), Kind::Read);
        assert_eq!(kind("list_deleted_files"), Kind::Read);
        assert_eq!(kind("delete_file"), Kind::Delete);
        assert_eq!(kind("dropTable"), Kind::Delete);
        assert_eq!(kind("send_email"), Kind::Send);
        assert_eq!(kind("fetch_url"), Kind::Send);
        assert_eq!(kind("write_file"), Kind::Write);
        assert_eq!(kind("github.create_issue"), Kind::Write);
        assert_eq!(kind("frobnicate"), Kind::Write);
        assert_eq!(words("HTTPRequest-v2"), ["httprequest", "v2"]);
    }

    #[test]
    fn annotations_come_first() {
        let read_only = Hints {
            read_only: Some(true),
            ..Hints::default()
        };
        assert_eq!(sort_tool("frobnicate", &read_only).kind, Kind::Read);
        assert_eq!(sort_tool("fetch_page", &read_only).kind, Kind::Send);
        let destructive = Hints {
            destructive: Some(true),
            ..Hints::default()
        };
        assert_eq!(sort_tool("get_and_clear", &destructive).kind, Kind::Delete);
    }

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(literal_glob("a*b?[c]"), "a[*]b[?][[]c[]]");
        let tools = vec![sort_tool("read*", &Hints::default())];
        let policy = Policy::from_yaml(&policy_text(&tools, "test", None), "t").unwrap();
        let call = |name: &str| {
            let req =
                tame_engine::Request::from_call_json(&serde_json::json!({"tool_name": name, "tool_args": {}})).unwrap();
            policy.evaluate(&req, &tame_engine::NoFacts).action
        };
        assert_eq!(call("read*"), tame_engine::Action::Allow);
        assert_eq!(call("read_file"), tame_engine::Action::Deny);
    }
}
