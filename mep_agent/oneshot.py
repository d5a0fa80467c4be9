"""ENABLE_WAIT=false: the agent registers everything, confirms READY and exits."""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from .registration import Registrar


class OneShot(Service):
    """Stops the agent once everything is registered (exit 0) or when time is up (1)."""

    log = Logger()

    def __init__(
        self,
        registrar: Registrar,
        clock: IReactorTime,
        timeout: float,
        finish: Callable[[int], None],
    ) -> None:
        """@param finish: stops the process with an exit status."""
        self._registrar = registrar
        self._clock = clock
        self._timeout = timeout
        self._finish = finish

    def startService(self) -> None:
        """Wait for the registrar to settle, within the timeout."""
        super().startService()
        d = self._registrar.when_settled()
        d.addTimeout(self._timeout, self._clock)
        d.addCallbacks(self._settled, self._timed_out)

    def _settled(self, ok: bool) -> None:
        if ok:
            self.log.info("one-shot: registered; exiting", event="oneshot.done")
        else:
            self.log.error("one-shot: the MEP refused confirm_ready", event="oneshot.failed")
        self._finish(0 if ok else 1)

    def _timed_out(self, failure: Failure) -> None:
        self.log.error(
            "one-shot: not registered within {timeout:.0f}s; exiting with 1",
            timeout=self._timeout,
            event="oneshot.failed",
        )
        self._finish(1)
