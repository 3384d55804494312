"""The OpenAI Agents SDK: every tool call through Tame, as guardrails.

``TameGuardrails(client)`` gives three guardrails of the SDK:

- a tool input guardrail (``tool_input``): the policy decides each call of
  a function tool before it runs; a refused call is not run and the model
  gets the reason as the tool's output (``reject_content``);
- a tool output guardrail (``tool_output``): reports what the tool returned
  under the call's decision;
- an agent input guardrail (``agent_input``, run before the agent): records
  the user's input to the session.

``protect(agent)`` attaches all three to an agent and its function tools.

    from agents import Agent, Runner, function_tool
    from tame import Client
    from tame.integrations.openai_agents import TameGuardrails

    client = Client(policy_file="policies.yml", agent_id="support-bot")
    agent = TameGuardrails(client).protect(Agent(name="support", tools=[send_email]))
    result = Runner.run_sync(agent, "mail the report to ada@example.com")
"""

import asyncio
import json
import threading
import time
from typing import Any, Dict, Optional, Tuple

try:
    from agents import Agent, FunctionTool, GuardrailFunctionOutput, input_guardrail
    from agents.tool_guardrails import (
        ToolGuardrailFunctionOutput,
        ToolInputGuardrailData,
        ToolOutputGuardrailData,
        tool_input_guardrail,
        tool_output_guardrail,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("tame.integrations.openai_agents needs the OpenAI Agents SDK: pip install openai-agents") from exc

from ..client import Client
from ..decorators import default_client
from ..models import EnforcementDecision
from ._common import decide, record_input, report_result

__all__ = ["TameGuardrails"]


def _input_text(value: Any) -> Optional[str]:
    """The user's text of a run's input: a string, or the newest user item
    of an input list."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        for item in reversed(value):
            if isinstance(item, dict) and item.get("role") == "user":
                content = item.get("content")
                if isinstance(content, str):
                    return content
                if isinstance(content, list):
                    texts = [p.get("text", "") for p in content if isinstance(p, dict)]
                    return "".join(t for t in texts if isinstance(t, str)) or None
    return None


class TameGuardrails:
    """Guardrails deciding and recording through ``client`` (the configured
    default client when ``None``). With ``approval_timeout`` > 0 a call that
    needs approval waits that many seconds for a human."""

    def __init__(self, client: Optional[Client] = None, *, approval_timeout: float = 0.0) -> None:
        self.client = client if client is not None else default_client()
        self.approval_timeout = approval_timeout
        # Allowed calls by tool call id, until their output is reported.
        self._running: Dict[str, Tuple[EnforcementDecision, float]] = {}
        self._lock = threading.Lock()
        self.tool_input = tool_input_guardrail(name="tame_policy")(self._check_call)
        self.tool_output = tool_output_guardrail(name="tame_report")(self._report_output)
        self.agent_input = input_guardrail(name="tame_record_input", run_in_parallel=False)(self._record_input)

    async def _check_call(self, data: ToolInputGuardrailData) -> ToolGuardrailFunctionOutput:
        ctx = data.context
        try:
            args = json.loads(ctx.tool_arguments or "{}")
        except ValueError:
            return ToolGuardrailFunctionOutput.reject_content(
                f"tame: the arguments of `{ctx.tool_name}` are not json: not run"
            )
        if not isinstance(args, dict):
            return ToolGuardrailFunctionOutput.reject_content(
                f"tame: the arguments of `{ctx.tool_name}` are not an object: not run"
            )
        decision, refusal = await asyncio.to_thread(
            decide,
            self.client,
            ctx.tool_name,
            args,
            approval_timeout=self.approval_timeout,
            metadata={"framework": "openai-agents", "tool_call_id": ctx.tool_call_id},
        )
        if refusal is not None:
            return ToolGuardrailFunctionOutput.reject_content(refusal, output_info=decision.to_dict())
        with self._lock:
            self._running[ctx.tool_call_id] = (decision, time.perf_counter())
        return ToolGuardrailFunctionOutput.allow(output_info=decision.to_dict())

    async def _report_output(self, data: ToolOutputGuardrailData) -> ToolGuardrailFunctionOutput:
        with self._lock:
            running = self._running.pop(data.context.tool_call_id, None)
        if running is not None:
            decision, started = running
            await asyncio.to_thread(report_result, self.client, decision, True, data.output, None, started)
        return ToolGuardrailFunctionOutput.allow()

    async def _record_input(self, ctx: Any, agent: Any, value: Any) -> GuardrailFunctionOutput:
        text = _input_text(value)
        if text:
            await asyncio.to_thread(record_input, self.client, text)
        return GuardrailFunctionOutput(output_info=None, tripwire_triggered=False)

    def protect(self, agent: Agent) -> Agent:
        """Attaches the guardrails to ``agent`` and each of its function
        tools (in place; returns the agent). Tools of other kinds (hosted
        tools, MCP servers) are not function tools: guard MCP servers with
        ``tame mcp-proxy``."""
        for tool in agent.tools:
            if isinstance(tool, FunctionTool):
                tool.tool_input_guardrails = [*_others(tool.tool_input_guardrails), self.tool_input]
                tool.tool_output_guardrails = [*_others(tool.tool_output_guardrails), self.tool_output]
        agent.input_guardrails = [*_others(agent.input_guardrails), self.agent_input]
        return agent


_NAMES = ("tame_policy", "tame_report", "tame_record_input")


def _others(guardrails: Any) -> list:
    """The guardrails that are not Tame's (protecting again replaces them,
    so that a tool is never decided twice)."""
    return [g for g in (guardrails or []) if getattr(g, "name", None) not in _NAMES]
