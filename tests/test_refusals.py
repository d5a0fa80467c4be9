"""
Every refusal is an answer (issue 26): a connection past either cap gets a JSON 503 with
Retry-After, where the agent used to close the connection without a word.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from mep_agent.web.site import DeadlineChannel, HardenedSite, serve

from .test_safety import parse_answer

HEAD = b"GET /x HTTP/1.1\r\nHost: 127.0.0.1\r\n"
SECRET = b"Bearer s3cret-api-token"


class Counted(Resource):
    """A leaf that answers 200 with how many headers and body bytes its request had."""

    isLeaf = True  # noqa: N815 (twisted.web's name)

    def render(self, request: Request) -> bytes:
        headers = sum(len(values) for _, values in request.requestHeaders.getAllRawHeaders())
        content = request.content
        body = len(content.read()) if content is not None else 0
        return json.dumps({"headers": headers, "body": body}).encode()


def with_headers(count: int, size: int = 1) -> bytes:
    """A GET with Host and C{count} more headers of C{size} bytes' value each."""
    extra = b"".join(b"X-%d: %s\r\n" % (n, b"a" * size) for n in range(count))
    return HEAD + extra + b"\r\n"


class Wire:
    """One connection to a hardened site in memory: what it wrote, whether it closed."""

    def __init__(self, site: HardenedSite, peer: str = "127.0.0.1") -> None:
        self.protocol = site.buildProtocol((peer, 40000))
        self.transport = StringTransport()
        if self.protocol is not None:
            self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> Wire:
        self.protocol.dataReceived(data)
        return self

    def answer(self) -> tuple[int, dict[str, str], Any]:
        """The first answer: status, headers, the JSON body (None when there is none)."""
        status, headers, body = parse_answer(self.transport.value())
        return status, headers, json.loads(body) if body else None

    def close(self) -> None:
        if self.protocol is not None:
            self.protocol.connectionLost(None)


class RefusalTestCase(SynchronousTestCase):
    def site(self, max_connections: int = 1024, max_per_peer: int = 256) -> HardenedSite:
        site = serve(
            Counted(), Clock(), max_connections=max_connections, max_per_peer=max_per_peer
        )
        site.doStart()
        self.addCleanup(site.doStop)
        return site

    def wire(self, site: HardenedSite | None = None, peer: str = "127.0.0.1") -> Wire:
        wire = Wire(site or self.site(), peer)
        self.addCleanup(wire.close)
        return wire

    def assert_refused(self, wire: Wire, status: int) -> dict[str, Any]:
        """C{wire} got a JSON C{status} of the agent's error shape and is closing: its body."""
        got, headers, body = wire.answer()
        self.assertEqual(got, status)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(headers["cache-control"], "no-store")
        self.assertIsInstance(body["error"], str)
        self.assertTrue(wire.transport.disconnecting, "the connection is being closed")
        self.assertNotIn(SECRET, wire.transport.value(), "nothing of the request echoed")
        return dict(body)


class OverCapTests(RefusalTestCase):
    def test_past_the_per_peer_cap_a_json_503_with_retry_after(self) -> None:
        """A connection past the per-peer cap is answered a JSON 503 with Retry-After."""
        site = self.site(max_per_peer=2)
        held = [self.wire(site, "10.9.9.9") for _ in range(2)]
        turned = self.wire(site, "10.9.9.9")
        body = self.assert_refused(turned, 503)
        self.assertEqual(turned.answer()[1]["retry-after"], "1")
        self.assertIn("this address", body["error"])
        self.assertEqual(site.refused, 1)
        self.assertTrue(all(isinstance(w.protocol, DeadlineChannel) for w in held))

    def test_past_the_total_cap_a_json_503_with_retry_after(self) -> None:
        """A connection past the total cap is answered a JSON 503 with Retry-After."""
        site = self.site(max_connections=2)
        self.wire(site, "10.1.1.1")
        self.wire(site, "10.2.2.2")
        turned = self.wire(site, "10.3.3.3")
        self.assert_refused(turned, 503)
        self.assertEqual(turned.answer()[1]["retry-after"], "1")

    def test_the_answer_is_written_before_any_byte_is_read(self) -> None:
        """The 503 is written at once; what the peer sends then is not parsed nor answered."""
        site = self.site(max_per_peer=1)
        self.wire(site)
        turned = self.wire(site)
        answer = turned.transport.value()
        turned.send(HEAD + b"\r\n" + with_headers(600))
        self.assertEqual(turned.transport.value(), answer)

    def test_a_turned_away_connection_holds_no_place(self) -> None:
        """Refused connections never count against the caps, while open or once closed."""
        site = self.site(max_per_peer=1)
        first = self.wire(site)
        for _ in range(3):
            turned = self.wire(site)
            self.assertEqual(turned.answer()[0], 503)
            turned.close()
        self.assertEqual((site.open_connections, site.per_peer), (1, {"127.0.0.1": 1}))
        first.close()
        self.assertIsInstance(self.wire(site).protocol, DeadlineChannel, "a place freed")
        self.assertEqual(site.refused, 3)
