"""
The one retry discipline: capped exponential back-off with full jitter, as a policy of the
shape of Twisted's C{twisted.application.internet.backoffPolicy} (a function from the
number of failures so far to a delay), plus a cancellable sleep on the injected clock.
Every failed MEP action of the agent is retried after such a delay: the token, each object
the agent keeps at the MEP, READY.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

#: The delay before retry number C{attempt} (0: the first retry after a first failure).
Policy = Callable[[int], float]
#: A fresh iterator of delays, once per run of failures.
Delays = Callable[[], Iterator[float]]

INITIAL = 1.0  # seconds: the ceiling of the first retry's delay
MAXIMUM = 60.0  # seconds: no delay is ever longer (no single answer parks work for minutes)


def full_jitter(
    initial: float = INITIAL,
    maximum: float = MAXIMUM,
    factor: float = 2.0,
    rng: Callable[[], float] = random.random,
) -> Policy:
    """
    Capped exponential back-off with full jitter: the delay is drawn uniformly between 0
    and min(C{maximum}, C{initial} x C{factor} ** attempt). Many agents failing together
    (a MEP restart) spread their retries over the whole window instead of retrying in
    step; the ceiling grows until C{maximum} and stays there. C{rng} returns [0, 1).
    """

    def policy(attempt: int) -> float:
        ceiling = min(maximum, initial * factor ** min(max(attempt, 0), 64))
        return ceiling * rng()

    return policy


def delays_of(policy: Policy) -> Iterator[float]:
    """C{policy}'s delays for a run of failures: policy(0), policy(1) ..."""
    attempt = 0
    while True:
        yield policy(attempt)
        attempt += 1


def backoff(rng: Callable[[], float] = random.random) -> Iterator[float]:
    """The agent's default delays (L{full_jitter} with its defaults), as an iterator."""
    return delays_of(full_jitter(rng=rng))


def sleep(clock: IReactorTime, seconds: float) -> Deferred[None]:
    """A Deferred that fires after seconds on clock; cancelling it ends the wait early."""
    return deferLater(clock, seconds, lambda: None)


class Alarm:
    """A sleep that L{wake} can end early (to act now instead of at the next period)."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._nap: Deferred[None] | None = None
        self._woken = False

    async def sleep(self, seconds: float) -> None:
        """Return after C{seconds} or when woken; a cancellation of the caller propagates."""
        self._woken = False
        nap = self._nap = sleep(self._clock, seconds)
        try:
            await nap
        except CancelledError:
            if not self._woken:
                raise
        finally:
            self._nap = None

    def wake(self) -> None:
        """End the current sleep now; without one, nothing happens."""
        if self._nap is not None:
            self._woken = True
            self._nap.cancel()
