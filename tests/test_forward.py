"""Notifications forwarded to the application: retried, never blocking the agent."""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase


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
