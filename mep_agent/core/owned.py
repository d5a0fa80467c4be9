"""
What this pod made at the MEP, remembered beyond the process (--state-dir).

A container that is killed (OOM, a failed liveness probe, kill -9) leaves its registrations
and subscriptions behind, and on a platform without liveness nothing ever marks them dead.
Kubernetes restarts the container in the same pod, so a directory on a pod-scoped volume (an
emptyDir: it survives container restarts, not the pod) is where one life of the agent tells
the next what it made. Every creation is recorded before its request is sent (an intent,
with the instances of that name the MEP held just before) and again once answered (the
serInstanceId or the subscription's link); every deletion once done; READY and a
termination once confirmed. A restarted agent deletes what its earlier lives made, or adopts
it when it is what is wanted now, before it creates anything; what another pod made is
never in these records, so it is never touched.

The file is written whole and atomically (a temporary file, fsync, rename, fsync of the
directory), in the reactor's thread pool, and each change is durable before the step that
needs it goes on (a POST is sent only once its intent is on disk). It holds no secret: the
app instance id in the MEP's links is stored as a placeholder, and the id itself only as a
digest (a state directory of another app is ignored). It is bounded (L{MAX_RECORDS},
L{MAX_BYTES}); an unreadable, torn or foreign file is ignored with a warning. Without a
state directory, or when it cannot be written, the records live in memory only: the agent
still knows what this life made, and status says that nothing outlives it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Protocol

from attrs import evolve, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from mep_agent.util.tasks import follow

FORMAT = 1
FILE_NAME = "mep-agent-state.json"
MAX_RECORDS = 500  # instances + subscriptions + intents (the MEP keeps 50 + 50 per app)
MAX_BYTES = 256 * 1024
APP_PLACEHOLDER = "{appInstanceId}"
SERVICE = "service"
SUBSCRIPTION = "subscription"  # availability and termination subscriptions alike


@frozen
class Made:
    """An object a life of this container created at the MEP."""

    kind: str  # SERVICE or SUBSCRIPTION
    key: str  # what it was made for: the service name, or the subscription's label
    ref: str  # the serInstanceId, or the subscription's link
    digest: str  # of the body it was made with (adoption compares it)
    life: int


@frozen
class Intent:
    """A creation sent (or about to be) whose answer is not recorded."""

    kind: str
    key: str
    digest: str
    life: int
    at: float
    #: The refs of that key's objects the MEP held just before (the last read of them):
    #: an object that was not among them and that nobody else claims is this creation's.
    before: tuple[str, ...] = ()


@frozen
class Snapshot:
    """Everything the state file holds."""

    app: str  # digest of the app instance id
    life: int = 0
    made: tuple[Made, ...] = ()
    intents: tuple[Intent, ...] = ()
    ready: bool = False
    terminated: str | None = None  # the operationAction of a termination acted on


class StateStore(Protocol):
    """Where the snapshot is written (a file, or nowhere)."""

    def save(self, data: bytes) -> Deferred[None]:
        """Write C{data} durably; fails with OSError when it cannot."""
        ...


def app_digest(app_instance_id: str) -> str:
    """What identifies the app in the state file (not the id itself)."""
    return hashlib.sha256(app_instance_id.encode()).hexdigest()[:16]


def body_digest(body: dict[str, Any]) -> str:
    """What identifies a body (key order does not matter)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def encode(snapshot: Snapshot, app_instance_id: str) -> bytes:
    """The file's bytes; the app instance id in links becomes a placeholder."""
    data = {
        "format": FORMAT,
        "app": snapshot.app,
        "life": snapshot.life,
        "made": [
            [m.kind, m.key, m.ref.replace(app_instance_id, APP_PLACEHOLDER), m.digest, m.life]
            for m in snapshot.made
        ],
        "intents": [
            [i.kind, i.key, i.digest, i.life, i.at, list(i.before)] for i in snapshot.intents
        ],
        "ready": snapshot.ready,
        "terminated": snapshot.terminated,
    }
    return json.dumps(data, separators=(",", ":")).encode()


def decode(raw: bytes, app_instance_id: str) -> Snapshot:
    """The snapshot in C{raw}; ValueError naming what is wrong (the caller warns once)."""
    if len(raw) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw)
    except ValueError:
        raise ValueError("not JSON (a torn write?)") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"not a state file of format {FORMAT}")
    if data.get("app") != app_digest(app_instance_id):
        raise ValueError("written for another app instance")
    try:
        made = tuple(
            Made(
                _text(k),
                _text(key),
                _text(ref).replace(APP_PLACEHOLDER, app_instance_id),
                _text(d),
                _count(life),
            )
            for k, key, ref, d, life in data["made"]
        )
        intents = tuple(
            Intent(
                _text(k),
                _text(key),
                _text(d),
                _count(life),
                float(at),
                tuple(_text(b) for b in before),
            )
            for k, key, d, life, at, before in data["intents"]
        )
        terminated = data.get("terminated")
        snapshot = Snapshot(
            data["app"],
            _count(data["life"]),
            made,
            intents,
            data.get("ready") is True,
            terminated if isinstance(terminated, str) else None,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"malformed ({e.__class__.__name__})") from None
    if len(made) + len(intents) > MAX_RECORDS:
        raise ValueError(f"more than {MAX_RECORDS} records")
    return snapshot


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > 4096:
        raise ValueError("not a string")
    return value


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("not a count")
    return value


class Owned:
    """The records of this pod's lives, with the file behind them; see the module."""

    log = Logger()

    def __init__(
        self,
        app_instance_id: str,
        earlier: Snapshot | None,
        store: StateStore | None,
        clock_seconds: Callable[[], float],
        where: str | None = None,
    ) -> None:
        """
        @param earlier: what the file held at start (None: nothing, or not readable).
        @param store: writes the file (None: no state directory; memory only).
        @param where: the state directory, for status.
        """
        self._app_instance_id = app_instance_id
        self._store = store
        self._now = clock_seconds
        self.where = where
        base = earlier or Snapshot(app_digest(app_instance_id))
        self._snapshot = evolve(base, life=base.life + 1)
        self.earlier_life = base.life
        self.problem: str | None = None if store is not None or where is None else "not set"
        self._writing: Deferred[None] | None = None
        self._next: Deferred[None] | None = None
        self.writes = 0
        #: Objects whose DELETE was answered 404 (a gateway's, maybe): ref -> (how many
        #: times, when last). In memory only; their records stay until a list decides.
        self._missed: dict[str, tuple[int, float]] = {}

    # -- what start-up reads -------------------------------------------------------------

    @property
    def life(self) -> int:
        """Which life of the container this is (1: the first, or no records)."""
        return self._snapshot.life

    @property
    def persistent(self) -> bool:
        """Whether the records outlive the process."""
        return self._store is not None and self.problem is None

    @property
    def terminated(self) -> str | None:
        """The operationAction of a termination an earlier life (or this one) acted on."""
        return self._snapshot.terminated

    @property
    def ready_confirmed(self) -> bool:
        """Whether some life confirmed READY."""
        return self._snapshot.ready

    def earlier_made(self) -> list[Made]:
        """What earlier lives made and did not delete."""
        return [m for m in self._snapshot.made if m.life < self.life]

    def earlier_intents(self) -> list[Intent]:
        """Creations of earlier lives whose answer was never recorded."""
        return [i for i in self._snapshot.intents if i.life < self.life]

    def earlier_named(self, kind: str, key: str) -> bool:
        """Whether an earlier life made (or was making) an object of C{kind} for C{key}."""
        made = any(m.kind == kind and m.key == key for m in self.earlier_made())
        return made or any(i.kind == kind and i.key == key for i in self.earlier_intents())

    def all_made(self) -> list[Made]:
        """Everything the records say this pod made and did not delete."""
        return list(self._snapshot.made)

    def made_by_this_pod(self, ref: str) -> Made | None:
        """The record of C{ref}, if some life of this pod made it."""
        return next((m for m in self._snapshot.made if m.ref == ref), None)

    def view(self) -> dict[str, Any]:
        """For status and /readyz?verbose."""
        return {
            "persistent": self.persistent,
            "stateDir": self.where,
            "problem": self.problem,
            "life": self.life,
            "records": len(self._snapshot.made),
            "pending": len(self._snapshot.intents),
        }

    # -- changes, each durable before the returned Deferred fires ------------------------

    def intend(self, kind: str, key: str, digest: str, before: tuple[str, ...]) -> Intent:
        """Record a creation about to be sent; L{saved} says when it is on disk."""
        intent = Intent(kind, key, digest, self.life, self._now(), before[: MAX_RECORDS // 10])
        self._change(intents=self._snapshot.intents + (intent,))
        return intent

    def made(self, intent: Intent | None, ref: str, kind: str, key: str, digest: str) -> None:
        """C{ref} was created (for C{intent}, now answered, or adopted)."""
        made = Made(kind, key, ref, digest, self.life)
        kept = tuple(m for m in self._snapshot.made if m.ref != ref)
        self._change(made=kept + (made,), intents=self._without(intent))

    def unsent(self, intent: Intent) -> None:
        """C{intent}'s creation certainly made nothing (the MEP answered an error)."""
        self._change(intents=self._without(intent))

    def deletion_missed(self, ref: str) -> int:
        """C{ref}'s DELETE was answered 404: how many times now."""
        count = self._missed.get(ref, (0, 0.0))[0] + 1
        self._missed[ref] = (count, self._now())
        return count

    def missed_since(self, ref: str) -> float | None:
        """When C{ref}'s DELETE was last answered 404 (None: never)."""
        missed = self._missed.get(ref)
        return None if missed is None else missed[1]

    def gone(self, ref: str) -> None:
        """C{ref} no longer exists at the MEP (deleted, or seen missing)."""
        self._missed.pop(ref, None)
        if any(m.ref == ref for m in self._snapshot.made):
            self._change(made=tuple(m for m in self._snapshot.made if m.ref != ref))

    def resolved(self, intent: Intent) -> None:
        """An earlier life's C{intent} was looked into: forget it."""
        self.unsent(intent)

    def confirmed_ready(self) -> None:
        """READY was confirmed."""
        if not self._snapshot.ready:
            self._change(ready=True)

    def terminated_by(self, action: str) -> None:
        """The platform terminated the app: no later life registers anything again."""
        self._change(terminated=action, ready=False)

    def saved(self) -> Deferred[None]:
        """Fires once every change so far is on disk (at once without a file)."""
        if self._next is not None:
            return follow(self._next)
        if self._writing is not None:
            return follow(self._writing)
        return succeed(None)

    # -- inside --------------------------------------------------------------------------

    def _without(self, intent: Intent | None) -> tuple[Intent, ...]:
        return tuple(i for i in self._snapshot.intents if i is not intent)

    def _change(self, **changes: Any) -> None:
        made = changes.get("made", self._snapshot.made)
        if len(made) > MAX_RECORDS:  # bounded: the oldest records go first
            changes["made"] = made[-MAX_RECORDS:]
        self._snapshot = evolve(self._snapshot, **changes)
        if self._store is None or self.problem is not None:
            return
        if self._writing is None:
            self._write()
        elif self._next is None:
            self._next = Deferred()

    def _write(self) -> Deferred[None]:
        assert self._store is not None
        data = encode(self._snapshot, self._app_instance_id)
        writing = self._writing = self._store.save(data)
        writing.addCallbacks(self._written, self._failed)
        return writing

    def _written(self, result: None) -> None:
        self.writes += 1
        self._writing = None
        waiting, self._next = self._next, None
        if waiting is not None:
            self._write().chainDeferred(waiting)

    def _failed(self, failure: Any) -> None:
        self.problem = f"cannot write {self.where}: {failure.getErrorMessage()}"
        self.log.error(
            "state directory: {problem}; what this life makes is remembered in memory only",
            problem=self.problem,
            event="state.unwritable",
        )
        self._writing = None
        waiting, self._next = self._next, None
        if waiting is not None:
            waiting.callback(None)
