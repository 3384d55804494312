"""tame.integrations.langchain with the real langchain-core and langgraph
packages and a scripted chat model (no network): every tool call decided,
results reported, refusals answered to the model, the user's input
recorded."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any, List

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langgraph")

from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

import tame
from tame.integrations.langchain import TameCallbackHandler, guard_tools, user_input

POLICY = Path(__file__).parent / "data" / "integrations_policy.yml"

RAN: List[Any] = []


@tool
def echo(text: str) -> str:
    """Echo the text back."""
    RAN.append(("echo", text))
    return "echo: " + text


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    RAN.append(("add", a, b))
    return a + b


@tool
def delete_file(path: str) -> str:
    """Delete a file."""
    RAN.append(("delete_file", path))
    return "deleted " + path


@tool
def pay(amount: int) -> str:
    """Pay."""
    RAN.append(("pay", amount))
    return "paid"


@tool
def explode() -> str:
    """Fail."""
    raise RuntimeError("boom")


@pytest.fixture
def client() -> tame.Client:
    RAN.clear()
    return tame.Client(policy_file=str(POLICY), session_id=f"lc-{uuid.uuid4()}", agent_id="lc-agent")


class ScriptedModel(GenericFakeChatModel):
    """A chat model answering from a script; tools are accepted and ignored."""

    def bind_tools(self, tools: Any, **kwargs: Any) -> "ScriptedModel":
        return self


def call(name: str, args: dict, i: int) -> dict:
    return {"name": name, "args": args, "id": f"call_{i}", "type": "tool_call"}


def test_tool_calls_are_enforced_reported_and_refused(client: tame.Client) -> None:
    tools = guard_tools([echo, add, delete_file, pay, explode], client)
    assert [t.name for t in tools] == ["echo", "add", "delete_file", "pay", "explode"]
    by_name = {t.name: t for t in tools}
    calls = [
        call("echo", {"text": "hi"}, 1),
        call("add", {"a": 2, "b": 40}, 2),
        call("delete_file", {"path": "/tmp/x"}, 3),
        call("pay", {"amount": 5}, 4),
    ]
    # As ToolNode runs them: each tool invoked with the model's tool call.
    messages = {c["id"]: by_name[c["name"]].invoke(c) for c in calls}
    assert messages["call_1"].content == "echo: hi"
    assert messages["call_2"].content == "42"
    assert messages["call_3"].status == "error"
    assert "Deleting files is not allowed" in messages["call_3"].content
    assert messages["call_4"].status == "error"
    assert "pending approval id:" in messages["call_4"].content
    # A tool's own failure propagates as before (ToolNode decides what the
    # model sees), and is reported.
    with pytest.raises(RuntimeError, match="boom"):
        by_name["explode"].invoke(call("explode", {}, 5))
    # Refused calls never ran.
    assert sorted(RAN) == sorted([("echo", "hi"), ("add", 2, 40)])
    logs = client.get_session_logs()
    by_tool = {e["tool_name"]: e for e in logs}
    assert [e["policy_decision"] for e in logs] == ["allow", "allow", "deny", "approve", "allow"]
    # Results are reported under the decisions (a failure as an error).
    assert by_tool["echo"]["execution_status"] == "success"
    assert by_tool["add"]["execution_status"] == "success"
    assert by_tool["explode"]["execution_status"] == "error"
    assert "boom" in by_tool["explode"]["error_message"]
    assert by_tool["delete_file"].get("execution_status") in (None, "")


def test_async_tools_are_guarded_too(client: tame.Client) -> None:
    (guarded,) = guard_tools([delete_file], client)
    result = asyncio.run(guarded.ainvoke({"path": "/etc"}))
    assert "Deleting files is not allowed" in result
    (guarded,) = guard_tools([echo], client)
    assert asyncio.run(guarded.ainvoke({"text": "a"})) == "echo: a"
    assert RAN == [("echo", "a")]
    assert [e["policy_decision"] for e in client.get_session_logs()] == ["deny", "allow"]


def test_guarding_twice_wraps_once(client: tame.Client) -> None:
    once = guard_tools([echo], client)
    twice = guard_tools(once, client)
    assert twice[0] is once[0]
    twice[0].invoke({"text": "x"})
    assert len(client.get_session_logs()) == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # create_react_agent moved in langgraph 1.0
def test_a_react_agent_with_a_scripted_model(client: tame.Client) -> None:
    from langgraph.prebuilt import create_react_agent

    model = ScriptedModel(messages=iter([
        AIMessage(content="", tool_calls=[call("delete_file", {"path": "/home/ada"}, 1)]),
        AIMessage(content="", tool_calls=[call("echo", {"text": "sorry"}, 2)]),
        AIMessage(content="I could not delete it."),
    ]))
    agent = create_react_agent(model, guard_tools([echo, delete_file], client))
    handler = TameCallbackHandler(client)
    out = agent.invoke({"messages": [("user", "delete my home directory")]}, config={"callbacks": [handler]})
    tool_messages = [m for m in out["messages"] if isinstance(m, ToolMessage)]
    assert "Deleting files is not allowed" in tool_messages[0].content
    assert tool_messages[1].content == "echo: sorry"
    assert out["messages"][-1].content == "I could not delete it."
    assert RAN == [("echo", "sorry")]
    assert [e["policy_decision"] for e in client.get_session_logs()] == ["deny", "allow"]


def test_the_handler_records_each_user_input_once(client: tame.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: List[tuple] = []
    if not hasattr(client, "record_input"):
        pytest.skip("this SDK has no Client.record_input yet")
    real = client.record_input

    def spy(session_id: str, text: str) -> Any:
        recorded.append((session_id, text))
        return real(session_id, text)

    monkeypatch.setattr(client, "record_input", spy)
    handler = TameCallbackHandler(client)
    first = [HumanMessage("send the report to ada@example.com")]
    handler.on_chain_start({}, {"messages": first}, run_id="r1")
    # A nested run does not record; the same history again does not either.
    handler.on_chain_start({}, {"messages": first}, run_id="r2", parent_run_id="r1")
    handler.on_chain_start({}, {"messages": first}, run_id="r3")
    second = first + [AIMessage("done"), HumanMessage("thanks")]
    handler.on_chain_start({}, {"messages": second}, run_id="r4")
    assert recorded == [(client.session_id, "send the report to ada@example.com"), (client.session_id, "thanks")]


def test_user_input_reads_the_shapes_frameworks_use() -> None:
    assert user_input({"messages": [("user", "hi")]}) == "hi"
    assert user_input({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]}) == "ab"
    assert user_input({"messages": [HumanMessage("x"), AIMessage("y")]}) == "x"
    assert user_input({"input": "question"}) == "question"
    assert user_input({"messages": [AIMessage("y")]}) is None
    assert user_input(42) is None


def test_no_decision_no_call() -> None:
    # A server that cannot be reached: the call fails, it does not run.
    RAN.clear()
    unreachable = tame.Client(api_url="http://127.0.0.1:9", timeout=2.0)
    (guarded,) = guard_tools([echo], unreachable)
    with pytest.raises(tame.TameSDKException):
        guarded.invoke({"text": "x"})
    assert RAN == []
