"""``Client`` and ``AsyncClient``: enforce tool calls against a Tame server
(over httpx) or against an embedded ``Engine``, with the same API."""

from __future__ import annotations

import asyncio
import inspect
import math
import logging
import os
import threading
import time
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Tuple

from ._backend import ApiError, AsyncHttpBackend, EmbeddedBackend, HttpBackend, embedded_backend_for
from ._json import require_mapping, to_jsonable
from .config import TameConfig, get_config
from .exceptions import (
    ApprovalRequiredException,
    ApprovalTimeoutException,
    AuthenticationException,
    PolicyViolationException,
    TameSDKException,
)
from .models import ActionType, EnforcementDecision, PolicyInfo, ToolResult

__all__ = ["Client", "AsyncClient", "enforce", "execute_with_enforcement", "engine_for_file"]

logger = logging.getLogger("tame")

BYPASS_REASON = "bypass mode: policy not enforced"

_engines_lock = threading.Lock()
_engines: Dict[str, Tuple[float, Any]] = {}


def engine_for_file(path: str) -> Any:
    """The embedded engine of a policy file, shared by every client that
    names the same file (so they share session facts); reloaded when the
    file changes."""
    from ._native import Engine

    full = os.path.abspath(os.path.expanduser(path))
    try:
        mtime = os.stat(full).st_mtime
    except OSError:
        mtime = -1.0
    with _engines_lock:
        found = _engines.get(full)
        if found is not None and found[0] == mtime:
            return found[1]
        engine = Engine.from_file(full)
        _engines[full] = (mtime, engine)
        return engine


def _api_failure(exc: ApiError, what: str, auth_on_403: bool = True) -> TameSDKException:
    details = {"status_code": exc.status, "detail": exc.detail}
    if exc.status == 401 or (exc.status == 403 and auth_on_403):
        return AuthenticationException(
            f"authentication failed for {what}: {exc.detail} (check the API key)", details
        )
    return TameSDKException(f"{what} failed: HTTP {exc.status}: {exc.detail}", details)


def _check_str(value: Any, name: str, allow_none: bool = True) -> Optional[str]:
    if value is None and allow_none:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, got {type(value).__name__}")
    return value


def _check_tool_name(tool_name: Any) -> str:
    if not isinstance(tool_name, str):
        raise TypeError(f"tool_name must be a string, got {type(tool_name).__name__}")
    if not tool_name.strip():
        raise ValueError("tool_name must not be empty")
    return tool_name


class _ClientBase:
    """Settings and request/response shaping shared by both clients."""

    def __init__(
        self,
        api_url: Optional[str] = None,
        api_key: Optional[str] = None,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        user_id: Optional[str] = None,
        timeout: Optional[float] = None,
        *,
        bypass_mode: Optional[bool] = None,
        raise_on_deny: Optional[bool] = None,
        raise_on_approve: Optional[bool] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        engine: Any = None,
        policy_file: Optional[str] = None,
        config: Optional[TameConfig] = None,
    ) -> None:
        for name, value in (
            ("api_url", api_url),
            ("api_key", api_key),
            ("session_id", session_id),
            ("agent_id", agent_id),
            ("user_id", user_id),
            ("policy_file", policy_file),
        ):
            _check_str(value, name)
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise TypeError(f"timeout must be a number of seconds, got {type(timeout).__name__}")
            if not timeout > 0:
                raise ValueError(f"timeout must be positive, got {timeout}")
        for name, flag in (
            ("bypass_mode", bypass_mode),
            ("raise_on_deny", raise_on_deny),
            ("raise_on_approve", raise_on_approve),
        ):
            if flag is not None and not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool, got {type(flag).__name__}")
        if config is not None and not isinstance(config, TameConfig):
            raise TypeError(f"config must be a TameConfig, got {type(config).__name__}")
        cfg = (config or get_config()).merged(
            api_url=api_url,
            api_key=api_key,
            session_id=session_id,
            agent_id=agent_id,
            user_id=user_id,
            timeout=None if timeout is None else float(timeout),
            bypass_mode=bypass_mode,
            raise_on_deny=raise_on_deny,
            raise_on_approve=raise_on_approve,
            policy_file=policy_file,
        )
        self.config = cfg
        self.api_url = cfg.api_url
        self.api_key = cfg.api_key
        self.session_id: str = cfg.session_id or str(uuid.uuid4())
        self.agent_id = cfg.agent_id
        self.user_id = cfg.user_id
        self.timeout = cfg.timeout
        self.bypass_mode = cfg.bypass_mode
        self.raise_on_deny = cfg.raise_on_deny
        self.raise_on_approve = cfg.raise_on_approve
        self.metadata: Dict[str, Any] = require_mapping(metadata, "metadata")
        if engine is None and policy_file is None and api_url is None and cfg.policy_file:
            policy_file = cfg.policy_file
        if engine is None and policy_file is not None:
            engine = engine_for_file(policy_file)
        if engine is not None and not callable(getattr(engine, "evaluate", None)):
            raise TypeError(f"engine must be a tame.Engine, got {type(engine).__name__}")
        self.engine = engine

    @property
    def is_embedded(self) -> bool:
        """Whether calls are decided in-process by an ``Engine``."""
        return self.engine is not None

    # -- request shaping -------------------------------------------------

    def _enforce_body(
        self,
        tool_name: Any,
        tool_args: Any,
        metadata: Any,
        session_id: Any,
        agent_id: Any,
        user_id: Any,
    ) -> Dict[str, Any]:
        tool_name = _check_tool_name(tool_name)
        args = require_mapping(tool_args, "tool_args")
        meta = dict(self.metadata)
        meta.update(require_mapping(metadata, "metadata"))
        return {
            "tool_name": tool_name,
            "tool_args": args,
            "session_id": _check_str(session_id, "session_id") or self.session_id,
            "agent_id": _check_str(agent_id, "agent_id") or self.agent_id,
            "user_id": _check_str(user_id, "user_id") or self.user_id,
            "metadata": meta,
        }

    def _bypass(self, body: Mapping[str, Any]) -> EnforcementDecision:
        logger.debug("bypass mode: %s not enforced", body["tool_name"])
        return EnforcementDecision(
            session_id=body["session_id"],
            action=ActionType.ALLOW,
            rule_name=None,
            reason=BYPASS_REASON,
            policy_version="bypass",
            log_id="",
            timestamp=datetime.now(timezone.utc),
            tool_name=body["tool_name"],
            tool_args=body["tool_args"],
            metadata=body["metadata"],
        )

    def _finish(
        self,
        data: Any,
        body: Mapping[str, Any],
        raise_on_deny: Optional[bool],
        raise_on_approve: Optional[bool],
    ) -> EnforcementDecision:
        decision = EnforcementDecision.from_response(
            data, body["tool_name"], body["tool_args"], body["metadata"]
        )
        deny = self.raise_on_deny if raise_on_deny is None else raise_on_deny
        approve = self.raise_on_approve if raise_on_approve is None else raise_on_approve
        if decision.is_denied and deny:
            raise PolicyViolationException(decision)
        if decision.requires_approval and approve:
            raise ApprovalRequiredException(decision)
        return decision

    @staticmethod
    def _result_path(session_id: Any, log_id: Any, result: Any) -> Tuple[str, Dict[str, Any], Any]:
        sid = _check_str(session_id, "session_id", allow_none=False)
        if log_id is None or isinstance(log_id, bool) or not isinstance(log_id, (str, int)):
            raise TypeError(f"log_id must be a string, got {type(log_id).__name__}")
        if isinstance(result, Mapping):
            payload: Any = {str(k): to_jsonable(v) for k, v in result.items()}
        else:
            payload = {"result": to_jsonable(result)}
        return f"/api/v1/enforce/{sid}/result", {"log_id": str(log_id)}, payload

    @staticmethod
    def _input_path(session_id: Any, text: Any) -> Tuple[str, Dict[str, Any]]:
        sid = str(_check_str(session_id, "session_id", allow_none=False))
        text = str(_check_str(text, "text", allow_none=False))
        if not sid.strip():
            raise ValueError("session_id must not be empty")
        if not text.strip():
            raise ValueError("text must not be empty")
        return f"/api/v1/sessions/{sid}/inputs", {"text": text}

    @staticmethod
    def _test_body(tool_name: Any, tool_args: Any, session_context: Any) -> Dict[str, Any]:
        return {
            "tool_name": _check_tool_name(tool_name),
            "tool_args": require_mapping(tool_args, "tool_args"),
            "session_context": require_mapping(session_context, "session_context"),
        }

    @staticmethod
    def _approval_id(decision: Any) -> str:
        if isinstance(decision, str):
            return decision
        approval_id = getattr(decision, "approval_id", None)
        if not approval_id:
            raise ValueError(
                "this decision has no approval_id: only an `approve` decision from a "
                "server or embedded engine can be waited on"
            )
        return str(approval_id)

    @staticmethod
    def _approval_state(answer: Any) -> Tuple[str, Dict[str, Any]]:
        """``(state, approval)`` from ``GET /approvals/{id}`` or its ``/wait``."""
        if not isinstance(answer, Mapping):
            raise TameSDKException(f"unexpected approval answer: {answer!r}")
        approval = answer.get("approval", answer)
        if not isinstance(approval, Mapping):
            raise TameSDKException(f"unexpected approval answer: {answer!r}")
        state = str(approval.get("state") or approval.get("status") or answer.get("state") or "pending").lower()
        return state, dict(approval)

    def _approval_decision(self, decision: Any, approval: Mapping[str, Any]) -> EnforcementDecision:
        """The decision an approval was opened for (rebuilt when only an id was given)."""
        if isinstance(decision, EnforcementDecision):
            return decision
        return EnforcementDecision(
            session_id=str(approval.get("session_id") or self.session_id),
            action=ActionType.APPROVE,
            rule_name=approval.get("rule_name"),
            reason=str(approval.get("reason") or ""),
            policy_version=str(approval.get("policy_version") or ""),
            log_id=str(approval.get("log_id") or ""),
            timestamp=datetime.now(timezone.utc),
            tool_name=str(approval.get("tool_name", "")),
            tool_args=dict(approval.get("tool_args") or {}),
            approval_id=str(approval.get("approval_id") or approval.get("id") or ""),
        )

    def _release_body(self, decision: EnforcementDecision) -> Dict[str, Any]:
        """The same call again, carrying its approval (how a call is released)."""
        return {
            "tool_name": decision.tool_name,
            "tool_args": decision.tool_args,
            "session_id": decision.session_id,
            "agent_id": self.agent_id,
            "user_id": self.user_id,
            "metadata": decision.metadata,
            "approval_id": decision.approval_id,
        }

    @staticmethod
    def _closed(decision: EnforcementDecision, state: str, approval: Mapping[str, Any], raise_on_deny: bool) -> EnforcementDecision:
        why = approval.get("decision_reason")
        out = replace(
            decision,
            action=ActionType.DENY,
            reason=f"approval {decision.approval_id} was {state}" + (f": {why}" if why else ""),
        )
        if raise_on_deny:
            raise PolicyViolationException(out)
        return out

    def _timeout_error(self, decision: Any, timeout: float) -> ApprovalTimeoutException:
        if not isinstance(decision, EnforcementDecision):
            decision = EnforcementDecision(
                session_id=self.session_id,
                action=ActionType.APPROVE,
                rule_name=None,
                reason="approval pending",
                policy_version="",
                log_id="",
                timestamp=datetime.now(timezone.utc),
                tool_name="",
                approval_id=str(decision),
            )
        return ApprovalTimeoutException(
            decision, f"no approval decision for `{decision.tool_name}` within {timeout:g}s"
        )

    @staticmethod
    def _tool_result(decision: EnforcementDecision, ok: bool, value: Any, error: Optional[str], ms: float) -> ToolResult:
        return ToolResult(success=ok, result=value, error=error, execution_time_ms=ms, decision=decision)

    @staticmethod
    def _report(ok: bool, value: Any, error: Optional[str], ms: float) -> Dict[str, Any]:
        report: Dict[str, Any] = {
            "status": "success" if ok else "error",
            "duration_ms": ms,
            "execution_time_ms": ms,
        }
        if ok:
            report["result"] = to_jsonable(value)
        else:
            report["error_message"] = error
        return report

    def __repr__(self) -> str:
        where = "embedded" if self.is_embedded else self.api_url
        return f"{type(self).__name__}({where!s}, session_id={self.session_id!r})"


class Client(_ClientBase):
    """Synchronous client. ``Client(engine=tame.Engine.from_file(...))`` (or
    ``policy_file=...``) decides in-process instead of calling a server.

    Use as a context manager to close the HTTP connection pool.
    """

    def __init__(self, *args: Any, transport: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine is not None:
            self._backend: Any = embedded_backend_for(self.engine)
        else:
            self._backend = HttpBackend(self.api_url, self.api_key, self.timeout, transport)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections (no-op for the embedded engine)."""
        self._backend.close()

    def _call(self, method: str, path: str, what: str, auth_on_403: bool = True, **kw: Any) -> Any:
        try:
            return self._backend.call(method, path, **kw)
        except ApiError as exc:
            raise _api_failure(exc, what, auth_on_403) from None

    def enforce(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        raise_on_deny: Optional[bool] = None,
        raise_on_approve: Optional[bool] = None,
        *,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        user_id: Optional[str] = None,
    ) -> EnforcementDecision:
        """Ask the policy about one call. Raises ``PolicyViolationException``
        on deny and ``ApprovalRequiredException`` on approve unless told not to."""
        body = self._enforce_body(tool_name, tool_args, metadata, session_id, agent_id, user_id)
        if self.bypass_mode:
            return self._bypass(body)
        data = self._call("POST", "/api/v1/enforce", "enforce", json=body)
        return self._finish(data, body, raise_on_deny, raise_on_approve)

    def update_result(self, session_id: str, log_id: str, result: Any) -> bool:
        """Record what the tool returned for the call ``log_id``."""
        if self.bypass_mode and not log_id:
            return True
        path, params, payload = self._result_path(session_id, log_id, result)
        data = self._call("POST", path, "update_result", auth_on_403=False, params=params, json=payload)
        return isinstance(data, Mapping) and data.get("status") == "updated"

    def record_input(self, session_id: str, text: str) -> Dict[str, Any]:
        """Record what the user asked in a session (the trusted principal's
        words, which ``from_input(x)`` and ``session.inputs`` read). Call it
        from the integration, not from the model's tools: a server needs an
        input (or admin) key, which an agent key is not. Returns
        ``{"recorded": "input", "session_id", "input_id"}``."""
        path, body = self._input_path(session_id, text)
        return dict(self._call("POST", path, "record_input", json=body))

    def get_session_logs(self, session_id: Optional[str] = None) -> List[Dict[str, Any]]:
        """The log entries of a session (this client's by default)."""
        sid = _check_str(session_id, "session_id") or self.session_id
        data = self._call("GET", f"/api/v1/sessions/{sid}", "get_session_logs")
        return list(data or [])

    def get_session_summary(self, session_id: Optional[str] = None) -> Dict[str, Any]:
        sid = _check_str(session_id, "session_id") or self.session_id
        return dict(self._call("GET", f"/api/v1/sessions/{sid}/summary", "get_session_summary"))

    def list_sessions(
        self, page: int = 1, page_size: int = 50, agent_id: Optional[str] = None, user_id: Optional[str] = None
    ) -> Dict[str, Any]:
        params = {k: v for k, v in {"page": page, "page_size": page_size, "agent_id": agent_id, "user_id": user_id}.items() if v is not None}
        return dict(self._call("GET", "/api/v1/sessions", "list_sessions", params=params))

    def get_policy_info(self) -> PolicyInfo:
        """The active policy: version, description, hash, rules_count, rules."""
        return PolicyInfo(self._call("GET", "/api/v1/policy/current", "get_policy_info"))

    def test_policy(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        session_context: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        """Dry-run a call: nothing is logged. ``result["decision"]["action"]``."""
        body = self._test_body(tool_name, tool_args, session_context)
        return dict(self._call("POST", "/api/v1/policy/test", "test_policy", json=body))

    def health(self) -> Dict[str, Any]:
        return dict(self._call("GET", "/health", "health"))

    def execute_tool(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        executor: Optional[Callable[[str, Dict[str, Any]], Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> ToolResult:
        """Enforce, run ``executor(tool_name, tool_args)`` when allowed, and
        report its result. Executor errors come back in ``ToolResult.error``."""
        if executor is not None and not callable(executor):
            raise TypeError(f"executor must be callable, got {type(executor).__name__}")
        decision = self.enforce(tool_name, tool_args, metadata)
        if not decision.is_allowed:
            return self._tool_result(decision, False, None, f"policy {decision.action.value}: {decision.reason}", 0.0)
        if executor is None:
            return self._tool_result(decision, True, None, None, 0.0)
        start = time.perf_counter()
        try:
            value = executor(decision.tool_name, decision.tool_args)
            ok, error = True, None
        except Exception as exc:  # the tool's failure is the result
            value, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        ms = (time.perf_counter() - start) * 1000.0
        self._report_quietly(decision, self._report(ok, value, error, ms))
        return self._tool_result(decision, ok, value, error, ms)

    def _report_quietly(self, decision: EnforcementDecision, report: Dict[str, Any]) -> None:
        if not decision.log_id:
            return
        try:
            self.update_result(decision.session_id, decision.log_id, report)
        except TameSDKException as exc:
            logger.warning("could not record the result of %s: %s", decision.tool_name, exc)

    # -- approvals -------------------------------------------------------

    def list_approvals(self, state: Optional[str] = "pending") -> List[Dict[str, Any]]:
        """Approvals in ``state`` (pending, approved, rejected, expired or all)."""
        params = {"state": state} if state else {}
        data = self._call("GET", "/api/v1/approvals", "list_approvals", params=params)
        if isinstance(data, Mapping):
            data = data.get("approvals", [])
        return list(data or [])

    def get_approval(self, approval_id: str) -> Dict[str, Any]:
        aid = self._approval_id(approval_id)
        return dict(self._call("GET", f"/api/v1/approvals/{aid}", "get_approval"))

    def approve(self, approval_id: Any, reason: Optional[str] = None, decided_by: Optional[str] = None) -> Dict[str, Any]:
        """Approve a pending call (``approval_id`` or its decision)."""
        aid = self._approval_id(approval_id)
        body = {"reason": reason, "by": decided_by or self.user_id}
        return dict(self._call("POST", f"/api/v1/approvals/{aid}/approve", "approve", json=body))

    def reject(self, approval_id: Any, reason: Optional[str] = None, decided_by: Optional[str] = None) -> Dict[str, Any]:
        """Reject a pending call, with a reason."""
        aid = self._approval_id(approval_id)
        body = {"reason": reason, "by": decided_by or self.user_id}
        return dict(self._call("POST", f"/api/v1/approvals/{aid}/reject", "reject", json=body))

    def wait_for_approval(
        self,
        decision: Any,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        raise_on_deny: bool = True,
    ) -> EnforcementDecision:
        """Block until a human approves or rejects an ``approve`` decision.

        When approved, the call is released: sent again with its
        ``approval_id``, and the returned decision is ``allow`` (with a new
        ``log_id`` to report the result on). A rejection or expiry raises
        ``PolicyViolationException`` (or returns a ``deny`` decision with
        ``raise_on_deny=False``); no answer within ``timeout`` seconds
        raises ``ApprovalTimeoutException``.
        """
        aid = self._approval_id(decision)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        deadline = time.monotonic() + float(timeout)
        long_poll = True
        while True:
            left = deadline - time.monotonic()
            if long_poll:
                wait = max(0.0, min(left, 30.0))
                try:
                    answer = self._backend.call(
                        "GET",
                        f"/api/v1/approvals/{aid}/wait",
                        params={"timeout": int(math.ceil(wait))},
                        timeout=wait + self.timeout,
                    )
                except ApiError as exc:
                    if exc.status not in (404, 405) or "approval" in exc.detail.lower():
                        raise _api_failure(exc, "wait_for_approval") from None
                    long_poll = False  # a server without the wait endpoint: poll
                    continue
            else:
                answer = self._call("GET", f"/api/v1/approvals/{aid}", "get_approval")
            state, approval = self._approval_state(answer)
            if state != "pending":
                original = self._approval_decision(decision, approval)
                if state != "approved":
                    return self._closed(original, state, approval, raise_on_deny)
                body = self._release_body(original)
                data = self._call("POST", "/api/v1/enforce", "enforce", json=body)
                return self._finish(data, body, raise_on_deny, False)
            if deadline - time.monotonic() <= 0:
                raise self._timeout_error(decision, float(timeout))
            if not long_poll:
                time.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))


class _AsyncEmbedded:
    """The embedded backend seen through ``await`` (waits run in a thread)."""

    def __init__(self, backend: EmbeddedBackend) -> None:
        self._backend = backend
        self.api_url = backend.api_url

    async def call(self, method: str, path: str, **kw: Any) -> Any:
        if path.endswith("/wait"):
            return await asyncio.get_running_loop().run_in_executor(
                None, lambda: self._backend.call(method, path, **kw)
            )
        return self._backend.call(method, path, **kw)

    async def aclose(self) -> None:
        return None


class AsyncClient(_ClientBase):
    """Asynchronous client with the same methods as ``Client`` (awaitable)."""

    def __init__(self, *args: Any, transport: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.engine is not None:
            self._backend: Any = _AsyncEmbedded(embedded_backend_for(self.engine))
        else:
            self._backend = AsyncHttpBackend(self.api_url, self.api_key, self.timeout, transport)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._backend.aclose()

    async def close(self) -> None:
        await self.aclose()

    async def _call(self, method: str, path: str, what: str, auth_on_403: bool = True, **kw: Any) -> Any:
        try:
            return await self._backend.call(method, path, **kw)
        except ApiError as exc:
            raise _api_failure(exc, what, auth_on_403) from None

    async def enforce(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        raise_on_deny: Optional[bool] = None,
        raise_on_approve: Optional[bool] = None,
        *,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        user_id: Optional[str] = None,
    ) -> EnforcementDecision:
        body = self._enforce_body(tool_name, tool_args, metadata, session_id, agent_id, user_id)
        if self.bypass_mode:
            return self._bypass(body)
        data = await self._call("POST", "/api/v1/enforce", "enforce", json=body)
        return self._finish(data, body, raise_on_deny, raise_on_approve)

    async def update_result(self, session_id: str, log_id: str, result: Any) -> bool:
        if self.bypass_mode and not log_id:
            return True
        path, params, payload = self._result_path(session_id, log_id, result)
        data = await self._call("POST", path, "update_result", auth_on_403=False, params=params, json=payload)
        return isinstance(data, Mapping) and data.get("status") == "updated"

    async def record_input(self, session_id: str, text: str) -> Dict[str, Any]:
        """Record what the user asked in a session: see ``Client.record_input``."""
        path, body = self._input_path(session_id, text)
        return dict(await self._call("POST", path, "record_input", json=body))

    async def get_session_logs(self, session_id: Optional[str] = None) -> List[Dict[str, Any]]:
        sid = _check_str(session_id, "session_id") or self.session_id
        return list(await self._call("GET", f"/api/v1/sessions/{sid}", "get_session_logs") or [])

    async def get_session_summary(self, session_id: Optional[str] = None) -> Dict[str, Any]:
        sid = _check_str(session_id, "session_id") or self.session_id
        return dict(await self._call("GET", f"/api/v1/sessions/{sid}/summary", "get_session_summary"))

    async def list_sessions(
        self, page: int = 1, page_size: int = 50, agent_id: Optional[str] = None, user_id: Optional[str] = None
    ) -> Dict[str, Any]:
        params = {k: v for k, v in {"page": page, "page_size": page_size, "agent_id": agent_id, "user_id": user_id}.items() if v is not None}
        return dict(await self._call("GET", "/api/v1/sessions", "list_sessions", params=params))

    async def get_policy_info(self) -> PolicyInfo:
        return PolicyInfo(await self._call("GET", "/api/v1/policy/current", "get_policy_info"))

    async def test_policy(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        session_context: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]:
        body = self._test_body(tool_name, tool_args, session_context)
        return dict(await self._call("POST", "/api/v1/policy/test", "test_policy", json=body))

    async def health(self) -> Dict[str, Any]:
        return dict(await self._call("GET", "/health", "health"))

    async def execute_tool(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        executor: Optional[Callable[[str, Dict[str, Any]], Any]] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> ToolResult:
        """Like ``Client.execute_tool``; ``executor`` may be sync or async."""
        if executor is not None and not callable(executor):
            raise TypeError(f"executor must be callable, got {type(executor).__name__}")
        decision = await self.enforce(tool_name, tool_args, metadata)
        if not decision.is_allowed:
            return self._tool_result(decision, False, None, f"policy {decision.action.value}: {decision.reason}", 0.0)
        if executor is None:
            return self._tool_result(decision, True, None, None, 0.0)
        start = time.perf_counter()
        try:
            value = executor(decision.tool_name, decision.tool_args)
            if inspect.isawaitable(value):
                value = await value
            ok, error = True, None
        except Exception as exc:
            value, ok, error = None, False, f"{type(exc).__name__}: {exc}"
        ms = (time.perf_counter() - start) * 1000.0
        await self._report_quietly(decision, self._report(ok, value, error, ms))
        return self._tool_result(decision, ok, value, error, ms)

    async def _report_quietly(self, decision: EnforcementDecision, report: Dict[str, Any]) -> None:
        if not decision.log_id:
            return
        try:
            await self.update_result(decision.session_id, decision.log_id, report)
        except TameSDKException as exc:
            logger.warning("could not record the result of %s: %s", decision.tool_name, exc)

    async def list_approvals(self, state: Optional[str] = "pending") -> List[Dict[str, Any]]:
        params = {"state": state} if state else {}
        data = await self._call("GET", "/api/v1/approvals", "list_approvals", params=params)
        if isinstance(data, Mapping):
            data = data.get("approvals", [])
        return list(data or [])

    async def get_approval(self, approval_id: str) -> Dict[str, Any]:
        aid = self._approval_id(approval_id)
        return dict(await self._call("GET", f"/api/v1/approvals/{aid}", "get_approval"))

    async def approve(self, approval_id: Any, reason: Optional[str] = None, decided_by: Optional[str] = None) -> Dict[str, Any]:
        aid = self._approval_id(approval_id)
        body = {"reason": reason, "by": decided_by or self.user_id}
        return dict(await self._call("POST", f"/api/v1/approvals/{aid}/approve", "approve", json=body))

    async def reject(self, approval_id: Any, reason: Optional[str] = None, decided_by: Optional[str] = None) -> Dict[str, Any]:
        aid = self._approval_id(approval_id)
        body = {"reason": reason, "by": decided_by or self.user_id}
        return dict(await self._call("POST", f"/api/v1/approvals/{aid}/reject", "reject", json=body))

    async def wait_for_approval(
        self,
        decision: Any,
        timeout: float = 300.0,
        poll_interval: float = 1.0,
        raise_on_deny: bool = True,
    ) -> EnforcementDecision:
        """Like ``Client.wait_for_approval``."""
        aid = self._approval_id(decision)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout < 0:
            raise ValueError(f"timeout must be a non-negative number of seconds, got {timeout!r}")
        deadline = time.monotonic() + float(timeout)
        long_poll = True
        while True:
            left = deadline - time.monotonic()
            if long_poll:
                wait = max(0.0, min(left, 30.0))
                try:
                    answer = await self._backend.call(
                        "GET",
                        f"/api/v1/approvals/{aid}/wait",
                        params={"timeout": int(math.ceil(wait))},
                        timeout=wait + self.timeout,
                    )
                except ApiError as exc:
                    if exc.status not in (404, 405) or "approval" in exc.detail.lower():
                        raise _api_failure(exc, "wait_for_approval") from None
                    long_poll = False
                    continue
            else:
                answer = await self._call("GET", f"/api/v1/approvals/{aid}", "get_approval")
            state, approval = self._approval_state(answer)
            if state != "pending":
                original = self._approval_decision(decision, approval)
                if state != "approved":
                    return self._closed(original, state, approval, raise_on_deny)
                body = self._release_body(original)
                data = await self._call("POST", "/api/v1/enforce", "enforce", json=body)
                return self._finish(data, body, raise_on_deny, False)
            if deadline - time.monotonic() <= 0:
                raise self._timeout_error(decision, float(timeout))
            if not long_poll:
                await asyncio.sleep(max(0.0, min(poll_interval, deadline - time.monotonic())))


def enforce(
    tool_name: str,
    tool_args: Optional[Mapping[str, Any]] = None,
    api_url: Optional[str] = None,
    session_id: Optional[str] = None,
    agent_id: Optional[str] = None,
    user_id: Optional[str] = None,
    metadata: Optional[Mapping[str, Any]] = None,
    raise_on_deny: Optional[bool] = None,
    raise_on_approve: Optional[bool] = None,
    **client_options: Any,
) -> EnforcementDecision:
    """One-off enforcement with a temporary client (``api_key=``,
    ``engine=``, ``policy_file=`` and the other client options are accepted)."""
    with Client(api_url=api_url, session_id=session_id, agent_id=agent_id, user_id=user_id, **client_options) as client:
        return client.enforce(tool_name, tool_args, metadata, raise_on_deny, raise_on_approve)


def execute_with_enforcement(
    tool_name: str,
    tool_args: Optional[Mapping[str, Any]],
    executor_func: Callable[[str, Dict[str, Any]], Any],
    session_id: Optional[str] = None,
    api_url: Optional[str] = None,
    metadata: Optional[Mapping[str, Any]] = None,
    **client_options: Any,
) -> Any:
    """Enforce, run ``executor_func(tool_name, tool_args)`` when allowed,
    report its result and return it. Denials and approvals raise; the
    executor's own exceptions are reported and re-raised."""
    if not callable(executor_func):
        raise TypeError(f"executor_func must be callable, got {type(executor_func).__name__}")
    with Client(api_url=api_url, session_id=session_id, **client_options) as client:
        decision = client.enforce(tool_name, tool_args, metadata, raise_on_deny=True, raise_on_approve=True)
        return run_reported(client, decision, lambda: executor_func(decision.tool_name, decision.tool_args))


def run_reported(client: Client, decision: EnforcementDecision, call: Callable[[], Any]) -> Any:
    """Run an allowed call, report success or failure, return or re-raise."""
    start = time.perf_counter()
    try:
        value = call()
    except Exception as exc:
        ms = (time.perf_counter() - start) * 1000.0
        client._report_quietly(decision, client._report(False, None, f"{type(exc).__name__}: {exc}", ms))
        raise
    ms = (time.perf_counter() - start) * 1000.0
    client._report_quietly(decision, client._report(True, value, None, ms))
    return value


async def run_reported_async(client: AsyncClient, decision: EnforcementDecision, call: Callable[[], Awaitable[Any]]) -> Any:
    """``run_reported`` for coroutines."""
    start = time.perf_counter()
    try:
        value = await call()
    except Exception as exc:
        ms = (time.perf_counter() - start) * 1000.0
        await client._report_quietly(decision, client._report(False, None, f"{type(exc).__name__}: {exc}", ms))
        raise
    ms = (time.perf_counter() - start) * 1000.0
    await client._report_quietly(decision, client._report(True, value, None, ms))
    return value
