"""
The emulator in memory, for tests and for anyone embedding it: a Clock, the Klein app,
and a StubTreq client wired to it. Nothing touches a socket or the global reactor.
"""

from __future__ import annotations

from typing import Any

from attrs import define
from treq.testing import StubTreq
from twisted.internet.task import Clock, LoopingCall

from .app import MepEmulator
from .auth import App
from .notifier import Notifier
from .registry import Registry

DEV_APP = App(
    "QVUJMSUMgS0VZLS0tLS0",
    "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc",
    "891c2bba-f1f2-40bd-a97e-9bebbafcc964",
)
OTHER_APP = App(
    "T1RIRVJBUFBLRVkwMDAx",
    "b3RoZXItYXBwLXNlY3JldC1rZXktMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAw",
    "0d7b4b8e-3f7e-4a59-9d1b-2f4c8a6e5b10",
)


@define
class InMemoryMep:
    clock: Clock
    emulator: MepEmulator
    notifier: Notifier
    http: StubTreq  # a treq-compatible client whose requests reach the emulator

    @classmethod
    def create(
        cls,
        clock: Clock | None = None,
        liveness_interval: int | None = 60,
        token_lifetime: int = 3600,
        accept_patch: bool = False,
        callback_http: Any = None,
    ) -> InMemoryMep:
        clock = clock or Clock()
        notifier = Notifier(callback_http, clock)
        registry = Registry(clock, notifier, liveness_interval)
        emulator = MepEmulator(
            clock,
            registry,
            {a.access_key: a for a in (DEV_APP, OTHER_APP)},
            token_lifetime=token_lifetime,
            accept_patch=accept_patch,
            notifications=notifier.delivered,
        )
        sweep = LoopingCall(registry.check_liveness)  # mepserver's 1 s liveness sweep
        sweep.clock = clock
        sweep.start(1.0, now=False)
        return cls(clock, emulator, notifier, StubTreq(emulator.resource()))

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move time forward in steps, delivering in-memory responses after each."""
        remaining = seconds
        while remaining > 0:
            delta = min(step, remaining)
            self.clock.advance(delta)
            self.http.flush()
            remaining -= delta
        self.http.flush()
