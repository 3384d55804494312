"""Decorators that put a function under policy: ``@enforce_policy``,
``@with_approval`` and ``@log_action`` (sync and async functions)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple, TypeVar, Union

from ._json import require_mapping, to_jsonable
from .client import AsyncClient, Client, run_reported, run_reported_async
from .config import configuration_generation, get_config
from .exceptions import ApprovalRequiredException, PolicyViolationException
from .models import ActionType, EnforcementDecision

__all__ = ["enforce_policy", "with_approval", "log_action", "default_client", "call_arguments"]

F = TypeVar("F", bound=Callable[..., Any])
logger = logging.getLogger("tame")

_SKIPPED_FIRST = ("self", "cls")

_default_lock = threading.Lock()
_default_sync: Optional[Tuple[int, Client]] = None
_default_async: Optional[Tuple[int, AsyncClient]] = None


def default_client() -> Client:
    """The client decorators use when given none: built from the global
    configuration, rebuilt after every ``configure()``."""
    global _default_sync
    with _default_lock:
        gen = configuration_generation()
        if _default_sync is not None and _default_sync[0] == gen:
            return _default_sync[1]
        old = _default_sync
        client = Client(config=get_config())
        _default_sync = (gen, client)
    if old is not None:
        old[1].close()
    return client


def _default_async_embedded() -> Optional[AsyncClient]:
    """A shared AsyncClient when the configuration is embedded (it is not
    bound to an event loop); ``None`` for HTTP, where each call gets a
    short-lived client on the running loop."""
    global _default_async
    cfg = get_config()
    if not cfg.policy_file:
        return None
    session_id = default_client().session_id
    with _default_lock:
        gen = configuration_generation()
        if _default_async is not None and _default_async[0] == gen:
            return _default_async[1]
        client = AsyncClient(config=cfg, session_id=session_id)
        _default_async = (gen, client)
        return client


def call_arguments(func: Callable[..., Any], args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """The tool arguments of one call, read from ``func``'s signature:
    parameter names to values (defaults applied, ``self``/``cls`` left out,
    ``**kwargs`` merged, values made JSON-compatible)."""
    sig = inspect.signature(func)
    bound = sig.bind(*args, **kwargs)
    bound.apply_defaults()
    params = list(sig.parameters)
    out: Dict[str, Any] = {}
    for name, value in bound.arguments.items():
        if params and name == params[0] and name in _SKIPPED_FIRST:
            continue
        kind = sig.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            out[name] = list(value)
        else:
            out[name] = value
    return to_jsonable(out)


def _check_flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _check_client(client: Any) -> None:
    if client is not None and not isinstance(client, (Client, AsyncClient)):
        raise TypeError(f"client must be a tame.Client or tame.AsyncClient, got {type(client).__name__}")


def enforce_policy(
    func: Optional[F] = None,
    *,
    tool_name: Optional[str] = None,
    client: Optional[Union[Client, AsyncClient]] = None,
    raise_on_deny: bool = True,
    raise_on_approve: bool = True,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Any:
    """Enforce policy before every call of the decorated function.

    Usable bare (``@enforce_policy``) or with options. The tool name is the
    function's name unless ``tool_name`` is given; the tool arguments are
    the call's arguments by parameter name. When the call is allowed the
    function runs and its result (or error) is recorded. A denied or
    approval-bound call raises unless ``raise_on_*=False``, in which case
    the function does not run and the wrapper returns ``None``.
    """
    if tool_name is not None and (not isinstance(tool_name, str) or not tool_name):
        raise TypeError("tool_name must be a non-empty string")
    _check_flag(raise_on_deny, "raise_on_deny")
    _check_flag(raise_on_approve, "raise_on_approve")
    _check_client(client)
    meta = require_mapping(metadata, "metadata")

    def decorate(fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"@enforce_policy decorates a function, got {type(fn).__name__}")
        name = tool_name or fn.__name__

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tool_args = call_arguments(fn, args, kwargs)

                async def run(c: Any, is_async: bool) -> Any:
                    if is_async:
                        decision = await c.enforce(name, tool_args, meta, raise_on_deny, raise_on_approve)
                    elif c.is_embedded:
                        decision = c.enforce(name, tool_args, meta, raise_on_deny, raise_on_approve)
                    else:
                        loop = asyncio.get_running_loop()
                        decision = await loop.run_in_executor(
                            None, lambda: c.enforce(name, tool_args, meta, raise_on_deny, raise_on_approve)
                        )
                    if not decision.is_allowed:
                        return None
                    if is_async:
                        return await run_reported_async(c, decision, lambda: fn(*args, **kwargs))
                    start = time.perf_counter()
                    try:
                        value = await fn(*args, **kwargs)
                    except Exception as exc:
                        ms = (time.perf_counter() - start) * 1000.0
                        c._report_quietly(decision, c._report(False, None, f"{type(exc).__name__}: {exc}", ms))
                        raise
                    ms = (time.perf_counter() - start) * 1000.0
                    c._report_quietly(decision, c._report(True, value, None, ms))
                    return value

                if client is not None:
                    return await run(client, isinstance(client, AsyncClient))
                shared = _default_async_embedded()
                if shared is not None:
                    return await run(shared, True)
                async with AsyncClient(config=get_config(), session_id=default_client().session_id) as temp:
                    return await run(temp, True)

            return async_wrapper  # type: ignore[return-value]

        if isinstance(client, AsyncClient):
            raise TypeError(f"`{fn.__name__}` is not async: give @enforce_policy a tame.Client, not an AsyncClient")

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tool_args = call_arguments(fn, args, kwargs)
            c = client if isinstance(client, Client) else default_client()
            decision = c.enforce(name, tool_args, meta, raise_on_deny, raise_on_approve)
            if not decision.is_allowed:
                return None
            return run_reported(c, decision, lambda: fn(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


def with_approval(
    func: Optional[F] = None,
    *,
    tool_name: Optional[str] = None,
    approval_message: Optional[str] = None,
    metadata: Optional[Mapping[str, Any]] = None,
    client: Optional[Client] = None,
    approver: Optional[Callable[[EnforcementDecision], bool]] = None,
    timeout: Optional[float] = None,
) -> Any:
    """Require a human's approval before the decorated function runs.

    The call is first enforced (with ``metadata.requires_approval = true``
    and the ``approval_message``): a deny raises ``PolicyViolationException``.
    Then approval must be given, whatever the policy said:

    - with ``timeout`` and a policy ``approve`` decision carrying an
      ``approval_id``, waits that long for a human (``wait_for_approval``);
    - with ``approver``, calls ``approver(decision)``: truthy runs the
      function, falsy raises ``PolicyViolationException``;
    - otherwise raises ``ApprovalRequiredException`` (``e.decision``).
    Bypass mode runs the function directly.
    """
    if approval_message is not None and not isinstance(approval_message, str):
        raise TypeError("approval_message must be a string")
    if tool_name is not None and (not isinstance(tool_name, str) or not tool_name):
        raise TypeError("tool_name must be a non-empty string")
    if approver is not None and not callable(approver):
        raise TypeError("approver must be callable")
    if client is not None and not isinstance(client, Client):
        raise TypeError(f"client must be a tame.Client, got {type(client).__name__}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0):
        raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
    meta = require_mapping(metadata, "metadata")
    meta.setdefault("requires_approval", True)
    if approval_message is not None:
        meta.setdefault("approval_message", approval_message)

    def decorate(fn: F) -> F:
        name = tool_name or fn.__name__

        def decide(c: Client, tool_args: Dict[str, Any]) -> EnforcementDecision:
            decision = c.enforce(name, tool_args, meta, raise_on_deny=True, raise_on_approve=False)
            if c.bypass_mode:
                return decision
            if decision.requires_approval and timeout is not None and decision.approval_id:
                return c.wait_for_approval(decision, timeout=timeout)
            pending = decision
            if decision.is_allowed:
                pending = replace(
                    decision,
                    action=ActionType.APPROVE,
                    reason=approval_message or f"`{name}` requires approval (@with_approval)",
                )
            if approver is not None:
                if approver(pending):
                    return replace(pending, action=ActionType.ALLOW, reason="approved by approver")
                raise PolicyViolationException(
                    replace(pending, action=ActionType.DENY, reason="rejected by approver")
                )
            raise ApprovalRequiredException(pending)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                tool_args = call_arguments(fn, args, kwargs)
                c = client or default_client()
                loop = asyncio.get_running_loop()
                decision = decide(c, tool_args) if c.is_embedded and timeout is None else await loop.run_in_executor(None, decide, c, tool_args)
                start = time.perf_counter()
                try:
                    value = await fn(*args, **kwargs)
                except Exception as exc:
                    ms = (time.perf_counter() - start) * 1000.0
                    c._report_quietly(decision, c._report(False, None, f"{type(exc).__name__}: {exc}", ms))
                    raise
                ms = (time.perf_counter() - start) * 1000.0
                c._report_quietly(decision, c._report(True, value, None, ms))
                return value

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tool_args = call_arguments(fn, args, kwargs)
            c = client or default_client()
            decision = decide(c, tool_args)
            return run_reported(c, decision, lambda: fn(*args, **kwargs))

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate


def log_action(
    func: Optional[F] = None,
    *,
    tool_name: Optional[str] = None,
    level: Union[str, int] = "INFO",
    metadata: Optional[Mapping[str, Any]] = None,
    logger_name: str = "tame",
) -> Any:
    """Log each call (name, arguments, metadata, duration, outcome) to the
    ``tame`` logger at ``level``; no policy is enforced. Errors are logged
    at ERROR and re-raised."""
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ValueError(f"unknown log level `{level}`: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    elif isinstance(level, int) and not isinstance(level, bool):
        numeric = level
    else:
        raise TypeError(f"level must be a level name or number, got {type(level).__name__}")
    meta = require_mapping(metadata, "metadata")
    log = logging.getLogger(logger_name)

    def decorate(fn: F) -> F:
        name = tool_name or fn.__name__

        def before(args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> float:
            log.log(numeric, "tool call %s args=%s metadata=%s", name, call_arguments(fn, args, kwargs), meta)
            return time.perf_counter()

        def after(start: float, value: Any) -> None:
            ms = (time.perf_counter() - start) * 1000.0
            log.log(numeric, "tool call %s succeeded in %.3f ms: %s", name, ms, to_jsonable(value))

        def failed(start: float, exc: BaseException) -> None:
            ms = (time.perf_counter() - start) * 1000.0
            log.error("tool call %s failed after %.3f ms: %s: %s", name, ms, type(exc).__name__, exc)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                start = before(args, kwargs)
                try:
                    value = await fn(*args, **kwargs)
                except Exception as exc:
                    failed(start, exc)
                    raise
                after(start, value)
                return value

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = before(args, kwargs)
            try:
                value = fn(*args, **kwargs)
            except Exception as exc:
                failed(start, exc)
                raise
            after(start, value)
            return value

        return wrapper  # type: ignore[return-value]

    if func is not None:
        return decorate(func)
    return decorate
