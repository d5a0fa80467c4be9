"""
Forwarding of the MEP's availability notifications to the application (--app-notify-url):
each is POSTed as it came, in the background, with a few retries and a bounded queue, so
that a slow or absent application never holds up the agent or the MEP's callback.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from treq.client import HTTPClient
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http_headers import Headers

from mep_agent.mp1.http import read_body
from mep_agent.util.retry import sleep

ATTEMPTS = 3  # 0 s, then 1 s and 2 s later
MAX_QUEUED = 100
TIMEOUT = 5.0


class NotificationForwarder:
    """POSTs notifications to one URL, one at a time, oldest dropped past MAX_QUEUED."""

    log = Logger()

    def __init__(self, http: HTTPClient, clock: IReactorTime, url: str) -> None:
        self._http = http
        self._clock = clock
        self._url = url
        self._queue: deque[dict[str, Any]] = deque()
        self._sending = False
        self.forwarded = 0
        self.dropped = 0

    def __call__(self, notification: dict[str, Any]) -> None:
        """Queue C{notification}; never waits."""
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(notification)
        if not self._sending:
            self._sending = True
            ensureDeferred(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                await self._deliver(self._queue.popleft())
        finally:
            self._sending = False

    async def _deliver(self, notification: dict[str, Any]) -> None:
        data = json.dumps(notification).encode()
        error = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await sleep(self._clock, float(attempt))
            try:
                response = await self._http.post(
                    self._url,
                    data=data,
                    headers=Headers({b"Content-Type": [b"application/json"]}),
                    timeout=TIMEOUT,
                    allow_redirects=False,
                    unbuffered=True,
                )
                await read_body(response, 64 * 1024)
                if 200 <= response.code < 300:
                    self.forwarded += 1
                    return
                error = f"HTTP {response.code}"
            except Exception as e:  # the application is not there, or too slow
                error = type(e).__name__
        self.dropped += 1
        self.log.warn(
            "forwarding a notification to {url} failed {attempts} times ({error}); dropped",
            url=self._url,
            attempts=ATTEMPTS,
            error=error,
            event="notification.forward_failed",
        )
