"""
The agent's service tree, wired once from a configuration: every collaborator is made
before the ones that use it and passed to their constructors (observers register
themselves with what they observe), and the reactor and the other seams come from the
caller. Production (tap.py), the test harness and the benchmarks all build with L{core}.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define, frozen
from prometheus_client import CollectorRegistry
from treq.client import HTTPClient
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, DeferredSemaphore, ensureDeferred
from twisted.logger import Logger
from twisted.web.client import Agent, HTTPConnectionPool

from mep_agent.check import callback_url
from mep_agent.config.load import AgentConfig
from mep_agent.config.model import AppInstanceInfo, parse_app_instance_info
from mep_agent.config.parsers import Auth
from mep_agent.core.bodies import subscription_bodies, termination_body
from mep_agent.core.budget import Budget, burst_for
from mep_agent.core.credential_files import CredentialFiles
from mep_agent.core.discovery import DiscoveryCache, MepDiscovery
from mep_agent.core.forward import NotificationForwarder
from mep_agent.core.guard import RemakeGuard
from mep_agent.core.holdings import Holdings, Kinds, Wanted
from mep_agent.core.keeping import Discipline, Hooks, KeeperContext, Liveness
from mep_agent.core.kinds import Services, Subscriptions
from mep_agent.core.owned import Owned, Snapshot, StateStore
from mep_agent.core.ready import Ready
from mep_agent.core.reconcile import Reconciler
from mep_agent.core.reload import ConfigReloader
from mep_agent.core.syncs import SyncRequests
from mep_agent.core.termination import Terminator
from mep_agent.core.token import Fetch, TokenKeeper
from mep_agent.mp1 import tls
from mep_agent.mp1.auth import MepAuth
from mep_agent.mp1.client import MepClient
from mep_agent.mp1.credentials import Credentials
from mep_agent.mp1.http import POOL_SIZE, MepHttp, pooled_agent
from mep_agent.mp1.tokens import Token
from mep_agent.mp1.wire import MepWire, WireHooks
from mep_agent.oneshot import OneShot
from mep_agent.util.retry import backoff, full_jitter
from mep_agent.util.secret import Secret
from mep_agent.web.front import Front, doors, listening
from mep_agent.web.listeners import Listener
from mep_agent.web.metrics import AgentCollector, MepObserver

#: Seconds an application request may wait beyond --request-timeout.
DEADLINE_MARGIN = 1.0

log = Logger()


async def _unwired(path: str) -> bytes:
    raise OSError(0, "reading files is not wired here")


@frozen
class Seams:
    """
    What the process hands the agent, the same in production and in tests but for what
    is real: the notification secret, how files are read, the MEP's HTTP (None: pooled,
    TLS-verified connections on the reactor), the state directory, the randomness.
    """

    notify_secret: Secret
    read: Callable[[str], Awaitable[bytes]] = _unwired
    http: MepHttp | None = None
    state: StateStore | None = None  # writes the state directory (None: memory only)
    earlier: Snapshot | None = None  # what the state directory held at start
    state_problem: str | None = None  # why nothing outlives this life, if it cannot
    rng: Callable[[], float] = random.random
    #: What tells the application of notifications (None: --app-notify-url's forwarder).
    forward: Callable[[dict[str, Any]], None] | None = None


class AgentService(MultiService):
    """
    All of the agent, in stages: started in order, stopped in reverse, one stage after the
    other. So the listeners close first, then a termination under way is finished, then
    what is held at the MEP is deleted while the token keeper still runs (one token for
    all of it), then the token keeper stops, and the MEP connections are closed last.
    """

    def __init__(self, parts: Core, front: Front) -> None:
        """@param front: what the listeners serve."""
        super().__init__()
        self.core = parts
        self.front = front
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
        if self.core.link.pool is not None:
            await self.core.link.pool.closeCachedConnections()


def token_source(kind: Auth, auth: MepAuth) -> Fetch:
    """Where the token comes from, for --auth (looked up at each call: tests replace it)."""
    if kind is Auth.OAUTH2:
        return lambda urgent_until: auth.fetch_oauth2_token(urgent_until)
    if kind is Auth.NONE:

        async def no_token(urgent_until: float | None) -> Token:
            return auth.no_token()

        return no_token
    return lambda urgent_until: auth.fetch_token(urgent_until)


@define
class MepAccess:
    """The way to the MEP: tokens asked for by C{auth}, kept by C{tokens}, used by C{client}."""

    auth: MepAuth
    tokens: TokenKeeper
    client: MepClient


@define
class Link:
    """The way to the MEP: the paced wire over its connections, the token, the client."""

    wire: MepWire
    pool: HTTPConnectionPool | None  # closed last (None: the tests' in-memory MEP)
    budget: Budget
    access: MepAccess
    credential_files: CredentialFiles


@define
class Keeping:
    """What keeps the app's objects at the MEP, and what it remembers."""

    owned: Owned
    ready: Ready
    holdings: Holdings
    reconciler: Reconciler
    terminator: Terminator | None


@define
class Core:
    """The agent's core, wired: everything but the web side (which reads it)."""

    cfg: AgentConfig
    metrics: CollectorRegistry
    link: Link
    keeping: Keeping
    discovery: DiscoveryCache
    reloader: ConfigReloader
    forward: Callable[[dict[str, Any]], None] | None

    @property
    def mep(self) -> MepClient:
        """The Mp1 client."""
        return self.link.access.client

    @property
    def tokens(self) -> TokenKeeper:
        """The token keeper."""
        return self.link.access.tokens

    @property
    def budget(self) -> Budget:
        """The request budget."""
        return self.link.budget

    @property
    def owned(self) -> Owned:
        """What this pod made at the MEP."""
        return self.keeping.owned

    @property
    def ready(self) -> Ready:
        """READY."""
        return self.keeping.ready

    @property
    def holdings(self) -> Holdings:
        """The keepers."""
        return self.keeping.holdings

    @property
    def reconciler(self) -> Reconciler:
        """The sync."""
        return self.keeping.reconciler

    @property
    def terminator(self) -> Terminator | None:
        """The termination, when the agent handles it."""
        return self.keeping.terminator


def mep_wire(
    cfg: AgentConfig, reactor: Any, seams: Seams, metrics: CollectorRegistry, budget: Budget
) -> tuple[MepWire, HTTPConnectionPool | None]:
    """Stage 1: exchanges with the MEP over its verified, pooled connections, paced."""
    policy = None
    if cfg.protocol == "https":
        assert cfg.ca_cert_domain_name is not None
        policy = tls.DiagnosingPolicy(
            tls.client_policy(cfg.ca_pems, cfg.ca_cert_domain_name, cfg.ciphers, cfg.mep_host),
            cfg.ca_cert_path or "CA_CERT",
            cfg.ca_cert_domain_name,
        )
    http, pool = seams.http, None
    if http is None:
        agent, pool = pooled_agent(reactor, policy, cfg.request_timeout)
        http = MepHttp(agent, pool)
    wire = MepWire(
        http,
        reactor,
        cfg.base_url,
        cfg.host_header,
        cfg.credentials,
        cfg.request_timeout,
        cfg.max_response_bytes,
        WireHooks(MepObserver(metrics), policy.explain if policy is not None else None, budget),
    )
    return wire, pool


def mep_access(cfg: AgentConfig, reactor: Any, wire: MepWire, seams: Seams) -> MepAccess:
    """
    Stage 2: the one token authority over the MEP's token endpoint, and the Mp1 client
    that takes its token from it (the seam: no one else handles tokens).
    """
    auth = MepAuth(wire, cfg.api_root)
    delays = lambda: backoff(rng=seams.rng)  # noqa: E731 (a factory of iterators)
    tokens = TokenKeeper(token_source(cfg.auth, auth), reactor, delays=delays)
    client = MepClient(
        wire,
        tokens,
        api_root=cfg.api_root,
        links_under_root=cfg.dialect.links_under_root,
        heartbeat_method=cfg.heartbeat_method,
        public_origins=frozenset(cfg.mep_public_origins),
    )
    return MepAccess(auth, tokens, client)


def credential_files(
    cfg: AgentConfig, reactor: Any, wire: MepWire, tokens: TokenKeeper, seams: Seams
) -> CredentialFiles:
    """The credential files the token keeper follows (read again when a key is refused)."""

    def credentials_changed(new: Credentials) -> None:
        wire.set_credentials(new)
        tokens.credentials_changed()

    files = CredentialFiles(
        cfg.credential_files,
        seams.read,
        cfg.credentials,
        credentials_changed,
        reactor,
        cfg.reload_interval,
    )
    tokens.on_refusal(files.check_now)
    return files


def wanted(cfg: AgentConfig, info: AppInstanceInfo, notify_secret: Secret) -> Wanted:
    """What the agent keeps at the MEP for a file (the termination subscription too)."""
    callback = callback_url(cfg.notify_url, notify_secret.reveal())
    subscriptions, skipped = subscription_bodies(
        info.subscriptions, callback, notify_secret.reveal()
    )
    for index in skipped:
        log.warn(
            "serAvailabilityNotificationSubscriptions[{index}]: callbackReference is not a "
            "URI and --notify-url is not set; not subscribing",
            index=index,
            event="subscription.skipped",
        )
    termination = None
    if cfg.handles_termination and callback:
        termination = termination_body(
            callback, cfg.api_root, cfg.credentials.app_instance_id.reveal()
        )
    return Wanted(info.services, subscriptions, termination)


def keepers(cfg: AgentConfig, reactor: Any, link: Link, owned: Owned, seams: Seams) -> Holdings:
    """Stage 3: READY, and a keeper for everything kept at the MEP (they wait on READY)."""
    mep = link.access.client
    ready = Ready(
        mep,
        reactor,
        owned,
        enabled=cfg.confirm_ready,
        required=cfg.dialect.ready_first,
        policy=full_jitter(rng=seams.rng),
    )
    guard = None
    if cfg.dialect.deletes_at_termination:  # its termination looks like a lost store
        guard = RemakeGuard(
            reactor, link.access.tokens.verify, lambda: len(cfg.app.services), seams.rng
        )
    ctx = KeeperContext(
        reactor,
        ready,
        owned,
        SyncRequests(),
        Discipline(full_jitter(rng=seams.rng), DeferredSemaphore(POOL_SIZE)),
        Liveness(mep, link.budget, cfg.request_timeout, cfg.dialect.liveness_grace),
        Hooks(reached=lambda: link.wire.may_have_received(("register", "subscribe"))),
        guard,
    )
    kinds = Kinds(
        Services(mep, cfg.dialect.restore_sends_held),
        Subscriptions(mep),
        Subscriptions(mep, termination=True),
    )
    want = wanted(cfg, cfg.app, seams.notify_secret)
    if owned.terminated is not None:
        want = Wanted((), ())  # the platform terminated the app: nothing is kept again
    holdings = Holdings(
        ctx, kinds, want, link.budget, cfg.shutdown_timeout, delete_on_stop=cfg.enable_wait
    )
    holdings.withdrawn = owned.terminated is not None
    return holdings


def forwarder(cfg: AgentConfig, reactor: Any) -> Callable[[dict[str, Any]], None] | None:
    """What tells the application of notifications (--app-notify-url), if anything."""
    if not cfg.app_notify_url:
        return None
    return NotificationForwarder(
        HTTPClient(Agent(reactor, connectTimeout=5)), reactor, cfg.app_notify_url
    )


def link(cfg: AgentConfig, reactor: Any, seams: Seams, metrics: CollectorRegistry) -> Link:
    """Stages 1-2: the budget, the paced wire, the token, the Mp1 client, the key files."""
    objects = len(cfg.app.services) + len(cfg.app.subscriptions) + 1
    budget = Budget(reactor, cfg.request_rate, burst_for(objects), seams.rng)
    wire, pool = mep_wire(cfg, reactor, seams, metrics, budget)
    access = mep_access(cfg, reactor, wire, seams)
    files = credential_files(cfg, reactor, wire, access.tokens, seams)
    return Link(wire, pool, budget, access, files)


def owned(cfg: AgentConfig, reactor: Any, seams: Seams) -> Owned:
    """What this pod made at the MEP, from the state directory (or memory only)."""
    app_instance_id = cfg.credentials.app_instance_id.reveal()
    records = Owned(app_instance_id, seams.earlier, seams.state, reactor.seconds, cfg.state_dir)
    if seams.state_problem is not None:
        records.problem = seams.state_problem
    return records


def keeping(
    cfg: AgentConfig,
    reactor: Any,
    link: Link,
    seams: Seams,
    forward: Callable[[dict[str, Any]], None] | None,
) -> Keeping:
    """Stage 3 whole: the records, READY, the keepers, the sync and the termination."""
    records = owned(cfg, reactor, seams)
    holdings = keepers(cfg, reactor, link, records, seams)
    callback = callback_url(cfg.notify_url, seams.notify_secret.reveal())
    reconciler = Reconciler(
        holdings, reactor, cfg.sync_interval, cfg.dialect.liveness_grace, callback, seams.rng
    )
    terminated = records.terminated is not None
    reconciler.reading = not terminated
    terminator = None
    guard = holdings.ctx.guard
    if cfg.handles_termination or terminated:
        terminator = Terminator(
            link.access.client,
            reactor,
            holdings,
            holdings.ctx.ready,
            reconciler,
            records,
            forward,
            cfg.termination_wait_app,
        )
        terminator.shutdown = cfg.shutdown_timeout
        terminator.platform_deletes = cfg.dialect.deletes_at_termination
        terminator.done = link.access.tokens.retire
        if guard is not None:
            guard.refused = terminator.unannounced
    return Keeping(records, holdings.ctx.ready, holdings, reconciler, terminator)


def core(cfg: AgentConfig, reactor: Any, seams: Seams) -> Core:
    """Everything but the web side, each part made before the parts that use it."""
    metrics = CollectorRegistry()
    way = link(cfg, reactor, seams, metrics)
    forward = seams.forward or forwarder(cfg, reactor)
    kept = keeping(cfg, reactor, way, seams, forward)
    discovery = DiscoveryCache(
        MepDiscovery(way.access.tokens, way.access.client, cfg.discovery_ttl, reactor),
        reactor,
        cfg.discovery_ttl,
        cfg.discovery_stale,
        deadline=cfg.request_timeout + DEADLINE_MARGIN,
    )
    reloader = reloading(cfg, reactor, kept.holdings, seams)
    made = Core(cfg, metrics, way, kept, discovery, reloader, forward)
    metrics.register(AgentCollector(reactor, made))
    return made


def reloading(cfg: AgentConfig, reactor: Any, holdings: Holdings, seams: Seams) -> ConfigReloader:
    """The hot reload of app_instance_info.yaml, applied to the keepers."""
    return ConfigReloader(
        cfg.app_instance_info_path,
        seams.read,
        lambda text: parse_app_instance_info(
            cfg.app_instance_info_path, text, cfg.dialect.etsi_validation
        ),
        lambda info: holdings.apply(wanted(cfg, info, seams.notify_secret)),
        reactor,
        cfg.reload_interval,
        cfg.app_instance_info_digest,
    )


def build(
    cfg: AgentConfig,
    reactor: Any,
    seams: Seams,
    finish: Callable[[int], None],
    set_code: Callable[[int], None] = lambda code: None,
) -> AgentService:
    """
    Every service of the agent for C{cfg}, in the stages L{AgentService} starts in order.

    @param reactor: the reactor (or a MemoryReactorClock in tests).
    @param finish: C{finish(code)} stops the process with an exit status (one-shot).
    @param set_code: the exit status of a stop that comes from elsewhere (one-shot).
    """
    parts = core(cfg, reactor, seams)
    root = AgentService(parts, doors(cfg, reactor, parts, seams.notify_secret))
    root.add_stage(parts.tokens, parts.discovery, parts.link.credential_files)
    root.add_stage(parts.ready, parts.holdings, parts.reloader, parts.reconciler)
    if parts.terminator is not None:
        root.add_stage(parts.terminator)
    front = listening(cfg, reactor, root.front, root.listeners)
    if not cfg.enable_wait:

        def last_error() -> str | None:
            if parts.tokens.last_error:  # "token: …" already (the MEP error's operation)
                return parts.tokens.last_error
            return parts.holdings.last_error()

        front.append(
            OneShot(parts.holdings, reactor, cfg.oneshot_timeout, finish, set_code, last_error)
        )
    root.add_stage(*front)
    return root
