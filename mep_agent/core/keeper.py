"""
Keeper: one object the agent keeps at the MEP -- a service instance, an availability
subscription, the termination subscription, or something to be removed -- with one explicit
state machine and the only hands that act on it (docs/architecture.md, "The keeper"):

    WANTED --create--> CREATING --201--> HELD --(drifted, INACTIVE)--> REPAIRING --> HELD
       ^                  |  error          |  (404 on a beat) --> CHECKING --> HELD
       |                  v                 |                         | gone (a list says)
       +---- back-off ----+                 |                         v
       +--------------------------------------------------------- WANTED (made anew)
    (not wanted, or replaced) HELD --> DELETING --> GONE   (replaced: --> WANTED)

It moves on what it is told: what is wanted (the file; nothing, at a termination or for a
leftover), what its own requests answered, what heartbeats answered (core/beats.py), and
what the Reconciler observed (present in some state, absent from a list, or a dead run's
object to adopt). Every failed action is retried after the one back-off (util/retry.py:
capped exponential with full jitter); the budget (core/budget.py) paces every request. A
repair the MEP refuses (405, 501, or a 400 to the update) is never repeated: the instance is
deleted and made anew. An object it holds now is deleted only when it is no longer wanted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mep_agent.core.actions import FOREVER, Actions
from mep_agent.core.beats import BeatRecord, Beats, Outcomes
from mep_agent.core.errors import NoToken
from mep_agent.core.keeping import Counts, KeeperContext, Liveness, Phase
from mep_agent.core.kinds import Held, Listed, MepKind
from mep_agent.core.liveness import BeatSchedule, stagger
from mep_agent.core.owned import Intent
from mep_agent.mp1.client import Registration, Urgency
from mep_agent.mp1.errors import MepError
from mep_agent.util.retry import Alarm
from mep_agent.util.tasks import supervise, wait_at_most


class Keeper(Actions):
    """The state machine of one object; see the module."""

    log = Logger()

    def __init__(
        self,
        kind: MepKind,
        key: str,
        ctx: KeeperContext,
        body: dict[str, Any] | None,
        held: Held | None = None,
    ) -> None:
        """
        @param key: what names it in logs and records (a service name, a subscription label).
        @param body: what is wanted (None: nothing -- C{held} is to be deleted).
        """
        self.kind = kind
        self.key = key
        self._ctx = ctx
        self.body = body
        self.held = held
        self.held_since: float | None = ctx.clock.seconds() if held is not None else None
        self.phase = Phase.WANTED if held is None else Phase.HELD
        self.counts = Counts()
        self.beats = BeatRecord()
        self.last_error: str | None = None
        self.waiting_for_token = False
        self.mep_state: str | None = None  # what the last read saw the MEP hold
        self.mep_seen_at: float | None = None
        self.slot = (0, 1)  # (index, count) among the services: heartbeats are staggered
        self._repair = self._update = self._check = self._replace = False
        self._unresolved: Intent | None = None  # a creation whose answer was lost
        self._lost_since: float | None = None  # when what the MEP lost was made (guard.py)
        self._adoptee: Listed | None = None
        self._adopting: Intent | None = None  # the lost creation an adoption answers
        self._not_before = 0.0
        self._cap_full = False
        self._alarm = Alarm(ctx.clock)
        self._task: Deferred[None] | None = None
        self._posting: Deferred[Any] | None = None
        self._beating: Beats | None = None

    # -- what the holdings tell it -------------------------------------------------------

    def start(self) -> None:
        """Start keeping it."""
        if self._task is None:
            self._task = supervise(self._ctx.clock, f"{self.kind.label} {self.key}", self._drive)

    def want(self, body: dict[str, Any]) -> None:
        """C{body} is wanted now (a reloaded file): updated in place when held."""
        if body != self.body:
            self.body = body
            self._update = self.held is not None
            self.kick(now=True)

    def unwant(self) -> None:
        """Nothing is wanted any more: what is held is deleted."""
        self.body = None
        self.kick(now=True)

    def kick(self, now: bool = False) -> None:
        """Look again at what to do (C{now}: the back-off is over too)."""
        if now:
            self._not_before = 0.0
        self._alarm.wake()

    @property
    def finished(self) -> bool:
        """Nothing wanted and nothing held: this keeper has no work left."""
        return self.body is None and self.held is None and self._posting is None

    @property
    def cap_full(self) -> bool:
        """Its last creation was refused because the platform holds too many."""
        return self._cap_full

    @property
    def healthy(self) -> bool:
        """Held as wanted, and heartbeating when heartbeats are due."""
        return self.phase is Phase.HELD and self.beats.failures == 0 and self.usable

    @property
    def usable(self) -> bool:
        """Whether the agent can act on what it holds (a link to elsewhere: it cannot)."""
        return self.held is None or self.kind.usable(self.held)

    async def close(self, until: float, delete: bool) -> bool:
        """
        Stop keeping it; let a creation under way finish (what the MEP received may well be
        made), then, C{delete}, delete what is held, all by C{until}. True when nothing is
        left behind.
        """
        self._stop_beats()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        clock = self._ctx.clock
        if self._posting is not None:
            if self._ctx.hooks.reached():
                await wait_at_most(clock, self._posting, until - clock.seconds())
            else:  # the MEP answers nothing: nothing was made, there is nothing to wait for
                self._posting.cancel()
        held = self.held
        if not delete or held is None:
            return held is None or not delete
        if not self.kind.usable(held):
            return False
        self.phase = Phase.DELETING
        try:
            urgency = Urgency(max(0.0, until - clock.seconds()), hurry=True)
            confirmed = await self.kind.delete(held, urgency)
        except (MepError, NoToken) as e:
            self._log_failure("delete", e)
            return False
        self._deleted(held, confirmed)
        self.body = None
        return True

    # -- what the Reconciler observed ----------------------------------------------------

    def present(self, listed: Listed, started: float) -> str | None:
        """
        The MEP holds it as C{listed} (a read that began at C{started}); what differs from
        what is wanted is repaired. The kind of difference, if any, for the sync's log.
        """
        self.mep_state, self.mep_seen_at = listed.state, self._ctx.clock.seconds()
        self._check = False
        if self.body is None or self.held is None:
            return None
        wanted = self.body.get("state")
        if listed.state is not None and wanted is not None and listed.state != wanted:
            if listed.state == "SUSPENDED" and self._beating is not None:
                self._beating.soon()  # a beat revives it (mepserver)
            else:
                self._stop_beats()  # they would only hear 409 until it is repaired
                self._repair = True
            self.kick(now=True)
            return listed.state.lower()
        if any(self.body.get(k, v) != v for k, v in listed.echoed.items()):
            self._update = True
            self.kick(now=True)
            return "drifted"
        return None

    def absent(self, started: float) -> bool:
        """
        A list read that began at C{started} does not show what it holds: lost (True), to be
        made anew -- unless it was made after the read began.
        """
        held = self.held
        if held is None or self.held_since is None or self.held_since > started:
            return False  # made after the read began: the list could not show it
        if not self.kind.usable(held):
            return False  # its link leads elsewhere: no list of the MEP's shows it
        self.log.warn(
            "the MEP no longer holds {kind} {key} ({ref}); making it anew",
            **self._names,
            ref=self.kind.ref(held),
            event=f"{self.kind.event}.lost",
        )
        since = self.held_since
        self._ctx.owned.gone(self.kind.ref(held))
        self._forget_held()
        if self._ctx.guard is None:
            self._ctx.ready.maybe_lost(since)
        else:  # READY too waits for the guard: a terminated app is not confirmed again
            self._lost_since = since
        self.kick(now=True)
        return True

    def adopt(self, listed: Listed) -> bool:
        """
        Take over C{listed} -- made just as wanted, by an earlier life of this pod or by a
        creation whose answer was lost -- instead of making another.
        """
        if self.held is not None or self.body is None or self._posting is not None:
            return False
        self._adoptee = listed
        self._adopting, self._unresolved = self._unresolved, None
        self.kick(now=True)
        return True

    def swap(self, listed: Listed) -> None:
        """
        Take C{listed} instead of what it holds or was about to adopt (which it lets go of
        without deleting it: the caller has a stray delete it).
        """
        if self.held is not None:
            self._forget_held()
        self._adoptee = listed
        self.kick(now=True)

    @property
    def claimed(self) -> str | None:
        """The ref of what it holds, or of what it is about to adopt."""
        if self.held is not None:
            return self.kind.ref(self.held)
        return self._adoptee.ref if self._adoptee is not None else None

    def resolving(self) -> Intent | None:
        """The creation whose answer was lost, while it waits for a list to say."""
        return self._unresolved

    # -- the driver: one action at a time --------------------------------------------------

    async def _drive(self) -> bool:
        while True:
            action = self._next()
            if action is None:
                if self.finished:
                    self.phase = Phase.GONE
                    return True
                await self._alarm.sleep(FOREVER)
                continue
            wait = self._not_before - self._ctx.clock.seconds()
            if wait > 0:
                await self._alarm.sleep(wait)
                continue
            await action()

    def _next(self) -> Callable[[], Any] | None:
        held = self.held
        if self.body is None or self._replace:
            if held is not None and self.kind.usable(held):
                return self._delete
            if self.body is None:
                return None
        if held is None:
            return self._adopt if self._adoptee is not None else self._create
        if self._check:
            return self._read
        if self._repair or self._update:
            return self._mend
        self._holding()
        return None

    def _holding(self) -> None:
        self.phase = Phase.HELD
        liveness = self._ctx.liveness
        held = self.held
        if (
            self._beating is None
            and liveness is not None
            and isinstance(held, Registration)
            and held.liveness_path
            and held.interval
        ):
            self._start_beats(liveness, held)

    # -- heartbeats ------------------------------------------------------------------------

    def _start_beats(self, liveness: Liveness, held: Registration) -> None:
        clock = self._ctx.clock
        schedule = BeatSchedule(liveness.request_timeout, liveness.grace(held.interval))
        outcomes = Outcomes(
            self._beat_inactive, self._beat_missing, self._beat_failed, self._beat_ok
        )
        beats = Beats(
            liveness.mep, clock, liveness.budget, self._ctx.ready, schedule, self.beats, outcomes
        )
        reference = self.beats.reference
        if reference is None:
            reference = self.beats.reference = clock.seconds()
        period = schedule.period(held.interval)
        first = reference + period - stagger(period, *self.slot)
        if self._beat_at_once:
            self._beat_at_once = False
            first = clock.seconds()
        self._beating = beats
        beats.start(held, first, self.key)

    def _stop_beats(self) -> None:
        if self._beating is not None:
            self._beating.stop()
            self._beating = None

    def _beat_inactive(self, error: MepError) -> None:
        self.log.warn(
            "{noun} {key} is INACTIVE on the MEP; restoring {state}",
            **self._names,
            state=(self.body or {}).get("state"),
            event=f"{self.kind.event}.inactive",
        )
        self._beating = None
        self._repair = True
        self.kick(now=True)

    def _beat_missing(self, error: MepError) -> None:
        self._beating = None
        self._check = True
        self.kick(now=True)

    def _beat_failed(self, error: MepError | NoToken) -> None:
        self.waiting_for_token = isinstance(error, NoToken)
        self.last_error = error.reason if isinstance(error, NoToken) else str(error)

    def _beat_ok(self) -> None:
        self.waiting_for_token = False
        self.last_error = None

    # -- small things ----------------------------------------------------------------------

    def _forget_held(self) -> None:
        self._stop_beats()
        self.held = self.held_since = None
        self.beats.reference = None
        self.mep_state = None
        self._check = self._repair = False
        self._update = False
        self.phase = Phase.WANTED if self.body is not None else Phase.GONE
