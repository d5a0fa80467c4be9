"""
The HTTP server side of both listeners, hardened: request bodies are refused from their
Content-Length (or while they stream) beyond a limit and never spooled to disk, a
request's headers must arrive within a deadline, idle connections are closed, the number
of open connections is capped in all and per peer address (so one abusive peer cannot
starve the kubelet's probes), and a connection whose answers are not read stops being read
(so a client pipelining requests without reading costs a bounded amount of memory).

Every refusal is an answer in the agent's JSON error shape (jsonweb): a connection past a cap
gets a 503 with Retry-After, a request the HTTP parser refuses a 400, 414 or 431, a body
over the limit a 413; each one closes the connection and echoes nothing of the request.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import IO, Any, cast

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
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
# RFC 9110's reason phrases (twisted.web.http.RESPONSES has no 431).
REASONS = {
    400: b"Bad Request",
    413: b"Payload Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
RETRY_AFTER = 1  # seconds a client turned away by a cap is asked to wait
# RFC 9110's token (a method, a header name) and RFC 9112's request line, as twisted.web
# checks them, except that a request target of bytes 0x7f-0xb0 is refused here too (it
# tests "c > 176", an octal 0o176 read as decimal).
TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
FRAMING = {b"content-length": "Content-Length", b"transfer-encoding": "Transfer-Encoding"}
# A header line that passes without a closer look: a name, a value without NUL, CR or LF,
# and not one of the two headers that frame the body.
PLAIN_HEADER = re.compile(
    rb"(?!(?i:content-length|transfer-encoding):)[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00\r\n]*"
)
REQUEST_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+ [\x21-\x7e]+ HTTP/1\.[01]")


def bad_request_line(line: bytes) -> bool:
    """Whether twisted.web's parser would refuse C{line} as a request line (or we do)."""
    return REQUEST_LINE.fullmatch(line) is None


def closing_answer(status: int, fields: dict[str, Any], *headers: bytes) -> bytes:
    """
    A whole HTTP/1.1 answer that ends its connection: C{status}, C{fields} as the JSON body
    (jsonweb's shape, C{{"error": ...}}) and the extra header lines C{headers}. For refusals
    made before a request exists or instead of it, so it needs no Request.
    """
    body = json.dumps(fields).encode()
    head = [
        b"HTTP/1.1 %d %s" % (status, REASONS[status]),
        b"Content-Type: application/json",
        b"Cache-Control: no-store",
        b"Content-Length: %d" % len(body),
        b"Connection: close",
        *headers,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def turned_away(message: str) -> bytes:
    """The 503 a connection past a cap gets, written once at import: a constant."""
    retry = b"Retry-After: %d" % RETRY_AFTER
    return closing_answer(503, {"error": message}, retry)


PEER_FULL = turned_away("too many connections from this address; retry later")
SITE_FULL = turned_away("too many connections to the agent; retry later")


def access_line(timestamp: str, request: http.Request) -> str:
    """twisted.web's combined log format, with the notification secret redacted."""
    return _NOTIFY_SECRET.sub(r"\1<redacted>", combinedLogFormatter(timestamp, request))


class LimitedRequest(Request):
    """A request whose body is kept in memory up to L{MAX_BODY} bytes, else refused."""

    max_body = MAX_BODY
    _too_large = False
    #: Called once if the connection is lost before the answer (blocking.when_gone): a
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
        message = f"request body larger than {self.max_body} bytes"
        transport: Any = self.channel.transport
        transport.write(closing_answer(413, {"error": message}))
        transport.loseConnection()

    def process(self) -> None:
        """Handle the request unless it was refused."""
        if not self._too_large:
            super().process()

    def connectionLost(self, reason: Failure) -> None:
        """Tell whoever waits on this request that nobody will read the answer."""
        super().connectionLost(reason)
        gone, self.gone = self.gone, None
        if gone is not None:
            gone()


class Turnaway(Protocol):
    """
    A connection past a cap: answered a constant JSON 503 with Retry-After as soon as it is
    accepted, then closed; nothing it sends is parsed, and it holds no place under the caps.

    Why an answer rather than a wait for a free place: a connection that waits holds a
    descriptor and a protocol for as long as the peer likes, and the peer filling the caps
    is the one that would fill the wait too, until the process runs out of descriptors and
    accept() fails for everyone, the kubelet's probes included (not accepting at all is no
    better: the listen backlog is shared by every peer). A 503 with Retry-After is HTTP's
    own word for "overloaded, come back", which clients and proxies act on; it costs one
    write of bytes built at import, no parsing, no timer, and the connection is gone as soon
    as the kernel has the bytes. The request the peer sent stays unread, so the kernel may
    follow the answer with a reset rather than a plain close; the answer (one small segment)
    leaves first, and clients read it (benchmarks.refusals: all 1,744 of 1,744 turned away).
    A lingering close (Go's net/http waits 500 ms) would let the flood hold descriptors.
    """

    def __init__(self, answer: bytes) -> None:
        self.answer = answer

    def connectionMade(self) -> None:
        """Answer and close at once (the peer's request, if any, is never read)."""
        transport: Any = self.transport
        transport.write(self.answer)
        transport.loseConnection()


class AnsweringChannel(HTTPChannel):
    """
    An HTTP/1.1 channel that answers, in JSON, every request head its parser refuses: 400
    for a malformed request line or header, conflicting framing (Content-Length with
    Transfer-Encoding: request smuggling) or more than C{maxHeaders} headers, 414 for a
    request line over C{MAX_LENGTH}, 431 for a header line over C{MAX_LENGTH} or headers
    over C{totalHeadersSize} in all. twisted.web closes the connection without a word for
    the too-long lines and writes a bare 400 for the rest, through a private method; so
    each head is checked here first, with twisted.web's own rules, and only a head that
    passes reaches twisted.web's parser (tests.test_refusals.AgreementTests holds the two
    together). Stricter in two places: a folded header line (obsolete; RFC 9112 lets a
    server refuse it) and a request target with a byte in 0x7f-0xb0. A chunked body that
    turns out malformed is still twisted.web's bare 400: checking it would take a second
    chunked decoder on every chunked body.
    """

    _answered = False  # a refusal was written: the rest of the connection is not parsed
    _in_head = False  # the request line was taken: header lines come next
    _blank_taken = False  # the one blank line twisted.web takes before a request line
    _head_bytes = 0  # the head's length so far, counted as twisted.web counts it
    _header_count = 0
    _framing = b""  # the Content-Length or chunked Transfer-Encoding seen (its name)

    def refuse(self, status: int, error: str, **fields: str) -> None:
        """Answer C{status} with C{{"error": error, ...fields}} and close; parse no more."""
        self._answered = True
        self._in_head = False  # (lineReceived's slow path sees _answered)
        transport: Any = self.transport
        if transport is not None:
            transport.write(closing_answer(status, dict({"error": error}, **fields)))
            self.loseConnection()

    def lineReceived(self, line: bytes) -> None:  # noqa: N802 (Twisted's name)
        """
        Parse at once a line of a request head that is plainly good (a request line, a
        header line that does not frame the body, the head's end); look closer at any other
        line, and refuse it where twisted.web would (or where we do). A plain line costs a
        regular expression more than twisted.web alone (about 1 us each, benchmarks.api_profile).
        """
        size = self._head_bytes = self._head_bytes + len(line)
        if size > self.totalHeadersSize or self._answered:
            plain = False
        elif not self._in_head:
            plain = REQUEST_LINE.fullmatch(line) is not None and bool(self.persistent)
            self._in_head = plain
        elif line:
            plain = PLAIN_HEADER.fullmatch(line) is not None and (
                self._header_count < self.maxHeaders
            )
            self._header_count += plain
        else:  # the head's end: the next line (after its body) is the next request line
            plain, self._in_head, self._blank_taken = True, False, False
            self._head_bytes = self._header_count = 0
            self._framing = b""
        if plain or not self.line_problem(line):
            HTTPChannel.lineReceived(self, line)

    def line_problem(self, line: bytes) -> bool:
        """Refuse C{line} (True) where twisted.web would refuse it, or where we do."""
        if self._answered:
            return True
        if self._head_bytes > self.totalHeadersSize:
            self.refuse(431, f"request headers larger than {self.totalHeadersSize} bytes")
            return True
        if self._in_head:
            problem = self.header_problem(line)
        elif not self.persistent:
            problem = None  # twisted.web drops what follows the last request
        elif not line and not self._blank_taken:
            self._blank_taken = True  # one blank line may come before a request line
            problem = None
        else:
            problem = "malformed request line" if bad_request_line(line) else None
            self._in_head = problem is None
        if problem is not None:
            self.refuse(400, "bad request", reason=problem)
            return True
        return False

    def header_problem(self, line: bytes) -> str | None:
        """Why twisted.web would refuse this header line (or we do), or None."""
        if line[:1] in (b" ", b"\t"):  # obsolete line folding, which RFC 9112 lets us refuse
            return "folded header line"
        self._header_count += 1
        name, colon, value = line.partition(b":")
        if not colon or not TOKEN.fullmatch(name):
            return "malformed header line"
        value = value.strip(b" \t")
        if b"\x00" in value or b"\r" in value or b"\n" in value:
            return "malformed header value"
        name = name.lower()
        if name == b"content-length" and not value.isdigit():
            return "malformed Content-Length"
        coding = value.lower() if name == b"transfer-encoding" else None
        if coding is not None and coding not in (b"chunked", b"identity"):
            return "unsupported Transfer-Encoding (only chunked)"
        if name == b"content-length" or coding == b"chunked":  # it frames the body
            if self._framing == name:
                return f"more than one {FRAMING[name]}"
            if self._framing:
                return "Content-Length together with Transfer-Encoding"
            self._framing = name
        if self._header_count > self.maxHeaders:
            return f"more than {self.maxHeaders} header fields"
        return None

    def lineLengthExceeded(self, line: bytes) -> None:  # noqa: N802
        """A line over MAX_LENGTH: 414 for the request line, 431 for a header line."""
        if self._answered:
            return
        if self._in_head:
            self.refuse(431, f"a header line longer than {self.MAX_LENGTH} bytes")
        else:
            self.refuse(414, f"request line longer than {self.MAX_LENGTH} bytes")


class DeadlineChannel(AnsweringChannel):
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

    def dataReceived(self, data: bytes) -> None:
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

    def connectionMade(self) -> None:
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

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """No deadline outlives its connection, which no longer counts against the cap."""
        self._disarm()
        self._held = b""
        super().connectionLost(reason)
        site = getattr(self, "site", None)
        if isinstance(site, HardenedSite):
            site.closed(self.peer)


class HardenedSite(Site):
    """
    A Site with L{LimitedRequest}s over L{DeadlineChannel}s, answering a JSON 503 to
    connections past C{max_connections} in all or C{max_per_peer} from one peer address
    (L{Turnaway}; counted here rather than by Twisted's ThrottlingFactory, whose wrapper
    around every connection's protocol and transport cost memory per idle connection and a
    call per write).
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

    def buildProtocol(self, addr: Any) -> Any:
        """A channel with this site's header deadline; a L{Turnaway} past either cap."""
        peer = addr[0] if isinstance(addr, tuple) else getattr(addr, "host", None)
        from_peer = self.per_peer.get(peer, 0)
        if self.open_connections >= self._max_connections:
            self.refused += 1
            return Turnaway(SITE_FULL)
        if peer is not None and from_peer >= self._max_per_peer:
            self.refused += 1
            return Turnaway(PEER_FULL)
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
