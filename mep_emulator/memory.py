"""
The emulator in memory, for tests and for anyone embedding it: a Clock, the Klein app,
and clients wired to it. Nothing touches a socket or the global reactor.
"""

from __future__ import annotations

from typing import Any

from attrs import define
from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.task import Clock, LoopingCall

from mep_emulator.app import MepEmulator
from mep_emulator.dev import DEV_APP, DEV_CLIENT_ID, DEV_CLIENT_SECRET, OTHER_APP
from mep_emulator.etsi import EtsiMep, OAuth2Client
from mep_emulator.kong import MinuteLimit
from mep_emulator.notifier import Notifier
from mep_emulator.registry import Registry

__all__ = ["DEV_APP", "OTHER_APP", "InMemoryMep"]


@define
class InMemoryMep:
    """One emulator on a Clock with an IAgent (for the agent's client) and a StubTreq."""

    clock: Clock
    emulator: MepEmulator
    notifier: Notifier
    http: Any  # a StubTreq; its treq functions are set at run time, unknown to mypy
    agent: RequestTraversalAgent  # the IAgent the agent's MEP client is built over
    etsi: EtsiMep | None = None  # the ETSI face, when it is the one served

    @classmethod
    def create(
        cls,
        clock: Clock | None = None,
        liveness_interval: int | None = 60,
        token_lifetime: int = 3600,
        accept_patch: bool = False,
        callback_http: Any = None,
        dialect: str = "edgegallery",
        api_root: str = "/mep",
        public_url: str | None = None,
        rate_limit: int = 0,
        token_rate_limit: int = 0,
        retry_after: bool = False,
        platform: str = "standard",
        presentation: str = "mepserver",
    ) -> InMemoryMep:
        """
        A fresh emulator; C{callback_http} delivers its notifications (None: recorded).
        With C{dialect="etsi"} the ETSI MEC 011 v2.2.1 face is served under C{api_root}.
        C{rate_limit} and C{token_rate_limit} are Kong's per-minute limits on the EdgeGallery
        face (0: none; EdgeGallery sets 1000 and 100), C{retry_after} adds Retry-After to
        their 429s. C{platform} is the ETSI face's setting of that name ("advantedge"),
        C{presentation} the EdgeGallery face's ("mepserver").
        """
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
            mp1_limit=MinuteLimit(rate_limit),
            token_limit=MinuteLimit(token_rate_limit),
            retry_after=retry_after,
            platform=platform,
            presentation=presentation,
        )
        sweep = LoopingCall(registry.check_liveness)  # mepserver's 1 s liveness sweep
        sweep.clock = clock
        sweep.start(1.0, now=False)
        etsi = None
        resource = emulator.resource()
        if dialect == "etsi":
            client = OAuth2Client(DEV_CLIENT_ID, DEV_CLIENT_SECRET, DEV_APP.app_instance_id)
            etsi = EtsiMep(emulator, api_root, {client.client_id: client}, public_url=public_url)
            resource = etsi.resource()
        return cls(
            clock,
            emulator,
            notifier,
            StubTreq(resource),
            RequestTraversalAgent(resource),
            etsi,
        )

    def flush(self) -> None:
        """Deliver every in-memory request and response that is ready."""
        self.http.flush()
        self.agent.flush()

    def advance(self, seconds: float, step: float = 1.0) -> None:
        """Move time forward in steps, delivering in-memory responses after each."""
        remaining = seconds
        while remaining > 0:
            delta = min(step, remaining)
            self.clock.advance(delta)
            self.flush()
            remaining -= delta
        self.flush()
