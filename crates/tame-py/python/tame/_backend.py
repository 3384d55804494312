"""Transports behind ``Client``/``AsyncClient``: HTTP (httpx) to a Tame
server, or the embedded engine answering the same API in-process."""

from __future__ import annotations

import threading
import weakref
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import _native
from .exceptions import ConnectionException, TameSDKException

__all__ = ["ApiError", "EmbeddedBackend", "HttpBackend", "AsyncHttpBackend", "embedded_backend_for"]


class ApiError(Exception):
    """A non-2xx answer; ``detail`` is the server's ``detail`` field."""

    def __init__(self, status: int, detail: str, body: Any = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.body = body


def _headers(api_key: Optional[str]) -> Dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "tame-python"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
        headers["X-API-Key"] = api_key
    return headers


def _decode(response: Any) -> Any:
    """JSON body of an httpx response, or ApiError for a non-2xx status."""
    try:
        body = response.json() if response.content else None
    except ValueError:
        body = None
        if response.is_success:
            raise TameSDKException(
                f"Tame API returned a non-JSON body for {response.request.method} "
                f"{response.request.url.path} (HTTP {response.status_code})",
                {"status_code": response.status_code},
            ) from None
    if response.is_success:
        return body
    detail: Any = None
    if isinstance(body, Mapping):
        detail = body.get("detail") or body.get("message") or body.get("error")
    if detail is None:
        detail = response.text.strip() or response.reason_phrase
    raise ApiError(response.status_code, detail if isinstance(detail, str) else str(detail), body)


class _HttpTransport:
    """What the sync and async HTTP transports share: the httpx client set-up
    and the mapping of transport failures to ``ConnectionException``."""

    _client_class = "Client"

    def __init__(self, api_url: str, api_key: Optional[str], timeout: float, transport: Any = None) -> None:
        import httpx

        self._httpx = httpx
        self.api_url = api_url.rstrip("/")
        kwargs: Dict[str, Any] = {}
        if transport is not None:
            kwargs["transport"] = transport
        self._client = getattr(httpx, self._client_class)(
            base_url=self.api_url, headers=_headers(api_key), timeout=timeout, **kwargs
        )
        self.timeout = timeout

    def _failed(self, exc: Exception) -> ConnectionException:
        if isinstance(exc, self._httpx.TimeoutException):
            return ConnectionException(f"Tame API at {self.api_url} timed out: {exc}", {"api_url": self.api_url})
        return ConnectionException(
            f"failed to connect to Tame API at {self.api_url}: {exc}", {"api_url": self.api_url}
        )


class HttpBackend(_HttpTransport):
    """Synchronous HTTP transport over ``httpx.Client``."""

    _client_class = "Client"

    def call(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        try:
            response = self._client.request(
                method,
                path,
                params=params,
                json=json,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except self._httpx.HTTPError as exc:
            raise self._failed(exc) from exc
        return _decode(response)

    def close(self) -> None:
        self._client.close()


class AsyncHttpBackend(_HttpTransport):
    """Asynchronous HTTP transport over ``httpx.AsyncClient``."""

    _client_class = "AsyncClient"

    async def call(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        try:
            response = await self._client.request(
                method,
                path,
                params=params,
                json=json,
                timeout=timeout if timeout is not None else self.timeout,
            )
        except self._httpx.HTTPError as exc:
            raise self._failed(exc) from exc
        return _decode(response)

    async def aclose(self) -> None:
        await self._client.aclose()


class EmbeddedBackend:
    """Answers the Tame HTTP API in-process with an embedded ``Engine``.

    HTTP glue only: every call, result and approval step goes through the
    engine's enforcement path (``Engine.enforce``, ``record_result``,
    ``decide_approval``...), which keeps the sessions, the log (the newest
    ``log_capacity`` entries of the engine) and the approvals, with the
    server's rules. Thread-safe.
    """

    def __init__(self, engine: Any) -> None:
        # a weak reference: the registry below maps engines to backends
        # weakly, and clients keep their engine alive themselves
        try:
            self._engine_ref: Any = weakref.ref(engine)
        except TypeError:
            self._engine_ref = lambda: engine
        self.api_url = "embedded:"

    @property
    def engine(self) -> Any:
        engine = self._engine_ref()
        if engine is None:
            raise TameSDKException("the embedded engine of this client no longer exists")
        return engine

    # -- routing ---------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        timeout: Optional[float] = None,
    ) -> Any:
        parts = [p for p in path.split("/") if p]
        params = dict(params or {})
        if parts == ["health"]:
            return {"status": "healthy", "mode": "embedded"}
        if parts[:2] != ["api", "v1"]:
            raise ApiError(404, f"no route for {method} {path}")
        rest = parts[2:]
        route: Tuple[str, ...] = (method.upper(), *rest)
        try:
            if route == ("POST", "enforce"):
                return self._enforce(json)
            if len(rest) == 3 and rest[0] == "enforce" and rest[2] == "result" and method.upper() == "POST":
                return self._update_result(rest[1], params.get("log_id"), json)
            if len(rest) == 3 and rest[0] == "sessions" and rest[2] == "inputs" and method.upper() == "POST":
                return self._record_input(rest[1], json)
            if route == ("GET", "sessions"):
                return self._list_sessions(params)
            if len(rest) == 2 and rest[0] == "sessions" and method.upper() == "GET":
                return self._session_logs(rest[1])
            if len(rest) == 3 and rest[0] == "sessions" and rest[2] == "summary":
                return self._summary(rest[1])
            if route == ("GET", "policy", "current"):
                return self._policy_current()
            if route in (("GET", "policy", "test"), ("POST", "policy", "test")):
                return self._policy_test(json if json is not None else params)
            if route == ("GET", "approvals"):
                return self._list_approvals(params)
            if len(rest) == 2 and rest[0] == "approvals" and method.upper() == "GET":
                return self._approval(rest[1])
            if len(rest) == 3 and rest[0] == "approvals" and rest[2] == "wait":
                return self._wait_approval(rest[1], params.get("timeout"))
            if len(rest) == 3 and rest[0] == "approvals" and rest[2] in ("approve", "reject"):
                body = json if isinstance(json, Mapping) else {}
                return self.engine.decide_approval(
                    rest[1], rest[2] == "approve", body.get("by") or "admin", body.get("reason")
                )
        except _native.EnforceError as exc:
            raise ApiError(exc.status, str(exc)) from None
        raise ApiError(404, f"no route for {method} {path} in the embedded engine")

    def close(self) -> None:
        """Nothing to release; logs stay with the engine for other clients."""

    # -- enforce ---------------------------------------------------------

    def _enforce(self, body: Any) -> Dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError(422, "request body must be an object")
        return dict(self.engine.enforce(dict(body)))

    def _update_result(self, session_id: str, log_id: Any, body: Any) -> Dict[str, Any]:
        if log_id is None:
            raise ApiError(422, "query parameter `log_id` is required")
        result = dict(body) if isinstance(body, Mapping) else {"result": body}
        return dict(self.engine.record_result(session_id, str(log_id), result))

    # -- sessions --------------------------------------------------------

    def _record_input(self, session_id: str, body: Any) -> Dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError(422, "request body must be an object with `text`")
        extra = [k for k in body if k != "text"]
        if extra:
            raise ApiError(422, f"{extra[0]}: unknown field, expected `text`")
        try:
            return dict(self.engine.record_input(session_id, body.get("text")))
        except (TypeError, ValueError) as exc:
            raise ApiError(422, str(exc)) from None

    def _list_sessions(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        page = int(params.get("page") or 1)
        page_size = int(params.get("page_size") or 50)
        rows = [
            s
            for s in self.engine.session_summaries()
            if (params.get("agent_id") in (None, s["agent_id"])) and (params.get("user_id") in (None, s["user_id"]))
        ]
        start = (max(page, 1) - 1) * page_size
        return {
            "sessions": rows[start : start + page_size],
            "total_count": len(rows),
            "page": page,
            "page_size": page_size,
        }

    def _session_logs(self, session_id: str) -> List[Dict[str, Any]]:
        logs = self.engine.session_log(session_id)
        if logs is None:
            raise ApiError(404, f"session `{session_id}` not found")
        return list(logs)

    def _summary(self, session_id: str) -> Dict[str, Any]:
        summary = self.engine.session_summary(session_id)
        if summary is None:
            raise ApiError(404, f"session `{session_id}` not found")
        return dict(summary)

    # -- policy ----------------------------------------------------------

    def _policy_current(self) -> Dict[str, Any]:
        info = dict(self.engine.info())
        info.setdefault("rules_count", len(info.get("rules", [])))
        info.setdefault("active", True)
        return info

    def _policy_test(self, body: Any) -> Dict[str, Any]:
        if not isinstance(body, Mapping):
            raise ApiError(422, "request body must be an object")
        tool_name = body.get("tool_name")
        if not isinstance(tool_name, str) or not tool_name:
            raise ApiError(422, "`tool_name` must be a non-empty string")
        tool_args = body.get("tool_args") or {}
        metadata = body.get("metadata")
        if metadata is None:
            metadata = body.get("session_context") or {}
        call = dict(
            session_id=body.get("session_id"),
            agent_id=body.get("agent_id"),
            user_id=body.get("user_id"),
            metadata=metadata,
        )
        decision = self.engine.evaluate(tool_name, tool_args, record=False, **call)
        return {
            "decision": {
                "action": decision.action,
                "rule_name": decision.rule_name,
                "reason": decision.reason,
                "policy_version": decision.policy_version,
            },
            "explanation": self.engine.explain(tool_name, tool_args, **call),
            "logged": False,
        }

    # -- approvals -------------------------------------------------------

    def _list_approvals(self, params: Mapping[str, Any]) -> Dict[str, Any]:
        try:
            rows = list(self.engine.approvals(params.get("state", "pending")))
        except ValueError as exc:
            raise ApiError(422, str(exc)) from None
        return {"approvals": rows, "total_count": len(rows)}

    def _approval(self, approval_id: str) -> Dict[str, Any]:
        found = self.engine.approval(approval_id)
        if found is None:
            raise ApiError(404, f"approval `{approval_id}` not found")
        return dict(found)

    def _wait_approval(self, approval_id: str, timeout: Any) -> Dict[str, Any]:
        try:
            seconds = float(timeout) if timeout is not None else 30.0
        except (TypeError, ValueError):
            raise ApiError(422, f"`timeout` must be a number of seconds, got `{timeout}`") from None
        found = self.engine.wait_approval(approval_id, max(seconds, 0.0))
        if found is None:
            raise ApiError(404, f"approval `{approval_id}` not found")
        return {"approval": dict(found), "timed_out": found["state"] == "pending", "state": found["state"]}


_backends_lock = threading.Lock()
_weak_backends: "weakref.WeakKeyDictionary[Any, EmbeddedBackend]" = weakref.WeakKeyDictionary()
_strong_backends: "Dict[int, Tuple[Any, EmbeddedBackend]]" = {}


def embedded_backend_for(engine: Any) -> EmbeddedBackend:
    """The one in-memory backend of ``engine``: every client built on the
    same engine sees the same logs and approvals (kept as long as the
    engine lives)."""
    with _backends_lock:
        try:
            found = _weak_backends.get(engine)
            if found is None:
                found = EmbeddedBackend(engine)
                _weak_backends[engine] = found
            return found
        except TypeError:
            # objects without weak references (test doubles) are kept alive
            pair = _strong_backends.get(id(engine))
            if pair is not None and pair[0] is engine:
                return pair[1]
            backend = EmbeddedBackend(engine)
            _strong_backends[id(engine)] = (engine, backend)
            return backend
