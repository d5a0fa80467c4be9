"""
What every keeper (keeper.py) shares and shows: where an object stands (L{Phase}), the
context the keepers act in -- the clock, READY, the records of what this pod made, the
requests for syncs, the retry discipline, what heartbeats need, and whom to tell -- and what
each one did (L{Counts}).
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable

from attrs import define, field, frozen
from twisted.internet.defer import DeferredSemaphore
from twisted.internet.interfaces import IReactorTime

from mep_agent.core.budget import Budget
from mep_agent.core.guard import RemakeGuard
from mep_agent.core.owned import Owned
from mep_agent.core.ready import Ready
from mep_agent.core.syncs import SyncRequests
from mep_agent.mp1.client import MepClient
from mep_agent.util.retry import Policy


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
class Discipline:
    """How keepers retry and how many of them create at once."""

    policy: Policy  # the back-off after a failed action (util/retry.py)
    creations: DeferredSemaphore  # creations under way at once (the connection pool's size)


@frozen
class Hooks:
    """Whom keepers tell, and what they ask, beyond the MEP."""

    changed: Callable[[], object] = lambda: None  # something was made or adopted
    freed: Callable[[], object] = lambda: None  # something was deleted
    #: Whether a creation on the wire now may have reached the MEP (else a stop cancels it).
    reached: Callable[[], bool] = lambda: True
    #: What every keeper did, by (kind, action): created, adopted, repaired, replaced, deleted.
    actions: Counter[tuple[str, str]] = field(factory=Counter)


@frozen
class KeeperContext:
    """What every keeper shares."""

    clock: IReactorTime
    ready: Ready
    owned: Owned
    syncs: SyncRequests
    discipline: Discipline
    liveness: Liveness | None = None
    hooks: Hooks = field(factory=Hooks)
    #: Asked before what was lost is made anew, where a termination deletes it (guard.py).
    guard: RemakeGuard | None = None


@define
class Counts:
    """What a keeper did, for status and metrics."""

    created: int = 0
    repaired: int = 0
    replaced: int = 0
    deleted: int = 0
    failures: int = 0  # in a row
