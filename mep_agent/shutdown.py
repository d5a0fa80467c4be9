"""Runs clean-up calls in parallel with one deadline, so that a stop is always bounded."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from twisted.internet.defer import Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime


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
    done = DeferredList(deferreds, consumeErrors=True)
    return done.addCallback(lambda results: [ok for ok, _ in results])


async def _as_coroutine(call: Callable[[], Awaitable[object]]) -> object:
    return await call()
