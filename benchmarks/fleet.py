"""
A fleet of agents against one MEP (issue 18), in one process on a simulated clock: N agents
(the agent's own MEP client, token keeper, registrar, subscriber and reconciler, each with
its own app instance and AK/SK) against the emulator in memory, so that hours of MEP time run
in seconds and every request's time is exact. Run by hand; it contacts nothing.

    .venv/bin/python -m benchmarks.fleet [--agents 200] [--services 2] [--out fleet.json]

Measures:

* steady state, sync on (every 60 s, jittered): MEP requests per agent-minute over ten
  minutes, by kind, against what is due anyway (heartbeats, one read of each list per sync,
  the token refresh);
* a flush (the MEP restarted with an empty store: every service, subscription and READY
  gone): the seconds until every agent is whole again (every service registered), the
  busiest second's requests against the mean of that window (no synchronised waves), and
  lock-outs (0 wanted).

Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import os
import random
import string
import time
from collections import Counter
from functools import partial
from typing import Any

from treq.testing import RequestTraversalAgent, StubTreq
from twisted.internet.task import Clock, LoopingCall
from twisted.web.resource import IResource, Resource

from benchmarks.soak import write_report
from mep_agent.agent import mep_access
from mep_agent.config.model import ServiceSpec
from mep_agent.config.parsers import Auth
from mep_agent.core.reconcile import Reconciler
from mep_agent.core.registration import Registrar
from mep_agent.core.subscriptions import Subscriber
from mep_agent.mp1.credentials import Credentials
from mep_agent.mp1.http import MepHttp
from mep_agent.mp1.wire import MepWire
from mep_agent.util.secret import Secret
from mep_emulator.app import MepEmulator
from mep_emulator.auth import App
from mep_emulator.notifier import Notifier
from mep_emulator.registry import Registry

BASE = "https://127.0.0.1:8443"
SYNC_INTERVAL = 60.0
LIVENESS = 60


class Counting(Resource):
    """In front of the emulator: when each request arrived (simulated seconds), and its path."""

    isLeaf = True

    def __init__(self, inner: IResource, clock: Clock) -> None:
        super().__init__()
        self.inner = inner
        self.clock = clock
        self.seen: list[tuple[float, str]] = []

    def render(self, request: Any) -> Any:
        self.seen.append((self.clock.seconds(), kind(request.method, request.path)))
        return self.inner.render(request)


def kind(method: bytes, path: bytes) -> str:
    """What a request is, from its method and path."""
    if path.endswith(b"/token"):
        return "token"
    if path.endswith(b"/liveness"):
        return "heartbeat"
    if path.endswith(b"/confirm_ready"):
        return "confirm_ready"
    if method == b"GET":
        return "list" if path.endswith((b"/services", b"/subscriptions")) else "get"
    return {b"POST": "register", b"DELETE": "delete", b"PUT": "update"}.get(method, "other")


def key(length: int, rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


def service(name: str) -> dict[str, Any]:
    return {
        "serName": name,
        "version": "1.0",
        "state": "ACTIVE",
        "serializer": "JSON",
        "livenessInterval": LIVENESS,
        "transportInfo": {
            "id": f"t-{name}",
            "name": name,
            "type": "REST_HTTP",
            "protocol": "HTTP",
            "version": "1.1",
            "endpoint": {"uris": [f"http://{name}.local/"]},
        },
    }


def later_sync(holder: dict[str, Reconciler]) -> None:
    """A loss: the agent's sync looks soon (the Reconciler exists by then)."""
    holder["sync"].sync_soon()


def later_first_sync(holder: dict[str, Reconciler]) -> Any:
    """The first sync, which registrations wait for."""
    return holder["sync"].first_sync()


class Fleet:
    """The MEP emulator and the agents, on one simulated clock, with every request counted."""

    def __init__(self, agents: int, services: int, rng: random.Random) -> None:
        self.services = services
        self.rng = rng
        self.clock = Clock()
        self.clock.advance(1_800_000_000)  # a realistic epoch for the tokens' lifetimes
        notifier = Notifier(None, self.clock)
        self.registry = Registry(self.clock, notifier, LIVENESS)
        self.apps = []
        for _ in range(agents):
            app_id = f"{rng.getrandbits(32):08x}-0000-4000-8000-{rng.getrandbits(48):012x}"
            self.apps.append(App(key(20, rng), key(64, rng), app_id))
        self.emulator = MepEmulator(
            self.clock,
            self.registry,
            {a.access_key: a for a in self.apps},
            notifications=notifier.delivered,
        )
        sweep = LoopingCall(self.registry.check_liveness)
        sweep.clock = self.clock
        sweep.start(1.0, now=False)
        self.counting = Counting(self.emulator.resource(), self.clock)
        self.transport = RequestTraversalAgent(self.counting)
        self.control: Any = StubTreq(self.counting)  # its methods are made at run time
        self.registrars = [self.agent(app) for app in self.apps]

    def agent(self, app: App) -> Registrar:
        """One agent's services (as agent.py wires them), started at a random time."""
        clock = self.clock
        credentials = Credentials(
            Secret(app.access_key), Secret(app.secret_key), Secret(app.app_instance_id)
        )
        wire = MepWire(MepHttp(self.transport), clock, BASE, "127.0.0.1:8443", credentials, 10)
        access = mep_access(wire, clock, Auth.AKSK, "/mep")
        tokens, mep = access.tokens, access.client
        subscriber = Subscriber(mep, tokens, clock, ())
        holder: dict[str, Reconciler] = {}
        specs = tuple(ServiceSpec(f"svc{j}", service(f"svc{j}")) for j in range(self.services))
        registrar = Registrar(
            mep,
            tokens,
            clock,
            specs,
            on_data_loss=partial(later_sync, holder),
            first_sync=partial(later_first_sync, holder),
        )
        reconciler = Reconciler(
            mep, clock, registrar, subscriber, SYNC_INTERVAL, rng=self.rng.random
        )
        holder["sync"] = reconciler
        parts = (tokens, registrar, subscriber, reconciler)
        # Pods start at their own times, not in one instant: over a minute, at random.
        clock.callLater(self.rng.uniform(0, 60), lambda: [p.startService() for p in parts])
        return registrar

    def flush(self) -> None:
        """Deliver what is ready, both ways."""
        for _ in range(3):
            self.transport.flush()
            self.control.flush()

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Let C{seconds} pass on the clock, delivering as it goes."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(step)
            self.flush()

    def whole(self) -> bool:
        """Whether the MEP holds every service of every agent."""
        held = Counter(s.app_instance_id for s in self.registry.services.values())
        return all(held[a.app_instance_id] == self.services for a in self.apps)

    def steady(self, minutes: int) -> dict[str, Any]:
        """Requests per agent-minute over C{minutes} of steady state."""
        mark = len(self.counting.seen)
        self.advance(60 * minutes)
        window = self.counting.seen[mark:]
        agent_minutes = minutes * len(self.apps)
        kinds = Counter(k for _, k in window)
        return {
            "steady_requests_per_agent_minute": round(len(window) / agent_minutes, 3),
            "steady_per_agent_minute_by_kind": {
                k: round(v / agent_minutes, 3) for k, v in sorted(kinds.items())
            },
        }

    def flush_and_recover(self) -> dict[str, Any]:
        """The MEP loses everything: how long until every agent is whole, and the load."""
        d = self.control.post(f"{BASE}/_emulator/flush")
        self.flush()
        assert d.called
        flushed_at = self.clock.seconds()
        mark = len(self.counting.seen)
        recovered = None
        while self.clock.seconds() < flushed_at + 4 * SYNC_INTERVAL:
            self.advance(1, step=1)
            if self.whole():
                recovered = self.clock.seconds() - flushed_at
                break
        window = self.counting.seen[mark:]
        per_second = Counter(int(t - flushed_at) for t, _ in window)
        seconds = max(1, int(recovered or 4 * SYNC_INTERVAL) + 1)
        mean = len(window) / seconds
        return {
            "flush_whole_again_s": recovered,
            "flush_requests": len(window),
            "flush_busiest_second": max(per_second.values()) if per_second else 0,
            "flush_mean_per_second": round(mean, 2),
            "flush_peak_to_mean": round(max(per_second.values()) / mean, 2) if mean else None,
            "flush_requests_by_kind": dict(Counter(k for _, k in window)),
            "lockouts": sum(
                self.emulator.lockout.is_locked(a.access_key, self.clock.seconds())
                for a in self.apps
            ),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--services", type=int, default=2)
    parser.add_argument("--out", default="fleet.json")
    options = parser.parse_args()
    started = time.monotonic()
    fleet = Fleet(options.agents, options.services, random.Random(1))
    fleet.advance(180)
    whole = sum(all(s.registration for s in r.states.values()) for r in fleet.registrars)
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "date": time.ctime(),
        "agents": options.agents,
        "services_per_agent": options.services,
        "whole_after_start": whole,
    }
    report.update(fleet.steady(10))
    report.update(fleet.flush_and_recover())
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    write_report(options.out, report)


if __name__ == "__main__":
    main()
