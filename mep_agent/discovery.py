"""
The discovery cache: MEP answers per service name, fresh for C{ttl} seconds, served
stale for up to C{stale_if_error} more when the MEP fails, with concurrent misses for one
name sharing one MEP request, and entries dropped when a notification says they changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from .mep import MepError

Instances = list[dict[str, Any]] | None  # None: the MEP does not know the name
MAX_ENTRIES = 1000


@frozen
class Lookup:
    instances: Instances
    age: float  # seconds since the MEP answered
    source: str  # "mep" | "cache" | "stale"


@frozen
class _Entry:
    instances: Instances
    fetched_at: float


class DiscoveryCache:
    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Instances]],
        clock: IReactorTime,
        ttl: float = 30.0,
        stale_if_error: float = 300.0,
    ) -> None:
        self._fetch = fetch
        self._clock = clock
        self.ttl = ttl
        self.stale_if_error = stale_if_error
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._in_flight: dict[str, list[Deferred[Instances]]] = {}
        self.hits = 0
        self.misses = 0
        self.stale = 0

    async def lookup(self, name: str) -> Lookup:
        """Instances of name; raises MepError only when nothing usable is cached."""
        now = self._clock.seconds()
        entry = self._entries.get(name)
        if entry is not None and now - entry.fetched_at < self.ttl:
            self.hits += 1
            return Lookup(entry.instances, now - entry.fetched_at, "cache")
        self.misses += 1
        try:
            instances = await self._shared_fetch(name)
        except MepError:
            now = self._clock.seconds()
            if entry is not None and now - entry.fetched_at < self.ttl + self.stale_if_error:
                self.stale += 1
                return Lookup(entry.instances, now - entry.fetched_at, "stale")
            raise
        return Lookup(instances, 0.0, "mep")

    async def _shared_fetch(self, name: str) -> Instances:
        waiters = self._in_flight.get(name)
        if waiters is not None:
            d: Deferred[Instances] = Deferred()
            waiters.append(d)
            return await d
        waiters = self._in_flight[name] = []
        try:
            instances = await self._fetch(name)
        except Exception as e:
            del self._in_flight[name]
            for waiter in waiters:
                waiter.errback(e)
            raise
        del self._in_flight[name]
        self._store(name, instances)
        for waiter in waiters:
            waiter.callback(instances)
        return instances

    def _store(self, name: str, instances: Instances) -> None:
        self._entries[name] = _Entry(instances, self._clock.seconds())
        self._entries.move_to_end(name)
        while len(self._entries) > MAX_ENTRIES:
            self._entries.popitem(last=False)

    def invalidate(self, names: list[str] | None = None) -> None:
        """Drop the named entries (all of them with None)."""
        if names is None:
            self._entries.clear()
        for name in names or ():
            self._entries.pop(name, None)
