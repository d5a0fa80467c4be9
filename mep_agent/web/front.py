"""
The agent's two doors, the last stage of its start: what the application API and the
operations API serve (L{Front}, made from the core's parts), and the listeners serving them.
"""

from __future__ import annotations

from typing import Any

from attrs import frozen
from twisted.application.service import IService
from twisted.web.resource import IResource

from mep_agent.config.load import AgentConfig
from mep_agent.util.secret import Secret
from mep_agent.web.api import AgentAPI, ParkedQueries
from mep_agent.web.listeners import Listener
from mep_agent.web.metrics import ApiObserver
from mep_agent.web.ops import OpsAPI
from mep_agent.web.parts import AgentParts
from mep_agent.web.site import serve


@frozen
class Front:
    """The application API and the operations API."""

    api: AgentAPI
    ops: OpsAPI


def doors(cfg: AgentConfig, reactor: Any, parts: AgentParts, notify_secret: Secret) -> Front:
    """What the two listeners serve (the tests serve them in memory)."""
    api = AgentAPI(
        parts.tokens,
        parts.discovery,
        reactor,
        cfg.api_token,
        cfg.dialect,
        parts.terminator,
        ApiObserver(parts.metrics),
    )
    ops = OpsAPI(reactor, parts, notify_secret)
    return Front(api, ops)


def listening(
    cfg: AgentConfig, reactor: Any, front: Front, listeners: list[Listener]
) -> list[IService]:
    """Both listeners (each appended to C{listeners}) and what they serve, as services."""

    def listener(resource: IResource, description: str, setting: str) -> Listener:
        factory = serve(
            resource,
            reactor,
            cfg.max_connections,
            header_deadline=cfg.header_timeout,
            access_log=cfg.access_log,
            max_per_peer=cfg.max_connections_per_peer,
        )
        made = Listener.from_description(reactor, description, factory, setting)
        listeners.append(made)
        return made

    services: list[IService] = [
        listener(front.api.resource(), cfg.listen, "--listen"),
        ParkedQueries(front.api),
    ]
    if cfg.ops_listen:
        services.append(listener(front.ops.resource(), cfg.ops_listen, "--ops-listen"))
    return services
