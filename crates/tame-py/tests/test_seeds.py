"""The runnable examples of the SDK guides (seed 000: the tame SDK; seed
001: TameSDK), adapted to run locally: each runs against the embedded
engine and against a real `tame serve` with the same policy
(tests/data/seed_policy.yml). Third-party services (OpenAI, psycopg2,
LangChain, AutoGen, MCP) are replaced by local stand-ins."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from functools import wraps
from pathlib import Path
from typing import Any, Dict, List

import pytest

import tame
import tamesdk
from conftest import SEED_POLICY


@pytest.fixture(params=["embedded", "server"])
def backend(request: pytest.FixtureRequest) -> Dict[str, Any]:
    """Client options for the seed policy: in-process, or a real server."""
    if request.param == "embedded":
        return {"engine": tame.Engine.from_file(SEED_POLICY)}
    srv = request.getfixturevalue("seed_server")
    return {"api_url": srv.url, "api_key": srv.admin_key}


@pytest.fixture
def configured(backend: Dict[str, Any]) -> Dict[str, Any]:
    """The global configuration pointing at the backend (for decorators)."""
    if "engine" in backend:
        tamesdk.configure(policy_file=str(SEED_POLICY))
    else:
        tamesdk.configure(api_url=backend["api_url"], api_key=backend["api_key"])
    return backend


# ---------------------------------------------------------------- seed 000


def test_000_quick_start(backend: Dict[str, Any]) -> None:
    client = tame.Client(**backend)
    executed = []

    def your_tool_function(name: str, args: dict) -> list:
        executed.append(name)
        return ["tutorial 1"]

    decision = client.enforce(tool_name="search_web", tool_args={"query": "python tutorials"}, session_id="my-session-123")
    assert decision.action == "allow"
    result = your_tool_function(decision.tool_name, decision.tool_args)
    assert client.update_result(decision.session_id, decision.log_id, {"status": "success", "result": result})
    assert executed == ["search_web"]
    with pytest.raises(tame.PolicyViolationException) as e:
        client.enforce(tool_name="read_file", tool_args={"path": "/etc/shadow"}, session_id="my-session-123")
    assert e.value.decision.reason == "System paths are off limits (/etc/shadow)"
    with pytest.raises(tame.ApprovalRequiredException) as a:
        client.enforce(tool_name="delete_file", tool_args={"path": "/tmp/x"}, session_id="my-session-123")
    assert a.value.decision.reason == "Deletion requires approval"


def test_000_basic_enforcement(backend: Dict[str, Any]) -> None:
    decision = tame.enforce(tool_name="read_file", tool_args={"path": "/tmp/hosts"}, **backend)
    assert decision.action == "allow"
    with pytest.raises(tame.PolicyViolationException):
        tame.enforce(tool_name="read_file", tool_args={"path": "/etc/hosts"}, **backend)
    denied = tame.enforce("read_file", {"path": "/etc/hosts"}, raise_on_deny=False, **backend)
    assert denied.action == "deny" and denied.rule_name == "block_system_files"


def test_000_execute_with_enforcement(backend: Dict[str, Any]) -> None:
    def my_tool_executor(tool_name: str, tool_args: dict) -> dict:
        if tool_name == "search_web":
            return {"results": ["result1", "result2"]}
        return {"error": "Unknown tool"}

    result = tame.execute_with_enforcement(
        tool_name="search_web",
        tool_args={"query": "AI news"},
        executor_func=my_tool_executor,
        session_id="my-session",
        **backend,
    )
    assert result == {"results": ["result1", "result2"]}


def test_000_session_management(backend: Dict[str, Any]) -> None:
    sid = f"my-session-{time.monotonic_ns()}"
    with tame.Client(session_id=sid, **backend) as client:
        decision1 = client.enforce("tool_a", {"arg1": "value1"})
        decision2 = client.enforce("tool_b", {"arg2": "value2"})
        assert decision1.is_allowed and decision2.is_allowed
        logs = client.get_session_logs()
        assert len(logs) == 2
        assert [entry["tool_name"] for entry in logs] == ["tool_a", "tool_b"]


def test_000_policy_testing(backend: Dict[str, Any]) -> None:
    client = tame.Client(**backend)
    result = client.test_policy(
        tool_name="delete_file", tool_args={"path": "/important/file.txt"}, session_context={"user_role": "admin"}
    )
    assert result["decision"]["action"] == "approve"
    assert result["decision"]["reason"] == "Deletion requires approval"


def test_000_error_handling(backend: Dict[str, Any]) -> None:
    client = tame.Client(**backend)
    with pytest.raises(tame.PolicyViolationException) as denied:
        client.enforce("risky_tool", {"param": "value"})
    assert denied.value.decision.reason == "Risky tools are blocked"
    assert denied.value.decision.rule_name == "no_risky_tools"
    assert isinstance(denied.value, tame.tameException)


def test_000_langchain_style_tool(backend: Dict[str, Any]) -> None:
    class BaseTool:  # stand-in for langchain.tools.BaseTool
        def __init__(self) -> None:
            pass

    class tameTool(BaseTool):
        def __init__(self, tool_name: str, tame_client: tame.Client) -> None:
            super().__init__()
            self.tool_name = tool_name
            self.tame_client = tame_client

        def _run(self, **kwargs: Any) -> Any:
            decision = self.tame_client.enforce(tool_name=self.tool_name, tool_args=kwargs, raise_on_deny=False, raise_on_approve=False)
            if decision.action == "allow":
                result = self._execute_tool(kwargs)
                self.tame_client.update_result(decision.session_id, decision.log_id, {"status": "success", "result": result})
                return result
            return f"Tool call {decision.action}: {decision.reason}"

        def _execute_tool(self, kwargs: dict) -> str:
            return f"searched {kwargs['q']}"

    tame_client = tame.Client(session_id=f"langchain-session-{time.monotonic_ns()}", **backend)
    assert tameTool("web_search", tame_client)._run(q="rust") == "searched rust"
    assert tameTool("risky_tool", tame_client)._run(q="x") == "Tool call deny: Risky tools are blocked"


def test_000_autogen_style_agent(backend: Dict[str, Any]) -> None:
    class UserProxyAgent:  # stand-in for autogen.UserProxyAgent
        def __init__(self, name: str) -> None:
            self.name = name

        def execute_code_blocks(self, code_blocks: list) -> str:
            return f"ran {len(code_blocks)} block(s)"

    class tameUserProxyAgent(UserProxyAgent):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.tame_client = tame.Client(session_id=f"autogen-{self.name}", **backend)

        def execute_code_blocks(self, code_blocks: list) -> str:
            for code_block in code_blocks:
                decision = self.tame_client.enforce(
                    tool_name="execute_code", tool_args={"code": code_block[1], "language": code_block[0]}
                )
                if decision.action == "allow":
                    result = super().execute_code_blocks([code_block])
                    self.tame_client.update_result(decision.session_id, decision.log_id, {"status": "success", "result": result})
                    return result
                return f"Code execution {decision.action}: {decision.reason}"
            return "nothing to run"

    assert tameUserProxyAgent("coder").execute_code_blocks([("python", "print(1)")]) == "ran 1 block(s)"


# ---------------------------------------------------------------- seed 001


def test_001_decorators(configured: Dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("hello")

    @tamesdk.enforce_policy
    def read_file(path: str) -> str:
        with open(path) as f:
            return f.read()

    @tamesdk.enforce_policy(tool_name="custom_file_reader", metadata={"category": "file_operations", "risk": "low"}, raise_on_deny=True)
    def safe_read_file(path: str) -> str:
        return open(path).read()

    @tamesdk.with_approval(approval_message="This operation modifies system files")
    def write_system_file(path: str, content: str) -> None:
        raise AssertionError("must not run without approval")

    @tamesdk.log_action(level="INFO")
    def helper_function(data: dict) -> dict:
        return {"processed": data}

    assert read_file(str(target)) == "hello"
    assert safe_read_file(str(target)) == "hello"
    with pytest.raises(tamesdk.PolicyViolationException):
        safe_read_file("/etc/passwd")
    with pytest.raises(tamesdk.ApprovalRequiredException) as pending:
        write_system_file("/etc/motd", "hi")
    assert pending.value.decision.requires_approval
    assert helper_function({"a": 1}) == {"processed": {"a": 1}}


def test_001_client_usage(backend: Dict[str, Any]) -> None:
    with tamesdk.Client(**backend) as client:
        decision = client.enforce(
            tool_name="delete_file",
            tool_args={"path": "/important/file.txt"},
            raise_on_deny=False,
            raise_on_approve=False,
        )
        assert not decision.is_allowed and not decision.is_denied
        assert decision.requires_approval
        ok = client.enforce("write_file", {"path": "/tmp/out.txt", "content": "x"}, raise_on_deny=False)
        assert ok.is_allowed
        assert client.update_result(ok.session_id, ok.log_id, {"status": "success", "result": True})


def test_001_async_usage(backend: Dict[str, Any]) -> None:
    async def make_api_call(url: str) -> dict:
        await asyncio.sleep(0)
        return {"url": url}

    async def main() -> dict:
        async with tamesdk.AsyncClient(**backend) as client:
            decision = await client.enforce("api_call", {"endpoint": "https://api.example.com/data"})
            assert decision.is_allowed
            result = await make_api_call("https://api.example.com/data")
            assert await client.update_result(decision.session_id, decision.log_id, {"status": "success", "data": result})
            return result

    assert asyncio.run(main()) == {"url": "https://api.example.com/data"}


def test_001_execute_tool_helper(backend: Dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "file.txt"
    path.write_text("seed 001")

    def my_tool_executor(tool_name: str, tool_args: dict) -> Any:
        if tool_name == "read_file":
            return open(tool_args["path"]).read()
        if tool_name == "write_file":
            with open(tool_args["path"], "w") as f:
                f.write(tool_args["content"])
            return "File written successfully"
        return None

    with tamesdk.Client(**backend) as client:
        result = client.execute_tool(tool_name="read_file", tool_args={"path": str(path)}, executor=my_tool_executor)
        assert result.success and result.result == "seed 001"
        written = client.execute_tool("write_file", {"path": str(tmp_path / "o.txt"), "content": "x"}, my_tool_executor)
        assert written.result == "File written successfully"
        missing = client.execute_tool("read_file", {"path": str(tmp_path / "none.txt")}, my_tool_executor)
        assert not missing.success and "FileNotFoundError" in (missing.error or "")


def test_001_openai_style_decorator(configured: Dict[str, Any]) -> None:
    tamesdk.configure(agent_id="openai-assistant", user_id="john-doe")

    @tamesdk.enforce_policy(tool_name="openai_completion", metadata={"provider": "openai", "cost_tracking": True})
    def call_openai(prompt: str, model: str = "gpt-3.5-turbo", max_tokens: int = 1000) -> str:
        return f"[{model}] answer to: {prompt}"

    assert call_openai("Explain quantum computing", model="gpt-4") == "[gpt-4] answer to: Explain quantum computing"


def test_001_database_operations(configured: Dict[str, Any]) -> None:
    conn = sqlite3.connect(":memory:")  # stand-in for psycopg2
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO users VALUES (?, ?)", [(1, "ann"), (123, "bob")])

    @tamesdk.enforce_policy(tool_name="database_query", metadata={"database": "production", "sensitive": True}, raise_on_approve=True)
    def execute_query(sql: str, params: tuple = ()) -> Any:
        cursor = conn.execute(sql, params)
        if sql.strip().upper().startswith("SELECT"):
            return cursor.fetchall()
        conn.commit()
        return cursor.rowcount

    @tamesdk.with_approval(approval_message="Deleting user data requires manual approval")
    def delete_user_data(user_id: int) -> Any:
        return execute_query("DELETE FROM users WHERE id = ?", (user_id,))

    users = execute_query("SELECT * FROM users LIMIT 10")
    assert len(users) == 2
    with pytest.raises(tamesdk.ApprovalRequiredException) as pending:
        execute_query("DELETE FROM users")  # a production write needs a human
    assert pending.value.decision.reason == "Writing to production needs a human"
    with pytest.raises(tamesdk.ApprovalRequiredException):
        delete_user_data(123)
    assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 2


def test_001_file_manager(backend: Dict[str, Any], tmp_path: Path) -> None:
    client = tamesdk.Client(**backend)

    class FileManager:
        def __init__(self) -> None:
            self.client = client

        @tamesdk.enforce_policy(client=client, metadata={"operation": "read", "risk": "low"})
        def read_file(self, path: str) -> str:
            with open(path) as f:
                return f.read()

        @tamesdk.enforce_policy(client=client, metadata={"operation": "write", "risk": "medium"})
        def write_file(self, path: str, content: str) -> bool:
            with open(path, "w") as f:
                f.write(content)
            return True

        @tamesdk.with_approval(client=client, approval_message="File deletion requires approval")
        def delete_file(self, path: str) -> bool:
            raise AssertionError("must not run without approval")

        def batch_operation(self, operations: list) -> list:
            results = []
            for op in operations:
                try:
                    decision = self.client.enforce(f"file_{op['action']}", op["args"], raise_on_deny=False, raise_on_approve=False)
                    if decision.is_allowed:
                        if op["action"] == "read":
                            result = self.read_file(op["args"]["path"])
                        else:
                            result = self.write_file(op["args"]["path"], op["args"]["content"])
                        results.append({"success": True, "result": result})
                    else:
                        results.append({"success": False, "error": f"Policy {decision.action.value}: {decision.reason}"})
                except Exception as e:
                    results.append({"success": False, "error": str(e)})
            return results

    f1 = tmp_path / "file1.txt"
    f1.write_text("one")
    fm = FileManager()
    assert fm.write_file(str(tmp_path / "output.txt"), "Hello TameSDK!") is True
    assert fm.read_file(str(tmp_path / "output.txt")) == "Hello TameSDK!"
    with pytest.raises(tamesdk.ApprovalRequiredException):
        fm.delete_file(str(f1))
    results = fm.batch_operation(
        [
            {"action": "read", "args": {"path": str(f1)}},
            {"action": "write", "args": {"path": str(tmp_path / "file2.txt"), "content": "data"}},
            {"action": "read", "args": {"path": "/etc/passwd"}},
        ]
    )
    assert [r["success"] for r in results] == [True, True, False]
    assert results[2]["error"] == "Policy deny: System paths are off limits (/etc/passwd)"


def test_001_custom_error_handling(backend: Dict[str, Any]) -> None:
    class PolicyAwareService:
        def __init__(self) -> None:
            self.client = tamesdk.Client(**backend)

        def execute_with_fallback(self, tool_name: str, tool_args: dict, fallback_func: Any = None) -> Any:
            try:
                decision = self.client.enforce(tool_name, tool_args)
                if decision.is_allowed:
                    return f"executed {tool_name}"
            except tamesdk.PolicyViolationException:
                if fallback_func:
                    return fallback_func(tool_args)
                raise
            except tamesdk.ApprovalRequiredException as e:
                raise tamesdk.ApprovalRequiredException(e.decision) from e
            return None

    service = PolicyAwareService()
    assert service.execute_with_fallback("risky_operation", {"data": "sensitive"}, lambda a: f"Fallback result for {a}") == (
        "Fallback result for {'data': 'sensitive'}"
    )
    assert service.execute_with_fallback("safe_operation", {}) == "executed safe_operation"
    with pytest.raises(tamesdk.ApprovalRequiredException):
        service.execute_with_fallback("delete_file", {"path": "/tmp/x"})


def test_001_session_manager(backend: Dict[str, Any]) -> None:
    class SessionManager:
        def __init__(self, base_session_id: str) -> None:
            self.base_session_id = base_session_id
            self.clients: Dict[str, tamesdk.Client] = {}

        def get_client(self, context: str) -> tamesdk.Client:
            session_id = f"{self.base_session_id}-{context}"
            if session_id not in self.clients:
                self.clients[session_id] = tamesdk.Client(session_id=session_id, metadata={"context": context}, **backend)
            return self.clients[session_id]

        def execute_in_context(self, context: str, tool_name: str, tool_args: dict) -> Any:
            return self.get_client(context).execute_tool(tool_name, tool_args)

    manager = SessionManager(f"user-123-session-{time.monotonic_ns()}")
    r1 = manager.execute_in_context("file-operations", "read_file", {"path": "/tmp/file.txt"})
    r2 = manager.execute_in_context("api-calls", "http_request", {"url": "https://api.example.com"})
    assert r1.success and r2.success
    assert r1.decision is not None and r1.decision.metadata == {"context": "file-operations"}
    assert len(manager.clients) == 2


def test_001_policy_testing_framework(backend: Dict[str, Any]) -> None:
    class PolicyTester:
        def __init__(self) -> None:
            self.client = tamesdk.Client(**backend)

        def run_test_suite(self, test_cases: List[Dict[str, Any]]) -> Dict[str, Any]:
            results = {"total_tests": len(test_cases), "passed": 0, "failed": 0, "errors": 0, "details": []}
            for case in test_cases:
                decision = self.client.enforce(case["tool_name"], case["tool_args"], raise_on_deny=False, raise_on_approve=False)
                status = "PASS" if decision.action.value == case["expected_action"] else "FAIL"
                results["passed" if status == "PASS" else "failed"] += 1
                results["details"].append({"test_name": case["name"], "status": status, "rule_name": decision.rule_name})
            return results

    test_cases = [
        {"name": "Allow safe file read", "tool_name": "read_file", "tool_args": {"path": "/tmp/safe_file.txt"}, "expected_action": "allow"},
        {"name": "Deny system file read", "tool_name": "read_file", "tool_args": {"path": "/etc/passwd"}, "expected_action": "deny"},
        {"name": "Require approval for deletion", "tool_name": "delete_file", "tool_args": {"path": "/home/user/important.txt"}, "expected_action": "approve"},
        {"name": "Allow temporary file write", "tool_name": "write_file", "tool_args": {"path": "/tmp/output.txt", "content": "test"}, "expected_action": "allow"},
    ]
    results = PolicyTester().run_test_suite(test_cases)
    assert (results["passed"], results["failed"], results["errors"]) == (4, 0, 0)


def test_001_exception_hierarchy(backend: Dict[str, Any]) -> None:
    client = tamesdk.Client(**backend)
    with pytest.raises(tamesdk.TameSDKException) as base:
        client.enforce("dangerous_tool", {"action": "delete_all"})
    assert isinstance(base.value, tamesdk.PolicyViolationException)
    assert base.value.details["rule_name"] == "no_risky_tools"
    assert base.value.decision.session_id == client.session_id


def _unreachable_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_001_retry_logic() -> None:
    url = _unreachable_url()
    attempts = []

    def retry_on_connection_error(max_retries: int = 3, delay: float = 0.001) -> Any:
        def decorator(func: Any) -> Any:
            @wraps(func)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                last_exception = None
                wait = delay
                for attempt in range(max_retries):
                    try:
                        return func(*args, **kwargs)
                    except tamesdk.ConnectionException as e:
                        attempts.append(attempt)
                        last_exception = e
                        time.sleep(wait)
                        wait *= 2
                raise last_exception  # type: ignore[misc]

            return wrapper

        return decorator

    @retry_on_connection_error(max_retries=3)
    def enforce_with_retry(tool_name: str, tool_args: dict) -> Any:
        with tamesdk.Client(api_url=url, timeout=2) as client:
            return client.enforce(tool_name, tool_args)

    with pytest.raises(tamesdk.ConnectionException):
        enforce_with_retry("api_call", {"url": "https://example.com"})
    assert attempts == [0, 1, 2]


def test_001_graceful_degradation(caplog: pytest.LogCaptureFixture) -> None:
    url = _unreachable_url()
    logger = logging.getLogger("seed-001")

    class ResilientAgent:
        def __init__(self, fallback_mode: bool = False) -> None:
            self.fallback_mode = fallback_mode
            self.client = tamesdk.Client(api_url=url, timeout=2)

        def execute_tool(self, tool_name: str, tool_args: dict) -> str:
            try:
                decision = self.client.enforce(tool_name, tool_args)
                if decision.is_allowed:
                    return f"Executed {tool_name} with {tool_args}"
                raise tamesdk.PolicyViolationException(decision)
            except tamesdk.ConnectionException as e:
                logger.warning("Policy server unavailable: %s", e)
                if self.fallback_mode and tool_name in ["read_file", "get_info", "list_items"]:
                    return f"Executed {tool_name} with {tool_args}"
                raise

    agent = ResilientAgent(fallback_mode=True)
    assert agent.execute_tool("read_file", {"path": "/tmp/safe.txt"}) == "Executed read_file with {'path': '/tmp/safe.txt'}"
    with pytest.raises(tamesdk.ConnectionException):
        agent.execute_tool("delete_everything", {})
    with pytest.raises(tamesdk.ConnectionException):
        ResilientAgent(fallback_mode=False).execute_tool("read_file", {})


def test_001_best_practice_test_client() -> None:
    test_client = tamesdk.Client(api_url="http://localhost:8000", bypass_mode=True, session_id="test-session")
    decision = test_client.enforce("tool_name", {})
    assert decision.is_allowed and decision.session_id == "test-session"


def test_001_debug_mode() -> None:
    tamesdk.configure(api_url="http://localhost:8000", bypass_mode=True)
    with tamesdk.Client() as client:
        decision = client.enforce("test_tool", {"test": True})
    assert decision.action.value == "allow"


def test_001_environment_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setenv("TAME_AGENT_ID", "env-agent")
    tamesdk.configure(
        api_url=os.getenv("TAME_API_URL", "http://localhost:8000"),
        api_key=os.getenv("TAME_API_KEY"),
        agent_id=os.getenv("TAME_AGENT_ID", "default-agent"),
        bypass_mode=os.getenv("TAME_BYPASS_MODE", "false").lower() == "true",
    )
    config = tamesdk.get_config()
    assert (config.api_url, config.agent_id, config.bypass_mode) == ("http://localhost:8000", "env-agent", False)


def test_001_version() -> None:
    assert f"TameSDK {tamesdk.__version__} installed!" == f"TameSDK {tame.__version__} installed!"
