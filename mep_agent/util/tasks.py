"""
Background work of the services: one supervised loop that a stop cancels and a bug
never ends, and clean-up calls run in parallel under one deadline so that a stop is
always bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

log = Logger()

#: After an unexpected error (a bug) a loop pauses this long, then carries on.
UNEXPECTED_PAUSE = 5.0


def supervise(
    clock: IReactorTime,
    what: str,
    step: Callable[[], Awaitable[bool]],
    pause: float = UNEXPECTED_PAUSE,
) -> Deferred[None]:
    """
    Start a loop that awaits C{step()} until it returns True. Cancelling the returned
    Deferred (how a service stops) ends it quietly; any other exception is a bug: it is
    logged with its traceback (level error, event C{agent.bug}) and the loop carries on
    after C{pause} seconds, so that one bad answer never silently ends a service's work.
    """

    async def loop() -> None:
        while True:
            try:
                if await step():
                    return
            except CancelledError:
                raise
            except Exception:
                log.failure(
                    "{what}: unexpected error; carrying on in {pause:.0f}s",
                    what=what,
                    pause=pause,
                    level=LogLevel.error,
                    event="agent.bug",
                )
                await deferLater(clock, pause, lambda: None)

    def stopped(failure: Failure) -> None:
        failure.trap(CancelledError)  # a stop; anything else was handled in the loop

    return ensureDeferred(loop()).addErrback(stopped)


def bounded(
    clock: IReactorTime, timeout: float, calls: list[Callable[[], Awaitable[object]]]
) -> Deferred[list[bool]]:
    """
    Start every call now; fire with one success flag per call once all are done or
    C{timeout} seconds have passed (unfinished calls are cancelled and count as failed).
    Never fails.
    """
    deferreds = [ensureDeferred(_as_coroutine(call)) for call in calls]
    for d in deferreds:
        d.addTimeout(timeout, clock)
    done: Deferred[list[tuple[bool, Any]]] = DeferredList(deferreds, consumeErrors=True)
    return done.addCallback(lambda results: [ok for ok, _ in results])


def _as_coroutine(call: Callable[[], Awaitable[object]]) -> Coroutine[Any, Any, object]:
    async def run() -> object:
        return await call()

    return run()


class InFlight:
    """
    The creations (POSTs) under way, so that a stop can wait for them instead of
    abandoning them: a POST the MEP received may well be carried out, and what it created
    must then be deleted with the rest (a stop leaves nothing behind).
    """

    def __init__(self) -> None:
        self._calls: set[Deferred[Any]] = set()

    def track(self, call: Awaitable[Any]) -> Deferred[Any]:
        """Start C{call} and keep it listed until it is done."""
        d = ensureDeferred(_as_awaited(call))
        self._calls.add(d)

        def done(result: object) -> object:
            self._calls.discard(d)
            return result

        return d.addBoth(done)

    async def settle(self, clock: IReactorTime, timeout: float) -> None:
        """Wait until every call under way is done, or C{timeout}; none is cancelled."""
        if self._calls:
            await wait_at_most(clock, DeferredList(list(self._calls)), timeout)


async def wait_at_most(clock: IReactorTime, watched: Deferred[Any], seconds: float) -> None:
    """
    Return once C{watched} has fired or C{seconds} have passed, whichever comes first;
    C{watched} is neither cancelled nor changed (its result goes on down its chain).
    """
    if watched.called or seconds <= 0:
        return
    waiter: Deferred[None] = Deferred()

    def fired(result: object) -> object:
        if not waiter.called:
            waiter.callback(None)
        return result

    watched.addBoth(fired)
    waiter.addTimeout(seconds, clock, onTimeoutCancel=lambda result, timeout: None)
    await waiter


async def _as_awaited(call: Awaitable[Any]) -> Any:
    return await call


async def stop_and_clean_up(
    clock: IReactorTime,
    timeout: float,
    in_flight: InFlight,
    tasks: list[Deferred[None]],
    clean_up: Callable[[], list[Callable[[], Awaitable[object]]]],
) -> list[bool]:
    """
    A stop that leaves nothing behind, within C{timeout} in all: let the creations under way
    finish, stop the C{tasks}, then run the calls C{clean_up()} lists (made only now, so they
    see what those creations made) in parallel; one success flag per call.
    """
    deadline = clock.seconds() + timeout
    await in_flight.settle(clock, timeout)
    for task in tasks:
        task.cancel()
    return await bounded(clock, max(0.0, deadline - clock.seconds()), clean_up())


def follow(watched: Deferred[Any]) -> Deferred[None]:
    """A Deferred that fires (with None) when C{watched} does, leaving its result alone."""
    follower: Deferred[None] = Deferred()

    def fired(result: object) -> object:
        if not follower.called:
            follower.callback(None)
        return result

    watched.addBoth(fired)
    return follower
