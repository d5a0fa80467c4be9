"""
How a keeper (keeper.py) acts on the MEP: each action -- create, adopt, read back, mend,
delete -- against its kind (kinds.py), and the one discipline for what fails: a 403 "not
ready" has READY confirmed again and the action tried again at once; anything else is logged
(the first of a run and every tenth) and tried again after the back-off (util/retry.py).
The keeper's state machine decides which action is due; this is how each is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from mep_agent.core.beats import BeatRecord
from mep_agent.core.errors import NoToken
from mep_agent.core.keeping import Counts, KeeperContext, Phase
from mep_agent.core.kinds import Held, Listed, MepKind, Services
from mep_agent.core.owned import Intent, body_digest
from mep_agent.mp1.client import Registration, Urgency
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.util.tasks import wait_at_most

FOREVER = 365 * 24 * 3600.0
LOG_EVERY_N_FAILURES = 10
#: Answers to an update that say the platform will not change the object in place.
UPDATE_REFUSED = (400, 405, 501)


class Actions:
    """The actions of a keeper; the keeper (keeper.Keeper) holds the state they change."""

    log = Logger()
    kind: MepKind
    key: str
    body: dict[str, Any] | None
    held: Held | None
    held_since: float | None
    phase: Phase
    counts: Counts
    beats: BeatRecord
    last_error: str | None
    waiting_for_token: bool
    _ctx: KeeperContext
    _repair: bool
    _update: bool
    _check: bool
    _replace: bool
    _unresolved: Intent | None
    _lost_since: float | None
    _adoptee: Listed | None
    _adopting: Intent | None
    _not_before: float
    _cap_full: bool
    _posting: Deferred[Any] | None
    _beat_at_once: bool = False
    _last_failure: MepError | NoToken | None = None

    def _forget_held(self) -> None:
        raise NotImplementedError  # the keeper's (keeper.py)

    def _stop_beats(self) -> None:
        raise NotImplementedError  # the keeper's (keeper.py)

    async def _create(self) -> None:
        if self._lost_since is not None and not await self._guarded(self._lost_since):
            return
        self.phase = Phase.WANTED
        syncs = self._ctx.syncs
        await syncs.first()  # what earlier runs left is looked at before anything is added
        if self._ctx.owned.earlier_named(self.kind.kind, self.key):
            await syncs.good()  # an earlier life's of this name: only a list can tell
        if self._unresolved is not None:  # the last answer was lost: did it make one?
            await syncs.soon(f"{self.kind.label} {self.key}: an answer was lost")
            if self._unresolved is not None:  # no list showed it (or none was read)
                self._ctx.owned.unsent(self._unresolved)
                self._unresolved = None
        await self._ctx.ready.when_ready()
        body = self.body
        if self.held is not None or body is None or self._adoptee is not None:
            return
        await self._ctx.discipline.creations.acquire()
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
            self._ctx.discipline.creations.release()
        error, self._last_failure = self._last_failure, None
        if self.held is None:
            self.phase = Phase.WANTED
        if error is not None:
            await self._after_failure(error, "create")

    async def _guarded(self, since: float) -> bool:
        """
        What the MEP lost is made anew only once the guard says the app still exists
        (guard.py); False when it was terminated: then nothing is wanted any more.
        """
        guard = self._ctx.guard
        assert guard is not None  # _lost_since is only set with one
        self.phase = Phase.CHECKING
        if not await guard.cleared():
            self.body = None
            self._lost_since = None
            return False
        self._lost_since = None
        self._ctx.ready.maybe_lost(since)
        return True

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
        self._ctx.hooks.changed()
        if self.body is not None and body_digest(self.body) != digest:
            self._update = True  # the file changed while it was being made
        self.log.info(
            "{noun} {key} {what} as {ref}",
            **self._names,
            what=self.kind.words[1] if again else self.kind.words[0],
            ref=ref,
            event=f"{self.kind.event}.{self.kind.events[1] if again else self.kind.events[0]}",
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
                "{noun} {key}: unexpected error",
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
        if isinstance(error, MepError) and self.kind.refused_for_room(error):
            self._cap_full = True
            self._ctx.syncs.soon("the platform holds too many: removing dead runs' objects")
        self._last_failure = error

    async def _adopt(self) -> None:
        listed, self._adoptee = self._adoptee, None
        intent, self._adopting = self._adopting, None
        assert listed is not None
        held = await self._attempt(
            "adopt", lambda: self.kind.read(self.kind.stub(listed.ref, listed.interval))
        )
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
        self._ctx.hooks.changed()
        self._count("adopted")
        self._beat_at_once = True  # its last beat was an earlier run's: when, nobody knows
        self.log.info(
            "{noun} {key}: adopted {ref}, which {who} made",
            **self._names,
            ref=listed.ref,
            who="a creation whose answer was lost" if intent else "an earlier run",
            event=f"{self.kind.event}.adopted",
        )
        state = getattr(held, "state", None)
        if state is not None and state != body.get("state") and state != "SUSPENDED":
            self._repair = True

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
            # Only the state (mepserver restores ACTIVE and keeps the serInstanceId).
            assert isinstance(self.kind, Services)
            body = self.kind.restore_body(held, body)
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
            "{noun} {key} {done} ({ref})",
            **self._names,
            done="updated" if what == "update" else "restored",
            ref=self.kind.ref(mended),
            event=f"{self.kind.event}.{'updated' if what == 'update' else 'restored'}",
        )

    def _refused_update(self, error: MepError) -> None:
        self.log.info(
            "{noun} {key}: the MEP refused to change it ({error}); deleting it and making it anew",
            **self._names,
            error=str(error),
            event=f"{self.kind.event}.update_refused",
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
        confirmed = await self._attempt("delete", lambda: self.kind.delete(held, urgency))
        if confirmed is _FAILED:
            return
        if confirmed:
            self._deleted(held)
        elif not await self._deletion_missed(held):
            return
        if self._replace:
            self._replace = False
            self.phase = Phase.WANTED

    async def _deletion_missed(self, held: Held) -> bool:
        """
        The DELETE of C{held} was answered 404; False when it is to be tried again. The
        first 404 is taken as done, but the record stays and a list of the app's objects
        decides (a gateway's 404 says nothing of the registry; a replacement waits for that
        list, so that two instances are not offered). Listed again after a 404, it is no
        hiccup: a failure like any other, tried again with the back-off.
        """
        ref = self.kind.ref(held)
        if self._ctx.owned.deletion_missed(ref) == 1:
            self._deleted(held, confirmed=False)
            asked = self._ctx.syncs.soon(f"{self.kind.label} {self.key}: a 404 to its deletion")
            if self._replace:
                await asked
            return True
        error = MepError("delete", 404, "answered 404, yet the MEP still lists it")
        self._log_failure("delete", error)
        self._failed(error)
        return False

    def _deleted(self, held: Held, confirmed: bool = True) -> None:
        """
        C{held} was deleted; unless the MEP C{confirmed} it, its record stays until a list
        shows it gone (or shows it there: a leftover, deleted again).
        """
        if confirmed:
            self._ctx.owned.gone(self.kind.ref(held))
        self._ctx.hooks.freed()  # a creation refused for a full platform may go now
        if self.held is held:
            self._forget_held()
        self.counts.deleted += 1
        self._count("deleted")
        self._succeeded()
        self.log.info(
            "{noun} {key} {what} ({ref})",
            **self._names,
            what=self.kind.words[2],
            ref=self.kind.ref(held),
            event=f"{self.kind.event}.{self.kind.events[2]}",
        )

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
        delay = self._ctx.discipline.policy(self.counts.failures - 1)
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
            "{noun} {key}: {what} failed ({error}); trying again with back-off",
            **self._names,
            what=what,
            error=error.reason if isinstance(error, NoToken) else str(error),
            event=f"{self.kind.event}.{what}_failed",
            status=status,
        )

    def _count(self, action: str) -> None:
        self._ctx.hooks.actions[(self.kind.label.replace(" ", "_"), action)] += 1

    def _warn_if_unusable(self, held: Held) -> None:
        if not self.kind.usable(held) or getattr(held, "refused_link", None):
            self.log.warn(
                "{noun} {key}: the MEP's link {link} leads to another origin than the MEP; it "
                "is not followed (set --mep-public-url to that origin if it is the MEP's)",
                **self._names,
                link=getattr(held, "refused_link", None),
                event=f"{self.kind.event}.link_refused",
            )

    @property
    def _names(self) -> dict[str, str]:
        """The fields that name it in a log event (services: ser_name too)."""
        return {
            "kind": self.kind.label,
            "noun": self.kind.event,
            "key": self.key,
            self.kind.event_key: self.key,
        }


_FAILED: Any = object()
