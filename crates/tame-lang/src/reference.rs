//! The language reference, `docs/language.md`, written from the registry
//! by `cargo xtask docs`: every root, operator, macro and built-in
//! function with its signatures and one example.
//!
//! Every example is written as an expression and the value it evaluates
//! to, in one example context ([`EXAMPLE_CALL`], [`EXAMPLE_SESSION`]); a
//! test in `tame-cli` evaluates each [`Example`] through the engine and
//! fails when one does not give its documented value, or when a built-in
//! has no entry.

use std::fmt::Write as _;

use crate::check::CheckEnv;
use crate::registry::Registry;

/// The call every example is evaluated for (the `args`, `tool`, `agent`,
/// `user`, `metadata` and `now` of the examples), as `tame eval` reads it.
pub const EXAMPLE_CALL: &str = r#"{"tool_name": "send_email", "tool_args": {"to": ["ada@example.com"], "subject": "Invoice INV-2041", "amount": 1200}, "session_id": "s-1", "agent_id": "support_bot", "user_id": "u-7", "metadata": {"team": "billing"}, "now": "2026-11-21T10:30:00Z"}"#;

/// The session facts of the examples (`session.*`), as `tame eval` reads them.
pub const EXAMPLE_SESSION: &str =
    r#"{"calls": 7, "counts": {"send_email": 2, "read_file": 4, "read_secret": 1}, "labels": ["secret_read"]}"#;

/// The `lists:` of the examples' policy (`lists.NAME`).
pub const EXAMPLE_LISTS: &str = r#"{"trusted_domains": ["example.com", "example.org"], "limits": {"send_email": 50}}"#;

/// What the examples' session saw after those facts, in order, as `tame
/// eval` lines: the user's input, a call that ran with its result, and two
/// calls that were denied (`decision` says how each call was decided).
pub const EXAMPLE_STEPS: &str = r#"{"session_id": "s-1", "input": "Please send invoice INV-2041 to ada@example.com"}
{"tool_name": "get_invoice", "tool_args": {"number": "INV-2041"}, "session_id": "s-1", "decision": "allow"}
{"session_id": "s-1", "result": {"number": "INV-2041", "subject": "Invoice INV-2041", "total": 1200, "pay_to": "DE89 3704 0044 0532 0130 00"}}
{"tool_name": "transfer_money", "tool_args": {"to": "FR76 3000 6000 0112 3456 7890 189"}, "session_id": "s-1", "decision": "deny"}
{"tool_name": "transfer_money", "tool_args": {"to": "FR76 3000 6000 0112 3456 7890 189"}, "session_id": "s-1", "decision": "deny"}"#;

/// One documented example: `expr` evaluates to `result`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// What it documents (`function size`, `root args`, `macro all`).
    pub subject: String,
    pub expr: String,
    pub result: String,
}

/// A root, an operator or a macro: name, what it is, one example.
struct Entry {
    name: &'static str,
    /// For roots, the type; for operators and macros, the forms.
    forms: &'static str,
    summary: &'static str,
    example: &'static str,
    result: &'static str,
}

/// The roots of a condition, described (their types come from
/// [`CheckEnv::policy`]).
const ROOTS: &[Entry] = &[
    Entry {
        name: "tool",
        forms: "",
        summary: "The tool's name.",
        example: r#"tool == "send_email""#,
        result: "true",
    },
    Entry {
        name: "args",
        forms: "",
        summary: "The call's arguments (`tool_args`); JSON integers are `int`, other numbers `double`.",
        example: "args.amount > 1000 and size(args.to) == 1",
        result: "true",
    },
    Entry {
        name: "tool_args",
        forms: "",
        summary: "The same as `args`.",
        example: r#"tool_args.subject"#,
        result: r#""Invoice INV-2041""#,
    },
    Entry {
        name: "session",
        forms: "",
        summary: "The session: `session.id`, `session.calls` (every call, oldest first: `{tool, args, decision, \
                  rule, released, at, result, source}`), `session.inputs` (the user's inputs), `session.labels` \
                  (labels results attached), and the functions `count`, `called`, `denied` and `results`, \
                  which take a tool name or glob.",
        example: r#"session.count("*") >= 7 and size(session.calls) == 3 and "secret_read" in session.labels"#,
        result: "true",
    },
    Entry {
        name: "lists",
        forms: "",
        summary: "The policy's named constants, from its `lists:` section: `lists.NAME` is a list or a map. \
                  A name the section does not declare is an error when the policy loads.",
        example: r#"domain(args.to[0]) in lists.trusted_domains and args.amount < lists.limits.send_email * 100"#,
        result: "true",
    },
    Entry {
        name: "agent",
        forms: "",
        summary: "The calling agent's id, `null` when the call names none.",
        example: r#"agent == "support_bot""#,
        result: "true",
    },
    Entry {
        name: "user",
        forms: "",
        summary: "The user's id, `null` when the call names none.",
        example: "user != null",
        result: "true",
    },
    Entry {
        name: "metadata",
        forms: "",
        summary: "The call's metadata object.",
        example: r#"has(metadata.team) and metadata.team == "billing""#,
        result: "true",
    },
    Entry {
        name: "context",
        forms: "",
        summary: "The same as `metadata`.",
        example: "context.team",
        result: r#""billing""#,
    },
    Entry {
        name: "now",
        forms: "",
        summary: "The time of the call (the server's clock; `now` on a line of `tame eval`).",
        example: r#"now > timestamp("2026-01-01T00:00:00Z")"#,
        result: "true",
    },
];

const OPERATORS: &[Entry] = &[
    Entry {
        name: "or, ||",
        forms: "a or b",
        summary: "Either holds. An error on one side is absorbed when the other is true (CEL).",
        example: "false or 1 / 0 == 1 or true",
        result: "true",
    },
    Entry {
        name: "and, &&",
        forms: "a and b",
        summary: "Both hold. An error on one side is absorbed when the other is false (CEL).",
        example: "false and 1 / 0 == 1",
        result: "false",
    },
    Entry {
        name: "not, !",
        forms: "not a",
        summary: "Negation; binds tighter than every binary operator.",
        example: r#"not "a".startsWith("b")"#,
        result: "true",
    },
    Entry {
        name: "== != < <= > >=",
        forms: "a == b",
        summary: "Comparison; numbers compare across `int`, `uint` and `double`.",
        example: "2 == 2.0 and 3u > 2",
        result: "true",
    },
    Entry {
        name: "in",
        forms: "x in list, key in map",
        summary: "Membership in a list, or a key of a map.",
        example: r#""ada@example.com" in args.to and "amount" in args"#,
        result: "true",
    },
    Entry {
        name: "+ - * / %",
        forms: "a + b",
        summary: "Arithmetic (overflow and division by zero are errors); `+` also joins strings, bytes and \
                  lists and adds durations to timestamps.",
        example: r#""a" + "b" + string(7 % 4)"#,
        result: r#""ab3""#,
    },
    Entry {
        name: "? :",
        forms: "c ? a : b",
        summary: "Conditional.",
        example: r#"args.amount > 1000 ? "large" : "small""#,
        result: r#""large""#,
    },
    Entry {
        name: "[ ] .",
        forms: "m[k], m.f, l[i]",
        summary: "Index and field selection; a missing key or index is an error.",
        example: r#"args["to"][0]"#,
        result: r#""ada@example.com""#,
    },
    Entry {
        name: "[? ] .? [?x] {?k: v}",
        forms: "m[?k], m.?f, l[?i], [?x], {?k: v}",
        summary: "Optional index and selection (CEL optionals): an optional, empty when the key or index is \
                  absent, instead of an error; selecting or indexing an optional gives an optional. `?` before \
                  a list element or a map entry keeps it only when the optional has a value.",
        example: r#"args.?cc.orValue([]) + [?args.?to[?0], ?args.?bcc]"#,
        result: r#"["ada@example.com"]"#,
    },
];

const MACROS: &[Entry] = &[
    Entry {
        name: "has",
        forms: "has(m.f)",
        summary: "Whether the map has the field (no error when it does not).",
        example: "has(args.amount) and not has(args.cc)",
        result: "true",
    },
    Entry {
        name: "all",
        forms: "l.all(x, p), m.all(k, p), l.all(i, x, p), m.all(k, v, p)",
        summary: "Whether the predicate holds for every item of a list (key of a map). With two variables, the \
                  first is the list's index (the map's key) and the second the item (the value); the same holds \
                  for `exists` and `exists_one`.",
        example: r#"args.to.all(a, a.endsWith("@example.com"))"#,
        result: "true",
    },
    Entry {
        name: "exists",
        forms: "l.exists(x, p), m.exists(k, v, p)",
        summary: "Whether the predicate holds for at least one item.",
        example: "[1, 5, 12].exists(n, n > 10)",
        result: "true",
    },
    Entry {
        name: "exists_one",
        forms: "l.exists_one(x, p), l.existsOne(i, x, p)",
        summary: "Whether the predicate holds for exactly one item.",
        example: "[1, 5, 12].exists_one(n, n > 3)",
        result: "false",
    },
    Entry {
        name: "map",
        forms: "l.map(x, f), l.map(x, p, f)",
        summary: "Each item transformed (the three-argument form keeps the items the predicate holds for).",
        example: "[1, 2, 3].map(n, n > 1, n * 10)",
        result: "[20, 30]",
    },
    Entry {
        name: "filter",
        forms: "l.filter(x, p)",
        summary: "The items the predicate holds for.",
        example: r#"["a.pdf", "b.txt"].filter(f, f.endsWith(".pdf"))"#,
        result: r#"["a.pdf"]"#,
    },
    Entry {
        name: "transformList",
        forms: "l.transformList(i, x, f), m.transformList(k, v, p, f)",
        summary: "A list of the transform per entry, of those the filter holds for in the four-argument form \
                  (the variables as in the two-variable `all`).",
        example: r#"["a", "b"].transformList(i, x, x + string(i))"#,
        result: r#"["a0", "b1"]"#,
    },
    Entry {
        name: "transformMap",
        forms: "m.transformMap(k, v, f), m.transformMap(k, v, p, f)",
        summary: "A map with the same keys (a list's indices) and the transformed values, of the entries the \
                  filter holds for in the four-argument form.",
        example: r#"{"a": 1, "b": 2}.transformMap(k, v, v > 1, v * 10)"#,
        result: r#"{"b": 20}"#,
    },
    Entry {
        name: "transformMapEntry",
        forms: "m.transformMapEntry(k, v, e), m.transformMapEntry(k, v, p, e)",
        summary: "The union of the maps the transform gives per entry; a key given twice is an error.",
        example: r#"{"ada": "u-7"}.transformMapEntry(k, v, {v: k})"#,
        result: r#"{"u-7": "ada"}"#,
    },
    Entry {
        name: "optMap, optFlatMap",
        forms: "o.optMap(x, f), o.optFlatMap(x, g)",
        summary: "On an optional: `optMap` gives `optional.of(f)` with `x` bound to the value, `optFlatMap` gives \
                  `g` (itself an optional); both give the empty optional when it is empty.",
        example: "args.?amount.optMap(a, a * 2).value()",
        result: "2400",
    },
];

/// Every example of the reference, in its order: roots, operators,
/// macros, then the registry's functions (those without an entry are
/// skipped here; [`undocumented`] names them).
pub fn examples(registry: &Registry) -> Vec<Example> {
    let mut out = Vec::new();
    for (kind, table) in [("root", ROOTS), ("operator", OPERATORS), ("macro", MACROS)] {
        for e in table {
            out.push(Example {
                subject: format!("{kind} {}", e.name),
                expr: e.example.to_owned(),
                result: e.result.to_owned(),
            });
        }
    }
    for name in registry.names() {
        if let Some(doc) = registry.doc_of(name) {
            out.push(Example {
                subject: format!("function {name}"),
                expr: doc.example.to_owned(),
                result: doc.result.to_owned(),
            });
        }
    }
    out
}

/// Functions of the registry and roots of a policy condition that the
/// reference does not describe.
pub fn undocumented(registry: &Registry) -> Vec<String> {
    let mut missing: Vec<String> = registry
        .names()
        .filter(|n| registry.doc_of(n).is_none())
        .map(|n| format!("function `{n}`"))
        .collect();
    for (root, _) in CheckEnv::policy(registry).vars() {
        if !ROOTS.iter().any(|r| r.name == root) {
            missing.push(format!("root `{root}`"));
        }
    }
    missing
}

/// Escapes `|` for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// `docs/language.md`.
pub fn language_reference(registry: &Registry) -> String {
    let mut md = String::new();
    let env = CheckEnv::policy(registry);
    md.push_str(
        "<!-- Written by `cargo xtask docs` from the function registry \
         (crates/tame-lang/src/registry.rs) and crates/tame-lang/src/reference.rs; do not edit. -->\n\n",
    );
    md.push_str("# The condition language\n\n");
    md.push_str(
        "A rule's `condition` in policies.yml is an expression of a dialect of CEL (the Common \
         Expression Language) that must give a `bool`. CEL's semantics apply: `null`, errors, \
         short-circuit `and`/`or` that absorb errors, cross-type numeric comparison. A condition \
         that fails at run time never widens access: it does not match an `allow` rule and does \
         match a `deny` or `approve` rule. Unknown names and functions, and calls with the wrong \
         argument types, are errors when the policy loads.\n\n",
    );
    md.push_str(
        "Every example below evaluates, as written, to the value after the arrow (a test checks \
         it), for this call (one line of `tame eval`):\n\n",
    );
    let _ = writeln!(md, "```json\n{EXAMPLE_CALL}\n```\n");
    let _ = writeln!(
        md,
        "in a session with these facts:\n\n```json\n{EXAMPLE_SESSION}\n```\n\nthat then saw these steps \
         (as `tame eval` lines; `decision` says how each call was decided):\n\n```json\n{EXAMPLE_STEPS}\n```\n\n\
         under a policy with these `lists:`:\n\n```json\n{EXAMPLE_LISTS}\n```\n"
    );

    md.push_str("## Roots\n\n| root | type | what | example |\n|---|---|---|---|\n");
    for (name, ty) in env.vars() {
        let Some(e) = ROOTS.iter().find(|r| r.name == name) else {
            continue;
        };
        let _ = writeln!(
            md,
            "| `{name}` | `{}` | {} | `{}` → `{}` |",
            cell(&ty.name()),
            cell(e.summary),
            cell(e.example),
            cell(e.result)
        );
    }
    md.push_str("\n## Operators\n\nFrom the loosest to the tightest binding.\n\n");
    md.push_str("| operator | form | what | example |\n|---|---|---|---|\n");
    for e in OPERATORS {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | `{}` → `{}` |",
            cell(e.name),
            cell(e.forms),
            cell(e.summary),
            cell(e.example),
            cell(e.result)
        );
    }
    md.push_str(
        "\nThe word operators `and`, `or`, `not` are the same as `&&`, `||`, `!`; `tame fmt` writes the \
         words.\n\n## Macros\n\n| macro | forms | what | example |\n|---|---|---|---|\n",
    );
    for e in MACROS {
        let _ = writeln!(
            md,
            "| `{}` | `{}` | {} | `{}` → `{}` |",
            e.name,
            cell(e.forms),
            cell(e.summary),
            cell(e.example),
            cell(e.result)
        );
    }
    md.push_str(
        "\n## Functions\n\nA function is called globally (`size(x)`) or on a receiver (`x.size()`) as its \
         signatures show. Host functions registered by the embedding program (Rust or Python) are \
         checked the same way but are not listed here.\n",
    );
    for name in registry.names() {
        let Some(doc) = registry.doc_of(name) else {
            continue;
        };
        let _ = writeln!(md, "\n### `{name}`\n\n{}\n\n```text", doc.summary);
        for o in registry.overloads(name) {
            let _ = writeln!(md, "{}", o.signature(name));
        }
        let _ = writeln!(md, "```\n\nExample: `{}` → `{}`", doc.example, doc.result);
    }
    md
}
