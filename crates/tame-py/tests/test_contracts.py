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
    assert not contracts.validate_tool_request("unknown_tool", ["public"]).allowed
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
    assert blocked.action == "block" and blocked.payload is None


def test_response_interception(contracts: tame.ContractEngine) -> None:
    raw_response = {"status": "sent", "message_id": "msg-12345", "internal_trace_id": "x-trace-9999"}
    filtered = tame.intercept_tool_response("send_email", raw_response)
    assert filtered.safe_response == {"status": "sent", "message_id": "msg-12345"}
    assert filtered.stripped_fields == ["internal_trace_id"]
    # unlisted tools see nothing: deny by default
    assert tame.intercept_tool_response("nope", raw_response).safe_response == {}


def test_contract_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("tool_contracts:\n  send_email:\n    allowed_request_tag: [x]\n")
    with pytest.raises(ValueError, match="unknown field `allowed_request_tag`"):
        tame.ContractEngine.from_file(bad)
    worse = tmp_path / "worse.yaml"
    worse.write_text("tool_contracts:\n  send_email:\n    allowed_request_tags: personal\n")
    with pytest.raises(ValueError, match="allowed_request_tags: expected a list"):
        tame.ContractEngine.from_file(worse)
    with pytest.raises(ValueError, match="tool_contracts"):
        (tmp_path / "empty.yaml").write_text("rules: []\n")
        tame.ContractEngine.from_file(tmp_path / "empty.yaml")
    with pytest.raises(TypeError, match="data_tags"):
        tame.ContractEngine({"t": {}}).validate_tool_request("t", data_tags=[1])  # type: ignore[list-item]
