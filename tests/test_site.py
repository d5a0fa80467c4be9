"""Tests of the listener side's access log (off unless --access-log)."""

from __future__ import annotations

import io

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

from mep_agent.web.site import serve


class Ok(Resource):
    """Answers any path (a leaf: no child lookup, no NoResource)."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"ok"


class AccessLogTests(SynchronousTestCase):
    def served_lines(self, access_log: bool, path: bytes = b"/x") -> str:
        """Serve one GET through a listener's factory; what its access log received."""
        factory = serve(Ok(), Clock(), access_log=access_log)
        factory.doStart()
        self.addCleanup(factory.doStop)
        written = io.StringIO()
        factory._logFile = written  # where startFactory pointed twistd's log
        protocol = factory.buildProtocol(("127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 "))
        return written.getvalue()

    def test_off_by_default(self) -> None:
        """Without --access-log a served request writes nothing."""
        self.assertEqual(self.served_lines(access_log=False), "")

    def test_on_writes_a_line_per_request(self) -> None:
        """With --access-log the request is written in the combined log format."""
        lines = self.served_lines(access_log=True).splitlines()
        self.assertEqual(len(lines), 1)
        self.assertIn('"GET /x HTTP/1.1" 200 2', lines[0])

    def test_notification_secret_redacted(self) -> None:
        """The secret path segment of the notification endpoint never reaches the log."""
        secret = "Zm9vYmFyYmF6cXV4cXV1eA"
        text = self.served_lines(
            access_log=True, path=f"/mep-agent/v1/notifications/{secret}?x=1".encode()
        )
        self.assertNotIn(secret, text)
        self.assertIn('"GET /mep-agent/v1/notifications/<redacted>?x=1 HTTP/1.1" 200 2', text)
