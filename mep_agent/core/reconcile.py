"""
Reconciler: what the agent keeps, checked against the MEP's truth. When the MEP's registry
and the keepers part ways (a crash left objects behind, the platform restarted with an empty
store, another client set a service INACTIVE, a platform without liveness never says
anything), only reading the MEP back tells. So, level-triggered as Kubernetes controllers and
Consul's anti-entropy are, the Reconciler reads the app's services and subscriptions and
tells the keepers what it saw; it never acts on the MEP itself (docs/architecture.md):

* an object a keeper holds: present (in some state, with some members: the keeper repairs
  what differs), or absent from a list read after it was made (lost: made anew);
* what this pod made in an earlier life (core/owned.py), or a creation whose answer was lost
  (the one new object of that name a list shows): adopted by the keeper that wants it, else
  a leftover to delete;
* an instance of a wanted name that nobody here made: not ACTIVE, a dead run's (deleted);
  ACTIVE, looked at again once its liveness deadline has passed (interval plus the platform's
  grace) and deleted if it is no longer ACTIVE -- a live sibling pod keeps its own ACTIVE;
* a subscription to this agent's notification route with another secret: a dead run's
  (deleted); one identical (type, callback, filter) to a wanted one: adopted instead of
  duplicated, and of identical copies the one with the least link is kept (so two pods that
  want the same one converge on one); anything else is the application's own (never read
  again).

When: at start, before anything is made; every --sync-interval seconds (jittered by up to
a fifth), reading only what heartbeats do not already prove (a good heartbeat proves its
instance exists and is not INACTIVE) and the subscriptions every L{FULL_EVERY}th time; and at
once, everything, on a sign of divergence (a keeper's 404, READY lost, a notification about
an instance of ours, a full platform). After a termination it reads nothing any more.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_agent.core.bodies import matches
from mep_agent.core.errors import NoToken
from mep_agent.core.holdings import Holdings
from mep_agent.core.keeper import Keeper
from mep_agent.core.kinds import Listed, Subscriptions
from mep_agent.core.owned import SERVICE, Made, Owned, body_digest
from mep_agent.core.ready import Ready
from mep_agent.mp1.client import Registration, Subscription
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.util.retry import Alarm, full_jitter
from mep_agent.util.tasks import supervise

JITTER = 0.2  # a sync interval is shortened by up to this fraction, at random
OFF = 365 * 24 * 3600.0  # the sleep of a periodic sync that is off (woken by signs)
FULL_EVERY = 5  # every fifth periodic sync reads everything
LOOK_MARGIN = 1.0  # seconds past a liveness deadline before an instance is looked at again


class Reconciler(Service):
    """Reads the MEP's truth and tells the keepers; see the module."""

    name = "sync"
    log = Logger()

    def __init__(
        self,
        holdings: Holdings,
        clock: IReactorTime,
        interval: float,
        grace: Callable[[int], float],
        callback_url: str | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        """
        @param holdings: the keepers it tells; their context holds the records, READY and
            the requests for syncs it serves.
        @param interval: seconds between syncs (0: only at start and on signs).
        @param grace: seconds past its liveness interval before the MEP suspends an instance.
        @param callback_url: the agent's notification URL with this run's secret: a
            subscription to the same route with another secret is a dead run's.
        """
        self._holdings = holdings
        self._owned: Owned = holdings.ctx.owned
        self._ready: Ready = holdings.ctx.ready
        self._requests = holdings.ctx.syncs
        self._clock = clock
        self.interval = interval
        self._grace = grace
        self._callback = callback_url
        self._route = callback_url.rsplit("/", 1)[0] + "/" if callback_url else None
        self._rng = rng
        self._alarm = Alarm(clock)
        self._loop: Deferred[None] | None = None
        self._again = False
        self._good_once = False  # a sync has read the MEP (until then every sync is full)
        self._failures = 0  # syncs failed in a row
        self._retry = full_jitter(rng=rng)
        self._periodic = 0
        self._next_periodic = 0.0
        self._services_read: float | None = None
        self._watch: dict[str, float] = {}  # foreign ACTIVE instance -> when to look again
        self._live: set[str] = set()  # foreign instances seen ACTIVE past their deadline
        self._foreign: set[str] = set()  # subscriptions known to be the application's own
        self.reading = True  # False once the app was terminated: nothing left to keep
        self.syncs = 0
        self.last_good: float | None = None
        self.last_error: str | None = None
        self.repaired: Counter[str] = Counter()  # differences acted on, by kind
        self._ready.on_lost = lambda: self.soon("READY was lost")
        self._requests.served_by(self._asked_for)

    # -- what the others ask ----------------------------------------------------------------

    def first(self) -> Deferred[None]:
        """Fires once the first sync was tried (done or failed)."""
        return self._requests.first()

    def soon(self, reason: str) -> Deferred[None]:
        """A sign of divergence: sync everything now; fires once that sync has ended."""
        if not self.reading or not self.running:
            return succeed(None)
        return self._requests.soon(reason)

    def _asked_for(self, reason: str) -> None:
        self._again = True
        self._alarm.wake()

    def own_change(self, ser_instance_ids: list[str]) -> None:
        """A STATE_CHANGED or REMOVED notification: about one of ours, sync now."""
        if any(self._holdings.holder(i) is not None for i in ser_instance_ids):
            self.soon("a notification about an instance of ours")

    def stop_reading(self) -> None:
        """The app was terminated: nothing is kept any more, so nothing is read."""
        self.reading = False
        self._requests.close()
        if self._loop is not None:
            self._loop.cancel()

    def view(self) -> dict[str, Any]:
        """What the last syncs found, for status and /healthz/mep: ok while recent and good."""
        last = self.last_good
        age = None if last is None else round(self._clock.seconds() - last, 3)
        recent = age is not None and (not self.interval or age <= 3 * self.interval)
        return {
            "ok": (recent and self.last_error is None) or not self.reading,
            "reading": self.reading,
            "secondsSinceGoodSync": age,
            "lastError": self.last_error,
            "divergencesRepaired": dict(self.repaired),
            "watching": len(self._watch),
        }

    # -- the service -----------------------------------------------------------------------

    def startService(self) -> None:
        """Sync now (unless the app was terminated), then every interval."""
        super().startService()
        if not self.reading:
            self._requests.close()
            return
        self._loop = supervise(self._clock, "sync", self._step)

    def stopService(self) -> None:
        """Stop syncing; whoever waits for a sync goes on."""
        super().stopService()
        if self._loop is not None:
            self._loop.cancel()
        self._requests.close()

    async def _step(self) -> bool:
        now = self._clock.seconds()
        full = not self._good_once or self._again
        if not full and now >= self._next_periodic:
            self._periodic += 1
            full = self._periodic % FULL_EVERY == 0
        asked, self._again = self._requests.take(), False
        good = False
        try:
            await self._sync(full)
            good = self.last_error is None
        finally:
            self._requests.answered(asked, good)
        if not self.reading:
            return True
        now = self._clock.seconds()
        if now >= self._next_periodic:
            self._next_periodic = now + self._period()
        if good:
            self._good_once, self._failures = True, 0
        else:  # tried again with the one back-off, not a whole interval later
            self._failures += 1
            retry = now + self._retry(self._failures - 1)
            self._next_periodic = min(self._next_periodic, retry)
        if not self._again and not self._requests.asked:
            wake = min([self._next_periodic, *self._watch.values()])
            await self._alarm.sleep(max(0.0, wake - self._clock.seconds()))
        return False

    def _period(self) -> float:
        return self.interval * (1 - JITTER * self._rng()) if self.interval else OFF

    # -- one sync --------------------------------------------------------------------------

    async def _sync(self, full: bool, again: bool = True) -> None:
        await self._ready.when_ready()
        started = self._clock.seconds()
        services = full or not self._proven()
        try:
            listed = await self._holdings.kinds.services.list() if services else None
            subscriptions = await self._read_subscriptions() if full else []
        except MepError as e:
            if e.verdict is Verdict.NOT_READY and again:
                self.repaired["not-ready"] += 1
                await self._ready.lost()  # the platform lost its state: READY first
                await self._sync(full, again=False)
                return
            self._failed(str(e))
            return
        except NoToken as e:
            self._failed(e.reason)
            return
        if listed is not None:
            self._services(listed, started)
        for kind, found in subscriptions:
            await self._subscriptions(kind, found, started)
        self.syncs += 1
        self.last_good = self._clock.seconds()
        self.last_error = None

    def _proven(self) -> bool:
        """
        Whether good heartbeats since the last read already show every service held: each
        proves its instance exists and is not INACTIVE. Subscriptions have no such proof;
        they are read every L{FULL_EVERY}th sync.
        """
        read = self._services_read
        if read is None or self._due_watch():
            return False
        for keeper in self._holdings.keepers():
            if keeper.kind.kind != SERVICE:
                continue
            if keeper.resolving() is not None:
                return False
            held = keeper.held
            if keeper.body is not None and not (
                isinstance(held, Registration)
                and held.interval
                and keeper.beats.last_good is not None
                and keeper.beats.last_good > read
            ):
                return False
        return True

    def _due_watch(self) -> bool:
        now = self._clock.seconds()
        return any(at <= now for at in self._watch.values())

    async def _read_subscriptions(self) -> list[tuple[Subscriptions, list[Listed]]]:
        kinds = self._holdings.kinds
        found = []
        for kind in (kinds.subscriptions, kinds.termination):
            if self._holdings.wanted_subscriptions(kind) or self._route or self._owned.life > 1:
                found.append((kind, await kind.list()))
        return found

    # -- services --------------------------------------------------------------------------

    def _services(self, listed: list[Listed], started: float) -> None:
        self._services_read = started
        by_name: defaultdict[str, list[str]] = defaultdict(list)
        for item in listed:
            by_name[item.name or ""].append(item.ref)
        self._requests.listed({name: tuple(refs) for name, refs in by_name.items()})
        claimed = self._claims(listed)
        # What each keeper held when the list was read: telling one keeper what it saw
        # may make another act at once (the in-memory MEP answers in the same turn).
        holding = {k: k.held for k in self._holdings.services.values() if k.held is not None}
        seen = set()
        for item in listed:
            keeper = self._holdings.holder(item.ref)
            if keeper is not None:
                seen.add(item.ref)
                if keeper.body is not None:
                    self._note(keeper.present(item, started), keeper)
            elif item.ref in claimed:
                self._ours(item, claimed[item.ref])
            else:
                self._stranger(item, started)
        for keeper, held in holding.items():
            if keeper.held is held and keeper.kind.ref(held) not in seen:
                if keeper.absent(started):
                    self._repaired("lost", f"service {keeper.key}")
                    self._again = True  # the MEP lost data: what else did it lose?
        self._forget_gone({item.ref for item in listed}, SERVICE, started)
        self._prune_watches({item.ref for item in listed})

    def _claims(self, listed: list[Listed]) -> dict[str, Made]:
        """The listed instances this pod made (recorded, or a creation whose answer was lost)."""
        owned = self._owned
        claimed = {i.ref: m for i in listed if (m := owned.made_by_this_pod(i.ref)) is not None}
        unknown: defaultdict[str, list[Listed]] = defaultdict(list)
        for item in listed:
            if item.ref not in claimed and self._holdings.holder(item.ref) is None:
                unknown[item.name or ""].append(item)
        intents = [i for i in owned.earlier_intents() if i.kind == SERVICE]
        intents += [
            i for k in self._holdings.services.values() if (i := k.resolving()) is not None
        ]
        for intent in intents:
            candidates = [i for i in unknown[intent.key] if i.ref not in intent.before]
            earlier = intent.life < owned.life
            if len(candidates) == 1:
                only = candidates[0]
                unknown[intent.key].remove(only)
                if earlier:
                    # Recorded as this pod's at once, in the same write that drops the
                    # intent: killed before the adoption, the next life still knows it.
                    owned.made(intent, only.ref, SERVICE, intent.key, intent.digest)
                    claimed[only.ref] = Made(
                        SERVICE, intent.key, only.ref, intent.digest, owned.life
                    )
                    continue
                claimed[only.ref] = Made(SERVICE, intent.key, only.ref, intent.digest, intent.life)
            if earlier:
                owned.resolved(intent)
        return claimed

    def _ours(self, item: Listed, made: Made) -> None:
        """This pod made C{item}: adopted when it is what is wanted now, else deleted."""
        keeper = self._holdings.services.get(item.name or "")
        body = keeper.body if keeper is not None else None
        if keeper is not None and body is not None and made.digest == body_digest(body):
            if keeper.adopt(item):
                self._repaired("adopted", f"service {keeper.key} ({item.ref})")
                return
        stub = Registration(item.ref, None, item.interval)
        if self._holdings.stray(self._holdings.kinds.services, item, item.name or "", stub):
            self._repaired("leftover", f"service {item.name} ({item.ref})")

    def _stranger(self, item: Listed, started: float) -> None:
        """An instance nobody here made: of a wanted name, a dead run's until shown live."""
        name = item.name or ""
        if name not in self._holdings.services:
            return
        if item.state != "ACTIVE":
            self._watch.pop(item.ref, None)
            self._live.discard(item.ref)
            stub = Registration(item.ref, None, item.interval)
            if self._holdings.stray(self._holdings.kinds.services, item, name, stub):
                self._repaired("leftover", f"service {name} ({item.ref})")
            return
        if item.ref in self._live:
            return
        look_at = self._watch.get(item.ref)
        if look_at is not None and look_at <= started:
            del self._watch[item.ref]  # ACTIVE past its deadline: a live sibling's
            self._live.add(item.ref)
        elif look_at is None and item.interval:  # without liveness nothing can tell
            self._watch[item.ref] = started + item.interval + self._grace(item.interval)
            self._watch[item.ref] += LOOK_MARGIN

    # -- subscriptions ---------------------------------------------------------------------

    async def _subscriptions(
        self, kind: Subscriptions, listed: list[Listed], started: float
    ) -> None:
        wanted = self._holdings.wanted_subscriptions(kind)
        holding = {k: k.held for k in wanted if k.held is not None}
        seen = set()
        for item in listed:
            keeper = self._holdings.holder(item.ref)
            if keeper is not None:
                seen.add(item.ref)
                continue
            made = self._owned.made_by_this_pod(item.ref)
            if made is not None:
                self._ours_subscription(kind, item, made)
            elif item.ref not in self._foreign:
                await self._unknown_subscription(kind, item)
        for keeper, held in holding.items():
            if keeper.held is held and keeper.kind.ref(held) not in seen:
                if keeper.absent(started):
                    self._repaired("lost-subscription", f"{kind.label} {keeper.key}")
        self._forget_gone({item.ref for item in listed}, kind.kind, started, kind)
        termination = kind.label != "subscription"
        for intent in self._owned.earlier_intents():  # read now: what they made was seen
            if intent.kind != SERVICE and (intent.key == "termination") == termination:
                self._owned.resolved(intent)

    def _ours_subscription(self, kind: Subscriptions, item: Listed, made: Made) -> None:
        for keeper in self._holdings.wanted_subscriptions(kind):
            body = keeper.body
            if keeper.held is None and body is not None and made.digest == body_digest(body):
                if keeper.adopt(item):
                    self._repaired("adopted", f"{kind.label} {keeper.key} ({item.ref})")
                    return
        if self._holdings.stray(kind, item, made.key, _subscription(item)):
            self._repaired("leftover", f"{kind.label} {made.key} ({item.ref})")

    async def _unknown_subscription(self, kind: Subscriptions, item: Listed) -> None:
        try:
            body = await kind.body(item)
        except (MepError, NoToken):
            return  # the next sync reads it again
        if body is None:
            return
        callback = body.get("callbackReference")
        ours = callback == self._callback and self._callback is not None
        if self._route and isinstance(callback, str) and callback.startswith(self._route):
            if not ours:  # this agent's route, another run's secret: that run is dead
                if self._holdings.stray(kind, item, "orphan", _subscription(item)):
                    self._repaired("orphan-subscription", f"{kind.label} {item.ref}")
                return
        for keeper in self._holdings.wanted_subscriptions(kind):
            if keeper.body is not None and matches(keeper.body, body):
                self._identical(kind, keeper, item)
                return
        self._foreign.add(item.ref)  # the application's own business: never read again

    def _identical(self, kind: Subscriptions, keeper: Keeper, item: Listed) -> None:
        """C{item} is just what C{keeper} wants: adopted, or of two copies the least kept."""
        claimed = keeper.claimed
        if claimed is None:
            if keeper.adopt(item):
                self._repaired("adopted", f"{kind.label} {keeper.key} ({item.ref})")
            return
        if item.ref < claimed and keeper.held is not None and not kind.usable(keeper.held):
            claimed = item.ref  # what it holds cannot be seen or deleted: leave both alone
        if item.ref < claimed:
            extra = Listed(claimed)
            keeper.swap(item)  # two pods that made the same one converge on one
        else:
            extra = item
        if self._holdings.stray(kind, extra, keeper.key, _subscription(extra)):
            self._repaired("duplicate-subscription", f"{kind.label} {keeper.key} ({extra.ref})")

    # -- records and logs ------------------------------------------------------------------

    def _forget_gone(
        self, listed: set[str], kind: str, started: float, sub: Subscriptions | None = None
    ) -> None:
        """
        Records whose objects a good list no longer shows: an earlier life's, or one whose
        DELETE was answered 404 before the list began (this life's others are its keepers').
        """
        owned = self._owned
        for made in owned.all_made():
            if made.kind != kind or made.ref in listed:
                continue
            if sub is not None and (made.key == "termination") != (sub.label != "subscription"):
                continue  # read from the other list
            missed = owned.missed_since(made.ref)
            if made.life < owned.life or (missed is not None and missed < started):
                owned.gone(made.ref)

    def _prune_watches(self, listed: set[str]) -> None:
        """Foreign instances no longer listed, or now held by a keeper, are not watched."""
        for ref in list(self._watch):
            if ref not in listed or self._holdings.holder(ref) is not None:
                del self._watch[ref]
        self._live = {r for r in self._live if r in listed and self._holdings.holder(r) is None}

    def _note(self, what: str | None, keeper: Keeper) -> None:
        if what is not None:
            self._repaired(what, f"{keeper.kind.label} {keeper.key}")

    def _repaired(self, kind: str, what: str) -> None:
        self.repaired[kind] += 1
        self.log.info("sync: {kind}: {what}", kind=kind, what=what, event="sync.repaired")

    def _failed(self, error: str) -> None:
        if error != self.last_error:
            self.log.info("sync failed: {error}", error=error, event="sync.failed")
        self.last_error = error


def _subscription(item: Listed) -> Subscription:
    return Subscription(item.ref.rstrip("/").rsplit("/", 1)[-1], item.ref)
