"""
A fleet of agents against one MEP (issues 18 and 24), in one process on a simulated clock:
N agents, each built by the agent's own build (mep_agent.agent.build: the same keepers,
budget, READY, sync and token keeper as production) with its own app instance and AK/SK,
against the emulator in memory behind Kong's limit (EdgeGallery's: 1,000 Mp1 requests a
calendar minute shared by every app), so that hours of MEP time run in seconds and every
request's time is exact. Run by hand; it contacts nothing.

    .venv/bin/python -m benchmarks.fleet [--agents 200] [--services 2] [--rate-limit 1000]
                                         [--out fleet.json]

Phases, one after the other, each measured in MEP requests per agent-minute (by kind) and
in Kong's 429s:

* steady state (ten minutes): against what is due anyway (the heartbeats, the syncs' reads,
  the token refresh);
* a flush (the MEP restarted with an empty store): the seconds until every agent is whole
  again, the busiest second against the window's mean (no synchronised waves);
* chaos: half of the Mp1 answers are random refusals (400-503, Retry-After on some) for
  60 s; then the seconds until whole again, and the rate in the five minutes after;
* refused repairs: a third party sets one service of every tenth agent INACTIVE while the
  platform refuses updates (501), for five minutes: the fleet's rate, and how many of the
  other apps' services the platform marked SUSPENDED (the storm's victims);
* stop: every agent stopped as by SIGTERM; what the MEP still holds (0 wanted).

Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import os
import random
import string
import time
from collections import Counter
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.testing import MemoryReactorClock
from twisted.web.resource import IResource, Resource

from benchmarks.soak import write_report
from mep_agent.agent import AgentService, Seams, build
from mep_agent.config.load import load
from mep_agent.mp1.http import MepHttp
from mep_agent.util.secret import Secret
from mep_emulator.app import MepEmulator
from mep_emulator.auth import App
from mep_emulator.kong import MinuteLimit
from mep_emulator.notifier import Notifier
from mep_emulator.registry import Registry
from tests.agent_harness import CA, CONF, INFO, ca_pem, document, spec
from tests.helpers import FakeFiles

LIVENESS = 60
NOTIFY_URL = "http://10.1.2.3:9090/mep-agent/v1/notifications"


class Counting(Resource):
    """In front of the emulator: when each request arrived (simulated seconds), its kind."""

    isLeaf = True

    def __init__(self, inner: IResource, clock: MemoryReactorClock) -> None:
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
    return {b"POST": "create", b"DELETE": "delete", b"PUT": "update"}.get(method, "other")


def key(length: int, rng: random.Random) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


class Fleet:
    """The MEP emulator and the agents, on one simulated clock, with every request counted."""

    def __init__(self, agents: int, services: int, rate_limit: int, rng: random.Random) -> None:
        self.services = services
        self.rng = rng
        self.clock = MemoryReactorClock()
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
            mp1_limit=MinuteLimit(rate_limit),
        )
        self.emulator.chaos_rng = random.Random(rng.random())
        sweep = LoopingCall(self.registry.check_liveness)  # mepserver's 1 s sweep
        sweep.clock = self.clock
        sweep.start(1.0, now=False)
        self.counting = Counting(self.emulator.resource(), self.clock)
        self.transport = RequestTraversalAgent(self.counting)
        self.exits: list[int] = []
        self.agents = [self.agent(app) for app in self.apps]

    def agent(self, app: App) -> AgentService:
        """One agent as production builds it, started at a random time in the first minute."""
        info = document(tuple(spec(f"svc{j}", LIVENESS) for j in range(self.services)))
        files = {INFO: info, CA: ca_pem()}
        environ = {
            "MEP_IP": "127.0.0.1",
            "MEP_APIGW_PORT": "8443",
            "CA_CERT": CA,
            "CA_CERT_DOMAIN_NAME": "edgegallery",
            "AK": app.access_key,
            "SK": app.secret_key,
            "APPINSTID": app.app_instance_id,
            "MEP_AGENT_CONF_DIR": CONF,
        }
        cfg = load({"notify_url": NOTIFY_URL}, environ, FakeFiles(files), "/")

        def read(path: str) -> Deferred[bytes]:
            return succeed(files[path])

        seams = Seams(
            Secret(key(32, self.rng)),
            read=read,
            http=MepHttp(self.transport),
            rng=self.rng.random,
        )
        service = build(cfg, self.clock, seams, self.exits.append)
        # Pods start at their own times, not in one instant: over a minute, at random.
        self.clock.callLater(self.rng.uniform(0, 60), service.startService)
        return service

    # -- the simulated time ------------------------------------------------------------------

    def flush(self) -> None:
        """Deliver what is ready."""
        for _ in range(3):
            self.transport.flush()
            self.clock.advance(0)

    def advance(self, seconds: float, step: float = 0.5) -> None:
        """Let C{seconds} pass on the clock, delivering as it goes."""
        end = self.clock.seconds() + seconds
        while self.clock.seconds() < end:
            self.clock.advance(step)
            self.flush()

    def whole(self) -> bool:
        """Whether the MEP holds every service of every agent, once, ACTIVE."""
        held = Counter(
            s.app_instance_id for s in self.registry.services.values() if s.state == "ACTIVE"
        )
        every = Counter(s.app_instance_id for s in self.registry.services.values())
        return all(
            held[a.app_instance_id] == every[a.app_instance_id] == self.services for a in self.apps
        )

    def until_whole(self, limit: float) -> float | None:
        """Seconds until L{whole} (None: not within C{limit})."""
        start = self.clock.seconds()
        while self.clock.seconds() < start + limit:
            if self.whole():
                return self.clock.seconds() - start
            self.advance(1, step=1)
        return None

    # -- measuring ---------------------------------------------------------------------------

    def rate(self, since: int, minutes: float) -> dict[str, Any]:
        """Requests per agent-minute since request number C{since}, over C{minutes}."""
        window = self.counting.seen[since:]
        agent_minutes = minutes * len(self.apps)
        kinds = Counter(k for _, k in window)
        return {
            "per_agent_minute": round(len(window) / agent_minutes, 3),
            "by_kind": {k: round(v / agent_minutes, 3) for k, v in sorted(kinds.items())},
        }

    def rejected(self) -> int:
        """Kong's 429s so far."""
        return sum(n for k, n in self.emulator.counts.items() if k.endswith(" 429"))

    def steady(self, minutes: int) -> dict[str, Any]:
        mark = len(self.counting.seen)
        before = self.rejected()
        self.advance(60 * minutes)
        return {**self.rate(mark, minutes), "429": self.rejected() - before}

    def flush_and_recover(self) -> dict[str, Any]:
        """The MEP loses everything: how long until every agent is whole, and the load."""
        self.registry.restart()
        flushed_at = self.clock.seconds()
        mark, before = len(self.counting.seen), self.rejected()
        recovered = self.until_whole(10 * 60)
        window = self.counting.seen[mark:]
        per_second = Counter(int(t - flushed_at) for t, _ in window)
        seconds = max(1, int(recovered or 600) + 1)
        mean = len(window) / seconds
        return {
            "whole_again_s": recovered,
            "requests": len(window),
            "busiest_second": max(per_second.values()) if per_second else 0,
            "peak_to_mean": round(max(per_second.values()) / mean, 2) if mean else None,
            "by_kind": dict(Counter(k for _, k in window)),
            "429": self.rejected() - before,
        }

    def chaos(self, seconds: float) -> dict[str, Any]:
        """Half the Mp1 answers refused for C{seconds}; then back to health."""
        mark, before = len(self.counting.seen), self.rejected()
        self.emulator.chaos = 0.5
        self.advance(seconds)
        self.emulator.chaos = 0.0
        during = self.rate(mark, seconds / 60)
        after_mark = len(self.counting.seen)
        recovered = self.until_whole(10 * 60)
        self.advance(max(0.0, 300 - (recovered or 0)))
        return {
            "during": during,
            "whole_again_s": recovered,
            "five_minutes_after": self.rate(after_mark, 5 + (recovered or 0) / 60),
            "429": self.rejected() - before,
            "duplicates_after": self.duplicates(),
        }

    def refused_repairs(self, minutes: int) -> dict[str, Any]:
        """One service of every tenth agent set INACTIVE while updates are refused (501)."""
        self.emulator.refuse_updates = 501
        victims = set()
        for app in self.apps[::10]:
            ours = [
                s
                for s in self.registry.services.values()
                if s.app_instance_id == app.app_instance_id
            ]
            if ours:
                ours[0].state = "INACTIVE"
                victims.add(app.app_instance_id)
        mark, before = len(self.counting.seen), self.rejected()
        suspended = set()
        for _ in range(minutes * 6):
            self.advance(10)
            suspended |= {
                s.ser_instance_id
                for s in self.registry.services.values()
                if s.state == "SUSPENDED" and s.app_instance_id not in victims
            }
        self.emulator.refuse_updates = None
        return {
            **self.rate(mark, minutes),
            "429": self.rejected() - before,
            "other_apps_services_suspended": len(suspended),
            "whole_after_s": self.until_whole(10 * 60),
        }

    def duplicates(self) -> int:
        """Instances beyond one per (app, name), and subscriptions beyond one per app."""
        names = Counter(
            (s.app_instance_id, s.body["serName"]) for s in self.registry.services.values()
        )
        subscriptions = Counter(s.app_instance_id for s in self.registry.subscriptions.values())
        return sum(n - 1 for n in names.values() if n > 1) + sum(
            n - 1 for n in subscriptions.values() if n > 1
        )

    def stop_all(self) -> dict[str, Any]:
        """Every agent stopped as by SIGTERM, at once; what the MEP still holds."""
        stops = [s.stopService() for s in self.agents]
        for _ in range(600):
            if all(d.called for d in stops):
                break
            self.advance(0.5)
        return {
            "stopped": sum(d.called for d in stops),
            "left_services": len(self.registry.services),
            "left_subscriptions": len(self.registry.subscriptions),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--services", type=int, default=2)
    parser.add_argument("--rate-limit", type=int, default=1000, help="Kong's (0: none)")
    parser.add_argument("--out", default="fleet.json")
    options = parser.parse_args()
    started = time.monotonic()
    fleet = Fleet(options.agents, options.services, options.rate_limit, random.Random(1))
    fleet.advance(180)
    report: dict[str, Any] = {
        "machine": f"{os.cpu_count()} cores",
        "date": time.ctime(),
        "agents": options.agents,
        "services_per_agent": options.services,
        "rate_limit": options.rate_limit,
        "whole_after_start": fleet.whole(),
        "steady": fleet.steady(10),
        "flush": fleet.flush_and_recover(),
        "chaos": fleet.chaos(60),
        "refused_repairs": fleet.refused_repairs(5),
        "stop": fleet.stop_all(),
        "exits": dict(Counter(fleet.exits)),
    }
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    write_report(options.out, report)


if __name__ == "__main__":
    main()
