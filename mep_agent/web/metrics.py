"""
Prometheus metrics. State (registrations, heartbeats, token, cache) is read from the
services at scrape time, so nothing is counted twice; MEP requests are counted as they
happen through L{MepObserver}, and the application API's answers through L{ApiObserver}.
Label sets are bounded: service names (at most 50), a fixed list of operations, routes and
states, and status codes folded into a fixed list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client import Counter as RequestCounter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web.server import Request

from mep_agent.core.token import TokenState

if TYPE_CHECKING:
    from mep_agent.web.parts import AgentParts

_STATUSES = {
    "200",
    "201",
    "204",
    "400",
    "401",
    "403",
    "404",
    "409",
    "412",
    "429",
    "500",
    "502",
    "503",
    "504",
}


#: The phase of a termination an earlier life of the container acted on.
EARLIER_LIFE = "earlier-life"
#: ... when that termination was found out, not announced (core/guard.py).
EARLIER_UNANNOUNCED = "earlier-life-unannounced"


def status_label(status: int | None) -> str:
    """The label for an HTTP status: itself when common, else its class (4xx ...)."""
    if status is None:
        return "no_answer"
    text = str(status)
    return text if text in _STATUSES else f"{text[0]}xx"


class MepObserver:
    """Counts every MEP request by operation and status, and times it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = RequestCounter(
            "mep_agent_mep_requests",
            "Requests to the MEP.",
            ["operation", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "mep_agent_mep_request_seconds",
            "Duration of requests to the MEP.",
            ["operation"],
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )

    def __call__(self, operation: str, status: int | None, seconds: float) -> None:
        """Count one exchange and its duration."""
        self.requests.labels(operation, status_label(status)).inc()
        self.seconds.labels(operation).observe(seconds)


class ApiObserver:
    """
    Counts the application API's answers by route and status (folded by L{status_label}).
    The fast path's answers cost one C{inc()} of a child made here once (L{token_ok},
    L{endpoint_ok}); other answers look their child up in a dict, made on first use. A
    request whose connection is lost before its answer is not counted: it got none.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = RequestCounter(
            "mep_agent_api_requests",
            "Answers of the application API, by route (token, endpoint, termination, other) "
            "and status.",
            ["route", "code"],
            registry=registry,
        )
        self.token_ok = self.requests.labels("token", "200")
        self.endpoint_ok = self.requests.labels("endpoint", "200")
        self._children = {("token", 200): self.token_ok, ("endpoint", 200): self.endpoint_ok}

    def answered(self, route: str, code: int) -> None:
        """Count one answer of C{code} on C{route}."""
        child = self._children.get((route, code))
        if child is None:  # codes are the agent's own: a handful per route
            child = self._children[(route, code)] = self.requests.labels(route, status_label(code))
        child.inc()

    def when_answered(self, route: str, request: Request) -> None:
        """Count C{request} on C{route} once its answer is finished (routes answer later)."""

        def finished(result: object) -> None:
            if not isinstance(result, Failure):  # a lost connection: no answer to count
                self.answered(route, request.code)

        request.notifyFinish().addBoth(finished)


class AgentCollector(Collector):
    """Reads the core's state at scrape time."""

    def __init__(self, clock: IReactorTime, parts: AgentParts) -> None:
        self._clock = clock
        self._parts = parts

    def collect(self) -> Iterator[Metric]:
        """Every metric family, from the current state."""
        now = self._clock.seconds()
        yield from self._services(now)
        yield from self._keepers()
        yield from self._token()
        yield from self._pace(now)
        yield from self._discovery_cache()
        yield from self._reload()
        yield from self._state()
        if self._parts.terminator is not None:
            yield from self._termination()
        yield from self._sync(now)

    def _services(self, now: float) -> Iterator[Metric]:
        f = _Families()
        registered = f.gauge("service_registered", "1 when the service is registered on the MEP.")
        held = f.gauge(
            "service_mep_state",
            "1 for the state the last sync saw the MEP hold each service in.",
            ["ser_name", "state"],
        )
        seen = f.gauge(
            "service_mep_seen_timestamp_seconds",
            "When the last sync saw the service on the MEP (Unix time).",
        )
        waiting = f.gauge(
            "service_waiting_for_token",
            "1 when the service's last registration or heartbeat found no valid token.",
        )
        beats = f.counter("heartbeats", "Heartbeats sent.")
        failed = f.counter("heartbeat_failures", "Heartbeats that failed.")
        since = f.gauge("seconds_since_heartbeat", "Seconds since the last successful heartbeat.")
        interval = f.gauge(
            "liveness_interval_seconds",
            "The liveness interval the MEP runs the service with (0: no heartbeats).",
        )
        again = f.counter(
            "reregistrations", "Registrations repeated after the MEP lost the service."
        )
        wanted = GaugeMetricFamily(
            "mep_agent_services_wanted", "Services app_instance_info.yaml asks for."
        )
        for name, keeper in self._parts.holdings.services.items():
            record = keeper.beats
            registered.add_metric([name], 1.0 if keeper.held is not None else 0.0)
            waiting.add_metric([name], 1.0 if keeper.waiting_for_token else 0.0)
            beats.add_metric([name], record.sent)
            failed.add_metric([name], record.failed)
            interval.add_metric([name], float(getattr(keeper.held, "interval", 0) or 0))
            if record.last_good is not None:
                since.add_metric([name], now - record.last_good)
            again.add_metric([name], max(0, keeper.counts.created - 1))
            if keeper.mep_state is not None and keeper.mep_seen_at is not None:
                held.add_metric([name, keeper.mep_state], 1.0)
                seen.add_metric([name], keeper.mep_seen_at)
        wanted.add_metric([], len(self._parts.holdings.services))
        yield from f.families
        yield wanted

    def _keepers(self) -> Iterator[Metric]:
        holdings = self._parts.holdings
        objects = GaugeMetricFamily(
            "mep_agent_objects",
            "Objects kept at the MEP (services, subscriptions, leftovers being deleted), by "
            "kind and phase.",
            labels=["kind", "phase"],
        )
        counts: Counter[tuple[str, str]] = Counter()
        for keeper in holdings.keepers():
            counts[(keeper.kind.label.replace(" ", "_"), keeper.phase.value)] += 1
        for (kind, phase), count in sorted(counts.items()):
            objects.add_metric([kind, phase], count)
        yield objects
        actions = CounterMetricFamily(
            "mep_agent_object_actions",
            "What the keepers did at the MEP, by kind and action (created, adopted, "
            "repaired, replaced, deleted).",
            labels=["kind", "action"],
        )
        for (kind, action), count in sorted(holdings.ctx.hooks.actions.items()):
            actions.add_metric([kind, action], count)
        yield actions
        yield GaugeMetricFamily(
            "mep_agent_ready_confirmed",
            "1 while READY is confirmed.",
            value=1.0 if self._parts.ready.confirmed else 0.0,
        )

    def _token(self) -> Iterator[Metric]:
        tokens = self._parts.tokens
        token = tokens.current()
        yield GaugeMetricFamily(
            "mep_agent_token_expiry_timestamp_seconds",
            "When the current token expires (0: no valid token).",
            value=token.expires_at if token else 0.0,
        )
        yield GaugeMetricFamily(
            "mep_agent_token_obtained_timestamp_seconds",
            "When the current token was obtained (0: no valid token).",
            value=token.obtained_at if token else 0.0,
        )
        token_state = GaugeMetricFamily(
            "mep_agent_token_state", "1 for the token's current state.", labels=["state"]
        )
        current = tokens.state
        for value in TokenState:
            token_state.add_metric([value.value], 1.0 if value is current else 0.0)
        yield token_state
        yield CounterMetricFamily(
            "mep_agent_token_refresh_failures",
            "Token requests that failed.",
            value=tokens.refresh_failures,
        )
        yield CounterMetricFamily(
            "mep_agent_token_requests",
            "Token requests sent to the MEP.",
            value=tokens.requests_sent,
        )

    def _pace(self, now: float) -> Iterator[Metric]:
        budget = self._parts.budget
        sent = CounterMetricFamily(
            "mep_agent_budget_requests",
            "Requests to the MEP by how they were admitted: paced (drawn from the budget), "
            "urgent (at stop or termination), scheduled (heartbeats), application "
            "(discovery).",
            labels=["admission"],
        )
        for admission in ("paced", "urgent", "scheduled", "application"):
            sent.add_metric([admission], budget.sent[admission])
        yield sent
        yield GaugeMetricFamily(
            "mep_agent_budget_rate", "Paced requests allowed a second.", value=budget.rate
        )
        yield GaugeMetricFamily(
            "mep_agent_budget_burst", "Paced requests allowed at once.", value=budget.burst
        )
        yield GaugeMetricFamily(
            "mep_agent_budget_available",
            "Paced requests that may go now.",
            value=budget.available(),
        )
        yield GaugeMetricFamily(
            "mep_agent_budget_queued",
            "Paced requests waiting for their turn.",
            value=budget.queued,
        )
        yield GaugeMetricFamily(
            "mep_agent_budget_paused_seconds",
            "Seconds left of a pause the MEP asked for (429 or 503; 0: none).",
            value=max(0.0, budget.paused_until - now),
        )
        yield CounterMetricFamily(
            "mep_agent_budget_throttled",
            "429 and 503 answers from the MEP.",
            value=budget.throttled,
        )
        yield CounterMetricFamily(
            "mep_agent_budget_wait_seconds",
            "Seconds paced requests spent waiting for their turn.",
            value=budget.waited,
        )

    def _discovery_cache(self) -> Iterator[Metric]:
        discovery = self._parts.discovery
        cache = CounterMetricFamily(
            "mep_agent_discovery_lookups", "Discovery lookups by cache result.", labels=["result"]
        )
        cache.add_metric(["hit"], discovery.hits)
        cache.add_metric(["miss"], discovery.misses)
        cache.add_metric(["stale"], discovery.stale)
        yield cache
        entries, size = discovery.size
        yield GaugeMetricFamily(
            "mep_agent_discovery_cache_bytes", "Bytes of MEP answers cached.", value=size
        )
        yield GaugeMetricFamily(
            "mep_agent_discovery_cache_entries", "Names cached.", value=entries
        )

    def _reload(self) -> Iterator[Metric]:
        reloader = self._parts.reloader
        yield CounterMetricFamily(
            "mep_agent_config_reloads",
            "Changes of app_instance_info.yaml applied.",
            value=reloader.reloads,
        )
        yield CounterMetricFamily(
            "mep_agent_config_reload_failures",
            "Reloads refused (unreadable or invalid file).",
            value=reloader.failures,
        )
        yield GaugeMetricFamily(
            "mep_agent_config_valid",
            "0 while the file on disk is refused (the running configuration is older).",
            value=0.0 if reloader.last_error else 1.0,
        )

    def _state(self) -> Iterator[Metric]:
        owned = self._parts.owned
        yield GaugeMetricFamily(
            "mep_agent_state_persistent",
            "1 when what the agent makes at the MEP is recorded in --state-dir.",
            value=1.0 if owned.persistent else 0.0,
        )
        yield GaugeMetricFamily(
            "mep_agent_state_life",
            "Which life of the container this is (1: the first, or no records).",
            value=owned.life,
        )

    def _sync(self, now: float) -> Iterator[Metric]:
        reconciler = self._parts.reconciler
        last = reconciler.last_good
        yield GaugeMetricFamily(
            "mep_agent_sync_age_seconds",
            "Seconds since the last good read of what the MEP holds (-1: none yet).",
            value=now - last if last is not None else -1.0,
        )
        yield GaugeMetricFamily(
            "mep_agent_sync_interval_seconds",
            "Seconds between periodic syncs (--sync-interval; 0: only at start and on signs "
            "of divergence). /healthz/mep fails a sync older than three of them.",
            value=reconciler.interval,
        )
        yield CounterMetricFamily(
            "mep_agent_syncs", "Good reads of what the MEP holds.", value=reconciler.syncs
        )
        repaired = CounterMetricFamily(
            "mep_agent_divergences_repaired",
            "Differences between the agent and the MEP acted on, by kind.",
            labels=["kind"],
        )
        for kind, count in sorted(reconciler.repaired.items()):
            repaired.add_metric([kind], count)
        yield repaired

    def _termination(self) -> Iterator[Metric]:
        terminator = self._parts.terminator
        assert terminator is not None
        notice = terminator.notice
        terminating = GaugeMetricFamily(
            "mep_agent_terminating",
            "1 once the platform announced a termination (or the agent found out an "
            "unannounced one: phase unannounced), by its operationAction and phase.",
            labels=["operation_action", "phase"],
        )
        if notice is not None:
            terminating.add_metric([notice.action, notice.phase.value], 1.0)
        elif terminator.terminated_before is not None:  # a restarted container remembers
            earlier = terminator.view()
            phase = EARLIER_LIFE if earlier["announced"] else EARLIER_UNANNOUNCED
            terminating.add_metric([earlier["operationAction"], phase], 1.0)
        yield terminating
        awaited = notice is not None and notice.announced  # nobody awaits an unannounced one
        yield GaugeMetricFamily(
            "mep_agent_termination_deadline_seconds",
            "When the platform stops waiting for confirm_termination (Unix time; 0: none).",
            value=notice.deadline if notice is not None and awaited else 0.0,
        )


class _Families:
    """Per-service families, labelled by C{ser_name} unless said otherwise."""

    def __init__(self) -> None:
        self.families: list[Metric] = []

    def gauge(self, name: str, help: str, labels: list[str] | None = None) -> GaugeMetricFamily:
        family = GaugeMetricFamily(f"mep_agent_{name}", help, labels=labels or ["ser_name"])
        self.families.append(family)
        return family

    def counter(self, name: str, help: str) -> CounterMetricFamily:
        family = CounterMetricFamily(f"mep_agent_{name}", help, labels=["ser_name"])
        self.families.append(family)
        return family
