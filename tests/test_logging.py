"""What operators read: --version, the log lines, the sample file's callback."""

from __future__ import annotations

import io
import json

from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mep_agent import __version__, logs, tap
from mep_agent.config.model import SubscriptionSpec
from mep_agent.core.bodies import effective_body


class VersionTests(SynchronousTestCase):
    def test_version(self) -> None:
        """--version prints the agent's version with Twisted's, then exits 0 (#11.10)."""
        out = io.StringIO()
        self.patch(tap.sys, "stdout", out)
        options = tap.Options()
        error = self.assertRaises(SystemExit, options.parseOptions, ["--version"])
        self.assertEqual(error.code, 0)
        self.assertTrue(out.getvalue().startswith(f"mep-agent {__version__} (Twisted "))


class LogLineTests(SynchronousTestCase):
    def emit(self, log_format: str, level: str, **event: object) -> list[str]:
        out = io.StringIO()
        observer = logs.observer(log_format, level, out)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        log = Logger(namespace="mep_agent.test")
        log.info("service {ser_name} registered", ser_name="a", event="service.registered")
        log.debug("noise", event="debug.noise")
        try:
            raise RuntimeError("bug")
        except RuntimeError:
            log.failure("broke", Failure(), level=LogLevel.error, event="agent.bug")
        return out.getvalue().splitlines()

    def test_json_lines(self) -> None:
        """JSON: one object per line (no record separator), level a string, the fields."""
        lines = self.emit("json", "info")
        self.assertEqual(len(lines), 2)  # debug filtered out
        first, second = (json.loads(line) for line in lines)
        self.assertFalse(lines[0].startswith("\x1e"))
        self.assertEqual(
            (first["level"], first["event"], first["message"], first["ser_name"]),
            ("info", "service.registered", "service a registered", "a"),
        )
        self.assertTrue(first["time"].endswith("+00:00"))
        self.assertEqual((second["level"], second["event"]), ("error", "agent.bug"))
        self.assertIn("RuntimeError: bug", second["traceback"])
        self.flushLoggedErrors(RuntimeError)

    def test_level_filter(self) -> None:
        """--log-level error keeps only errors; debug keeps everything."""
        text = "\n".join(self.emit("text", "error"))
        self.assertIn("broke", text)
        self.assertNotIn("registered", text)
        self.assertEqual(len(self.emit("json", "debug")), 3)
        self.flushLoggedErrors(RuntimeError)

    def test_factories_named(self) -> None:
        """Every format and level has a twistd --logger name."""
        for log_format in ("text", "json"):
            for level in logs.LEVELS:
                name = logs.factory_name(log_format, level)
                self.assertTrue(callable(getattr(logs, name.rsplit(".", 1)[1])))


class SampleCallbackTests(SynchronousTestCase):
    def test_own_route_gets_the_secret(self) -> None:
        """A YAML callback naming the agent's own route gets the secret (#11.9)."""
        own = SubscriptionSpec(
            0, {"callbackReference": "http://127.0.0.1:9090/mep-agent/v1/notifications"}
        )
        other = SubscriptionSpec(1, {"callbackReference": "http://app.local/cb"})
        self.assertEqual(
            effective_body(own, None, "s3")["callbackReference"],  # type: ignore[index]
            "http://127.0.0.1:9090/mep-agent/v1/notifications/s3",
        )
        self.assertEqual(
            effective_body(other, None, "s3")["callbackReference"],  # type: ignore[index]
            "http://app.local/cb",
        )
