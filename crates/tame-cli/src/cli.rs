//! The command-line grammar of `tame` (clap derive), with examples in every
//! command's `--help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::output::ErrorFormat;

const MAIN_EXAMPLES: &str = "\
Examples:
  tame check policies/*.yml                 compile policies, print lints
  tame test policies/coding_agent.yml       run a policy's tests
  tame eval policies/example.yml calls.jsonl
  echo '{\"tool_name\":\"read_file\",\"tool_args\":{\"path\":\"/tmp/a\"}}' | tame eval policies/example.yml -
  tame serve --policy policies/example.yml
  tame enforce --tool delete_file --args '{\"path\": \"/tmp/test\"}'; echo $?

Exit codes: 0 allow / success, 1 error, 2 deny, 3 approve.";

/// Tame: the runtime guard between AI agents and their tools.
#[derive(Debug, Parser)]
#[command(
    name = "tame",
    version,
    about = "Tame: the runtime guard between AI agents and their tools",
    after_help = MAIN_EXAMPLES
)]
pub struct Cli {
    /// URL of the Tame server (server commands); https:// URLs are checked
    /// against the system's trusted roots, or the bundle SSL_CERT_FILE names
    #[arg(long, global = true, env = "TAME_API_URL", default_value = "http://localhost:8000")]
    pub api_url: String,

    /// API key sent to the server (server commands)
    #[arg(long, global = true, env = "TAME_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// Seconds to wait for the server before giving up
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,

    /// Print machine-readable JSON instead of the human format
    #[arg(long, global = true)]
    pub json: bool,

    /// How errors are printed
    #[arg(long, global = true, value_enum, default_value_t = ErrorFormat::Human)]
    pub error_format: ErrorFormat,

    /// When to colour the output
    #[arg(long, global = true, value_enum, default_value_t = ColorWhen::Auto)]
    pub color: ColorWhen,

    #[command(subcommand)]
    pub command: Command,
}

/// When to colour the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// Only on a terminal (and not when NO_COLOR is set)
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    /// Makes the choice for every stream of the process.
    pub fn apply(self) {
        let choice = match self {
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        };
        choice.write_global();
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compile policy files and print their lints
    #[command(after_help = "\
Examples:
  tame check policies.yml
  tame check policies/                      every policy below a directory
  tame check policies/*.yml --json
  tame check policies.yml --error-format json

Prints one summary line per file (rules, tools indexed, DAG nodes) and every
lint as a warning. On a compile error, prints every error with file:line:col
and a caret, and exits 1.")]
    Check(CheckArgs),

    /// Evaluate calls (JSON lines) against a policy, offline
    #[command(after_help = "\
Examples:
  tame eval policies.yml calls.jsonl
  cat calls.jsonl | tame eval policies.yml -
  tame eval policies.yml calls.jsonl --explain

Input, one JSON object per line:
  {\"tool_name\": \"send_email\", \"tool_args\": {\"to\": \"a@b.c\"},
   \"session_id\": \"s1\", \"agent_id\": \"bot\", \"user_id\": \"u1\", \"metadata\": {},
   \"session\": {\"calls\": 3, \"counts\": {\"send_email\": 2}, \"called\": [\"read_secret\"]},
   \"now\": \"2026-11-21T06:00:00Z\"}
Steps of a session, between its calls:
  {\"session_id\": \"s1\", \"input\": \"pay my rent to CH93 0076 2011 6238 5295 7\"}   what the user asked
  {\"session_id\": \"s1\", \"result\": {\"iban\": \"...\"}}   what the session's latest call returned
Output, one JSON object per line:
  {\"decision\": \"allow\", \"rule_name\": \"...\", \"reason\": \"...\", \"policy_version\": \"...\"}
  {\"recorded\": \"input\"} or {\"recorded\": \"result\"} for a step
A malformed line prints {\"error\": \"...\", \"line\": N, \"field\": ...} and evaluation goes on.

Session facts: calls sharing a `session_id` accumulate (each allowed call is
recorded at its `now`; denied calls and calls waiting for approval did not
run and do not count, as on the server), so rate-limit rules can be
exercised offline. A `session` object on a
line sets that session's facts before the call. Calls without a
`session_id` start from empty facts (plus their own `session`).
Exit code: 0 when every line was evaluated, 1 when a line was malformed.")]
    Eval(EvalArgs),

    /// Explain one call: which rules were tried and why each did or did not match
    #[command(after_help = "\
Examples:
  tame explain policies.yml --tool read_file --args '{\"path\": \"/etc/passwd\"}'
  tame explain policies.yml --tool send_email --args '{}' --session '{\"counts\": {\"send_email\": 25}}'
  tame explain policies.yml --tool pay --args '{\"iban\": \"...\"}' --steps session.jsonl

--steps FILE runs a session first (the lines `tame eval` reads: calls,
inputs, results); the call is then explained in it (its session: --session-id,
else the last step's), and each provenance check (from_input, from_results,
carries_from_results) shows the history entry that made it true.")]
    Explain(ExplainArgs),

    /// Run a policy's tests, or (with --args) test one call against a server
    #[command(after_help = "\
Examples:
  tame test policies/coding_agent.yml            tests in the file's `tests:` section
  tame test policies/*.yml                       and in sibling NAME.tests.yml files
  tame test policies/                            every policy below a directory
  tame test read_file --args '{\"path\": \"/tmp/file.txt\"}'   dry-run on the server

A test case (in `tests:` or in NAME.tests.yml):
  - name: reads_are_allowed
    call: {tool_name: read_file, tool_args: {path: /tmp/a}}
    session: {counts: {send_email: 20}}      # optional offline facts
    expect: allow                             # allow | deny | approve
    rule: allow_reads                         # optional; null = the default applied
A session test (one fresh session; a failure names the step):
  - name: payee_from_the_user
    steps:
      - input: \"pay my rent to CH93 0076 2011 6238 5295 7\"
      - call: {tool_name: get_invoices}
        expect: allow
      - result: {iban: \"DE89 3704 0044 0532 0130 00\"}   # what the previous call returned
      - call: {tool_name: pay, tool_args: {iban: DE89370400440532013000}}
        expect: deny
        rule: injected_payee                  # optional, as is reason: TEXT

Prints pass/fail per case with a diff, then `N passed, N failed` and the
rules no test hit. Exits 1 when a test fails.")]
    Test(TestArgs),

    /// Benchmark a policy over a file of calls
    #[command(after_help = "\
Examples:
  tame bench policies.yml policies/calls/coding_agent.jsonl
  tame bench policies.yml calls.jsonl --iterations 100000 --json

Prints decisions per second, p50/p99 latency per decision and, per rule, how
often it decided and its mean cost, to show which rules to reorder.")]
    Bench(BenchArgs),

    /// Decide past calls again under a candidate policy: what would change
    #[command(after_help = "\
Examples:
  tame audit export > audit.jsonl && tame replay new.yml audit.jsonl
  tame sessions show 8b9e4e5d-... --json > session.json && tame replay new.yml session.json
  tame replay new.yml labelled.jsonl --baseline policies.yml     CI: exit 1 on a regression
  tame replay new.yml calls.jsonl --json

SOURCE, read as a stream (any size): an audit export (decision records are
calls, result records label sessions, released approvals count as run), a
session export (a JSON array or its entries one a line), or JSON lines as
`tame eval` reads them, with an optional `decision` (what the call got) and
`expect` (what it should get: a label).

Prints how many decisions change (old → new decision, old → new rule, the
first --examples of each), each rule's hits and mean cost as `tame bench`
does, and, for labelled calls, the precision and recall of deny and approve
overall and per rule. The old decision is the baseline policy's with
--baseline, else the recorded one. Sessions are replayed in order, each
policy keeping its own session history (what it allowed, what the log shows
a human released), so session rules decide as they would have.
Exit code: 1 when a labelled call the baseline decided as labelled is decided
otherwise, or a record is malformed; else 0.")]
    Replay(crate::replay::ReplayArgs),

    /// Print the JSON Schema of policies.yml, of *.tests.yml or of the server's config file
    #[command(after_help = "\
Examples:
  tame schema policy > policy.schema.json
  tame schema tests > tests.schema.json
  tame schema config > config.schema.json

Then start the YAML file with a line naming it, so editors with a YAML
language server complete and check it:
  # yaml-language-server: $schema=policy.schema.json
The schemas are derived from the types that read the files; the repository
ships them in schema/.")]
    Schema(crate::schema::SchemaArgs),

    /// Rewrite a policy of the original tame server's format in the current format
    #[command(after_help = "\
Examples:
  tame migrate policies/legacy_tame.yml
  tame migrate old.yml -o policies.yml && tame replay policies.yml audit.jsonl --baseline old.yml

Each rule's legacy checks become a `condition` deciding every call as the
original did: `arg_contains` (present and equal, \"*\": present),
`arg_not_contains` (absent or unequal), `session_context` (the metadata over
the call's ids), with Python's equality (1 == 1.0 == true), and tool patterns
the original read as regexes as `tool.matches(...)`. Reasons stay `Matched
rule: NAME`, the default deny. Values the language cannot compare exactly as
Python did (lists or maps holding numbers or booleans, integers beyond 64
bits) are refused, naming the rule.")]
    Migrate(crate::migrate::MigrateArgs),

    /// Print a policy's decision DAG as Graphviz DOT
    #[command(after_help = "\
Examples:
  tame graph policies.yml > dag.dot
  tame graph policies.yml | dot -Tsvg > dag.svg")]
    Graph(GraphArgs),

    /// Format the conditions of policy files (comments and everything else kept)
    #[command(after_help = "\
Examples:
  tame fmt policies.yml
  tame fmt policies/                        every policy below a directory
  tame fmt --check policies/                CI: exit 1 when a file is not formatted
  cat policies.yml | tame fmt -             standard input to standard output

What changes: each rule's `condition:` string, parsed and printed again with
the word operators `and`, `or`, `not`, parentheses only where needed and one
space around operators; single-quoted on the key's line when it fits in
--width, else a folded block (`>-`) with one `and`/`or` operand per line.
Nothing else changes: comments, key order, blank lines, other values and
legacy rules stay byte for byte. A condition that does not parse is an error
and its file is left as it was; so is a file whose result would not read
back as the same data with the same condition trees.")]
    Fmt(crate::fmt::FmtArgs),

    /// Write a starting policy from a list of tools (an MCP server, a tools file, names)
    #[command(after_help = "\
Examples:
  tame init -o policies.yml -- npx -y @modelcontextprotocol/server-filesystem /tmp
  tame init --tools-file tools.yaml -o policies.yml
  tame init read_file write_file delete_file send_email > policies.yml

Each tool is sorted by its MCP annotations (readOnlyHint, destructiveHint)
when the server gives them, else by the first word of its name that names an
action: reads are allowed; writes, deletes and sends (messages, payments,
network requests) need approval; a tool whose name says nothing counts as a
write. Tools not listed are denied (the default). The policy holds one test
per rule; it is compiled and its tests run before it is written.
--tools-file reads the tool protocol's tools.yaml, a `tools:` list of
{name, description, input_schema, requires_approval}, or a saved MCP
tools/list answer.")]
    Init(crate::init::InitArgs),

    /// Start the Tame server
    #[command(after_help = "\
Examples:
  tame serve --policy policies/example.yml
  TAME_POLICY=policies.yml TAME_DB=tame.db tame serve --addr 127.0.0.1:8000
  tame serve --config tame.yml --admin-key \"$ADMIN_KEY\"

Prints `listening on http://HOST:PORT` when ready (port 0 picks a free port).
Flags override TAME_* variables, which override the config file.")]
    Serve(ServeArgs),

    /// Check the connection to the server
    #[command(after_help = "\
Examples:
  tame status
  tame --api-url http://prod.example.com:8000 status
  TAME_API_URL=http://localhost:8000 TAME_API_KEY=secret tame status --json")]
    Status,

    /// Exit 0 when the server answers its liveness (or, with --ready, its
    /// readiness) probe, 1 otherwise: for container health checks
    #[command(after_help = "\
Examples:
  tame health                                    GET /health of --api-url
  tame --api-url http://127.0.0.1:8000 --timeout 2 health
  tame health --ready                            GET /ready: the store answers and a policy is loaded

Sends no key: both probes are public. Prints the probe's URL (--json: its
answer); on a failure prints why and exits 1.")]
    Health(HealthArgs),

    /// Show, validate, reload or list the server's policy
    #[command(after_help = "\
Examples:
  tame policy                              the server's current policy
  tame policy --json
  tame policy validate policies.yml        compile a file on the server, change nothing
  tame policy reload                       re-read the server's policy file
  tame policy reload policies.yml          replace the policy with this file's content
  tame policy versions                     every version the server has loaded
  tame policy graph policies.yml           local: the decision DAG as DOT
  tame policy check policies/              local: same as `tame check`
  tame policy test policies/               local: same as `tame test`")]
    Policy(PolicyArgs),

    /// Enforce one call on the server; the exit code is the decision
    #[command(after_help = "\
Examples:
  tame enforce --tool delete_file --args '{\"path\": \"/tmp/test\"}'
  echo \"Exit code: $?\"   # 0 allow, 2 deny, 3 approve, 1 error
  tame enforce --tool send_email --args '{\"to\": \"x@y.z\"}' --session-id s1 --json
  tame enforce --tool delete_file --args '{\"path\": \"/tmp/x\"}' --wait 300   waits for a human")]
    Enforce(EnforceArgs),

    /// An interactive shell for the server commands
    #[command(after_help = "\
Examples:
  tame interactive
  tame> help
  tame> status
  tame> policy
  tame> test read_file {\"path\": \"/tmp/test.txt\"}
  tame> test api_call url=https://example.com,method=GET
  tame> config
  tame> quit")]
    Interactive,

    /// List, approve or reject pending approvals on the server
    #[command(after_help = "\
Examples:
  tame approvals list
  tame approvals approve 3f2a9c
  tame approvals reject 3f2a9c --reason \"not during the freeze\"")]
    Approvals(ApprovalsArgs),

    /// List sessions, or show one session's calls
    #[command(after_help = "\
Examples:
  tame sessions                            the latest sessions
  tame sessions --agent-id coder --page 2
  tame sessions show 8b9e4e5d-...          every call of a session
  tame sessions summary 8b9e4e5d-... --json")]
    Sessions(SessionsArgs),

    /// Audit log commands
    #[command(after_help = "\
Examples:
  tame audit verify
  tame audit verify --json
  tame audit export > audit.jsonl")]
    Audit(AuditArgs),

    /// Guard an MCP server: enforce every tools/call with a policy (stdio or Streamable HTTP)
    #[command(after_help = "\
Examples:
  tame mcp-proxy --policy policies.yml -- python my_server.py
  tame mcp-proxy --api-url http://127.0.0.1:8000 --agent-id bot --hide-denied -- npx some-mcp-server
  tame mcp-proxy --policy policies.yml --url https://mcp.example.com/mcp --header 'Authorization: Bearer ...'
  tame mcp-proxy --policy policies.yml --listen 127.0.0.1:8931 -- python my_server.py
  tame mcp-proxy --policy policies.yml --print-config claude -- npx -y @modelcontextprotocol/server-filesystem ~/docs

Point the MCP client at this command instead of the server's. Denied calls get
an isError tool result with the rule's reason; approvals are waited for on the
server (bounded); allowed calls are forwarded and their results recorded.
--policy decides in process; without it the server at --api-url decides.
The server is a command (stdio) or --url (Streamable HTTP); clients speak over
stdin/stdout, or over Streamable HTTP at http://ADDR/mcp with --listen.
--print-config prints the client configuration entry that runs this proxy.")]
    McpProxy(crate::integrations::McpProxyArgs),

    /// Run a tool with the tool protocol v1 (Python subprocess or HTTP service), policy first
    #[command(after_help = "\
Examples:
  tame run-tool greet --policy policies.yml --entry tools.sample:greet --payload '{\"name\": \"Ada\"}'
  tame run-tool weather --tools tools.yaml --payload-file payload.json
  tame run-tool weather --service-url http://127.0.0.1:9000/tools/run --timeout-seconds 3

Prints the run's report (decision, result or error, trace fields) as JSON.
Exit codes: 0 ran and succeeded, 1 the tool failed or no decision, 2 deny, 3 approval pending.")]
    RunTool(crate::integrations::RunToolArgs),

    /// Print a shell completion script
    #[command(after_help = "\
Examples:
  tame completions bash > /etc/bash_completion.d/tame
  tame completions zsh > \"${fpath[1]}/_tame\"
  tame completions fish > ~/.config/fish/completions/tame.fish")]
    Completions(CompletionsArgs),

    /// Check tool contracts (seed 004) of a policy offline: request interception, response filtering
    #[command(after_help = "\
Examples:
  tame contract request policies.yml --tool send_email --tags personal.pii.email --payload '{\"to\": \"a@b.c\"}' --agent support_bot
  tame contract response policies.yml --tool send_email '{\"status\": \"sent\", \"trace\": \"x\"}'
  some_tool | tame contract response policies.yml --tool send_email -
Output: JSON with the seed's fields (request: action, allowed, reason, payload,
detected_tags, findings; response: safe_response, stripped_fields, findings).
Exit code of `request`: 0 allow, 2 block.")]
    Contract(crate::contract::ContractArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Policy files, or directories to search for *.yml / *.yaml
    #[arg(required = true, value_name = "FILE|DIR")]
    pub files: Vec<PathBuf>,
    /// Treat lints as errors
    #[arg(long)]
    pub deny_warnings: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The policy file
    pub policy: PathBuf,
    /// JSON-lines file of calls; `-` or nothing reads standard input
    #[arg(default_value = "-")]
    pub calls: String,
    /// Add the trace of each decision
    #[arg(long)]
    pub explain: bool,
    /// Do not accumulate session facts across calls of one session
    #[arg(long)]
    pub no_accumulate: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The policy file
    pub policy: PathBuf,
    /// The tool's name
    #[arg(long)]
    pub tool: String,
    /// The tool's arguments, a JSON object
    #[arg(long, default_value = "{}")]
    pub args: String,
    /// Offline session facts, JSON (`{"calls": 3, "counts": {"send_email": 2}}`)
    #[arg(long)]
    pub session: Option<String>,
    /// A session's steps to run first, JSON lines as `tame eval` reads them
    #[arg(long, value_name = "FILE")]
    pub steps: Option<PathBuf>,
    /// The call's session (default: the last step's)
    #[arg(long)]
    pub session_id: Option<String>,
    #[arg(long)]
    pub agent_id: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    /// Metadata, a JSON object
    #[arg(long)]
    pub metadata: Option<String>,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    /// Policy files whose tests to run, or one tool name with --args
    #[arg(required = true, value_name = "POLICY|TOOL")]
    pub targets: Vec<String>,
    /// The tool's arguments as JSON: test TOOL against the server
    #[arg(long)]
    pub args: Option<String>,
    /// Test TOOL against the server even without --args
    #[arg(long)]
    pub server: bool,
    /// Extra test files (default: NAME.tests.yml beside each policy)
    #[arg(long = "tests", value_name = "FILE")]
    pub test_files: Vec<PathBuf>,
    /// Print only failing cases, coverage and the summary
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The policy file
    pub policy: PathBuf,
    /// JSON-lines file of calls
    pub calls: PathBuf,
    /// Decisions to time in total (the calls are cycled)
    #[arg(long, short = 'n', default_value_t = 200_000)]
    pub iterations: u64,
    /// Decisions to run before timing starts
    #[arg(long, default_value_t = 10_000)]
    pub warmup: u64,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The policy file
    pub policy: PathBuf,
}

/// `tame serve`'s flags: the `tame-server` binary's, defined once in
/// the server crate.
pub use tame_server::ServeFlags as ServeArgs;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Probe readiness (`/ready`) instead of liveness (`/health`)
    #[arg(long)]
    pub ready: bool,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    pub action: Option<PolicyAction>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Show the server's current policy (the default)
    Show,
    /// Compile a policy file on the server without loading it
    Validate {
        /// The policy file
        file: PathBuf,
    },
    /// Reload the server's policy file, or load FILE's content instead
    Reload {
        /// A policy file whose content replaces the server's policy
        file: Option<PathBuf>,
    },
    /// List the policy versions the server has loaded
    Versions,
    /// Print a local policy's decision DAG as DOT (same as `tame graph`)
    Graph(GraphArgs),
    /// Compile local policy files (same as `tame check`)
    Check(CheckArgs),
    /// Run local policies' tests (same as `tame test POLICY...`)
    Test(TestArgs),
}

#[derive(Debug, Args)]
pub struct EnforceArgs {
    /// The tool's name
    #[arg(long)]
    pub tool: String,
    /// The tool's arguments, a JSON object
    #[arg(long, default_value = "{}")]
    pub args: String,
    #[arg(long)]
    pub session_id: Option<String>,
    #[arg(long)]
    pub agent_id: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    /// Metadata, a JSON object
    #[arg(long)]
    pub metadata: Option<String>,
    /// On `approve`, wait up to SECS for a human; an approved call is then
    /// released (0 allow) and a rejected or expired one denied (2)
    #[arg(long, value_name = "SECS")]
    pub wait: Option<u64>,
    /// Release a call approved earlier (same tool, arguments and session)
    #[arg(long)]
    pub approval_id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub action: ApprovalsAction,
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsAction {
    /// List pending approvals
    List,
    /// Approve a pending call
    Approve {
        /// The approval's id
        id: String,
        /// Why it is approved
        #[arg(long)]
        reason: Option<String>,
        /// Who decides (recorded in the audit log; default `admin`)
        #[arg(long)]
        by: Option<String>,
    },
    /// Reject a pending call
    Reject {
        /// The approval's id
        id: String,
        /// Why it is rejected
        #[arg(long, required = true)]
        reason: String,
        /// Who decides (recorded in the audit log; default `admin`)
        #[arg(long)]
        by: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct SessionsArgs {
    #[command(subcommand)]
    pub action: Option<SessionsAction>,
    /// Only sessions of this agent
    #[arg(long)]
    pub agent_id: Option<String>,
    /// Only sessions of this user
    #[arg(long)]
    pub user_id: Option<String>,
    /// Page number, from 1
    #[arg(long, default_value_t = 1)]
    pub page: u64,
    /// Sessions per page
    #[arg(long, default_value_t = 20)]
    pub page_size: u64,
}

#[derive(Debug, Subcommand)]
pub enum SessionsAction {
    /// Every call of one session
    Show {
        /// The session's id
        id: String,
    },
    /// One session's counts
    Summary {
        /// The session's id
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub action: AuditAction,
}

#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// Check the audit log's hash chain; exits 1 when it is broken
    Verify,
    /// Print every audit record as JSON lines
    Export,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}
