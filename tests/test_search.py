"""
A search for sequences that break the keepers (hypothesis' RuleBasedStateMachine): one agent,
as production builds it, against the in-memory emulator on a clock, with random faults --
the MEP flushed or restarted, outages, refused updates, 409/429/503 with and without
Retry-After, INACTIVE or SUSPENDED set by a third party, the services file swapped, the
agent's container killed and restarted with its state directory -- and after every step:

* the budget holds: in any window of t seconds at most burst + rate x t paced requests
  went out, and no instance got more than two heartbeats within one liveness interval;
* nothing is made twice: every instance of the app at the MEP is the one its keeper holds,
  or one a keeper is deleting, or the one a creation whose answer was lost made;

and once the faults stop, the MEP holds exactly what the file says within a bounded time,
and a stop leaves nothing behind.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock

from mep_agent.core.budget import APPLICATION, SCHEDULED
from mep_agent.mp1.gate import Pace
from mep_agent.util.secret import Secret
from mep_emulator.memory import InMemoryMep

from .agent_harness import BASE, INFO, AgentTestCase, MemoryState, document, spec
from .test_ownership import APP, NOTIFY, SUBSCRIPTION

FILES = {
    "ab": (spec("a"), spec("b")),
    "abc": (spec("a"), spec("b"), spec("c")),
    "a2": (spec("a", version="2.0"),),
}
CONVERGED_WITHIN = 600.0  # seconds of quiet after the last fault
FAULT_KINDS = [
    "register",
    "heartbeat",
    "deregister",
    "update",
    "service",
    "sync",
    "subscribe",
    "token",
    "any",
]


class Driver(AgentTestCase):
    """The harness, driven by the state machine instead of a test method."""

    def runTest(self) -> None:  # noqa: N802 (unittest's name)
        """Not a test: what the harness needs a method for."""


class KeeperSearch(RuleBasedStateMachine):
    """One agent's life among random faults; see the module."""

    def __init__(self) -> None:
        super().__init__()
        self.driver = Driver()
        self.driver.setUp()
        self.driver.use_mep(InMemoryMep.create(clock=MemoryReactorClock()))
        self.state = MemoryState()
        self.file = "ab"
        self.lives = 0
        self.paced: list[tuple[float, float]] = []  # (when, the burst then), this life
        self.beats: defaultdict[str, list[float]] = defaultdict(list)
        self.start_life()

    # -- the agent's lives -----------------------------------------------------------------

    def start_life(self) -> None:
        driver = self.driver
        self.lives += 1
        self.paced = []  # the budget is each process's own, and so is the beats' limit
        self.beats = defaultdict(list)
        driver.files = {INFO: document(FILES[self.file], (SUBSCRIPTION,))}
        driver.build(
            notify_url=NOTIFY,
            termination=True,
            state=self.state,
            earlier=self.state.snapshot(),
            notify_secret=Secret(f"life-{self.lives}"),
            rng=lambda: 0.5,
        )
        self.watch(driver)
        driver.service.startService()
        driver.settle()

    def watch(self, driver: Driver) -> None:
        """Record every paced admission and every heartbeat sent, with its time."""
        budget, clock = driver.budget, driver.clock
        admit = budget.admit

        def admitting(operation: str, pace: Pace) -> Deferred[None]:
            d = admit(operation, pace)
            if operation not in SCHEDULED | APPLICATION and pace.urgent_until is None:
                d.addCallback(lambda _: self.paced.append((clock.seconds(), budget.burst)))
            return d

        budget.admit = admitting  # type: ignore[method-assign]
        wire = driver.mep_wire
        exchange = wire.http.exchange

        def exchanging(method: str, url: str, *args: Any) -> Any:
            if url.endswith("/liveness"):
                self.beats[url].append(clock.seconds())
            return exchange(method, url, *args)

        wire.http.exchange = exchanging  # type: ignore[method-assign,assignment]

    # -- faults ----------------------------------------------------------------------------

    def control(self, path: str, body: Any) -> None:
        d = self.driver.mep.http.post(f"{BASE}/_emulator/{path}", data=json.dumps(body).encode())
        self.driver.mep.flush()
        d.addErrback(lambda f: None)

    @rule(seconds=st.sampled_from([1, 5, 20, 61, 130]))
    def time_passes(self, seconds: float) -> None:
        self.driver.advance(seconds, step=1 if seconds < 10 else 5)

    @rule()
    def mep_loses_everything(self) -> None:
        self.control("flush", {})

    @rule(count=st.integers(1, 20))
    def outage(self, count: int) -> None:
        self.driver.fault(kind="any", drop=True, count=count)

    @rule(
        kind=st.sampled_from(FAULT_KINDS),
        status=st.sampled_from([400, 403, 404, 409, 429, 500, 502, 503]),
        count=st.integers(1, 10),
        retry_after=st.one_of(st.none(), st.integers(0, 90)),
    )
    def refusals(self, kind: str, status: int, count: int, retry_after: int | None) -> None:
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        self.driver.fault(kind=kind, status=status, count=count, headers=headers)

    @rule(code=st.sampled_from([501, 405, None]))
    def updates_refused(self, code: int | None) -> None:
        self.control("settings", {"refuse_updates": code})

    @rule(which=st.integers(0, 10), state=st.sampled_from(["INACTIVE", "SUSPENDED"]))
    def third_party_sets_a_state(self, which: int, state: str) -> None:
        ids = sorted(self.driver.registry.services)
        if ids:
            self.control(f"services/{ids[which % len(ids)]}/state", {"state": state})

    @rule(name=st.sampled_from(sorted(FILES)))
    def file_swapped(self, name: str) -> None:
        self.file = name
        self.driver.files[INFO] = document(FILES[name], (SUBSCRIPTION,))
        self.driver.reloader.check_now()
        self.driver.advance(2)

    @precondition(lambda self: self.lives < 4)
    @rule()
    def container_killed_and_restarted(self) -> None:
        self.driver.crash()
        self.start_life()

    # -- what must hold after every step -------------------------------------------------

    @invariant()
    def within_the_budget(self) -> None:
        rate = self.driver.budget.rate
        times = [t for t, _ in self.paced]
        most = max([b for _, b in self.paced], default=0.0)
        for i, start in enumerate(times):
            for j in range(i, len(times)):
                assert j - i + 1 <= most + rate * (times[j] - start) + 1e-6, (
                    f"{j - i + 1} paced requests within {times[j] - start:.1f}s"
                )

    @invariant()
    def two_beats_an_interval_at_most(self) -> None:
        for url, times in self.beats.items():
            for i in range(len(times) - 2):
                assert times[i + 2] - times[i] >= 60 - 1e-6, f"three beats within 60 s: {url}"

    @invariant()
    def nothing_made_twice(self) -> None:
        holdings = self.driver.holdings
        resolving = {k.key for k in holdings.services.values() if k.resolving() is not None}
        unknown: defaultdict[str, int] = defaultdict(int)
        owned = self.driver.owned
        for record in self.driver.registry.services.values():
            ref = record.ser_instance_id
            if holdings.holder(ref) is None and owned.made_by_this_pod(ref) is None:
                unknown[record.body["serName"]] += 1  # not even in the records
        for name, count in unknown.items():
            allowed = 1 if name in resolving else 0
            assert count <= allowed, f"{count} instances of {name} nobody keeps"

    def teardown(self) -> None:
        driver = self.driver
        try:
            self.converge()
            driver.stop()
            registry = driver.registry
            assert registry.services == {}, "a stop left services"
            assert registry.subscriptions == {}, "a stop left subscriptions"
        finally:
            if driver.service.running:
                driver.service.stopService()

    def converge(self) -> None:
        """The faults stop: within a bounded time the MEP holds exactly the file."""
        driver = self.driver
        driver.mep.emulator.faults.clear()
        self.control("settings", {"refuse_updates": None})
        wanted = sorted(s.name for s in FILES[self.file])
        waited = 0.0
        while waited <= CONVERGED_WITHIN:
            if self.matches(wanted):
                return
            driver.advance(10, step=5)
            waited += 10
        raise AssertionError(f"not converged after {CONVERGED_WITHIN}s: {self.describe()}")

    def matches(self, wanted: list[str]) -> bool:
        registry = self.driver.registry
        services = sorted(s.body["serName"] for s in registry.services.values())
        states = {s.state for s in registry.services.values()}
        subscriptions = registry.app_subscriptions(APP)
        terminations = registry.app_subscriptions(APP, termination=True)
        return (
            services == wanted
            and states <= {"ACTIVE"}
            and len(subscriptions) == 1
            and len(terminations) == 1
        )

    def describe(self) -> str:
        registry = self.driver.registry
        return str(
            {
                "services": [(s.body["serName"], s.state) for s in registry.services.values()],
                "subscriptions": len(registry.subscriptions),
                "phases": self.driver.holdings.phases(),
            }
        )


class KeeperSearchTests(KeeperSearch.TestCase):  # type: ignore[misc,valid-type]
    """The search, run by trial."""

    # CI runs the same 12 sequences every time (derandomized: a red CI is a regression, not
    # a lucky draw); a wider search is run by hand (docs/development.md).
    settings = settings(
        max_examples=12,
        stateful_step_count=15,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )

    def test_random_faults_never_break_the_rules(self) -> None:
        """Whatever the faults: within budget, nothing made twice, converged, nothing left."""
        self.runTest()
