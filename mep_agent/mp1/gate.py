"""
The request gate: the seam between the wire and whatever paces the agent's requests to the
MEP (the core's budget, core/budget.py). Every exchange is admitted by the gate before it
is sent and reported to it once answered, with the status and the answer's C{Retry-After}:
so the gate sees everything the MEP says, and nothing reaches the MEP that it did not let
through.
"""

from __future__ import annotations

from collections.abc import Awaitable
from email.utils import parsedate_to_datetime
from typing import Protocol

from attrs import frozen
from twisted.internet.defer import succeed

MAX_RETRY_AFTER = 3600.0  # a longer Retry-After is taken as this many seconds


@frozen
class Pace:
    """How a request is to be admitted."""

    #: The caller must be done by then (a stop, a termination): it goes first, unpaced.
    urgent_until: float | None = None
    #: Clean-up (a leftover's deletion): it waits behind every other request.
    background: bool = False


class RequestGate(Protocol):
    """Admits each request to the MEP and hears each answer."""

    def admit(self, operation: str, pace: Pace) -> Awaitable[None]:
        """
        Fire when C{operation} may be sent (MepError when it may not be sent at all), as
        C{pace} says.
        """
        ...

    def answered(self, operation: str, status: int | None, retry_after: float | None) -> None:
        """The MEP answered C{status} (None: no answer) with C{retry_after} seconds, if any."""
        ...


class OpenGate:
    """A gate that lets everything through at once (tools, and tests of the wire)."""

    def admit(self, operation: str, pace: Pace) -> Awaitable[None]:
        """At once."""
        return succeed(None)

    def answered(self, operation: str, status: int | None, retry_after: float | None) -> None:
        """Ignored."""


def retry_after(value: str | None, now: float) -> float | None:
    """
    C{Retry-After} (RFC 9110 section 10.2.3) in seconds from C{now}: delay-seconds or an
    HTTP-date; None when absent or unreadable; at most L{MAX_RETRY_AFTER}.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit() and len(text) <= 10:
        return min(float(text), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(text).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return min(max(0.0, when - now), MAX_RETRY_AFTER)
