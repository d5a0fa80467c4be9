"""
What the operations API and the metrics read of the agent's core: a protocol the wired core
(agent.Core) satisfies, so that the web side depends on the core's parts, not on the wiring.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from mep_agent.core.budget import Budget
from mep_agent.core.discovery import DiscoveryCache
from mep_agent.core.holdings import Holdings
from mep_agent.core.owned import Owned
from mep_agent.core.ready import Ready
from mep_agent.core.reconcile import Reconciler
from mep_agent.core.reload import ConfigReloader
from mep_agent.core.termination import Terminator
from mep_agent.core.token import TokenKeeper


class AgentParts(Protocol):
    """The core's parts, read by status, probes and metrics."""

    metrics: CollectorRegistry
    discovery: DiscoveryCache
    reloader: ConfigReloader
    forward: Callable[[dict[str, Any]], None] | None

    @property
    def tokens(self) -> TokenKeeper:
        """The token keeper."""
        ...

    @property
    def budget(self) -> Budget:
        """The request budget."""
        ...

    @property
    def owned(self) -> Owned:
        """What this pod made."""
        ...

    @property
    def ready(self) -> Ready:
        """READY."""
        ...

    @property
    def holdings(self) -> Holdings:
        """The keepers."""
        ...

    @property
    def reconciler(self) -> Reconciler:
        """The sync."""
        ...

    @property
    def terminator(self) -> Terminator | None:
        """The termination, when handled."""
        ...
