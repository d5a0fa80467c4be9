"""
Blocking queries (C{?wait=}), all of them: the waiting room where parked requests wait,
the parsing of C{?wait=} and of the index header, and the two things one can wait for:
a discovery answer that may have changed (L{DiscoveryWaits}, fed by the cache's change
hook) and a termination notice (L{TerminationWaits}, fed by the terminator's).

The room is built for ten thousand idle waiters: a waiter is one small slotted object in
a dict and in a heap of deadlines, with one timer for the whole room, instead of a
Deferred, a coroutine and a timer each (which cost 13.5 KiB per waiter,
benchmarks/RESULTS.md). Waiting asks the MEP nothing.
"""

from __future__ import annotations

import heapq
import itertools
import re
from collections.abc import Callable
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from mep_agent.web.problems import ApiProblem
from mep_agent.web.site import LimitedRequest


class ChangingAnswers(Protocol):
    """What blocking discovery needs of the cache (core/discovery.py): versions, and a hook."""

    def index(self, name: str) -> int:
        """The version of C{name}'s answer."""
        ...

    def on_change(self, hook: Callable[[str], object]) -> None:
        """C{hook(name)} whenever C{name}'s answer may have changed."""
        ...


class Notices(Protocol):
    """What a termination wait needs of the terminator (core/termination.py)."""

    def on_notice(self, hook: Callable[[], object]) -> None:
        """C{hook()} when a notice comes, and at stop."""
        ...


INDEX_HEADER = b"X-Mep-Agent-Index"
MAX_WAIT = 300.0
_WAIT = re.compile(r"(\d{1,6})(ms|s|m)?")


def parse_wait(text: str) -> float:
    """?wait=30s, 500ms, 5m or plain seconds, at most MAX_WAIT; ApiProblem 400 otherwise."""
    match = _WAIT.fullmatch(text)
    if match is None:
        raise ApiProblem(400, "wait must be a duration such as 30s, 500ms or 5m")
    number, unit = int(match.group(1)), match.group(2) or "s"
    seconds = number / 1000 if unit == "ms" else number * 60 if unit == "m" else number
    return float(min(seconds, MAX_WAIT))


def request_index(request: IRequest) -> int:
    """The X-Mep-Agent-Index the application sent (0 without); ApiProblem 400 if malformed."""
    given = request.getHeader(INDEX_HEADER)
    if given is not None and not given.isdigit():
        raise ApiProblem(400, f"{INDEX_HEADER.decode()} must be a whole number")
    return int(given) if given else 0


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


def when_gone(request: Request, callback: Callable[[], object]) -> None:
    """
    Call C{callback} once if C{request}'s connection is lost before it is answered: through
    the hardened site's cheap hook (L{LimitedRequest.gone}) when it is one, else through
    twisted.web's notifyFinish Deferred.
    """
    if isinstance(request, LimitedRequest):
        request.gone = callback
        return
    request.notifyFinish().addErrback(lambda _: callback())


class DiscoveryWaits:
    """Requests parked until a service name's discovery answer may have changed."""

    def __init__(self, cache: ChangingAnswers, clock: IReactorTime) -> None:
        self._cache = cache
        self._room = WaitingRoom(clock)
        cache.on_change(self._room.wake_all)

    def __len__(self) -> int:
        return len(self._room)

    def park(
        self, name: str, index: int, timeout: float, wake: Callable[[Any], object], subject: Any
    ) -> Waiter | None:
        """
        None when C{index} is not C{name}'s current one (the caller answers at once); else
        C{wake(subject)} is called when it changes (a notification, a different MEP answer)
        or after C{timeout} seconds.
        """
        if self._cache.index(name) != index:
            return None
        return self._room.park(name, timeout, wake, subject)

    def close(self) -> None:
        """The agent is stopping: every parked request wakes now."""
        self._room.close()


class TerminationWaits:
    """Requests waiting for a termination notice (GET /termination?wait=)."""

    def __init__(self, terminator: Notices, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiters: list[Deferred[None]] = []
        terminator.on_notice(self.wake_all)

    def wait(self, seconds: float) -> Deferred[None]:
        """Fires when a termination is announced, or after C{seconds} (cancellable)."""
        d: Deferred[None] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        d.addTimeout(seconds, self._clock, onTimeoutCancel=lambda result, timeout: None)
        return d

    def wake_all(self) -> None:
        """A notice came, or the agent is stopping: every waiter reads the state now."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    close = wake_all
