"""
Integration tests: the real `twistd mep-agent` against the real `twistd mep-emulator`,
over TLS on 127.0.0.1, as separate processes.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any

import yaml
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.internet.task import deferLater
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from mep_emulator import certs

from .helpers import AK, SK
from .processes import CHECKOUT, TWISTD, TwistdProcess, eventually, get_json, post_json

SERVICES = {
    "serviceInfoPosts": [
        {
            "serName": name,
            "version": "1.0",
            "state": "ACTIVE",
            "serializer": "JSON",
            "livenessInterval": 2,
            "transportInfo": {
                "type": "REST_HTTP",
                "protocol": "HTTP",
                "endpoint": {"uris": [f"http://{name}.local:80/"]},
            },
        }
        for name in ("alpha", "beta", "gamma")
    ]
}


reactor: Any = _reactor  # typed as its smallest interface; its TCP side is used here


class EmulatorProcesses(TestCase):
    """Helpers: the emulator and the agent as real twistd processes, ended by PID."""

    timeout = 90

    def setUp(self) -> None:
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.dir, "conf"))
        with open(os.path.join(self.dir, "conf", "app_instance_info.yaml"), "w") as f:
            yaml.safe_dump(SERVICES, f)
        self.processes: list[TwistdProcess] = []

    async def start_emulator(self, *extra: str) -> TwistdProcess:
        """The emulator on ports the system picks; they are read from what it prints."""
        emulator = self.spawn(
            "mep-emulator",
            [
                "--port",
                "auto",
                "--http-port",
                "auto",
                "--cert-dir",
                os.path.join(self.dir, "mep"),
                "--liveness-interval",
                "2",
                *extra,
            ],
            {},
        )
        self.https = await served_port(emulator, b"https")
        self.http = await served_port(emulator, b"http")
        self.control = f"http://127.0.0.1:{self.http}/_emulator"
        return emulator

    async def start_agent(self, **env: str) -> TwistdProcess:
        """The agent with both listeners on ports the system picks (read from its log)."""
        agent = self.spawn("mep-agent", [], self.agent_env(**env))
        self.api = await agent.port(b"--listen")
        self.ops = await agent.port(b"--ops-listen")
        return agent

    def agent_env(self, **extra: str) -> dict[str, str]:
        env = {
            "MEP_IP": '"127.0.0.1"',
            "MEP_APIGW_PORT": f'"{getattr(self, "https", 8443)}"',
            "CA_CERT": os.path.join(self.dir, "mep", "ca.crt"),
            "CA_CERT_DOMAIN_NAME": '"edgegallery"',
            "AK": AK,
            "SK": SK,
            "APPINSTID": "891c2bba-f1f2-40bd-a97e-9bebbafcc964",
            "ENABLE_WAIT": '"true"',
            "MEP_AGENT_LISTEN": "tcp:0:interface=127.0.0.1",
            "MEP_AGENT_OPS_LISTEN": "tcp:0:interface=127.0.0.1",
        }
        env.update(extra)
        return env

    def spawn(self, plugin: str, args: list[str], env: dict[str, str]) -> TwistdProcess:
        process = TwistdProcess(plugin, args, env, self.dir)
        self.processes.append(process)
        self.addCleanup(process.stop)
        return process

    async def state(self) -> dict[str, Any]:
        code, body = await get_json(f"{self.control}/state")
        return body if code == 200 else {}

    async def check_termination(self, action: str) -> None:
        """
        The platform terminates the app: ready turns 503, the services go, the
        application is told (forwarded and readable), the MEP receives the confirmation
        within maxGracefulTimeout, nothing comes back, and a SIGTERM deletes nothing more.
        """
        told: list[bytes] = []
        application = reactor.listenTCP(0, Site(_Recorder(told)), interface="127.0.0.1")
        self.addCleanup(application.stopListening)
        ops = _free_port()
        await self.start_emulator()
        agent = await self.start_agent(
            MEP_AGENT_OPS_LISTEN=f"tcp:{ops}:interface=127.0.0.1",
            MEP_AGENT_NOTIFY_URL=f"http://127.0.0.1:{ops}/mep-agent/v1/notifications",
            MEP_AGENT_APP_NOTIFY_URL=f"http://127.0.0.1:{application.getHost().port}/notify",
        )

        async def subscribed() -> bool:
            state = await self.state()
            kinds = {s["subscriptionType"] for s in state["subscriptions"]}
            return (
                len(state["services"]) == 3 and "AppTerminationNotificationSubscription" in kinds
            )

        await eventually(subscribed)
        app_id = self.agent_env()["APPINSTID"]
        self.assertEqual(
            await post_json(
                f"{self.control}/terminate/{app_id}",
                {"operationAction": action, "maxGracefulTimeout": 5},
            ),
            200,
        )

        async def confirmed() -> dict[str, Any] | None:
            state = await self.state()
            (termination,) = state["terminations"]
            return termination if termination["confirmed"] else None

        termination = await eventually(confirmed, timeout=10)
        self.assertLessEqual(termination["confirmedAt"], termination["deadline"])
        self.assertEqual(termination["confirmedAction"], action)
        code, ready = await get_json(f"http://127.0.0.1:{ops}/readyz")
        self.assertEqual((code, ready["reason"]), (503, "terminating"))

        async def cleaned() -> dict[str, Any] | None:
            # EdgeGallery's request deletes the services one after the other (0.13 s each)
            state = await self.state()
            return state if (state["services"], state["subscriptions"]) == ([], []) else None

        state = await eventually(cleaned, timeout=5)
        code, view = await get_json(f"http://127.0.0.1:{self.api}/mep-agent/v1/termination")
        self.assertEqual(
            (code, view["operationAction"], view["phase"]), (200, action, "confirmed")
        )

        def notices() -> list[dict[str, Any]]:
            bodies = [json.loads(body) for body in told]
            return [b for b in bodies if b["notificationType"] == "AppTerminationNotification"]

        await eventually(lambda: succeed(notices()))
        self.assertEqual(notices()[0]["operationAction"], action)
        requests = len(state["requests"])
        await deferLater(reactor, 3, lambda: None)  # heartbeats were due every 2 s
        later = (await self.state())["requests"][requests:]
        self.assertEqual([r["kind"] for r in later if r["kind"] != "unsubscribe"], [])
        self.assertEqual(await agent.stop(), 0)
        after_stop = (await self.state())["requests"]
        self.assertEqual(
            [r["kind"] for r in after_stop[requests:] if r["kind"] in ("deregister", "register")],
            [],
        )
        self.assertNotIn("Traceback", agent.output.decode("utf-8", "replace"))

    async def services(self) -> dict[str, dict[str, Any]]:
        return {s["serName"]: s for s in (await self.state())["services"]}


class AgentAgainstEmulator(EmulatorProcesses):
    """The default (EdgeGallery) dialect end to end."""

    async def test_lifecycle(self) -> None:
        """Registered, every service beats, a MEP restart is repaired, SIGTERM deregisters."""
        await self.start_emulator()
        agent = await self.start_agent()

        async def all_beating() -> bool:
            services = await self.services()
            return len(services) == 3 and all(
                s["heartbeats"] >= 2 and s["state"] == "ACTIVE" for s in services.values()
            )

        await eventually(all_beating)
        code, ready = await get_json(f"http://127.0.0.1:{self.ops}/readyz")
        self.assertEqual((code, ready), (200, {"status": "ready"}))
        connections = (await self.state())["connections"]
        self.assertGreaterEqual(connections.get("https", 0), 1, "the agent's TLS connections")
        self.assertGreaterEqual(connections.get("http", 0), 1, "this test's control requests")

        code, token = await get_json(f"http://127.0.0.1:{self.api}/mep-agent/v1/token")
        self.assertEqual(code, 200)
        self.assertGreater(token["expires_in"], 3500)
        code, endpoint = await get_json(f"http://127.0.0.1:{self.api}/mep-agent/v1/endpoint/beta")
        (route,) = (await self.services())["beta"]["gatewayRoutes"].values()
        gateway = {"uris": [f"https://mep-api-gw.mep:8443/{route}"]}
        self.assertEqual((code, endpoint), (200, dict(gateway, addresses=None, alternative=None)))
        code, _ = await get_json(f"http://127.0.0.1:{self.api}/mep-agent/v1/endpoint/nothere")
        self.assertEqual(code, 404)
        response_code, _ = await get_json(f"http://127.0.0.1:{self.ops}/mep-agent/v1/status")
        self.assertEqual(response_code, 200)

        before = {s["serInstanceId"] for s in (await self.services()).values()}
        self.assertEqual(await post_json(f"{self.control}/restart"), 204)

        async def repaired() -> bool:
            services = await self.services()
            ids = {s["serInstanceId"] for s in services.values()}
            return (
                len(services) == 3
                and not ids & before
                and all(s["heartbeats"] >= 1 for s in services.values())
            )

        await eventually(repaired)
        self.assertEqual(len((await self.state())["services"]), 3, "no duplicates")

        self.assertEqual(await agent.stop(), 0)
        self.assertEqual((await self.state())["services"], [])
        output = agent.output.decode("utf-8", "replace")
        self.assertIn("re-registered", output)
        self.assertIn("deregistered", output)
        self.assertNotIn('"GET /mep-agent/v1/token', output, "no access log by default")
        for secret in (AK, SK, self.agent_env()["APPINSTID"]):
            self.assertNotIn(secret, output)
        self.assertNotIn("Traceback", output)
        self.assertIn("signal 15; stopping", output)
        self.assertNotIn("#error]", output, "a normal stop is not an error")

    async def test_termination(self) -> None:
        """A termination over TLS (EdgeGallery): not ready, services gone, confirmed in time."""
        await self.check_termination("TERMINATING")

    async def test_sighup_reloads(self) -> None:
        """SIGHUP applies a changed app_instance_info.yaml: delta only, no restart (#11)."""
        await self.start_emulator()
        agent = await self.start_agent(MEP_AGENT_RELOAD_INTERVAL="0")
        await eventually(lambda: self._all_registered())
        before = {s["serName"]: s["serInstanceId"] for s in (await self.services()).values()}
        changed = {
            "serviceInfoPosts": SERVICES["serviceInfoPosts"][:2]
            + [dict(SERVICES["serviceInfoPosts"][0], serName="delta")]
        }
        with open(os.path.join(self.dir, "conf", "app_instance_info.yaml"), "w") as f:
            yaml.safe_dump(changed, f)
        agent.signal("HUP")

        async def applied() -> bool:
            return set(await self.services()) == {"alpha", "beta", "delta"}

        await eventually(applied)
        after = {s["serName"]: s["serInstanceId"] for s in (await self.services()).values()}
        self.assertEqual(after["alpha"], before["alpha"])  # untouched
        self.assertIn("reloaded", agent.output.decode())
        self.assertEqual(await agent.stop(), 0)

    async def test_second_signal_exits_at_once(self) -> None:
        """A second SIGTERM while deregistration hangs ends the process at once."""
        await self.start_emulator()
        agent = await self.start_agent(MEP_AGENT_SHUTDOWN_TIMEOUT="60")
        await agent.wait_for(b"confirmed READY")
        fault = {"kind": "deregister", "delay": 50, "count": 10}
        self.assertEqual(await post_json(f"{self.control}/faults", fault), 201)
        agent.signal("TERM")
        await eventually(lambda: self._deregistering())
        agent.signal("TERM")
        code = await eventually(lambda: _ended(agent), timeout=5)
        self.assertEqual(code, 128 + 15)
        self.assertIn("exiting now", agent.output.decode())

    async def test_sigterm_while_registering_leaves_nothing(self) -> None:
        """SIGTERM while the POSTs are in flight: they are awaited, then deleted (#18)."""
        await self.start_emulator()
        fault = {"kind": "register", "delay": 1.5, "count": 3}
        self.assertEqual(await post_json(f"{self.control}/faults", fault), 201)
        agent = await self.start_agent()

        async def posts_arrived() -> bool:
            return (
                any(f["remaining"] == 0 for f in (await self.state())["faults"])
                or not (await self.state())["faults"]
            )

        await eventually(posts_arrived)
        agent.signal("TERM")
        self.assertEqual(await agent.exited(), 0)
        state = await self.state()
        self.assertEqual((state["services"], state["subscriptions"]), ([], []))
        kinds = [r["kind"] for r in state["requests"]]
        self.assertEqual(kinds.count("register"), 3)
        self.assertEqual(kinds.count("deregister"), 3)

    async def test_sigkill_five_times_leaves_one_instance_each(self) -> None:
        """kill -9 five times, then a run that stays: one instance each, no orphan (#18)."""
        ops = _free_port()
        route = f"http://127.0.0.1:{ops}/mep-agent/v1/notifications"
        env = {
            "MEP_AGENT_OPS_LISTEN": f"tcp:{ops}:interface=127.0.0.1",
            "MEP_AGENT_NOTIFY_URL": route,
            "MEP_AGENT_SYNC_INTERVAL": "2",
        }
        await self.start_emulator()  # liveness every 2 s: a dead run's instances suspend
        for _ in range(5):
            agent = await self.start_agent(**env)
            await agent.wait_for(rb"(?s)(registered as .*){3}")
            await agent.wait_for(rb"subscription termination created")
            agent.signal("KILL")
            await agent.exited()
        left = await self.state()
        self.assertGreaterEqual(len(left["services"]), 15, "what five dead runs left")
        agent = await self.start_agent(**env)

        async def whole() -> bool:
            state = await self.state()
            names = sorted(s["serName"] for s in state["services"])
            callbacks = [s["callbackReference"] for s in state["subscriptions"]]
            return names == ["alpha", "beta", "gamma"] and len(callbacks) == 1

        await eventually(whole, timeout=30)
        self.assertEqual(await agent.stop(), 0)
        state = await self.state()
        self.assertEqual((state["services"], state["subscriptions"]), ([], []))

    async def test_five_kills_with_a_state_directory_adopt(self) -> None:
        """
        The container killed five times and restarted with its state directory: each life
        adopts what the last one made, so the MEP never holds more than one of each.
        """
        ops = _free_port()
        env = {
            "MEP_AGENT_OPS_LISTEN": f"tcp:{ops}:interface=127.0.0.1",
            "MEP_AGENT_NOTIFY_URL": f"http://127.0.0.1:{ops}/mep-agent/v1/notifications",
            "MEP_AGENT_STATE_DIR": os.path.join(self.dir, "state"),
        }
        os.makedirs(env["MEP_AGENT_STATE_DIR"])
        await self.start_emulator()
        first: set[str] = set()
        for life in range(6):
            agent = await self.start_agent(**env)
            await agent.wait_for(rb"subscription termination created")
            if life == 0:
                await agent.wait_for(rb"(?s)(registered as .*){3}")
                first = {s["serInstanceId"] for s in (await self.state())["services"]}
            else:
                await agent.wait_for(rb"(?s)(adopted .*){3}")
            state = await self.state()
            self.assertEqual({s["serInstanceId"] for s in state["services"]}, first)
            self.assertEqual(len(state["subscriptions"]), 1, state["subscriptions"])
            if life < 5:
                agent.signal("KILL")
                await agent.exited()
        self.assertEqual(await agent.stop(), 0)
        state = await self.state()
        self.assertEqual((state["services"], state["subscriptions"]), ([], []))

    async def test_sigterm_while_starting_exits_zero(self) -> None:
        """
        SIGTERM the moment the configuration is read (before the reactor runs): exit 0 at
        once, and nothing is left at the MEP.
        """
        await self.start_emulator()
        agent = self.spawn("mep-agent-command", [], self.agent_env())
        await agent.wait_for(rb"mep-agent configured")
        agent.signal("TERM")
        self.assertEqual(await agent.exited(), 0)
        state = await self.state()
        self.assertEqual((state["services"], state["subscriptions"]), ([], []))

    async def _all_registered(self) -> bool:
        return len(await self.services()) == 3

    async def _deregistering(self) -> bool:
        # A delayed DELETE takes its fault when it arrives, long before it is answered.
        return any(f["remaining"] < 10 for f in (await self.state())["faults"])

    async def test_one_shot(self) -> None:
        """ENABLE_WAIT=false registers, exits 0, and leaves the services registered."""
        await self.start_emulator()
        agent = self.spawn("mep-agent", [], self.agent_env(ENABLE_WAIT='"false"'))
        self.assertEqual(await agent.exited(), 0)
        self.assertEqual(len((await self.state())["services"]), 3)
        self.assertIn(self.agent_env()["APPINSTID"], (await self.state())["ready"])

    async def test_one_shot_failure(self) -> None:
        """ENABLE_WAIT=false exits non-zero when registration cannot finish in time."""
        ca = os.path.join(self.dir, "ca.crt")
        with open(ca, "wb") as f:
            f.write(certs.generate().ca_pem)
        silent = reactor.listenTCP(0, ServerFactory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(silent.stopListening)
        silent_port = silent.getHost().port
        agent = self.spawn(
            "mep-agent",
            [],
            self.agent_env(
                ENABLE_WAIT="false",
                MEP_AGENT_ONESHOT_TIMEOUT="2",
                MEP_AGENT_REQUEST_TIMEOUT="1",
                MEP_APIGW_PORT=str(silent_port),
                CA_CERT=ca,
            ),
        )  # a port that accepts connections and never answers
        self.assertEqual(await agent.exited(), 1)
        self.assertIn(
            "one-shot: not registered within 2s (last error: token: ", agent.output.decode()
        )

    async def test_one_shot_signal_is_a_failure(self) -> None:
        """ENABLE_WAIT=false stopped by a signal before success exits non-zero (#11.7)."""
        await self.start_emulator()
        fault = {"kind": "register", "status": 503, "count": 1000}
        self.assertEqual(await post_json(f"{self.control}/faults", fault), 201)
        agent = self.spawn("mep-agent", [], self.agent_env(ENABLE_WAIT='"false"'))
        await agent.wait_for(rb"service \w+: create failed")
        self.assertEqual(await agent.stop(), 1)
        self.assertIn("one-shot: stopped before everything was registered", agent.output.decode())

    async def test_json_log_lines(self) -> None:
        """With MEP_AGENT_LOG_FORMAT=json every output line is one JSON object (#11.8)."""
        await self.start_emulator()
        agent = self.spawn("mep-agent", [], self.agent_env(MEP_AGENT_LOG_FORMAT="json"))
        await agent.wait_for(rb'(?s)("event": "service.registered".*){3}')
        self.assertEqual(await agent.stop(), 0)
        lines = agent.output.decode().splitlines()
        records = [json.loads(line) for line in lines if line.strip()]
        self.assertTrue(records)
        for record in records:
            self.assertEqual(set(record) >= {"time", "level", "event", "message"}, True)
            self.assertIsInstance(record["level"], str)
        stopping = [r for r in records if r["event"] == "agent.stopping"]
        self.assertEqual([r["level"] for r in stopping], ["info"], "a normal stop is info")
        registered = [r for r in records if r["event"] == "service.registered"]
        self.assertEqual(len(registered), 3)
        self.assertEqual(registered[0]["level"], "info")
        self.assertIn("ser_name", registered[0])

    async def test_daemon_mode_port_error(self) -> None:
        """Without -n, a busy port exits non-zero with its reason, leaving no pid file (#11.2)."""
        await self.start_emulator()
        pidfile = os.path.join(self.dir, "agent.pid")
        env = dict(
            self.agent_env(MEP_AGENT_LISTEN=f"tcp:{self.http}:interface=127.0.0.1"),
            PYTHONPATH=CHECKOUT,
        )
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
        argv = [
            sys.executable,
            TWISTD,
            f"--pidfile={pidfile}",
            f"--logfile={os.path.join(self.dir, 'agent.log')}",
            "mep-agent",
        ]
        done: Deferred[tuple[bytes, bytes, int]] = getProcessOutputAndValue(
            sys.executable, argv[1:], env=dict(base, **env), path=self.dir
        )
        done.addTimeout(30, reactor)
        out, err, code = await done
        self.assertNotEqual(code, 0)
        lines = (out + err).decode().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(
            lines[0],
            r"^mep-agent: --listen: cannot listen on tcp:\d+:interface=127\.0\.0\.1: "
            r"Address already in use$",
        )
        self.assertFalse(os.path.exists(pidfile))

    async def test_wrong_ca_refused(self) -> None:
        """An emulator certificate from another CA is refused: no token, not ready."""
        await self.start_emulator()
        other = os.path.join(self.dir, "other")
        second = self.spawn("mep-emulator", ["--port", "auto", "--cert-dir", other], {})
        await served_port(second, b"https")
        agent = await self.start_agent(CA_CERT=os.path.join(other, "ca.crt"))

        async def refused() -> bool:
            code, body = await get_json(f"http://127.0.0.1:{self.ops}/readyz?verbose")
            return code == 503 and "does not chain to a CA in CA_CERT" in agent.output.decode()

        await eventually(refused)
        self.assertEqual((await self.state())["tokens_issued"], 0)
        # One line that says what to check: the setting, the names and the issuer (#11.4),
        # once however often the token request is retried.
        output = agent.output.decode()
        line = next(x for x in output.splitlines() if "does not chain" in x)
        self.assertIn("it names edgegallery; issued by CN=mep-emulator CA", line)
        self.assertIn(os.path.join(self.dir, "other", "ca.crt"), line)
        self.assertEqual(output.count("does not chain"), 1)

    async def test_configuration_error_one_line(self) -> None:
        """A configuration mistake exits 1 with one line and no traceback."""
        agent = self.spawn("mep-agent", [], self.agent_env(MEP_APIGW_PORT="99999"))
        self.assertEqual(await agent.exited(), 1)
        lines = [line for line in agent.output.decode().splitlines() if line.strip()]
        self.assertEqual(
            lines,
            [
                "mep-agent: configuration error: MEP_APIGW_PORT: '99999' "
                "must be a port number from 1 to 65535"
            ],
        )

    async def test_emulator_busy_port_one_line(self) -> None:
        """The emulator on a busy port: one line, exit 1, no agent.env written (#11.3)."""
        busy = reactor.listenTCP(0, ServerFactory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(busy.stopListening)
        cert_dir = os.path.join(self.dir, "busy")
        emulator = self.spawn(
            "mep-emulator", ["--port", str(busy.getHost().port), "--cert-dir", cert_dir], {}
        )
        self.assertEqual(await emulator.exited(), 1)
        output = emulator.output.decode()
        errors = [x for x in output.splitlines() if "cannot listen" in x]
        self.assertEqual(len(errors), 1, output)  # one line, after twistd's own start lines
        self.assertIn("mep-emulator: --port: cannot listen on", errors[0])
        self.assertNotIn("Traceback", output)
        self.assertFalse(os.path.exists(os.path.join(cert_dir, "agent.env")))

    async def test_busy_port_one_line(self) -> None:
        """A listener port already in use exits 1 naming the setting, no traceback."""
        await self.start_emulator()
        env = self.agent_env(MEP_AGENT_LISTEN=f"tcp:{self.http}:interface=127.0.0.1")
        agent = self.spawn("mep-agent", [], env)
        self.assertNotEqual(await agent.exited(), 0)
        output = agent.output.decode()
        self.assertIn("--listen: cannot listen on", output)
        self.assertNotIn("Traceback", output)


async def _ended(process: TwistdProcess) -> int | None:
    return process.exit_code if not process.running else None


async def served_port(emulator: TwistdProcess, scheme: bytes) -> int:
    """The port the emulator serves C{scheme} on, from its start-up lines."""
    match = await emulator.wait_for(rb"mep-emulator: serving " + scheme + rb"://127.0.0.1:(\d+)")
    return int(match.group(1))


ETSI_SERVICES = {
    "serviceInfoPosts": [
        {
            "serName": name,
            "version": "2.0",
            "state": "ACTIVE",
            "serializer": "JSON",
            "livenessInterval": 2,
            "transportInfo": {
                "id": f"t-{name}",
                "name": "REST",
                "type": "REST_HTTP",
                "protocol": "HTTP",
                "version": "1.1",
                "endpoint": {"uris": [f"http://{name}.local:80/"]},
                "security": {},
            },
        }
        for name in ("rnis.v2", "alpha", "beta")
    ],
    "serAvailabilityNotificationSubscriptions": [
        {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": "http://127.0.0.1:9/callback",
        }
    ],
}


class EtsiAgentAgainstEmulator(EmulatorProcesses):
    """The same processes with --dialect etsi on both sides (OAuth2, PATCH, absolute links)."""

    def setUp(self) -> None:
        super().setUp()
        with open(os.path.join(self.dir, "conf", "app_instance_info.yaml"), "w") as f:
            yaml.safe_dump(ETSI_SERVICES, f)

    async def start_emulator(self, *extra: str) -> TwistdProcess:
        return await super().start_emulator("--dialect", "etsi", "--api-root", "/sbx1/mep")

    def agent_env(self, **extra: str) -> dict[str, str]:
        env = super().agent_env()
        for name in ("AK", "SK"):
            del env[name]
        with open(os.path.join(self.dir, "mep", "agent.env")) as f:
            for line in f:
                key, _, value = line.removeprefix("export ").strip().partition("=")
                if key.startswith("MEP_AGENT_"):
                    env[key] = value
        env.update(extra)
        return env

    async def test_termination(self) -> None:
        """A termination over TLS (ETSI, STOPPING): absolute links, confirmed in time."""
        await self.check_termination("STOPPING")

    async def test_lifecycle(self) -> None:
        """OAuth2 token, PATCH beats, rnis.v2 discovered, SIGTERM deletes everything."""
        await self.start_emulator()
        agent = await self.start_agent()

        async def all_beating() -> bool:
            services = await self.services()
            return len(services) == 3 and all(s["heartbeats"] >= 2 for s in services.values())

        await eventually(all_beating)
        state = await self.state()
        self.assertEqual(len(state["subscriptions"]), 1)
        self.assertEqual(
            {r["method"] for r in state["requests"] if r["kind"] == "heartbeat"}, {"PATCH"}
        )
        code, endpoint = await get_json(
            f"http://127.0.0.1:{self.api}/mep-agent/v1/endpoint/rnis.v2"
        )
        self.assertEqual((code, endpoint), (200, {"uris": ["http://rnis.v2.local:80/"]}))
        self.assertEqual(await agent.stop(), 0)
        state = await self.state()
        self.assertEqual((state["services"], state["subscriptions"]), ([], []))
        output = agent.output.decode("utf-8", "replace")
        self.assertNotIn("dev-client-secret", output)
        self.assertNotIn("Traceback", output)


class _Recorder(Resource):
    """The application's notification endpoint: keeps every body POSTed to it."""

    isLeaf = True

    def __init__(self, bodies: list[bytes]) -> None:
        super().__init__()
        self.bodies = bodies

    def render_POST(self, request: Any) -> bytes:
        self.bodies.append(request.content.read())
        request.setResponseCode(204)
        return b""


def _free_port() -> int:
    """A port free on 127.0.0.1 now (the agent's notification URL must name it up front)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
