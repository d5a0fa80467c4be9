"""Issue #11's operator-facing details: --version, log lines, the sample's callback."""

from __future__ import annotations

import io
import json
from typing import Any

from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mep_agent import __version__, logs, tap
from mep_agent.config.model import SubscriptionSpec
from mep_agent.core.bodies import effective_body

from .agent_harness import NOTIFICATIONS, ApiTestCase, spec

ENDPOINT = "/mep-agent/v1/endpoint"


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


class BlockingDiscoveryTests(ApiTestCase):
    """GET /endpoint/{name}?wait=… with X-Mep-Agent-Index, as Consul's blocking queries."""

    def get(self, path: str, index: str | None = None) -> Any:
        headers = {"X-Mep-Agent-Index": index} if index is not None else {}
        return self.api.get(f"http://127.0.0.1{path}", headers=headers)

    def test_stale_index_answers_at_once(self) -> None:
        """Without an index, or with an old one, the answer comes at once, with the index."""
        self.build((spec("httpbin"),))
        self.start()
        code, _, response = self.get_json(self.api, f"{ENDPOINT}/httpbin?wait=30s")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders("x-mep-agent-index"), ["1"])

    def test_waits_for_a_notification(self) -> None:
        """With the current index it waits; a notification for the name answers it."""
        self.build((spec("httpbin"),))
        self.start()
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        waiting = [self.get(f"{ENDPOINT}/httpbin?wait=30s", "1") for _ in range(50)]
        self.settle()
        self.advance(10)
        for d in waiting:
            self.assertNoResult(d)
        note = {
            "notificationType": "SerAvailabilityNotification",
            "serviceReferences": [{"serName": "httpbin", "state": "ACTIVE"}],
        }
        self.request(self.ops, "POST", NOTIFICATIONS, json=note)
        self.settle()
        responses = [self.successResultOf(d) for d in waiting]
        self.assertEqual(
            {r.headers.getRawHeaders("x-mep-agent-index")[0] for r in responses}, {"2"}
        )
        # fifty waiters, one MEP request after the change
        self.assertEqual(self.discovery_calls, ["httpbin", "httpbin"])

    def test_wait_expires_with_the_same_index(self) -> None:
        """Nothing changes within the wait: 200 with the same index when it expires."""
        self.build((spec("httpbin"),))
        self.start()
        d = self.get(f"{ENDPOINT}/httpbin?wait=5s", "1")
        self.advance(4)
        self.assertNoResult(d)
        self.advance(1)
        response = self.successResultOf(d)
        self.assertEqual(
            (response.code, response.headers.getRawHeaders("x-mep-agent-index")), (200, ["1"])
        )

    def test_bad_wait_or_index(self) -> None:
        """A malformed wait or index is a 400."""
        self.build((spec("httpbin"),))
        self.start()
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/httpbin?wait=soon")[0], 400)
        response, _ = self.request(
            self.api,
            "GET",
            f"{ENDPOINT}/httpbin?wait=1s",
            headers={"X-Mep-Agent-Index": "x"},
        )
        self.assertEqual(response.code, 400)

    def test_cancelled_waiter_forgotten(self) -> None:
        """A caller that goes away leaves no waiter behind."""
        self.build((spec("httpbin"),))
        self.start()
        d = self.get(f"{ENDPOINT}/httpbin?wait=30s", "1")
        self.settle()
        d.cancel()
        self.settle()
        self.failureResultOf(d)
        self.advance(31)
        self.assertEqual(len(self.agent_api.discovery_waits), 0)

    def test_parked_queries_share_one_timer(self) -> None:
        """A hundred parked queries add one timer to the reactor, not one each."""
        self.build((spec("httpbin"),))
        self.start()
        before = len(self.clock.getDelayedCalls())
        waiting = [self.get(f"{ENDPOINT}/httpbin?wait={30 + n}s", "1") for n in range(100)]
        self.settle()
        self.assertEqual(len(self.agent_api.discovery_waits), 100)
        self.assertLessEqual(len(self.clock.getDelayedCalls()), before + 1)
        self.advance(130)
        self.assertEqual({self.successResultOf(d).code for d in waiting}, {200})

    def test_lost_connection_leaves_through_the_site(self) -> None:
        """On the real listener's requests a lost connection leaves the room at once."""
        from twisted.internet.error import ConnectionDone
        from twisted.internet.testing import StringTransport

        from mep_agent.web.site import serve

        self.build((spec("httpbin"),))
        self.start()
        factory = serve(self.front, self.clock)
        factory.doStart()
        self.addCleanup(factory.doStop)
        protocol = factory.buildProtocol(("127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET /mep-agent/v1/endpoint/httpbin?wait=30s HTTP/1.1\r\nHost: a\r\n"
            b"X-Mep-Agent-Index: 1\r\n\r\n"
        )
        self.assertEqual((len(self.agent_api.discovery_waits), transport.value()), (1, b""))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.agent_api.discovery_waits), 0)

    def test_stop_answers_parked_queries(self) -> None:
        """
        When the agent stops, parked queries are answered rather than dropped: by the web
        side (its blocking queries), which stops first; the cache's own stop wakes nobody.
        """
        self.build((spec("httpbin"),))
        self.start()
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        d = self.get(f"{ENDPOINT}/httpbin?wait=300s", "1")
        self.settle()
        self.assertNoResult(d)
        self.agent_api.close()
        self.settle()
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)
        self.assertEqual(response.headers.getRawHeaders("retry-after"), ["1"])


class ForwardingTests(SynchronousTestCase):
    def test_forwarded_with_retries_never_blocking(self) -> None:
        """Each notification is POSTed to the app; failures are retried, then dropped."""
        from klein import Klein
        from treq.testing import StubTreq
        from twisted.internet.task import Clock

        from mep_agent.core.forward import NotificationForwarder

        app = Klein()
        received: list[Any] = []
        answers = [500, 204, 503, 503, 503]

        @app.route("/notes", methods=["POST"])
        def notes(request: Any) -> bytes:
            received.append(json.loads(request.content.read()))
            request.setResponseCode(answers.pop(0))
            return b""

        clock = Clock()
        http = StubTreq(app.resource())
        forward = NotificationForwarder(http, clock, "http://127.0.0.1:8081/notes")  # type: ignore[arg-type]
        forward({"n": 1})
        forward({"n": 2})
        http.flush()
        for _ in range(5):
            clock.advance(1)
            http.flush()
        self.assertEqual([r["n"] for r in received], [1, 1, 2, 2, 2])
        self.assertEqual((forward.forwarded, forward.dropped), (1, 1))
