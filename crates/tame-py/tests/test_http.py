"""The HTTP client against a scripted transport: request shapes, headers,
response parsing and error mapping (no server needed)."""

from __future__ import annotations

import json
from datetime import timezone

import httpx
import pytest

import tame


def enforce_answer(decision: str = "allow", **extra: object) -> dict:
    body = {
        "session_id": "s-1",
        "decision": decision,
        "rule_name": "r",
        "reason": "because",
        "policy_version": "v1",
        "log_id": "42",
        "timestamp": "2026-11-21T06:00:00.1234567Z",
    }
    body.update(extra)
    return body


def scripted(handler) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


def test_enforce_request_and_response() -> None:
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["method"], seen["path"] = request.method, request.url.path
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers.get("authorization")
        seen["key"] = request.headers.get("x-api-key")
        return httpx.Response(200, json=enforce_answer())

    c = tame.Client(api_url="http://tame.test/", api_key="k", session_id="s-1", agent_id="a", transport=scripted(handler))
    d = c.enforce("search_web", {"query": "python tutorials"}, metadata={"m": 1})
    assert (seen["method"], seen["path"]) == ("POST", "/api/v1/enforce")
    assert seen["body"] == {
        "tool_name": "search_web",
        "tool_args": {"query": "python tutorials"},
        "session_id": "s-1",
        "agent_id": "a",
        "user_id": None,
        "metadata": {"m": 1},
    }
    assert seen["auth"] == "Bearer k" and seen["key"] == "k"
    assert d.is_allowed and d.log_id == "42" and d.policy_version == "v1"
    assert d.timestamp.tzinfo == timezone.utc and d.timestamp.microsecond == 123456
    assert d.to_dict()["decision"] == "allow"


def test_update_result_and_session_logs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/enforce/s-1/result":
            assert request.url.params["log_id"] == "42"
            assert json.loads(request.content) == {"status": "success", "result": {"n": 1}}
            return httpx.Response(200, json={"status": "updated", "log_id": "42"})
        if request.url.path == "/api/v1/sessions/s-1":
            return httpx.Response(200, json=[{"id": "42", "tool_name": "x"}])
        return httpx.Response(404, json={"detail": "no"})

    c = tame.Client(api_url="http://tame.test", session_id="s-1", transport=scripted(handler))
    assert c.update_result("s-1", "42", {"status": "success", "result": {"n": 1}}) is True
    assert c.get_session_logs() == [{"id": "42", "tool_name": "x"}]


@pytest.mark.parametrize(
    ("status", "exc", "text"),
    [
        (401, tame.AuthenticationException, "invalid API key"),
        (403, tame.AuthenticationException, "admin key"),
        (422, tame.TameSDKException, "tool_args: expected an object"),
        (500, tame.TameSDKException, "internal error"),
    ],
)
def test_http_errors_map_to_exceptions(status: int, exc: type, text: str) -> None:
    details = {401: "invalid API key", 403: "this route needs an admin key", 422: "tool_args: expected an object", 500: "internal error"}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"detail": details[status]})

    c = tame.Client(api_url="http://tame.test", transport=scripted(handler))
    with pytest.raises(exc, match=text) as err:
        c.enforce("x", {})
    assert err.value.status_code == status
    assert err.value.details["detail"] == details[status]


def test_non_json_and_unknown_decision() -> None:
    def html(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>proxy</html>")

    with pytest.raises(tame.TameSDKException, match="non-JSON"):
        tame.Client(api_url="http://tame.test", transport=scripted(html)).enforce("x", {})

    def odd(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=enforce_answer("maybe"))

    with pytest.raises(tame.TameSDKException, match="unknown decision `maybe`"):
        tame.Client(api_url="http://tame.test", transport=scripted(odd)).enforce("x", {})

    def plain_error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="Bad Gateway")

    with pytest.raises(tame.TameSDKException, match="502: Bad Gateway"):
        tame.Client(api_url="http://tame.test", transport=scripted(plain_error)).enforce("x", {})


def test_connection_refused_is_a_connection_exception() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = tame.Client(api_url=f"http://127.0.0.1:{port}", timeout=2)
    with pytest.raises(tame.ConnectionException, match="failed to connect") as err:
        c.enforce("read_file", {"path": "/tmp"})
    assert isinstance(err.value, tame.TameSDKException)


def test_timeout_is_a_connection_exception() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with pytest.raises(tame.ConnectionException, match="timed out"):
        tame.Client(api_url="http://tame.test", transport=scripted(slow)).get_policy_info()


def test_wait_for_approval_over_http_releases_the_call() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append((request.method, request.url.path, dict(request.url.params)))
        if request.url.path == "/api/v1/enforce":
            body = json.loads(request.content)
            if body.get("approval_id") == "ap-1":
                return httpx.Response(200, json=enforce_answer("allow", reason="approved by alice", log_id="43"))
            return httpx.Response(200, json=enforce_answer("approve", approval_id="ap-1"))
        if request.url.path == "/api/v1/approvals/ap-1/wait":
            approval = {"approval_id": "ap-1", "state": "approved", "decision_reason": "ok"}
            return httpx.Response(200, json={"approval": approval, "timed_out": False, "state": "approved"})
        return httpx.Response(404, json={"detail": "no route"})

    c = tame.Client(api_url="http://tame.test", transport=scripted(handler))
    d = c.enforce("delete_file", {"path": "/x"}, raise_on_approve=False)
    assert d.approval_id == "ap-1"
    released = c.wait_for_approval(d, timeout=5)
    assert released.is_allowed and released.log_id == "43"
    wait_call = calls[1]
    assert wait_call[1] == "/api/v1/approvals/ap-1/wait" and wait_call[2]["timeout"] == "5"


def test_wait_for_approval_falls_back_to_polling() -> None:
    state = {"polls": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/wait"):
            return httpx.Response(404)
        state["polls"] += 1
        answer = "pending" if state["polls"] < 3 else "rejected"
        return httpx.Response(200, json={"approval_id": "ap-2", "state": answer, "decision_reason": "nope"})

    c = tame.Client(api_url="http://tame.test", transport=scripted(handler))
    with pytest.raises(tame.PolicyViolationException, match="rejected: nope"):
        c.wait_for_approval("ap-2", timeout=5, poll_interval=0.01)
    assert state["polls"] == 3


async def test_async_client_over_http() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/policy/current":
            return httpx.Response(200, json={"version": "v9", "rules_count": 3, "rules": []})
        return httpx.Response(200, json=enforce_answer("deny"))

    async with tame.AsyncClient(api_url="http://tame.test", transport=scripted(handler)) as c:
        assert (await c.get_policy_info()).version == "v9"
        with pytest.raises(tame.PolicyViolationException):
            await c.enforce("x", {})
        d = await c.enforce("x", {}, raise_on_deny=False)
        assert d.is_denied
