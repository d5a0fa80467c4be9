"""
Budget: the agent's one limiter of requests to the MEP. A platform's gateway limits every
app (EdgeGallery's Kong: 1,000 requests a minute on the Mp1 routes, and all apps' tokens map
to one Kong consumer, so that limit is shared by every app on the platform); an agent that
answers a refusal by asking again at once locks every app out. So (docs/architecture.md,
"The request budget"):

* Heartbeats are not drawn from the budget: they go at their own schedule, at most two per
  liveness interval per instance whatever the MEP answers (liveness.py).
* Every other request -- tokens, READY, registrations, repairs, updates, deletions, syncs,
  subscriptions -- takes one token from a bucket that holds a burst in proportion to the
  objects the agent keeps (start-up is not slowed) and refills at C{rate} a second
  (--request-rate, 1 by default). In any C{t} seconds they number at most burst + rate x t,
  whatever the MEP answers.
* A 429 or 503 pauses the budget for everyone: for the answer's Retry-After when it gives
  one; without one, a 429 until the next calendar minute has begun (a gateway's fixed window:
  Kong counts per calendar minute and, as EdgeGallery configures it, sends no Retry-After)
  and a random part of its first L{WINDOW_SPREAD} seconds, a 503 for a growing, jittered
  pause. The bucket holds at most one token when a pause ends: one request, then the rate.
  Heartbeats wait out a pause unless that would make them miss their liveness deadline
  (liveness.py).
* The application's discovery requests take no token (the cache and the coalescing bound
  them) but are not sent during a pause: the application gets a stale answer or a 503 at once.
* Urgent calls (deletions at stop or at a termination, confirm_termination) take no token
  and never queue: they wait out a pause that ends in their time, else go at the last moment.
  Clean-up (the deletion of what a dead run left) queues behind every other request: what
  the application needs goes first (a registration the full platform refused goes as soon as
  one leftover is gone, not after all of them).
"""

from __future__ import annotations

import math
import random
from collections import Counter, deque
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.mp1.gate import Pace
from mep_agent.util.retry import full_jitter

DEFAULT_RATE = 1.0  # requests a second besides heartbeats (--request-rate)
BURST_BASE = 8  # a token, READY, a sync's reads ...
BURST_PER_OBJECT = 2  # ... and, per object kept, its creation and one repair
MIN_PAUSE = 1.0
MAX_PAUSE = 300.0  # a longer Retry-After is taken as this
LAST_CHANCE = 1.0  # an urgent call goes this long before its deadline, paused or not
MINUTE = 60.0
#: After a 429 without Retry-After, agents resume at random over this many seconds of the
#: gateway's next window, not all in its first second.
WINDOW_SPREAD = 10.0
#: Sent at their own schedule (liveness.py), never queued here.
SCHEDULED = frozenset({"heartbeat"})
#: The application's: no token, but never sent during a pause.
APPLICATION = frozenset({"discovery"})
THROTTLING = (429, 503)


def burst_for(objects: int) -> float:
    """The bucket's size for an agent that keeps C{objects} objects at the MEP."""
    return float(BURST_BASE + BURST_PER_OBJECT * max(0, objects))


class Budget:
    """The token bucket, the pause, and the queue of requests waiting; see the module."""

    def __init__(
        self,
        clock: IReactorTime,
        rate: float = DEFAULT_RATE,
        burst: float = BURST_BASE,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._clock = clock
        self.rate = rate
        self.burst = burst
        self._rng = rng
        self._tokens = burst
        self._stamp = clock.seconds()
        self._queue: deque[Deferred[None]] = deque()
        self._later: deque[Deferred[None]] = deque()  # clean-up: after everything else
        self._timer: IDelayedCall | None = None
        self._unavailable = full_jitter(initial=2.0, maximum=30.0, rng=rng)
        self._throttled_in_a_row = 0
        self.paused_until = 0.0
        self.sent: Counter[str] = Counter()  # by how they were admitted
        self.throttled = 0  # 429 and 503 answers
        self.pauses = 0
        self.waited = 0.0  # seconds requests spent queued, in all

    # -- the gate (mp1/gate.py) ----------------------------------------------------------

    def admit(self, operation: str, pace: Pace) -> Deferred[None]:
        """Fire when C{operation} may go; MepError for an application request in a pause."""
        now = self._clock.seconds()
        urgent_until = pace.urgent_until
        if operation in SCHEDULED:
            self.sent["scheduled"] += 1
            return succeed(None)
        if operation in APPLICATION:
            if now < self.paused_until:
                raise MepError(
                    operation,
                    None,
                    f"not sent: the MEP asked to slow down ({self.paused_until - now:.0f}s left)",
                    verdict=Verdict.TRANSIENT,
                )
            self.sent["application"] += 1
            return succeed(None)
        if urgent_until is not None:
            return self._urgent(now, urgent_until)
        waiter: Deferred[None] = Deferred(self._forget)
        waiter.addCallback(self._record_wait, now)
        (self._later if pace.background else self._queue).append(waiter)
        self._serve()
        return waiter

    def answered(self, operation: str, status: int | None, retry_after: float | None) -> None:
        """A 429 or 503 pauses everyone; any other answer ends a run of them."""
        if status not in THROTTLING:
            if status is not None:
                self._throttled_in_a_row = 0
            return
        self.throttled += 1
        self._throttled_in_a_row += 1
        self.pause(self._pause_for(status, retry_after))

    # -- what the others read ------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Send nothing paced for C{seconds} (bounded) from now; a longer pause stays."""
        now = self._clock.seconds()
        until = now + min(max(seconds, MIN_PAUSE), MAX_PAUSE)
        if until > self.paused_until:
            self.paused_until = until
            self.pauses += 1
            # The bucket holds at most one token when the pause ends: a burst is what the
            # gateway refused, and a fleet resuming with full buckets is refused together
            # again. (It fills as ever, from below: it may stand below zero meanwhile.)
            self._refill(now)
            self._tokens = min(self._tokens, 1.0 - self.rate * (until - now))
        self._reschedule()

    def resize(self, objects: int) -> None:
        """The agent now keeps C{objects} objects: the burst follows (reload)."""
        self.burst = burst_for(objects)
        self._tokens = min(self._tokens, self.burst)
        self._serve()

    @property
    def queued(self) -> int:
        """Requests waiting for their turn."""
        return len(self._queue) + len(self._later)

    def available(self) -> float:
        """Tokens in the bucket now."""
        self._refill(self._clock.seconds())
        return max(0.0, self._tokens)

    # -- inside --------------------------------------------------------------------------

    def _pause_for(self, status: int | None, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        now = self._clock.seconds()
        if status == 429:  # until the gateway's next window, spread over its first part
            return (math.floor(now / MINUTE) + 1) * MINUTE - now + WINDOW_SPREAD * self._rng()
        return self._unavailable(self._throttled_in_a_row - 1)

    def _urgent(self, now: float, deadline: float) -> Deferred[None]:
        self.sent["urgent"] += 1
        self._refill(now)
        if self._tokens >= 1 - 1e-9:  # counted when there is one; never waited for
            self._tokens -= 1
        if now >= self.paused_until:
            return succeed(None)
        go = self.paused_until
        if go > deadline - LAST_CHANCE:
            go = max(now, deadline - LAST_CHANCE)
        return self._sleep(go - now)

    def _sleep(self, seconds: float) -> Deferred[None]:
        waiter: Deferred[None] = Deferred(lambda d: call.cancel() if call.active() else None)
        call = self._clock.callLater(seconds, waiter.callback, None)
        return waiter

    def _refill(self, now: float) -> None:
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def _serve(self) -> None:
        now = self._clock.seconds()
        self._refill(now)
        while self.queued and now >= self.paused_until and self._tokens >= 1 - 1e-9:
            self._tokens -= 1
            self.sent["paced"] += 1
            (self._queue or self._later).popleft().callback(None)
        self._reschedule()

    def _reschedule(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if not self.queued:
            return
        now = self._clock.seconds()
        self._refill(now)
        wait = max(self.paused_until - now, (1 - self._tokens) / self.rate, 0.0)
        self._timer = self._clock.callLater(wait, self._serve)

    def _forget(self, waiter: Deferred[None]) -> None:
        for queue in (self._queue, self._later):
            if waiter in queue:
                queue.remove(waiter)
                self._reschedule()

    def _record_wait(self, result: None, queued_at: float) -> None:
        self.waited += self._clock.seconds() - queued_at
