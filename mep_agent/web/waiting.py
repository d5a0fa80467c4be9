"""
The waiting room of blocking discovery (C{?wait=}): requests parked per service name until
the name's answer may have changed or their own deadline passes. Built for ten thousand idle
waiters: a waiter is one small slotted object in a dict and in a heap of deadlines, with one
timer for the whole room, instead of a Deferred, a coroutine and a timer each (which cost
13.5 KiB per waiter, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Waiter:
    """
    One parked request: C{wake(subject)} is called once, on a change or at the deadline,
    unless it L{leave}s first. The subject rides along so that parking allocates no
    closure per waiter.
    """

    __slots__ = ("room", "name", "deadline", "wake", "subject", "done")

    def __init__(
        self,
        room: WaitingRoom,
        name: str,
        deadline: float,
        wake: Callable[[Any], object],
        subject: Any,
    ) -> None:
        self.room = room
        self.name = name
        self.deadline = deadline
        self.wake = wake
        self.subject = subject
        self.done = False

    def leave(self) -> None:
        """Stop waiting (the caller went away): never woken."""
        self.room.leave(self)

    def fire(self) -> None:
        """Wake the caller with the subject it waited for (once)."""
        wake, subject = self.wake, self.subject
        self.subject = None
        wake(subject)


class WaitingRoom:
    """Waiters per name, woken together by L{wake_all} or one by one at their deadline."""

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock
        self._by_name: dict[str, dict[Waiter, None]] = {}
        self._deadlines: list[tuple[float, int, Waiter]] = []
        self._order = itertools.count()
        self._timer: IDelayedCall | None = None
        self._count = 0

    def __len__(self) -> int:
        """Waiters parked now."""
        return self._count

    def park(
        self, name: str, timeout: float, wake: Callable[[Any], object], subject: Any = None
    ) -> Waiter:
        """Park a waiter for C{name} for at most C{timeout} seconds."""
        waiter = Waiter(self, name, self._clock.seconds() + timeout, wake, subject)
        self._by_name.setdefault(name, {})[waiter] = None
        heapq.heappush(self._deadlines, (waiter.deadline, next(self._order), waiter))
        self._count += 1
        if self._timer is None or waiter.deadline < self._timer.getTime():
            self._arm()
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """C{waiter} stops waiting (its caller went away); it is not woken."""
        if not waiter.done:
            waiter.subject = None
            self._remove(waiter)

    def wake_all(self, name: str) -> None:
        """Wake every waiter of C{name}."""
        waiters = self._by_name.pop(name, None)
        if waiters is None:
            return
        for waiter in waiters:
            waiter.done = True
            self._count -= 1
        for waiter in waiters:
            waiter.fire()
        self._compact()

    def close(self) -> None:
        """Wake everyone now (the agent is stopping) and stop the timer."""
        for name in list(self._by_name):
            self.wake_all(name)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _remove(self, waiter: Waiter) -> None:
        waiter.done = True
        self._count -= 1
        waiters = self._by_name.get(waiter.name)
        if waiters is not None:
            waiters.pop(waiter, None)
            if not waiters:
                del self._by_name[waiter.name]
        self._compact()

    def _expire(self) -> None:
        self._timer = None
        now = self._clock.seconds()
        due: list[Waiter] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            waiter = heapq.heappop(self._deadlines)[2]
            if not waiter.done:
                self._remove(waiter)
                due.append(waiter)
        for waiter in due:
            waiter.fire()
        if self._deadlines and self._timer is None:
            self._arm()

    def _arm(self) -> None:
        self._drop_done_heads()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self._deadlines:
            delay = max(0.0, self._deadlines[0][0] - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._expire)

    def _drop_done_heads(self) -> None:
        while self._deadlines and self._deadlines[0][2].done:
            heapq.heappop(self._deadlines)

    def _compact(self) -> None:
        # Woken and departed waiters stay in the heap until their deadline; rebuild it
        # when they outnumber the parked ones, so that churn cannot grow it.
        if len(self._deadlines) > 2 * self._count + 64:
            self._deadlines = [entry for entry in self._deadlines if not entry[2].done]
            heapq.heapify(self._deadlines)
            if not self._deadlines and self._timer is not None:
                self._timer.cancel()
                self._timer = None


def when_gone(request: Any, callback: Callable[[], object]) -> None:
    """
    Call C{callback} once if C{request}'s connection is lost before it is answered: through
    the hardened site's cheap hook (site.LimitedRequest.gone) when there is one, else
    through twisted.web's notifyFinish Deferred.
    """
    if hasattr(request, "gone"):
        request.gone = callback
        return
    request.notifyFinish().addErrback(lambda _: callback())
