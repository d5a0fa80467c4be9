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

import enum
from collections import Counter
from collections.abc import Callable
from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import CancelledError, Deferred, DeferredSemaphore, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from mep_agent.core.beats import BeatRecord, Beats, Outcomes
from mep_agent.core.budget import Budget
from mep_agent.core.errors import NoToken
from mep_agent.core.kinds import Held, Listed, MepKind
from mep_agent.core.liveness import BeatSchedule, stagger
from mep_agent.core.owned import Intent, Owned, body_digest
from mep_agent.core.ready import Ready
from mep_agent.core.syncs import SyncRequests
from mep_agent.mp1.client import MepClient, Registration, Subscription, Urgency
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.util.retry import Alarm, Policy
from mep_agent.util.tasks import supervise, wait_at_most

FOREVER = 365 * 24 * 3600.0
LOG_EVERY_N_FAILURES = 10
#: Answers to an update that say the platform will not change the object in place.
UPDATE_REFUSED = (400, 405, 501)


class Phase(enum.Enum):
    """Where one object stands."""

    WANTED = "wanted"  # to be made (waiting for its turn, READY, the back-off)
    CREATING = "creating"
    HELD = "held"
    REPAIRING = "repairing"  # held, but not as wanted: an update under way
    CHECKING = "checking"  # held, maybe lost (a 404): read before anything is made anew
    DELETING = "deleting"
    GONE = "gone"


@frozen
class Liveness:
    """What heartbeats need: the MEP, the budget's pause, and the deadline rules."""

    mep: MepClient
    budget: Budget
    request_timeout: float
    grace: Callable[[int], float]


@frozen
class KeeperContext:
    """What every keeper shares."""

    clock: IReactorTime
    ready: Ready
    owned: Owned
    syncs: SyncRequests
    creations: DeferredSemaphore  # creations under way at once (the connection pool's size)
    policy: Policy
    liveness: Liveness | None = None
    changed: Callable[[], object] = lambda: None  # told when something was made or adopted
    freed: Callable[[], object] = lambda: None  # told when something was deleted
    #: Whether a creation on the wire now may have reached the MEP (else a stop cancels it).
    reached: Callable[[], bool] = lambda: True
    #: What every keeper did, by (kind, action): created, adopted, repaired, replaced, deleted.
    actions: Counter[tuple[str, str]] = field(factory=Counter)


@define
class Counts:
    """What a keeper did, for status and metrics."""

    created: int = 0
    repaired: int = 0
    replaced: int = 0
    deleted: int = 0
    failures: int = 0  # in a row


class Keeper:
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
            if self._ctx.reached():
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
            await self.kind.delete(held, Urgency(max(0.0, until - clock.seconds()), hurry=True))
        except (MepError, NoToken) as e:
            self._log_failure("delete", e)
            return False
        self._deleted(held)
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
            event=f"{self._event_prefix}.lost",
        )
        since = self.held_since
        self._ctx.owned.gone(self.kind.ref(held))
        self._forget_held()
        self._ctx.ready.maybe_lost(since)
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

    # -- actions ---------------------------------------------------------------------------

    async def _create(self) -> None:
        self.phase = Phase.WANTED
        syncs = self._ctx.syncs
        await syncs.first()  # what earlier runs left is looked at before anything is added
        if self._unresolved is not None:  # the last answer was lost: did it make one?
            await syncs.soon(f"{self.kind.label} {self.key}: an answer was lost")
            if self._unresolved is not None:  # no list showed it (or none was read)
                self._ctx.owned.unsent(self._unresolved)
                self._unresolved = None
        await self._ctx.ready.when_ready()
        body = self.body
        if self.held is not None or body is None or self._adoptee is not None:
            return
        await self._ctx.creations.acquire()
        try:
            self.phase = Phase.CREATING
            owned = self._ctx.owned
            digest = body_digest(body)
            intent = owned.intend(
                self.kind.kind, self.key, digest, syncs.before(self.kind.kind, self.key)
            )
            await owned.saved()  # on disk before it is sent: a crash now leaves a trace
            posting: Deferred[Any] = ensureDeferred(self.kind.create(body))
            self._posting = posting
            posting.addCallbacks(
                self._created,
                self._not_created,
                callbackArgs=(intent, digest),
                errbackArgs=(intent,),
            )
            await wait_at_most(self._ctx.clock, posting, FOREVER)
        finally:
            self._ctx.creations.release()
        error, self._last_failure = self._last_failure, None
        if self.held is None:
            self.phase = Phase.WANTED
        if error is not None:
            await self._after_failure(error, "create")

    _last_failure: MepError | NoToken | None = None

    def _created(self, held: Held, intent: Intent, digest: str) -> None:
        self._posting = None
        self.held, self.held_since = held, self._ctx.clock.seconds()
        self._cap_full = False
        ref = self.kind.ref(held)
        self._ctx.owned.made(intent, ref, self.kind.kind, self.key, digest)
        again = self.counts.created > 0
        self.counts.created += 1
        self._count("created")
        self.beats.reference = intent.at  # the MEP's liveness clock began no earlier
        self._succeeded()
        self.phase = Phase.HELD
        self._ctx.changed()
        if self.body is not None and body_digest(self.body) != digest:
            self._update = True  # the file changed while it was being made
        self.log.info(
            "{kind} {key} {what} as {ref}",
            **self._names,
            what=self._words[1] if again else self._words[0],
            ref=ref,
            event=f"{self._event_prefix}.{self._events[1] if again else self._events[0]}",
        )
        self._warn_if_unusable(held)

    def _not_created(self, failure: Failure, intent: Intent) -> None:
        self._posting = None
        error = failure.value
        if isinstance(error, CancelledError):  # a stop before it was sent anywhere
            self._ctx.owned.unsent(intent)
            return
        if not isinstance(error, MepError | NoToken):
            self.log.failure(
                "{kind} {key}: unexpected error",
                failure,
                LogLevel.error,
                **self._names,
                event="agent.bug",
            )
            self._ctx.owned.unsent(intent)
            self._last_failure = MepError("create", None, "unexpected error (logged)")
            return
        if isinstance(error, MepError) and error.status is None:
            self._unresolved = intent  # sent, and no answer: it may have been made
        else:
            self._ctx.owned.unsent(intent)
        if isinstance(error, MepError) and _says_cap_full(error):
            self._cap_full = True
            self._ctx.syncs.soon("the platform holds too many: removing dead runs' objects")
        self._last_failure = error

    async def _adopt(self) -> None:
        listed, self._adoptee = self._adoptee, None
        intent, self._adopting = self._adopting, None
        assert listed is not None
        held = await self._attempt("adopt", lambda: self.kind.read(_stub(self.kind, listed)))
        body = self.body
        if held is _FAILED and intent is not None:
            self._unresolved = intent  # still not known: looked at again before a creation
        if held in (None, _FAILED) or self.held is not None or body is None:
            return
        now = self._ctx.clock.seconds()
        self.held, self.held_since = held, now
        self._ctx.owned.made(
            intent, self.kind.ref(held), self.kind.kind, self.key, body_digest(body)
        )
        self.beats.reference = None
        self._ctx.changed()
        self._count("adopted")
        self._beat_at_once = True  # its last beat was an earlier run's: when, nobody knows
        self.log.info(
            "{kind} {key}: adopted {ref}, which {who} made",
            **self._names,
            ref=listed.ref,
            who="a creation whose answer was lost" if intent else "an earlier run",
            event=f"{self._event_prefix}.adopted",
        )
        state = getattr(held, "state", None)
        if state is not None and state != body.get("state") and state != "SUSPENDED":
            self._repair = True

    _beat_at_once = False

    async def _read(self) -> None:
        self.phase = Phase.CHECKING
        held = self.held
        assert held is not None
        seen = await self._attempt("check", lambda: self.kind.read(held))
        if seen is _FAILED or self.held is not held:
            return
        if seen is not None:
            self._check = False
            self.held = seen
            return
        # One 404 may be a gateway's: a list of the app's objects decides (Reconciler).
        await self._ctx.syncs.soon(f"{self.kind.label} {self.key}: a 404")
        if self._check and self.held is held:
            self._failed(MepError("check", 404, "not read back yet"))

    async def _mend(self) -> None:
        self.phase = Phase.REPAIRING
        held, body = self.held, self.body
        assert held is not None and body is not None
        if self._repair and not self._update and isinstance(held, Registration):
            # Only the state: send back what the MEP holds (a MEC 011 platform refuses any
            # other change; mepserver restores ACTIVE and keeps the serInstanceId).
            body = dict(held.info or body, state=body.get("state"))
        what = "repair" if self._repair and not self._update else "update"
        try:
            mended = await self.kind.update(held, body)
        except (MepError, NoToken) as e:
            if isinstance(e, MepError) and e.status in UPDATE_REFUSED:
                self._refused_update(e)
                return
            if isinstance(e, MepError) and e.status == 404:
                self._check = True
                return
            await self._after_failure(e, what)
            return
        if self._repair and isinstance(mended, Registration):
            self.beats.reference = self._ctx.clock.seconds()  # a restore restarts liveness
        self.held = mended
        self._repair = self._update = False
        self.counts.repaired += 1
        self._count("repaired")
        self._succeeded()
        self.log.info(
            "{kind} {key} {what}d ({ref})",
            **self._names,
            what=what,
            ref=self.kind.ref(mended),
            event=f"{self._event_prefix}.{'updated' if what == 'update' else 'restored'}",
        )

    def _refused_update(self, error: MepError) -> None:
        self.log.info(
            "{kind} {key}: the MEP refused to change it ({error}); deleting it and making it anew",
            **self._names,
            error=str(error),
            event=f"{self._event_prefix}.update_refused",
            status=error.status,
        )
        self._replace = True
        self._repair = self._update = False
        self.counts.replaced += 1
        self._count("replaced")

    async def _delete(self) -> None:
        self.phase = Phase.DELETING
        held = self.held
        assert held is not None
        # A leftover's deletion is clean-up: it waits behind what is wanted (the budget).
        urgency = Urgency(background=self.body is None)
        if await self._attempt("delete", lambda: self.kind.delete(held, urgency)) is _FAILED:
            return
        self._deleted(held)
        if self._replace:
            self._replace = False
            self.phase = Phase.WANTED

    def _deleted(self, held: Held) -> None:
        self._ctx.owned.gone(self.kind.ref(held))
        self._ctx.freed()  # a creation refused for a full platform may go now
        if self.held is held:
            self._forget_held()
        self.counts.deleted += 1
        self._count("deleted")
        self._succeeded()
        self.log.info(
            "{kind} {key} {what} ({ref})",
            **self._names,
            what=self._words[2],
            ref=self.kind.ref(held),
            event=f"{self._event_prefix}.{self._events[2]}",
        )

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
            "{kind} {key} is INACTIVE on the MEP; restoring {state}",
            **self._names,
            state=(self.body or {}).get("state"),
            event=f"{self._event_prefix}.inactive",
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

    # -- failures and back-off -------------------------------------------------------------

    async def _attempt(self, what: str, call: Callable[[], Any]) -> Any:
        """Run C{call}; on a MEP failure, handle it and return L{_FAILED}."""
        try:
            return await call()
        except (MepError, NoToken) as e:
            await self._after_failure(e, what)
            return _FAILED

    async def _after_failure(self, error: MepError | NoToken, what: str) -> None:
        if isinstance(error, MepError) and error.verdict is Verdict.NOT_READY:
            self.last_error = str(error)
            await self._ctx.ready.lost()  # READY was lost, not this call: at once again
            return
        self._log_failure(what, error)
        self._failed(error)

    def _failed(self, error: MepError | NoToken) -> None:
        self.counts.failures += 1
        self.waiting_for_token = isinstance(error, NoToken)
        self.last_error = error.reason if isinstance(error, NoToken) else str(error)
        delay = self._ctx.policy(self.counts.failures - 1)
        self._not_before = self._ctx.clock.seconds() + delay

    def _succeeded(self) -> None:
        self.counts.failures = 0
        self.waiting_for_token = False
        self.last_error = None
        self._not_before = 0.0

    def _log_failure(self, what: str, error: MepError | NoToken) -> None:
        if self.counts.failures % LOG_EVERY_N_FAILURES:
            return  # the first failure of a run and every tenth, not every retry
        status = error.status if isinstance(error, MepError) else None
        self.log.warn(
            "{kind} {key}: {what} failed ({error}); trying again with back-off",
            **self._names,
            what=what,
            error=error.reason if isinstance(error, NoToken) else str(error),
            event=f"{self._event_prefix}.{what}_failed",
            status=status,
        )

    # -- small things ----------------------------------------------------------------------

    def _count(self, action: str) -> None:
        self._ctx.actions[(self.kind.label.replace(" ", "_"), action)] += 1

    def _forget_held(self) -> None:
        self._stop_beats()
        self.held = self.held_since = None
        self.beats.reference = None
        self.mep_state = None
        self._check = self._repair = False
        self._update = False
        self.phase = Phase.WANTED if self.body is not None else Phase.GONE

    def _warn_if_unusable(self, held: Held) -> None:
        if not self.kind.usable(held) or getattr(held, "refused_link", None):
            self.log.warn(
                "{kind} {key}: the MEP's link {link} leads to another origin than the MEP; it "
                "is not followed (set --mep-public-url to that origin if it is the MEP's)",
                **self._names,
                link=getattr(held, "refused_link", None),
                event=f"{self._event_prefix}.link_refused",
            )

    @property
    def _names(self) -> dict[str, str]:
        """The fields that name it in a log event (services: ser_name too)."""
        names = {"kind": self.kind.label, "key": self.key}
        if self.kind.kind == "service":
            names["ser_name"] = self.key
        return names

    @property
    def _event_prefix(self) -> str:
        return "service" if self.kind.kind == "service" else "subscription"

    @property
    def _words(self) -> tuple[str, str, str]:
        if self.kind.kind == "service":
            return ("registered", "re-registered", "deregistered")
        return ("created", "created again", "deleted")

    @property
    def _events(self) -> tuple[str, str, str]:
        if self.kind.kind == "service":
            return ("registered", "reregistered", "deregistered")
        return ("created", "created", "deleted")


_FAILED: Any = object()


def _says_cap_full(error: MepError) -> bool:
    """mepserver's "registered services have achieve the limit" (internal code 12)."""
    body = error.body
    if error.status != 400 or not isinstance(body, dict):
        return False
    return body.get("status") in (12, 15) or "limit" in str(body.get("detail", "")).lower()


def _stub(kind: MepKind, listed: Listed) -> Held:
    """A held object made from a list entry, to read it back whole."""
    if kind.kind == "service":
        return Registration(listed.ref, None, listed.interval)
    return Subscription(listed.ref.rstrip("/").rsplit("/", 1)[-1], listed.ref)
