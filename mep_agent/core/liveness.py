"""
When to send a service's next heartbeat, and how long it may take.

The MEP suspends a service whose last heartbeat is older than its deadline: the interval
it imposed plus a grace (mepserver: min(ceil(5 % of the interval), 5) s, 63 s for 60; MEC
011 names none, so none is assumed there). A beat is sent as late as that deadline allows,
counted from when the previous good beat was *sent* (it reached the MEP no earlier), less
the beat's own timeout (a beat that takes all of it still lands in time) and a small
safety margin. The timeout follows the latencies observed lately (answers and failures
alike): three times the slowest of the last few beats, at least 5 % of the interval (1 s
minimum); before any is observed, the request timeout; never more than the request timeout
or half the deadline. So a fast MEP gets about one beat per interval, and a MEP
whose answers take 40 % of the interval gets beats early enough never to be suspended.
"""

from __future__ import annotations

from collections import deque

SAMPLES = 5  # the latencies remembered: the slowest of them sets the timeout
LATENCY_FACTOR = 3.0  # a beat may take this many times the slowest recent one
TIMEOUT_FLOOR = 1.0  # seconds: no beat is abandoned sooner ...
TIMEOUT_FLOOR_FRACTION = 0.05  # ... nor before 5 % of the interval
SAFETY_FRACTION = 0.05  # beat this much of the interval before the last moment ...
SAFETY_MAX = 0.5  # ... but never more than half a second earlier


def stagger(period: float, index: int, count: int) -> float:
    """
    How much sooner than the period the first beat of the C{index}th of C{count} services
    goes after their registration: services registered together would otherwise beat
    together forever, each burst opening new connections to the MEP. Spread evenly over
    the period, one connection carries them all (one early beat per service, once).
    """
    return period * index / count if count > 1 else 0.0


class BeatSchedule:
    """The schedule of one service's heartbeats; fed with the latency of every good beat."""

    def __init__(self, request_timeout: float, grace: float) -> None:
        """
        @param request_timeout: the longest any request to the MEP may take.
        @param grace: seconds the MEP waits past the interval before suspending.
        """
        self._request_timeout = request_timeout
        self.grace = grace
        self._latencies: deque[float] = deque(maxlen=SAMPLES)

    def observe(self, seconds: float) -> None:
        """A beat was answered (or failed, or timed out) after C{seconds}."""
        self._latencies.append(max(0.0, seconds))

    def timeout(self, interval: int) -> float:
        """How long the next beat may take."""
        deadline = interval + self.grace
        if not self._latencies:  # nothing observed yet: allow what any request may take
            return min(self._request_timeout, deadline / 2)
        slowest = max(self._latencies)
        wanted = max(TIMEOUT_FLOOR, TIMEOUT_FLOOR_FRACTION * interval, LATENCY_FACTOR * slowest)
        return min(self._request_timeout, deadline / 2, wanted)

    def margin(self, interval: int) -> float:
        """How long before the deadline a beat must go at the latest: its timeout and more."""
        return self.timeout(interval) + min(SAFETY_MAX, SAFETY_FRACTION * interval)

    def period(self, interval: int) -> float:
        """Seconds from sending a good beat to sending the next (never beyond the interval)."""
        deadline = interval + self.grace
        safety = min(SAFETY_MAX, SAFETY_FRACTION * interval)
        return min(float(interval), deadline - self.timeout(interval) - safety)
