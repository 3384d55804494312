"""The ``tamesdk`` command (seed 001): status, test, policy, enforce and an
interactive shell, against a Tame server or an embedded policy file.

Exit codes of ``enforce``: 0 allow, 2 deny, 3 approve, 1 error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional, TextIO

from .client import Client
from .exceptions import TameSDKException

__all__ = ["main"]

EXIT = {"allow": 0, "deny": 2, "approve": 3}


def _parse_args_text(text: str) -> Dict[str, Any]:
    """``{"a": 1}`` (JSON) or ``a=1,b=x`` (key=value pairs, values as text)."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--args is not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ValueError("--args must be a JSON object")
        return value
    out: Dict[str, Any] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"expected key=value, got `{part}`")
        out[key.strip()] = value.strip()
    return out


def _client(ns: argparse.Namespace) -> Client:
    options: Dict[str, Any] = {}
    if ns.api_url:
        options["api_url"] = ns.api_url
    if ns.api_key:
        options["api_key"] = ns.api_key
    if ns.policy:
        options["policy_file"] = ns.policy
    return Client(**options)


def _status(client: Client, out: TextIO) -> int:
    health = client.health()
    where = "embedded engine" if client.is_embedded else client.api_url
    info = client.get_policy_info()
    out.write(f"connected to {where}: {health.get('status', 'ok')}\n")
    out.write(f"policy {info.get('version')} ({info.get('rules_count')} rules)\n")
    return 0


def _policy(client: Client, out: TextIO) -> int:
    info = client.get_policy_info()
    out.write(f"version: {info.get('version')}\n")
    if info.get("description"):
        out.write(f"description: {info.get('description')}\n")
    for rule in info.get("rules", []):
        tools = ", ".join(rule.get("tools") or ["*"])
        out.write(f"  {rule.get('action', '?'):8} {rule.get('name')}  [{tools}]\n")
    return 0


def _test(client: Client, tool: str, args: Dict[str, Any], out: TextIO) -> int:
    result = client.test_policy(tool, args)
    d = result.get("decision", {})
    out.write(f"{d.get('action')}: {d.get('reason')} (rule: {d.get('rule_name')})\n")
    return 0


def _enforce(client: Client, tool: str, args: Dict[str, Any], out: TextIO) -> int:
    d = client.enforce(tool, args, raise_on_deny=False, raise_on_approve=False)
    out.write(json.dumps(d.to_dict()) + "\n")
    return EXIT[d.action.value]


def _interactive(client: Client, inp: TextIO, out: TextIO) -> int:
    out.write("tamesdk interactive: help, status, policy, test TOOL ARGS, config, quit\n")
    while True:
        out.write("tamesdk> ")
        out.flush()
        line = inp.readline()
        if not line:
            return 0
        words = line.strip().split(None, 2)
        if not words:
            continue
        cmd = words[0]
        try:
            if cmd in ("quit", "exit"):
                return 0
            if cmd == "help":
                out.write("status | policy | test TOOL {json} or a=1,b=2 | config | quit\n")
            elif cmd == "status":
                _status(client, out)
            elif cmd == "policy":
                _policy(client, out)
            elif cmd == "config":
                where = "embedded" if client.is_embedded else client.api_url
                out.write(f"api: {where}, session: {client.session_id}, agent: {client.agent_id}\n")
            elif cmd == "test" and len(words) >= 2:
                _test(client, words[1], _parse_args_text(words[2] if len(words) > 2 else ""), out)
            else:
                out.write(f"unknown command `{line.strip()}` (try help)\n")
        except (TameSDKException, ValueError, TypeError) as exc:
            out.write(f"error: {exc}\n")


def main(argv: Optional[List[str]] = None, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(prog="tamesdk", description="Talk to a Tame server (or a local policy file).")
    parser.add_argument("--api-url", help="Tame API URL (default: TAME_API_URL or http://localhost:8000)")
    parser.add_argument("--api-key", help="API key (default: TAME_API_KEY)")
    parser.add_argument("--policy", help="decide with this policy file in-process instead of a server")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="check the connection")
    sub.add_parser("policy", help="show the current policy")
    test = sub.add_parser("test", help="dry-run a tool call (nothing is logged)")
    test.add_argument("tool")
    test.add_argument("--args", default="{}")
    enforce = sub.add_parser("enforce", help="enforce a call; exit 0 allow, 2 deny, 3 approve")
    enforce.add_argument("--tool", required=True)
    enforce.add_argument("--args", default="{}")
    sub.add_parser("interactive", help="an interactive shell")
    ns = parser.parse_args(argv)
    try:
        with _client(ns) as client:
            if ns.command == "status":
                return _status(client, stdout)
            if ns.command == "policy":
                return _policy(client, stdout)
            if ns.command == "test":
                return _test(client, ns.tool, _parse_args_text(ns.args), stdout)
            if ns.command == "enforce":
                return _enforce(client, ns.tool, _parse_args_text(ns.args), stdout)
            return _interactive(client, stdin, stdout)
    except (TameSDKException, ValueError, TypeError, OSError) as exc:
        print(f"tamesdk: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
