"""tame.integrations.openai_agents with the real OpenAI Agents SDK and a
scripted model (no network): the tool guardrail decides each call, refused
calls do not run and the model sees why, results are reported, the user's
input is recorded."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any, List

import pytest

pytest.importorskip("agents")

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

import tame
from tame.integrations.openai_agents import TameGuardrails

set_tracing_disabled(True)

POLICY = Path(__file__).parent / "data" / "integrations_policy.yml"

RAN: List[Any] = []


@function_tool
def echo(text: str) -> str:
    """Echo the text back."""
    RAN.append(("echo", text))
    return "echo: " + text


@function_tool
def delete_file(path: str) -> str:
    """Delete a file."""
    RAN.append(("delete_file", path))
    return "deleted " + path


class ScriptedModel(Model):
    """Answers each turn from a script; keeps what it was sent."""

    def __init__(self, turns: List[List[Any]]) -> None:
        self.turns = list(turns)
        self.inputs: List[Any] = []

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kwargs: Any) -> ModelResponse:
        self.inputs.append(input)
        return ModelResponse(output=self.turns.pop(0), usage=Usage(), response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - not used
        raise NotImplementedError


def tool_call(name: str, arguments: str, i: int) -> ResponseFunctionToolCall:
    return ResponseFunctionToolCall(id=f"fc_{i}", call_id=f"call_{i}", type="function_call", name=name, arguments=arguments)


def answer(text: str) -> ResponseOutputMessage:
    return ResponseOutputMessage(
        id="msg_1", type="message", role="assistant", status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )


@pytest.fixture
def client() -> tame.Client:
    RAN.clear()
    for t in (echo, delete_file):
        t.tool_input_guardrails = None
        t.tool_output_guardrails = None
    return tame.Client(policy_file=str(POLICY), session_id=f"oa-{uuid.uuid4()}", agent_id="oa-agent")


def outputs_of(model: ScriptedModel) -> dict:
    """The tool outputs the model was sent on its last turn, by call id."""
    items = model.inputs[-1]
    return {i["call_id"]: i["output"] for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"}


def test_the_guardrail_decides_every_call_and_reports_results(client: tame.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: List[tuple] = []
    if hasattr(client, "record_input"):
        real = client.record_input

        def spy(session_id: str, text: str) -> Any:
            recorded.append((session_id, text))
            return real(session_id, text)

        monkeypatch.setattr(client, "record_input", spy)
    model = ScriptedModel([
        [tool_call("delete_file", '{"path": "/home/ada"}', 1), tool_call("echo", '{"text": "hi"}', 2)],
        [answer("I could not delete it.")],
    ])
    agent = TameGuardrails(client).protect(Agent(name="assistant", model=model, tools=[echo, delete_file]))
    result = Runner.run_sync(agent, "delete my home directory")
    assert result.final_output == "I could not delete it."
    # The refused call did not run; the model was told why.
    assert RAN == [("echo", "hi")]
    outputs = outputs_of(model)
    assert "Deleting files is not allowed" in outputs["call_1"]
    assert outputs["call_2"] == "echo: hi"
    logs = client.get_session_logs()
    assert [(e["tool_name"], e["policy_decision"]) for e in logs] == [("delete_file", "deny"), ("echo", "allow")]
    assert logs[1]["execution_status"] == "success"
    if hasattr(client, "record_input"):
        assert recorded == [(client.session_id, "delete my home directory")]


def test_arguments_that_are_not_an_object_do_not_run(client: tame.Client) -> None:
    model = ScriptedModel([[tool_call("echo", "[1, 2]", 1)], [answer("ok")]])
    agent = TameGuardrails(client).protect(Agent(name="assistant", model=model, tools=[echo]))
    Runner.run_sync(agent, "hi")
    assert RAN == []
    assert "not an object" in outputs_of(model)["call_1"]
    # Nothing was decided: the session has no call at all.
    with pytest.raises(tame.TameSDKException, match="not found"):
        client.get_session_logs()


def test_protecting_again_replaces_tames_guardrails_and_keeps_others(client: tame.Client) -> None:
    from agents.tool_guardrails import ToolGuardrailFunctionOutput, tool_input_guardrail

    @tool_input_guardrail
    def own(data: Any) -> ToolGuardrailFunctionOutput:
        return ToolGuardrailFunctionOutput.allow()

    echo.tool_input_guardrails = [own]
    agent = Agent(name="assistant", tools=[echo])
    TameGuardrails(client).protect(agent)
    again = TameGuardrails(client)
    again.protect(agent)
    assert echo.tool_input_guardrails == [own, again.tool_input]
    assert echo.tool_output_guardrails == [again.tool_output]
    assert agent.input_guardrails == [again.agent_input]
