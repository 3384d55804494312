"""The SDK against a real `tame serve` process (started by the `server`
fixture on a free port, with a temporary database and the example policy)."""

from __future__ import annotations

import threading
import uuid

import pytest

import tame

pytestmark = pytest.mark.server


def agent(server, **kw) -> tame.Client:
    return tame.Client(api_url=server.url, api_key=server.agent_key, **kw)


def admin(server, **kw) -> tame.Client:
    return tame.Client(api_url=server.url, api_key=server.admin_key, **kw)


def fresh() -> str:
    return f"py-{uuid.uuid4()}"


def test_health_and_policy_info(server) -> None:
    with agent(server) as c:
        assert c.health()
        info = c.get_policy_info()
    assert info.version == "2026-11"
    assert info.rules_count == 7
    assert [r["name"] for r in info.rules][:2] == ["block_system_files", "rate_limit_email"]
    assert len(info.hash) == 64


def test_enforce_and_report(server) -> None:
    sid = fresh()
    with agent(server, session_id=sid, agent_id="py-agent", user_id="py-user") as c:
        d = c.enforce("read_file", {"path": "/tmp/file.txt"})
        assert d.is_allowed and d.rule_name == "allow_reads" and d.session_id == sid
        assert c.update_result(d.session_id, d.log_id, {"status": "success", "result": "ok", "duration_ms": 5})
        with pytest.raises(tame.PolicyViolationException) as denied:
            c.enforce("read_file", {"path": "/etc/hosts"})
        assert denied.value.decision.reason == "System paths are off limits (/etc/hosts)"
    # reading the log is an admin's business
    with admin(server, session_id=sid) as c:
        logs = c.get_session_logs()
        assert [e["policy_decision"] for e in logs] == ["allow", "deny"]
        assert logs[0]["execution_status"] == "success"
        assert logs[0]["agent_id"] == "py-agent"
        summary = c.get_session_summary()
        assert (summary["total_calls"], summary["allowed_calls"], summary["denied_calls"]) == (2, 1, 1)


def test_result_of_another_session_is_refused(server) -> None:
    with agent(server, session_id=fresh()) as c:
        d = c.enforce("read_file", {"path": "/tmp/a"})
        with pytest.raises(tame.TameSDKException) as err:
            c.update_result(fresh(), d.log_id, {"status": "success"})
        assert err.value.status_code in (403, 404)
        assert not isinstance(err.value, tame.AuthenticationException)


def test_authentication(server) -> None:
    with tame.Client(api_url=server.url, api_key="wrong-key") as c:
        with pytest.raises(tame.AuthenticationException) as err:
            c.enforce("read_file", {"path": "/tmp/a"})
        assert err.value.status_code == 401
    with tame.Client(api_url=server.url) as c:
        with pytest.raises(tame.AuthenticationException, match="missing API key"):
            c.enforce("read_file", {"path": "/tmp/a"})
    with agent(server) as c:
        with pytest.raises(tame.AuthenticationException) as err:
            c.list_approvals()  # an admin route
        assert err.value.status_code == 403


def test_test_policy_is_not_logged(server) -> None:
    sid = fresh()
    with agent(server, session_id=sid) as c:
        result = c.test_policy("delete_file", {"path": "/important/file.txt"}, {"user_role": "admin"})
        assert result["decision"]["action"] == "approve"
        assert result["decision"]["reason"]
    with admin(server, session_id=sid) as c:
        with pytest.raises(tame.TameSDKException) as err:
            c.get_session_logs()
        assert err.value.status_code == 404


def test_session_rate_limit(server) -> None:
    with agent(server, session_id=fresh()) as c:
        decisions = [c.enforce("send_email", {"to": "a@b.c"}, raise_on_deny=False).action for _ in range(21)]
    assert decisions[:20] == ["allow"] * 20
    assert decisions[20] == "deny"


def test_approval_round_trip(server) -> None:
    sid = fresh()
    with agent(server, session_id=sid) as c, admin(server) as boss:
        d = c.enforce("delete_file", {"path": "/tmp/old.txt"}, raise_on_approve=False)
        assert d.requires_approval and d.approval_id
        assert any(a["approval_id"] == d.approval_id for a in boss.list_approvals())
        threading.Timer(0.3, lambda: boss.approve(d.approval_id, reason="fine", decided_by="ops")).start()
        released = c.wait_for_approval(d, timeout=20)
        assert released.is_allowed and "ops" in released.reason
        assert released.log_id and released.log_id != d.log_id
        assert c.update_result(sid, released.log_id, {"status": "success"})
        d2 = c.enforce("delete_file", {"path": "/tmp/other.txt"}, raise_on_approve=False)
        boss.reject(d2.approval_id, reason="no")
        with pytest.raises(tame.PolicyViolationException, match="rejected"):
            c.wait_for_approval(d2, timeout=20)
        d3 = c.enforce("delete_file", {"path": "/tmp/third.txt"}, raise_on_approve=False)
        with pytest.raises(tame.ApprovalTimeoutException):
            c.wait_for_approval(d3, timeout=1)


async def test_async_client_against_server(server) -> None:
    async with tame.AsyncClient(api_url=server.url, api_key=server.admin_key, session_id=fresh()) as c:
        d = await c.enforce("list_files", {"dir": "/tmp"})
        assert d.is_allowed
        assert await c.update_result(d.session_id, d.log_id, {"status": "success"})
        r = await c.execute_tool("read_file", {"path": "/tmp/x"}, executor=lambda n, a: "content")
        assert r.success and r.result == "content"
        logs = await c.get_session_logs()
        assert [e["execution_status"] for e in logs] == ["success", "success"]


def test_decorator_against_server(server) -> None:
    tame.configure(api_url=server.url, api_key=server.agent_key, session_id=fresh())

    @tame.enforce_policy
    def read_file(path: str) -> str:
        return "data"

    assert read_file("/tmp/x") == "data"
    with pytest.raises(tame.PolicyViolationException):
        read_file("/etc/passwd")


def test_embedded_and_server_agree(server, engine: tame.Engine) -> None:
    calls = [
        ("read_file", {"path": "/tmp/a"}),
        ("read_file", {"path": "/etc/a"}),
        ("write_file", {"path": "/tmp/x", "content": "c"}),
        ("write_file", {"path": "/root/.bashrc"}),
        ("delete_file", {"path": "/tmp/x"}),
        ("query_database", {"database": "production", "query": "DROP TABLE x"}),
        ("query_database", {"database": "production", "query": "  select 1"}),
        ("launch_rocket", {}),
    ]
    with agent(server, session_id=fresh()) as remote, tame.Client(engine=engine) as local:
        for name, args in calls:
            r = remote.enforce(name, args, raise_on_deny=False, raise_on_approve=False)
            l = local.enforce(name, args, raise_on_deny=False, raise_on_approve=False)
            assert (r.action, r.rule_name, r.reason) == (l.action, l.rule_name, l.reason), name
