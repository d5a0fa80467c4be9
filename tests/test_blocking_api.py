"""Blocking discovery through the application API: parked queries, woken by notifications."""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure

from .agent_harness import NOTIFICATIONS, ApiTestCase, spec

ENDPOINT = "/mep-agent/v1/endpoint"


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
