#!/usr/bin/env python3
"""Writes expected.json: how the original tame server decided legacy rules.

The original server was Python: it read the policy with PyYAML's
`yaml.safe_load`, the call with `json`, and held a rule's conditions when
every entry held, with Python's `==`:

- arg_contains {k: v}: k in tool_args and (v == "*" or tool_args[k] == v)
- arg_not_contains {k: v}: not (k in tool_args and tool_args[k] == v)
- session_context {k: v}: k in ctx and (v == "*" or ctx[k] == v), ctx being
  {session_id, agent_id, user_id} with the call's metadata merged over it.

The first rule whose tools and conditions match decides; with none, deny
("No matching policy rule found"). This script restates those semantics
(it is not the original's code) and runs them under the real PyYAML and
Python, so the Rust tests (tests/legacy.rs) compare Tame with Python itself
rather than with a second Rust reading. Run it again after changing the
cases: `python3 crates/tame-engine/tests/legacy/oracle.py` (PyYAML 6).
"""

import json
import re
import sys
import uuid
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent

KINDS = ["arg_contains", "arg_not_contains", "session_context"]

# Values written in a policy (YAML, block style), and values in a call
# (JSON). Each YAML value is tried as the value of `v` in each condition
# kind against each JSON value of the argument (or metadata entry) `v`.
YAML_VALUES = [
    "1", "1.0", '"1"', "'1'", "-1", "+1", "1.", "0", "0.0", "-0.0", "1.5", ".5", "-.5",
    "1e3", "1.0e+3", "1_000", "1_0.5_0", "0755", "0o17", "0x1F", "0b101", "1:30", "1:30.5",
    "9007199254740993", "9007199254740992.0", "18446744073709551615", "-9223372036854775808",
    "18_446_744_073_709_551_616", "340_282_366_920_938_463_463_374_607_431_768_211_456",
    "340282366920938463463374607431768211456",
    "170_141_183_460_469_231_731_687_303_715_884_105_727", "-0b1" + "0" * 130,
    ".inf", "-.inf", ".nan",
    "true", "True", "TRUE", "false", "yes", "Yes", "no", "on", "off", "Off", "y", "n",
    "~", "null", "Null", "", '""', '"*"', "'*'", "hello", "'hello world'", '"h\\u00e9llo"',
    '">50"', '"^/etc/.*"', '"yes"', '"null"',
    "2024-01-01", "2024-01-01 10:00:00", "2001-12-14t21:59:43.10-05:00",
    "[1, 2]", "[1.0, 2]", "[true, 2]", '["1", 2]', "[]", "[[1], {a: 1}]", "[yes, ~]",
    "{a: 1}", "{a: 1.0}", "{a: 1, b: [1]}", "{}", "{1: a}", "{'1': a}", "{a: 1, a2: ~}",
    "!!str 1", "!!str yes", '!!int "42"', "!!float 1", "!!bool true", "!!null ~", "! 1", "! '1'",
    "!!binary aGk=", "!!set {a}", "!!omap [{a: 1}]", "!!seq [1]", "!!map {a: 1}",
]

# Values PyYAML cannot build: the original fell back to an allow-all
# policy; Tame refuses to load the file.
YAML_ERRORS = [
    "0b_", "0x_", "2024-13-45", "2024-02-30", "0000-01-01", "2024-01-01 25:00:00",
    "2024-01-01 10:00:00 +24:00", "!custom x", "=", "<<", "!!int 1.5", "!!float abc",
    '!!bool "maybe"', "!!str [1]", "!!python/none ''",
]

# Values PyYAML builds but serde_yaml, which reads every policy file first,
# refuses, so Tame refuses to load the file: ints beyond 64 bits written
# plainly (with `_`, in octal or base 60 they are read; those beyond 128
# bits are read as floats first, and then as ints), and core tags on
# values YAML 1.2 does not give that type.
TAME_REFUSES = [
    "18446744073709551616", "-9223372036854775809", "!!bool on", '!!bool "on"', "!!null x", "!!null ''",
]

JSON_VALUES = [
    "null", "true", "false", "0", "1", "-1", "1.0", "0.0", "-0.0", "1.5", "0.5", "-0.5",
    "1000", "1000.0", "10.5", "90", "90.5", "493", "15", "31", "5", "42", "42.0",
    "9007199254740993", "9007199254740992", "9007199254740992.0", "18446744073709551615",
    "1.8446744073709552e19", "3.402823669209385e38",
    '"1"', '"1.0"', '"yes"', '"*"', '""', '"hello"', '"hello world"', '"h\\u00e9llo"',
    '">50"', '"^/etc/.*"', '"2024-01-01"', '"null"', '"aGk="',
    "[1, 2]", "[1.0, 2.0]", "[true, 2]", '["1", 2]', "[]", "[[1], {\"a\": 1}]", "[true, null]",
    '{"a": 1}', '{"a": 1.0}', '{"a": true}', '{"a": 1, "b": [1]}', "{}", '{"1": "a"}',
    '{"a": 1, "a2": null}', '["a"]', '[["a", 1]]',
]


def holds(conditions, args, ctx):
    for kind, entries in conditions.items():
        for key, want in entries.items():
            if kind == "arg_contains":
                if key not in args or (want != "*" and args[key] != want):
                    return False
            elif kind == "arg_not_contains":
                if key in args and args[key] == want:
                    return False
            elif kind == "session_context":
                if key not in ctx or (want != "*" and ctx[key] != want):
                    return False
    return True


def tool_matches(pattern, tool):
    if pattern == "*":
        return True
    return re.match("^" + pattern.replace("*", ".*").replace("?", ".") + "$", tool) is not None


def context(call):
    return {
        "session_id": call.get("session_id") or str(uuid.uuid4()),
        "agent_id": call.get("agent_id"),
        "user_id": call.get("user_id"),
        **(call.get("metadata") or {}),
    }


def decide(policy, call):
    args = call.get("tool_args", {})
    ctx = context(call)
    for rule in policy["rules"]:
        tools = rule.get("tools", ["*"])
        if any(tool_matches(p, call["tool_name"]) for p in tools) and holds(
            rule.get("conditions", {}), args, ctx
        ):
            return {"decision": rule["action"], "rule_name": rule["name"], "reason": f"Matched rule: {rule['name']}"}
    return {"decision": "deny", "rule_name": None, "reason": "No matching policy rule found"}


def policy_text(kind, value):
    return f"rules:\n  - name: r\n    action: allow\n    tools: [t]\n    conditions:\n      {kind}:\n        v: {value}\n"


def matrix():
    rows = {}
    for kind in KINDS:
        table = []
        for y in YAML_VALUES:
            policy = yaml.safe_load(policy_text(kind, y))
            row = ""
            for j in [None] + JSON_VALUES:
                if kind == "session_context":
                    call = {"tool_name": "t", "tool_args": {}, "session_id": "s1"}
                    if j is not None:
                        call["metadata"] = {"v": json.loads(j)}
                else:
                    call = {"tool_name": "t", "tool_args": {} if j is None else {"v": json.loads(j)}}
                row += "1" if decide(policy, call)["decision"] == "allow" else "0"
            table.append(row)
        rows[kind] = table
    for y in YAML_ERRORS:
        try:
            yaml.safe_load(policy_text("arg_contains", y))
        except Exception:  # noqa: BLE001 - any loader failure counts
            continue
        sys.exit(f"{y!r} loads; it belongs in YAML_VALUES")
    return rows


# Calls for the two policies of the original (their file names without .yml).
CALLS = {
    "original_policies": [
        {"tool_name": "get_weather", "tool_args": {"city": "Paris"}},
        {"tool_name": "execute_command", "tool_args": {"command": "ls"}},
        {"tool_name": "send_email", "tool_args": {"recipient": "a@b.example", "body": "hi"}},
        {"tool_name": "send_email", "tool_args": {"recipient": None}},
        {"tool_name": "send_email", "tool_args": {"recipient": ""}},
        {"tool_name": "send_email", "tool_args": {"to": "a@b.example"}},
        {"tool_name": "send_email", "tool_args": {"recipient": "*"}},
        {"tool_name": "make_api_call", "tool_args": {"recipient": ["x", "y"]}},
        {"tool_name": "access_database", "tool_args": {}},
        {"tool_name": "read_file", "tool_args": {"path": "/tmp/a"}},
        {"tool_name": "read_file", "tool_args": {"path": "/tmp/a", "mode": "write"}},
        {"tool_name": "read_file", "tool_args": {"path": "/tmp/a", "mode": "write-only"}},
        {"tool_name": "read_file", "tool_args": {"path": "/tmp/a", "mode": "Write"}},
        {"tool_name": "list_directory", "tool_args": {"mode": ["write"]}},
        {"tool_name": "upload", "tool_args": {"content": "password"}, "metadata": {"user_role": "guest"}},
        {"tool_name": "upload", "tool_args": {"content": "my password"}, "metadata": {"user_role": "guest"}},
        {"tool_name": "upload", "tool_args": {"content": "password"}, "metadata": {"user_role": "admin"}},
        {"tool_name": "upload", "tool_args": {"content": "password"}},
        {"tool_name": "upload", "tool_args": {"content": "password"}, "user_id": "guest"},
        {"tool_name": "unknown_tool", "tool_args": {}},
    ],
    "tool_patterns": [
        {"tool_name": "anything", "tool_args": {}},
        {"tool_name": "fs.delete", "tool_args": {}},
        {"tool_name": "fs_delete", "tool_args": {}},
        {"tool_name": "fs.delete.all", "tool_args": {}},
        {"tool_name": "read_file", "tool_args": {}},
        {"tool_name": "read_dir", "tool_args": {}},
        {"tool_name": "read_(file|dir)", "tool_args": {}},
        {"tool_name": "list_x", "tool_args": {}},
        {"tool_name": "drop", "tool_args": {}},
        {"tool_name": "drop_table", "tool_args": {}},
        {"tool_name": "truncate", "tool_args": {}},
        {"tool_name": "mass_truncate", "tool_args": {}},
        {"tool_name": "get_x", "tool_args": {}},
        {"tool_name": "get_xy", "tool_args": {}},
        {"tool_name": "search_web", "tool_args": {"confirm": True}},
        {"tool_name": "other", "tool_args": {"confirm": False}},
    ],
    "test_strict": [
        {"tool_name": "search_web", "tool_args": {"query": "weather in Paris"}},
        {"tool_name": "search_web", "tool_args": {"query": "my password"}},
        {"tool_name": "search_web", "tool_args": {"query": "password"}},
        {"tool_name": "search_web", "tool_args": {"query": "password|secret|token|api_key"}},
        {"tool_name": "get_system_info", "tool_args": {}},
        {"tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}},
        {"tool_name": "read_file", "tool_args": {"path": "/etc/|/root/|/system/|C:\\Windows\\|C:\\Program Files\\"}},
        {"tool_name": "list_directory", "tool_args": {"path": "/home/u"}},
        {"tool_name": "write_file", "tool_args": {"path": "/tmp/a", "content": "x"}},
        {"tool_name": "execute_command", "tool_args": {"command": "rm -rf /"}},
        {"tool_name": "send_email", "tool_args": {"to": "a@b.example"}},
        {"tool_name": "make_web_request", "tool_args": {"url": "https://example.com"}},
        {"tool_name": "query_database", "tool_args": {"sql": "select 1"}},
        {"tool_name": "access_cloud_storage", "tool_args": {}},
        {"tool_name": "post_message", "tool_args": {"content": "my api_key is 123"}},
        {"tool_name": "post_message", "tool_args": {"content": "password|secret|token|api_key|private_key"}},
        {"tool_name": "post_message", "tool_args": {"text": "hello"}},
    ],
}


def fixtures():
    out = {}
    for name, calls in CALLS.items():
        policy = yaml.safe_load((HERE / f"{name}.yml").read_text())
        out[name] = [{"call": c, "expect": decide(policy, c)} for c in calls]
    return out


def main():
    doc = {
        "generated_by": "oracle.py with PyYAML " + yaml.__version__,
        "yaml_values": YAML_VALUES,
        "yaml_errors": YAML_ERRORS,
        "tame_refuses": TAME_REFUSES,
        "json_values": JSON_VALUES,
        "matrix": matrix(),
        "fixtures": fixtures(),
    }
    (HERE / "expected.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
