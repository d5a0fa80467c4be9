"""
Background coroutines of the services: started with their crashes logged, and ended
(for clean-up calls) in parallel with one deadline, so that a stop is always bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

log = Logger()


def start_task(coroutine: Coroutine[Any, Any, None], what: str) -> Deferred[None]:
    """
    Run a service's background coroutine. A crash is logged with its traceback (it would
    otherwise vanish with the Deferred); a cancellation, which is how a stop ends it, is not.
    """
    task = ensureDeferred(coroutine)

    def crashed(failure: Any) -> None:
        if not failure.check(CancelledError):
            log.failure("{what} task crashed", failure, what=what)

    task.addErrback(crashed)
    return task


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
