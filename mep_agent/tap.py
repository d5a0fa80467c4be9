"""
The composition root: twistd's Options and makeService for C{twistd mep-agent}.

This is the only module that reads os.environ, the file system at start-up and the
global reactor; everything below it receives what it needs as arguments.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CollectorRegistry
from twisted.application import strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.client import HTTPConnectionPool
from twisted.web.server import Site

from . import config as config_module
from . import tls
from .api import AgentAPI
from .discovery import DiscoveryCache
from .errors import ConfigError
from .http import mep_http_client
from .mep import MepClient
from .metrics import AgentCollector, MepObserver
from .ops import OpsAPI
from .registration import Registrar
from .settings import SETTINGS
from .subscriptions import Subscriber, effective_body
from .token import TokenKeeper

log = Logger()

# Read once, then removed from the process environment so that child processes and
# anything that dumps the environment never see them.
SECRET_ENV = ("AK", "SK", "APPINSTID")


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Sidecar for ETSI MEC applications: gets a token from the MEP with AK/SK, registers "
        "the services of app_instance_info.yaml, keeps them alive, deregisters them on stop, "
        "and serves the application a local API. Every option can also be set by the "
        "environment variable shown; the command line wins."
    )
    optFlags = [
        [
            "check",
            None,
            "Validate the configuration, print what would be registered "
            "(JSON) and exit 0, or exit 1 with the problem. Contacts nothing.",
        ],
    ]
    optParameters = [[s.option, None, None, s.describe()] for s in SETTINGS]

    def cli_values(self) -> dict[str, str | None]:
        return {s.key: self[s.option] for s in SETTINGS}


def read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def load_config(options: Options) -> config_module.AgentConfig:
    """Read the environment and files once; exit with one line on a user's mistake."""
    environ = dict(os.environ)
    for name in SECRET_ENV:
        os.environ.pop(name, None)
    try:
        return config_module.load(options.cli_values(), environ, read_file)
    except ConfigError as e:
        raise SystemExit(f"mep-agent: configuration error: {e}") from None


def check_report(cfg: config_module.AgentConfig) -> dict[str, Any]:
    """What --check prints: the resolved settings and the exact bodies to be sent."""
    services_path = "/mep/mec_service_mgmt/v1/applications/{APPINSTID}/services"
    subscriptions_path = "/mep/mec_service_mgmt/v1/applications/{APPINSTID}/subscriptions"
    subscriptions, warnings = [], []
    for sub in cfg.app.subscriptions:
        body = effective_body(sub, cfg.notify_url)  # exactly what the Subscriber sends
        if body is None:
            warnings.append(
                f"serAvailabilityNotificationSubscriptions[{sub.index}].callbackReference: "
                f"{sub.callback_reference[:60]!r} is not a URI and --notify-url is not set; "
                "this subscription will not be sent"
            )
        else:
            subscriptions.append({"method": "POST", "path": subscriptions_path, "body": body})
    return {
        "config": cfg.summary(),
        "registrations": [
            {"method": "POST", "path": services_path, "body": service.body}
            for service in cfg.app.services
        ],
        "subscriptions": subscriptions,
        "warnings": warnings,
    }


def listener(description: str, resource: Any, setting: str, reactor: Any) -> IService:
    """strports.service with a one-line exit for a bad description or a busy port."""
    try:
        service = strports.service(description, Site(resource), reactor=reactor)
    except (ValueError, KeyError, TypeError) as e:
        raise SystemExit(
            f"mep-agent: configuration error: {setting}: invalid endpoint "
            f"description {description!r} ({e})"
        ) from None
    return cast(IService, _Listener(service, setting, description))


class _Listener(MultiService):
    """Turns 'cannot listen' into one line naming the setting, instead of a traceback."""

    def __init__(self, inner: IService, setting: str, description: str) -> None:
        super().__init__()
        self._setting = setting
        self._description = description
        cast(Any, inner).setServiceParent(self)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            raise SystemExit(
                f"mep-agent: {self._setting}: cannot listen on "
                f"{self._description}: {e.socketError}"
            ) from None


class Agent(MultiService):
    """All of the agent; the MEP connections are closed once everything has stopped."""

    def __init__(self, pool: HTTPConnectionPool) -> None:
        super().__init__()
        self._pool = pool

    def stopService(self) -> Deferred[None]:
        d = super().stopService()
        d.addBoth(lambda _: self._pool.closeCachedConnections())
        return d


class OneShot(Service):
    """ENABLE_WAIT=false: stop once everything is registered (exit 0) or time is up (1)."""

    log = Logger()

    def __init__(
        self, registrar: Registrar, clock: Any, timeout: float, finish: Callable[[int], None]
    ) -> None:
        self._registrar = registrar
        self._clock = clock
        self._timeout = timeout
        self._finish = finish

    def startService(self) -> None:
        super().startService()
        d = self._registrar.when_settled()
        d.addTimeout(self._timeout, self._clock)
        d.addCallbacks(self._settled, self._timed_out)

    def _settled(self, ok: bool) -> None:
        if ok:
            self.log.info("one-shot: registered; exiting", event="oneshot.done")
        else:
            self.log.error("one-shot: the MEP refused confirm_ready", event="oneshot.failed")
        self._finish(0 if ok else 1)

    def _timed_out(self, failure: Any) -> None:
        self.log.error(
            "one-shot: not registered within {timeout:.0f}s; exiting with 1",
            timeout=self._timeout,
            event="oneshot.failed",
        )
        self._finish(1)


def build(
    cfg: config_module.AgentConfig, reactor: Any, finish: Callable[[int], None]
) -> MultiService:
    """Every service of the agent, wired together once."""
    policy = None
    if cfg.protocol == "https":
        assert cfg.ca_cert_domain_name is not None
        policy = tls.client_policy(cfg.ca_pems, cfg.ca_cert_domain_name, cfg.ciphers)
    metrics = CollectorRegistry()
    http, pool = mep_http_client(reactor, policy, cfg.request_timeout)
    mep = MepClient(
        http,
        reactor,
        cfg.base_url,
        cfg.host_header,
        cfg.credentials,
        cfg.request_timeout,
        observe=MepObserver(metrics),
    )
    tokens = TokenKeeper(mep, reactor)
    registrar = Registrar(
        mep,
        tokens,
        reactor,
        cfg.app.services,
        request_timeout=cfg.request_timeout,
        shutdown_timeout=cfg.shutdown_timeout,
        heartbeat_method=cfg.heartbeat_method,
        confirm_ready=cfg.confirm_ready,
        deregister_on_stop=cfg.enable_wait,
    )
    subscriber = Subscriber(
        mep,
        tokens,
        reactor,
        cfg.app.subscriptions,
        notify_url=cfg.notify_url,
        shutdown_timeout=cfg.shutdown_timeout,
        delete_on_stop=cfg.enable_wait,
    )
    registrar.on_data_loss = subscriber.check_now

    async def discover(name: str) -> Any:
        return await tokens.with_token(lambda token: mep.discover(token, name))

    discovery = DiscoveryCache(discover, reactor, cfg.discovery_ttl, cfg.discovery_stale)
    metrics.register(AgentCollector(reactor, tokens, registrar, discovery))

    agent = Agent(pool)
    for service in (tokens, registrar, subscriber):
        service.setServiceParent(agent)
    api = AgentAPI(tokens, discovery, reactor, cfg.api_token)
    listener(cfg.listen, api.resource(), "--listen", reactor).setServiceParent(agent)
    if cfg.ops_listen:
        ops = OpsAPI(reactor, tokens, registrar, subscriber, discovery, metrics)
        listener(cfg.ops_listen, ops.resource(), "--ops-listen", reactor).setServiceParent(agent)
    if not cfg.enable_wait:
        OneShot(registrar, reactor, cfg.oneshot_timeout, finish).setServiceParent(agent)
    return agent


def _install_exit_hooks(reactor: Any, exit_code: list[int]) -> None:
    """A non-zero exit status for one-shot failures; a second signal exits at once."""

    def second_signal(signum: int, frame: Any) -> None:
        sys.stderr.write(f"mep-agent: signal {signum} during shutdown; exiting now\n")
        sys.stderr.flush()
        os._exit(128 + signum)

    def shutting_down() -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, second_signal)

    def exit_with_code() -> None:
        if exit_code[0]:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(exit_code[0])
        # A stop on SIGTERM/SIGINT that deregistered everything is a clean exit (0):
        # twistd would otherwise re-raise the signal, and the exit status would say
        # "killed". Twisted keeps the caught signal in this (private) attribute.
        if hasattr(reactor, "_exitSignal"):
            reactor._exitSignal = None

    reactor.addSystemEventTrigger("before", "shutdown", shutting_down)
    reactor.addSystemEventTrigger("after", "shutdown", exit_with_code)


def makeService(options: Options) -> IService:  # noqa: N802 (twistd's name)
    from twisted.internet import reactor

    cfg = load_config(options)
    if options["check"]:
        sys.stdout.write(json.dumps(check_report(cfg), indent=2) + "\n")
        sys.stdout.flush()
        raise SystemExit(0)
    exit_code = [0]

    def finish(code: int) -> None:
        exit_code[0] = code
        reactor.stop()

    agent = build(cfg, reactor, finish)
    _install_exit_hooks(reactor, exit_code)
    log.info("mep-agent configured: {summary}", summary=cfg.summary(), event="agent.starting")
    return cast(IService, agent)
