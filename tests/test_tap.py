"""Tests for mep_agent.tap: the twistd entry point's start-up behaviour."""

from __future__ import annotations

import io
import json
import os
from typing import Any, cast

from twisted.application.service import IServiceMaker
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from mep_agent import tap
from mep_agent.agent import AgentService
from mep_agent.logs import event_json
from mep_agent.oneshot import OneShot
from mep_agent.web.listeners import Listener
from mep_emulator import certs
from mep_emulator import tap as emulator_tap

from .helpers import SECRETS, data_text, seed_environ


class TapTestCase(SynchronousTestCase):
    """Runs makeService in a temporary conf dir, with its environment, output and reactor."""

    def setUp(self) -> None:
        self.dir = self.mktemp()
        os.makedirs(os.path.join(self.dir, "conf"))
        self.ca = os.path.join(self.dir, "ca.crt")
        with open(self.ca, "wb") as f:
            f.write(certs.generate().ca_pem)
        self.write("app_instance_info.yaml", data_text("seed_app_instance_info.yaml"))
        self.environ = seed_environ(
            CA_CERT=self.ca, MEP_AGENT_CONF_DIR=os.path.join(self.dir, "conf")
        )
        self.stdout = io.StringIO()
        self.reactor = MemoryReactorClock()
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def write(self, name: str, text: str) -> None:
        with open(os.path.join(self.dir, "conf", name), "w", encoding="utf-8") as f:
            f.write(text)

    def make(self, *argv: str) -> AgentService:
        options = tap.Options()
        options.parseOptions(list(argv))
        service = tap.makeService(options, self.environ, self.stdout, self.reactor)
        assert isinstance(service, AgentService)
        return service


class CheckModeTests(TapTestCase):
    def test_check_prints_bodies_and_exits_zero(self) -> None:
        """--check prints the registration bodies as JSON and exits 0."""
        self.write("app_instance_info.yaml", data_text("../../conf/app_instance_info.yaml"))
        error = self.assertRaises(SystemExit, self.make, "--check")
        self.assertEqual(error.code, 0)
        report = json.loads(self.stdout.getvalue())
        self.assertEqual(
            [r["body"]["serName"] for r in report["registrations"]], ["httpbin", "httpbin-status"]
        )
        self.assertEqual(report["registrations"][0]["method"], "POST")
        self.assertEqual(report["config"]["mep"], "https://mep-api-gw.mep:8443")
        self.assertEqual(len(report["subscriptions"]), 1)

    def test_check_warns_about_placeholder_callback(self) -> None:
        """The seed's placeholder callbackReference loads, with a warning."""
        self.assertRaises(SystemExit, self.make, "--check")
        report = json.loads(self.stdout.getvalue())
        self.assertEqual(report["subscriptions"], [])
        self.assertIn("is not a URI", report["warnings"][0])

    def test_check_uses_notify_url(self) -> None:
        """With --notify-url the subscription is printed with the agent's callback."""
        self.assertRaises(
            SystemExit,
            self.make,
            "--check",
            "--notify-url",
            "http://10.1.2.3:9090/mep-agent/v1/notifications",
        )
        report = json.loads(self.stdout.getvalue())
        self.assertEqual(report["warnings"], [])
        self.assertEqual(
            report["subscriptions"][0]["body"]["callbackReference"],
            "http://10.1.2.3:9090/mep-agent/v1/notifications/{secret}",
        )

    def test_check_paths_follow_the_api_root(self) -> None:
        """--check prints the paths under --api-root."""
        self.write("app_instance_info.yaml", data_text("../../conf/app_instance_info.yaml"))
        self.environ["MEP_AGENT_API_ROOT"] = "/sbx1/mep"
        self.assertRaises(SystemExit, self.make, "--check")
        report = json.loads(self.stdout.getvalue())
        self.assertTrue(
            report["registrations"][0]["path"].startswith("/sbx1/mep/mec_service_mgmt")
        )

    def test_check_output_has_no_secret(self) -> None:
        """Nothing --check prints contains a credential."""
        self.assertRaises(SystemExit, self.make, "--check")
        for secret in SECRETS:
            self.assertNotIn(secret, self.stdout.getvalue())


class StartupErrorTests(TapTestCase):
    def test_config_error_is_one_line_exit(self) -> None:
        """A configuration error exits non-zero with one line naming the setting."""
        self.environ["MEP_APIGW_PORT"] = "99999"
        error = self.assertRaises(SystemExit, self.make)
        self.assertIsInstance(error.code, str)
        self.assertEqual(error.code.count("\n"), 0)
        self.assertIn("MEP_APIGW_PORT", error.code)

    def test_yaml_path_in_error(self) -> None:
        """An invalid service names its YAML path."""
        self.write(
            "app_instance_info.yaml",
            "serviceInfoPosts:\n  - serName: ok\n"
            "    version: '1'\n    state: ACTIVE\n    serializer: JSON\n"
            "  - serName: 'bad name'\n",
        )
        error = self.assertRaises(SystemExit, self.make, "--check")
        self.assertIn("serviceInfoPosts[1].serName", error.code)

    def test_empty_services_file_one_line_exit(self) -> None:
        """A 0-byte app_instance_info.yaml stops start-up with one line naming the file."""
        self.write("app_instance_info.yaml", "")
        error = self.assertRaises(SystemExit, self.make)
        self.assert_no_services_line(error.code)

    def test_empty_services_file_fails_check(self) -> None:
        """--check refuses a 0-byte or keyless file: exit 1 with the same one line."""
        environ = dict(self.environ)
        for text in ("", "serAvailabilityNotificationSubscriptions: []\n"):
            self.environ = dict(environ)  # each start-up removes the secrets it read
            self.write("app_instance_info.yaml", text)
            error = self.assertRaises(SystemExit, self.make, "--check")
            self.assert_no_services_line(error.code)  # a message: twistd exits 1
            self.assertEqual(self.stdout.getvalue(), "")

    def assert_no_services_line(self, code: object) -> None:
        assert isinstance(code, str), code
        self.assertEqual(code.count("\n"), 0)
        path = os.path.join(self.dir, "conf", "app_instance_info.yaml")
        self.assertIn(f"configuration error: {path}: ", code)
        self.assertIn("to register no services write serviceInfoPosts: []", code)


class SecretHandlingTests(TapTestCase):
    def test_secrets_removed_from_environment(self) -> None:
        """AK, SK and APPINSTID are gone from the environment once read."""
        self.make()
        for name in ("AK", "SK", "APPINSTID"):
            self.assertNotIn(name, self.environ)

    def test_secrets_removed_even_on_error(self) -> None:
        """The secrets are removed even when the configuration is refused."""
        self.environ["MEP_IP"] = "bad host"
        self.assertRaises(SystemExit, self.make)
        self.assertNotIn("SK", self.environ)

    def test_builds_the_agent(self) -> None:
        """makeService composes the stages: token and cache, READY and the keepers, API."""
        agent = self.make()
        stages = [[s.name or type(s).__name__ for s in stage] for stage in agent]
        self.assertEqual(
            stages,
            [
                ["token", "discovery", "credentials"],
                ["ready", "holdings", "reload", "sync"],
                # parked blocking queries are answered 503 in the first stage to stop
                ["Listener", "parked-queries", "Listener"],
            ],
        )

    def test_one_shot_adds_exit_service(self) -> None:
        """ENABLE_WAIT=false adds the one-shot service and keeps registrations on stop."""
        self.environ["ENABLE_WAIT"] = '"false"'
        agent = self.make()
        stages = list(agent)
        self.assertIsInstance(list(stages[-1])[-1], OneShot)
        self.assertFalse(agent.core.holdings.close_deletes)

    def test_bad_listen_description(self) -> None:
        """An invalid --listen description exits with one line naming it."""
        error = self.assertRaises(SystemExit, self.make, "--listen", "bogus:1")
        self.assertIn("--listen: invalid endpoint description", error.code)

    def test_no_secret_in_startup_log(self) -> None:
        """The real start-up logs no credential."""
        self.make()
        self.assertTrue(self.events)
        from twisted.logger import formatEvent

        for event in self.events:
            text = formatEvent(event) + repr(event)
            for secret in SECRETS:
                self.assertNotIn(secret, text)


class StartupLineTests(TapTestCase):
    """The start-up line and --check show values as the user wrote them."""

    def starting_event(self) -> LogEvent:
        self.make("--heartbeat-method", "auto")
        [event] = [e for e in self.events if e.get("event") == "agent.starting"]
        return event

    def test_text_line_has_plain_values(self) -> None:
        """The text line says 'auth': 'aksk', not an enum's repr."""
        line = formatEvent(self.starting_event())
        self.assertIn("'auth': 'aksk'", line)
        self.assertIn("'heartbeat_method': 'auto'", line)
        self.assertNotIn("<", line)

    def test_json_line_has_plain_values(self) -> None:
        """The JSON line's message and summary field hold the same plain values."""
        record = json.loads(event_json(self.starting_event()))
        for text in (record["message"], record["summary"]):
            self.assertIn("'auth': 'aksk'", text)
            self.assertNotIn("<", text)

    def test_check_has_plain_values(self) -> None:
        """--check prints auth and heartbeat_method as their text."""
        self.environ["MEP_AGENT_HEARTBEAT_METHOD"] = "patch"
        self.assertRaises(SystemExit, self.make, "--check")
        config = json.loads(self.stdout.getvalue())["config"]
        self.assertEqual((config["auth"], config["heartbeat_method"]), ("aksk", "PATCH"))


class CompositionTests(TapTestCase):
    def test_plugins_found(self) -> None:
        """twistd finds both plugins through getPlugins(IServiceMaker)."""
        makers: dict[str, Any] = {maker.tapname: maker for maker in getPlugins(IServiceMaker)}
        self.assertEqual(makers["mep-agent"].module, "mep_agent.tap")
        self.assertEqual(makers["mep-emulator"].module, "mep_emulator.tap")

    def test_tree_starts_and_stops_on_memory_reactor(self) -> None:
        """The whole tree binds both listeners, asks for a token, and closes its pool."""
        agent = self.make("--listen", "tcp:18080:interface=127.0.0.1", "--ops-listen", "tcp:19090")
        agent.privilegedStartService()
        agent.startService()
        ports = sorted(port for port, *_ in self.reactor.tcpServers)
        self.assertEqual(ports, [18080, 19090])
        self.assertEqual([port for _, port, *_ in self.reactor.tcpClients], [8443])
        closed: list[bool] = []

        def close() -> Deferred[None]:
            closed.append(True)
            return succeed(None)

        assert agent.core.link.pool is not None
        self.patch(agent.core.link.pool, "closeCachedConnections", close)
        stopped = agent.stopService()
        self.successResultOf(stopped)
        self.assertFalse(agent.running)
        self.assertEqual(closed, [True])
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)  # token request ended
        listeners = [s for stage in agent for s in stage if isinstance(s, Listener)]
        self.assertEqual([listener.port for listener in listeners], [None, None])

    def test_listening_address_logged(self) -> None:
        """Each listener logs the address it bound (port 0 tells its real port)."""
        agent = self.make("--listen", "tcp:0:interface=127.0.0.1", "--ops-listen", "none")
        agent.privilegedStartService()
        self.addCleanup(agent.stopService)
        listening = [e for e in self.events if e.get("event") == "agent.listening"]
        self.assertEqual([e["setting"] for e in listening], ["--listen"])


class HeapFreezeTests(TapTestCase):
    def test_heap_frozen_once_settled(self) -> None:
        """What start-up allocated leaves the collector's sight once every service settled."""
        import gc

        self.addCleanup(gc.unfreeze)
        gc.unfreeze()
        service = self.make()
        self.reactor.run()  # MemoryReactor: runs the start-up hooks and returns
        self.assertEqual(gc.get_freeze_count(), 0)
        assert isinstance(service, AgentService)
        service.core.holdings.ctx.ready.confirmed = True
        for keeper in service.core.holdings.services.values():
            keeper.counts.created = 1
        service.core.holdings.changed()
        self.assertGreater(gc.get_freeze_count(), 0)


class UsageErrorTests(SynchronousTestCase):
    def test_unknown_option_is_one_line_with_a_close_match(self) -> None:
        """An unknown option ends with one line naming it, the closest option and --help."""
        error = self.assertRaises(SystemExit, tap.Options().parseOptions, ["--lisen", "x"])
        self.assertEqual(
            error.code,
            "mep-agent: unknown option --lisen (did you mean --listen?); "
            "see twistd mep-agent --help",
        )

    def test_unknown_option_without_a_close_match(self) -> None:
        """Without a close match the line still names the option and points to --help."""
        error = self.assertRaises(SystemExit, tap.Options().parseOptions, ["--zzzz"])
        self.assertEqual(
            error.code, "mep-agent: unknown option --zzzz; see twistd mep-agent --help"
        )

    def test_other_usage_errors_are_one_line(self) -> None:
        """A missing argument is one line too, never the whole --help."""
        error = self.assertRaises(SystemExit, tap.Options().parseOptions, ["--listen"])
        self.assertEqual(
            error.code,
            "mep-agent: option --listen requires argument; see twistd mep-agent --help",
        )

    def test_emulator_usage_error_names_the_emulator(self) -> None:
        """The emulator's options answer a mistake the same way, under its own name."""
        error = self.assertRaises(SystemExit, emulator_tap.Options().parseOptions, ["--prot", "1"])
        self.assertIn(
            "mep-emulator: unknown option --prot (did you mean --port?)", str(error.code)
        )
