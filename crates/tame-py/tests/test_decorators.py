"""@enforce_policy, @with_approval and @log_action on sync and async
functions and methods, with an embedded engine or an explicit client."""

from __future__ import annotations

import logging
import threading

import pytest

import tame
import tamesdk


@pytest.fixture
def embedded(example_policy) -> tame.Client:
    tame.configure(policy_file=str(example_policy), session_id="deco")
    return tame.Client()


def test_bare_decorator_uses_function_name_and_signature(embedded: tame.Client, tmp_path) -> None:
    @tamesdk.enforce_policy
    def read_file(path: str, encoding: str = "utf-8") -> str:
        return f"read {path} as {encoding}"

    assert read_file("/tmp/a.txt") == "read /tmp/a.txt as utf-8"
    with pytest.raises(tame.PolicyViolationException) as denied:
        read_file("/etc/passwd")
    assert denied.value.decision.tool_args == {"path": "/etc/passwd", "encoding": "utf-8"}
    assert read_file.__name__ == "read_file"
    logs = embedded.get_session_logs("deco")
    assert [(e["tool_name"], e["policy_decision"], e["execution_status"]) for e in logs] == [
        ("read_file", "allow", "success"),
        ("read_file", "deny", None),
    ]


def test_decorator_with_options(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="opts")
    ran = []

    @tame.enforce_policy(tool_name="read_secret_file", client=client, metadata={"risk": "low"})
    def safe_read(path: str) -> str:
        ran.append(path)
        return "ok"

    assert safe_read("/tmp/x") == "ok"
    assert client.get_session_logs()[0]["tool_name"] == "read_secret_file"

    @tame.enforce_policy(client=client, raise_on_deny=False)
    def write_file(path: str, content: str) -> bool:
        ran.append(path)
        return True

    assert write_file("/etc/hosts", "x") is None  # denied: not run, no exception
    assert ran == ["/tmp/x"]


def test_methods_skip_self_and_kwargs_merge(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="methods")

    class FileManager:
        @tame.enforce_policy(client=client, metadata={"operation": "read"})
        def read_file(self, path: str, **options: object) -> str:
            return path

    assert FileManager().read_file("/tmp/f", mode="r") == "/tmp/f"
    assert client.get_session_logs()[0]["tool_args"] == {"path": "/tmp/f", "mode": "r"}


def test_decorated_function_errors_are_recorded_and_reraised(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="errors")

    @tame.enforce_policy(client=client)
    def read_file(path: str) -> str:
        raise FileNotFoundError(path)

    with pytest.raises(FileNotFoundError):
        read_file("/tmp/missing")
    entry = client.get_session_logs()[0]
    assert entry["execution_status"] == "error" and "FileNotFoundError" in entry["error_message"]


def test_wrong_call_arguments_raise_before_enforcing(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="bad-call")

    @tame.enforce_policy(client=client)
    def read_file(path: str) -> str:
        return path

    with pytest.raises(TypeError):
        read_file()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        tame.enforce_policy(tool_name=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not async"):
        tame.enforce_policy(client=tame.AsyncClient(engine=engine))(lambda: None)


async def test_async_functions(embedded: tame.Client) -> None:
    @tame.enforce_policy
    async def list_files(directory: str) -> list:
        return [directory + "/a"]

    assert await list_files("/tmp") == ["/tmp/a"]

    @tame.enforce_policy(tool_name="read_file")
    async def sneaky(path: str) -> str:
        return "never"

    with pytest.raises(tame.PolicyViolationException):
        await sneaky("/etc/shadow")


async def test_async_function_with_sync_client(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="async-sync")

    @tame.enforce_policy(client=client)
    async def read_file(path: str) -> str:
        return path.upper()

    assert await read_file("/tmp/x") == "/TMP/X"
    assert client.get_session_logs()[0]["execution_status"] == "success"


def test_with_approval_requires_an_approval(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="approval")
    deleted = []

    @tame.with_approval(client=client, approval_message="Deleting user data requires manual approval")
    def read_user_data(user_id: int) -> int:  # allowed by policy (read_*), still needs approval
        deleted.append(user_id)
        return user_id

    with pytest.raises(tame.ApprovalRequiredException) as pending:
        read_user_data(123)
    assert pending.value.decision.reason == "Deleting user data requires manual approval"
    assert pending.value.decision.metadata["requires_approval"] is True
    assert deleted == []

    @tame.with_approval(client=client, approver=lambda d: d.tool_args["user_id"] == 7)
    def read_record(user_id: int) -> int:
        return user_id * 2

    assert read_record(7) == 14
    with pytest.raises(tame.PolicyViolationException, match="rejected by approver"):
        read_record(8)

    @tame.with_approval(client=client, tool_name="read_file")
    def read_secret(path: str) -> str:
        return path

    with pytest.raises(tame.PolicyViolationException):
        read_secret("/etc/shadow")  # the policy's deny comes first


def test_with_approval_waits_for_a_human(engine: tame.Engine) -> None:
    client = tame.Client(engine=engine, session_id="human")

    @tame.with_approval(client=client, timeout=10)
    def delete_file(path: str) -> str:
        return f"deleted {path}"

    def approve_when_pending() -> None:
        for _ in range(200):
            pending = client.list_approvals()
            if pending:
                client.approve(pending[0]["approval_id"], reason="ok")
                return
            threading.Event().wait(0.02)

    t = threading.Thread(target=approve_when_pending)
    t.start()
    assert delete_file("/tmp/old") == "deleted /tmp/old"
    t.join()


def test_bypass_mode_runs_everything(example_policy) -> None:
    tame.configure(policy_file=str(example_policy), bypass_mode=True)

    @tame.enforce_policy
    def read_file(path: str) -> str:
        return "content"

    @tame.with_approval
    def delete_file(path: str) -> str:
        return "gone"

    assert read_file("/etc/shadow") == "content"
    assert delete_file("/etc/shadow") == "gone"


def test_log_action(caplog: pytest.LogCaptureFixture) -> None:
    @tame.log_action(level="INFO", metadata={"kind": "helper"})
    def helper_function(data: dict) -> dict:
        return {"processed": data}

    with caplog.at_level(logging.INFO, logger="tame"):
        assert helper_function({"a": 1}) == {"processed": {"a": 1}}
    text = caplog.text
    assert "helper_function" in text and "'a': 1" in text and "succeeded" in text

    @tame.log_action
    def broken() -> None:
        raise ValueError("nope")

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tame"), pytest.raises(ValueError):
        broken()
    assert "failed" in caplog.text and "nope" in caplog.text
    with pytest.raises(ValueError, match="unknown log level"):
        tame.log_action(level="LOUD")
