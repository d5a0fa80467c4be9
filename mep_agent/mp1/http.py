"""
The HTTP client the agent uses for the MEP: treq's C{HTTPClient} over a pooled,
TLS-verified Agent, guarded so that nothing the network hands back is believed unchecked:
no redirect is followed, no cookie is kept, and a body is read only up to a limit after
decoding (L{InflateWithin} under treq, L{LimitedCollector} through C{treq.collect}).
Public Twisted and treq names only (docs/decisions.md).
"""

from __future__ import annotations

import re
import zlib
from http.cookiejar import DefaultCookiePolicy
from typing import Any, cast
from urllib.parse import quote

import treq
from hyperlink import URL
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IConsumer, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.components import proxyForInterface
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
)
from twisted.web.error import SchemeNotSupported
from twisted.web.http_headers import Headers
from twisted.web.iweb import (
    UNKNOWN_LENGTH,
    IAgent,
    IAgentEndpointFactory,
    IBodyProducer,
    IPolicyForHTTPS,
    IResponse,
)
from zope.interface import implementer

# What may stand in a request URL as it is (besides letters and digits); anything else is
# percent-encoded.
_URL_SAFE = "-._~:/?#[]@!$&'()*+,;=%"
_PLAIN_URL = re.compile(f"[A-Za-z0-9{re.escape(_URL_SAFE)}]*")
_DECODED = (b"gzip", b"x-gzip", b"deflate")
MAX_BODY = 1024 * 1024  # default limit of a MEP answer (--max-response-bytes)
# URLs kept prepared: a service's liveness link and the few fixed paths, for every service.
MAX_PREPARED_URLS = 512


class BodyTooLarge(Exception):
    """A response body (after decoding) exceeded the limit; the connection was dropped."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"response body larger than {limit} bytes")
        self.limit = limit


class BadEncoding(Exception):
    """A response body in a Content-Encoding the agent cannot (or will not) decode."""


class BadBody(Exception):
    """An answer whose body could not be read within the rules (size, encoding)."""

    def __init__(self, status: int, reason: Exception) -> None:
        super().__init__(str(reason))
        self.status = status
        self.reason = reason


@implementer(IBodyProducer)
class BytesProducer:
    """
    A request body that is written at once. treq's default producer for bytes runs on
    the global cooperator; this one needs no reactor at all.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:  # noqa: N802
        """Write the whole body."""
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802
        """Nothing to pause: the body is written in one call."""

    def resumeProducing(self) -> None:  # noqa: N802
        """Nothing to resume."""

    def stopProducing(self) -> None:  # noqa: N802
        """Nothing to stop."""


def url_bytes(url: str) -> bytes:
    """C{url} as the request line carries it: percent-encoded where it must be."""
    if _PLAIN_URL.fullmatch(url) is None:
        url = quote(url, safe=_URL_SAFE)
    return url.encode("ascii")


class PreparedURL(URL):
    """
    A URL already in its request-line form (L{url_bytes}), which treq takes as it is. treq
    normalises every URL it is given again (hyperlink's C{to_uri}, IDNA on the host): that
    was half of treq's cost per request. The MEP's few addresses are prepared once each.
    """

    text_form = ""

    @classmethod
    def prepared(cls, url: str) -> PreparedURL:
        """C{url}, percent-encoded where it must be, as a URL that needs no normalising."""
        text = url_bytes(url).decode("ascii")
        made = cast(PreparedURL, cls.from_text(text))  # from_text builds a cls
        made.text_form = text
        return made

    def to_uri(self) -> PreparedURL:
        """Already a URI."""
        return self

    def to_text(self, with_password: bool = False) -> str:
        """The text it was prepared from."""
        return self.text_form


def no_cookies() -> IndexableCookieJar:
    """
    A cookie jar for treq that keeps nothing: a MEP gateway's cookie must not be replayed
    on the next call (the policy allows no domain, so nothing is stored or sent).
    """
    return IndexableCookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


class LimitedCollector:
    """A C{treq.collect} collector: keeps the chunks, raises past C{limit} bytes in all."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._size = 0
        self._chunks: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        """Keep C{data}; L{BodyTooLarge} (treq then drops the connection) past the limit."""
        self._size += len(data)
        if self._size > self._limit:
            self._chunks = []
            raise BodyTooLarge(self._limit)
        self._chunks.append(data)

    def body(self) -> bytes:
        """What was collected."""
        return b"".join(self._chunks)


class MepHttp:
    """
    The MEP's HTTP exchanges through treq over an IAgent (a pooled Agent, or one in
    memory): the response and its whole body, whatever its status.

    The pool is sized to the work: every L{exchange} counts as in flight from its request
    to its body's end, and the pool keeps as many idle connections as were ever in use at
    once (at least L{POOL_SIZE}, at most L{MAX_POOL_SIZE}); connections idle longer than
    the pool's timeout close anyway. A MEP whose answers are slow thus needs no new TLS
    handshake per beat.
    """

    def __init__(self, agent: IAgent, pool: HTTPConnectionPool | None = None) -> None:
        self._agent = agent
        self._pool = pool
        self._cookies = no_cookies()
        self._clients: dict[int, HTTPClient] = {}  # by body limit
        self._urls: dict[str, PreparedURL] = {}
        self.in_flight = 0

    def started(self) -> None:
        """An exchange begins: grow the pool if it is one more than the pool keeps."""
        self.in_flight += 1
        pool = self._pool
        if pool is not None and pool.maxPersistentPerHost < min(self.in_flight, MAX_POOL_SIZE):
            pool.maxPersistentPerHost = min(self.in_flight, MAX_POOL_SIZE)

    def finished(self) -> None:
        """An exchange ended (its body read, or failed)."""
        self.in_flight -= 1

    async def exchange(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, limit: int
    ) -> tuple[IResponse, bytes]:
        """
        One request and the answer's whole body, at most C{limit} bytes after decoding
        (L{read_body}); L{BadBody} when the body breaks those rules.
        """
        self.started()
        try:
            response = await self.request(method, url, headers, body, limit)
            try:
                raw = await read_body(response, limit)
            except (BodyTooLarge, BadEncoding) as e:
                raise BadBody(response.code, e) from None
        finally:
            self.finished()
        return response, raw

    def request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None = None,
        limit: int = MAX_BODY,
    ) -> Deferred[IResponse]:
        """
        Send one request (C{body} written at once, with its Content-Length); the answer
        unread, a compressed one inflating to at most C{limit} bytes per read.
        """
        client = self._clients.get(limit)
        if client is None:
            inflating = InflateWithin(self._agent, limit)
            client = HTTPClient(inflating, self._cookies, data_to_body_producer=BytesProducer)
            self._clients[limit] = client
        prepared = self._urls.get(url)
        if prepared is None:
            if len(self._urls) >= MAX_PREPARED_URLS:
                self._urls.clear()
            prepared = self._urls[url] = PreparedURL.prepared(url)
        answer = client.request(
            method,
            prepared,
            headers=Headers({name: [value] for name, value in headers.items()}),
            data=body,
            allow_redirects=False,
            unbuffered=True,
        )
        return cast("Deferred[IResponse]", answer)  # treq's _Response provides IResponse


class _Refuse(Protocol):
    """Takes a body it will not read: drops the connection at once."""

    def connectionMade(self) -> None:
        """Stop the body's transport (a producer): the pool discards the connection."""
        transport: Any = self.transport
        transport.stopProducing()


def read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    """
    The response's whole body through C{treq.collect}, at most C{limit} bytes after
    decoding; fails with L{BodyTooLarge} (refused from Content-Length before reading, when
    it says so) or L{BadEncoding} (an encoding neither treq nor L{InflateWithin} decoded).
    """
    encoding = response.headers.getRawHeaders(b"content-encoding")
    if encoding and encoding[0].strip().lower() not in (b"", b"identity"):
        response.deliverBody(_Refuse())
        return _failed(BadEncoding(f"unsupported Content-Encoding {encoding[0][:40]!r}"))
    if response.length is not UNKNOWN_LENGTH and response.length > limit:
        response.deliverBody(_Refuse())  # from Content-Length, before any byte is read
        return _failed(BodyTooLarge(limit))
    collector = LimitedCollector(limit)
    return treq.collect(response, collector).addCallback(lambda _: collector.body())


def _failed(error: Exception) -> Deferred[bytes]:
    d: Deferred[bytes] = Deferred()
    d.errback(Failure(error))
    return d


@implementer(IAgent)
class InflateWithin:
    """
    Decodes a gzip or deflate answer below treq, so that one read never inflates past the
    limit: Twisted's gzip decoder, which treq adds, inflates each read whole (a 32 KiB
    read of a bomb is 32 MiB before any limit is checked). The answer goes up without its
    Content-Encoding, so treq's decoder leaves it alone; C{treq.collect} then bounds the
    whole body (L{read_body}).
    """

    def __init__(self, agent: IAgent, limit: int) -> None:
        self._agent = agent
        self._limit = limit

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,  # noqa: N803 (IAgent's name)
    ) -> Deferred[IResponse]:
        """The wrapped agent's answer, decoded when it is compressed."""
        return self._agent.request(method, uri, headers, bodyProducer).addCallback(self._decoded)

    def _decoded(self, response: IResponse) -> IResponse:
        encoding = response.headers.getRawHeaders(b"content-encoding")
        if not encoding or encoding[0].strip().lower() not in _DECODED or len(encoding) > 1:
            return response
        headers = response.headers.copy()
        headers.removeHeader(b"content-encoding")
        return _Inflated(response, headers, encoding[0].strip().lower(), self._limit)


class _Inflated(proxyForInterface(IResponse)):  # type: ignore[misc]
    """A compressed response seen decoded: its body inflated read by read, within a bound."""

    def __init__(self, original: IResponse, headers: Headers, encoding: bytes, limit: int):
        super().__init__(original)
        self.headers = headers
        self.length = UNKNOWN_LENGTH
        self._encoding = encoding
        self._limit = limit

    def deliverBody(self, protocol: Protocol) -> None:  # noqa: N802
        """Deliver the inflated body to C{protocol}."""
        self.original.deliverBody(_Inflating(protocol, self._encoding, self._limit))


class _Inflating(Protocol):
    def __init__(self, inner: Protocol, encoding: bytes, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._failed = False
        bits = zlib.MAX_WBITS if encoding == b"deflate" else 16 + zlib.MAX_WBITS
        self._inflate: Any = zlib.decompressobj(bits)

    def connectionMade(self) -> None:
        """Hand the body's transport on, so that the reader can stop it."""
        self._inner.makeConnection(self.transport)

    def dataReceived(self, data: bytes) -> None:
        """Inflate one read to at most the limit (max_length), else stop."""
        if self._failed:
            return
        try:
            data = self._inflate.decompress(data, self._limit + 1)
        except zlib.error:
            self._fail(BadEncoding("the compressed body does not decode"))
            return
        if self._inflate.unconsumed_tail or len(data) > self._limit:
            self._fail(BodyTooLarge(self._limit))
            return
        if data:
            self._inner.dataReceived(data)

    def _fail(self, error: Exception) -> None:
        self._failed = True
        transport: Any = self.transport
        transport.stopProducing()
        self._inner.connectionLost(Failure(error))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Pass the end on (unless a failure was passed on already)."""
        if not self._failed:
            self._inner.connectionLost(reason)


@implementer(IAgentEndpointFactory)
class MepEndpoints:
    """
    TCP for http, TLS with the MEP policy for https, on public endpoint APIs; one endpoint
    per MEP address, made on first use (an Agent otherwise makes a new one for every
    request: host name checks and IDNA on every heartbeat). Links only lead to the MEP's
    own addresses (links.py), so the few kept need no eviction policy beyond a cap.
    """

    cap = 16

    def __init__(self, reactor: Any, policy: IPolicyForHTTPS, connect_timeout: float) -> None:
        self._reactor = reactor
        self._policy = policy
        self._connect_timeout = connect_timeout
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:  # noqa: N802 (Twisted's)
        """The endpoint made before for this scheme, host and port, or a new one."""
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= self.cap:
                self._endpoints.clear()
            endpoint = self._endpoints[key] = self.new_endpoint(uri)
        return endpoint

    def new_endpoint(self, uri: URI) -> IStreamClientEndpoint:
        """A new endpoint for C{uri}'s scheme, host and port."""
        if uri.scheme not in (b"http", b"https"):
            raise SchemeNotSupported(f"unsupported scheme {uri.scheme[:20]!r}")
        host = uri.host.decode("ascii")  # URI hosts from url_bytes are ASCII
        endpoint: IStreamClientEndpoint = HostnameEndpoint(
            self._reactor, host, uri.port, timeout=self._connect_timeout
        )
        if uri.scheme == b"https":
            endpoint = wrapClientTLS(self._policy.creatorForNetloc(uri.host, uri.port), endpoint)
        return QuietEndpoint(endpoint)


@implementer(IStreamClientEndpoint)
class QuietEndpoint:
    """
    Connects the pool's per-connection factories with C{noisy} off: Twisted logs "Starting
    factory" and "Stopping factory" for every pooled connection otherwise, and operators
    need the agent's own events, not those (whatever logger twistd was given).
    """

    def __init__(self, endpoint: IStreamClientEndpoint) -> None:
        self.wrapped = endpoint

    def connect(self, protocolFactory: Any) -> Deferred[Any]:  # noqa: N803 (Twisted's name)
        """Connect with the factory made quiet."""
        protocolFactory.noisy = False
        return self.wrapped.connect(protocolFactory)


# Connections kept open to the MEP to begin with. Enough for the usual work: creations go
# at most this many at a time (core/keeping.py, Discipline.creations), and heartbeats are
# spread over their period (core/liveness.py), so fifty services share them. MepHttp grows
# it to the most exchanges ever in flight at once (slow answers), up to MAX_POOL_SIZE.
POOL_SIZE = 4
MAX_POOL_SIZE = 64


def pooled_agent(
    reactor: IReactorTime, policy: IPolicyForHTTPS | None, connect_timeout: float
) -> tuple[Agent, HTTPConnectionPool]:
    """
    An Agent with persistent connections (EdgeGallery's Go mep-agent opened one per
    request) and the MEP TLS policy. Per-request deadlines are set by the caller on each request.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = POOL_SIZE
    # Connections idle longer than this are closed before the MEP's gateway drops them.
    pool.cachedConnectionTimeout = 50
    endpoints = MepEndpoints(reactor, policy or BrowserLikePolicyForHTTPS(), connect_timeout)
    return Agent.usingEndpointFactory(reactor, endpoints, pool), pool
