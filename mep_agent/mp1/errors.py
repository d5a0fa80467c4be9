"""
A MEP call that did not succeed (L{MepError}) or had no token (L{NoToken}), and the one
place that decides what a MEP answer means (L{classify}, its L{Verdict}: how the caller
should react).
"""

from __future__ import annotations

import enum
import re
from typing import Any


class Verdict(enum.Enum):
    """What a failed MEP call means for the caller."""

    #: No answer, a timeout, 5xx, 408 or 429: retry with the normal backoff.
    TRANSIENT = "transient"
    #: The gateway no longer accepts the token (401, or 403 about the token): get a new one.
    TOKEN_REFUSED = "token_refused"
    #: mepauth refused the signed request (401): AK/SK wrong; counts towards its lock-out.
    CREDENTIALS_REFUSED = "credentials_refused"
    #: mepauth locked the AK (403 "Access is locked."): wait the lock out.
    LOCKED = "locked"
    #: Refused because the app is not READY (MEC 011 v2.2.1 platforms refuse every Mp1
    #: call until confirm_ready, and again after losing their state): confirm, then retry.
    NOT_READY = "not_ready"
    #: Any other 4xx: the request itself is refused; retry rarely.
    REFUSED = "refused"
    #: A redirect or an answer that breaks the protocol (shape, size, type): normal backoff.
    UNEXPECTED = "unexpected"


def classify(operation: str, status: int | None, body: Any) -> Verdict:
    """
    The verdict for an answer with C{status} (None: no answer) to C{operation}.

    mepauth (operation "token") answers 401 to a bad signature and 403 with the JSON string
    "Access is locked." when the AK is locked; a 403 that does not say so (another gateway's,
    a proxy's) is a refusal like any other, retried with back-off, not a 900 s wait. On Mp1
    calls Kong answers 401 for a missing, expired or foreign token and 403 with its
    C{{"message": ...}} body for a token it cannot verify (a MEP that rotated its key);
    mepserver's own 403s are ProblemDetails and mean something else.
    """
    if status is None or status >= 500 or status in (408, 429):
        return Verdict.TRANSIENT
    if 300 <= status < 400:
        return Verdict.UNEXPECTED
    if operation == "token":
        if status == 401:
            return Verdict.CREDENTIALS_REFUSED
        if status == 403 and _says_locked(body):
            return Verdict.LOCKED
        return Verdict.UNEXPECTED if status < 300 else Verdict.REFUSED
    if status == 401:
        return Verdict.TOKEN_REFUSED
    if status == 403 and _is_gateway_body(body):
        return Verdict.TOKEN_REFUSED
    if status == 403 and _says_not_ready(body):
        return Verdict.NOT_READY  # on any Mp1 call: READY was lost (docs/protocol.md)
    if 400 <= status < 500:
        return Verdict.REFUSED
    return Verdict.UNEXPECTED


def _says_locked(body: Any) -> bool:
    # mepauth: the JSON string "Access is locked." (docs/protocol.md, the token request)
    if isinstance(body, dict):
        body = " ".join(str(body.get(k, "")) for k in ("message", "title", "detail"))
    return isinstance(body, str) and re.search(r"\blocked\b", body.lower()) is not None


def _is_gateway_body(body: Any) -> bool:
    return isinstance(body, dict) and "message" in body and "status" not in body


def _says_not_ready(body: Any) -> bool:
    # Observed: ProblemDetails "App Instance not ready. Waiting for AppReadyConfirmation."
    if not isinstance(body, dict):
        return False
    text = " ".join(str(body.get(k, "")) for k in ("title", "detail")).lower()
    return "not ready" in text or "appreadyconfirmation" in text


class MepError(Exception):
    """
    A MEP call that did not succeed. C{status} is the HTTP status, or None when no answer
    arrived (connection refused, TLS failure, timeout). The message never holds a secret:
    L{mep_agent.mp1.client.MepClient} redacts every detail before it builds one.

    @ivar verdict: how the caller should react (L{classify}).
    @ivar body: the parsed JSON body of the answer, when there was one.
    """

    def __init__(
        self,
        operation: str,
        status: int | None,
        detail: str,
        body: Any = None,
        verdict: Verdict | None = None,
    ) -> None:
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{operation}: {where}: {detail}")
        self.operation = operation
        self.status = status
        self.detail = detail
        self.body = body
        self.verdict = verdict if verdict is not None else classify(operation, status, body)

    @property
    def transient(self) -> bool:
        """Worth retrying with the normal backoff (not a refusal of the request itself)."""
        return self.verdict in (Verdict.TRANSIENT, Verdict.UNEXPECTED, Verdict.TOKEN_REFUSED)


class NoToken(Exception):
    """
    No valid token within the caller's deadline: what a L{TokenSource} raises (the core's
    token keeper). C{first}: none was ever obtained; C{state}: the keeper's state; the
    web side answers 412 or 503 with them.
    """

    def __init__(self, first: bool, state: str, reason: str) -> None:
        super().__init__(reason)
        self.first = first
        self.state = state
        self.reason = reason
