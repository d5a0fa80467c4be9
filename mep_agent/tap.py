"""
The composition root: twistd's Options and makeService for C{twistd mep-agent}.

This is the only module that reads os.environ, the file system at start-up and the
global reactor; everything below it receives what it needs as arguments.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, cast

from twisted.application.service import IService, MultiService
from twisted.logger import Logger
from twisted.python import usage

from . import config as config_module
from .errors import ConfigError
from .settings import SETTINGS

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
    warnings = [
        f"serAvailabilityNotificationSubscriptions[{sub.index}].callbackReference: "
        f"{sub.callback_reference[:60]!r} is not a URI; this subscription will not be sent"
        for sub in cfg.app.subscriptions
        if not sub.callback_is_uri
    ]
    return {
        "config": cfg.summary(),
        "registrations": [
            {"method": "POST", "path": services_path, "body": service.body}
            for service in cfg.app.services
        ],
        "subscriptions": [
            {"method": "POST", "path": subscriptions_path, "body": sub.body}
            for sub in cfg.app.subscriptions
            if sub.callback_is_uri
        ],
        "warnings": warnings,
    }


def makeService(options: Options) -> IService:  # noqa: N802 (twistd's name)
    cfg = load_config(options)
    if options["check"]:
        sys.stdout.write(json.dumps(check_report(cfg), indent=2) + "\n")
        sys.stdout.flush()
        raise SystemExit(0)
    agent = MultiService()
    log.info("mep-agent configured: {summary}", summary=cfg.summary())
    return cast(IService, agent)
