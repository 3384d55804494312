"""Tool contracts (seed 004): which data tags a tool may receive, which
response fields the agent may see, and which agents may call which tools.

``load_contracts("contracts.yaml")`` reads ``tool_contracts:`` (and
optionally ``agents:``); ``validate_tool_request``, ``intercept_tool_request``
and ``intercept_tool_response`` check calls against them. The rules are
those of the native payload-safety library:

- an allowed tag allows itself and the tags below it (``personal.pii``
  allows ``personal.pii.email``);
- a tool without a contract (and no ``"*"`` contract) is not restricted;
  with a contract, response fields not listed are stripped;
- ``intercept_tool_request`` also scans the payload: a secret blocks the
  call, personal data the contract does not allow is redacted.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

from . import _native
from .exceptions import TameSDKException

__all__ = [
    "ContractEngine",
    "ValidationResult",
    "RequestInterception",
    "ResponseInterception",
    "load_contracts",
    "validate_tool_request",
    "intercept_tool_request",
    "intercept_tool_response",
    "scan_payload",
]


@dataclass
class ValidationResult:
    allowed: bool
    reason: str
    tool_name: str
    data_tags: List[str] = field(default_factory=list)


@dataclass
class RequestInterception:
    """``action`` is ``"allow"`` or ``"block"``; ``payload`` is what the tool
    may receive (personal data the contract does not allow is redacted; when
    blocked, every finding is redacted so it is safe to log)."""

    action: str
    reason: str
    tool_name: str
    payload: Any
    data_tags: List[str] = field(default_factory=list)
    findings: List[Dict[str, Any]] = field(default_factory=list)
    detected_tags: List[str] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


@dataclass
class ResponseInterception:
    tool_name: str
    safe_response: Any
    stripped_fields: List[str] = field(default_factory=list)
    findings: List[Dict[str, Any]] = field(default_factory=list)


def _tags(data_tags: Any) -> List[str]:
    if data_tags is None:
        return []
    if isinstance(data_tags, str):
        return [data_tags]
    if not isinstance(data_tags, (list, tuple)) or not all(isinstance(t, str) for t in data_tags):
        raise TypeError("data_tags must be a list of strings")
    return list(data_tags)


def _tool(tool_name: Any) -> str:
    if not isinstance(tool_name, str) or not tool_name:
        raise TypeError("tool_name must be a non-empty string")
    return tool_name


class ContractEngine:
    """A compiled set of tool contracts (and agent bindings)."""

    def __init__(self, native: Any, origin: str = "<string>") -> None:
        self._native = native
        self.origin = origin

    @classmethod
    def from_yaml(cls, text: str) -> "ContractEngine":
        if not isinstance(text, str):
            raise TypeError(f"contracts text must be a str, got {type(text).__name__}")
        return cls(_native.Contracts.from_yaml(text))

    @classmethod
    def from_file(cls, path: "os.PathLike[str] | str") -> "ContractEngine":
        """Reads a YAML file with ``tool_contracts:`` and/or ``agents:``."""
        file = os.path.expanduser(os.fspath(path))
        return cls(_native.Contracts.from_file(file), origin=file)

    #: seed 004's ``SafeAI.from_config`` name
    from_config = from_file

    def validate_tool_request(self, tool_name: str, data_tags: Optional[Iterable[str]] = None) -> ValidationResult:
        tags = _tags(data_tags)
        out = self._native.validate_tool_request(_tool(tool_name), tags)
        return ValidationResult(out["allowed"], out["reason"], tool_name, tags)

    def validate_agent(self, agent_id: Optional[str], tool_name: str) -> ValidationResult:
        out = self._native.validate_agent(agent_id, _tool(tool_name))
        return ValidationResult(out["allowed"], out["reason"], tool_name)

    def intercept_tool_request(
        self,
        tool_name: str,
        payload: Mapping[str, Any],
        data_tags: Optional[Iterable[str]] = None,
        agent_id: Optional[str] = None,
    ) -> RequestInterception:
        tags = _tags(data_tags)
        out = self._native.intercept_tool_request(_tool(tool_name), payload, tags, agent_id)
        return RequestInterception(
            action=out["action"],
            reason=out["reason"],
            tool_name=tool_name,
            payload=out["payload"],
            data_tags=tags,
            findings=out["findings"],
            detected_tags=out["detected_tags"],
        )

    def intercept_tool_response(self, tool_name: str, response: Any) -> ResponseInterception:
        out = self._native.intercept_tool_response(_tool(tool_name), response)
        return ResponseInterception(tool_name, out["safe_response"], out["stripped_fields"], out["findings"])


def scan_payload(payload: Any) -> List[Dict[str, Any]]:
    """Secrets and personal data in a JSON-like payload."""
    return list(_native.scan_payload(payload))


_lock = threading.Lock()
_default: Optional[ContractEngine] = None


def load_contracts(path: "os.PathLike[str] | str") -> ContractEngine:
    """Load contracts and make them the default of the module functions."""
    global _default
    engine = ContractEngine.from_file(path)
    with _lock:
        _default = engine
    return engine


def _current() -> ContractEngine:
    with _lock:
        if _default is None:
            raise TameSDKException("no tool contracts loaded: call tame.load_contracts(path) first")
        return _default


def validate_tool_request(tool_name: str, data_tags: Optional[Iterable[str]] = None) -> ValidationResult:
    return _current().validate_tool_request(tool_name, data_tags)


def intercept_tool_request(
    tool_name: str,
    payload: Mapping[str, Any],
    data_tags: Optional[Iterable[str]] = None,
    agent_id: Optional[str] = None,
) -> RequestInterception:
    return _current().intercept_tool_request(tool_name, payload, data_tags, agent_id)


def intercept_tool_response(tool_name: str, response: Any) -> ResponseInterception:
    return _current().intercept_tool_response(tool_name, response)
