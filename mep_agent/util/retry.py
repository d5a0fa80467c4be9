"""
The one retry policy: capped exponential delays with jitter, and a cancellable sleep on
the injected clock. Used for the token, registrations, heartbeats and subscriptions.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater

#: A fresh iterator of delays, once per run of failures.
Delays = Callable[[], Iterator[float]]


def backoff(
    initial: float = 1.0,
    maximum: float = 60.0,
    factor: float = 2.0,
    jitter: float = 0.2,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """
    1, 2, 4 ... seconds up to C{maximum}, each shortened by up to C{jitter} (a fraction)
    so that many agents restarted together do not retry in step. Never exceeds maximum.
    """
    delay = initial
    while True:
        yield delay * (1 - jitter * rng())
        delay = min(delay * factor, maximum)


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
