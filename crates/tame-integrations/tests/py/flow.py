"""The flow every MCP end-to-end test drives through the proxy (whatever
the transports): each outcome of tests/fixtures/policy.yml, then the
journal it must leave."""
import json


def text(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def exercise(session):
    """The policy's every outcome through `session`; returns nothing, asserts."""
    init = await session.initialize()
    assert init.serverInfo.name == "tame-test-server"
    tools = await session.list_tools()
    assert sorted(t.name for t in tools.tools) == ["add", "crash", "delete_file", "echo", "pay", "read_file"]

    r = await session.call_tool("echo", {"text": "hi"})
    assert not r.isError and text(r) == "echo: hi"
    r = await session.call_tool("add", {"a": 2, "b": 40})
    assert not r.isError and text(r) == "42"
    assert r.structuredContent == {"result": 42}

    r = await session.call_tool("read_file", {"path": "/home/ada/notes.txt"})
    assert not r.isError and text(r) == "contents of /home/ada/notes.txt"
    r = await session.call_tool("read_file", {"path": "/etc/shadow"})
    assert r.isError and text(r) == "System paths are off limits (/etc/shadow)"
    assert r.meta["tame"]["rule_name"] == "no_system_paths"

    r = await session.call_tool("delete_file", {"path": "/tmp/important"})
    assert r.isError and text(r) == "Deleting files is not allowed"

    # The embedded engine has nobody to approve: the result names the
    # pending approval.
    r = await session.call_tool("pay", {"amount": 10})
    assert r.isError and "pending approval id:" in text(r)
    assert r.meta["tame"]["decision"] == "approve"


def check_journal(journal):
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    decisions = [(e["tool_name"], e["decision"]) for e in entries if e["kind"] == "decision"]
    assert decisions == [
        ("echo", "allow"), ("add", "allow"), ("read_file", "allow"),
        ("read_file", "deny"), ("delete_file", "deny"), ("pay", "approve"),
    ]
    assert len({e["session_id"] for e in entries}) == 1
    # Every allowed call's result is recorded under its decision.
    results = [e for e in entries if e["kind"] == "result"]
    assert [r["status"] for r in results] == ["success"] * 3
    allowed = [e["log_id"] for e in entries if e["kind"] == "decision" and e["decision"] == "allow"]
    assert [r["log_id"] for r in results] == allowed
    assert results[1]["result"]["structuredContent"] == {"result": 42}
