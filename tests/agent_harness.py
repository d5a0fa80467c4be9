"""The agent's lifecycle services wired to the in-memory emulator, on one Clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from twisted.application.service import Service
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.agent import mep_access
from mep_agent.config.model import ServiceSpec, SubscriptionSpec
from mep_agent.config.parsers import Auth
from mep_agent.core.liveness import BeatSchedule
from mep_agent.core.reconcile import Reconciler
from mep_agent.core.registration import Registrar
from mep_agent.core.subscriptions import Subscriber, termination_body
from mep_agent.core.termination import Terminator
from mep_agent.mp1.client import Registration
from mep_agent.mp1.credentials import Credentials
from mep_agent.mp1.dialect import mepserver_grace, no_grace
from mep_agent.mp1.http import MepHttp
from mep_agent.mp1.wire import MepWire
from mep_agent.util.retry import backoff
from mep_agent.util.secret import Secret
from mep_emulator.memory import DEV_APP, InMemoryMep

from .emulator_client import service

BASE = "https://127.0.0.1:8443"
# When a service registered at 0 with the MEP's 60 s interval sends its first heartbeat
# (52.5 s: 63 s deadline, the whole 10 s request timeout while no latency is known, 0.5 s
# safety); the same on a MEC 011 platform, which gives no grace (49.5 s). Later beats to a
# fast MEP follow every 59.5 s (56.5 s), their timeout down to 3 s.
BEAT = BeatSchedule(10, mepserver_grace(60)).period(60)
ETSI_BEAT = BeatSchedule(10, no_grace(60)).period(60)


def _steady(grace: float) -> float:
    schedule = BeatSchedule(10, grace)
    schedule.observe(0.001)
    return schedule.period(60)


BEAT_EVERY = _steady(mepserver_grace(60))
ETSI_BEAT_EVERY = _steady(no_grace(60))
NOTIFY_SECRET = Secret("test-notification-secret")
NOTIFICATIONS = f"/mep-agent/v1/notifications/{NOTIFY_SECRET.reveal()}"


def exact_backoff() -> Iterator[float]:
    """The production policy without jitter, so tests know every delay."""
    return backoff(rng=lambda: 0.0)


def stop_if_running(service: Service) -> None:
    if service.running:
        service.stopService()


def spec(name: str = "svc1", interval: int = 60, **extra: Any) -> ServiceSpec:
    return ServiceSpec(name, service(name, interval, **extra))


def credentials(sk: str | None = None) -> Credentials:
    return Credentials(
        Secret(DEV_APP.access_key),
        Secret(sk or DEV_APP.secret_key),
        Secret(DEV_APP.app_instance_id),
    )


class AgentTestCase(SynchronousTestCase):
    """Builds an in-memory MEP and the agent's services; call start() in the test."""

    def setUp(self) -> None:
        self.mep = InMemoryMep.create()
        self.clock = self.mep.clock
        self.emulator = self.mep.emulator
        self.registry = self.emulator.registry

    def build(
        self,
        services: tuple[ServiceSpec, ...] = (),
        sk: str | None = None,
        subscriptions: tuple[SubscriptionSpec, ...] = (),
        notify_url: str | None = None,
        client_options: dict[str, Any] | None = None,
        client_credentials: Credentials | None = None,
        oauth2: bool = False,
        termination: bool = False,
        wait_app: bool = False,
        forward: Any = None,
        on_refused: Any = None,
        sync: bool = False,
        sync_interval: float = 60.0,
        **registrar_options: Any,
    ) -> None:
        api_root = (client_options or {}).get("api_root", "/mep")
        self._build_access(client_options, client_credentials, sk, oauth2, on_refused)
        self.subscriber = Subscriber(
            self.client,
            self.tokens,
            self.clock,
            subscriptions,
            callback_url=notify_url,
            delays=exact_backoff,
            termination_body=termination_body(notify_url, api_root, DEV_APP.app_instance_id)
            if termination and notify_url
            else None,
            when_ready=(lambda: self.registrar.when_ready())
            if registrar_options.get("ready_first")
            else None,
            ready_lost=(lambda: self.registrar.ready_lost())
            if registrar_options.get("confirm_ready", True)
            else None,
        )
        self.registrar = Registrar(
            self.client,
            self.tokens,
            self.clock,
            services,
            delays=exact_backoff,
            on_data_loss=self.data_lost,
            first_sync=self._first_sync if sync else None,
            **registrar_options,
        )
        self.reconciler = (
            Reconciler(
                self.client,
                self.clock,
                self.registrar,
                self.subscriber,
                sync_interval,
                callback_url=notify_url,
                ready_lost=self.registrar.ready_lost,
                when_ready=self.registrar.when_ready
                if registrar_options.get("ready_first")
                else None,
                rng=lambda: 0.0,
            )
            if sync
            else None
        )
        self.terminator = (
            Terminator(
                self.client,
                self.clock,
                self.registrar,
                self.subscriber,
                forward,
                wait_app,
            )
            if termination
            else None
        )

    def _build_access(
        self,
        client_options: dict[str, Any] | None,
        client_credentials: Credentials | None,
        sk: str | None,
        oauth2: bool,
        on_refused: Any,
    ) -> None:
        """The wire to the emulator in memory, and the production stage 2 on it."""
        api_root = (client_options or {}).get("api_root", "/mep")
        self.mep_wire = MepWire(
            MepHttp(self.mep.agent),
            self.clock,
            BASE,
            "127.0.0.1:8443",
            client_credentials or credentials(sk),
            timeout=10,
        )
        # The production stage: the token keeper and the Mp1 client on the wire.
        options = dict(client_options or {})
        options.pop("api_root", None)
        access = mep_access(
            self.mep_wire,
            self.clock,
            Auth.OAUTH2 if oauth2 else Auth.AKSK,
            api_root,
            delays=exact_backoff,
            on_refused=on_refused or (lambda: None),
            **options,
        )
        self.auth, self.tokens, self.client = access.auth, access.tokens, access.client

    def _first_sync(self) -> Any:
        assert self.reconciler is not None
        return self.reconciler.first_sync()

    def data_lost(self) -> None:
        self.subscriber.check_now()
        if self.reconciler is not None:
            self.reconciler.sync_soon()

    def start(self) -> None:
        parts: tuple[Service, ...] = (self.tokens, self.registrar, self.subscriber)
        if self.reconciler is not None:
            parts += (self.reconciler,)
        if self.terminator is not None:
            parts += (self.terminator,)
        for part in parts:
            part.startService()
            self.addCleanup(stop_if_running, part)
        self.settle()

    def settle(self) -> None:
        for _ in range(5):
            self.mep.flush()
            self.clock.advance(0)

    def capture_events(self) -> list[Any]:
        """Every log event from now on, until the test ends."""
        from twisted.logger import ILogObserver, globalLogPublisher

        events: list[Any] = []
        observer: ILogObserver = events.append  # type: ignore[assignment]
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        return events

    def advance(self, seconds: float, step: float = 0.5) -> None:
        self.mep.advance(seconds, step)
        self.settle()

    def fault(self, **spec: Any) -> None:
        d = self.mep.http.post(f"{BASE}/_emulator/faults", data=json.dumps(spec).encode())
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 201)

    def registration(self, name: str) -> Registration:
        """The registration the MEP answered for service C{name} (it must have one)."""
        registration = self.registrar.states[name].registration
        assert registration is not None, f"{name} is not registered"
        return registration

    def sid(self, name: str) -> str:
        """The serInstanceId of service C{name}."""
        return self.registration(name).ser_instance_id

    def token_value(self) -> str:
        """The current token's value (there must be one)."""
        token = self.tokens.current()
        assert token is not None, "no valid token"
        return token.access_token.reveal()

    def requests(self, kind: str) -> list[int]:
        return [r.status for r in self.emulator.requests if r.kind == kind]

    def instances(self, name: str) -> list[Any]:
        return [s for s in self.registry.services.values() if s.body["serName"] == name]


class ApiTestCase(AgentTestCase):
    """AgentTestCase plus the app API and the ops API, each behind its own StubTreq."""

    def build(  # type: ignore[override]
        self,
        services: tuple[ServiceSpec, ...] = (),
        api_token: Secret | None = None,
        ttl: float = 30.0,
        stale: float = 300.0,
        **kw: Any,
    ) -> None:
        from treq.testing import StubTreq

        from mep_agent.core.discovery import DiscoveryCache, MepDiscovery
        from mep_agent.mp1.client import Discovered
        from mep_agent.web.api import AgentAPI

        super().build(services, **kw)
        self.discovery_calls: list[str] = []

        source = MepDiscovery(self.tokens, self.client)

        async def fetch(name: str) -> Discovered:
            self.discovery_calls.append(name)
            return await source(name)

        self.discovery = DiscoveryCache(fetch, self.clock, ttl, stale, deadline=11)
        self.agent_api = AgentAPI(
            self.tokens, self.discovery, self.clock, api_token, terminator=self.terminator
        )
        self.front: Any = self.agent_api.resource()
        self.api: Any = StubTreq(self.front)
        self.wire_ops()

    def wire_ops(self, reloader: Any = None) -> None:
        """The ops API and a fresh metrics registry over the built parts (and C{reloader})."""
        from prometheus_client import CollectorRegistry
        from treq.testing import StubTreq

        from mep_agent.web.metrics import AgentCollector, MepObserver
        from mep_agent.web.ops import OpsAPI

        self.metrics = CollectorRegistry()
        self.mep_wire.observe = MepObserver(self.metrics)
        self.metrics.register(
            AgentCollector(
                self.clock,
                self.tokens,
                self.registrar,
                self.discovery,
                reloader,
                self.terminator,
                self.reconciler,
            )
        )
        self.ops_resource: Any = OpsAPI(
            self.clock,
            self.tokens,
            self.registrar,
            self.subscriber,
            self.discovery,
            self.metrics,
            NOTIFY_SECRET,
            reloader,
            terminator=self.terminator,
            reconciler=self.reconciler,
        ).resource()
        self.ops: Any = StubTreq(self.ops_resource)

    def settle(self) -> None:
        for _ in range(5):
            self.mep.flush()
            if hasattr(self, "api"):
                self.api.flush()
                self.ops.flush()
            self.clock.advance(0)

    def request(self, stub: Any, method: str, path: str, **kw: Any) -> tuple[Any, bytes]:
        d = stub.request(method, f"http://127.0.0.1{path}", **kw)
        self.settle()
        response = self.successResultOf(d)
        body = stub.content(response)
        self.settle()
        raw: bytes = self.successResultOf(body)
        return response, raw

    def get_json(self, stub: Any, path: str, **kw: Any) -> tuple[int, Any, Any]:
        response, raw = self.request(stub, "GET", path, **kw)
        self.assertEqual(
            response.headers.getRawHeaders("content-type")[0].split(";")[0],
            "application/json",
            raw,
        )
        code: int = response.code
        return code, json.loads(raw), response
