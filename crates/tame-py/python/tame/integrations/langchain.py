"""LangChain and LangGraph: every tool call through Tame.

``guard_tools(tools, client)`` wraps a list of LangChain tools (``@tool``
functions, ``StructuredTool``, any ``BaseTool`` with an args schema) so that
each call is decided by the policy before it runs, its result (or failure)
reported under the decision, and a refused call answered to the model with
the reason as the tool's (error) output instead of running. The wrapped
tools work wherever tools do: ``ToolNode``, ``create_react_agent`` /
``create_agent``, ``AgentExecutor``, or ``tool.invoke`` by hand.

``TameCallbackHandler(client)`` records the user's input: the newest human
message (or ``input`` string) a top-level run starts with, once. Pass it in
the run's config: ``agent.invoke(inputs, config={"callbacks": [handler]})``.

    from tame import Client
    from tame.integrations.langchain import TameCallbackHandler, guard_tools

    client = Client(policy_file="policies.yml", agent_id="support-bot")
    tools = guard_tools([search, send_email], client)
    agent = create_react_agent(model, tools)
    agent.invoke({"messages": [("user", "mail the report to ada@example.com")]},
                 config={"callbacks": [TameCallbackHandler(client)]})
"""

import asyncio
import threading
import time
from typing import Any, Dict, Iterable, List, Optional

try:
    from langchain_core.callbacks import BaseCallbackHandler
    from langchain_core.tools import BaseTool, StructuredTool, ToolException
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("tame.integrations.langchain needs langchain-core: pip install langchain-core") from exc

from ..client import Client
from ..decorators import default_client
from ._common import decide, record_input, report_result

__all__ = ["guard_tools", "guard_tool", "TameCallbackHandler"]

_GUARDED = "tame_guarded"


def guard_tools(
    tools: Iterable[BaseTool],
    client: Optional[Client] = None,
    *,
    approval_timeout: float = 0.0,
) -> List[BaseTool]:
    """The tools, each guarded by ``client`` (the configured default client
    when ``None``). With ``approval_timeout`` > 0 a call that needs approval
    waits that many seconds for a human before its answer."""
    client = client if client is not None else default_client()
    return [guard_tool(t, client, approval_timeout=approval_timeout) for t in tools]


def guard_tool(tool: BaseTool, client: Client, *, approval_timeout: float = 0.0) -> BaseTool:
    """One tool, guarded (a tool already guarded is returned as is)."""
    if not isinstance(tool, BaseTool):
        raise TypeError(f"guard_tool takes a langchain BaseTool, got {type(tool).__name__}")
    if (tool.metadata or {}).get(_GUARDED):
        return tool
    if tool.args_schema is None:
        raise TypeError(f"tool `{tool.name}` has no args schema: give it one (e.g. with @tool) to guard it")
    name = tool.name
    metadata = {"framework": "langchain"}

    def refuse(text: str) -> None:
        # handle_tool_error=True: the text becomes the tool's error output.
        raise ToolException(text)

    def run(**kwargs: Any) -> Any:
        decision, refusal = decide(client, name, kwargs, approval_timeout=approval_timeout, metadata=metadata)
        if refusal is not None:
            refuse(refusal)
        started = time.perf_counter()
        try:
            value = tool.invoke(kwargs)
        except Exception as exc:
            report_result(client, decision, False, None, f"{type(exc).__name__}: {exc}", started)
            raise
        report_result(client, decision, True, value, None, started)
        return value

    async def arun(**kwargs: Any) -> Any:
        # The client is synchronous: decide and report off the event loop.
        decision, refusal = await asyncio.to_thread(
            decide, client, name, kwargs, approval_timeout=approval_timeout, metadata=metadata
        )
        if refusal is not None:
            refuse(refusal)
        started = time.perf_counter()
        try:
            value = await tool.ainvoke(kwargs)
        except Exception as exc:
            await asyncio.to_thread(report_result, client, decision, False, None, f"{type(exc).__name__}: {exc}", started)
            raise
        await asyncio.to_thread(report_result, client, decision, True, value, None, started)
        return value

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=tool.description,
        args_schema=tool.args_schema,
        return_direct=tool.return_direct,
        handle_tool_error=True,
        metadata={**(tool.metadata or {}), _GUARDED: True},
        tags=tool.tags,
    )


def _text_of(content: Any) -> Optional[str]:
    """The text of a message's content (a string, or a list of parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text", "") for p in content if isinstance(p, (str, dict))]
        text = "".join(p for p in parts if isinstance(p, str))
        return text or None
    return None


def _is_human(message: Any) -> bool:
    if isinstance(message, (tuple, list)) and len(message) == 2:
        return message[0] in ("user", "human")
    if isinstance(message, dict):
        return message.get("role") in ("user", "human") or message.get("type") == "human"
    return getattr(message, "type", None) == "human"


def _content(message: Any) -> Any:
    if isinstance(message, (tuple, list)):
        return message[1]
    if isinstance(message, dict):
        return message.get("content")
    return getattr(message, "content", None)


def user_input(inputs: Any) -> Optional[str]:
    """The user's input a run starts with: the newest human message of
    ``messages``, or the ``input`` (``question``, ``query``) string."""
    if isinstance(inputs, str):
        return inputs
    if not isinstance(inputs, dict):
        return None
    messages = inputs.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if _is_human(message):
                return _text_of(_content(message))
        return None
    for key in ("input", "question", "query"):
        if isinstance(inputs.get(key), str):
            return inputs[key]
    return None


class TameCallbackHandler(BaseCallbackHandler):
    """Records the user's input of each top-level run to the client's
    session (a message already recorded by this handler is not recorded
    again, so a graph re-run over the whole history adds only what is new)."""

    raise_error = False

    def __init__(self, client: Optional[Client] = None, session_id: Optional[str] = None) -> None:
        self.client = client if client is not None else default_client()
        self.session_id = session_id
        self._seen: Dict[str, int] = {}
        self._lock = threading.Lock()

    def on_chain_start(self, serialized: Any, inputs: Any, *, run_id: Any, parent_run_id: Any = None, **kwargs: Any) -> None:
        if parent_run_id is not None:
            return
        text = user_input(inputs)
        if not text:
            return
        count = _human_count(inputs)
        with self._lock:
            # The same conversation re-sent: its human messages were recorded.
            if self._seen.get(text, -1) >= count:
                return
            self._seen[text] = count
        record_input(self.client, text, self.session_id)


def _human_count(inputs: Any) -> int:
    messages = inputs.get("messages") if isinstance(inputs, dict) else None
    if isinstance(messages, list):
        return sum(1 for m in messages if _is_human(m))
    return 0
