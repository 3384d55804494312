"""Seed 002: tools with JSON schemas, platform context, validation with
the failing field named, and the approval round trip of tool calls."""

from __future__ import annotations

from typing import List

import pytest

import tame
from tame import Tool, ToolCall, ToolRunner, create_tool, tool

GREET_SCHEMA = {
    "name": "greet",
    "description": "Generate a greeting message",
    "input_schema": {
        "type": "object",
        "properties": {"name": {"type": "string", "description": "Name of the person to greet"}},
        "required": ["name"],
    },
}


@tool(schema=GREET_SCHEMA, requires_approval=False)
def greet(name: str) -> str:
    """Generate a greeting."""
    return f"Hello, {name}!"


@tool(
    schema={
        "name": "log_action",
        "description": "Log an action with user context",
        "input_schema": {
            "type": "object",
            "properties": {"action": {"type": "string", "description": "Action to log"}},
            "required": ["action"],
        },
    }
)
def log_action(action: str, platform_context: dict) -> str:
    """Log an action with the current user."""
    user = platform_context.get("user_id", "unknown")
    tenant = platform_context.get("tenant_name", "default")
    return f"[{tenant}/{user}] Action: {action}"


@tool(
    schema={
        "name": "delete_resource",
        "description": "Delete a resource (requires approval)",
        "input_schema": {
            "type": "object",
            "properties": {
                "resource_id": {"type": "string", "description": "ID of resource to delete"},
                "force": {"type": "boolean", "description": "Force deletion", "default": False},
            },
            "required": ["resource_id"],
        },
    },
    requires_approval=True,
)
def delete_resource(resource_id: str, force: bool = False) -> str:
    """Delete a resource from the system."""
    mode = "force-deleted" if force else "deleted"
    return f"Resource {resource_id} has been {mode}"


CALCULATE_SCHEMA = {
    "name": "calculate",
    "description": "Perform arithmetic operations",
    "input_schema": {
        "type": "object",
        "properties": {
            "operation": {"type": "string", "enum": ["add", "subtract", "multiply", "divide"]},
            "a": {"type": "number", "description": "First operand"},
            "b": {"type": "number", "description": "Second operand"},
        },
        "required": ["operation", "a", "b"],
    },
}


@tool(schema=CALCULATE_SCHEMA, requires_approval=False)
def calculate(operation: str, a: float, b: float) -> str:
    ops = {
        "add": lambda x, y: x + y,
        "subtract": lambda x, y: x - y,
        "multiply": lambda x, y: x * y,
        "divide": lambda x, y: x / y if y != 0 else "undefined",
    }
    return f"{a} {operation} {b} = {ops[operation](a, b)}"


def test_basic_tool() -> None:
    assert isinstance(greet, Tool)
    assert greet.execute({"name": "Alice"}) == "Hello, Alice!"
    assert greet.name == "greet"
    assert greet.description == "Generate a greeting."
    assert greet.get_schema() == {
        "name": "greet",
        "description": "Generate a greeting.",
        "input_schema": GREET_SCHEMA["input_schema"],
    }
    assert greet.requires_approval is False and greet.requires_platform_context is False
    assert repr(greet) == "Tool(name='greet', requires_approval=False, requires_platform_context=False)"
    assert greet("Bob") == "Hello, Bob!"  # still callable directly


def test_platform_context_detection() -> None:
    assert log_action.requires_platform_context is True
    assert log_action.requires_approval is True  # @tool's default
    assert log_action.execute({"action": "login"}, {"user_id": "alice", "tenant_name": "prod"}) == (
        "[prod/alice] Action: login"
    )
    assert log_action.execute({"action": "x"}) == "[default/unknown] Action: x"

    @tool(schema={"name": "flexible_tool", "input_schema": {"type": "object", "properties": {"data": {"type": "string"}}}})
    def flexible_tool(data: str, platform_context: dict = None) -> str:  # type: ignore[assignment]
        if platform_context:
            return f"User {platform_context.get('user_id', 'unknown')} processed: {data}"
        return f"Processed: {data}"

    assert flexible_tool.execute({"data": "test"}) == "Processed: test"
    assert flexible_tool.execute({"data": "test"}, {"user_id": "alice"}) == "User alice processed: test"


def test_approval_flag_and_custom_name() -> None:
    assert delete_resource.requires_approval is True

    @tool(
        schema={"name": "search_db", "description": "Search the database", "input_schema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
        name="database_search",
        description="Search for records",
    )
    def internal_search(query: str) -> str:
        """This docstring is overridden."""
        return f"Found 5 results for: {query}"

    assert internal_search.name == "database_search"
    assert internal_search.description == "Search for records"
    assert internal_search.get_schema()["name"] == "database_search"


def test_create_tool() -> None:
    def multiply(a: int, b: int) -> str:
        """Multiply two numbers."""
        return f"{a} × {b} = {a * b}"

    multiply_tool = create_tool(
        func=multiply,
        schema={
            "name": "multiply",
            "description": "Multiply two integers",
            "input_schema": {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                "required": ["a", "b"],
            },
        },
    )
    assert multiply_tool.execute({"a": 6, "b": 7}) == "6 × 7 = 42"
    assert multiply_tool.requires_approval is False
    with pytest.raises(tame.ToolValidationError) as err:
        multiply_tool.execute({"a": 6, "b": 7.5})
    assert err.value.field == "b"
    assert "multiply" in str(err.value) and "`b`" in str(err.value)


def test_calculator_example() -> None:
    assert calculate.execute({"operation": "multiply", "a": 7, "b": 8}) == "7 multiply 8 = 56"
    with pytest.raises(tame.ToolValidationError, match="operation") as err:
        calculate.execute({"operation": "power", "a": 2, "b": 3})
    assert err.value.field == "operation"
    assert isinstance(err.value, ValueError)


def test_validation_names_the_failing_field() -> None:
    @tool(
        schema={
            "name": "create_user",
            "description": "Create a new user account",
            "input_schema": {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "minLength": 3, "maxLength": 30},
                    "email": {"type": "string", "format": "email"},
                    "role": {"type": "string", "enum": ["user", "admin", "moderator"], "default": "user"},
                    "permissions": {"type": "array", "items": {"type": "string"}},
                    "profile": {
                        "type": "object",
                        "properties": {"display_name": {"type": "string"}, "bio": {"type": "string"}},
                    },
                },
                "required": ["username", "email"],
            },
        },
        requires_approval=True,
    )
    def create_user(username: str, email: str, role: str = "user", permissions: list = None, profile: dict = None) -> str:  # type: ignore[assignment]
        return f"Created user {username} with role {role}"

    ok = {"username": "alice", "email": "alice@example.com"}
    assert create_user.execute(ok) == "Created user alice with role user"
    cases = [
        ({"email": "a@b.c"}, "username", "is required"),
        ({"username": "al", "email": "a@b.c"}, "username", "too short"),
        ({**ok, "permissions": ["read", 7]}, "permissions[1]", "not of type 'string'"),
        ({**ok, "profile": {"bio": 5}}, "profile.bio", "not of type 'string'"),
        ({**ok, "role": "root"}, "role", "not one of"),
        ({**ok, "email": "not-an-email"}, "email", "email"),
        ({**ok, "shoe_size": 44}, "shoe_size", "no such parameter"),
        ({**ok, "platform_context": {}}, "platform_context", "reserved"),
    ]
    for payload, field, message in cases:
        with pytest.raises(tame.ToolValidationError) as err:
            create_user.execute(payload)
        assert err.value.field == field, payload
        assert message in str(err.value), str(err.value)
    with pytest.raises(TypeError, match="must be a dict"):
        create_user.execute(["alice"])  # type: ignore[arg-type]


def test_bad_tool_definitions() -> None:
    with pytest.raises(TypeError, match="schema must be a dict"):
        tool(schema={...})  # type: ignore[arg-type]  # the docs' placeholder is a set
    with pytest.raises(TypeError, match="needs arguments"):
        tool(lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_schema"):
        create_tool(lambda: None, {"name": "x", "description": "no input schema"})
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        create_tool(lambda x: x, {"name": "x", "input_schema": {"type": "object", "properties": {"x": {"type": "strng"}}}})
    with pytest.raises(ValueError, match="type `object`"):
        create_tool(lambda x: x, {"name": "x", "input_schema": {"type": "string"}})


def test_describe(capsys: pytest.CaptureFixture) -> None:
    log_action.describe()
    out = capsys.readouterr().out
    assert "Tool: log_action" in out
    assert "Requires Approval: True" in out
    assert "Has Platform Context: True" in out
    assert '"action"' in out


def test_tool_registry_analysis() -> None:
    tools: List[Tool] = [greet, log_action, delete_resource, calculate]
    approval_tools = [t.name for t in tools if t.requires_approval]
    context_tools = [t.name for t in tools if t.requires_platform_context]
    assert approval_tools == ["log_action", "delete_resource"]
    assert context_tools == ["log_action"]


def test_approval_round_trip_without_policy() -> None:
    runner = ToolRunner([greet, delete_resource])
    assert runner.call("greet", {"name": "Ada"}).result == "Hello, Ada!"
    pending = runner.call("delete_resource", {"resource_id": "i-123"}, id="tool-use-1")
    assert isinstance(pending, ToolCall)
    assert pending.execute is False and pending.id == "tool-use-1"
    sent = pending.to_dict()
    assert sent["input"] == {"resource_id": "i-123"}
    assert sent["tool_description"] == "Delete a resource from the system."
    assert sent["input_description"]["resource_id"]["type"] == "string"
    with pytest.raises(ValueError, match="neither approved"):
        runner.resume(sent)
    result = runner.resume({**sent, "execute": True})
    assert result.success and result.result == "Resource i-123 has been deleted"
    with pytest.raises(ValueError, match="no pending tool call"):
        runner.resume({**sent, "execute": True})
    second = runner.call("delete_resource", {"resource_id": "i-9"})
    rejected = runner.resume({"id": second.id, "name": "delete_resource", "input": second.input, "rejection_reason": "Wrong instance"})
    assert not rejected.success and rejected.error == "rejected: Wrong instance"
    assert runner.pending == []
    with pytest.raises(tame.ToolValidationError):
        runner.call("delete_resource", {})
    with pytest.raises(ValueError, match="unknown tool `nope`"):
        runner.call("nope", {})


POLICY = """
version: "tools"
rules:
  - name: no_prod
    action: deny
    tools: ["delete_resource"]
    condition: 'args.resource_id.startsWith("prod-")'
    reason: "production resources are protected"
  - name: deletes_need_approval
    action: approve
    tools: ["delete_resource"]
  - name: everything_else
    action: allow
"""


def test_approval_round_trip_with_policy() -> None:
    engine = tame.Engine.from_str(POLICY)
    client = tame.Client(engine=engine, session_id="agent-loop")
    # greet does not need approval, and the policy lets it run
    plain = create_tool(greet.func, GREET_SCHEMA, requires_approval=False)
    deletable = create_tool(delete_resource.func, delete_resource.schema, requires_approval=False)
    runner = ToolRunner([plain, deletable], client=client)
    assert runner.call("greet", {"name": "Ada"}).success
    denied = runner.call("delete_resource", {"resource_id": "prod-db"})
    assert not denied.success and "production resources are protected" in (denied.error or "")
    pending = runner.call("delete_resource", {"resource_id": "tmp-1"})
    assert isinstance(pending, ToolCall) and pending.decision is not None
    assert pending.decision.requires_approval
    done = runner.resume({**pending.to_dict(), "execute": True})
    assert done.success and done.decision is not None and done.decision.is_allowed
    approval = client.get_approval(pending.decision.approval_id)
    assert approval["state"] == "approved"
    # the released call's log entry carries the tool's result
    entries = {e["id"]: e for e in client.get_session_logs()}
    assert entries[done.decision.log_id]["execution_status"] == "success"
    # an edited input is checked again by the policy
    again = runner.call("delete_resource", {"resource_id": "tmp-2"})
    edited = runner.resume({**again.to_dict(), "input": {"resource_id": "prod-x"}, "execute": True})
    assert not edited.success and "protected" in (edited.error or "")
