"""Measures the cost of one enforcement from Python.

- `engine.evaluate` on the embedded engine against a 100-rule policy
  (stateless, and with a session whose facts are kept);
- `Client(engine=...).enforce` (the full SDK path, in-process);
- `Client(api_url=...).enforce` against a local `tame serve` (when the
  `tame` binary is built; set TAME_BIN or build target/release/tame).

Prints the median per-call cost over repeated batches. Build the extension
in release mode first (numbers from a debug build are meaningless):

    TAME_PY_RELEASE=1 scripts/py-test.sh -k engine   # builds + installs
    target/py-venv/bin/python crates/tame-py/bench/bench_enforce.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import tame

REPO = Path(__file__).resolve().parents[3]


def policy_with_rules(n: int) -> str:
    """`n` rules of the kinds real policies have: exact tools, globs,
    string tests, numeric limits, regexes; the benchmarked calls reach the
    last rules."""
    rules = []
    for i in range(n - 1):
        kind = i % 5
        if kind == 0:
            rules.append(
                f"  - name: block_path_{i}\n    action: deny\n    tools: [\"read_file\", \"write_*\"]\n"
                f"    condition: 'args.path.startsWith(\"/secret/{i}/\")'\n"
            )
        elif kind == 1:
            rules.append(
                f"  - name: limit_amount_{i}\n    action: approve\n    tools: [\"pay_{i}\"]\n"
                f"    condition: 'args.amount > {1000 + i}'\n"
            )
        elif kind == 2:
            rules.append(
                f"  - name: tool_glob_{i}\n    action: deny\n    tools: [\"admin_{i}_*\"]\n"
            )
        elif kind == 3:
            rules.append(
                f"  - name: regex_{i}\n    action: deny\n    tools: [\"query_{i}\"]\n"
                f"    condition: 'args.query.matches(\"(?i)drop\\\\s+table_{i}\")'\n"
            )
        else:
            rules.append(
                f"  - name: user_{i}\n    action: deny\n    tools: [\"send_email\"]\n"
                f"    condition: 'user == \"blocked-{i}\" and args.to.endsWith(\"@corp-{i}.example\")'\n"
            )
    rules.append("  - name: allow_rest\n    action: allow\n")
    return 'version: "bench-100"\ndefault: deny\nrules:\n' + "".join(rules)


def measure(label: str, fn: Callable[[], object], batch: int, batches: int) -> float:
    for _ in range(min(batch, 1000)):
        fn()  # warm up
    per_call: List[float] = []
    for _ in range(batches):
        start = time.perf_counter_ns()
        for _ in range(batch):
            fn()
        per_call.append((time.perf_counter_ns() - start) / batch / 1000.0)
    med = statistics.median(per_call)
    print(f"{label:<58} median {med:9.2f} µs/call  (p10 {sorted(per_call)[len(per_call) // 10]:.2f}, "
          f"{batches} batches x {batch})")
    return med


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tame_binary() -> str | None:
    if os.environ.get("TAME_BIN"):
        return os.environ["TAME_BIN"]
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / "tame"
        if p.is_file():
            return str(p)
    return shutil.which("tame")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2000)
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--http-calls", type=int, default=2000)
    ap.add_argument("--no-server", action="store_true")
    args = ap.parse_args()

    engine = tame.Engine.from_str(policy_with_rules(100), "bench-100.yml")
    stats = engine.stats()
    print(f"tame {tame.__version__}, python {sys.version.split()[0]}; policy: {stats}")
    call_args = {"path": "/home/user/notes.txt"}
    assert engine.evaluate("read_file", call_args).rule_name == "allow_rest"
    assert engine.evaluate("read_file", {"path": "/secret/95/x"}).action == "deny"

    measure("engine.evaluate (100 rules, read_file, no session)",
            lambda: engine.evaluate("read_file", call_args), args.batch, args.batches)
    email = {"to": "bob@example.com", "subject": "hi"}
    measure("engine.evaluate (100 rules, send_email, 20 user atoms)",
            lambda: engine.evaluate("send_email", email, user_id="alice"), args.batch, args.batches)
    measure("engine.evaluate (100 rules, unknown tool -> allow_rest)",
            lambda: engine.evaluate("frobnicate", {}), args.batch, args.batches)
    counter = iter(range(10**9))
    measure("engine.evaluate with session facts (one new session per call)",
            lambda: engine.evaluate("read_file", call_args, session_id=f"s{next(counter)}"),
            args.batch, args.batches // 5 or 1)
    client = tame.Client(engine=engine, session_id="bench")
    measure("Client(engine=...).enforce (full SDK path, logs in memory)",
            lambda: client.enforce("read_file", call_args), args.batch // 4 or 1, args.batches // 5 or 1)

    binary = None if args.no_server else tame_binary()
    if binary is None:
        print("HTTP: skipped (no `tame` binary; build it with cargo build --release -p tame-cli)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policies.yml"
        policy.write_text(policy_with_rules(100))
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TAME_")}
        env["TAME_AUDIT_SECRET"] = "bench-audit-secret-0123456789abcdef"
        env["TAME_DURABILITY"] = "normal"
        proc = subprocess.Popen(
            [binary, "serve", "--policy", str(policy), "--addr", f"127.0.0.1:{port}", "--db", str(Path(tmp) / "t.db")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            http = tame.Client(api_url=url, session_id="bench-http")
            for _ in range(300):
                try:
                    http.health()
                    break
                except tame.ConnectionException:
                    time.sleep(0.05)
            print(f"server: {binary}")
            measure("Client(api_url=local tame serve).enforce (HTTP, keep-alive)",
                    lambda: http.enforce("read_file", call_args), max(args.http_calls // 20, 1), 20)
            http.close()
            import httpx

            raw = httpx.Client(base_url=url)
            body = {"tool_name": "read_file", "tool_args": call_args, "session_id": "bench-raw"}
            measure("  baseline: raw httpx POST /api/v1/enforce (same server)",
                    lambda: raw.post("/api/v1/enforce", json=body).raise_for_status(),
                    max(args.http_calls // 20, 1), 20)
            measure("  baseline: raw httpx GET /health (no store write)",
                    lambda: raw.get("/health").raise_for_status(), max(args.http_calls // 20, 1), 20)
            raw.close()
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
