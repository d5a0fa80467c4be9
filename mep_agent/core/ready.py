"""
Ready: READY as state the MEP holds for the app (docs/protocol.md, "READY, and a platform
that loses its state"). A MEC 011 v2.2.1 platform refuses every call of the app with 403
"not ready" until confirm_ready, and again after it lost its state; EdgeGallery's mepserver
takes confirm_ready at any time. So READY is confirmed first, once; a 403 "not ready" on any
call means READY was lost, and one confirmation serves every caller that saw it; the keepers
wait on L{Ready.when_ready} before they act. After a termination it is never confirmed again
(the platform ended the app; a restarted container remembers it through core/owned.py).
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_agent.core.errors import NoToken
from mep_agent.core.owned import Owned
from mep_agent.mp1.client import MepClient
from mep_agent.mp1.errors import MepError
from mep_agent.util.retry import Policy, full_jitter, sleep
from mep_agent.util.tasks import supervise

# Least seconds between two confirm_ready after "not ready" answers: a MEP that keeps
# saying "not ready" costs a confirm_ready every few seconds, not a storm.
READY_GAP = 5.0


class Ready(Service):
    """Confirms READY and keeps it confirmed; see the module."""

    name = "ready"
    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        clock: IReactorTime,
        owned: Owned,
        enabled: bool = True,
        required: bool = False,
        policy: Policy | None = None,
    ) -> None:
        """
        @param enabled: --confirm-ready (off: READY is never sent, and never waited for).
        @param required: the platform refuses other calls before READY (the dialect's).
        """
        self._mep = mep
        self._clock = clock
        self._owned = owned
        self.enabled = enabled
        self.required = required and enabled
        self._policy = policy or full_jitter()
        self._task: Deferred[None] | None = None
        self._waiters: list[Deferred[None]] = []
        self._settle_hooks: list[Callable[[bool], object]] = []
        self.confirmed = False
        self.confirmed_at: float | None = None
        self.started_at: float | None = None  # when the last confirmation began
        self.refused: str | None = None  # the MEP's last refusal, while it lasts
        self.ended = owned.terminated is not None  # terminated: never again
        self.confirmations = 0
        self.on_lost: Callable[[], object] = lambda: None  # READY was lost: look around

    def startService(self) -> None:
        """Confirm READY now (unless it is off, or the app was terminated)."""
        super().startService()
        self._start()

    def stopService(self) -> None:
        """Stop confirming; whoever waits goes on (their calls fail, or find no work)."""
        super().stopService()
        if self._task is not None:
            self._task.cancel()
        self._release()

    def end(self) -> None:
        """The platform terminated the app: READY is never confirmed again."""
        self.ended = True
        if self._task is not None:
            self._task.cancel()
        self._release()

    def on_settled(self, hook: Callable[[bool], object]) -> None:
        """C{hook(True)} once confirmed, C{hook(False)} when the MEP refused it."""
        self._settle_hooks.append(hook)

    @property
    def waits(self) -> bool:
        """Whether callers have to wait for READY before anything else (not confirmed yet)."""
        return self.required and not self.confirmed and not self.ended and bool(self.running)

    async def when_ready(self) -> None:
        """Return once READY is confirmed (at once when it is, or need not be waited for)."""
        if not self.waits:
            return
        waiter: Deferred[None] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        self._start()
        await waiter

    async def lost(self) -> None:
        """
        A call was refused "not ready": the MEP lost READY. Confirm it again (one
        confirmation for every caller meanwhile, not sooner than L{READY_GAP} after the
        last) and return once it is confirmed; the caller then tries again at once.
        """
        if not self.enabled or self.ended or not self.running:
            return
        if self.confirmed and self.confirmed_at is not None:
            gap = self.confirmed_at + READY_GAP - self._clock.seconds()
            if gap > 0:
                await sleep(self._clock, gap)
        if self.confirmed:
            self.confirmed = False
            self.on_lost()  # the platform lost its state: what else did it lose?
        if self.confirmed or not self.running:
            return  # confirmed again meanwhile (the sync asked first)
        waiter: Deferred[None] = Deferred(self._waiters.remove)
        self._waiters.append(waiter)
        self._start()
        await waiter

    def maybe_lost(self, since: float) -> None:
        """
        The MEP lost an object made at C{since}: it may have lost READY with it. Confirm
        again, unless a confirmation began after that (one per loss, not one per object).
        """
        if self.started_at is None or self.started_at <= since:
            self.confirmed = False
            self._start()

    def _start(self) -> None:
        if self.enabled and not self.ended and self.running and self._task is None:
            if self.confirmed:
                return
            self.started_at = self._clock.seconds()
            task = supervise(self._clock, "confirm_ready", self._confirm)
            self._task = None if task.called else task  # it may be over already

    def _release(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    async def _confirm(self) -> bool:
        attempt = 0
        try:
            while True:
                try:
                    await self._mep.confirm_ready()
                except (MepError, NoToken) as e:
                    self._failed(e)
                    await sleep(self._clock, self._policy(attempt))
                    attempt += 1
                    continue
                self._confirmed()
                return True
        except CancelledError:
            raise
        finally:
            self._task = None

    def _failed(self, error: MepError | NoToken) -> None:
        if isinstance(error, MepError) and not error.transient and error.status != 409:
            first = self.refused is None
            self.refused = str(error)
            if first:
                self.log.error(
                    "confirm_ready refused: {error}; trying again with back-off",
                    error=str(error),
                    event="app.ready_refused",
                    status=error.status,
                )
            self._settle(False)
            self._release()  # their calls go on (EdgeGallery needs no READY) or back off

    def _confirmed(self) -> None:
        self.confirmed = True
        self.confirmed_at = self._clock.seconds()
        self.refused = None
        self.confirmations += 1
        self._owned.confirmed_ready()
        self.log.info("confirmed READY to the MEP", event="app.ready_confirmed")
        self._release()
        self._settle(True)

    def _settle(self, ok: bool) -> None:
        hooks, self._settle_hooks = self._settle_hooks, []
        for hook in hooks:
            hook(ok)
