"""Delivers the emulator's notifications: a JSON POST to each callbackReference."""

from __future__ import annotations

from typing import Any

from attrs import define, field
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_emulator.registry import Notification

log = Logger()


@define
class Notifier:
    """
    POSTs notifications with the injected treq-like client and keeps a record of each
    delivery (for the control API). A callback that is only a path cannot be delivered.

    Each POST leaves on the clock's next turn, after the change that caused it is complete,
    as a platform's notification reaches the app over the network. In memory (StubTreq) a
    POST at once would run the receiver's handler, and the requests it makes, inside the
    registry's change: a termination's REMOVED notices would let an app read the platform
    half-way through its clean-up, which no real platform shows.
    """

    http: Any  # treq.client.HTTPClient or treq.testing.StubTreq
    clock: IReactorTime
    timeout: float = 5.0
    delivered: list[dict[str, Any]] = field(factory=list)

    def __call__(self, notification: Notification) -> None:
        """Deliver one notification (never waits; the outcome is recorded)."""
        entry: dict[str, Any] = {
            "callback": notification.callback,
            "body": notification.body,
            "status": None,
        }
        self.delivered.append(entry)
        del self.delivered[:-200]
        if not notification.callback.startswith(("http://", "https://")):
            entry["status"] = "undeliverable: not an absolute http(s) URL"
            self._tell(notification, False)
            return
        if self.http is None:
            entry["status"] = "recorded"  # in-memory use without a callback target:
            self._tell(notification, True)  # taken as delivered
            return
        self.clock.callLater(0, self._post, notification, entry)

    @staticmethod
    def _tell(notification: Notification, delivered: bool) -> None:
        """Tell the notification's outcome (delivered: a 2xx answer), if anyone asked."""
        if notification.outcome is not None:
            notification.outcome(delivered)

    def _post(self, notification: Notification, entry: dict[str, Any]) -> None:
        d = self.http.post(
            notification.callback, json=notification.body, timeout=self.timeout, reactor=self.clock
        )

        def done(response: Any) -> Any:
            entry["status"] = response.code
            self._tell(notification, 200 <= response.code < 300)
            return response.content()

        def failed(failure: Any) -> None:
            entry["status"] = f"failed: {failure.getErrorMessage()}"
            self._tell(notification, False)
            log.info(
                "notification to {callback} failed: {error}",
                callback=notification.callback,
                error=failure.getErrorMessage(),
            )

        d.addCallback(done).addErrback(failed)
