"""
RemakeGuard: before the agent makes anew what it held and the MEP lost, it asks whether the
app still exists. On a platform whose termination request deletes the app's services and
then its AK/SK itself (Dialect.deletes_at_termination: EdgeGallery's mepserver), and which
tells only one of the app's termination subscriptions (the first in Go's map order: a
sibling pod's, or a dead pod's whose callback no longer answers), an agent that was not told
sees its services vanish exactly as after a MEP that lost its store. Its token lives on (up
to an hour) after the AK/SK are deleted, so a registration anew would succeed: services of a
terminated app, back on the platform (docs/interop.md, "A termination announced to another
subscription").

So a keeper that lost what it held (keeper.py, C{absent}) waits for one check before it
makes it anew: after a settle delay, a fresh token request (core/token.py,
L{TokenKeeper.verify}; drawn from the request budget like every token request). A token:
the credentials are still there (a MEP that lost its store), everything is made anew as
before. A refused signature (401): the app was terminated without the agent being told; the
agent leaves as after a notice (termination.py, L{Terminator.unannounced}) and nothing is
made anew. Any other failure is retried by the token keeper with its back-off; the keepers
wait for the answer. Every loss seen before the check is sent waits for the same check: a
loss of several services costs one token request, not one each.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

#: mepserver's termination request deletes the app's services one by one (about 0.13 s
#: each, measured on EdgeGallery), then the AK/SK at mepauth. A loss is seen at the earliest
#: after the first deletion; the AK/SK go about 0.13 s per further service later, plus a
#: call to mepauth. The check waits that long and a margin (the request's own latency, a
#: loaded platform): 2 s, 0.15 s per service held, and up to 1 s of jitter so that the
#: pods of one app do not all ask in the same instant.
SETTLE = 2.0
SETTLE_PER_SERVICE = 0.15
SETTLE_JITTER = 1.0


def settle_delay(services: int, rng: Callable[[], float]) -> float:
    """Seconds from a loss to the check, for an app of C{services} services."""
    return SETTLE + SETTLE_PER_SERVICE * max(0, services) + SETTLE_JITTER * rng()


class RemakeGuard:
    """One check of the credentials for every loss seen at the same time; see the module."""

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        verify: Callable[[], Deferred[bool]],
        services: Callable[[], int],
        rng: Callable[[], float] = random.random,
    ) -> None:
        """
        @param verify: a fresh token request: True when mepauth gives a token, False when it
            refuses the signature (L{TokenKeeper.verify}).
        @param services: how many services the agent keeps (the settle delay grows with it).
        """
        self._clock = clock
        self._verify = verify
        self._services = services
        self._rng = rng
        self._waiting: list[Deferred[bool]] = []  # for the check not sent yet
        self._call: IDelayedCall | None = None
        #: Called once when the check finds the credentials refused (the composition root
        #: sets it: the terminator's unannounced termination); without one (--termination
        #: off) the keepers that lost their object only stop wanting it.
        self.refused: Callable[[], object] | None = None
        self.terminated = False
        self.checks = 0

    def cleared(self) -> Deferred[bool]:
        """
        Fires True when what was lost may be made anew, False when the app was terminated
        (then never True again).
        """
        if self.terminated:
            return succeed(False)
        d: Deferred[bool] = Deferred(self._forget)
        self._waiting.append(d)
        if self._call is None:
            delay = settle_delay(self._services(), self._rng)
            self._call = self._clock.callLater(delay, self._check)
            self.log.info(
                "the MEP lost what the agent held; checking in {delay:.1f}s that the "
                "platform did not terminate the app before anything is made anew",
                delay=delay,
                event="guard.checking",
            )
        return d

    def _forget(self, d: Deferred[bool]) -> None:
        """A waiter gave up (its keeper closed); no check is sent for nobody."""
        if d in self._waiting:
            self._waiting.remove(d)
        if not self._waiting and self._call is not None and self._call.active():
            self._call.cancel()
            self._call = None

    def _check(self) -> None:
        waiting, self._waiting, self._call = self._waiting, [], None
        self.checks += 1
        self._verify().addCallbacks(self._answered, lambda f: None, callbackArgs=(waiting,))

    def _answered(self, accepted: bool, waiting: list[Deferred[bool]]) -> None:
        if accepted:
            self.log.info(
                "the AK/SK are still accepted: the MEP lost its data; making anew what it lost",
                event="guard.cleared",
            )
        elif not self.terminated:
            self.terminated = True
            if self.refused is not None:
                self.refused()
            else:
                self.log.warn(
                    "the platform terminated the app without telling this agent (its "
                    "services are gone and mepauth refuses the AK/SK): nothing lost is made "
                    "anew (termination handling is off: nothing else changes)",
                    event="termination.unannounced",
                )
        for d in waiting:
            if not d.called:
                d.callback(accepted and not self.terminated)
