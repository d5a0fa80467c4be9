"""
Prometheus metrics. State (registrations, heartbeats, token, cache) is read from the
services at scrape time, so nothing is counted twice; MEP requests are counted as they
happen through L{MepObserver}. Label sets are bounded: service names (at most 50),
a fixed list of operations and states, and status codes folded into a fixed list.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from twisted.internet.interfaces import IReactorTime

if TYPE_CHECKING:
    from mep_agent.core.discovery import DiscoveryCache
    from mep_agent.core.reconcile import Reconciler
    from mep_agent.core.registration import Registrar
    from mep_agent.core.reload import ConfigReloader
    from mep_agent.core.termination import Terminator
    from mep_agent.core.token import TokenKeeper

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


def status_label(status: int | None) -> str:
    """The label for an HTTP status: itself when common, else its class (4xx ...)."""
    if status is None:
        return "no_answer"
    text = str(status)
    return text if text in _STATUSES else f"{text[0]}xx"


class MepObserver:
    """Counts every MEP request by operation and status, and times it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
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


class AgentCollector(Collector):
    """Reads the services' state at scrape time."""

    def __init__(
        self,
        clock: IReactorTime,
        tokens: TokenKeeper,
        registrar: Registrar,
        discovery: DiscoveryCache,
        reloader: ConfigReloader | None = None,
        terminator: Terminator | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._reloader = reloader
        self._reconciler = reconciler
        self._terminator = terminator
        self._clock = clock
        self._tokens = tokens
        self._registrar = registrar
        self._discovery = discovery

    def collect(self) -> Iterator[Metric]:
        """Every metric family, from the current state."""
        now = self._clock.seconds()
        yield from self._services(now)
        yield from self._token()
        yield from self._discovery_cache()
        if self._reloader is not None:
            yield from self._reload()
        if self._terminator is not None:
            yield from self._termination()
        if self._reconciler is not None:
            yield from self._sync(now)

    def _services(self, now: float) -> Iterator[Metric]:
        registered = GaugeMetricFamily(
            "mep_agent_service_registered",
            "1 when the service is registered on the MEP.",
            labels=["ser_name"],
        )
        held = GaugeMetricFamily(
            "mep_agent_service_mep_state",
            "1 for the state the last sync saw the MEP hold each service in.",
            labels=["ser_name", "state"],
        )
        seen = GaugeMetricFamily(
            "mep_agent_service_mep_seen_timestamp_seconds",
            "When the last sync saw the service on the MEP (Unix time).",
            labels=["ser_name"],
        )
        waiting = GaugeMetricFamily(
            "mep_agent_service_waiting_for_token",
            "1 when the service's last registration or heartbeat found no valid token.",
            labels=["ser_name"],
        )
        beats = CounterMetricFamily(
            "mep_agent_heartbeats", "Heartbeats sent.", labels=["ser_name"]
        )
        failed = CounterMetricFamily(
            "mep_agent_heartbeat_failures", "Heartbeats that failed.", labels=["ser_name"]
        )
        since = GaugeMetricFamily(
            "mep_agent_seconds_since_heartbeat",
            "Seconds since the last successful heartbeat.",
            labels=["ser_name"],
        )
        again = CounterMetricFamily(
            "mep_agent_reregistrations",
            "Registrations repeated after the MEP lost the service.",
            labels=["ser_name"],
        )
        for name, state in self._registrar.states.items():
            registered.add_metric([name], 1.0 if state.registration is not None else 0.0)
            waiting.add_metric([name], 1.0 if state.waiting_for_token else 0.0)
            beats.add_metric([name], state.heartbeats_sent)
            failed.add_metric([name], state.heartbeats_failed)
            if state.last_heartbeat is not None:
                since.add_metric([name], now - state.last_heartbeat)
            again.add_metric([name], max(0, state.registrations - 1))
            if state.mep_state is not None and state.mep_seen_at is not None:
                held.add_metric([name, state.mep_state], 1.0)
                seen.add_metric([name], state.mep_seen_at)
        yield from (registered, waiting, beats, failed, since, again, held, seen)

    def _token(self) -> Iterator[Metric]:
        from mep_agent.core.token import TokenState

        token = self._tokens.current()
        expiry = GaugeMetricFamily(
            "mep_agent_token_expiry_timestamp_seconds",
            "When the current token expires (0: no valid token).",
        )
        expiry.add_metric([], token.expires_at if token else 0.0)
        yield expiry
        token_state = GaugeMetricFamily(
            "mep_agent_token_state", "1 for the token's current state.", labels=["state"]
        )
        current = self._tokens.state
        for token_state_value in TokenState:
            token_state.add_metric(
                [token_state_value.value], 1.0 if token_state_value is current else 0.0
            )
        yield token_state
        yield CounterMetricFamily(
            "mep_agent_token_refresh_failures",
            "Token requests that failed.",
            value=self._tokens.refresh_failures,
        )
        yield CounterMetricFamily(
            "mep_agent_token_requests",
            "Token requests sent to the MEP.",
            value=self._tokens.requests_sent,
        )

    def _discovery_cache(self) -> Iterator[Metric]:
        cache = CounterMetricFamily(
            "mep_agent_discovery_lookups", "Discovery lookups by cache result.", labels=["result"]
        )
        cache.add_metric(["hit"], self._discovery.hits)
        cache.add_metric(["miss"], self._discovery.misses)
        cache.add_metric(["stale"], self._discovery.stale)
        yield cache
        entries, size = self._discovery.size
        yield GaugeMetricFamily(
            "mep_agent_discovery_cache_bytes", "Bytes of MEP answers cached.", value=size
        )
        yield GaugeMetricFamily(
            "mep_agent_discovery_cache_entries", "Names cached.", value=entries
        )

    def _reload(self) -> Iterator[Metric]:
        reloader = self._reloader
        assert reloader is not None
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

    def _sync(self, now: float) -> Iterator[Metric]:
        assert self._reconciler is not None
        last = self._reconciler.last_good
        yield GaugeMetricFamily(
            "mep_agent_sync_age_seconds",
            "Seconds since the last good read of what the MEP holds (-1: none yet).",
            value=now - last if last is not None else -1.0,
        )
        repaired = CounterMetricFamily(
            "mep_agent_divergences_repaired",
            "Differences between the agent and the MEP repaired, by kind.",
            labels=["kind"],
        )
        for kind, count in sorted(self._reconciler.repaired.items()):
            repaired.add_metric([kind], count)
        yield repaired

    def _termination(self) -> Iterator[Metric]:
        assert self._terminator is not None
        notice = self._terminator.notice
        terminating = GaugeMetricFamily(
            "mep_agent_terminating",
            "1 once the platform announced a termination, by its operationAction and phase.",
            labels=["operation_action", "phase"],
        )
        if notice is not None:
            terminating.add_metric([notice.action, notice.phase.value], 1.0)
        yield terminating
        yield GaugeMetricFamily(
            "mep_agent_termination_deadline_seconds",
            "When the platform stops waiting for confirm_termination (Unix time; 0: none).",
            value=notice.deadline if notice is not None else 0.0,
        )
