"""Type stubs of the native module ``tame._native`` (the embedded engine)."""

import os
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

__version__: str

_HostSpec = Union[Callable[..., Any], Tuple[Callable[..., Any], Sequence[str], str]]

class TameError(Exception):
    """Base class of the embedded engine's errors."""

class PolicyError(TameError):
    """A policy that cannot be loaded."""

    file: Optional[str]
    line: Optional[int]
    column: Optional[int]
    rendered: str
    diagnostics: List[Dict[str, Any]]

class Decision:
    """The decision about one call."""

    @property
    def action(self) -> str: ...
    @property
    def rule_name(self) -> Optional[str]: ...
    @property
    def reason(self) -> str: ...
    @property
    def policy_version(self) -> str: ...
    @property
    def is_allowed(self) -> bool: ...
    @property
    def is_denied(self) -> bool: ...
    @property
    def requires_approval(self) -> bool: ...
    def to_dict(self) -> Dict[str, Any]: ...

class Engine:
    """A compiled policy evaluated in-process, with in-memory session facts."""

    @staticmethod
    def from_file(
        path: Union[str, "os.PathLike[str]"], functions: Optional[Mapping[str, _HostSpec]] = None
    ) -> "Engine": ...
    @staticmethod
    def from_str(
        text: str, name: str = "<string>", functions: Optional[Mapping[str, _HostSpec]] = None
    ) -> "Engine": ...
    def evaluate(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        user_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
        record: bool = True,
    ) -> Decision: ...
    def explain(
        self,
        tool_name: str,
        tool_args: Optional[Mapping[str, Any]] = None,
        session_id: Optional[str] = None,
        agent_id: Optional[str] = None,
        user_id: Optional[str] = None,
        metadata: Optional[Mapping[str, Any]] = None,
    ) -> Dict[str, Any]: ...
    def register_function(
        self,
        name: str,
        func: Callable[..., Any],
        params: Optional[Sequence[str]] = None,
        returns: str = "dyn",
    ) -> None: ...
    def functions(self) -> List[str]: ...
    def info(self) -> Dict[str, Any]: ...
    def stats(self) -> Dict[str, int]: ...
    def lints(self) -> List[Dict[str, Any]]: ...
    def to_dot(self) -> str: ...
    @property
    def origin(self) -> str: ...
    @property
    def version(self) -> str: ...
    def session_facts(self, session_id: str) -> Dict[str, Any]: ...
    def session_count(self, session_id: str, tool: str) -> int: ...
    def set_session_facts(self, session_id: str, facts: Mapping[str, Any]) -> None: ...
    def add_session_label(self, session_id: str, label: str) -> None: ...
    def reset_session(self, session_id: str) -> None: ...
    def sessions(self) -> List[str]: ...

def to_call_value(value: Any) -> Any: ...
