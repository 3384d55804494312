"""Tools with JSON schemas (``@tool``, ``create_tool``, ``Tool``) and the
approval round trip of tool calls (``ToolCall``, ``ToolRunner``)."""

from __future__ import annotations

import inspect
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from ._json import check_json
from .exceptions import TameSDKException, ToolValidationError
from .models import EnforcementDecision, ToolResult

__all__ = ["Tool", "tool", "create_tool", "ToolCall", "ToolRunner"]

PLATFORM_CONTEXT = "platform_context"

logger = logging.getLogger("tame")


def _json_path(parts: Iterable[Any]) -> str:
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


class Tool:
    """A function an LLM agent can call, with its JSON schema.

    Attributes: ``func``, ``name``, ``description``, ``schema`` (``{"name",
    "description", "input_schema"}``), ``requires_approval``,
    ``requires_platform_context`` (the function has a ``platform_context``
    parameter).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        schema: Mapping[str, Any],
        name: Optional[str] = None,
        description: Optional[str] = None,
        requires_approval: bool = False,
    ) -> None:
        if not callable(func):
            raise TypeError(f"a tool wraps a function, got {type(func).__name__}")
        if not isinstance(schema, Mapping):
            raise TypeError(f"schema must be a dict, got {type(schema).__name__}")
        if not isinstance(requires_approval, bool):
            raise TypeError(f"requires_approval must be a bool, got {type(requires_approval).__name__}")
        for label, value in (("name", name), ("description", description)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"{label} must be a string, got {type(value).__name__}")
        tool_name = name or schema.get("name") or getattr(func, "__name__", None)
        if not isinstance(tool_name, str) or not tool_name:
            raise ValueError("a tool needs a name: pass name=... or put `name` in the schema")
        if "input_schema" in schema:
            input_schema = schema["input_schema"]
        elif schema.get("type") == "object" or "properties" in schema:
            input_schema = {k: v for k, v in schema.items() if k not in ("name", "description")}
        else:
            raise ValueError(f"schema of tool `{tool_name}` has no `input_schema`")
        if not isinstance(input_schema, Mapping):
            raise TypeError(f"input_schema of tool `{tool_name}` must be a dict, got {type(input_schema).__name__}")
        check_json(input_schema, f"input_schema of tool `{tool_name}`")
        if input_schema.get("type", "object") != "object":
            raise ValueError(f"input_schema of tool `{tool_name}` must have type `object`, got `{input_schema.get('type')}`")
        doc = inspect.getdoc(func)
        first = doc.strip().split("\n\n")[0].strip() if doc else None
        self.func = func
        self.name: str = tool_name
        self.description: str = description or first or str(schema.get("description") or "")
        self.input_schema: Dict[str, Any] = json.loads(json.dumps(input_schema))
        self.schema: Dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }
        self.requires_approval = requires_approval
        try:
            self._signature: Optional[inspect.Signature] = inspect.signature(func)
        except (TypeError, ValueError):
            self._signature = None
        params = self._signature.parameters if self._signature else {}
        self.requires_platform_context: bool = PLATFORM_CONTEXT in params
        self._context_optional = (
            self.requires_platform_context and params[PLATFORM_CONTEXT].default is not inspect.Parameter.empty
        )
        self._takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._params = {
            n for n, p in params.items()
            if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }
        self._validator = self._make_validator()

    def _make_validator(self) -> Any:
        try:
            import jsonschema
        except ImportError as exc:  # pragma: no cover - jsonschema is a dependency
            raise TameSDKException("tools need the jsonschema package: pip install jsonschema") from exc
        cls = jsonschema.validators.validator_for(self.input_schema)
        try:
            cls.check_schema(self.input_schema)
        except jsonschema.SchemaError as exc:
            where = _json_path(exc.path)
            raise ValueError(
                f"input_schema of tool `{self.name}` is not a valid JSON schema"
                + (f" at `{where}`" if where else "")
                + f": {exc.message}"
            ) from None
        return cls(self.input_schema, format_checker=cls.FORMAT_CHECKER)

    # -- the seed's API ----------------------------------------------------

    def get_schema(self) -> Dict[str, Any]:
        """The LLM-ready schema: ``{"name", "description", "input_schema"}``."""
        return json.loads(json.dumps(self.schema))

    def validate(self, input_args: Any) -> Dict[str, Any]:
        """Check ``input_args`` against the schema; raise
        ``ToolValidationError`` naming the first failing field."""
        if not isinstance(input_args, Mapping):
            raise TypeError(f"input of tool `{self.name}` must be a dict, got {type(input_args).__name__}")
        args = dict(input_args)
        if PLATFORM_CONTEXT in args:
            raise ToolValidationError(self.name, PLATFORM_CONTEXT, "is reserved: pass platform_context separately")
        try:
            check_json(args, "input")
        except (TypeError, ValueError) as exc:
            raise ToolValidationError(self.name, "", str(exc)) from None
        import jsonschema

        error = jsonschema.exceptions.best_match(self._validator.iter_errors(args))
        if error is not None:
            path = list(error.absolute_path)
            if error.validator == "required" and isinstance(error.instance, Mapping):
                missing = [k for k in error.validator_value if k not in error.instance]
                if missing:
                    path.append(missing[0])
                    raise ToolValidationError(self.name, _json_path(path), "is required")
            if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
                allowed = set(error.schema.get("properties", {}))
                extra = [k for k in error.instance if k not in allowed]
                if extra:
                    path.append(extra[0])
                    raise ToolValidationError(self.name, _json_path(path), "is not an allowed property")
            raise ToolValidationError(self.name, _json_path(path), error.message)
        if not self._takes_kwargs:
            for key in args:
                if key not in self._params:
                    raise ToolValidationError(
                        self.name, key, f"the function `{getattr(self.func, '__name__', self.name)}` has no such parameter"
                    )
        return args

    def _kwargs(self, input_args: Any, platform_context: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
        kwargs = self.validate(input_args)
        if platform_context is not None and not isinstance(platform_context, Mapping):
            raise TypeError(f"platform_context must be a dict, got {type(platform_context).__name__}")
        if self.requires_platform_context:
            if platform_context is not None:
                kwargs[PLATFORM_CONTEXT] = dict(platform_context)
            elif not self._context_optional:
                kwargs[PLATFORM_CONTEXT] = {}
        return kwargs

    def execute(self, input_args: Mapping[str, Any], platform_context: Optional[Mapping[str, Any]] = None) -> Any:
        """Validate ``input_args`` and call the function with them (and the
        platform context when it takes one). An async function's coroutine
        is returned for the caller to await (or use ``aexecute``)."""
        return self.func(**self._kwargs(input_args, platform_context))

    async def aexecute(self, input_args: Mapping[str, Any], platform_context: Optional[Mapping[str, Any]] = None) -> Any:
        """``execute`` for async (or sync) tool functions."""
        value = self.func(**self._kwargs(input_args, platform_context))
        if inspect.isawaitable(value):
            value = await value
        return value

    def describe(self) -> None:
        """Print the tool's name, description, flags and schema."""
        print(f"Tool: {self.name}")
        print(f"Description: {self.description}")
        print(f"Requires Approval: {self.requires_approval}")
        print(f"Has Platform Context: {self.requires_platform_context}")
        print(f"Schema: {json.dumps(self.input_schema, indent=2)}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the wrapped function directly (no validation)."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return (
            f"Tool(name={self.name!r}, requires_approval={self.requires_approval}, "
            f"requires_platform_context={self.requires_platform_context})"
        )


def tool(
    schema: Mapping[str, Any],
    requires_approval: bool = True,
    name: Optional[str] = None,
    description: Optional[str] = None,
) -> Callable[[Callable[..., Any]], Tool]:
    """Decorator: turn a function into a ``Tool`` (approval required by default)."""
    if callable(schema) and not isinstance(schema, Mapping):
        raise TypeError("@tool needs arguments: use @tool(schema={...})")
    if not isinstance(schema, Mapping):
        raise TypeError(f"schema must be a dict, got {type(schema).__name__}")

    def decorate(func: Callable[..., Any]) -> Tool:
        return Tool(func, schema, name=name, description=description, requires_approval=requires_approval)

    return decorate


def create_tool(
    func: Callable[..., Any],
    schema: Mapping[str, Any],
    name: Optional[str] = None,
    description: Optional[str] = None,
    requires_approval: bool = False,
) -> Tool:
    """Build a ``Tool`` from an existing function (no approval by default)."""
    return Tool(func, schema, name=name, description=description, requires_approval=requires_approval)


@dataclass
class ToolCall:
    """A tool call waiting for a human: sent to the client with
    ``execute=False``, sent back with ``execute=True`` (approved) or a
    ``rejection_reason``."""

    id: str
    name: str
    input: Dict[str, Any]
    tool_description: str = ""
    input_description: Dict[str, Any] = field(default_factory=dict)
    execute: bool = False
    rejection_reason: Optional[str] = None
    decision: Optional[EnforcementDecision] = field(default=None, repr=False, compare=False)

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "input": self.input,
            "tool_description": self.tool_description,
            "input_description": self.input_description,
            "execute": self.execute,
        }
        if self.rejection_reason is not None:
            out["rejection_reason"] = self.rejection_reason
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ToolCall":
        """Read a tool call sent back by a client; wrong shapes raise ValueError."""
        if not isinstance(data, Mapping):
            raise TypeError(f"a tool call must be a dict, got {type(data).__name__}")
        for key in ("id", "name"):
            if not isinstance(data.get(key), str) or not data.get(key):
                raise ValueError(f"tool call: `{key}` must be a non-empty string")
        payload = data.get("input", {})
        if not isinstance(payload, Mapping):
            raise ValueError(f"tool call `{data['id']}`: `input` must be an object")
        execute = data.get("execute", False)
        if not isinstance(execute, bool):
            raise ValueError(f"tool call `{data['id']}`: `execute` must be true or false")
        reason = data.get("rejection_reason")
        if reason is not None and not isinstance(reason, str):
            raise ValueError(f"tool call `{data['id']}`: `rejection_reason` must be a string")
        return cls(
            id=data["id"],
            name=data["name"],
            input=dict(payload),
            tool_description=str(data.get("tool_description") or ""),
            input_description=dict(data.get("input_description") or {}),
            execute=execute,
            rejection_reason=reason,
        )


class ToolRunner:
    """Runs an agent's tool calls under policy, holding back those that need
    approval.

    ``call()`` validates the input, asks the policy (when a ``client`` is
    given) and either runs the tool (``ToolResult``) or returns a pending
    ``ToolCall`` when the tool ``requires_approval`` or the policy says
    ``approve``. ``resume()`` takes the tool call back from the client: run
    when ``execute=True``, a failed result carrying the reason when rejected.
    """

    def __init__(self, tools: Iterable[Tool], client: Any = None) -> None:
        self.tools: Dict[str, Tool] = {}
        for t in tools:
            if not isinstance(t, Tool):
                raise TypeError(f"ToolRunner takes Tool objects, got {type(t).__name__}")
            if t.name in self.tools:
                raise ValueError(f"two tools are named `{t.name}`")
            self.tools[t.name] = t
        self.client = client
        self._pending: Dict[str, Tuple[ToolCall, Optional[EnforcementDecision]]] = {}

    def schemas(self) -> List[Dict[str, Any]]:
        """Every tool's LLM-ready schema."""
        return [t.get_schema() for t in self.tools.values()]

    @property
    def pending(self) -> List[ToolCall]:
        return [call for call, _ in self._pending.values()]

    def _tool(self, name: str) -> Tool:
        found = self.tools.get(name)
        if found is None:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ValueError(f"unknown tool `{name}` (known: {known})")
        return found

    def _enforce(self, t: Tool, payload: Dict[str, Any]) -> Optional[EnforcementDecision]:
        if self.client is None:
            return None
        return self.client.enforce(
            t.name,
            payload,
            {"requires_approval": t.requires_approval},
            raise_on_deny=False,
            raise_on_approve=False,
        )

    def _run(self, t: Tool, payload: Dict[str, Any], context: Any, decision: Optional[EnforcementDecision]) -> ToolResult:
        start = time.perf_counter()
        try:
            value = t.execute(payload, context)
            ok, error = True, None
        except ToolValidationError:
            raise
        except Exception as exc:
            value, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        ms = (time.perf_counter() - start) * 1000.0
        if self.client is not None and decision is not None:
            self.client._report_quietly(decision, self.client._report(ok, value, error, ms))
        return ToolResult(success=ok, result=value, error=error, execution_time_ms=ms, decision=decision)

    def call(
        self,
        name: str,
        input_args: Mapping[str, Any],
        platform_context: Optional[Mapping[str, Any]] = None,
        id: Optional[str] = None,
    ) -> Union[ToolResult, ToolCall]:
        """Run one tool call, or hold it for approval (a ``ToolCall``)."""
        t = self._tool(name)
        payload = t.validate(input_args)
        decision = self._enforce(t, payload)
        if decision is not None and decision.is_denied:
            return ToolResult(success=False, error=f"policy deny: {decision.reason}", decision=decision)
        if t.requires_approval or (decision is not None and decision.requires_approval):
            call = ToolCall(
                id=id or f"toolu_{uuid.uuid4().hex}",
                name=t.name,
                input=payload,
                tool_description=t.description,
                input_description=dict(t.input_schema.get("properties", {})),
                decision=decision,
            )
            if call.id in self._pending:
                raise ValueError(f"a tool call with id `{call.id}` is already pending")
            self._pending[call.id] = (call, decision)
            return call
        return self._run(t, payload, platform_context, decision)

    def resume(
        self, tool_call: Union[ToolCall, Mapping[str, Any]], platform_context: Optional[Mapping[str, Any]] = None
    ) -> ToolResult:
        """Finish a pending call from the client's answer."""
        answer = tool_call if isinstance(tool_call, ToolCall) else ToolCall.from_dict(tool_call)
        held = self._pending.get(answer.id)
        if held is None:
            raise ValueError(f"no pending tool call with id `{answer.id}`")
        pending, decision = held
        if answer.name != pending.name:
            raise ValueError(f"tool call `{answer.id}` was for `{pending.name}`, not `{answer.name}`")
        if answer.rejection_reason:
            del self._pending[answer.id]
            self._settle(decision, approved=False, reason=answer.rejection_reason)
            return ToolResult(success=False, error=f"rejected: {answer.rejection_reason}", decision=decision)
        if not answer.execute:
            raise ValueError(
                f"tool call `{answer.id}` is neither approved (execute=True) nor rejected (rejection_reason)"
            )
        t = self._tool(answer.name)
        payload = t.validate(answer.input)
        del self._pending[answer.id]
        if payload != pending.input:
            # the input changed after the human saw it: ask the policy again
            decision = self._enforce(t, payload)
            if decision is not None and decision.is_denied:
                return ToolResult(success=False, error=f"policy deny: {decision.reason}", decision=decision)
        else:
            decision = self._settle(decision, approved=True, reason="approved by the user")
            if decision is not None and decision.is_denied:
                return ToolResult(success=False, error=f"policy deny: {decision.reason}", decision=decision)
        return self._run(t, payload, platform_context, decision)

    def _settle(
        self, decision: Optional[EnforcementDecision], approved: bool, reason: str
    ) -> Optional[EnforcementDecision]:
        """Record the human's answer on the policy's approval, if one was
        opened, and release an approved call (its new ``allow`` decision,
        whose log entry the result is reported on)."""
        if self.client is None or decision is None or not decision.approval_id:
            return decision
        try:
            if approved:
                self.client.approve(decision.approval_id, reason=reason)
                return self.client.wait_for_approval(decision, timeout=0, raise_on_deny=False)
            self.client.reject(decision.approval_id, reason=reason)
        except TameSDKException as exc:
            logger.warning("could not record the answer to approval %s: %s", decision.approval_id, exc)
        return decision
