"""
Beats: the heartbeats of one service instance the agent holds, on the schedule of
liveness.py (as late as the MEP's deadline allows), and never faster than the MEP can bear:

* at most L{PER_INTERVAL} attempts within any liveness interval, whatever the MEP answers
  (a failed beat is tried again once, soon, while it can still land in time; after that, the
  next attempt waits for the window);
* during a pause of the budget (a 429 or 503, core/budget.py) a beat waits for the pause to
  end, unless that would miss the instance's deadline: then it goes at its last moment (a
  missed deadline costs more than one refused request);
* an answer that is no heartbeat's business ends the beats and hands over to the keeper: 409
  (the instance is INACTIVE: it needs a repair, which no beat can do) and 404 (the instance
  may be gone: it is read before anything is registered again). A 403 "not ready" has READY
  confirmed again, then the beat is tried again at once (within the limit above).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from attrs import define, field
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_agent.core.budget import Budget
from mep_agent.core.errors import NoToken
from mep_agent.core.liveness import BeatSchedule
from mep_agent.core.ready import Ready
from mep_agent.mp1.client import MepClient, Registration
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.util.retry import sleep
from mep_agent.util.tasks import supervise

PER_INTERVAL = 2  # heartbeat attempts at most, within any liveness interval
RETRY_GAP = 1.0  # seconds from a failed beat to its one quick retry
LOG_EVERY_N_FAILURES = 10


@define
class BeatRecord:
    """A service's heartbeats so far (kept by its keeper across instances), for status."""

    sent: int = 0
    failed: int = 0
    failures: int = 0  # in a row
    last_good: float | None = None
    #: When the MEP's liveness clock last restarted, at the earliest: the send time of the
    #: registration or of the last good heartbeat (see liveness.py).
    reference: float | None = None
    attempts: deque[float] = field(factory=lambda: deque(maxlen=PER_INTERVAL))
    last_error: str | None = None


@define
class Outcomes:
    """Where a beat's verdict goes: the keeper's hands."""

    inactive: Callable[[MepError], object]  # 409: a repair is due
    missing: Callable[[MepError], object]  # 404: read the instance
    failed: Callable[[MepError | NoToken], object]  # anything else (already retried here)
    recovered: Callable[[], object]


class Beats:
    """The heartbeat loop of one held instance; see the module."""

    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        clock: IReactorTime,
        budget: Budget,
        ready: Ready,
        schedule: BeatSchedule,
        record: BeatRecord,
        outcomes: Outcomes,
    ) -> None:
        self._mep = mep
        self._clock = clock
        self._budget = budget
        self._ready = ready
        self._schedule = schedule
        self._record = record
        self._outcomes = outcomes
        self._loop: Deferred[None] | None = None
        self._due = 0.0

    def start(self, registration: Registration, first: float, name: str) -> None:
        """Beat C{registration} from C{first} (clock seconds) on."""
        interval, path = registration.interval, registration.liveness_path
        assert path is not None and interval > 0
        self._due = first

        async def step() -> bool:
            at = self._allowed(interval)
            if at > self._clock.seconds():
                await sleep(self._clock, at - self._clock.seconds())
                return False
            return await self._beat(registration, path, name)

        # A bug in one beat is logged and the beats go on (util/tasks.py).
        self._loop = supervise(self._clock, f"heartbeats of {name}", step)

    def stop(self) -> None:
        """Stop beating (a request under way is abandoned)."""
        if self._loop is not None:
            self._loop.cancel()
            self._loop = None

    def soon(self) -> None:
        """Beat at the next moment the rules allow (the MEP shows the instance SUSPENDED)."""
        self._due = self._clock.seconds()

    def deadline(self, interval: int) -> float | None:
        """When the MEP suspends the instance unless a beat lands first."""
        reference = self._record.reference
        return None if reference is None else reference + interval + self._schedule.grace

    def _allowed(self, interval: int) -> float:
        """The earliest moment the next beat may go (window and pause rules)."""
        at = max(self._due, self._clock.seconds())
        attempts = self._record.attempts
        if len(attempts) == PER_INTERVAL:
            at = max(at, attempts[0] + interval)
        paused = self._budget.paused_until
        if paused > at:
            deadline = self.deadline(interval)
            last = None if deadline is None else deadline - self._schedule.margin(interval)
            # A pause that ends after the last safe moment: the beat goes at that moment (or
            # now, when it has come), not after the pause.
            at = max(at, last) if last is not None and last < paused else paused
        return at

    async def _beat(self, registration: Registration, path: str, name: str) -> bool:
        """One attempt; True when the keeper takes over."""
        record, interval = self._record, registration.interval
        sent = self._clock.seconds()
        record.attempts.append(sent)
        record.sent += 1
        try:
            await self._mep.heartbeat(
                path, registration.liveness_method, self._schedule.timeout(interval)
            )
        except NoToken as e:
            self._failed(e, name)
            self._due = self._clock.seconds() + RETRY_GAP
            return False
        except MepError as e:
            if e.verdict is Verdict.NOT_READY:
                # READY was lost, not this beat: not a failure, but an attempt all the same
                # (a MEP that keeps saying so gets two beats an interval, not a storm).
                await self._ready.lost()
                self._due = self._clock.seconds()
                return False
            record.failed += 1
            if e.status == 409:
                self._outcomes.inactive(e)
                return True
            if e.status == 404:
                self._outcomes.missing(e)
                return True
            self._schedule.observe(self._clock.seconds() - sent)  # a slow MEP fails slowly
            self._failed(e, name)
            self._due = self._clock.seconds() + RETRY_GAP
            return False
        self._good(sent, name)
        self._due = sent + self._schedule.period(interval)
        return False

    def _good(self, sent: float, name: str) -> None:
        record = self._record
        now = self._clock.seconds()
        if record.failures:
            self.log.info(
                "heartbeats of {ser_name} recovered after {failures} failures",
                ser_name=name,
                failures=record.failures,
                event="heartbeat.recovered",
            )
            self._outcomes.recovered()
        record.failures = 0
        record.last_good = now
        record.reference = sent
        record.last_error = None
        self._schedule.observe(now - sent)

    def _failed(self, error: MepError | NoToken, name: str) -> None:
        record = self._record
        if isinstance(error, NoToken):
            record.failed += 1
        record.failures += 1
        record.last_error = error.reason if isinstance(error, NoToken) else str(error)
        self._outcomes.failed(error)
        if record.failures % LOG_EVERY_N_FAILURES == 1:
            self.log.warn(
                "heartbeat of {ser_name} failed ({error}); {failures} in a row",
                ser_name=name,
                error=record.last_error,
                failures=record.failures,
                event="heartbeat.failing",
                status=getattr(error, "status", None),
            )
