"""
The HTTP client the agent uses for the MEP: pooled, TLS-verified, and guarded so that
nothing the network hands back is believed unchecked: no redirect is followed, no
compression is asked for, no cookie is kept, and a body is read only up to a limit (after
decoding, when a MEP compresses anyway).
"""

from __future__ import annotations

import re
import zlib
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import (
    URI,
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    ResponseDone,
    _HTTP11ClientFactory,
    _StandardEndpointFactory,
)
from twisted.web.http import PotentialDataLoss
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


class _QuietFactory(_HTTP11ClientFactory):
    # Twisted logs "Starting factory ..." for every pooled connection; operators need
    # the agent's own events, not that.
    noisy = False


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


class MepHttp:
    """
    The MEP's HTTP exchanges, straight over an IAgent (a pooled Agent, or one in memory):
    an IResponse whatever its status. The agent asks for no compression and keeps no
    cookie; an Agent follows no redirect. Not treq: its per-request URL normalisation
    (hyperlink and IDNA), cookie jar and gzip decoder were 40 % of a heartbeat's CPU
    (benchmarks/RESULTS.md), and the last two had to be defeated anyway (L{read_body}
    decodes within the size limit).

    The pool is sized to the work: every L{exchange} counts as in flight from its request
    to its body's end, and the pool keeps as many idle connections as were ever in use at once
    (at least L{POOL_SIZE}, at most L{MAX_POOL_SIZE}); connections idle longer than the
    pool's timeout close anyway. A MEP whose answers are slow thus needs no new TLS
    handshake per beat.
    """

    def __init__(self, agent: IAgent, pool: HTTPConnectionPool | None = None) -> None:
        self._agent = agent
        self._pool = pool
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
            response = await self.request(method, url, headers, body)
            try:
                raw = await read_body(response, limit)
            except (BodyTooLarge, BadEncoding) as e:
                raise BadBody(response.code, e) from None
        finally:
            self.finished()
        return response, raw

    def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None = None
    ) -> Deferred[IResponse]:
        """Send one request; C{body} is written at once, with its Content-Length."""
        return self._agent.request(
            method.encode("ascii"),
            url_bytes(url),
            Headers({name: [value] for name, value in headers.items()}),
            BytesProducer(body) if body is not None else None,
        )


class _LimitedBody(Protocol):
    """Collects a body up to C{limit} bytes (decoded), else drops the connection."""

    def __init__(self, limit: int, encoding: bytes | None, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._chunks: list[bytes] = []
        self._size = 0
        self._failed = False
        self._inflate: Any = None
        if encoding in (b"gzip", b"x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding in (b"deflate",):
            self._inflate = zlib.decompressobj()
        elif encoding not in (None, b"", b"identity"):
            self._fail(BadEncoding(f"unsupported Content-Encoding {encoding[:40]!r}"))

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        """Keep the (decoded) chunk, or stop once the limit is passed."""
        if self._failed:
            return
        try:
            if self._inflate is not None:
                # max_length bounds what one compressed chunk may inflate to.
                room = self._limit - self._size + 1
                data = self._inflate.decompress(data, room)
                if self._inflate.unconsumed_tail:
                    self._fail(BodyTooLarge(self._limit))
                    return
        except zlib.error:
            self._fail(BadEncoding("the compressed body does not decode"))
            return
        self._size += len(data)
        if self._size > self._limit:
            self._fail(BodyTooLarge(self._limit))
            return
        self._chunks.append(data)

    def refuse(self, error: Exception) -> None:
        """Stop reading now and fail with C{error}."""
        self._fail(error)

    def _fail(self, error: Exception) -> None:
        self._failed = True
        self._chunks = []
        transport: Any = self.transport
        if transport is not None:
            transport.stopProducing()  # the response body's transport: a producer
        if not self._done.called:
            self._done.errback(Failure(error))

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """Fire with the body, or with the reason it did not arrive whole."""
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._chunks))
        else:
            self._done.errback(reason)


def read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    """
    The response's whole body, at most C{limit} bytes after decoding; fails with
    L{BodyTooLarge} (refused from Content-Length before reading, when it says so) or
    L{BadEncoding}.
    """
    done: Deferred[bytes] = Deferred()
    encoding = response.headers.getRawHeaders(b"content-encoding")
    protocol = _LimitedBody(limit, encoding[0].strip().lower() if encoding else None, done)
    response.deliverBody(protocol)
    if response.length is not UNKNOWN_LENGTH and encoding is None and response.length > limit:
        protocol.refuse(BodyTooLarge(limit))  # from Content-Length, before any byte is read
    return done


@implementer(IAgentEndpointFactory)
class ReusedEndpoints:
    """
    One endpoint per MEP address, made on first use: an Agent makes a new one for every
    request otherwise (host name checks and IDNA on every heartbeat). Links only lead to
    the MEP's own addresses (links.py), so the few kept need no eviction policy beyond a cap.
    """

    cap = 16

    def __init__(self, factory: IAgentEndpointFactory) -> None:
        self._factory = factory
        self._endpoints: dict[tuple[bytes, bytes, int], IStreamClientEndpoint] = {}

    def endpointForURI(self, uri: URI) -> IStreamClientEndpoint:  # noqa: N802 (Twisted's)
        """The endpoint made before for this scheme, host and port, or a new one."""
        key = (uri.scheme, uri.host, uri.port)
        endpoint = self._endpoints.get(key)
        if endpoint is None:
            if len(self._endpoints) >= self.cap:
                self._endpoints.clear()
            endpoint = self._endpoints[key] = self._factory.endpointForURI(uri)
        return endpoint


# Connections kept open to the MEP to begin with. Enough for the usual work: registrations
# go at most this many at a time, and heartbeats are spread over their period
# (registration.py, liveness.py), so fifty services share them. MepHttp grows it to the
# most exchanges ever in flight at once (slow answers), up to MAX_POOL_SIZE.
POOL_SIZE = 4
MAX_POOL_SIZE = 64


def pooled_agent(
    reactor: IReactorTime, policy: IPolicyForHTTPS | None, connect_timeout: float
) -> tuple[Agent, HTTPConnectionPool]:
    """
    An Agent with persistent connections (the original opened one per request) and the
    MEP TLS policy. Per-request deadlines are set by the caller on each request.
    """
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = POOL_SIZE
    # Connections idle longer than this are closed before the MEP's gateway drops them.
    pool.cachedConnectionTimeout = 50
    pool._factory = _QuietFactory
    endpoints = _StandardEndpointFactory(
        reactor, policy or BrowserLikePolicyForHTTPS(), connect_timeout, None
    )
    return Agent.usingEndpointFactory(reactor, ReusedEndpoints(endpoints), pool), pool
