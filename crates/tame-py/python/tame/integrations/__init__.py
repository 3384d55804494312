"""Tame in agent frameworks: adapters that put every tool call of an agent
through the policy, report what the tools returned, and record the user's
inputs for the session (``session.inputs``, ``from_input``).

- :mod:`tame.integrations.langchain`: LangChain and LangGraph tools
  (``guard_tools``) and a callback handler that records the user's input
  (``TameCallbackHandler``);
- :mod:`tame.integrations.openai_agents`: the OpenAI Agents SDK, as tool
  guardrails and an input guardrail (``TameGuardrails``).

Each module imports its framework when imported; the framework is not a
dependency of ``tame`` itself.
"""

from ._common import decide, record_input, report_result

__all__ = ["decide", "record_input", "report_result"]
