"""The exception family of the Tame SDK (compatible with tame and TameSDK)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from .models import EnforcementDecision

__all__ = [
    "TameSDKException",
    "tameException",
    "PolicyViolationException",
    "ApprovalRequiredException",
    "ApprovalTimeoutException",
    "ConnectionException",
    "AuthenticationException",
    "ToolValidationError",
]


class TameSDKException(Exception):
    """Base exception for every error raised by the SDK.

    ``details`` carries whatever the server or the SDK knew about the error
    (for HTTP errors: ``status_code`` and the response's ``detail``).
    """

    def __init__(self, message: str = "", details: Optional[dict[str, Any]] = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    @property
    def status_code(self) -> Optional[int]:
        """The HTTP status of the failed request, when there was one."""
        code = self.details.get("status_code")
        return code if isinstance(code, int) else None


#: The name used by the original ``tame`` SDK.
tameException = TameSDKException


class PolicyViolationException(TameSDKException):
    """A tool call was denied by policy; ``decision`` says which rule and why."""

    def __init__(self, decision: "EnforcementDecision", message: Optional[str] = None) -> None:
        text = message or f"policy denied `{decision.tool_name}`: {decision.reason}"
        super().__init__(text, {"rule_name": decision.rule_name, "session_id": decision.session_id})
        self.decision = decision


class ApprovalRequiredException(TameSDKException):
    """A tool call needs a human's approval first; ``decision`` carries the
    reason and, when the server opened one, the ``approval_id``."""

    def __init__(self, decision: "EnforcementDecision", message: Optional[str] = None) -> None:
        text = message or f"`{decision.tool_name}` requires approval: {decision.reason}"
        super().__init__(
            text,
            {
                "rule_name": decision.rule_name,
                "session_id": decision.session_id,
                "approval_id": decision.approval_id,
            },
        )
        self.decision = decision


class ApprovalTimeoutException(ApprovalRequiredException):
    """Nobody approved or rejected the call within the wait's timeout."""


class ConnectionException(TameSDKException):
    """The Tame API could not be reached (refused, timed out, DNS...)."""


class AuthenticationException(TameSDKException):
    """The Tame API rejected the API key (HTTP 401/403)."""


class ToolValidationError(TameSDKException, ValueError):
    """A tool's input does not match its JSON schema.

    ``field`` is the JSON path of the failing value (``""`` for the whole
    input), ``tool_name`` the tool.
    """

    def __init__(self, tool_name: str, field: str, message: str) -> None:
        where = f" at `{field}`" if field else ""
        super().__init__(
            f"invalid input for tool `{tool_name}`{where}: {message}",
            {"tool_name": tool_name, "field": field},
        )
        self.tool_name = tool_name
        self.field = field
