"""End to end: the official `mcp` client library talks to a real FastMCP
server through `tame-mcp-proxy`, which enforces tests/fixtures/policy.yml."""
import json
import time
import queue
import threading
import os
import subprocess
import sys

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from flow import check_journal, exercise


def run(coro):
    return anyio.run(coro)


def params(proxy_bin, policy_file, server_cmd, *extra, env=None):
    return StdioServerParameters(
        command=proxy_bin,
        args=["--policy", policy_file, "--agent-id", "pytest-agent", *extra, "--", *server_cmd],
        env={**os.environ, **(env or {})},
    )


def test_tools_flow_through_the_proxy(proxy_bin, policy_file, server_cmd, tmp_path):
    journal = tmp_path / "journal.jsonl"
    marker = tmp_path / "deleted.txt"

    async def main():
        p = params(proxy_bin, policy_file, server_cmd, "--journal", str(journal),
                   env={"TAME_TEST_DELETE_MARKER": str(marker)})
        async with stdio_client(p) as (read, write):
            async with ClientSession(read, write) as session:
                await exercise(session)

    run(main)
    # The denied delete never reached the server.
    assert not marker.exists()
    check_journal(journal)
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    assert all(e["agent_id"] == "pytest-agent" for e in entries if e["kind"] == "decision")


def test_hide_denied_removes_unconditionally_denied_tools(proxy_bin, policy_file, server_cmd):
    async def main():
        async with stdio_client(params(proxy_bin, policy_file, server_cmd, "--hide-denied")) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = await session.list_tools()
                # delete_file: an unconditional deny rule. read_file stays (its
                # deny is conditional); pay stays (approval).
                assert sorted(t.name for t in tools.tools) == ["add", "crash", "echo", "pay", "read_file"]

    run(main)


def test_a_crashing_server_fails_the_pending_call(proxy_bin, policy_file, server_cmd):
    async def main():
        async with stdio_client(params(proxy_bin, policy_file, server_cmd)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                with pytest.raises(Exception) as info:
                    await session.call_tool("crash", {})
                assert "mcp server exited before answering" in str(info.value), repr(info.value)

    run(main)


def _raw_proxy(proxy_bin, policy_file, server_cmd):
    return subprocess.Popen(
        [proxy_bin, "--policy", policy_file, "--", *server_cmd],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_malformed_json_rpc_gets_a_parse_error_and_the_proxy_goes_on(proxy_bin, policy_file, server_cmd):
    proc = _raw_proxy(proxy_bin, policy_file, server_cmd)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    lines = [
        json.dumps(init),
        json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        "{\"jsonrpc\": \"2.0\", \"id\": 2, \"method\": ",
        json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "still here"}}}),
    ]
    # Keep stdin open until the answer to id 3 arrives: closing it is a
    # disconnect, on which the proxy (rightly) shuts the server down.
    proc.stdin.write("\n".join(lines) + "\n")
    proc.stdin.flush()
    answers = queue.Queue()
    threading.Thread(target=lambda: [answers.put(l) for l in proc.stdout] and None, daemon=True).start()
    messages = []
    deadline = time.monotonic() + 60
    while not any(m.get("id") == 3 for m in messages):
        try:
            line = answers.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no answer to id 3 within 60 s; got {messages}") from None
        if line.strip():
            messages.append(json.loads(line))
    proc.stdin.close()
    proc.wait(timeout=60)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    parse_errors = [m for m in messages if m.get("error", {}).get("code") == -32700]
    assert len(parse_errors) == 1 and parse_errors[0]["id"] is None
    echo = next(m for m in messages if m.get("id") == 3)
    assert echo["result"]["content"][0]["text"] == "echo: still here"


def test_a_disconnecting_client_shuts_the_server_down(proxy_bin, policy_file, server_cmd, tmp_path):
    pid_file = tmp_path / "server.pid"
    wrapper = [sys.executable, "-c",
               "import os, runpy, sys; open(sys.argv[1], 'w').write(str(os.getpid())); "
               "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')",
               str(pid_file), server_cmd[-1]]
    proc = _raw_proxy(proxy_bin, policy_file, wrapper)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    proc.stdin.write(json.dumps(init) + "\n")
    proc.stdin.flush()
    first = json.loads(proc.stdout.readline())
    assert first["id"] == 1
    pid = int(pid_file.read_text())
    proc.stdin.close()  # the client goes away
    assert proc.wait(timeout=30) == 0
    # The server process is gone too (reaped by the proxy).
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
