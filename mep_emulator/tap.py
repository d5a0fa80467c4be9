"""
C{twistd mep-emulator}: serves the emulated MEP over HTTPS on 127.0.0.1 with a CA and
server certificate it generates (or reuses) in --cert-dir, optionally plain HTTP too, and
prints the environment an agent needs to talk to it once its ports are bound.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from treq.client import HTTPClient
from twisted.application.internet import TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.web.client import Agent
from twisted.web.server import Site

from mep_agent.cli import OneLineOptions
from mep_agent.web.listeners import Listener
from mep_emulator import certs
from mep_emulator.app import MepEmulator
from mep_emulator.auth import App
from mep_emulator.dev import DEV_APP, DEV_CLIENT_ID, DEV_CLIENT_SECRET
from mep_emulator.etsi import EtsiMep, OAuth2Client
from mep_emulator.kong import MinuteLimit
from mep_emulator.notifier import Notifier
from mep_emulator.registry import Registry
from mep_emulator.rules import UUID

AUTH_HEADER_AK = re.compile(r"[A-Za-z0-9_=+/]{20}")


class Options(OneLineOptions):
    """C{twistd mep-emulator} options; mistakes in one line."""

    program = "mep-emulator"

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
        [
            "port",
            None,
            "8443",
            "HTTPS port on 127.0.0.1 (0: none; auto: one the system picks, printed at start).",
        ],
        ["http-port", None, "0", "Plain HTTP port on 127.0.0.1 (0: none; auto: as --port)."],
        [
            "cert-dir",
            None,
            "./.mep-emulator",
            "Directory for ca.crt, server.crt, server.key and agent.env; existing "
            "certificates are reused.",
        ],
        ["server-name", None, "edgegallery", "Name in the server certificate."],
        [
            "dialect",
            None,
            "edgegallery",
            "'edgegallery' (EdgeGallery's MEP) or 'etsi' (an ETSI MEC 011 v2.2.1 platform: "
            "OAuth2 token endpoint, confirm_ready first, absolute links, PATCH liveness).",
        ],
        ["api-root", None, "/mep", "With --dialect etsi: the path before mec_service_mgmt/v1."],
        [
            "public-url",
            None,
            None,
            "With --dialect etsi: build every link from this URL (a platform's public URL "
            "that differs from the address the agent dials; then set MEP_AGENT_MEP_PUBLIC_URL).",
        ],
        ["client-id", None, DEV_CLIENT_ID, "With --dialect etsi: the OAuth2 client id."],
        [
            "client-secret",
            None,
            DEV_CLIENT_SECRET,
            "With --dialect etsi: the OAuth2 client secret.",
        ],
        ["ak", None, DEV_APP.access_key, "Access key of the app."],
        ["sk", None, DEV_APP.secret_key, "Secret key of the app."],
        ["app-instance-id", None, DEV_APP.app_instance_id, "App instance id bound to the AK."],
        ["token-lifetime", None, 3600, "expires_in of issued tokens (seconds).", int],
        [
            "liveness-interval",
            None,
            60,
            "livenessInterval imposed on services that ask for heartbeats (0: keep the "
            "requested one).",
            int,
        ],
        [
            "rate-limit",
            None,
            0,
            "Mp1 requests per calendar minute, all apps together, as EdgeGallery's Kong "
            "limits them (it sets 1000); over it a 429 (0: no limit).",
            int,
        ],
        [
            "token-rate-limit",
            None,
            0,
            "Token requests per calendar minute per client address, as EdgeGallery's Kong "
            "limits them (it sets 100); over it a 429 (0: no limit).",
            int,
        ],
        [
            "retry-after",
            None,
            "kong",
            "'kong': 429s without Retry-After, as Kong with EdgeGallery's settings; "
            "'always': with it.",
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
        if port_option(options[name]) is None and options[name] != "0":
            problems.append(f"--{name}: must be a port number, 0 for none, or auto")
    for name in ("token-lifetime", "liveness-interval"):
        if options[name] < (1 if name == "token-lifetime" else 0):
            problems.append(f"--{name}: must be a positive number of seconds")
    for name in ("rate-limit", "token-rate-limit"):
        if options[name] < 0:
            problems.append(f"--{name}: must be a number of requests (0: no limit)")
    if options["retry-after"] not in ("kong", "always"):
        problems.append("--retry-after: must be kong or always")
    if options["dialect"] not in ("edgegallery", "etsi"):
        problems.append("--dialect: must be edgegallery or etsi")
    root = options["api-root"].rstrip("/")
    if root and (not root.startswith("/") or "//" in root or "?" in root):
        problems.append("--api-root: must be a path such as /mep (or empty)")
    if options["port"] == "0" and options["http-port"] == "0":
        problems.append("--port and --http-port are both 0; nothing to serve")
    if problems:
        raise SystemExit(f"mep-emulator: {problems[0]}")


def port_option(value: str) -> int | None:
    """The port to bind for an option value: a number, 0 for 'auto'; None for none/bad."""
    if value == "auto":
        return 0
    if value.isdigit() and 1 <= int(value) <= 65535:
        return int(value)
    return None


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


def agent_environment(
    options: Options, ca_path: str, https_port: int | None, http_port: int | None
) -> dict[str, str]:
    """What an agent needs to talk to this emulator (the bound ports)."""
    scheme = "https" if https_port else "http"
    env = {
        "MEP_IP": "127.0.0.1",
        "MEP_APIGW_PORT": str(https_port or http_port),
        "APPINSTID": options["app-instance-id"],
    }
    if options["dialect"] == "etsi":
        env.update(
            MEP_AGENT_DIALECT="etsi",
            MEP_AGENT_API_ROOT=options["api-root"].rstrip("/"),
            MEP_AGENT_AUTH="oauth2",
            MEP_AGENT_OAUTH2_TOKEN_URL=(
                f"{scheme}://127.0.0.1:{https_port or http_port}/oauth2/token"
            ),
            MEP_AGENT_OAUTH2_CLIENT_ID=options["client-id"],
            MEP_AGENT_OAUTH2_CLIENT_SECRET=options["client-secret"],
        )
    else:
        env.update(AK=options["ak"], SK=options["sk"])
    if https_port:
        env.update(CA_CERT=ca_path, CA_CERT_DOMAIN_NAME=options["server-name"])
    else:
        env["EG_PROTOCOL"] = "http"
    return env


class CountingSite(Site):
    """A Site that counts the connections it accepts (for /_emulator/state)."""

    def __init__(self, resource: Any, counts: dict[str, int], scheme: str) -> None:
        super().__init__(resource)
        self._counts = counts
        self._scheme = scheme

    def buildProtocol(self, addr: Any) -> Any:
        """One more connection."""
        self._counts[self._scheme] = self._counts.get(self._scheme, 0) + 1
        return super().buildProtocol(addr)


class Announcer(Service):
    """Writes agent.env and prints it, once the listeners before it have bound their ports."""

    def __init__(
        self, options: Options, directory: str, https: Listener | None, http: Listener | None
    ) -> None:
        self._options = options
        self._directory = directory
        self._https = https
        self._http = http

    def privilegedStartService(self) -> None:
        """Runs after the listeners bound (they come first in the parent)."""
        super().privilegedStartService()
        env = agent_environment(
            self._options,
            os.path.join(self._directory, "ca.crt"),
            _bound_port(self._https),
            _bound_port(self._http),
        )
        env_path = os.path.join(self._directory, "agent.env")
        with open(env_path, "w", encoding="utf-8") as f:
            f.writelines(f"export {k}={v}\n" for k, v in env.items())
        sys.stdout.write(
            f"mep-emulator: certificates in {self._directory}\n"
            f"mep-emulator: point an agent at it with (also in {env_path}):\n"
        )
        sys.stdout.writelines(f"export {k}={v}\n" for k, v in env.items())
        for scheme, listener in (("https", self._https), ("http", self._http)):
            port = _bound_port(listener)
            if port:
                sys.stdout.write(f"mep-emulator: serving {scheme}://127.0.0.1:{port}\n")
        sys.stdout.flush()


def _bound_port(listener: Listener | None) -> int | None:
    if listener is None or listener.port is None:
        return None
    return int(getattr(listener.port.getHost(), "port", 0)) or None


def makeService(options: Options, reactor: Any = None) -> IService:
    """The emulator's listeners, liveness sweep and agent.env announcement."""
    if reactor is None:
        from twisted.internet import reactor

    validate(options)
    directory = os.path.abspath(options["cert-dir"])
    server_certs = _certificates(directory, options["server-name"])
    notifier = Notifier(HTTPClient(Agent(reactor)), reactor)
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
        mp1_limit=MinuteLimit(options["rate-limit"]),
        token_limit=MinuteLimit(options["token-rate-limit"]),
        retry_after=options["retry-after"] == "always",
    )
    resource = emulator.resource()
    if options["dialect"] == "etsi":
        client = OAuth2Client(options["client-id"], options["client-secret"], app.app_instance_id)
        resource = EtsiMep(
            emulator,
            options["api-root"].rstrip("/"),
            {client.client_id: client},
            public_url=(options["public-url"] or "").rstrip("/") or None,
        ).resource()

    def site(scheme: str) -> Site:
        return CountingSite(resource, emulator.connections, scheme)

    top = MultiService()
    TimerService(1.0, registry.check_liveness).setServiceParent(top)
    https = http = None
    https_port = port_option(options["port"])
    if https_port is not None:
        tls = certs.server_options(server_certs)
        https = Listener(
            SSL4ServerEndpoint(reactor, https_port, tls, interface="127.0.0.1"),
            site("https"),
            "--port",
            f"127.0.0.1:{options['port']}",
            "mep-emulator",
        )
        https.setServiceParent(top)
    http_port = port_option(options["http-port"])
    if http_port is not None:
        http = Listener(
            TCP4ServerEndpoint(reactor, http_port, interface="127.0.0.1"),
            site("http"),
            "--http-port",
            f"127.0.0.1:{options['http-port']}",
            "mep-emulator",
        )
        http.setServiceParent(top)
    Announcer(options, directory, https, http).setServiceParent(top)
    return top
