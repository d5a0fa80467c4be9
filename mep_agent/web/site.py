"""
The HTTP server side of both listeners, hardened: request bodies are refused from their
Content-Length (or while they stream) beyond a limit and never spooled to disk, a
request's headers must arrive within a deadline, idle connections are closed, the number
of open connections is capped in all and per peer address (so one abusive peer cannot
starve the kubelet's probes), and a connection whose answers are not read stops being read
(so a client pipelining requests without reading costs a bounded amount of memory).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel, combinedLogFormatter
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from mep_agent.web.jsonweb import MAX_BODY

HEADER_DEADLINE = 5.0  # seconds for a request line and headers to arrive
IDLE_TIMEOUT = 60.0  # seconds a keep-alive connection may sit idle
MAX_CONNECTIONS = 1024
MAX_CONNECTIONS_PER_PEER = 256
# Received bytes are handed to the HTTP parser this many at a time, and no more while the
# answers already written wait for the peer to read them: pipelined requests in one read
# (up to 64 KiB) cannot queue more than this many bytes' worth of answers at once.
FEED_SLICE = 4096
# The path segment that authenticates the MEP's notifications (ops.NOTIFICATIONS) is a secret.
_NOTIFY_SECRET = re.compile(r"(/notifications/)[^\s\"?/]+")


def access_line(timestamp: str, request: http.Request) -> str:
    """twisted.web's combined log format, with the notification secret redacted."""
    return _NOTIFY_SECRET.sub(r"\1<redacted>", combinedLogFormatter(timestamp, request))


class LimitedRequest(Request):
    """A request whose body is kept in memory up to L{MAX_BODY} bytes, else refused."""

    max_body = MAX_BODY
    _too_large = False
    #: Called once if the connection is lost before the answer (waiting.when_gone): a
    #: blocking query costs no Deferred for it.
    gone: Callable[[], object] | None = None

    def gotLength(self, length: int | None) -> None:  # noqa: N802 (Twisted's name)
        """Refuse at once a body announced larger than the limit."""
        self.content = io.BytesIO()
        if length is not None and length > self.max_body:
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802
        """Keep the chunk, or refuse the request once the body passes the limit."""
        if self._too_large:
            return
        content = cast(IO[bytes], self.content)
        if content.tell() + len(data) > self.max_body:
            self._refuse()
            return
        content.write(data)

    def _refuse(self) -> None:
        self._too_large = True
        self.content = io.BytesIO()
        body = json.dumps({"error": f"request body larger than {self.max_body} bytes"}).encode()
        transport: Any = self.channel.transport
        transport.write(
            b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
        )
        transport.loseConnection()

    def process(self) -> None:
        """Handle the request unless it was refused."""
        if not self._too_large:
            super().process()

    def connectionLost(self, reason: Failure) -> None:  # noqa: N802
        """Tell whoever waits on this request that nobody will read the answer."""
        super().connectionLost(reason)
        gone, self.gone = self.gone, None
        if gone is not None:
            gone()


class DeadlineChannel(HTTPChannel):
    """
    An HTTP/1.1 channel that drops a connection whose request headers are too slow, and
    that reads no further requests while the answers it wrote are not read (back-pressure:
    twisted.web stops reading only between requests, so a client pipelining many small
    requests in one read without reading a byte would otherwise queue every answer).
    """

    header_deadline = HEADER_DEADLINE
    peer: object = None  # what the site counts this connection under (per-peer cap)
    _deadline: Any = None
    _write_blocked = False  # the transport's write buffer is over its bound
    _held = b""  # received, not yet parsed: waits for the peer to read our answers

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        """Parse C{data} a slice at a time, holding the rest while writes are blocked."""
        if not self._held and not self._write_blocked and len(data) <= FEED_SLICE:
            super().dataReceived(data)  # the usual read: one or a few requests
            return
        self._held += data
        self._feed()

    def _feed(self) -> None:
        while self._held and not self._write_blocked and not self._closing():
            piece, self._held = self._held[:FEED_SLICE], self._held[FEED_SLICE:]
            super().dataReceived(piece)

    def _closing(self) -> bool:
        transport: Any = self.transport
        return transport is None or bool(getattr(transport, "disconnecting", False))

    def pauseProducing(self) -> None:  # noqa: N802
        """The peer does not read our answers: stop reading (and parsing) its requests."""
        super().pauseProducing()
        self._write_blocked = True
        transport: Any = self.transport
        if transport is not None:
            transport.pauseProducing()

    def resumeProducing(self) -> None:  # noqa: N802
        """The peer read our answers: parse what it sent meanwhile, then read on."""
        self._write_blocked = False
        super().resumeProducing()
        self._feed()

    def connectionMade(self) -> None:  # noqa: N802
        """Start the clock for the first request's headers."""
        super().connectionMade()
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.callLater(self.header_deadline, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        transport: Any = self.transport
        if transport is not None:
            transport.abortConnection()

    def allHeadersReceived(self) -> None:  # noqa: N802
        """The headers made it in time."""
        self._disarm()
        super().allHeadersReceived()

    def requestDone(self, request: Request) -> None:  # noqa: N802
        """The next request on this connection gets a deadline of its own."""
        super().requestDone(request)
        if self.persistent and self.transport is not None and not self._requestsPending():
            self._arm()

    def _requestsPending(self) -> bool:  # noqa: N802
        return bool(self.requests)

    def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802
        """No deadline outlives its connection, which no longer counts against the cap."""
        self._disarm()
        self._held = b""
        super().connectionLost(reason)
        site = getattr(self, "site", None)
        if isinstance(site, HardenedSite):
            site.closed(self.peer)


class HardenedSite(Site):
    """
    A Site with L{LimitedRequest}s over L{DeadlineChannel}s, refusing connections past
    C{max_connections} in all or C{max_per_peer} from one peer address (counted here
    rather than by Twisted's ThrottlingFactory, whose wrapper around every connection's
    protocol and transport cost memory per idle connection and a call per write).
    """

    protocol = DeadlineChannel  # type: ignore[assignment]  # plain HTTP/1.1, no HTTP/2
    requestFactory = LimitedRequest

    def __init__(
        self,
        resource: IResource,
        reactor: IReactorTime,
        header_deadline: float,
        access_log: bool = False,
        max_connections: int = MAX_CONNECTIONS,
        max_per_peer: int = MAX_CONNECTIONS_PER_PEER,
    ) -> None:
        super().__init__(resource, timeout=IDLE_TIMEOUT, reactor=reactor, logFormatter=access_line)
        self._header_deadline = header_deadline
        self._access_log = access_log
        self._max_connections = max_connections
        self._max_per_peer = max_per_peer
        self.open_connections = 0
        self.per_peer: dict[object, int] = {}  # open connections by peer host
        self.refused = 0  # connections refused by either cap

    def log(self, request: http.Request) -> None:
        """A line per request only when asked for (--access-log)."""
        if self._access_log:
            super().log(request)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        """A channel with this site's header deadline; None (refused) past either cap."""
        peer = addr[0] if isinstance(addr, tuple) else getattr(addr, "host", None)
        from_peer = self.per_peer.get(peer, 0)
        if self.open_connections >= self._max_connections or (
            peer is not None and from_peer >= self._max_per_peer
        ):
            self.refused += 1
            return None
        channel = super().buildProtocol(addr)
        channel.header_deadline = self._header_deadline
        channel.peer = peer
        self.open_connections += 1
        if peer is not None:
            self.per_peer[peer] = from_peer + 1
        return channel

    def closed(self, peer: object) -> None:
        """A connection from C{peer} closed: it no longer counts against the caps."""
        self.open_connections -= 1
        left = self.per_peer.get(peer, 0) - 1
        if left > 0:
            self.per_peer[peer] = left
        else:
            self.per_peer.pop(peer, None)

    def getContentFile(self, length: int | None) -> IO[bytes]:  # noqa: N802
        """Request bodies stay in memory (they are small and bounded)."""
        return io.BytesIO()


def serve(
    resource: IResource,
    reactor: IReactorTime,
    max_connections: int = MAX_CONNECTIONS,
    header_deadline: float = HEADER_DEADLINE,
    access_log: bool = False,
    max_per_peer: int = MAX_CONNECTIONS_PER_PEER,
) -> HardenedSite:
    """The protocol factory for one listener: a hardened site with connection caps."""
    return HardenedSite(
        resource, reactor, header_deadline, access_log, max_connections, max_per_peer
    )
