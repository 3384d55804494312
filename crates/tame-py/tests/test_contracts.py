"""Seed 004: tool contracts (allowed request tags, allowed response fields)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tame

CONTRACTS = """
tool_contracts:
  send_email:
    allowed_request_tags:
      - personal.pii.email
      - personal.pii.name
    allowed_response_fields:
      - status
      - message_id

  query_database:
    allowed_request_tags:
      - personal.financial
    allowed_response_fields:
      - rows
      - row_count

  web_search:
    allowed_request_tags:
      - public
    allowed_response_fields:
      - results
      - total_count
"""


@pytest.fixture
def contracts(tmp_path: Path) -> tame.ContractEngine:
    path = tmp_path / "contracts.yaml"
    path.write_text(CONTRACTS)
    return tame.load_contracts(path)


def test_request_validation(contracts: tame.ContractEngine) -> None:
    r1 = tame.validate_tool_request("send_email", data_tags=["personal.pii.email"])
    assert r1.allowed is True
    r2 = tame.validate_tool_request("send_email", data_tags=["personal.financial"])
    assert r2.allowed is False
    assert r2.reason == "Tag 'personal.financial' not in allowed_request_tags for send_email"
    assert contracts.validate_tool_request("query_database", ["personal.financial.card"]).allowed
    # tools without a contract are not restricted by tags (the policy still applies)
    unknown = contracts.validate_tool_request("unknown_tool", ["personal.financial"])
    assert unknown.allowed and "No contract" in unknown.reason
    assert not contracts.validate_tool_request("send_email", ["personal"]).allowed  # the parent is broader
    assert contracts.validate_tool_request("web_search", []).allowed


def test_request_interception(contracts: tame.ContractEngine) -> None:
    intercepted = tame.intercept_tool_request(
        tool_name="send_email",
        payload={"to": "alice@example.com", "subject": "Invoice", "body": "..."},
        data_tags=["personal.pii.email"],
    )
    assert intercepted.action == "allow"
    assert intercepted.payload == {"to": "alice@example.com", "subject": "Invoice", "body": "..."}
    blocked = tame.intercept_tool_request("web_search", {"q": "salary"}, data_tags=["personal.financial"])
    assert blocked.action == "block" and not blocked.allowed
    assert blocked.reason == "Tag 'personal.financial' not in allowed_request_tags for web_search"
    secret = tame.intercept_tool_request(
        "send_email", {"to": "a@example.com", "body": "key AKIAIOSFODNN7EXAMPLE"}, data_tags=["personal.pii.email"]
    )
    assert secret.action == "block"
    assert any(f["category"] == "secret" for f in secret.findings)
    assert "AKIAIOSFODNN7EXAMPLE" not in str(secret.payload)  # redacted: safe to log
    assert "personal.pii.email" in intercepted.detected_tags


def test_response_interception(contracts: tame.ContractEngine) -> None:
    raw_response = {"status": "sent", "message_id": "msg-12345", "internal_trace_id": "x-trace-9999"}
    filtered = tame.intercept_tool_response("send_email", raw_response)
    assert filtered.safe_response == {"status": "sent", "message_id": "msg-12345"}
    assert filtered.stripped_fields == ["internal_trace_id"]
    # a tool without a contract passes its response unchanged
    assert tame.intercept_tool_response("nope", raw_response).safe_response == raw_response
    withheld = tame.intercept_tool_response("send_email", ["not", "an", "object"])
    assert withheld.safe_response is None and withheld.stripped_fields == ["$"]


def test_contract_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tool_contracts:\n  send_email:\n    allowed_request_tag: [x]\n")
    with pytest.raises(ValueError, match="unknown field `allowed_request_tag`"):
        tame.ContractEngine.from_file(bad)
    worse = tmp_path / "worse.yaml"
    worse.write_text("tool_contracts:\n  send_email:\n    allowed_request_tags: personal\n")
    with pytest.raises(ValueError, match="send_email.*expected a sequence"):
        tame.ContractEngine.from_file(worse)
    with pytest.raises(FileNotFoundError, match="contracts file not found"):
        tame.ContractEngine.from_file(tmp_path / "missing.yaml")
    with pytest.raises(TypeError, match="data_tags"):
        tame.ContractEngine.from_yaml(CONTRACTS).validate_tool_request("t", data_tags=[1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"payload\.x: expected JSON data"):
        tame.ContractEngine.from_yaml(CONTRACTS).intercept_tool_request("t", {"x": object()})


def test_agent_binding() -> None:
    c = tame.ContractEngine.from_yaml(
        CONTRACTS + "agents:\n  support_bot:\n    allowed_tools: [\"send_email\", \"search_*\"]\n"
    )
    assert c.validate_agent("support_bot", "search_docs").allowed
    assert not c.validate_agent("support_bot", "query_database").allowed
    assert not c.validate_agent(None, "send_email").allowed


def test_scan_payload() -> None:
    findings = tame.scan_payload({"body": {"to": ["ops@example.com"], "key": "AKIAIOSFODNN7EXAMPLE"}})
    kinds = {f["kind"] for f in findings}
    assert "aws_access_key_id" in kinds
    assert any(f["path"] == "$.body.key" for f in findings)
