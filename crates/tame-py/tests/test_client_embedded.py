"""Client and AsyncClient against the embedded engine (same API as HTTP)."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tame
import tamesdk


def test_tamesdk_is_an_alias() -> None:
    assert tamesdk.Client is tame.Client
    assert tamesdk.PolicyViolationException is tame.PolicyViolationException
    assert tamesdk.configure is tame.configure
    assert tamesdk.__version__ == tame.__version__
    assert tame.tameException is tame.TameSDKException
    assert set(tame.__all__) == set(tamesdk.__all__)
    for name in tame.__all__:
        assert getattr(tamesdk, name) is getattr(tame, name)


def test_enforce_allow_and_report(client: tame.Client) -> None:
    d = client.enforce("read_file", {"path": "/tmp/a.txt"})
    assert d.action == "allow" and d.action is tame.ActionType.ALLOW
    assert d.is_allowed and d.rule_name == "allow_reads"
    assert d.session_id == "test-session" and d.log_id
    assert d.tool_name == "read_file" and d.tool_args == {"path": "/tmp/a.txt"}
    assert d.timestamp.tzinfo is not None
    assert client.update_result(d.session_id, d.log_id, {"status": "success", "result": "hi", "duration_ms": 3})
    logs = client.get_session_logs()
    assert len(logs) == 1
    entry = logs[0]
    assert entry["tool_name"] == "read_file"
    assert entry["policy_decision"] == "allow"
    assert entry["execution_status"] == "success"
    assert entry["execution_duration_ms"] == 3
    summary = client.get_session_summary()
    assert (summary["total_calls"], summary["allowed_calls"]) == (1, 1)


def test_deny_and_approve_raise_by_default(client: tame.Client) -> None:
    with pytest.raises(tame.PolicyViolationException) as denied:
        client.enforce("read_file", {"path": "/etc/shadow"})
    assert denied.value.decision.rule_name == "block_system_files"
    assert "/etc/shadow" in denied.value.decision.reason
    with pytest.raises(tame.ApprovalRequiredException) as pending:
        client.enforce("delete_file", {"path": "/tmp/x"})
    assert pending.value.decision.approval_id
    assert isinstance(pending.value, tame.TameSDKException)
    d = client.enforce("read_file", {"path": "/etc/shadow"}, raise_on_deny=False)
    assert d.is_denied
    d = client.enforce("delete_file", {"path": "/tmp/x"}, raise_on_approve=False)
    assert d.requires_approval


def test_client_defaults_and_metadata(engine: tame.Engine) -> None:
    c = tame.Client(engine=engine, agent_id="agent-7", user_id="u1", metadata={"team": "red"})
    d = c.enforce("read_file", {"path": "/tmp/x"}, metadata={"extra": 1})
    assert d.metadata == {"team": "red", "extra": 1}
    assert len(c.session_id) == 36  # a fresh UUID when none is given
    rows = c.list_sessions(agent_id="agent-7")["sessions"]
    assert [r["session_id"] for r in rows] == [c.session_id]


def test_clients_on_one_engine_share_logs(engine: tame.Engine) -> None:
    a = tame.Client(engine=engine, session_id="shared")
    b = tame.Client(engine=engine, session_id="shared")
    a.enforce("read_file", {"path": "/tmp/1"})
    b.enforce("read_file", {"path": "/tmp/2"})
    assert len(a.get_session_logs()) == 2
    assert engine.session_count("shared", "read_file") == 2


def test_update_result_errors(client: tame.Client) -> None:
    d = client.enforce("read_file", {"path": "/tmp/a"})
    with pytest.raises(tame.TameSDKException, match="another session") as other:
        client.update_result("someone-else", d.log_id, {"status": "success"})
    assert other.value.status_code == 403
    assert not isinstance(other.value, tame.AuthenticationException)
    with pytest.raises(tame.TameSDKException, match="not found") as missing:
        client.update_result(d.session_id, "999999", {})
    assert missing.value.status_code == 404
    with pytest.raises(TypeError, match="log_id"):
        client.update_result(d.session_id, None, {})  # type: ignore[arg-type]


def test_test_policy_is_a_dry_run(client: tame.Client, engine: tame.Engine) -> None:
    result = client.test_policy("delete_file", {"path": "/important/file.txt"}, {"user_role": "admin"})
    assert result["decision"]["action"] == "approve"
    assert result["decision"]["reason"]
    assert result["logged"] is False
    with pytest.raises(tame.TameSDKException):
        client.get_session_logs("never-used")


def test_policy_info(client: tame.Client) -> None:
    info = client.get_policy_info()
    assert info.version == info["version"] == "2026-11"
    assert info.rules_count == 7
    with pytest.raises(AttributeError, match="no field `nope`"):
        info.nope  # noqa: B018


def test_execute_tool(client: tame.Client) -> None:
    calls = []

    def executor(name: str, args: dict) -> dict:
        calls.append((name, args))
        return {"content": "hello"}

    r = client.execute_tool("read_file", {"path": "/tmp/f"}, executor)
    assert r.success and r.result == {"content": "hello"} and r.error is None
    assert r.execution_time_ms is not None and r.execution_time_ms >= 0
    assert calls == [("read_file", {"path": "/tmp/f"})]

    def broken(name: str, args: dict) -> None:
        raise OSError("disk on fire")

    r = client.execute_tool("read_file", {"path": "/tmp/g"}, broken)
    assert not r.success and "disk on fire" in (r.error or "")
    logs = client.get_session_logs()
    assert [e["execution_status"] for e in logs] == ["success", "error"]
    assert "disk on fire" in logs[1]["error_message"]
    quiet = tame.Client(engine=client.engine, raise_on_deny=False)
    r = quiet.execute_tool("read_file", {"path": "/etc/passwd"}, executor)
    assert not r.success and r.error and r.error.startswith("policy deny")
    assert len(calls) == 1


def test_wait_for_approval_approved(client: tame.Client) -> None:
    d = client.enforce("delete_file", {"path": "/tmp/old"}, raise_on_approve=False)
    assert client.list_approvals()[0]["approval_id"] == d.approval_id
    threading.Timer(0.1, lambda: client.approve(d, reason="looks fine", decided_by="alice")).start()
    released = client.wait_for_approval(d, timeout=10)
    assert released.is_allowed
    assert "alice" in released.reason and "looks fine" in released.reason
    assert released.log_id != d.log_id
    assert client.get_approval(d.approval_id)["state"] == "approved"
    assert client.update_result(released.session_id, released.log_id, {"status": "success"})


def test_wait_for_approval_rejected_and_timeout(client: tame.Client) -> None:
    d = client.enforce("delete_file", {"path": "/tmp/a"}, raise_on_approve=False)
    client.reject(d.approval_id, reason="not today")
    with pytest.raises(tame.PolicyViolationException, match="not today"):
        client.wait_for_approval(d, timeout=5)
    assert client.wait_for_approval(d, timeout=5, raise_on_deny=False).is_denied
    d2 = client.enforce("delete_file", {"path": "/tmp/b"}, raise_on_approve=False)
    with pytest.raises(tame.ApprovalTimeoutException) as timed_out:
        client.wait_for_approval(d2, timeout=0.2)
    assert isinstance(timed_out.value, tame.ApprovalRequiredException)
    allowed = client.enforce("read_file", {"path": "/tmp/x"})
    with pytest.raises(ValueError, match="no approval_id"):
        client.wait_for_approval(allowed)


def test_bypass_mode_skips_the_policy(engine: tame.Engine) -> None:
    c = tame.Client(engine=engine, bypass_mode=True)
    d = c.enforce("read_file", {"path": "/etc/shadow"})
    assert d.is_allowed and "bypass" in d.reason
    assert c.update_result(d.session_id, d.log_id, {"status": "success"})
    with pytest.raises(tame.TameSDKException):
        c.get_session_logs()  # nothing was logged


def test_bad_client_arguments(engine: tame.Engine) -> None:
    with pytest.raises(TypeError, match="timeout"):
        tame.Client(engine=engine, timeout="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        tame.Client(engine=engine, timeout=0)
    with pytest.raises(TypeError, match="session_id"):
        tame.Client(engine=engine, session_id=7)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="engine"):
        tame.Client(engine="policies.yml")
    c = tame.Client(engine=engine)
    with pytest.raises(TypeError, match="tool_name"):
        c.enforce(None, {})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_name"):
        c.enforce("", {})
    with pytest.raises(TypeError, match="tool_args must be a dict"):
        c.enforce("read_file", "/etc/hosts")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tool_args\.f: builtin_function_or_method is not JSON-serialisable"):
        c.enforce("read_file", {"f": print})


def test_module_level_helpers(engine: tame.Engine) -> None:
    d = tame.enforce("read_file", {"path": "/tmp/x"}, engine=engine)
    assert d.is_allowed
    with pytest.raises(tame.PolicyViolationException):
        tame.enforce("read_file", {"path": "/etc/hosts"}, engine=engine)

    def run(name: str, args: dict) -> list:
        return ["result1", "result2"]

    out = tame.execute_with_enforcement("search_web", {"query": "AI"}, run, engine=engine)
    assert out == ["result1", "result2"]
    with pytest.raises(tame.PolicyViolationException) as denied:
        tame.execute_with_enforcement("launch_rocket", {}, run, engine=engine)
    # no rule matched: the policy's default
    assert denied.value.decision.rule_name is None


def test_execute_with_enforcement_runs_and_reraises(engine: tame.Engine) -> None:
    def ok(name: str, args: dict) -> dict:
        return {"results": [args["path"]]}

    assert tame.execute_with_enforcement("read_file", {"path": "/tmp/q"}, ok, session_id="ewe", engine=engine) == {
        "results": ["/tmp/q"]
    }

    def fails(name: str, args: dict) -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError):
        tame.execute_with_enforcement("read_file", {"path": "/tmp/q"}, fails, session_id="ewe", engine=engine)
    logs = tame.Client(engine=engine).get_session_logs("ewe")
    assert [e["execution_status"] for e in logs] == ["success", "error"]
    with pytest.raises(tame.PolicyViolationException):
        tame.execute_with_enforcement("read_file", {"path": "/etc/passwd"}, ok, engine=engine)


def test_policy_file_configuration(example_policy) -> None:
    tame.configure(policy_file=str(example_policy))
    c = tame.Client()
    assert c.is_embedded
    assert c.enforce("read_file", {"path": "/tmp/a"}).is_allowed
    # the same file gives the same engine (shared session facts)
    assert tame.Client().engine is c.engine


async def test_async_client_embedded(engine: tame.Engine) -> None:
    async with tame.AsyncClient(engine=engine, session_id="async-s") as c:
        d = await c.enforce("read_file", {"path": "/tmp/x"})
        assert d.is_allowed
        assert await c.update_result(d.session_id, d.log_id, {"status": "success"})
        with pytest.raises(tame.PolicyViolationException):
            await c.enforce("read_file", {"path": "/etc/x"})
        r = await c.execute_tool("read_file", {"path": "/tmp/y"}, executor=_async_executor)
        assert r.success and r.result == "read /tmp/y"
        logs = await c.get_session_logs()
        assert len(logs) == 3
        info = await c.get_policy_info()
        assert info.rules_count == 7
        pending = await c.enforce("delete_file", {"path": "/tmp/z"}, raise_on_approve=False)

        async def approve_later() -> None:
            await asyncio.sleep(0.1)
            await c.approve(pending.approval_id, reason="ok")

        task = asyncio.create_task(approve_later())
        released = await c.wait_for_approval(pending, timeout=10)
        await task
        assert released.is_allowed
        results = await asyncio.gather(*(c.execute_tool("read_file", {"path": f"/tmp/{i}"}) for i in range(5)))
        assert all(r.success for r in results)


async def _async_executor(name: str, args: dict) -> str:
    await asyncio.sleep(0)
    return f"read {args['path']}"


def test_embedded_log_keeps_the_last_entries(engine: tame.Engine) -> None:
    from tame._backend import embedded_backend_for

    engine = tame.Engine.from_file(engine.origin, log_capacity=3)
    c = tame.Client(engine=engine, session_id="capped")
    decisions = [c.enforce("read_file", {"path": f"/tmp/{i}"}) for i in range(5)]
    logs = c.get_session_logs()
    assert [e["tool_args"]["path"] for e in logs] == ["/tmp/2", "/tmp/3", "/tmp/4"]
    with pytest.raises(tame.TameSDKException, match="not found"):
        c.update_result("capped", decisions[0].log_id, {"status": "success"})
    assert embedded_backend_for(engine) is embedded_backend_for(engine)
