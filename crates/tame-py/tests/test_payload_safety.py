"""Payload safety of a policy through the embedded engine: argument schemas,
agent binding, data tags and contracts declared in policies.yml."""

from __future__ import annotations

from pathlib import Path

from tame._native import Engine

POLICY = Path(__file__).resolve().parents[3] / "policies" / "payload_safety.yml"


def engine() -> Engine:
    return Engine.from_file(str(POLICY))


def test_schema_failure_names_the_nested_path() -> None:
    d = engine().evaluate(
        "create_ticket",
        {"title": "Printer on fire", "customer": {"email": "a@example.com", "tier": 9}},
        agent_id="support_bot",
    )
    assert d.action == "deny"
    assert d.rule_name == "tool_schema"
    assert "$.customer.tier" in d.reason


def test_agent_binding_and_tags() -> None:
    e = engine()
    d = e.evaluate("create_ticket", {"title": "Printer on fire", "customer": {"email": "a@example.com"}}, agent_id="billing_bot")
    assert (d.action, d.rule_name) == ("deny", "agent_binding")
    d = e.evaluate(
        "send_email",
        {"to": "a@example.com", "subject": "Hi"},
        agent_id="support_bot",
        metadata={"data_tags": ["personal.financial"]},
    )
    assert (d.action, d.rule_name) == ("deny", "tool_contract")
    assert e.validate_tool_request("send_email", ["personal.pii.email"])["allowed"] is True
    v = e.validate_tool_request("send_email", ["personal.financial"])
    assert v["allowed"] is False
    assert v["reason"] == "Tag 'personal.financial' not in allowed_request_tags for send_email"


def test_filter_response_and_intercept_request() -> None:
    e = engine()
    f = e.filter_response("send_email", {"status": "sent", "message_id": "m-1", "internal_trace_id": "x"})
    assert f["safe_response"] == {"status": "sent", "message_id": "m-1"}
    assert f["stripped_fields"] == ["internal_trace_id"]
    i = e.intercept_tool_request(
        "send_email", {"to": "alice@example.com", "body": "AKIAIOSFODNN7EXAMPLE"}, ["personal.pii.email"], "support_bot"
    )
    assert i["action"] == "block"
    assert "AKIAIOSFODNN7EXAMPLE" not in str(i["payload"])
    ok = e.intercept_tool_request("send_email", {"to": "alice@example.com"}, ["personal.pii.email"], "support_bot")
    assert ok["action"] == "allow"
