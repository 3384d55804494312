"""SDK configuration: defaults, environment variables, YAML files and the
process-wide settings changed by ``configure()``."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields, replace
from typing import Any, Dict, Mapping, Optional

from .exceptions import TameSDKException

__all__ = ["TameConfig", "configure", "get_config", "load_config", "reset_config"]

DEFAULT_API_URL = "http://localhost:8000"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class TameConfig:
    """Settings shared by clients and decorators.

    ``policy_file``, when set, makes clients built from this configuration
    evaluate calls in-process with the embedded engine instead of calling
    ``api_url``.
    """

    api_url: str = DEFAULT_API_URL
    api_key: Optional[str] = None
    session_id: Optional[str] = None
    agent_id: Optional[str] = None
    user_id: Optional[str] = None
    timeout: float = 30.0
    bypass_mode: bool = False
    raise_on_deny: bool = True
    raise_on_approve: bool = True
    policy_file: Optional[str] = None

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None) -> "TameConfig":
        """Read ``TAME_*`` variables (TameSDK) and, where those are unset, the
        ``tame_*`` spelling of the original SDK (``tame_API_URL``...)."""
        env = os.environ if environ is None else environ
        values: Dict[str, Any] = {}
        for f in fields(cls):
            upper = "TAME_" + f.name.upper()
            raw = env.get(upper)
            name = upper
            if raw is None:
                name = "tame_" + f.name.upper()
                raw = env.get(name)
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, raw, source=f"environment variable {name}")
        return cls(**values)

    def merged(self, **overrides: Any) -> "TameConfig":
        """A copy with the given non-``None`` values replaced."""
        known = {f.name for f in fields(self)}
        for key in overrides:
            if key not in known:
                raise TypeError(f"unknown configuration option `{key}`")
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def _coerce(name: str, value: Any, source: str) -> Any:
    """Convert a raw value (env var text or YAML scalar) to the field's type."""
    if name in ("bypass_mode", "raise_on_deny", "raise_on_approve"):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError(f"{source}: `{value}` is not a boolean (use true or false)")
    if name == "timeout":
        try:
            timeout = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{source}: `{value}` is not a number of seconds") from None
        if not timeout > 0:
            raise ValueError(f"{source}: timeout must be positive, got {value}")
        return timeout
    if value is None:
        return None
    if not isinstance(value, (str, int, float)):
        raise ValueError(f"{source}: expected a string, got {type(value).__name__}")
    return str(value)


_lock = threading.Lock()
_config: Optional[TameConfig] = None
_generation = 0


def get_config() -> TameConfig:
    """The process-wide configuration (read from the environment on first use)."""
    global _config
    with _lock:
        if _config is None:
            _config = TameConfig.from_env()
        return _config


def configuration_generation() -> int:
    """Bumped by every ``configure()``; lets cached default clients notice."""
    return _generation


def configure(**kwargs: Any) -> TameConfig:
    """Change the process-wide configuration; unknown options raise TypeError.

    ``tamesdk.configure(**tamesdk.load_config(path).__dict__)`` works.
    """
    global _config, _generation
    known = {f.name for f in fields(TameConfig)}
    values: Dict[str, Any] = {}
    for key, value in kwargs.items():
        if key not in known:
            raise TypeError(
                f"configure() got an unknown option `{key}`; known: {', '.join(sorted(known))}"
            )
        values[key] = value if value is None else _coerce(key, value, source=f"configure({key}=...)")
    base = get_config()
    with _lock:
        _config = replace(base, **values)
        _generation += 1
        return _config


def reset_config() -> TameConfig:
    """Forget ``configure()`` calls and re-read the environment."""
    forget_config()
    return get_config()


def forget_config() -> None:
    """Forget the configuration; the environment is read again on next use."""
    global _config, _generation
    with _lock:
        _config = None
        _generation += 1


def load_config(path: "os.PathLike[str] | str") -> TameConfig:
    """Load a YAML configuration file (``~`` is expanded).

    Keys are ``TameConfig``'s fields; unknown keys raise ValueError naming
    them. Values not in the file keep their defaults (not the environment).
    """
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - pyyaml is a dependency
        raise TameSDKException("load_config needs PyYAML: pip install pyyaml") from exc
    file = os.path.expanduser(os.fspath(path))
    try:
        with open(file, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise TameSDKException(f"configuration file not found: {file}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{file}: invalid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a mapping of options, got {type(data).__name__}")
    known = {f.name for f in fields(TameConfig)}
    values: Dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ValueError(
                f"{file}: unknown option `{key}`; known: {', '.join(sorted(known))}"
            )
        values[key] = _coerce(key, value, source=f"{file}: option `{key}`")
    return TameConfig(**values)
