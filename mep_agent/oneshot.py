"""ENABLE_WAIT=false: the agent registers everything, confirms READY and exits."""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mep_agent.core.holdings import Holdings


class OneShot(Service):
    """Stops the agent once everything is registered (exit 0) or when time is up (1)."""

    log = Logger()

    def __init__(
        self,
        holdings: Holdings,
        clock: IReactorTime,
        timeout: float,
        finish: Callable[[int], None],
        set_code: Callable[[int], None] = lambda code: None,
        last_error: Callable[[], str | None] = lambda: None,
    ) -> None:
        """
        @param finish: stops the process with an exit status.
        @param set_code: the exit status of a stop that comes from elsewhere (a signal).
        @param last_error: what went wrong last, for the time-out message.
        """
        self._holdings = holdings
        self._clock = clock
        self._timeout = timeout
        self._finish = finish
        self._set_code = set_code
        self._last_error = last_error
        self._done = False

    def startService(self) -> None:
        """Wait for every service to be registered (and READY), within the timeout."""
        super().startService()
        d = self._holdings.when_settled()
        d.addTimeout(self._timeout, self._clock)
        d.addCallbacks(self._settled, self._timed_out)

    def stopService(self) -> None:
        """Stopped before success (a signal): the job failed, and says so by its status."""
        super().stopService()
        if not self._done:
            self._done = True
            self.log.error(
                "one-shot: stopped before everything was registered; exiting with 1",
                event="oneshot.failed",
            )
            self._set_code(1)

    def _settled(self, ok: bool) -> None:
        self._done = True
        if ok:
            self.log.info("one-shot: registered; exiting", event="oneshot.done")
        else:
            self.log.error("one-shot: the MEP refused confirm_ready", event="oneshot.failed")
        self._finish(0 if ok else 1)

    def _timed_out(self, failure: Failure) -> None:
        self._done = True
        self.log.error(
            "one-shot: not registered within {timeout:.0f}s (last error: {error}); exiting with 1",
            timeout=self._timeout,
            error=self._last_error() or "none recorded",
            event="oneshot.failed",
        )
        self._finish(1)
