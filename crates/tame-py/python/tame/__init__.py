"""Tame: a runtime guard between AI agents and their tools.

Two ways to decide a tool call, one API:

- in-process, with the embedded Rust engine: ``tame.Engine.from_file(...)``
  or ``tame.Client(engine=...)`` / ``tame.configure(policy_file=...)``;
- against a Tame server: ``tame.Client(api_url="http://localhost:8000")``.

``import tamesdk`` is an alias of this package (the TameSDK name).
"""

from ._native import Decision, EnforceError, Engine, PolicyError, TameError
from ._native import __version__
from .client import AsyncClient, Client, enforce, execute_with_enforcement
from .config import TameConfig, configure, get_config, load_config, reset_config
from .contracts import (
    ContractEngine,
    RequestInterception,
    ResponseInterception,
    ValidationResult,
    intercept_tool_request,
    intercept_tool_response,
    load_contracts,
    scan_payload,
    validate_tool_request,
)
from .decorators import enforce_policy, log_action, with_approval
from .exceptions import (
    ApprovalRequiredException,
    ApprovalTimeoutException,
    AuthenticationException,
    ConnectionException,
    PolicyViolationException,
    TameSDKException,
    ToolValidationError,
    tameException,
)
from .models import ActionType, EnforcementDecision, PolicyInfo, ToolResult
from .tools import Tool, ToolCall, ToolRunner, create_tool, tool

__all__ = [
    "__version__",
    # embedded engine
    "Engine",
    "Decision",
    "EnforceError",
    "PolicyError",
    "TameError",
    # clients
    "Client",
    "AsyncClient",
    "enforce",
    "execute_with_enforcement",
    # configuration
    "TameConfig",
    "configure",
    "get_config",
    "load_config",
    "reset_config",
    # decorators
    "enforce_policy",
    "with_approval",
    "log_action",
    # models
    "ActionType",
    "EnforcementDecision",
    "PolicyInfo",
    "ToolResult",
    # exceptions
    "TameSDKException",
    "tameException",
    "PolicyViolationException",
    "ApprovalRequiredException",
    "ApprovalTimeoutException",
    "ConnectionException",
    "AuthenticationException",
    "ToolValidationError",
    # tools
    "Tool",
    "tool",
    "create_tool",
    "ToolCall",
    "ToolRunner",
    # contracts
    "ContractEngine",
    "ValidationResult",
    "RequestInterception",
    "ResponseInterception",
    "load_contracts",
    "scan_payload",
    "validate_tool_request",
    "intercept_tool_request",
    "intercept_tool_response",
]
