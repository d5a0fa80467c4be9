"""
TokenKeeper: gets the MEP token at start, refreshes it ahead of expiry, and retries for
as long as it takes, one request at a time. Callers ask for a token with L{get} (waits
for a valid one) or run a MEP call through L{with_token} (one refresh-and-retry on 401).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .mep import MepClient, MepError, Token
from .retry import Alarm, backoff
from .tasks import start_task

T = TypeVar("T")

REFRESH_FRACTION = 0.8  # refresh when 80 % of the lifetime has passed
MIN_REFRESH_DELAY = 0.5
# mepauth locks an AK after 3 bad signatures within 300 s. Retrying a refused AK every
# 160 s puts at most 2 attempts in any such window, so the agent never locks itself out.
REJECTED_RETRY = 160.0


class TokenKeeper(Service):
    name = "token"
    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        clock: IReactorTime,
        delays: Callable[[], Iterator[float]] = backoff,
        rejected_retry: float = REJECTED_RETRY,
    ) -> None:
        self._mep = mep
        self._clock = clock
        self._delays = delays
        self._rejected_retry = rejected_retry
        self._token: Token | None = None
        self._waiters: list[Deferred[Token]] = []
        self._loop: Deferred[None] | None = None
        self._alarm = Alarm(clock, lambda: self.running)
        self.state = "starting"  # starting | valid | failing | rejected | stopped
        self.last_error: str | None = None
        self.refresh_failures = 0
        self.tokens_obtained = 0

    # -- what callers use ----------------------------------------------------------------

    def current(self) -> Token | None:
        """The token, if there is one that has not expired."""
        token = self._token
        if token is not None and self._clock.seconds() < token.expires_at:
            return token
        return None

    def get(self) -> Deferred[Token]:
        """A valid token now, or as soon as one is obtained."""
        token = self.current()
        if token is not None:
            return succeed(token)
        # Waiting never wakes the loop early: callers (app API requests) must not be able
        # to turn a MEP outage into a burst of token requests past the backoff.
        d: Deferred[Token] = Deferred(lambda d: self._waiters.remove(d))
        self._waiters.append(d)
        return d

    def invalidate(self, token: Token) -> None:
        """The MEP refused this token (401): never use it again, fetch a new one now."""
        if self._token is token:
            self._token = None
            self._alarm.wake()

    async def with_token(self, call: Callable[[Token], Awaitable[T]]) -> T:
        """Run a MEP call with the token; on 401 refresh once and retry once."""
        token = await self.get()
        try:
            return await call(token)
        except MepError as e:
            if e.status != 401:
                raise
            self.log.info(
                "MEP refused the token for {operation}; refreshing",
                operation=e.operation,
                event="token.refused",
            )
            self.invalidate(token)
            return await call(await self.get())

    # -- the loop ------------------------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self._loop = start_task(self._run(), "token")

    def stopService(self) -> None:
        super().stopService()
        self.state = "stopped"
        if self._loop is not None:
            self._loop.cancel()
        for waiter in list(self._waiters):
            waiter.cancel()

    async def _run(self) -> None:
        delays = self._delays()
        while self.running:
            try:
                token = await self._mep.fetch_token()
            except MepError as e:
                await self._alarm.sleep(self._failed(e, delays))
                continue
            except CancelledError:
                raise
            except Exception:
                self.refresh_failures += 1
                self.log.failure("token request failed unexpectedly")
                await self._alarm.sleep(next(delays))
                continue
            delays = self._delays()
            self._obtained(token)
            await self._alarm.sleep(max(MIN_REFRESH_DELAY, token.expires_in * REFRESH_FRACTION))

    def _failed(self, error: MepError, delays: Iterator[float]) -> float:
        self.refresh_failures += 1
        self.last_error = str(error)
        if error.status in (401, 403) or (error.status is not None and not error.transient):
            self.state = "rejected"
            self.log.error(
                "MEP refused the credentials ({error}); retrying in {delay:.0f}s (AK/SK or "
                "APPINSTID wrong, or the AK locked)",
                error=str(error),
                delay=self._rejected_retry,
                event="token.rejected",
                status=error.status,
            )
            return self._rejected_retry
        delay = next(delays)
        self.state = "failing" if self.current() is None else self.state
        self.log.warn(
            "token request failed ({error}); retrying in {delay:.1f}s",
            error=str(error),
            delay=delay,
            event="token.failed",
            status=error.status,
        )
        return delay

    def _obtained(self, token: Token) -> None:
        first = self.tokens_obtained == 0
        self._token = token
        self.tokens_obtained += 1
        self.state = "valid"
        self.last_error = None
        self.log.info(
            "token {what}; expires in {expires_in:.0f}s",
            what="obtained" if first else "refreshed",
            expires_in=token.expires_in,
            event="token.obtained" if first else "token.refreshed",
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(token)
