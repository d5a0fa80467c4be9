"""
The one retry policy: capped exponential delays with jitter, and a cancellable sleep on
the injected clock. Used for the token, registrations, heartbeats and subscriptions.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger

from .mep import MepError

T = TypeVar("T")
log = Logger()
# After an unexpected error (a bug) a loop pauses this long, then carries on.
UNEXPECTED_PAUSE = 5.0


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

    def __init__(self, clock: IReactorTime, running: Callable[[], object]) -> None:
        self._clock = clock
        self._running = running
        self._nap: Deferred[None] | None = None

    async def sleep(self, seconds: float) -> None:
        """Return after seconds or when woken; raise CancelledError when stopped."""
        self._nap = sleep(self._clock, seconds)
        try:
            await self._nap
        except CancelledError:
            if not self._running():
                raise
        finally:
            self._nap = None

    def wake(self) -> None:
        if self._nap is not None:
            self._nap.cancel()


async def until_success(
    clock: IReactorTime,
    call: Callable[[], Awaitable[T]],
    keep_going: Callable[[], bool],
    delays: Iterator[float],
    refused_delay: float,
    on_error: Callable[[MepError, float], None],
) -> T | None:
    """
    Await C{call} until it succeeds: after a transient MepError wait the next backoff
    delay, after a refusal (a 4xx that will not fix itself) wait C{refused_delay}.
    C{on_error} reports each failure with the delay chosen. None if stopped first.
    """
    while keep_going():
        try:
            return await call()
        except MepError as e:
            delay = next(delays) if e.transient else refused_delay
            on_error(e, delay)
        except CancelledError:
            raise
        except Exception:
            # A bug must not end the retrying for good: log it and try again.
            delay = next(delays)
            log.failure("unexpected error; retrying in {delay:.1f}s", delay=delay)
        await sleep(clock, delay)
    return None
