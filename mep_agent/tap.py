"""
The composition root of C{twistd mep-agent}: twistd's Options and makeService.

This is the only module that reads os.environ, the file system at start-up and the
global reactor; everything below it receives what it needs as arguments.
"""

from __future__ import annotations

import errno
import gc
import json
import os
import secrets
import sys
from collections.abc import MutableMapping
from typing import IO, Any

from twisted.application.service import IService
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from mep_agent import check, statedir
from mep_agent.agent import Seams, build
from mep_agent.cli import OneLineOptions
from mep_agent.config.errors import ConfigError
from mep_agent.config.load import AgentConfig, load, setting_value
from mep_agent.config.parsers import LogFormat, LogLevel
from mep_agent.config.settings import SETTINGS
from mep_agent.exits import ProcessExit
from mep_agent.logs import factory_name
from mep_agent.run import exit_early_on_stop_signals
from mep_agent.util.secret import Secret

log = Logger()

# Read once, then removed from the process environment so that child processes and
# anything that dumps the environment never see them.
SECRET_ENV = ("AK", "SK", "APPINSTID", "MEP_AGENT_OAUTH2_CLIENT_SECRET")


class Options(OneLineOptions):
    """C{twistd mep-agent} options: one per setting, plus --check; mistakes in one line."""

    synopsis = "[options]"
    longdesc = (
        "Sidecar for ETSI MEC applications: gets a token from the MEP (AK/SK, OAuth 2.0 or "
        "none, see --auth), registers the services of app_instance_info.yaml, keeps them "
        "alive, deregisters them on stop, "
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

    def opt_version(self) -> None:
        """Print the agent's version (and Twisted's and Python's), then exit."""
        import platform

        import twisted
        from mep_agent import __version__

        sys.stdout.write(
            f"mep-agent {__version__} (Twisted {twisted.__version__}, "
            f"Python {platform.python_version()})\n"
        )
        sys.stdout.flush()
        raise SystemExit(0)

    def postOptions(self) -> None:
        """
        Under twistd: a stop signal from now until the reactor runs exits 0 at once (nothing
        has been sent yet). --log-format/--log-level replace twistd's logger: they must be
        known before twistd starts logging, which is before makeService runs.
        """
        if getattr(self, "parent", None) is not None:
            exit_early_on_stop_signals()
        try:  # through the settings table, as load() reads them
            log_format = setting_value("log_format", self.cli_values(), os.environ)
            level = setting_value("log_level", self.cli_values(), os.environ)
        except ConfigError:
            return  # load() says so, in one line
        parent = getattr(self, "parent", None)
        if parent is not None and (log_format != LogFormat.TEXT or level != LogLevel.INFO):
            parent["logger"] = factory_name(log_format.value, level.value)

    def cli_values(self) -> dict[str, str | None]:
        """The value of every setting given on the command line (None: not given)."""
        return {s.key: self[s.option] for s in SETTINGS}


# Larger than any file the agent reads (a CA bundle, the YAML files, a key): a larger one
# is refused without being read into memory.
MAX_FILE_BYTES = 4 * 1024 * 1024


def read_file(path: str) -> bytes:
    """The whole file (for the pure configuration loader), at most L{MAX_FILE_BYTES}."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise OSError(errno.EFBIG, f"larger than {MAX_FILE_BYTES} bytes", path)
    return data


def read_in_thread(reactor: Any) -> Any:
    """Reads a file in the reactor's thread pool, so that a slow disk never stalls it."""
    return lambda path: deferToThreadPool(reactor, reactor.getThreadPool(), read_file, path)


def load_config(options: Options, environ: MutableMapping[str, str]) -> AgentConfig:
    """Read the environment and files once; exit with one line on a user's mistake."""
    values = dict(environ)
    for name in SECRET_ENV:
        environ.pop(name, None)
    try:
        return load(options.cli_values(), values, read_file, os.getcwd())
    except ConfigError as e:
        raise SystemExit(f"mep-agent: configuration error: {e}") from None


def print_check(cfg: AgentConfig, out: IO[str]) -> None:
    """--check: the report on C{out}; then exit 0."""
    out.write(json.dumps(check.report(cfg), indent=2) + "\n")
    out.flush()
    raise SystemExit(0)


def seams(cfg: AgentConfig, reactor: Any) -> Seams:
    """The real ones: a new notification secret, files read off the reactor, the state dir."""
    state, earlier, problem = None, None, None
    if cfg.state_dir is None:
        problem = "not set (--state-dir): what the agent makes is remembered in memory only"
    else:
        found = statedir.look(cfg.state_dir, cfg.credentials.app_instance_id.reveal())
        earlier, problem = found.snapshot, found.problem
        if found.writable:
            state = statedir.StateFile(reactor, cfg.state_dir)
    if problem is not None:
        log.warn("state directory: {problem}", problem=problem, event="state.problem")
    return Seams(
        Secret(secrets.token_urlsafe(24)),
        read=read_in_thread(reactor),
        state=state,
        earlier=earlier,
        state_problem=problem if state is None else None,
    )


def freeze_heap(_: object = None) -> None:
    """
    Once start-up is over (every service registered), move everything alive (modules,
    configuration, TLS contexts, the services' state) out of the garbage collector's
    sight: a full collection then walks only what requests and timers allocate, so its
    pauses stop showing in /token's p99 under load (docs/benchmarks.md). Not sooner: the
    collection before it would delay the first token. Process-wide, hence at the root.
    """
    gc.collect()
    gc.freeze()


def makeService(
    options: Options,
    environ: MutableMapping[str, str] | None = None,
    out: IO[str] | None = None,
    reactor: Any = None,
) -> IService:
    """
    Load the configuration from C{environ}, then build the agent on C{reactor}. twistd
    gives only C{options}: then the process's environment, stdout and global reactor.
    """
    if reactor is None:
        from twisted.internet import reactor

    cfg = load_config(options, os.environ if environ is None else environ)
    if options["check"]:
        print_check(cfg, out or sys.stdout)
    exits = ProcessExit(reactor)
    agent = build(cfg, reactor, seams(cfg, reactor), exits.finish, set_code=exits.set_code)
    parent = getattr(options, "parent", None)
    if parent is not None and not parent["nodaemon"]:
        # twistd's daemon mode: bind before twistd forks, so that a busy port ends the
        # start-up here with one line (SystemExit) and no pid file; from the forked child
        # twistd would show it as a repr cut at 100 bytes. The ports are inherited.
        for listener in agent.listeners:
            listener.bind()
    exits.install(on_hangup=agent.core.reloader.check_now)
    agent.core.holdings.when_settled().addCallback(freeze_heap)
    log.info("mep-agent configured: {summary}", summary=cfg.summary(), event="agent.starting")
    return agent
