"""
C{twistd mep-emulator}: serves the emulated MEP over HTTPS on 127.0.0.1 with a CA and
server certificate it generates (or reuses) in --cert-dir, optionally plain HTTP too, and
prints the environment an agent needs to talk to it.
"""

from __future__ import annotations

import os
import re
import sys
from typing import cast

import treq
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService, MultiService
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.python import usage
from twisted.web.server import Site

from . import certs
from .app import MepEmulator
from .auth import App
from .notifier import Notifier
from .registry import Registry
from .rules import UUID

AUTH_HEADER_AK = re.compile(r"[A-Za-z0-9_=+/]{20}")

# Development credentials (the README's sample keys): the emulator is never a real MEP.
DEV_AK = "QVUJMSUMgS0VZLS0tLS0"
DEV_SK = "DXPb4sqElKhcHe07Kw5uorayETwId1JOjjOIRomRs5wyszoCR5R7AtVa28KT3lSc"
DEV_APP_ID = "891c2bba-f1f2-40bd-a97e-9bebbafcc964"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "A faithful EdgeGallery MEP (mepauth token, Kong token checks, mepserver Mp1) "
        "for development and tests, with fault injection under /_emulator. "
        "Listens on 127.0.0.1 only."
    )
    optFlags = [
        ["accept-patch", None, "Accept PATCH on liveness links (ETSI) besides PUT."],
    ]
    optParameters = [
        ["port", None, 8443, "HTTPS port on 127.0.0.1 (0: none).", int],
        ["http-port", None, 0, "Plain HTTP port on 127.0.0.1 (0: none).", int],
        [
            "cert-dir",
            None,
            "./.mep-emulator",
            "Directory for ca.crt, server.crt, server.key and agent.env; existing "
            "certificates are reused.",
        ],
        ["server-name", None, "edgegallery", "Name in the server certificate."],
        ["ak", None, DEV_AK, "Access key of the app."],
        ["sk", None, DEV_SK, "Secret key of the app."],
        ["app-instance-id", None, DEV_APP_ID, "App instance id bound to the AK."],
        ["token-lifetime", None, 3600, "expires_in of issued tokens (seconds).", int],
        [
            "liveness-interval",
            None,
            60,
            "livenessInterval imposed on services that ask for heartbeats (0: keep the "
            "requested one).",
            int,
        ],
    ]


def validate(options: Options) -> None:
    """One-line exits for options the emulator cannot work with."""
    problems = []
    if not AUTH_HEADER_AK.fullmatch(options["ak"]):
        problems.append("--ak: must be 20 characters of A-Z a-z 0-9 _ + / =")
    if not options["sk"]:
        problems.append("--sk: must not be empty")
    if not UUID.match(options["app-instance-id"]):
        problems.append("--app-instance-id: must be a lower-case UUID")
    for name in ("port", "http-port"):
        if not 0 <= options[name] <= 65535:
            problems.append(f"--{name}: must be a port number (0 for none)")
    for name in ("token-lifetime", "liveness-interval"):
        if options[name] < (1 if name == "token-lifetime" else 0):
            problems.append(f"--{name}: must be a positive number of seconds")
    if options["port"] == 0 and options["http-port"] == 0:
        problems.append("--port and --http-port are both 0; nothing to serve")
    if problems:
        raise SystemExit(f"mep-emulator: {problems[0]}")


def _certificates(directory: str, server_name: str) -> certs.ServerCertificates:
    names = ("ca.crt", "server.crt", "server.key")
    paths = [os.path.join(directory, n) for n in names]
    if all(os.path.exists(p) for p in paths):
        data = []
        for p in paths:
            with open(p, "rb") as f:
                data.append(f.read())
        return certs.ServerCertificates(*data)
    generated = certs.generate([server_name])
    certs.write(generated, directory)
    return generated


def agent_environment(options: Options, ca_path: str) -> dict[str, str]:
    https = options["port"] != 0
    env = {
        "MEP_IP": "127.0.0.1",
        "MEP_APIGW_PORT": str(options["port"] if https else options["http-port"]),
        "AK": options["ak"],
        "SK": options["sk"],
        "APPINSTID": options["app-instance-id"],
    }
    if https:
        env.update(CA_CERT=ca_path, CA_CERT_DOMAIN_NAME=options["server-name"])
    else:
        env["EG_PROTOCOL"] = "http"
    return env


def makeService(options: Options) -> IService:  # noqa: N802 (twistd's name)
    from twisted.internet import reactor

    validate(options)
    directory = os.path.abspath(options["cert-dir"])
    server_certs = _certificates(directory, options["server-name"])
    notifier = Notifier(treq, reactor)
    interval = options["liveness-interval"] or None
    registry = Registry(reactor, notifier, interval)
    app = App(options["ak"], options["sk"], options["app-instance-id"])
    emulator = MepEmulator(
        reactor,
        registry,
        {app.access_key: app},
        token_lifetime=options["token-lifetime"],
        accept_patch=options["accept-patch"],
        notifications=notifier.delivered,
    )
    site = Site(emulator.resource())

    top = MultiService()
    TimerService(1.0, registry.check_liveness).setServiceParent(top)
    endpoint: SSL4ServerEndpoint | TCP4ServerEndpoint
    if options["port"]:
        endpoint = SSL4ServerEndpoint(
            reactor, options["port"], certs.server_options(server_certs), interface="127.0.0.1"
        )
        StreamServerEndpointService(endpoint, site).setServiceParent(top)
    if options["http-port"]:
        endpoint = TCP4ServerEndpoint(reactor, options["http-port"], interface="127.0.0.1")
        StreamServerEndpointService(endpoint, site).setServiceParent(top)

    env = agent_environment(options, os.path.join(directory, "ca.crt"))
    env_path = os.path.join(directory, "agent.env")
    with open(env_path, "w", encoding="utf-8") as f:
        f.writelines(f"export {k}={v}\n" for k, v in env.items())
    sys.stdout.write(
        f"mep-emulator: certificates in {directory}\n"
        f"mep-emulator: point an agent at it with (also in {env_path}):\n"
    )
    sys.stdout.writelines(f"export {k}={v}\n" for k, v in env.items())
    sys.stdout.flush()
    return cast(IService, top)
