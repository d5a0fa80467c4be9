"""
The HTTP server side of both listeners, hardened: request bodies are refused from their
Content-Length (or while they stream) beyond a limit and never spooled to disk, a
request's headers must arrive within a deadline, idle connections are closed, and the
number of open connections is capped.
"""

from __future__ import annotations

import io
import json
import re
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ThrottlingFactory
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import HTTPChannel, combinedLogFormatter
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from .jsonweb import MAX_BODY

HEADER_DEADLINE = 10.0  # seconds for a request line and headers to arrive
IDLE_TIMEOUT = 60.0  # seconds a keep-alive connection may sit idle
MAX_CONNECTIONS = 1024
# The path segment that authenticates the MEP's notifications (ops.NOTIFICATIONS) is a secret.
_NOTIFY_SECRET = re.compile(r"(/notifications/)[^\s\"?/]+")


def access_line(timestamp: str, request: http.Request) -> str:
    """twisted.web's combined log format, with the notification secret redacted."""
    return _NOTIFY_SECRET.sub(r"\1<redacted>", combinedLogFormatter(timestamp, request))


class LimitedRequest(Request):
    """A request whose body is kept in memory up to L{MAX_BODY} bytes, else refused."""

    max_body = MAX_BODY
    _too_large = False

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


class DeadlineChannel(HTTPChannel):
    """An HTTP/1.1 channel that drops a connection whose request headers are too slow."""

    header_deadline = HEADER_DEADLINE
    _deadline: Any = None

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
        """No deadline outlives its connection."""
        self._disarm()
        super().connectionLost(reason)


class HardenedSite(Site):
    """A Site with L{LimitedRequest}s over L{DeadlineChannel}s."""

    protocol = DeadlineChannel  # type: ignore[assignment]  # plain HTTP/1.1, no HTTP/2
    requestFactory = LimitedRequest

    def __init__(
        self,
        resource: IResource,
        reactor: IReactorTime,
        header_deadline: float,
        access_log: bool = False,
    ) -> None:
        super().__init__(resource, timeout=IDLE_TIMEOUT, reactor=reactor, logFormatter=access_line)
        self._header_deadline = header_deadline
        self._access_log = access_log

    def log(self, request: http.Request) -> None:
        """A line per request only when asked for (--access-log)."""
        if self._access_log:
            super().log(request)

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802
        """A channel with this site's header deadline."""
        channel = super().buildProtocol(addr)
        channel.header_deadline = self._header_deadline
        return channel

    def getContentFile(self, length: int | None) -> IO[bytes]:  # noqa: N802
        """Request bodies stay in memory (they are small and bounded)."""
        return io.BytesIO()


def serve(
    resource: IResource,
    reactor: IReactorTime,
    max_connections: int = MAX_CONNECTIONS,
    header_deadline: float = HEADER_DEADLINE,
    access_log: bool = False,
) -> ThrottlingFactory:
    """The protocol factory for one listener: a hardened site behind a connection cap."""
    site = HardenedSite(resource, reactor, header_deadline, access_log)
    return ThrottlingFactory(site, maxConnectionCount=max_connections)
