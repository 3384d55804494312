"""End to end over MCP Streamable HTTP: the official `mcp` client library and
a real FastMCP server, each side over HTTP or stdio, with `tame-mcp-proxy`
between them enforcing tests/fixtures/policy.yml (the same enforcement as
the stdio proxy: denials as isError results, approvals pending, results
recorded)."""
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time

import anyio
import httpx
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
try:  # mcp >= 1.2x names it so; older releases had only the other name
    from mcp.client.streamable_http import streamable_http_client as streamablehttp_client
except ImportError:  # pragma: no cover - depends on the installed mcp
    from mcp.client.streamable_http import streamablehttp_client

from conftest import FIXTURES
from flow import check_journal, exercise, text


def run(coro):
    return anyio.run(coro)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("process exited early: %s" % proc.returncode)
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError("nothing listens on port %d after %ss" % (port, timeout))


@contextlib.contextmanager
def http_server(env=None):
    """The FastMCP test server over Streamable HTTP; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(FIXTURES / "fastmcp_server.py"), "--http", str(port)],
        env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc)
        yield "http://127.0.0.1:%d/mcp" % port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def listening_proxy(proxy_bin, args, env=None):
    """`tame-mcp-proxy --listen 127.0.0.1:0 ARGS`; yields its MCP URL (read
    from the line it prints when it listens) and the process."""
    proc = subprocess.Popen(
        [proxy_bin, "--listen", "127.0.0.1:0", *args],
        env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = None
        for line in proc.stderr:
            found = re.search(r"at (http://\S+/mcp)", line)
            if found:
                url = found.group(1)
                break
        assert url, "the proxy did not say where it listens (exit %s)" % proc.poll()
        yield url, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_http_client_through_the_proxy_to_an_http_server(proxy_bin, policy_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    marker = tmp_path / "deleted.txt"
    with http_server(env={"TAME_TEST_DELETE_MARKER": str(marker)}) as server_url:
        args = ["--policy", policy_file, "--journal", str(journal), "--url", server_url]
        with listening_proxy(proxy_bin, args) as (url, _):
            async def main():
                async with streamablehttp_client(url) as (read, write, _):
                    async with ClientSession(read, write) as session:
                        await exercise(session)

            run(main)
    assert not marker.exists(), "the denied delete reached the server"
    check_journal(journal)


def test_stdio_client_through_the_proxy_to_an_http_server(proxy_bin, policy_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    with http_server() as server_url:
        params = StdioServerParameters(
            command=proxy_bin,
            args=["--policy", policy_file, "--journal", str(journal), "--url", server_url],
            env=dict(os.environ),
        )

        async def main():
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await exercise(session)

        run(main)
    check_journal(journal)


def test_http_client_through_the_proxy_to_a_stdio_server(proxy_bin, policy_file, server_cmd, tmp_path):
    journal = tmp_path / "journal.jsonl"
    marker = tmp_path / "deleted.txt"
    args = ["--policy", policy_file, "--journal", str(journal), "--", *server_cmd]
    with listening_proxy(proxy_bin, args, env={"TAME_TEST_DELETE_MARKER": str(marker)}) as (url, _):
        async def main():
            async with streamablehttp_client(url) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await exercise(session)

        run(main)
    assert not marker.exists()
    check_journal(journal)


def test_each_http_session_has_its_own_server_and_tame_session(proxy_bin, policy_file, tmp_path):
    journal = tmp_path / "journal.jsonl"
    pids = tmp_path / "pids"
    # Each session's server writes its pid, so that ending the session can
    # be seen to stop it.
    wrapper = [sys.executable, "-c",
               "import os, runpy, sys; open(sys.argv[1], 'a').write('%d\\n' % os.getpid()); "
               "sys.argv = sys.argv[2:]; runpy.run_path(sys.argv[0], run_name='__main__')",
               str(pids), str(FIXTURES / "fastmcp_server.py")]
    args = ["--policy", policy_file, "--journal", str(journal), "--", *wrapper]
    with listening_proxy(proxy_bin, args) as (url, _):
        async def one(word):
            async with streamablehttp_client(url) as (read, write, get_id):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    r = await session.call_tool("echo", {"text": word})
                    assert text(r) == "echo: " + word
                    return get_id()

        first = run(lambda: one("one"))
        second = run(lambda: one("two"))
        assert first and second and first != second
        # The clients ended their sessions (DELETE): their servers are gone.
        started = [int(p) for p in pids.read_text().split()]
        assert len(started) == 2
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(_alive(p) for p in started):
            time.sleep(0.1)
        assert not any(_alive(p) for p in started)
        # An ended session is unknown.
        r = httpx.post(url, headers={"mcp-session-id": first, "accept": "application/json, text/event-stream"},
                       json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
        assert r.status_code == 404
    decisions = [json.loads(line) for line in journal.read_text().splitlines()]
    sessions = {e["session_id"] for e in decisions if e["kind"] == "decision"}
    assert len(sessions) == 2


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (not reaped yet) counts as gone.
    with contextlib.suppress(OSError):
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split()[2] != "Z"
    return True


def test_the_listener_refuses_other_hosts_origins_and_content_types(proxy_bin, policy_file, server_cmd):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}}
    accept = {"accept": "application/json, text/event-stream"}
    with listening_proxy(proxy_bin, ["--policy", policy_file, "--", *server_cmd]) as (url, _):
        # DNS rebinding: a page's name resolved to this machine.
        r = httpx.post(url, json=init, headers={**accept, "host": "evil.example:8931"})
        assert r.status_code == 421, r.text
        # A page of another origin.
        r = httpx.post(url, json=init, headers={**accept, "origin": "http://evil.example"})
        assert r.status_code == 403, r.text
        # What a page can post without a preflight.
        r = httpx.post(url, content=json.dumps(init), headers={**accept, "content-type": "text/plain"})
        assert r.status_code == 415, r.text
        # No session yet: only initialize opens one.
        r = httpx.post(url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"}, headers=accept)
        assert r.status_code == 400, r.text
        # A JSON-only client gets one JSON answer, with the session's id.
        r = httpx.post(url, json=init, headers={"accept": "application/json"}, timeout=60)
        assert r.status_code == 200, r.text
        assert r.json()["result"]["serverInfo"]["name"] == "tame-test-server"
        session = r.headers["mcp-session-id"]
        headers = {"accept": "application/json", "mcp-session-id": session}
        r = httpx.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        assert r.status_code == 202
        call = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                "params": {"name": "delete_file", "arguments": {"path": "/x"}}}
        r = httpx.post(url, json=call, headers=headers, timeout=60)
        assert r.json()["result"]["isError"] is True
        assert r.json()["result"]["content"][0]["text"] == "Deleting files is not allowed"
        assert httpx.delete(url, headers=headers).status_code == 200
