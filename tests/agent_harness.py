"""
The agent as production builds it (agent.build, from a configuration that config.load reads),
over the in-memory emulator, on one MemoryReactorClock: the listeners bind nothing real, the
MEP's HTTP goes through the emulator's Klein app in memory, and both APIs are served to the
tests by StubTreq.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import yaml
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.agent import AgentService, Seams, build
from mep_agent.config.load import AgentConfig, load
from mep_agent.config.model import ServiceSpec, SubscriptionSpec
from mep_agent.core.keeper import Keeper
from mep_agent.core.liveness import BeatSchedule
from mep_agent.core.owned import Snapshot, StateStore
from mep_agent.mp1.client import Registration
from mep_agent.mp1.credentials import Credentials
from mep_agent.mp1.dialect import mepserver_grace, no_grace
from mep_agent.mp1.http import MepHttp
from mep_agent.util.retry import backoff
from mep_agent.util.secret import Secret
from mep_emulator import certs
from mep_emulator.memory import DEV_APP, InMemoryMep

from .emulator_client import service
from .helpers import FakeFiles, capture_events

BASE = "https://127.0.0.1:8443"
CONF = "/conf"
INFO = f"{CONF}/app_instance_info.yaml"
CA = "/ca.pem"
API_TOKEN = "/secrets/api-token"
# When a service registered at 0 with the MEP's 60 s interval sends its first heartbeat
# (52.5 s: 63 s deadline, the whole 10 s request timeout while no latency is known, 0.5 s
# safety); the same on a MEC 011 platform, which gives no grace (49.5 s). Later beats to a
# fast MEP follow every 59.5 s (56.5 s), their timeout down to 3 s.
#: Seconds from a loss to its remaking on EdgeGallery, at most: the guard's settle delay for a
#: few services (core/guard.py) and its token request.
GUARD = 5.0
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
NOTIFY_URL = "http://10.1.2.3:9090/mep-agent/v1/notifications"

_ca: list[bytes] = []


def ca_pem() -> bytes:
    """A CA certificate for the configuration to read (made once per test run)."""
    if not _ca:
        _ca.append(certs.generate().ca_pem)
    return _ca[0]


def exact_backoff() -> Iterator[float]:
    """The production policy at the top of its jitter, so tests know every delay."""
    return backoff(rng=lambda: 1.0)


def credentials(sk: str | None = None) -> Credentials:
    """The emulator's development app's credentials (SK replaced when given)."""
    return Credentials(
        Secret(DEV_APP.access_key),
        Secret(sk or DEV_APP.secret_key),
        Secret(DEV_APP.app_instance_id),
    )


def spec(name: str = "svc1", interval: int = 60, **extra: Any) -> ServiceSpec:
    return ServiceSpec(name, service(name, interval, **extra))


def document(
    services: tuple[ServiceSpec, ...] = (), subscriptions: tuple[SubscriptionSpec, ...] = ()
) -> bytes:
    """app_instance_info.yaml for C{services} and C{subscriptions}."""
    data = {
        "serviceInfoPosts": [s.body for s in services],
        "serAvailabilityNotificationSubscriptions": [s.body for s in subscriptions],
    }
    return yaml.safe_dump(data).encode()


class MemoryState:
    """A state directory in memory: what the agent wrote last (core/owned.py StateStore)."""

    def __init__(self) -> None:
        self.data: bytes | None = None
        self.writes = 0
        self.fail = False
        self.frozen = False  # the process died: nothing is written any more

    def save(self, data: bytes) -> Deferred[None]:
        if self.fail:
            from twisted.internet.defer import fail

            return fail(OSError(30, "Read-only file system"))
        if not self.frozen:
            self.data = data
            self.writes += 1
        return succeed(None)

    def snapshot(self) -> Snapshot | None:
        """What a restarted container reads from it."""
        from mep_agent.core.owned import decode

        return None if self.data is None else decode(self.data, DEV_APP.app_instance_id)


class _Dead:
    """The gate of a dead process: nothing goes out any more."""

    def admit(self, operation: str, pace: Any) -> Deferred[None]:
        return Deferred()

    def answered(self, operation: str, status: int | None, retry_after: float | None) -> None:
        pass


def stop_if_running(service: Any) -> None:
    if service.running:
        service.stopService()


class AgentTestCase(SynchronousTestCase):
    """Builds the in-memory MEP and the whole agent on it; call start() in the test."""

    dialect = "edgegallery"

    def setUp(self) -> None:
        self.use_mep(InMemoryMep.create(clock=MemoryReactorClock()))

    def use_mep(self, mep: InMemoryMep) -> None:
        self.mep = mep
        self.clock = mep.clock
        self.emulator = mep.emulator
        self.registry = self.emulator.registry

    # -- the configuration ------------------------------------------------------------------

    def environ(self) -> dict[str, str]:
        """What the process environment would hold (the seed's variables)."""
        return {
            "MEP_IP": "127.0.0.1",
            "MEP_APIGW_PORT": "8443",
            "CA_CERT": CA,
            "CA_CERT_DOMAIN_NAME": "edgegallery",
            "AK": DEV_APP.access_key,
            "SK": DEV_APP.secret_key,
            "APPINSTID": DEV_APP.app_instance_id,
            "MEP_AGENT_CONF_DIR": CONF,
            "MEP_AGENT_OPS_LISTEN": "tcp:9090:interface=127.0.0.1",
        }

    def configure(self, settings: dict[str, Any], environ: dict[str, str]) -> AgentConfig:
        """The configuration config.load makes of C{settings} (option keys) and files."""
        cli = {k: _text(v) for k, v in settings.items() if v is not None}
        self.files.setdefault(CA, ca_pem())
        return load(cli, environ, FakeFiles(self.files), "/")

    def build(
        self,
        services: tuple[ServiceSpec, ...] = (),
        subscriptions: tuple[SubscriptionSpec, ...] = (),
        notify_url: str | None = None,
        termination: bool = False,
        state: StateStore | None = None,
        earlier: Snapshot | None = None,
        rng: Callable[[], float] = lambda: 1.0,
        sk: str | None = None,
        forward: Callable[[dict[str, Any]], None] | None = None,
        wait_app: bool = False,
        api_token: Secret | None = None,
        ttl: float | None = None,
        stale: float | None = None,
        notify_secret: Secret = NOTIFY_SECRET,
        **settings: Any,
    ) -> None:
        """
        The agent for C{services} and C{subscriptions} (written as its file), with
        C{settings} as command-line options (by setting key: C{sync_interval=0}).
        """
        self.files: dict[str, bytes] = getattr(self, "files", {})
        self.files.setdefault(INFO, document(services, subscriptions))
        environ = self.environ()
        if sk is not None:
            environ["SK"] = sk
        settings.setdefault("notify_url", notify_url)
        settings.setdefault("termination", "auto" if termination else "off")
        settings.setdefault("termination_wait_app", wait_app)
        settings.setdefault("discovery_ttl", ttl)
        settings.setdefault("discovery_stale", stale)
        if api_token is not None:
            self.files[API_TOKEN] = api_token.reveal().encode()
            settings.setdefault("api_token_file", API_TOKEN)
        self.cfg = self.configure(settings, environ)
        if isinstance(state, MemoryState):
            state.frozen = False  # a new process: it writes again
        self.state = state
        self.seams = Seams(
            notify_secret,
            read=self.read,
            http=MepHttp(self.mep.agent),
            state=state,
            earlier=earlier,
            rng=rng,
            forward=forward,
        )
        self.finished: list[int] = []
        self.service: AgentService = build(self.cfg, self.clock, self.seams, self.finished.append)
        core = self.core = self.service.core
        self.mep_wire = core.link.wire
        self.auth, self.tokens, self.client = core.link.access.auth, core.tokens, core.mep
        self.budget, self.owned, self.ready = core.budget, core.owned, core.ready
        self.holdings, self.reconciler = core.holdings, core.reconciler
        self.terminator, self.discovery, self.reloader = (
            core.terminator,
            core.discovery,
            core.reloader,
        )
        self.agent_api = self.service.front.api
        self.front: Any = self.agent_api.resource()
        self.api: Any = StubTreq(self.front)
        self.ops_resource: Any = self.service.front.ops.resource()
        self.ops: Any = StubTreq(self.ops_resource)

    def read(self, path: str) -> Deferred[bytes]:
        """The agent's file reads (reloads, credential files), from C{self.files}."""
        if path not in self.files:
            from twisted.internet.defer import fail

            return fail(OSError(2, "No such file or directory"))
        return succeed(self.files[path])

    # -- running it -------------------------------------------------------------------------

    def start(self) -> None:
        self.service.startService()
        self.addCleanup(self.stop)
        self.settle()

    def stop(self) -> None:
        """Stop the agent as a SIGTERM does, and let its stop run to the end."""
        if not self.service.running:
            return
        d = self.service.stopService()
        for _ in range(600):
            if d.called:
                break
            self.advance(0.1, step=0.1)
        self.assertTrue(d.called, "the stop did not end")

    def crash(self) -> None:
        """
        The process dies at once (kill -9, an OOM kill): nothing more is written to the
        state directory and nothing is deleted; its timers and requests are dropped.
        """
        if isinstance(self.state, MemoryState):
            self.state.frozen = True
        self.core.link.wire.gate = _Dead()
        self.holdings.close_deletes = False
        d = self.service.stopService()
        for _ in range(100):
            if d.called:
                break
            self.clock.advance(0.1)

    def settle(self) -> None:
        for _ in range(5):
            self.mep.flush()
            self.api.flush()
            self.ops.flush()
            self.clock.advance(0)

    def advance(self, seconds: float, step: float = 0.5) -> None:
        remaining = seconds
        while remaining > 0:
            delta = min(step, remaining)
            self.clock.advance(delta)
            self.settle()
            remaining -= delta
        self.settle()

    def capture_events(self) -> list[Any]:
        """Every log event from now on, until the test ends."""
        return capture_events(self)

    def fault(self, **spec: Any) -> None:
        d = self.mep.http.post(f"{BASE}/_emulator/faults", data=json.dumps(spec).encode())
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 201)

    # -- what the agent holds ---------------------------------------------------------------

    def keeper(self, name: str) -> Keeper:
        """The keeper of service C{name}."""
        return self.holdings.services[name]

    def registration(self, name: str) -> Registration:
        """The registration the MEP answered for service C{name} (it must have one)."""
        held = self.keeper(name).held
        assert isinstance(held, Registration), f"{name} is not registered"
        return held

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

    @property
    def discovery_calls(self) -> list[str]:
        """The names the agent asked the MEP to discover, in order."""
        names = []
        for r in self.emulator.requests:
            if r.kind == "discovery" and r.path.endswith("/services"):
                names.extend(parse_qs(r.query).get("ser_name", []))
        return names

    def instances(self, name: str) -> list[Any]:
        return [s for s in self.registry.services.values() if s.body["serName"] == name]

    def mep_json(
        self, method: str, url: str, body: Any = None, token: bool = False
    ) -> tuple[int, Any]:
        """
        A call to the in-memory MEP (its control API, or Mp1 as a third party with the app's
        token when C{token}): the status and the decoded JSON body (None when empty).
        """
        headers = {"Authorization": f"Bearer {self.token_value()}"} if token else None
        d = self.mep.http.request(
            method,
            url,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
        )
        self.mep.flush()
        response = self.successResultOf(d)
        content = self.mep.http.content(response)
        self.mep.flush()
        raw = self.successResultOf(content)
        return response.code, json.loads(raw) if raw else None

    # -- the two APIs ---------------------------------------------------------------------

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


#: The name the API tests used; every agent test case serves both APIs now.
ApiTestCase = AgentTestCase


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list, frozenset, set)):
        return ",".join(str(v) for v in value)
    return str(value)
