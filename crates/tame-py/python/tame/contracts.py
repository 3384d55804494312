"""Tool contracts (seed 004): which data tags a tool may receive and which
response fields the agent may see.

``load_contracts("contracts.yaml")`` reads a ``tool_contracts:`` mapping;
``validate_tool_request``, ``intercept_tool_request`` and
``intercept_tool_response`` check calls against it. Payload scanning for
secrets and PII uses the native scanners when the build has them
(``ContractEngine.scans_payloads``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ._json import check_json
from .exceptions import TameSDKException

__all__ = [
    "ContractEngine",
    "ToolContract",
    "ValidationResult",
    "RequestInterception",
    "ResponseInterception",
    "load_contracts",
    "validate_tool_request",
    "intercept_tool_request",
    "intercept_tool_response",
]


@dataclass(frozen=True)
class ToolContract:
    """What one tool may accept (data tags) and emit (top-level fields)."""

    tool_name: str
    allowed_request_tags: tuple
    allowed_response_fields: tuple

    def allows_tag(self, tag: str) -> bool:
        """A listed tag covers itself and its sub-tags (``personal.pii``
        covers ``personal.pii.email``)."""
        return any(tag == t or tag.startswith(t + ".") for t in self.allowed_request_tags)


@dataclass
class ValidationResult:
    allowed: bool
    reason: str
    tool_name: str
    data_tags: List[str] = field(default_factory=list)


@dataclass
class RequestInterception:
    """``action`` is ``"allow"`` or ``"block"``; ``payload`` is the payload
    the tool may receive (``None`` when blocked); ``findings`` lists what
    the payload scanners found."""

    action: str
    reason: str
    tool_name: str
    payload: Optional[Dict[str, Any]]
    data_tags: List[str] = field(default_factory=list)
    findings: List[Dict[str, Any]] = field(default_factory=list)

    @property
    def allowed(self) -> bool:
        return self.action == "allow"


@dataclass
class ResponseInterception:
    tool_name: str
    safe_response: Dict[str, Any]
    stripped_fields: List[str] = field(default_factory=list)


def _str_list(value: Any, where: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"{where}: expected a list of non-empty strings")
    return tuple(value)


def _tags(data_tags: Any) -> List[str]:
    if data_tags is None:
        return []
    if isinstance(data_tags, str):
        return [data_tags]
    if not isinstance(data_tags, (list, tuple)) or not all(isinstance(t, str) for t in data_tags):
        raise TypeError("data_tags must be a list of strings")
    return list(data_tags)


class ContractEngine:
    """A set of tool contracts. Tools without a contract are denied."""

    def __init__(self, contracts: Mapping[str, Any], origin: str = "<dict>") -> None:
        if not isinstance(contracts, Mapping):
            raise TypeError(f"tool_contracts must be a mapping, got {type(contracts).__name__}")
        self.origin = origin
        self.contracts: Dict[str, ToolContract] = {}
        for name, spec in contracts.items():
            where = f"{origin}: tool_contracts.{name}"
            if not isinstance(name, str) or not name:
                raise ValueError(f"{origin}: tool_contracts keys must be tool names")
            if spec is None:
                spec = {}
            if not isinstance(spec, Mapping):
                raise ValueError(f"{where}: expected a mapping")
            unknown = set(spec) - {"allowed_request_tags", "allowed_response_fields"}
            if unknown:
                raise ValueError(
                    f"{where}: unknown field `{sorted(unknown)[0]}`; expected "
                    "allowed_request_tags, allowed_response_fields"
                )
            self.contracts[name] = ToolContract(
                name,
                _str_list(spec.get("allowed_request_tags"), f"{where}.allowed_request_tags"),
                _str_list(spec.get("allowed_response_fields"), f"{where}.allowed_response_fields"),
            )
        self._scanner = _native_scanner()

    @classmethod
    def from_file(cls, path: "os.PathLike[str] | str") -> "ContractEngine":
        """Reads a YAML file with a top-level ``tool_contracts:`` mapping."""
        import yaml

        file = os.path.expanduser(os.fspath(path))
        try:
            with open(file, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
        except FileNotFoundError:
            raise TameSDKException(f"contracts file not found: {file}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{file}: invalid YAML: {exc}") from None
        if not isinstance(data, Mapping) or "tool_contracts" not in data:
            raise ValueError(f"{file}: expected a top-level `tool_contracts:` mapping")
        return cls(data["tool_contracts"] or {}, origin=file)

    from_config = from_file

    @property
    def scans_payloads(self) -> bool:
        """Whether request payloads are scanned for secrets and PII."""
        return self._scanner is not None

    def validate_tool_request(self, tool_name: str, data_tags: Optional[Iterable[str]] = None) -> ValidationResult:
        if not isinstance(tool_name, str) or not tool_name:
            raise TypeError("tool_name must be a non-empty string")
        tags = _tags(data_tags)
        contract = self.contracts.get(tool_name)
        if contract is None:
            return ValidationResult(False, f"No contract for tool {tool_name}", tool_name, tags)
        for tag in tags:
            if not contract.allows_tag(tag):
                return ValidationResult(
                    False, f"Tag '{tag}' not in allowed_request_tags for {tool_name}", tool_name, tags
                )
        return ValidationResult(True, "all data tags allowed", tool_name, tags)

    def intercept_tool_request(
        self, tool_name: str, payload: Mapping[str, Any], data_tags: Optional[Iterable[str]] = None
    ) -> RequestInterception:
        if not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
        check_json(payload, "payload")
        verdict = self.validate_tool_request(tool_name, data_tags)
        if not verdict.allowed:
            return RequestInterception("block", verdict.reason, tool_name, None, verdict.data_tags)
        findings: List[Dict[str, Any]] = []
        if self._scanner is not None:
            findings = list(self._scanner(dict(payload)))
            secrets = [f for f in findings if f.get("kind") == "secret"]
            if secrets:
                where = secrets[0].get("path", "payload")
                return RequestInterception(
                    "block", f"secret found in payload at `{where}`", tool_name, None, verdict.data_tags, findings
                )
        return RequestInterception("allow", verdict.reason, tool_name, dict(payload), verdict.data_tags, findings)

    def intercept_tool_response(self, tool_name: str, response: Mapping[str, Any]) -> ResponseInterception:
        if not isinstance(tool_name, str) or not tool_name:
            raise TypeError("tool_name must be a non-empty string")
        if not isinstance(response, Mapping):
            raise TypeError(f"response must be a dict, got {type(response).__name__}")
        contract = self.contracts.get(tool_name)
        allowed = set(contract.allowed_response_fields) if contract else set()
        safe = {k: v for k, v in response.items() if k in allowed}
        stripped = [k for k in response if k not in allowed]
        return ResponseInterception(tool_name, safe, stripped)


def _native_scanner() -> Any:
    """The native payload scanner, when this build has one."""
    from . import _native

    return getattr(_native, "scan_payload", None)


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
    tool_name: str, payload: Mapping[str, Any], data_tags: Optional[Iterable[str]] = None
) -> RequestInterception:
    return _current().intercept_tool_request(tool_name, payload, data_tags)


def intercept_tool_response(tool_name: str, response: Mapping[str, Any]) -> ResponseInterception:
    return _current().intercept_tool_response(tool_name, response)
