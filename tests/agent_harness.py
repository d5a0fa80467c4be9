"""The agent's lifecycle services wired to the in-memory emulator, on one Clock."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config import Credentials
from mep_agent.emulator.memory import DEV_APP, InMemoryMep
from mep_agent.mep import MepClient
from mep_agent.model import ServiceSpec, SubscriptionSpec
from mep_agent.registration import Registrar
from mep_agent.retry import backoff
from mep_agent.secret import Secret
from mep_agent.subscriptions import Subscriber
from mep_agent.token import TokenKeeper

BASE = "https://127.0.0.1:8443"


def exact_backoff():
    """The production policy without jitter, so tests know every delay."""
    return backoff(rng=lambda: 0.0)


def spec(name: str = "svc1", interval: int = 60, **extra: Any) -> ServiceSpec:
    body = {"serName": name, "version": "1.0", "state": "ACTIVE", "serializer": "JSON",
            "livenessInterval": interval,
            "transportInfo": {"type": "REST_HTTP", "protocol": "HTTP",
                              "endpoint": {"uris": [f"http://{name}.local:80/"]}}}
    body.update(extra)
    return ServiceSpec(name, body)


def credentials(sk: str | None = None) -> Credentials:
    return Credentials(Secret(DEV_APP.access_key), Secret(sk or DEV_APP.secret_key),
                       Secret(DEV_APP.app_instance_id))


class AgentTestCase(SynchronousTestCase):
    """Builds an in-memory MEP and the agent's services; call start() in the test."""

    def setUp(self) -> None:
        self.mep = InMemoryMep.create()
        self.clock = self.mep.clock
        self.emulator = self.mep.emulator
        self.registry = self.emulator.registry

    def build(self, services: tuple[ServiceSpec, ...] = (), sk: str | None = None,
              subscriptions: tuple[SubscriptionSpec, ...] = (), notify_url: str | None = None,
              **registrar_options: Any) -> None:
        self.client = MepClient(self.mep.http, self.clock, BASE, "127.0.0.1:8443",
                                credentials(sk), timeout=10)
        self.tokens = TokenKeeper(self.client, self.clock, delays=exact_backoff)
        self.registrar = Registrar(self.client, self.tokens, self.clock, services,
                                   delays=exact_backoff, **registrar_options)
        self.subscriber = Subscriber(self.client, self.tokens, self.clock, subscriptions,
                                     notify_url=notify_url, delays=exact_backoff)
        self.registrar.on_data_loss = self.subscriber.check_now

    def start(self) -> None:
        for service in (self.tokens, self.registrar, self.subscriber):
            service.startService()
            self.addCleanup(lambda s=service: s.running and s.stopService())
        self.settle()

    def settle(self) -> None:
        for _ in range(5):
            self.mep.http.flush()
            self.clock.advance(0)

    def advance(self, seconds: float, step: float = 0.5) -> None:
        self.mep.advance(seconds, step)
        self.settle()

    def fault(self, **spec: Any) -> None:
        d = self.mep.http.post(f"{BASE}/_emulator/faults", data=json.dumps(spec).encode())
        self.mep.http.flush()
        self.assertEqual(self.successResultOf(d).code, 201)

    def requests(self, kind: str) -> list[int]:
        return [r.status for r in self.emulator.requests if r.kind == kind]

    def instances(self, name: str) -> list[Any]:
        return [s for s in self.registry.services.values() if s.body["serName"] == name]
