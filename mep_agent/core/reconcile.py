"""
Reconciler: the agent's memory checked against the MEP's truth. The Registrar and the
Subscriber act on what they did; when the MEP's registry and that memory part ways (a
crash left instances behind, the platform restarted with an empty store, another client set
a service INACTIVE, a platform without liveness never says anything), only reading the MEP
back tells. So, level-triggered as Kubernetes controllers and Consul's anti-entropy are, the
Reconciler reads the app's services and subscriptions from the MEP and converges:

* at start, before the first registration, so that what a crashed run left is cleaned
  before anything new is added;
* every --sync-interval seconds (jittered by up to a fifth, so that a fleet of agents does
  not read in waves; 0 turns the periodic sync off);
* at once on a sign of divergence: a service the MEP lost (a 404), READY lost (a 403 "not
  ready"), a STATE_CHANGED or REMOVED notification about one of its own instances.

The rules (docs/reliability.md, "Reconciliation"):

* an instance of ours the MEP no longer holds: registered again;
* an instance of ours that is INACTIVE or SUSPENDED where ACTIVE is wanted: restored;
* an instance of a wanted name that is not ours and not ACTIVE: what a dead run left;
  deleted (it would count against the platform's 50 instances per app);
* an ACTIVE instance of a wanted name that is not ours: left alone — another live agent
  (a sibling pod during a rolling update) keeps it; a dead run's turns SUSPENDED once its
  liveness deadline passes and goes at a later sync;
* a subscription whose callback is this agent's notification route with another secret: a
  dead run's; deleted. A wanted subscription the MEP lost: the Subscriber creates it again.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_agent.core.errors import NoToken
from mep_agent.core.registration import Registrar
from mep_agent.core.subscriptions import Subscriber
from mep_agent.mp1.client import HeldService, MepClient, Subscription
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.util.retry import Alarm
from mep_agent.util.tasks import supervise

JITTER = 0.2  # a sync interval is shortened by up to this fraction, at random
OFF = 365 * 24 * 3600.0  # the sleep of a periodic sync that is off (woken by signals)


class Reconciler(Service):
    """Reads the MEP's truth and converges; see the module."""

    name = "sync"
    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        clock: IReactorTime,
        registrar: Registrar,
        subscriber: Subscriber,
        interval: float,
        callback_url: str | None = None,
        ready_lost: Callable[[], Awaitable[None]] | None = None,
        when_ready: Callable[[], Awaitable[None]] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """
        @param interval: seconds between syncs (0: only at start and on signs).
        @param callback_url: the agent's own notification URL with this run's secret: a
            subscription to the same route with another secret is a dead run's.
        @param ready_lost: the MEP answered "not ready": confirm READY again.
        @param when_ready: awaited before each sync (platforms that refuse every call
            before confirm_ready).
        """
        self._mep = mep
        self._clock = clock
        self._registrar = registrar
        self._subscriber = subscriber
        self.interval = interval
        self._callback = callback_url
        self._ready_lost = ready_lost
        self._when_ready = when_ready
        self._rng = rng
        self._alarm = Alarm(clock)
        self._loop: Deferred[None] | None = None
        self._first: Deferred[None] = Deferred()
        self.syncs = 0
        self.last_good: float | None = None
        self.last_error: str | None = None
        self.repaired: Counter[str] = Counter()  # divergences repaired, by kind
        # Subscriptions known not to be this agent's (the application's own): not read again.
        self._foreign: set[str | None] = set()

    # -- what the others use ---------------------------------------------------------------

    def first_sync(self) -> Deferred[None]:
        """Fires once the first sync was tried (done or failed): registrations may begin."""
        if self._first.called:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._first.addBoth(lambda result: waiter.callback(None))
        return waiter

    def sync_soon(self) -> None:
        """A sign of divergence: sync now (one at a time; a sign during a sync is kept)."""
        self._again = True
        self._alarm.wake()

    def own_change(self, ser_instance_ids: list[str]) -> None:
        """A STATE_CHANGED or REMOVED notification: about one of ours, sync now."""
        held = self._registrar.held(math.inf)
        if any(i in held for i in ser_instance_ids):
            self.sync_soon()

    def view(self) -> dict[str, Any]:
        """What the last syncs found, for status and /healthz/mep: ok while recent and good."""
        last = self.last_good
        age = None if last is None else round(self._clock.seconds() - last, 3)
        recent = age is not None and (not self.interval or age <= 3 * self.interval)
        return {
            "ok": recent and self.last_error is None,
            "secondsSinceGoodSync": age,
            "lastError": self.last_error,
            "divergencesRepaired": dict(self.repaired),
        }

    # -- the service -----------------------------------------------------------------------

    _again = False

    def startService(self) -> None:  # noqa: N802 (Twisted's name)
        """Sync now, then every interval."""
        super().startService()
        self._loop = supervise(self._clock, "sync", self._step)

    def stopService(self) -> None:  # noqa: N802
        """Stop syncing; whoever waits for the first sync goes on."""
        super().stopService()
        if self._loop is not None:
            self._loop.cancel()
        if not self._first.called:
            self._first.callback(None)

    async def _step(self) -> bool:
        self._again = False
        try:
            await self._sync()
        finally:
            if not self._first.called:
                self._first.callback(None)
        if not self._again:
            period = self.interval * (1 - JITTER * self._rng()) if self.interval else OFF
            await self._alarm.sleep(period)
        return False

    # -- one sync --------------------------------------------------------------------------

    async def _sync(self, again: bool = True) -> None:
        if self._when_ready is not None:
            await self._when_ready()
        started = self._clock.seconds()
        try:
            held = await self._mep.own_services()
            subscriptions = await self._mep.availability_subscriptions()
            subscriptions += await self._mep.termination_subscriptions()
        except MepError as e:
            if e.verdict is Verdict.NOT_READY and self._ready_lost is not None and again:
                self.repaired["not-ready"] += 1
                await self._ready_lost()  # the platform lost its state: READY first
                await self._sync(again=False)
                return
            self._failed(str(e))
            return
        except NoToken as e:
            self._failed(e.reason)
            return
        await self._services(held, started)
        await self._subscriptions(subscriptions)
        self.syncs += 1
        self.last_good = self._clock.seconds()
        self.last_error = None

    async def _services(self, held: list[HeldService], started: float) -> None:
        # Ours before the read: one missing from it is lost. Ours at all (a registration
        # that completed while the read was under way too): never a leftover.
        ours = self._registrar.held(started)
        mine = self._registrar.held(math.inf)
        wanted = set(self._registrar.states)
        present = set()
        now = self._clock.seconds()
        leftovers = []
        for instance in held:
            if instance.ser_instance_id in mine:
                present.add(instance.ser_instance_id)
                kind = self._registrar.seen(
                    instance.ser_name, instance.state, now, instance.echoed
                )
                if kind is not None:
                    self._repaired(kind, instance.ser_name)
            elif instance.ser_name in wanted and instance.state != "ACTIVE":
                self._repaired("leftover", instance.ser_name)
                leftovers.append(instance)
        # Deleted before the sync ends: the first registration waits for the first sync,
        # so a dead run's instances are gone before new ones are added (the 50-per-app cap).
        await gatherResults(
            [
                ensureDeferred(self._registrar.delete_leftover(i.ser_name, i.ser_instance_id))
                for i in leftovers
            ]
        )
        for ser_instance_id, name in ours.items():
            if ser_instance_id not in present:
                self._repaired("lost", name)
                self._registrar.forget(name)

    async def _subscriptions(self, listed: list[Subscription]) -> None:
        if self._callback is None:
            return
        route = self._callback.rsplit("/", 1)[0] + "/"
        mine = {s.subscription.url for s in self._subscriber.states if s.subscription}
        for subscription in listed:
            if subscription.url in mine or subscription.url in self._foreign:
                continue
            try:
                callback = await self._mep.subscription_callback(subscription)
                if callback is None or not callback.startswith(route):
                    self._foreign.add(subscription.url)  # not this agent's: its own business
                    continue
                if callback == self._callback:
                    continue  # ours, being created: the Subscriber knows it
                await self._mep.unsubscribe(subscription)
                self._repaired("orphan-subscription", subscription.subscription_id)
            except (MepError, NoToken):
                continue  # the next sync tries again
        wanted = [s for s in self._subscriber.states if s.subscription is not None]
        listed_urls = {s.url for s in listed}
        if any(s.subscription.url not in listed_urls for s in wanted if s.subscription):
            self._repaired("lost-subscription", "")
            self._subscriber.check_now()

    def _repaired(self, kind: str, what: str) -> None:
        self.repaired[kind] += 1
        self.log.info(
            "sync: {kind} {what} repaired",
            kind=kind,
            what=what,
            event="sync.repaired",
        )

    def _failed(self, error: str) -> None:
        if error != self.last_error:
            self.log.info("sync failed: {error}", error=error, event="sync.failed")
        self.last_error = error
