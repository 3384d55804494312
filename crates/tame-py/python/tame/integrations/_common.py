"""What the framework adapters share: deciding a call (with an optional wait
for a human), reporting its result, recording the user's input."""

import logging
import time
from typing import Any, Mapping, Optional, Tuple

from ..client import Client
from ..exceptions import ApprovalTimeoutException, TameSDKException
from ..models import EnforcementDecision

logger = logging.getLogger("tame.integrations")


def decide(
    client: Client,
    tool_name: str,
    tool_args: Mapping[str, Any],
    *,
    approval_timeout: float = 0.0,
    metadata: Optional[Mapping[str, Any]] = None,
) -> Tuple[EnforcementDecision, Optional[str]]:
    """Decides one call. Returns the decision the call may run under and
    ``None``, or the decision and the text to give the model instead of
    running the call (the deny reason, a rejection, a pending approval's id).

    With ``approval_timeout`` > 0, an ``approve`` decision waits that long
    for a human; the call runs only once released. Fails closed: an error
    getting a decision propagates (the call does not run).
    """
    decision = client.enforce(tool_name, dict(tool_args), metadata, raise_on_deny=False, raise_on_approve=False)
    if decision.is_allowed:
        return decision, None
    if decision.requires_approval:
        if approval_timeout > 0 and decision.approval_id:
            try:
                released = client.wait_for_approval(decision, timeout=approval_timeout, raise_on_deny=False)
            except ApprovalTimeoutException:
                return decision, _pending(tool_name, decision)
            if released.is_allowed:
                return released, None
            return released, f"tame: approval {decision.approval_id} for `{tool_name}` was not granted: {released.reason}"
        return decision, _pending(tool_name, decision)
    return decision, f"tame: the call of `{tool_name}` was denied: {decision.reason}"


def _pending(tool_name: str, decision: EnforcementDecision) -> str:
    return f"tame: `{tool_name}` needs approval ({decision.reason}); pending approval id: {decision.approval_id}"


def report_result(client: Client, decision: EnforcementDecision, ok: bool, value: Any, error: Optional[str], started: float) -> None:
    """Records what an allowed call returned (or how it failed) under its
    decision; a failure to record is logged, never raised into the agent."""
    ms = (time.perf_counter() - started) * 1000.0
    client._report_quietly(decision, client._report(ok, value, error, ms))


def record_input(client: Client, text: str, session_id: Optional[str] = None) -> bool:
    """Records ``text`` as the user's input to the session (the client's by
    default), for rules over ``session.inputs`` and ``from_input``. Returns
    whether it was recorded: ``False`` when the client cannot record inputs
    (an SDK or server without ``record_input``) or refused to; the error is
    logged. Empty text is not recorded.
    """
    if not isinstance(text, str) or not text.strip():
        return False
    recorder = getattr(client, "record_input", None)
    if recorder is None:
        logger.warning("tame: this client cannot record user inputs (no record_input); input not recorded")
        return False
    try:
        recorder(session_id or client.session_id, text)
    except TameSDKException as exc:
        logger.warning("tame: could not record the user's input: %s", exc)
        return False
    return True
