"""
The agent's service tree, wired once from a configuration: every collaborator is passed
to the constructor of the one that needs it, and the reactor comes from the caller.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define
from prometheus_client import CollectorRegistry
from treq.client import HTTPClient
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import IResource

from mep_agent.check import callback_url
from mep_agent.config.load import AgentConfig
from mep_agent.config.model import parse_app_instance_info
from mep_agent.config.parsers import Auth, HeartbeatMethod
from mep_agent.core.credential_files import CredentialFiles
from mep_agent.core.discovery import DiscoveryCache, MepDiscovery
from mep_agent.core.forward import NotificationForwarder
from mep_agent.core.reconcile import Reconciler
from mep_agent.core.registration import Registrar
from mep_agent.core.reload import ConfigReloader
from mep_agent.core.subscriptions import Subscriber, termination_body
from mep_agent.core.termination import Terminator
from mep_agent.core.token import TokenKeeper
from mep_agent.mp1 import links, tls
from mep_agent.mp1.auth import MepAuth
from mep_agent.mp1.client import MepClient
from mep_agent.mp1.credentials import Credentials
from mep_agent.mp1.http import MepHttp, pooled_agent
from mep_agent.mp1.tokens import Token
from mep_agent.mp1.wire import MepWire
from mep_agent.oneshot import OneShot
from mep_agent.util.retry import Delays, backoff
from mep_agent.util.secret import Secret
from mep_agent.web.api import AgentAPI, ParkedQueries
from mep_agent.web.listeners import Listener
from mep_agent.web.metrics import AgentCollector, MepObserver
from mep_agent.web.ops import OpsAPI
from mep_agent.web.site import serve

#: Seconds an application request may wait beyond --request-timeout.
DEADLINE_MARGIN = 1.0


class AgentService(MultiService):
    """
    All of the agent, in stages: started in order, stopped in reverse, one stage after
    the other. So the listeners close first, then the registrations and subscriptions
    are deleted while the token keeper still runs (one token for all of them), then the
    token keeper stops, and the MEP connections are closed last.
    """

    def __init__(self, pool: HTTPConnectionPool) -> None:
        """@param pool: the MEP connections, closed once everything has stopped."""
        super().__init__()
        self.pool = pool
        self.reloader: ConfigReloader | None = None  # what SIGHUP asks to re-read the file
        self.registrar: Registrar | None = None  # start-up is over when it has settled
        self.listeners: list[Listener] = []

    def add_stage(self, *services: IService) -> None:
        """A stage of services that start together and stop together."""
        stage = MultiService()
        for service in services:
            service.setServiceParent(stage)
        stage.setServiceParent(self)

    def stopService(self) -> Deferred[None]:
        """Stop the stages one by one, last first; then close the connections."""
        Service.stopService(self)
        return ensureDeferred(self._stop())

    async def _stop(self) -> None:
        for stage in reversed(list(self)):
            await stage.stopService()
        await self.pool.closeCachedConnections()


def token_source(kind: Auth, auth: MepAuth) -> Callable[[], Awaitable[Token]]:
    """Where the token comes from, for --auth (looked up at each call: tests replace it)."""
    if kind is Auth.OAUTH2:
        return lambda: auth.fetch_oauth2_token()
    if kind is Auth.NONE:

        async def no_token() -> Token:
            return auth.no_token()

        return no_token
    return lambda: auth.fetch_token()


@define
class MepAccess:
    """The way to the MEP: tokens asked for by C{auth}, kept by C{tokens}, used by C{client}."""

    auth: MepAuth
    tokens: TokenKeeper
    client: MepClient


def mep_access(
    wire: MepWire,
    clock: Any,
    kind: Auth,
    api_root: str,
    links_under_root: bool = True,
    heartbeat_method: HeartbeatMethod = HeartbeatMethod.AUTO,
    public_origins: frozenset[links.Origin] = frozenset(),
    delays: Delays = backoff,
    on_refused: Callable[[], object] = lambda: None,
) -> MepAccess:
    """
    Stage 2: the one token authority over the MEP's token endpoint, and the Mp1 client
    that takes its token from it (the seam: no one else handles tokens). The tests and
    the fleet benchmark build theirs with this too.
    """
    auth = MepAuth(wire, api_root)
    tokens = TokenKeeper(token_source(kind, auth), clock, delays=delays, on_refused=on_refused)
    client = MepClient(
        wire,
        tokens,
        api_root=api_root,
        links_under_root=links_under_root,
        heartbeat_method=heartbeat_method,
        public_origins=public_origins,
    )
    return MepAccess(auth, tokens, client)


@define
class Core:
    """The agent's core, wired: the MEP client and the services that act on the MEP."""

    mep: MepClient
    pool: HTTPConnectionPool
    metrics: CollectorRegistry
    tokens: TokenKeeper
    credential_files: CredentialFiles
    subscriber: Subscriber
    registrar: Registrar
    reconciler: Reconciler
    discovery: DiscoveryCache
    reloader: ConfigReloader
    forward: Callable[[dict[str, Any]], None] | None
    terminator: Terminator | None


def mep_wire(
    cfg: AgentConfig, reactor: Any, metrics: CollectorRegistry
) -> tuple[MepWire, HTTPConnectionPool]:
    """Stage 1: exchanges with the MEP over its verified, pooled connections."""
    policy = None
    if cfg.protocol == "https":
        assert cfg.ca_cert_domain_name is not None
        policy = tls.DiagnosingPolicy(
            tls.client_policy(cfg.ca_pems, cfg.ca_cert_domain_name, cfg.ciphers, cfg.mep_host),
            cfg.ca_cert_path or "CA_CERT",
            cfg.ca_cert_domain_name,
        )
    agent, pool = pooled_agent(reactor, policy, cfg.request_timeout)
    wire = MepWire(
        MepHttp(agent, pool),
        reactor,
        cfg.base_url,
        cfg.host_header,
        cfg.credentials,
        cfg.request_timeout,
        observe=MepObserver(metrics),
        max_body=cfg.max_response_bytes,
        explain=policy.explain if policy is not None else None,
    )
    return wire, pool


def token_keeping(
    cfg: AgentConfig, reactor: Any, wire: MepWire, read: Callable[[str], Awaitable[bytes]]
) -> tuple[MepAccess, CredentialFiles]:
    """Stage 2 for a configuration: the way to the MEP, and the credential files it follows."""
    access = mep_access(
        wire,
        reactor,
        cfg.auth,
        cfg.api_root,
        links_under_root=cfg.dialect.links_under_root,
        heartbeat_method=cfg.heartbeat_method,
        public_origins=frozenset(cfg.mep_public_origins),
        on_refused=lambda: credential_files.check_now(),
    )
    tokens = access.tokens

    def credentials_changed(new: Credentials) -> None:
        wire.set_credentials(new)
        tokens.credentials_changed()

    credential_files = CredentialFiles(
        cfg.credential_files,
        read,
        cfg.credentials,
        credentials_changed,
        reactor,
        cfg.reload_interval,
    )
    return access, credential_files


def keeping_registered(
    cfg: AgentConfig, reactor: Any, mep: MepClient, tokens: TokenKeeper, notify_secret: Secret
) -> tuple[Subscriber, Registrar, Reconciler]:
    """
    Stage 3: what is registered and subscribed, and the sync against the MEP's truth. They
    refer to each other (READY is the registrar's state; a loss makes the others look), so
    the lambdas read the later ones once they exist.
    """
    ready_first = cfg.dialect.ready_first and cfg.confirm_ready
    callback = callback_url(cfg.notify_url, notify_secret.reveal())
    subscriber = Subscriber(
        mep,
        tokens,
        reactor,
        cfg.app.subscriptions,
        callback_url=callback,
        notify_secret=notify_secret.reveal(),
        shutdown_timeout=cfg.shutdown_timeout,
        delete_on_stop=cfg.enable_wait,
        termination_body=termination_body(
            callback, cfg.api_root, cfg.credentials.app_instance_id.reveal()
        )
        if cfg.handles_termination and callback
        else None,
        when_ready=(lambda: registrar.when_ready()) if ready_first else None,
        ready_lost=(lambda: registrar.ready_lost()) if cfg.confirm_ready else None,
    )

    def data_lost() -> None:
        """The MEP lost a service (a 404): it may have lost more; look now."""
        subscriber.check_now()
        reconciler.sync_soon()

    registrar = Registrar(
        mep,
        tokens,
        reactor,
        cfg.app.services,
        request_timeout=cfg.request_timeout,
        shutdown_timeout=cfg.shutdown_timeout,
        confirm_ready=cfg.confirm_ready,
        deregister_on_stop=cfg.enable_wait,
        on_data_loss=data_lost,
        liveness_grace=cfg.dialect.liveness_grace,
        ready_first=cfg.dialect.ready_first,
        first_sync=lambda: reconciler.first_sync(),
    )
    reconciler = Reconciler(
        mep,
        reactor,
        registrar,
        subscriber,
        cfg.sync_interval,
        callback_url=callback,
        ready_lost=registrar.ready_lost if cfg.confirm_ready else None,
        when_ready=registrar.when_ready if ready_first else None,
    )
    return subscriber, registrar, reconciler


def forwarder(cfg: AgentConfig, reactor: Any) -> Callable[[dict[str, Any]], None] | None:
    """What tells the application of notifications (--app-notify-url), if anything."""
    if not cfg.app_notify_url:
        return None
    return NotificationForwarder(
        HTTPClient(Agent(reactor, connectTimeout=5)), reactor, cfg.app_notify_url
    )


def core(
    cfg: AgentConfig,
    reactor: Any,
    notify_secret: Secret,
    read: Callable[[str], Awaitable[bytes]],
) -> Core:
    """Stages 1-3, the cache, the reload and the termination: everything but the web side."""
    metrics = CollectorRegistry()
    wire, pool = mep_wire(cfg, reactor, metrics)
    access, credential_files = token_keeping(cfg, reactor, wire, read)
    mep, tokens = access.client, access.tokens
    subscriber, registrar, reconciler = keeping_registered(
        cfg, reactor, mep, tokens, notify_secret
    )
    discovery = DiscoveryCache(
        MepDiscovery(tokens, mep, cfg.discovery_ttl, reactor),
        reactor,
        cfg.discovery_ttl,
        cfg.discovery_stale,
        deadline=cfg.request_timeout + DEADLINE_MARGIN,
    )
    reloader = ConfigReloader(
        cfg.app_instance_info_path,
        read,
        lambda text: parse_app_instance_info(
            cfg.app_instance_info_path, text, cfg.dialect.etsi_validation
        ),
        registrar,
        subscriber,
        reactor,
        cfg.reload_interval,
        cfg.app_instance_info_digest,
    )
    forward = forwarder(cfg, reactor)
    terminator = None
    if cfg.handles_termination:
        terminator = Terminator(
            mep, reactor, registrar, subscriber, forward, cfg.termination_wait_app
        )
    metrics.register(
        AgentCollector(reactor, tokens, registrar, discovery, reloader, terminator, reconciler)
    )
    return Core(
        mep,
        pool,
        metrics,
        tokens,
        credential_files,
        subscriber,
        registrar,
        reconciler,
        discovery,
        reloader,
        forward,
        terminator,
    )


def web(
    cfg: AgentConfig,
    reactor: Any,
    parts: Core,
    notify_secret: Secret,
    listeners: list[Listener],
) -> list[IService]:
    """The last stage: both listeners (each appended to C{listeners}) and what they serve."""

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

    api = AgentAPI(
        parts.tokens, parts.discovery, reactor, cfg.api_token, cfg.dialect, parts.terminator
    )
    front: list[IService] = [listener(api.resource(), cfg.listen, "--listen"), ParkedQueries(api)]
    if cfg.ops_listen:
        ops = OpsAPI(
            reactor,
            parts.tokens,
            parts.registrar,
            parts.subscriber,
            parts.discovery,
            parts.metrics,
            notify_secret,
            parts.reloader,
            parts.forward,
            parts.terminator,
            parts.reconciler,
        )
        front.append(listener(ops.resource(), cfg.ops_listen, "--ops-listen"))
    return front


def build(
    cfg: AgentConfig,
    reactor: Any,
    finish: Callable[[int], None],
    notify_secret: Secret,
    set_code: Callable[[int], None] = lambda code: None,
    read_async: Callable[[str], Awaitable[bytes]] | None = None,
) -> AgentService:
    """
    Every service of the agent for C{cfg}, in the stages L{AgentService} starts in order.

    @param reactor: the reactor (or a MemoryReactorClock in tests).
    @param finish: C{finish(code)} stops the process with an exit status (one-shot).
    @param notify_secret: the path segment that authenticates the MEP's notifications.
    @param read_async: reads a file off the reactor thread (for reloads); None: no reload.
    """
    if read_async is None:

        async def read_async(path: str) -> bytes:
            raise OSError(0, "reading files is not wired here")

    parts = core(cfg, reactor, notify_secret, read_async)
    root = AgentService(parts.pool)
    root.add_stage(parts.tokens, parts.discovery, parts.credential_files)
    root.add_stage(
        parts.registrar,
        parts.subscriber,
        parts.reloader,
        parts.reconciler,
        *([parts.terminator] if parts.terminator else []),
    )
    root.reloader, root.registrar = parts.reloader, parts.registrar
    front = web(cfg, reactor, parts, notify_secret, root.listeners)
    if not cfg.enable_wait:
        front.append(
            OneShot(
                parts.registrar,
                reactor,
                cfg.oneshot_timeout,
                finish,
                set_code=set_code,
                last_error=parts.registrar.last_error,
            )
        )
    root.add_stage(*front)
    return root
