"""The embedded engine: decisions, session facts, explanations, host
functions, policy errors and bad arguments."""

from __future__ import annotations

import threading

import pytest

import tame

RATE_LIMIT = """
version: "t1"
default: deny
rules:
  - name: limit_email
    action: deny
    tools: ["send_email"]
    condition: 'session.count("send_email") >= 2'
    reason: "too many e-mails to {args.to}"
  - name: allow_email
    action: allow
    tools: ["send_email"]
"""


def test_example_policy_decisions(engine: tame.Engine) -> None:
    d = engine.evaluate("read_file", {"path": "/etc/hosts"})
    assert (d.action, d.rule_name) == ("deny", "block_system_files")
    assert d.reason == "System paths are off limits (/etc/hosts)"
    assert d.is_denied and not d.is_allowed
    d = engine.evaluate("read_file", {"path": "/tmp/x"})
    assert (d.action, d.rule_name) == ("allow", "allow_reads")
    d = engine.evaluate("delete_file", {"path": "/tmp/x"})
    assert d.action == "approve" and d.requires_approval
    d = engine.evaluate("launch_rocket", {})
    assert d.action == "deny" and d.rule_name is None
    assert d.policy_version == "2026-11"
    assert d.to_dict() == {
        "decision": "deny",
        "rule_name": None,
        "reason": d.reason,
        "policy_version": "2026-11",
    }


def test_numbers_compare_whichever_way_they_were_written() -> None:
    e = tame.Engine.from_str(
        'version: "n"\nrules:\n  - name: big\n    action: deny\n    condition: "args.amount > 1000"\n'
        "  - name: ok\n    action: allow\n"
    )
    for amount in (1001, 1000.5, 10**15):
        assert e.evaluate("pay", {"amount": amount}).action == "deny"
    for amount in (1000, 999.99, -5):
        assert e.evaluate("pay", {"amount": amount}).action == "allow"
    # a string where a number is expected makes the deny rule match (errors never widen access)
    d = e.evaluate("pay", {"amount": "lots"})
    assert d.action == "deny" and d.rule_name == "big"


def test_session_facts_are_kept_per_session() -> None:
    e = tame.Engine.from_str(RATE_LIMIT, "rate.yml")
    actions = [e.evaluate("send_email", {"to": "bob"}, session_id="a").action for _ in range(4)]
    assert actions == ["allow", "allow", "deny", "deny"]
    assert e.evaluate("send_email", {"to": "bob"}, session_id="b").action == "allow"
    # only allowed calls count, as in the server's store
    assert e.session_count("a", "send_email") == 2
    assert e.session_facts("a")["calls"] == 2
    e.evaluate("launch", {}, session_id="a")  # default deny: not recorded
    assert e.session_facts("a")["calls"] == 2
    assert e.sessions() == ["a", "b"]
    # without a session id nothing is recorded
    for _ in range(5):
        assert e.evaluate("send_email", {"to": "x"}).action == "allow"
    # record=False is a dry run
    e.reset_session("b")
    for _ in range(4):
        assert e.evaluate("send_email", {"to": "x"}, session_id="b", record=False).action == "allow"
    assert e.session_count("b", "send_email") == 0


def test_fixed_session_facts_and_reason_template() -> None:
    e = tame.Engine.from_str(RATE_LIMIT)
    e.set_session_facts("s", {"counts": {"send_email": 7}})
    d = e.evaluate("send_email", {"to": "carol"}, session_id="s")
    assert d.action == "deny" and d.reason == "too many e-mails to carol"
    with pytest.raises(ValueError, match="session.counts.send_email"):
        e.set_session_facts("s", {"counts": {"send_email": "many"}})


def test_explain_names_the_rules_tried(engine: tame.Engine) -> None:
    x = engine.explain("read_file", {"path": "/etc/passwd"}, session_id="explain")
    assert x["decision"]["action"] == "deny"
    assert x["decision"]["rule_name"] == "block_system_files"
    tried = {r["rule"]: r["outcome"] for r in x["rules"]}
    assert tried["block_system_files"] == "matched"
    # explaining records nothing
    assert engine.session_count("explain", "read_file") == 0


def test_info_stats_and_dot(engine: tame.Engine) -> None:
    info = engine.info()
    assert info["version"] == "2026-11"
    assert info["rules_count"] == len(info["rules"]) == 7
    assert info["rules"][0]["name"] == "block_system_files"
    assert len(info["hash"]) == 64
    assert engine.version == "2026-11"
    assert engine.stats()["rules"] == 7
    assert engine.to_dot().lstrip().startswith("digraph")
    assert "example.yml" in engine.origin
    assert isinstance(engine.lints(), list)


def test_legacy_policy_loads(example_policy) -> None:
    legacy = tame.Engine.from_file(example_policy.parent / "legacy_tame.yml")
    assert legacy.info()["legacy"] is True
    d = legacy.evaluate("no_such_tool", {})
    assert d.action == "deny" and d.reason == "No matching policy rule found"


def test_policy_error_carries_location() -> None:
    text = 'version: "1"\nrules:\n  - name: bad\n    action: deny\n    condition: "args.x >"\n'
    with pytest.raises(tame.PolicyError) as info:
        tame.Engine.from_str(text, "bad.yml")
    err = info.value
    assert isinstance(err, tame.TameError)
    assert err.file == "bad.yml"
    assert err.line == 5
    assert err.column and err.column > 0
    assert "bad.yml" in err.rendered
    assert err.diagnostics and err.diagnostics[0]["severity"] == "error"
    assert err.diagnostics[0]["rule"] == "bad"


def test_unknown_function_is_a_compile_error() -> None:
    text = 'version: "1"\nrules:\n  - name: r\n    action: allow\n    condition: "is_vip(user)"\n'
    with pytest.raises(tame.PolicyError, match="is_vip"):
        tame.Engine.from_str(text)


def test_missing_file() -> None:
    with pytest.raises(FileNotFoundError, match="no/such/policies.yml"):
        tame.Engine.from_file("/no/such/policies.yml")
    with pytest.raises(TypeError):
        tame.Engine.from_file(42)  # type: ignore[arg-type]


VIP = """
version: "h"
rules:
  - name: vip_mail
    action: allow
    tools: ["send_email"]
    condition: 'is_vip(args.to)'
  - name: block_rest
    action: deny
    tools: ["send_email"]
    condition: 'not is_vip(args.to)'
    reason: "not a VIP"
"""


def test_python_host_functions_at_load() -> None:
    seen: list = []

    def is_vip(address: str) -> bool:
        seen.append(address)
        return address.endswith("@vip.example")

    e = tame.Engine.from_str(VIP, functions={"is_vip": (is_vip, ["string"], "bool")})
    assert e.functions() == ["is_vip"]
    assert e.evaluate("send_email", {"to": "ceo@vip.example"}).action == "allow"
    d = e.evaluate("send_email", {"to": "someone@else.example"})
    assert (d.action, d.reason) == ("deny", "not a VIP")
    assert "ceo@vip.example" in seen


def test_register_function_recompiles() -> None:
    base = 'version: "h"\nrules:\n  - name: r\n    action: deny\n    condition: "true"\n'
    e = tame.Engine.from_str(base)
    e.register_function("double_it", lambda x: x * 2, params=["int"], returns="int")
    assert "double_it" in e.functions()
    with pytest.raises(ValueError, match="unknown type `float64`"):
        e.register_function("f", lambda x: x, params=["float64"])
    with pytest.raises(TypeError, match="callable"):
        e.register_function("f", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid function name"):
        e.register_function("bad name", lambda: 1)


def test_failing_host_function_never_widens_access() -> None:
    def explode(_: str) -> bool:
        raise RuntimeError("boom")

    e = tame.Engine.from_str(VIP, functions={"is_vip": explode})
    d = e.evaluate("send_email", {"to": "x"})
    # the allow rule errors (does not match), the deny rule errors (matches)
    assert d.action == "deny" and d.rule_name == "block_rest"


def test_bad_arguments_raise_type_and_value_errors(engine: tame.Engine) -> None:
    with pytest.raises(TypeError, match="tool_name must be a string"):
        engine.evaluate(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_name must not be empty"):
        engine.evaluate("  ")
    with pytest.raises(TypeError, match="tool_args must be a dict"):
        engine.evaluate("read_file", ["/etc"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tool_args\.when: expected JSON data"):
        engine.evaluate("read_file", {"when": object()})
    with pytest.raises(TypeError, match="keys must be strings"):
        engine.evaluate("read_file", {1: "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"tool_args\.n\[1\]: integer out of range"):
        engine.evaluate("read_file", {"n": [1, 2**80]})
    with pytest.raises(ValueError, match="not a JSON number"):
        engine.evaluate("read_file", {"x": float("nan")})
    with pytest.raises(TypeError, match="metadata must be a dict"):
        engine.evaluate("read_file", {}, metadata="admin")  # type: ignore[arg-type]
    deep: dict = {}
    cur = deep
    for _ in range(200):
        cur["a"] = {}
        cur = cur["a"]
    with pytest.raises(ValueError, match="nested deeper than 64"):
        engine.evaluate("read_file", deep)
    with pytest.raises(TypeError):
        tame.Engine.from_str(b"version: 1")  # type: ignore[arg-type]


def test_tuples_and_nested_values_convert() -> None:
    assert tame._native.to_call_value({"a": (1, 2.5, None, True), "b": {"c": ["x"]}}) == {
        "a": [1, 2.5, None, True],
        "b": {"c": ["x"]},
    }


def test_threads_share_session_counts() -> None:
    e = tame.Engine.from_str(RATE_LIMIT.replace(">= 2", ">= 1000"))

    def work() -> None:
        for _ in range(200):
            e.evaluate("send_email", {"to": "t"}, session_id="shared")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert e.session_count("shared", "send_email") == 800


def test_reentrant_evaluate_from_host_function_is_refused() -> None:
    holder: dict = {}

    def nested(_: str) -> bool:
        holder["engine"].evaluate("send_email", {"to": "x"}, session_id="s")
        return True

    e = tame.Engine.from_str(VIP, functions={"is_vip": nested})
    holder["engine"] = e
    d = e.evaluate("send_email", {"to": "x"}, session_id="s")
    # the nested call raised inside the host function: a run-time error,
    # so the allow rule does not match and the deny rule does
    assert d.action == "deny"


def test_policy_error_from_a_file(tmp_path) -> None:
    path = tmp_path / "policies.yml"
    path.write_text('version: "1"\nrules:\n  - name: ok\n    action: allow\n  - name: typo\n    action: alow\n')
    with pytest.raises(tame.PolicyError) as info:
        tame.Engine.from_file(path)
    assert info.value.file == str(path)
    assert info.value.line == 6
    assert str(path) in str(info.value)
    assert "alow" in info.value.rendered


def test_engines_are_released_with_their_clients() -> None:
    import gc
    import weakref

    from tame._backend import embedded_backend_for

    e = tame.Engine.from_str(RATE_LIMIT)
    backend = embedded_backend_for(e)
    c = tame.Client(engine=e)
    c.enforce("send_email", {"to": "x"})
    ref = weakref.ref(e)
    del e, c
    gc.collect()
    assert ref() is None
    with pytest.raises(tame.TameSDKException, match="no longer exists"):
        backend.call("POST", "/api/v1/enforce", json={"tool_name": "send_email"})
