"""
Tests of mep_agent.mp1.http's request side: what the agent sends to the MEP and what it keeps
between requests (nothing but connections and their endpoints).
"""

from __future__ import annotations

import gzip
import zlib
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import URI
from twisted.web.iweb import IAgent
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from mep_agent.mp1.http import (
    MAX_POOL_SIZE,
    POOL_SIZE,
    BadBody,
    BadEncoding,
    BodyTooLarge,
    MepEndpoints,
    MepHttp,
    QuietEndpoint,
    pooled_agent,
    read_body,
    url_bytes,
)


class Recorder(Resource):
    """Answers every request with a cookie and a redirect, and records what it was sent."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[bytes, Any]] = []

    def render(self, request: Request) -> bytes:
        self.seen.append(dict(request.requestHeaders.getAllRawHeaders()))
        request.addCookie(b"session", b"from-the-gateway")
        request.setResponseCode(302)
        request.setHeader(b"Location", b"http://127.0.0.1:9/elsewhere")
        return b"{}"


class MepHttpTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = Recorder()
        self.http = MepHttp(RequestTraversalAgent(self.server))

    def exchange(self) -> Any:
        response = self.successResultOf(
            self.http.request("PUT", "https://127.0.0.1:8443/x", {"A": "b"}, b"{}")
        )
        self.successResultOf(read_body(response, 100))
        return response

    def test_no_cookie_kept(self) -> None:
        """A cookie the MEP (or its gateway) sets is never sent back."""
        self.exchange()
        self.exchange()
        self.assertEqual(len(self.server.seen), 2)
        self.assertNotIn(b"Cookie", self.server.seen[1])

    def test_redirect_not_followed(self) -> None:
        """A redirect is the answer, not a second request."""
        self.assertEqual(self.exchange().code, 302)
        self.assertEqual(len(self.server.seen), 1)

    def test_headers_and_body_as_given(self) -> None:
        """The caller's headers, a Content-Length for the body; gzip only (treq's) asked for."""
        self.exchange()
        (seen,) = self.server.seen
        self.assertEqual(seen[b"A"], [b"b"])
        self.assertEqual(seen[b"Content-Length"], [b"2"])
        self.assertEqual(seen[b"Accept-Encoding"], [b"gzip"])


class Encoded(Resource):
    """Answers with a fixed body and Content-Encoding."""

    isLeaf = True

    def __init__(self, body: bytes, encoding: bytes | None) -> None:
        super().__init__()
        self.body = body
        self.encoding = encoding

    def render(self, request: Request) -> bytes:
        if self.encoding is not None:
            request.setHeader(b"Content-Encoding", self.encoding)
        return self.body


class BoundedBodyTests(SynchronousTestCase):
    """Bodies are read through treq within a limit counted after decoding."""

    def read(self, body: bytes, encoding: bytes | None, limit: int = 1000) -> Any:
        http = MepHttp(RequestTraversalAgent(Encoded(body, encoding)))
        return ensureDeferred(http.exchange("GET", "https://127.0.0.1:8443/x", {}, None, limit))

    def test_plain_within_limit(self) -> None:
        response, body = self.successResultOf(self.read(b"x" * 1000, None))
        self.assertEqual((response.code, body), (200, b"x" * 1000))

    def test_plain_past_limit(self) -> None:
        failure = self.failureResultOf(self.read(b"x" * 1001, None), BadBody)
        self.assertIsInstance(failure.value.reason, BodyTooLarge)

    def test_gzip_and_deflate_decoded(self) -> None:
        for encoding, data in (
            (b"gzip", gzip.compress(b"[1, 2]")),
            (b"deflate", zlib.compress(b"[1, 2]")),
        ):
            _, body = self.successResultOf(self.read(data, encoding))
            self.assertEqual(body, b"[1, 2]")

    def test_bomb_never_inflated_past_the_limit(self) -> None:
        """One read of a bomb inflates to at most the limit, not to its whole size."""
        inflated: list[int] = []
        real = zlib.decompressobj

        class Counting:
            def __init__(self, *args: Any) -> None:
                self._real = real(*args)

            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                out = self._real.decompress(data, max_length)
                inflated.append(len(out))
                return out

            @property
            def unconsumed_tail(self) -> bytes:
                return self._real.unconsumed_tail

        self.patch(zlib, "decompressobj", Counting)
        bomb = gzip.compress(b" " * (16 * 1024 * 1024))
        failure = self.failureResultOf(self.read(bomb, b"gzip"), BadBody)
        self.assertIsInstance(failure.value.reason, BodyTooLarge)
        self.assertLessEqual(max(inflated), 1001)

    def test_unknown_encoding_refused(self) -> None:
        failure = self.failureResultOf(self.read(b"xx", b"br"), BadBody)
        self.assertIsInstance(failure.value.reason, BadEncoding)

    def test_broken_gzip_refused(self) -> None:
        failure = self.failureResultOf(self.read(b"not gzip", b"gzip"), BadBody)
        self.assertIsInstance(failure.value.reason, BadEncoding)


class QuietPoolTests(SynchronousTestCase):
    def test_pooled_connections_quiet(self) -> None:
        """The pool's per-connection factory is connected with noisy off, on every endpoint."""
        from twisted.internet.protocol import Factory
        from twisted.internet.testing import MemoryReactorClock
        from twisted.web.client import BrowserLikePolicyForHTTPS

        endpoints = MepEndpoints(MemoryReactorClock(), BrowserLikePolicyForHTTPS(), 5)
        for address in (b"http://127.0.0.1:8080/", b"https://127.0.0.1:8443/"):
            factory = Factory()
            self.assertTrue(factory.noisy)
            endpoints.endpointForURI(URI.fromBytes(address)).connect(factory)
            self.assertFalse(factory.noisy)


@implementer(IAgent)
class FakeAgent:
    """An IAgent whose requests stay in flight until the test answers them."""

    def __init__(self) -> None:
        self.waiting: list[Deferred[Any]] = []

    def request(self, *args: Any) -> Deferred[Any]:
        self.waiting.append(Deferred())
        return self.waiting[-1]


class PoolSizingTests(SynchronousTestCase):
    def test_pool_grows_to_the_exchanges_in_flight(self) -> None:
        """The pool keeps as many connections as exchanges were ever in flight at once."""
        _, pool = pooled_agent(Clock(), None, 5)
        http = MepHttp(FakeAgent(), pool)
        for _ in range(3):
            http.started()
        self.assertEqual(pool.maxPersistentPerHost, POOL_SIZE)  # 3 fit in the first 4
        for _ in range(7):
            http.started()
        self.assertEqual(pool.maxPersistentPerHost, 10)
        for _ in range(10):
            http.finished()
        self.assertEqual((http.in_flight, pool.maxPersistentPerHost), (0, 10))
        for _ in range(200):
            http.started()
        self.assertEqual(pool.maxPersistentPerHost, MAX_POOL_SIZE)

    def test_mep_client_brackets_every_exchange(self) -> None:
        """The MEP client counts an exchange from its request until its body is read or fails."""
        from mep_agent.mp1.credentials import Credentials
        from mep_agent.mp1.wire import MepWire
        from mep_agent.util.secret import Secret

        agent = FakeAgent()
        _, pool = pooled_agent(Clock(), None, 5)
        http = MepHttp(agent, pool)
        client = MepWire(
            http,
            Clock(),
            "http://127.0.0.1:8080",
            "127.0.0.1:8080",
            Credentials(Secret("a"), Secret("b"), Secret("c")),
            5,
        )
        calls = [
            ensureDeferred(client.call("service", "GET", f"/x{n}", (200,), {})) for n in range(6)
        ]
        self.assertEqual((http.in_flight, pool.maxPersistentPerHost), (6, 6))
        for waiting in agent.waiting:
            waiting.errback(ConnectionRefusedError())
        for call in calls:
            self.failureResultOf(call)
        self.assertEqual(http.in_flight, 0)


class PreparedURLTests(SynchronousTestCase):
    def test_sent_as_prepared(self) -> None:
        """treq sends the URL exactly as url_bytes made it (escapes kept, no re-encoding)."""
        server = Recorder()
        seen: list[bytes] = []
        original = server.render

        def render(request: Request) -> bytes:
            seen.append(request.uri)
            return original(request)

        server.render = render  # type: ignore[method-assign]
        http = MepHttp(RequestTraversalAgent(server))
        url = "https://127.0.0.1:8443/a b/\u00e9?ser_name=x%2Fy&q=1"
        for _ in range(2):  # the second time from the prepared URL kept for the address
            self.successResultOf(ensureDeferred(http.exchange("GET", url, {}, None, 100)))
        self.assertEqual(seen, [b"/a%20b/%C3%A9?ser_name=x%2Fy&q=1"] * 2)

    def test_prepared_urls_bounded(self) -> None:
        """Ever new URLs do not pile up."""
        from mep_agent.mp1.http import MAX_PREPARED_URLS

        http = MepHttp(FakeAgent())
        for n in range(MAX_PREPARED_URLS * 2 + 1):
            http.request("GET", f"https://127.0.0.1:8443/x{n}", {})
        self.assertLessEqual(len(http._urls), MAX_PREPARED_URLS)


class UrlBytesTests(SynchronousTestCase):
    def test_plain_url_unchanged(self) -> None:
        url = "https://127.0.0.1:8443/mep/mec_service_mgmt/v1/services?ser_name=a%2Fb&x=1"
        self.assertEqual(url_bytes(url), url.encode())

    def test_other_characters_percent_encoded(self) -> None:
        """What a request line cannot carry is percent-encoded (UTF-8), escapes kept."""
        self.assertEqual(
            url_bytes("https://h/a b/\u00e9?q=\u4e2d%41"),
            b"https://h/a%20b/%C3%A9?q=%E4%B8%AD%41",
        )


class CountingEndpoints(MepEndpoints):
    def __init__(self) -> None:
        super().__init__(Clock(), None, 5)  # type: ignore[arg-type]
        self.made: list[tuple[bytes, bytes, int]] = []

    def new_endpoint(self, uri: URI) -> Any:
        self.made.append((uri.scheme, uri.host, uri.port))
        return object()


class MepEndpointsTests(SynchronousTestCase):
    def test_one_endpoint_per_address(self) -> None:
        """Requests to one scheme, host and port share an endpoint; others get their own."""
        endpoints = factory = CountingEndpoints()
        first = endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:8443/a"))
        again = endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:8443/b?c"))
        other = endpoints.endpointForURI(URI.fromBytes(b"https://127.0.0.1:8444/a"))
        self.assertIs(first, again)
        self.assertIsNot(first, other)
        self.assertEqual(len(factory.made), 2)

    def test_capped(self) -> None:
        """Endpoints for ever new addresses do not pile up."""
        endpoints = CountingEndpoints()
        for port in range(1, 3 * MepEndpoints.cap):
            endpoints.endpointForURI(URI.fromBytes(b"http://127.0.0.1:%d/" % port))
        self.assertLessEqual(len(endpoints._endpoints), MepEndpoints.cap)

    def test_pooled_agent_reuses_endpoints(self) -> None:
        """The agent the MEP client uses makes its endpoints through the cache."""
        agent, _ = pooled_agent(Clock(), None, 5)
        self.assertIsInstance(agent._endpointFactory, MepEndpoints)


class NewEndpointTests(SynchronousTestCase):
    def test_schemes(self) -> None:
        """http is plain TCP, https is TLS with the MEP policy; anything else is refused."""
        from twisted.internet.endpoints import HostnameEndpoint
        from twisted.internet.testing import MemoryReactorClock
        from twisted.web.client import BrowserLikePolicyForHTTPS
        from twisted.web.error import SchemeNotSupported

        endpoints = MepEndpoints(MemoryReactorClock(), BrowserLikePolicyForHTTPS(), 5)
        plain = endpoints.new_endpoint(URI.fromBytes(b"http://127.0.0.1:8080/"))
        assert isinstance(plain, QuietEndpoint)
        self.assertIsInstance(plain.wrapped, HostnameEndpoint)
        secure = endpoints.new_endpoint(URI.fromBytes(b"https://127.0.0.1:8443/"))
        assert isinstance(secure, QuietEndpoint)
        self.assertNotIsInstance(secure.wrapped, HostnameEndpoint)  # wrapped in TLS
        with self.assertRaises(SchemeNotSupported):
            endpoints.new_endpoint(URI.fromBytes(b"ftp://127.0.0.1:21/"))
