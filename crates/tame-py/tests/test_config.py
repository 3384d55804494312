"""Configuration: defaults, both SDKs' environment variables, YAML files,
configure()/get_config()."""

from __future__ import annotations

from pathlib import Path

import pytest

import tame
import tamesdk


def test_defaults() -> None:
    cfg = tame.get_config()
    assert cfg.api_url == "http://localhost:8000"
    assert cfg.api_key is None and cfg.bypass_mode is False
    assert cfg.raise_on_deny and cfg.raise_on_approve and cfg.timeout == 30.0


def test_tamesdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAME_API_URL", "http://tame.internal:9000")
    monkeypatch.setenv("TAME_API_KEY", "k-123")
    monkeypatch.setenv("TAME_SESSION_ID", "env-session")
    monkeypatch.setenv("TAME_AGENT_ID", "env-agent")
    monkeypatch.setenv("TAME_USER_ID", "env-user")
    monkeypatch.setenv("TAME_BYPASS_MODE", "TRUE")
    monkeypatch.setenv("TAME_TIMEOUT", "2.5")
    cfg = tame.reset_config()
    assert (cfg.api_url, cfg.api_key, cfg.session_id) == ("http://tame.internal:9000", "k-123", "env-session")
    assert (cfg.agent_id, cfg.user_id, cfg.bypass_mode, cfg.timeout) == ("env-agent", "env-user", True, 2.5)
    c = tame.Client()
    assert (c.api_url, c.session_id, c.agent_id, c.bypass_mode) == (
        "http://tame.internal:9000",
        "env-session",
        "env-agent",
        True,
    )
    c.close()


def test_original_sdk_lowercase_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("tame_API_URL", "http://old-sdk:8000")
    monkeypatch.setenv("tame_USER_ID", "legacy-user")
    cfg = tame.reset_config()
    assert cfg.api_url == "http://old-sdk:8000" and cfg.user_id == "legacy-user"
    # the TameSDK spelling wins when both are set
    monkeypatch.setenv("TAME_API_URL", "http://new-sdk:8000")
    assert tame.reset_config().api_url == "http://new-sdk:8000"


def test_bad_environment_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TAME_BYPASS_MODE", "sometimes")
    with pytest.raises(ValueError, match="TAME_BYPASS_MODE"):
        tame.reset_config()
    monkeypatch.setenv("TAME_BYPASS_MODE", "0")
    monkeypatch.setenv("TAME_TIMEOUT", "-1")
    with pytest.raises(ValueError, match="TAME_TIMEOUT"):
        tame.reset_config()


def test_configure_and_get_config() -> None:
    cfg = tamesdk.configure(
        api_url="http://localhost:8000",
        api_key="your-secret-key",
        session_id="my-session-123",
        agent_id="openai-agent",
        user_id="john-doe",
        bypass_mode=False,
        raise_on_deny=True,
        raise_on_approve=True,
    )
    assert tamesdk.get_config() is cfg is tame.get_config()
    assert cfg.session_id == "my-session-123" and cfg.agent_id == "openai-agent"
    with pytest.raises(TypeError, match="unknown option `api_uri`"):
        tame.configure(api_uri="http://x")
    with pytest.raises(ValueError, match="timeout"):
        tame.configure(timeout="soon")


def test_load_config_yaml(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        'api_url: "http://localhost:8000"\napi_key: "your-secret-key"\nsession_id: "my-session"\n'
        'agent_id: "my-agent"\nuser_id: "my-user"\nbypass_mode: false\nraise_on_deny: true\n'
        "raise_on_approve: true\n"
    )
    config = tamesdk.load_config(path)
    assert config.api_key == "your-secret-key" and config.bypass_mode is False
    tamesdk.configure(**config.__dict__)
    assert tame.get_config().session_id == "my-session"


def test_load_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(tame.TameSDKException, match="not found"):
        tame.load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("api_url: [unclosed\n")
    with pytest.raises(ValueError, match="invalid YAML"):
        tame.load_config(bad)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("api_url: http://x\ncolour: blue\n")
    with pytest.raises(ValueError, match="unknown option `colour`"):
        tame.load_config(unknown)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("bypass_mode: maybe\n")
    with pytest.raises(ValueError, match="bypass_mode"):
        tame.load_config(wrong)
    home = tmp_path / "home"
    (home / ".tame").mkdir(parents=True)
    (home / ".tame" / "config.yaml").write_text("agent_id: from-home\n")
    monkeypatch.setenv("HOME", str(home))
    assert tame.load_config("~/.tame/config.yaml").agent_id == "from-home"
