"""Builds the one treq HTTP client the agent uses for the MEP: pooled, TLS-verified."""

from __future__ import annotations

from typing import cast

from treq.client import HTTPClient
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import Agent, HTTPConnectionPool, _HTTP11ClientFactory
from twisted.web.iweb import IAgent, IPolicyForHTTPS


class _QuietFactory(_HTTP11ClientFactory):
    # Twisted logs "Starting factory ..." for every pooled connection; operators need
    # the agent's own events, not that.
    noisy = False


def mep_http_client(
    reactor: IReactorTime, policy: IPolicyForHTTPS | None, connect_timeout: float
) -> tuple[HTTPClient, HTTPConnectionPool]:
    """
    A client with persistent connections (the original opened one per request) and
    the MEP TLS policy. Per-request timeouts are set by the caller on each request.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 4
    # Connections idle longer than this are closed before the MEP's gateway drops them.
    pool.cachedConnectionTimeout = 50
    pool._factory = _QuietFactory
    kwargs = {"contextFactory": policy} if policy is not None else {}
    agent = Agent(reactor, pool=pool, connectTimeout=connect_timeout, **kwargs)
    return HTTPClient(cast(IAgent, agent)), pool
