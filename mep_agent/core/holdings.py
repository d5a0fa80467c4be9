"""
Holdings: everything the agent keeps at the MEP, one keeper (keeper.py) per object -- each
service of app_instance_info.yaml, each availability subscription, the termination
subscription -- and one per object to be removed (a dead run's leftover, a service the file
no longer names, a duplicate). It starts them, hands them what the file wants now (reload),
withdraws them when the platform terminates the app, closes them at stop (deleting what they
hold, all within --shutdown-timeout), and answers what status, metrics and one-shot mode ask.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from attrs import evolve, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, succeed
from twisted.logger import Logger

from mep_agent.config.model import ServiceSpec
from mep_agent.core.budget import Budget
from mep_agent.core.keeper import Keeper
from mep_agent.core.keeping import KeeperContext, Phase
from mep_agent.core.kinds import Held, Listed, MepKind, Services, Subscriptions
from mep_agent.core.owned import SERVICE
from mep_agent.util.tasks import wait_at_most

SAVE_GRACE = 1.0  # seconds a stop waits for the state file, past --shutdown-timeout if need be


@frozen
class Kinds:
    """The kinds of object kept, each over the MEP client."""

    services: Services
    subscriptions: Subscriptions
    termination: Subscriptions


@frozen
class Wanted:
    """What the file (and the termination setting) wants kept."""

    services: tuple[ServiceSpec, ...]
    subscriptions: tuple[tuple[str, dict[str, Any]], ...]  # (label, body)
    termination: dict[str, Any] | None = None


class Holdings(Service):
    """Every keeper; see the module."""

    name = "holdings"
    log = Logger()

    def __init__(
        self,
        ctx: KeeperContext,
        kinds: Kinds,
        wanted: Wanted,
        budget: Budget,
        shutdown_timeout: float,
        delete_on_stop: bool = True,
    ) -> None:
        """@param delete_on_stop: False in one-shot mode, where the registrations outlive us."""
        ctx = evolve(ctx, hooks=evolve(ctx.hooks, changed=self.changed, freed=self._freed))
        self.ctx = self._ctx = ctx
        self.kinds = kinds
        self._budget = budget
        self._shutdown_timeout = shutdown_timeout
        self.close_deletes = delete_on_stop
        self.services: dict[str, Keeper] = {}
        self.subscriptions: list[Keeper] = []
        self.termination: Keeper | None = None
        self.strays: list[Keeper] = []
        self.withdrawn = False  # the platform terminates the app: nothing is wanted
        self._settled: bool | None = None
        self._settle_waiters: list[Deferred[bool]] = []
        for spec in wanted.services:
            self.services[spec.name] = Keeper(kinds.services, spec.name, ctx, spec.body)
        for label, body in wanted.subscriptions:
            self.subscriptions.append(Keeper(kinds.subscriptions, label, ctx, body))
        if wanted.termination is not None:
            self.termination = Keeper(kinds.termination, "termination", ctx, wanted.termination)
        self._resized()
        ctx.ready.on_settled(lambda ok: self.changed())

    # -- the service ---------------------------------------------------------------------

    def startService(self) -> None:
        """Start every keeper (each waits for the first sync before it makes anything)."""
        super().startService()
        for keeper in self.keepers():
            keeper.start()

    def stopService(self) -> Deferred[Any]:
        """
        Let creations under way finish, then delete everything held, in parallel, all within
        --shutdown-timeout (one-shot mode: stop without deleting anything).
        """
        super().stopService()
        until = self._ctx.clock.seconds() + self._shutdown_timeout
        return ensureDeferred(self._close_and_record(until))

    async def _close_and_record(self, until: float) -> None:
        await self.close(until, delete=self.close_deletes)
        # What the stop deleted is on disk before the process ends (the next life would
        # find records of objects that are gone: harmless, but a DELETE each at its stop).
        clock = self._ctx.clock
        left = max(SAVE_GRACE, until - clock.seconds())
        await wait_at_most(clock, self._ctx.owned.saved(), left)

    async def close(self, until: float, delete: bool, termination_too: bool = True) -> bool:
        """
        Close every keeper (but the termination one unless C{termination_too}); deleting,
        also what the records say this pod made and no keeper holds (an earlier life's
        objects that no sync could look at yet).
        """
        closing = [k for k in self.keepers() if termination_too or k is not self.termination]
        if delete and termination_too and self._ctx.owned.terminated is None:
            closing += self._unheld()  # (after a termination the platform deletes all)
        done = DeferredList(
            [ensureDeferred(k.close(until, delete)) for k in closing], consumeErrors=True
        )
        await wait_at_most(self._ctx.clock, done, until - self._ctx.clock.seconds())
        return all(k.held is None for k in closing) if delete else True

    # -- what the file, the reload and the termination change ----------------------------

    def apply(self, wanted: Wanted) -> dict[str, list[str]]:
        """
        Make the MEP hold what the reloaded file wants: new services and subscriptions are
        made, removed ones deleted, changed services updated in place (or made anew where
        the platform refuses the change); unchanged ones are left alone. The names by change.
        """
        changes: dict[str, list[str]] = {"added": [], "removed": [], "changed": []}
        if self.withdrawn:
            return changes  # the app is being terminated: no file brings anything back
        names = {spec.name: spec for spec in wanted.services}
        for name in [n for n in self.services if n not in names]:
            self._retire(self.services.pop(name))
            changes["removed"].append(name)
        for name, spec in names.items():
            keeper = self.services.get(name)
            if keeper is None:
                keeper = self.services[name] = Keeper(
                    self.kinds.services, name, self._ctx, spec.body
                )
                changes["added"].append(name)
                self._started(keeper)
            elif keeper.body != spec.body:
                keeper.want(spec.body)
                changes["changed"].append(name)
        self._apply_subscriptions(wanted.subscriptions, changes)
        self._resized()
        return changes

    def _apply_subscriptions(
        self, wanted: tuple[tuple[str, dict[str, Any]], ...], changes: dict[str, list[str]]
    ) -> None:
        unmatched = list(wanted)
        kept = []
        for keeper in self.subscriptions:
            match = next((w for w in unmatched if w[1] == keeper.body), None)
            if match is None:
                self._retire(keeper)
                changes["removed"].append(f"subscription {keeper.key}")
                continue
            unmatched.remove(match)
            keeper.key = match[0]
            kept.append(keeper)
        for label, body in unmatched:
            keeper = Keeper(self.kinds.subscriptions, label, self._ctx, body)
            kept.append(keeper)
            changes["added"].append(f"subscription {label}")
            self._started(keeper)
        self.subscriptions = kept

    async def withdraw(self, until: float, termination_too: bool, delete: bool = True) -> None:
        """
        The platform terminates the app: from now on nothing is wanted (a reloaded file
        brings nothing back); everything is deleted by C{until} -- or, unless C{delete},
        let go for the platform to delete -- the termination subscription too when
        C{termination_too} (it goes once the termination is confirmed).
        """
        self.withdrawn = True
        await self.close(until, delete=delete, termination_too=termination_too)
        self.services, self.subscriptions = {}, []
        self.strays = [k for k in self.strays if not k.finished]
        if termination_too:
            self.termination = None

    def stray(self, kind: MepKind, listed: Listed, key: str, held: Held) -> bool:
        """
        Delete C{held} (a dead run's leftover, an orphan, a duplicate), unless some keeper
        already holds or deletes it. True when a keeper was set to it.
        """
        if self.holder(listed.ref) is not None or not self.running:
            return False
        keeper = Keeper(kind, key, self._ctx, None, held)
        self.strays = [k for k in self.strays if not k.finished] + [keeper]
        keeper.start()
        return True

    def _unheld(self) -> list[Keeper]:
        """A keeper to delete each object the records name and no keeper holds."""
        held = {k.kind.ref(k.held) for k in self.keepers() if k.held is not None}
        found = []
        for made in self._ctx.owned.all_made():
            if made.ref in held:
                continue
            kind: MepKind = self.kinds.services
            if made.kind != SERVICE:  # which list a subscription was on, its key says
                termination = made.key == "termination"
                kind = self.kinds.termination if termination else self.kinds.subscriptions
            found.append(Keeper(kind, made.key, self._ctx, None, kind.stub(made.ref)))
        return found

    def _freed(self) -> None:
        """Something was deleted: creations the full platform refused go again at once."""
        for keeper in self.keepers():
            if keeper.cap_full:
                keeper.kick(now=True)

    def _retire(self, keeper: Keeper) -> None:
        """C{keeper}'s object is no longer wanted: deleted, then forgotten."""
        keeper.unwant()
        self.strays = [k for k in self.strays if not k.finished] + [keeper]

    def _started(self, keeper: Keeper) -> None:
        if self.running:
            keeper.start()

    def _resized(self) -> None:
        """The burst follows the number of objects; heartbeats are spread over a period."""
        services = list(self.services.values())
        for index, keeper in enumerate(services):
            keeper.slot = (index, len(services))
        objects = len(services) + len(self.subscriptions) + (1 if self.termination else 0)
        self._budget.resize(objects)

    # -- what the Reconciler reads -------------------------------------------------------

    def keepers(self) -> Iterator[Keeper]:
        """Every keeper: services, subscriptions, the termination one, then the strays."""
        yield from self.services.values()
        yield from self.subscriptions
        if self.termination is not None:
            yield self.termination
        yield from self.strays

    def holder(self, ref: str) -> Keeper | None:
        """The keeper that holds C{ref}, if any."""
        for keeper in self.keepers():
            if keeper.held is not None and keeper.kind.ref(keeper.held) == ref:
                return keeper
        return None

    def wanted_subscriptions(self, kind: MepKind) -> list[Keeper]:
        """The keepers of subscriptions of C{kind} that something is wanted of."""
        if kind is self.kinds.termination:
            return [self.termination] if self.termination is not None else []
        return list(self.subscriptions)

    # -- what status, metrics and one-shot mode ask --------------------------------------

    def changed(self) -> None:
        """Something was made or READY settled: are we settled?"""
        if self._settled is not None:
            return
        ready = self._ctx.ready
        if ready.enabled and ready.refused is not None and not ready.confirmed:
            self._settle(False)
            return
        made = all(k.counts.created or k.held is not None for k in self.services.values())
        if made and (ready.confirmed or not ready.enabled):
            self._settle(True)

    def when_settled(self) -> Deferred[bool]:
        """
        Fires once every service was registered and READY confirmed (when enabled): True;
        False when the MEP refused confirm_ready.
        """
        self.changed()
        if self._settled is not None:
            return succeed(self._settled)
        waiter: Deferred[bool] = Deferred()
        self._settle_waiters.append(waiter)
        return waiter

    def _settle(self, ok: bool) -> None:
        self._settled = ok
        waiters, self._settle_waiters = self._settle_waiters, []
        for waiter in waiters:
            waiter.callback(ok)

    def last_error(self) -> str | None:
        """The last error of any service, for a one-line summary."""
        for name, keeper in self.services.items():
            if keeper.last_error:
                return f"service {name}: {keeper.last_error}"
        return None

    def unusable_links(self) -> list[str]:
        """Links the MEP gave that lead to another origin (a failing health check each)."""
        found = []
        for keeper in self.keepers():
            link = getattr(keeper.held, "refused_link", None)
            if keeper.held is not None and link:
                found.append(link)
        return found

    def phases(self) -> dict[str, int]:
        """How many keepers stand in each phase (metrics)."""
        counts = {phase.value: 0 for phase in Phase}
        for keeper in self.keepers():
            counts[keeper.phase.value] += 1
        return counts
