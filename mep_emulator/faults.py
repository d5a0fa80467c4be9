"""
Fault injection for the emulator: fail, delay or drop the next N requests of a kind.

Kinds name what the agent does: token, register, heartbeat, deregister, discovery,
subscribe (creating a subscription, or reading one), unsubscribe, update, service (other
per-service reads), sync (the lists of the app's services and subscriptions),
confirm_ready, confirm_termination, or any.
"""

from __future__ import annotations

from typing import Any

from attrs import define, field, frozen

KINDS = (
    "token",
    "register",
    "heartbeat",
    "deregister",
    "discovery",
    "subscribe",
    "unsubscribe",
    "confirm_ready",
    "confirm_termination",
    "service",
    "update",
    "sync",
    "any",
)


class BadFault(ValueError):
    """A control request that does not describe a fault."""


@frozen
class Fault:
    """One injected misbehaviour; see the README's control API."""

    kind: str
    status: int | None = None  # answer this status instead of handling the request
    body: Any = None  # the JSON body of that answer (default: a ProblemDetails)
    delay: float = 0.0  # seconds to wait before answering (or handling)
    drop: bool = False  # close the connection without an answer
    raw: str | None = None  # the answer's body exactly as given (not JSON-encoded)
    headers: tuple[tuple[str, str], ...] = ()  # extra response headers (e.g. Location)
    gzip: bool = False  # send the body gzip-compressed (Content-Encoding: gzip)

    @classmethod
    def from_json(cls, data: Any) -> tuple[Fault, int]:
        """Parse a control-API body into a fault and how many requests it applies to."""
        if not isinstance(data, dict):
            raise BadFault("body must be a JSON object")
        kind = data.get("kind", "any")
        if kind not in KINDS:
            raise BadFault(f"kind must be one of {', '.join(KINDS)}")
        count = data.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise BadFault("count must be a positive integer")
        status = data.get("status")
        if status is not None and (
            isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599
        ):
            raise BadFault("status must be an HTTP status code")
        delay = data.get("delay", 0)
        if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
            raise BadFault("delay must be a non-negative number of seconds")
        drop = data.get("drop", False)
        if not isinstance(drop, bool):
            raise BadFault("drop must be true or false")
        if status is None and not drop and not delay:
            raise BadFault("a fault needs a status, a delay or drop")
        raw = data.get("raw")
        if raw is not None and not isinstance(raw, str):
            raise BadFault("raw must be a string")
        headers = data.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise BadFault("headers must be an object of strings")
        gzip = data.get("gzip", False)
        if not isinstance(gzip, bool):
            raise BadFault("gzip must be true or false")
        fault = cls(
            kind,
            status,
            data.get("body"),
            float(delay),
            drop,
            raw,
            tuple(sorted(headers.items())),
            gzip,
        )
        return fault, count


@define
class FaultPlan:
    """Queued faults; each request takes the first matching one and uses it up."""

    _queue: list[list[Any]] = field(factory=list)  # [fault, remaining]

    def add(self, fault: Fault, count: int) -> None:
        """Queue C{fault} for the next C{count} requests of its kind."""
        self._queue.append([fault, count])

    def take(self, kind: str) -> Fault | None:
        """The fault for a request of C{kind}, used up by this request; None if none."""
        for entry in self._queue:
            fault: Fault = entry[0]
            if fault.kind in (kind, "any"):
                entry[1] -= 1
                if entry[1] == 0:
                    self._queue.remove(entry)
                return fault
        return None

    def clear(self) -> None:
        """Forget every queued fault."""
        self._queue.clear()

    def describe(self) -> list[dict[str, Any]]:
        """The queue as JSON, for the control API."""
        return [
            {"kind": f.kind, "status": f.status, "delay": f.delay, "drop": f.drop, "remaining": n}
            for f, n in self._queue
        ]
