//! Shared fixtures for the benchmarks: realistic generated policies and
//! calls.
//!
//! A generated policy has `n` rules: two rules for every tool at the top,
//! then services of eight rules each. A service `svcK` has the tools
//! `svcK_read`, `svcK_write`, `svcK_delete` and `svcK_query`, named
//! exactly, plus the glob `svcK_*`; its rules mix string
//! (`startsWith`/`contains`), regex (`matches`), numeric (`>`, `>=`),
//! metadata and session (`session.count(.., duration(..))`) conditions,
//! a reason template and an unconditional catch-all. Every tool therefore
//! sees a handful of rules whatever `n` is, as in real policies, where
//! most rules are about a few tools.

use std::fmt::Write as _;

/// The rule counts benchmarked.
pub const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];

/// Rules of one service.
const PER_SERVICE: usize = 8;

/// Number of services in a policy of `n` rules.
pub fn services(n: usize) -> usize {
    n.saturating_sub(2).div_ceil(PER_SERVICE).max(1)
}

/// A policy with exactly `n` rules (n >= 3).
pub fn policy_yaml(n: usize) -> String {
    let mut y = String::with_capacity(n * 160);
    y.push_str("version: \"bench\"\ndescription: \"generated\"\ndefault: deny\nrules:\n");
    y.push_str(
        "  - name: blocked_users\n    action: deny\n    condition: 'user in [\"mallory\", \"eve\"]'\n    reason: \"user {user} is blocked\"\n",
    );
    y.push_str("  - name: no_admin_tools\n    action: deny\n    condition: 'tool.startsWith(\"admin_\")'\n");
    let mut count = 2;
    'outer: for k in 0..services(n) {
        let rules = [
            format!(
                "  - name: s{k}_system_paths\n    action: deny\n    tools: [\"svc{k}_write\", \"svc{k}_delete\"]\n    condition: 'args.path.startsWith(\"/etc/\") or args.path.startsWith(\"/root/\")'\n    reason: \"System paths are off limits ({{args.path}})\"\n"
            ),
            format!(
                "  - name: s{k}_big_deletes\n    action: approve\n    tools: [\"svc{k}_delete\"]\n    condition: 'args.amount > 1000'\n"
            ),
            format!(
                "  - name: s{k}_destructive_sql\n    action: deny\n    tools: [\"svc{k}_query\"]\n    condition: 'args.query.matches(\"(?i)^\\\\s*(drop|truncate|delete)\\\\b\")'\n"
            ),
            format!(
                "  - name: s{k}_write_rate\n    action: deny\n    tools: [\"svc{k}_*\"]\n    condition: 'session.count(\"svc{k}_write\", duration(\"1h\")) >= 50'\n"
            ),
            format!(
                "  - name: s{k}_home_reads\n    action: allow\n    tools: [\"svc{k}_read\"]\n    condition: 'args.path.startsWith(\"/home/\") || args.path.startsWith(\"/tmp/\")'\n"
            ),
            format!(
                "  - name: s{k}_traversal\n    action: deny\n    tools: [\"svc{k}_write\"]\n    condition: 'args.path.contains(\"..\")'\n"
            ),
            format!(
                "  - name: s{k}_prod_money\n    action: approve\n    tools: [\"svc{k}_*\"]\n    condition: 'metadata.env == \"prod\" && args.amount >= 10000'\n"
            ),
            format!("  - name: s{k}_rest\n    action: allow\n    tools: [\"svc{k}_*\"]\n"),
        ];
        for r in rules {
            if count >= n {
                break 'outer;
            }
            y.push_str(&r);
            count += 1;
        }
    }
    y
}

/// The tool a typical call uses in a policy of `n` rules (a service in the
/// middle of the file).
pub fn typical_tool(n: usize) -> String {
    format!("svc{}_read", services(n) / 2)
}

/// A typical call for a policy of `n` rules, as JSON.
pub fn typical_call(n: usize) -> serde_json::Value {
    serde_json::json!({
        "tool_name": typical_tool(n),
        "tool_args": {"path": "/home/alice/notes/today.md", "amount": 12, "recursive": false},
        "session_id": "5f2b7c1e-2d4a-4a53-9a3e-0d1f7c2b9e11",
        "agent_id": "coding-agent",
        "user_id": "alice",
        "metadata": {"env": "dev", "team": "platform"}
    })
}

/// A call to a tool named only through the service's glob.
pub fn glob_call(n: usize) -> serde_json::Value {
    let mut c = typical_call(n);
    c["tool_name"] = serde_json::Value::String(format!("svc{}_list", services(n) / 2));
    c
}

/// Every condition string of a generated policy (for the parse bench).
pub fn conditions(n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for line in policy_yaml(n).lines() {
        if let Some(c) = line.trim().strip_prefix("condition: '") {
            out.push(c.trim_end_matches('\'').replace("''", "'"));
        }
    }
    out
}

/// A short summary of a policy, for bench output.
pub fn describe(n: usize) -> String {
    let mut s = String::new();
    let _ = write!(s, "{n} rules, {} services", services(n));
    s
}
