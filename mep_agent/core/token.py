"""
TokenKeeper: the one token authority. It gets the MEP token at start, refreshes it
ahead of expiry, replaces it when the MEP refuses it, and retries for as long as it
takes — one request at a time, whoever asks.

It never causes mepauth's lock-out (3 refused signatures within 300 s lock an AK for
900 s): it keeps its own count of refused signatures and never sends a third within the
window, and a locked AK is waited out without further attempts.

It is the Mp1 client's L{TokenSource}: the client waits for a token with a deadline
(L{TokenKeeper.get}) and reports one the MEP refused (L{TokenKeeper.invalidate}); nothing
else in the agent handles tokens, but the application API, which serves the current one.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mep_agent.mp1.errors import MepError, NoToken, Verdict
from mep_agent.mp1.tokens import Token
from mep_agent.util.retry import Alarm, Delays, backoff, sleep
from mep_agent.util.tasks import supervise

#: One token request; its argument: a caller that cannot wait needs the token by then
#: (the request then goes before the others, core/budget.py), else None.
Fetch = Callable[[float | None], Awaitable[Token]]

REFRESH_FRACTION = 0.8  # refresh when 80 % of the lifetime has passed
MIN_REQUEST_GAP = 1.0  # never two token requests closer than this
# mepauth counts refused signatures in a window of 300 s and locks the AK for 900 s at
# the third. The agent allows itself two within any 310 s (10 s for clocks and latency
# to differ), so it can never lock itself out.
REFUSAL_WINDOW = 310.0
REFUSALS_PER_WINDOW = 2
LOCK_DURATION = 900.0
# After a refused signature: 160 s puts at most 2 attempts in any 300 s window.
REJECTED_RETRY = 160.0
# A token refused within this many seconds of being obtained makes the next forced
# refresh back off (a MEP that refuses every new token must not be asked every second).
YOUNG_TOKEN = 60.0


class TokenState(enum.Enum):
    """Where the token stands, as /status, /readyz and metrics show it."""

    STARTING = "starting"  # no token yet, first request under way
    VALID = "valid"  # an unexpired token the MEP has not refused
    EXPIRED = "expired"  # the token's lifetime ran out before a new one came: renewing
    FAILING = "failing"  # requests fail (network, 5xx, malformed answers): backing off
    REJECTED = "rejected"  # mepauth refused the signature: AK/SK/APPINSTID wrong
    LOCKED = "locked"  # mepauth locked the AK: waiting the lock out
    STOPPED = "stopped"  # the agent is stopping, or the app was terminated (retire)


class TokenKeeper(Service):
    """The agent's one source of tokens; see the module docstring."""

    name = "token"
    log = Logger()

    def __init__(
        self,
        fetch: Fetch,
        clock: IReactorTime,
        delays: Delays = backoff,
        rejected_retry: float = REJECTED_RETRY,
    ) -> None:
        """@param fetch: one token request (signed AK/SK, OAuth2, or none)."""
        self._refusal_hooks: list[Callable[[], object]] = []
        self._new_credentials = False  # set when credentials change during a request
        self._fetch = fetch
        self._hurry_until = 0.0  # a caller that cannot wait needs a token by then
        self._clock = clock
        self._delays = delays
        self._rejected_retry = rejected_retry
        self._token: Token | None = None
        self._waiters: list[Deferred[Token]] = []
        self._verifiers: list[Deferred[bool]] = []  # asked before the next request is sent
        self._resting = False  # asleep until the refresh (not backing off a failure)
        self._loop: Deferred[None] | None = None
        self._alarm = Alarm(clock)
        self._state = TokenState.STARTING
        self._refusals: deque[float] = deque()  # when mepauth refused our signature
        self._locked_until = 0.0
        self._last_request: float | None = None
        self._forced_delays = delays()
        self._forced_gap = MIN_REQUEST_GAP
        self._failure_delays = delays()
        self.last_error: str | None = None
        self._previous_error: str | None = None
        self._repeats = 0
        self.refresh_failures = 0
        self.tokens_obtained = 0
        self.requests_sent = 0

    # -- what callers use ----------------------------------------------------------------

    @property
    def state(self) -> TokenState:
        """VALID while there is a usable token, else why there is none."""
        if self._state is TokenState.STOPPED:
            return self._state
        if self.current() is not None:
            return TokenState.VALID
        if self._state is TokenState.VALID:  # never "valid" next to "no valid token"
            return TokenState.EXPIRED
        return self._state

    def current(self) -> Token | None:
        """The token, if there is one that has not expired and was not refused."""
        token = self._token
        if token is not None and self._clock.seconds() < token.expires_at:
            return token
        return None

    async def get(self, timeout: float, hurry: bool = False) -> Token:
        """
        A valid token now, or as soon as the keeper obtains one, within C{timeout}
        seconds; else L{NoToken}. Waiting never makes the keeper ask early (app
        requests must not turn a MEP outage into a burst of token requests) unless
        C{hurry}: then a backoff wait is cut short, still within the request gap, the
        refusal budget and a lock (deregistration at stop cannot wait a minute).
        """
        token = self.current()
        if token is not None:
            return token
        if not self.running:
            raise self._unavailable("the agent is stopping")
        if self._state is TokenState.STOPPED:
            raise self._unavailable("the app was terminated")
        if hurry:
            self._hurry_until = max(self._hurry_until, self._clock.seconds() + timeout)
            self._alarm.wake()
            token = self.current()  # the loop may have got one at once
            if token is not None:
                return token
        d: Deferred[Token] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        d.addTimeout(timeout, self._clock)
        try:
            return await d
        except TimeoutError:
            raise self._unavailable(self.last_error or "timed out waiting for a token") from None

    def require(self) -> Token:
        """The valid token now, or L{NoToken} at once."""
        token = self.current()
        if token is None:
            raise self._unavailable(self.last_error or self._no_token_reason())
        return token

    def _no_token_reason(self) -> str:
        if self.state is TokenState.EXPIRED:
            return "the token expired before a new one came; renewing it is under way"
        return "renewing it is under way"

    def _unavailable(self, reason: str) -> NoToken:
        return NoToken(self.tokens_obtained == 0, self.state.value, reason)

    def verify(self) -> Deferred[bool]:
        """
        Whether mepauth still accepts the credentials, by a token request sent from now on
        (never the cached token: a token lives on after its AK/SK are deleted): True when it
        gives a token, False when it refuses the signature. Any other failure (a timeout, a
        5xx, a 429, a lock) says nothing of the credentials: the request is retried as every
        token request is (the back-off, the gap, the refusal budget, the request budget) and
        the answer waits for it. Callers meanwhile share the one request.
        """
        d: Deferred[bool] = Deferred(self._forget_verifier)
        self._verifiers.append(d)
        if self._resting:  # a token is held: ask now (the gap still applies), not at refresh
            self._alarm.wake()
        return d

    def _forget_verifier(self, d: Deferred[bool]) -> None:
        if d in self._verifiers:
            self._verifiers.remove(d)

    def on_refusal(self, hook: Callable[[], object]) -> None:
        """
        C{hook()} is called when the MEP refuses the signature (the key may have been
        rotated: core/credential_files.py reads the files again).
        """
        self._refusal_hooks.append(hook)

    def credentials_changed(self) -> None:
        """
        New credentials (their files changed): the refusals and the lock of the old key do
        not count for the new one (mepauth counts per key), and a keeper waiting because of
        them, or without a token, asks with the new ones at once.
        """
        self._refusals.clear()
        self._locked_until = 0.0
        self._new_credentials = True
        if self._state in (TokenState.REJECTED, TokenState.LOCKED) or self.current() is None:
            self._alarm.wake()

    def invalidate(self, token: Token, error: MepError) -> None:
        """The MEP refused C{token}: never use or serve it again; replace it soon."""
        if self._token is not token:
            return  # another caller already reported it
        self._token = None
        now = self._clock.seconds()
        if now - token.obtained_at < YOUNG_TOKEN:
            self._forced_gap = max(MIN_REQUEST_GAP, next(self._forced_delays))
        else:
            self._forced_delays = self._delays()
            self._forced_gap = MIN_REQUEST_GAP
        self._state = TokenState.FAILING
        self.log.warn(
            "the MEP refused the token ({error}); getting a new one",
            error=str(error),
            event="token.refused",
            status=error.status,
        )
        self._alarm.wake()

    def retire(self) -> None:
        """
        The platform terminated the app (termination.py): nothing more is asked of mepauth,
        which deletes the AK/SK with the app (every request would be refused, one every
        160 s for good); a token held is still served until it expires.
        """
        if self._state is TokenState.STOPPED:
            return
        self._state = TokenState.STOPPED
        if self._loop is not None:
            self._loop.cancel()
            self._loop = None
        _answer(self._verifiers, False)  # nobody makes anything anew now
        self._verifiers = []
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(Failure(self._unavailable("the app was terminated")))
        self.log.info(
            "the app was terminated: no more token requests (a token held is served until "
            "it expires)",
            event="token.retired",
        )

    # -- the loop ------------------------------------------------------------------------

    def startService(self) -> None:
        """Start getting and refreshing the token."""
        super().startService()
        self._loop = supervise(self._clock, "token", self._step)

    def stopService(self) -> None:
        """Stop; callers still waiting are told there will be no token."""
        super().stopService()
        self._state = TokenState.STOPPED
        if self._loop is not None:
            self._loop.cancel()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(Failure(self._unavailable("the agent is stopping")))

    async def _step(self) -> bool:
        await self._until_allowed()
        self._last_request = self._clock.seconds()
        self.requests_sent += 1
        self._new_credentials = False
        verifiers, self._verifiers = self._verifiers, []  # answered by this request
        try:
            now = self._clock.seconds()
            token = await self._fetch(self._hurry_until if now < self._hurry_until else None)
        except CancelledError:  # stopping or retired: whoever stops answers the checks
            self._verifiers = verifiers + self._verifiers
            raise
        except MepError as e:
            if not self.running:  # the stop cancelled it (the wire says "timed out"): done
                self._verifiers = verifiers + self._verifiers
                return True
            delay = self._failed(e, checking=bool(verifiers))
            if e.verdict is Verdict.CREDENTIALS_REFUSED:
                _answer(verifiers, False)
            else:  # says nothing of the credentials: the next request answers them
                self._verifiers = verifiers + self._verifiers
            if not self._new_credentials:  # they may have come at once (on_refusal)
                await self._alarm.sleep(delay)
            return False
        self._obtained(token)
        _answer(verifiers, True)
        if self._verifiers:
            return False  # asked while this request was under way: another one, after the gap
        self._resting = True
        try:
            await self._alarm.sleep(max(MIN_REQUEST_GAP, token.expires_in * REFRESH_FRACTION))
        finally:
            self._resting = False
        if self._token is token:  # lived its life unrefused: forced refreshes may be quick
            self._forced_delays = self._delays()
            self._forced_gap = MIN_REQUEST_GAP
        return False

    async def _until_allowed(self) -> None:
        """Wait until the next request keeps every promise: gap, refusal budget, lock."""
        now = self._clock.seconds()
        while self._refusals and now - self._refusals[0] >= REFUSAL_WINDOW:
            self._refusals.popleft()
        allowed = self._locked_until
        if self._last_request is not None:
            allowed = max(allowed, self._last_request + self._forced_gap)
        if len(self._refusals) >= REFUSALS_PER_WINDOW:
            allowed = max(allowed, self._refusals[0] + REFUSAL_WINDOW)
        if allowed > now:
            await sleep(self._clock, allowed - now)

    def _failed(self, error: MepError, checking: bool = False) -> float:
        """
        Record a failed request; the seconds to wait before the next. C{checking}: the
        request answers a L{verify} (the MEP lost what the agent held).
        """
        self.refresh_failures += 1
        self.last_error = str(error)
        if error.verdict is Verdict.CREDENTIALS_REFUSED:
            self._refusals.append(self._clock.seconds())
            self._state = TokenState.REJECTED
            for hook in self._refusal_hooks:
                hook()
            if checking:  # expected where a termination deletes them: not a user's mistake
                # No "retrying in": the agent leaves (termination.unannounced) and retires
                # this keeper; only with --termination off is the request tried again.
                self.log.warn(
                    "the MEP refused the AK/SK when the agent checked them after the MEP "
                    "lost what it held ({error}): the platform deleted them, as its "
                    "termination does",
                    error=str(error),
                    event="token.check_refused",
                    status=error.status,
                )
                return self._rejected_retry
            self.log.error(
                "the MEP refused the AK/SK signature ({error}); retrying in {delay:.0f}s. "
                "Check AK, SK and APPINSTID: mepauth locks the AK for 900s after 3 refused "
                "signatures within 300s, and the agent never sends a third",
                error=str(error),
                delay=self._rejected_retry,
                event="token.rejected",
                status=error.status,
            )
            return self._rejected_retry
        if error.verdict is Verdict.LOCKED:
            self._state = TokenState.LOCKED
            self._locked_until = self._clock.seconds() + LOCK_DURATION
            self.log.error(
                "the AK is locked by the MEP for up to {lock:.0f}s after 3 refused signatures "
                "within 300s; check AK/SK. Waiting it out without further attempts",
                lock=LOCK_DURATION,
                event="token.locked",
                status=error.status,
            )
            return LOCK_DURATION
        delay = next(self._failure_delays)
        self._state = TokenState.FAILING
        # The same failure again and again (a TLS mistake, the MEP down) is logged once,
        # then every tenth time, not once per retry.
        self._repeats = self._repeats + 1 if str(error) == self._previous_error else 0
        self._previous_error = str(error)
        if self._repeats % 10 == 0:
            self.log.warn(
                "token request failed ({error}); retrying in {delay:.1f}s{again}",
                error=str(error),
                delay=delay,
                again=f" (the same failure {self._repeats + 1} times)" if self._repeats else "",
                event="token.failed",
                status=error.status,
            )
        return delay

    def _obtained(self, token: Token) -> None:
        first = self.tokens_obtained == 0
        self._token = token
        self.tokens_obtained += 1
        self._state = TokenState.VALID
        self._refusals.clear()  # mepauth clears its counter on success too
        self._failure_delays = self._delays()
        self.last_error = self._previous_error = None
        self.log.info(
            "token {what}; expires in {expires_in}s",
            what="obtained" if first else "refreshed",
            expires_in=token.expires_in,
            event="token.obtained" if first else "token.refreshed",
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(token)


def _answer(verifiers: list[Deferred[bool]], accepted: bool) -> None:
    for d in verifiers:
        if not d.called:  # cancelled meanwhile
            d.callback(accepted)
