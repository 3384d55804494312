"""Data models returned by the SDK: decisions, tool results, policy info."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from typing import Any, Dict, Mapping, Optional

from .exceptions import TameSDKException

__all__ = ["ActionType", "EnforcementDecision", "ToolResult", "PolicyInfo", "parse_timestamp"]


class ActionType(str, Enum):
    """A policy decision. Compares equal to its string value (``"allow"``)."""

    ALLOW = "allow"
    DENY = "deny"
    APPROVE = "approve"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: Any) -> "ActionType":
        """Read an action from the server's ``decision`` field."""
        if isinstance(value, ActionType):
            return value
        if isinstance(value, str):
            try:
                return cls(value.lower())
            except ValueError:
                pass
        raise TameSDKException(
            f"unknown decision `{value}`: expected one of allow, deny, approve",
            {"decision": value},
        )


_ISO = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(value: Any) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` or an offset; naive means UTC).

    Accepts any number of fraction digits (Python 3.9's ``fromisoformat``
    does not), keeping at most microseconds.
    """
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str):
        raise TameSDKException(f"timestamp must be a string, got {type(value).__name__}")
    m = _ISO.match(value.strip())
    if m is None:
        raise TameSDKException(f"invalid timestamp `{value}`: expected ISO 8601")
    date, time, frac, tz = m.groups()
    text = f"{date}T{time}"
    if frac:
        text += "." + (frac + "000000")[:6]
    if tz is None or tz == "Z":
        text += "+00:00"
    elif ":" not in tz:
        text += tz[:3] + ":" + tz[3:]
    else:
        text += tz
    return datetime.fromisoformat(text)


@dataclass
class EnforcementDecision:
    """The answer to one tool call."""

    session_id: str
    action: ActionType
    rule_name: Optional[str]
    reason: str
    policy_version: str
    log_id: str
    timestamp: datetime
    tool_name: str
    tool_args: Dict[str, Any] = field(default_factory=dict)
    approval_id: Optional[str] = None
    metadata: Dict[str, Any] = field(default_factory=dict)

    @property
    def is_allowed(self) -> bool:
        return self.action is ActionType.ALLOW

    @property
    def is_denied(self) -> bool:
        return self.action is ActionType.DENY

    @property
    def requires_approval(self) -> bool:
        return self.action is ActionType.APPROVE

    @classmethod
    def from_response(
        cls,
        data: Mapping[str, Any],
        tool_name: str,
        tool_args: Mapping[str, Any],
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> "EnforcementDecision":
        """Build a decision from a ``POST /api/v1/enforce`` response body."""
        if not isinstance(data, dict):
            raise TameSDKException(
                f"unexpected enforce response: expected an object, got {type(data).__name__}"
            )
        missing = [k for k in ("session_id", "decision") if k not in data]
        if missing:
            raise TameSDKException(
                f"unexpected enforce response: missing field `{missing[0]}`", {"response": dict(data)}
            )
        log_id = data.get("log_id")
        approval_id = data.get("approval_id")
        stamp = data.get("timestamp")
        return cls(
            session_id=str(data["session_id"]),
            action=ActionType.parse(data["decision"]),
            rule_name=data.get("rule_name"),
            reason=str(data.get("reason") or ""),
            policy_version=str(data.get("policy_version") or ""),
            log_id="" if log_id is None else str(log_id),
            timestamp=parse_timestamp(stamp) if stamp else datetime.now(timezone.utc),
            tool_name=tool_name,
            tool_args=dict(tool_args),
            approval_id=None if approval_id is None else str(approval_id),
            metadata=dict(metadata or {}),
        )

    def to_dict(self) -> Dict[str, Any]:
        """The decision as the server's JSON shape (plus the call)."""
        out: Dict[str, Any] = {
            "session_id": self.session_id,
            "decision": self.action.value,
            "rule_name": self.rule_name,
            "reason": self.reason,
            "policy_version": self.policy_version,
            "log_id": self.log_id,
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "tool_name": self.tool_name,
            "tool_args": self.tool_args,
        }
        if self.approval_id is not None:
            out["approval_id"] = self.approval_id
        return out


@dataclass
class ToolResult:
    """What ``execute_tool`` returns: the tool's result or its error."""

    success: bool
    result: Any = None
    error: Optional[str] = None
    execution_time_ms: Optional[float] = None
    decision: Optional[EnforcementDecision] = None


class PolicyInfo(Dict[str, Any]):
    """``GET /api/v1/policy/current``: a dict whose keys also read as
    attributes (``info.version`` and ``info["version"]``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"policy info has no field `{name}`") from None
