"""Tests for mep_agent.tap: the twistd entry point's start-up behaviour."""

from __future__ import annotations

import io
import json
import os

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from mep_agent import tap
from mep_agent.emulator import certs

from .helpers import SECRETS, data_text, seed_environ


class TapTestCase(SynchronousTestCase):
    """Runs makeService in a temporary conf dir with a patched environment and stdout."""

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
        self.patch(tap.sys, "stdout", self.stdout)
        # makeService would add shutdown triggers to trial's own reactor.
        self.patch(tap, "_install_exit_hooks", lambda reactor, code: None)
        self.events: list[dict] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def write(self, name: str, text: str) -> None:
        with open(os.path.join(self.dir, "conf", name), "w", encoding="utf-8") as f:
            f.write(text)

    def make(self, *argv: str):
        saved = dict(os.environ)
        self.addCleanup(lambda: (os.environ.clear(), os.environ.update(saved)))
        os.environ.update(self.environ)
        options = tap.Options()
        options.parseOptions(list(argv))
        return tap.makeService(options)


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
            "http://10.1.2.3:9090/mep-agent/v1/notifications",
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


class SecretHandlingTests(TapTestCase):
    def test_secrets_removed_from_environment(self) -> None:
        """AK, SK and APPINSTID are gone from os.environ once read."""
        self.make()
        for name in ("AK", "SK", "APPINSTID"):
            self.assertNotIn(name, os.environ)

    def test_secrets_removed_even_on_error(self) -> None:
        """The secrets are removed even when the configuration is refused."""
        self.environ["MEP_IP"] = "bad host"
        self.assertRaises(SystemExit, self.make)
        self.assertNotIn("SK", os.environ)

    def test_builds_the_agent(self) -> None:
        """makeService composes token, registrar, subscriber and both listeners."""
        agent = self.make()
        names = [getattr(s, "name", None) for s in agent]
        self.assertEqual(names[:3], ["token", "registrar", "subscriber"])
        self.assertEqual(len(list(agent)), 5)

    def test_one_shot_adds_exit_service(self) -> None:
        """ENABLE_WAIT=false adds the one-shot service and keeps registrations on stop."""
        self.environ["ENABLE_WAIT"] = '"false"'
        agent = self.make()
        self.assertIsInstance(list(agent)[-1], tap.OneShot)
        self.assertFalse(list(agent)[1].deregister_on_stop)

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
