"""
SyncRequests: where keepers ask for a sync and the Reconciler serves them (keeper.Syncs).
Made before both, so that neither needs the other to exist first: keepers wait for the
first sync before they make anything, ask for one when something may be lost (and wait for
it to end), and read what the last list showed; the Reconciler registers how to be woken.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed

from mep_agent.core.owned import SERVICE
from mep_agent.util.tasks import follow


class SyncRequests:
    """The keepers' side and the Reconciler's side of asking for syncs."""

    def __init__(self) -> None:
        self._first: Deferred[None] = Deferred()
        self._good: Deferred[None] = Deferred()
        self._asked: list[Deferred[None]] = []
        self._listed: dict[str, tuple[str, ...]] = {}
        self._wake: Callable[[str], object] = lambda reason: None
        self.open = True

    # -- the keepers' side ---------------------------------------------------------------

    def first(self) -> Deferred[None]:
        """Fires once the first sync was tried (done or failed): creations may begin."""
        return succeed(None) if self._first.called else follow(self._first)

    def good(self) -> Deferred[None]:
        """
        Fires once a sync has read the MEP successfully (or syncs are over): what an earlier
        life made is known then, so nothing of its name is made twice.
        """
        return succeed(None) if self._good.called else follow(self._good)

    def soon(self, reason: str) -> Deferred[None]:
        """Ask for a sync of everything now; fires once one begun after this has ended."""
        if not self.open:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._asked.append(waiter)
        self._wake(reason)
        return waiter

    def before(self, kind: str, key: str) -> tuple[str, ...]:
        """The refs of the instances of service C{key} the last list showed."""
        return self._listed.get(key, ()) if kind == SERVICE else ()

    # -- the Reconciler's side -----------------------------------------------------------

    def served_by(self, wake: Callable[[str], object]) -> None:
        """C{wake(reason)} is called at every request."""
        self._wake = wake

    @property
    def asked(self) -> bool:
        """Whether some request waits for the next sync."""
        return bool(self._asked)

    def take(self) -> list[Deferred[None]]:
        """The requests the sync about to begin answers."""
        taken, self._asked = self._asked, []
        return taken

    def answered(self, waiters: list[Deferred[None]], good: bool = True) -> None:
        """A sync has ended (C{good}: it read the MEP): its requests are answered."""
        if not self._first.called:
            self._first.callback(None)
        if good and not self._good.called:
            self._good.callback(None)
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(None)

    def listed(self, by_name: dict[str, tuple[str, ...]]) -> None:
        """What the last list of services showed, by name."""
        self._listed = by_name

    def close(self) -> None:
        """No more syncs (a stop, a termination): everyone waiting goes on."""
        self.open = False
        self.answered(self.take(), good=True)
