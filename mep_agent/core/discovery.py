"""
Service discovery for the application: MEP answers per service name, fresh for C{ttl}
seconds, served stale for up to C{stale_if_error} more when the MEP fails, with
concurrent misses for one name sharing one MEP request, entries dropped when a
notification says they changed, and the whole cache bounded by entries, bytes and time
(expired entries are swept on a timer).

Failures leave this module as domain errors (L{DiscoveryFailed}, L{NoToken}) that the web
side maps to HTTP in one place. Blocking queries are the web side's (web/blocking.py): the
cache numbers each name's answer (L{DiscoveryCache.index}) and tells the hooks given to
L{DiscoveryCache.on_change} when it may have changed.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import evolve, frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, TimeoutError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure

from mep_agent.core.errors import DiscoveryFailed, NoToken
from mep_agent.core.token import TokenKeeper
from mep_agent.mp1.client import Discovered, MepClient, ServiceInstance
from mep_agent.mp1.errors import MepError

MAX_ENTRIES = 1000
MAX_BYTES = 8 * 1024 * 1024  # of MEP answers kept in the cache
SWEEP_INTERVAL = 60.0


class CacheSource(enum.Enum):
    """Where an answer came from (the X-Cache header)."""

    MEP = "mep"
    CACHE = "cache"
    STALE = "stale"


@frozen
class Lookup:
    """A discovery answer for the application."""

    instances: tuple[ServiceInstance, ...] | None  # None: the MEP does not know the name
    age: float  # seconds since the MEP answered
    source: CacheSource


@frozen
class _Entry:
    answer: Discovered
    fetched_at: float


class MepDiscovery:
    """
    The cache's source: a discovery request to the MEP with the agent's token. A service
    that gives only a C{transportId} gets its endpoint from the platform's transports
    (C{GET …/transports}, kept for C{transports_ttl} seconds).
    """

    def __init__(
        self,
        tokens: TokenKeeper,
        mep: MepClient,
        transports_ttl: float = 30.0,
        clock: IReactorTime | None = None,
    ) -> None:
        self._tokens = tokens
        self._mep = mep
        self._transports_ttl = transports_ttl
        self._clock = clock
        self._transports: tuple[float, dict[str, dict[str, Any]]] | None = None

    async def __call__(self, name: str) -> Discovered:
        """Ask the MEP; L{NoToken} at once when there is no valid token."""
        self._tokens.require()  # 412/503 at once rather than a wait for a token
        answer = await self._mep.discover(name)
        if answer.instances is None or not any(
            i.transport_id and not i.endpoint for i in answer.instances
        ):
            return answer
        transports = await self._known_transports()
        instances = tuple(
            evolve(i, endpoint=transports.get(i.transport_id, {}))
            if i.transport_id and not i.endpoint
            else i
            for i in answer.instances
        )
        return Discovered(instances, answer.size)

    async def _known_transports(self) -> dict[str, dict[str, Any]]:
        now = self._clock.seconds() if self._clock is not None else None
        if self._transports is not None and now is not None:
            fetched_at, transports = self._transports
            if now - fetched_at < self._transports_ttl:
                return transports
        transports = await self._mep.transports()
        if now is not None:
            self._transports = (now, transports)
        return transports


class DiscoveryCache(Service):
    """The cache in front of a discovery source; see the module docstring."""

    name = "discovery"

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[Discovered]],
        clock: IReactorTime,
        ttl: float = 30.0,
        stale_if_error: float = 300.0,
        deadline: float = 11.0,
        max_entries: int = MAX_ENTRIES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        """
        @param deadline: seconds a caller waits for the MEP before it is answered from
            the stale cache or with 503.
        """
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._stale_if_error = stale_if_error
        self._deadline = deadline
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._in_flight: dict[str, list[Deferred[Discovered]]] = {}
        self._indexes: OrderedDict[str, int] = OrderedDict()  # per name, for blocking queries
        self._change_hooks: list[Callable[[str], object]] = []
        self._sweeper = LoopingCall(self.sweep)
        self._sweeper.clock = clock
        self.hits = 0
        self.misses = 0
        self.stale = 0

    @property
    def size(self) -> tuple[int, int]:
        """(entries, bytes) held."""
        return len(self._entries), self._bytes

    def startService(self) -> None:
        """Sweep expired entries periodically."""
        super().startService()
        interval = max(1.0, min(SWEEP_INTERVAL, self._ttl + self._stale_if_error))
        self._sweeper.start(interval, now=False)

    def stopService(self) -> None:
        """Stop sweeping."""
        super().stopService()
        if self._sweeper.running:
            self._sweeper.stop()

    def fresh(self, name: str) -> Lookup | None:
        """The cached answer for C{name} if it is fresh (a hit), else None."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        age = self._clock.seconds() - entry.fetched_at
        if age >= self._ttl:
            return None
        self.hits += 1
        return Lookup(entry.answer.instances, age, CacheSource.CACHE)

    async def lookup(self, name: str) -> Lookup:
        """
        Instances of C{name}; L{DiscoveryFailed} or L{NoToken} when nothing usable can be
        had in time.
        """
        cached = self.fresh(name)
        if cached is not None:
            return cached
        entry = self._entries.get(name)
        self.misses += 1
        waiter = self._shared_fetch(name)
        waiter.addTimeout(self._deadline, self._clock)
        try:
            answer = await waiter
        except TimeoutError:
            error = MepError("discovery", None, "timed out")
            return self._stale_or_raise(name, entry, DiscoveryFailed(name, error))
        except MepError as e:
            return self._stale_or_raise(name, entry, DiscoveryFailed(name, e))
        except NoToken as e:
            return self._stale_or_raise(name, entry, e)
        return Lookup(answer.instances, 0.0, CacheSource.MEP)

    def _stale_or_raise(
        self, name: str, entry: _Entry | None, problem: DiscoveryFailed | NoToken
    ) -> Lookup:
        now = self._clock.seconds()
        if entry is not None and now - entry.fetched_at < self._ttl + self._stale_if_error:
            self.stale += 1
            return Lookup(entry.answer.instances, now - entry.fetched_at, CacheSource.STALE)
        raise problem

    def _shared_fetch(self, name: str) -> Deferred[Discovered]:
        """
        A Deferred for the MEP's answer, sharing the request in flight for C{name}. The
        request runs on its own: a caller that stops waiting does not cancel it for others.
        """
        waiter: Deferred[Discovered] = Deferred(lambda d: self._abandon(name, d))
        waiters = self._in_flight.get(name)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._in_flight[name] = [waiter]
        ensureDeferred(self._fetch_once(name)).addBoth(self._fetched, name)
        return waiter

    async def _fetch_once(self, name: str) -> Discovered:
        return await self._fetch(name)

    def _abandon(self, name: str, waiter: Deferred[Discovered]) -> None:
        waiters = self._in_flight.get(name)
        if waiters is not None and waiter in waiters:
            waiters.remove(waiter)

    def _fetched(self, result: Discovered | Failure, name: str) -> None:
        waiters = self._in_flight.pop(name, [])
        if isinstance(result, Failure):
            for waiter in waiters:
                waiter.errback(result)
        else:
            self._store(name, result)
            for waiter in waiters:
                waiter.callback(result)

    def index(self, name: str) -> int:
        """The version of C{name}'s answer: it grows whenever the answer may have changed."""
        return self._indexes.get(name, 1)

    def on_change(self, hook: Callable[[str], object]) -> None:
        """C{hook(name)} is called whenever C{name}'s answer may have changed (its index grew)."""
        self._change_hooks.append(hook)

    def _bump(self, name: str) -> None:
        self._indexes[name] = self.index(name) + 1
        self._indexes.move_to_end(name)
        while len(self._indexes) > self._max_entries:
            self._indexes.popitem(last=False)  # a forgotten index reads as stale: harmless
        for hook in self._change_hooks:
            hook(name)

    def _store(self, name: str, answer: Discovered) -> None:
        previous = self._entries.get(name)
        if previous is not None and previous.answer.instances != answer.instances:
            self._bump(name)
        self._drop(name)
        if answer.size > self._max_bytes:
            return  # served once, never kept
        self._entries[name] = _Entry(answer, self._clock.seconds())
        self._bytes += answer.size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            self._bytes -= entry.answer.size

    def sweep(self) -> None:
        """Drop every entry too old to be served even stale."""
        limit = self._clock.seconds() - self._ttl - self._stale_if_error
        for name in [n for n, e in self._entries.items() if e.fetched_at <= limit]:
            self._drop(name)

    def invalidate(self, names: list[str] | None = None) -> None:
        """Drop the named entries (all of them with None); the change hooks are told."""
        for name in list(self._entries) if names is None else names:
            self._drop(name)
            self._bump(name)
