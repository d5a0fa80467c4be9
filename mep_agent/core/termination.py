"""
Terminator: leave when the platform says so. MEC 011's application support lets the
platform announce that it stops or terminates the app (an AppTerminationNotification to the
app's AppTerminationNotificationSubscription, with C{operationAction} STOPPING or
TERMINATING and C{maxGracefulTimeout}) and then waits that long for confirm_termination
before it deletes the app's services and subscriptions either way (EdgeGallery's mepserver
waits about 5 s; docs/protocol.md, "App termination" has the facts).

On a notice the agent:

1. turns not ready (/readyz 503), shows the termination in status and metrics, and records
   it (core/owned.py): from now on, and in a restarted container of the same pod, it never
   confirms READY, registers or subscribes again, and reads nothing more from the MEP;
2. deletes every service and availability subscription (urgent requests: they go before
   anything else and are not paced), so consumers stop discovering them;
3. tells the application: forwarded to --app-notify-url, and readable (blocking ?wait=) at
   GET /mep-agent/v1/termination; with --termination-wait-app it waits for the application's
   POST /mep-agent/v1/termination/ack;
4. confirms with the notice's operationAction on the link the notice gave (resolved like
   every link), falling back to the standard
   C{…/applications/{appInstanceId}/confirm_termination} on the MEP when that link answers
   404 or cannot be used (AdvantEDGE's names a resource that does not exist), as soon as 2
   and 3 are done and in any case before maxGracefulTimeout runs out; a refusal (409:
   nothing pending) is logged once and not retried;
5. deletes its termination subscription. The process keeps running: Kubernetes decides
   when the pod stops. A SIGTERM meanwhile finishes the termination first -- deletions,
   then the confirmation -- within --shutdown-timeout and the platform's deadline.

A termination nobody announced to this agent (EdgeGallery tells one subscription of the
app's; core/guard.py finds it out: the services vanished and mepauth refuses the AK/SK) is
L{Terminator.unannounced}: the same state (phase "unannounced", recorded as L{UNANNOUNCED}),
then everything the agent made and the MEP still holds is deleted -- its subscriptions
above all, which mepserver's worker leaves when its notice was not delivered; the token
still works. It does not confirm: mepserver's worker has either ended (409) or is waiting
for the pod it told, whose grace a confirmation from here would cut short.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import Any

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, ensureDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mep_agent.core.errors import BadTerminationNotice, NoToken
from mep_agent.core.holdings import Holdings
from mep_agent.core.owned import Owned
from mep_agent.core.ready import Ready
from mep_agent.core.reconcile import Reconciler
from mep_agent.mp1.client import MepClient
from mep_agent.mp1.errors import MepError
from mep_agent.util.retry import sleep
from mep_agent.util.tasks import wait_at_most

NOTIFICATION_TYPE = "AppTerminationNotification"
ACTIONS = ("STOPPING", "TERMINATING")
#: What the state directory records for a termination found out, not announced (guard.py).
UNANNOUNCED = "UNANNOUNCED"
DEFAULT_GRACEFUL_TIMEOUT = 5.0  # what EdgeGallery's mepserver gives, when a notice says none
MIN_GRACEFUL_TIMEOUT = 1.0  # a negative or zero value is clamped to this: confirm at once
MAX_GRACEFUL_TIMEOUT = 600.0  # an absurd value is clamped to this
CONFIRM_MARGIN = 1.0  # confirm at the latest this long (or a fifth of it) before the deadline
RETRY_GAP = 0.5  # between attempts at confirm_termination after a transient failure


class TerminationPhase(enum.Enum):
    """Where a termination stands."""

    DEREGISTERING = "deregistering"
    WAITING_FOR_APP = "waiting-for-app"
    CONFIRMING = "confirming"
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "not-confirmed"  # refused, failed, or its deadline passed
    UNANNOUNCED = "unannounced"  # found out (core/guard.py): nothing to confirm


@define
class Notice:
    """A termination the platform announced, and how far the agent got with it."""

    action: str
    max_graceful_timeout: float
    received_at: float
    confirm_url: str | None  # None: the notice named none usable (the standard one is used)
    body: dict[str, Any]
    # How far the agent got: not constructor arguments, a notice begins where it begins.
    phase: TerminationPhase = field(default=TerminationPhase.DEREGISTERING, init=False)
    acknowledged_at: float | None = field(default=None, init=False)
    confirmed_at: float | None = field(default=None, init=False)
    error: str | None = field(default=None, init=False)
    announced: bool = field(default=True, init=False)

    @property
    def deadline(self) -> float:
        """When the platform stops waiting for the confirmation (clock seconds)."""
        return self.received_at + self.max_graceful_timeout

    @property
    def confirm_by(self) -> float:
        """When the agent confirms whatever else is still under way."""
        margin = min(CONFIRM_MARGIN, self.max_graceful_timeout / 5)
        return self.deadline - margin

    def view(self, now: float) -> dict[str, Any]:
        """What the application, status and readiness show."""
        return {
            "terminating": True,
            "operationAction": self.action,
            "maxGracefulTimeout": self.max_graceful_timeout,
            "receivedAt": self.received_at,
            "deadline": self.deadline,
            "secondsLeft": max(0.0, round(self.deadline - now, 3)),
            "phase": self.phase.value,
            "acknowledged": self.acknowledged_at is not None,
            "confirmed": self.confirmed_at is not None,
            "error": self.error,
            "announced": self.announced,
        }


def graceful_timeout(value: Any) -> float:
    """maxGracefulTimeout clamped to MIN … MAX (missing or not a number: mepserver's 5 s)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        return DEFAULT_GRACEFUL_TIMEOUT
    return float(min(max(value, MIN_GRACEFUL_TIMEOUT), MAX_GRACEFUL_TIMEOUT))


def link_href(links: Any, name: str) -> str | None:
    """C{_links[name]} as EdgeGallery (a string) or MEC 011 v2.2.1 ({"href": …}) gives it."""
    link = links.get(name) if isinstance(links, dict) else None
    if isinstance(link, dict):
        link = link.get("href")
    return link if isinstance(link, str) and link else None


class Terminator(Service):
    """Acts on the platform's termination notices; see the module."""

    name = "termination"
    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        clock: IReactorTime,
        holdings: Holdings,
        ready: Ready,
        reconciler: Reconciler,
        owned: Owned,
        forward: Callable[[dict[str, Any]], None] | None = None,
        wait_for_app: bool = False,
    ) -> None:
        """
        @param forward: tells the application (POST to --app-notify-url), if configured.
        @param wait_for_app: wait for the application's acknowledgement before confirming.
        """
        self._mep = mep
        self._clock = clock
        self._holdings = holdings
        self._ready = ready
        self._reconciler = reconciler
        self._owned = owned
        self._forward = forward
        self._wait_for_app = wait_for_app
        self._notice_hooks: list[Callable[[], object]] = []
        self._acknowledged: Deferred[None] = Deferred()
        self._runs: list[Deferred[None]] = []
        self.notice: Notice | None = None
        #: An earlier life of this pod's container acted on a termination.
        self.terminated_before = owned.terminated

    # -- what the routes use ---------------------------------------------------------------

    def notified(self, body: dict[str, Any]) -> None:
        """
        A notice from the platform (already known to be an AppTerminationNotification):
        start leaving, or, for a repeated one, nothing more than a confirmation of a new
        action. L{BadTerminationNotice} for an unknown operationAction.
        """
        action = body.get("operationAction")
        if action not in ACTIONS:
            raise BadTerminationNotice("operationAction must be STOPPING or TERMINATING")
        timeout = graceful_timeout(body.get("maxGracefulTimeout"))
        if timeout != body.get("maxGracefulTimeout"):
            self.log.warn(
                "termination notice: maxGracefulTimeout {given!r} taken as {timeout}s",
                given=str(body.get("maxGracefulTimeout"))[:40],
                timeout=timeout,
                event="termination.timeout_clamped",
            )
        previous = self.notice
        if previous is not None and previous.action == action:
            self.log.info(
                "termination notice ({action}) again: already under way",
                action=action,
                event="termination.duplicate",
            )
            return
        notice = Notice(action, timeout, self._clock.seconds(), self._confirm_url(body), body)
        if previous is not None:
            notice.acknowledged_at = previous.acknowledged_at
        self.notice = notice
        self.log.info(
            "the platform is {action} the app: leaving within {timeout}s",
            action=action.lower(),
            timeout=timeout,
            event="termination.notified",
        )
        self._tell_hooks()
        self._runs.append(ensureDeferred(self._leave(notice, first=previous is None)))

    def unannounced(self) -> None:
        """
        The platform terminated the app without telling this agent (core/guard.py found it
        out): leave as after a notice, but confirm nothing (see the module).
        """
        if self.notice is not None or self.terminated_before is not None:
            return
        notice = Notice("TERMINATING", 0.0, self._clock.seconds(), None, {})
        notice.phase = TerminationPhase.UNANNOUNCED
        notice.announced = False
        self.notice = notice
        self.log.warn(
            "the platform terminated the app without telling this agent (its services are "
            "gone and mepauth refuses the AK/SK): leaving; nothing is registered again",
            event="termination.unannounced",
        )
        self._tell_hooks()
        self._runs.append(ensureDeferred(self._leave_unannounced()))

    def _stop_keeping(self, recorded: str) -> None:
        """Terminated: recorded as C{recorded}, READY over, nothing more read from the MEP."""
        self._owned.terminated_by(recorded)
        self._ready.end()
        self._reconciler.stop_reading()

    async def _leave_unannounced(self) -> None:
        self._stop_keeping(UNANNOUNCED)
        until = self._clock.seconds() + self.shutdown
        try:
            await self._holdings.withdraw(until, termination_too=True, delete=True)
        except CancelledError:
            pass  # the agent is stopping
        else:
            self._done()

    def acknowledge(self) -> bool:
        """The application is ready to go; False when no termination is under way."""
        if self.notice is None:
            return False
        if self.notice.acknowledged_at is None:
            self.notice.acknowledged_at = self._clock.seconds()
            self.log.info("the application acknowledged the termination", event="termination.ack")
        if not self._acknowledged.called:
            self._acknowledged.callback(None)
        return True

    def on_notice(self, hook: Callable[[], object]) -> None:
        """C{hook()} is called when a notice comes, and at stop (the state may change)."""
        self._notice_hooks.append(hook)

    def _tell_hooks(self) -> None:
        for hook in self._notice_hooks:
            hook()

    def view(self) -> dict[str, Any]:
        """
        The termination as the application API and status show it; one an earlier life of
        this container acted on (the state directory remembers it) is still under way for
        the application: it is to leave.
        """
        if self.notice is not None:
            return self.notice.view(self._clock.seconds())
        if self.terminated_before is not None:
            announced = self.terminated_before != UNANNOUNCED
            return {
                "terminating": True,
                "operationAction": self.terminated_before if announced else "TERMINATING",
                "earlierLife": True,
                "announced": announced,
            }
        return {"terminating": False}

    # -- the service -----------------------------------------------------------------------

    def stopService(self) -> Deferred[None]:
        """
        A termination under way is finished first -- deletions, then the confirmation --
        within C{shutdown} seconds and before the platform's deadline; blocking readers get
        the current state.
        """
        super().stopService()
        self._tell_hooks()
        running = [run for run in self._runs if not run.called]
        if not running or self.notice is None:
            return succeed(None)
        if not self._acknowledged.called:  # the pod is going: the application will not ack
            self.log.info(
                "stopping: confirming the termination without waiting for the application",
                event="termination.stop_confirms",
            )
            self._acknowledged.callback(None)
        left = self.shutdown
        if self.notice.announced:
            left = min(left, self.notice.deadline - self._clock.seconds())
        done: Deferred[Any] = DeferredList(running, consumeErrors=True)
        return ensureDeferred(wait_at_most(self._clock, done, left)).addBoth(
            self._stopped, running
        )

    #: Seconds a stop waits for a termination under way (--shutdown-timeout).
    shutdown = 5.0
    #: Whether the platform deletes the app's services and subscriptions itself at once
    #: (Dialect.deletes_at_termination): then they are let go, not deleted.
    platform_deletes = False
    #: Called once the termination's work is done (the token keeper's retire: mepauth
    #: deletes the AK/SK with the app, and a terminated agent asks the MEP for nothing).
    done: Callable[[], object] | None = None

    def _stopped(self, result: object, running: list[Deferred[None]]) -> None:
        for run in running:
            run.cancel()
        self._tell_hooks()

    # -- leaving ---------------------------------------------------------------------------

    def _confirm_url(self, body: dict[str, Any]) -> str | None:
        """The notice's confirmTermination link, resolved; None when it names none usable."""
        href = link_href(body.get("_links"), "confirmTermination")
        if href is None:
            return None
        try:
            return self._mep.resolve(href)
        except ValueError as e:  # ForeignLink too: the token goes to the MEP only
            self.log.warn(
                "termination notice: confirmTermination link refused ({error}); "
                "confirming on the MEP's own path",
                error=str(e),
                event="termination.link_refused",
            )
            return None

    async def _leave(self, notice: Notice, first: bool) -> None:
        try:
            if first:
                self._stop_keeping(notice.action)
                # Services and availability subscriptions now; the termination one after.
                withdrawn = ensureDeferred(
                    self._holdings.withdraw(
                        notice.confirm_by, termination_too=False, delete=not self.platform_deletes
                    )
                ).addErrback(self._withdraw_failed)
                await self._until(withdrawn, notice.confirm_by)
                if self._forward is not None:
                    self._forward(notice.body)
            if self._wait_for_app and notice.acknowledged_at is None:
                notice.phase = TerminationPhase.WAITING_FOR_APP
                await self._until(self._acknowledged, notice.confirm_by)
            notice.phase = TerminationPhase.CONFIRMING
            await self._confirm(notice)
            await self._holdings.withdraw(
                notice.deadline, termination_too=True, delete=not self.platform_deletes
            )
        except CancelledError:
            pass  # the agent is stopping, past its deadline
        else:
            self._done()

    def _done(self) -> None:
        if self.done is not None:
            self.done()

    def _withdraw_failed(self, failure: Failure) -> None:
        self.log.failure("withdrawing failed", failure, event="termination.bug")

    async def _until(self, watched: Deferred[None], deadline: float) -> None:
        """Wait for C{watched} (left running) or until C{deadline}, whichever comes first."""
        await wait_at_most(self._clock, watched, deadline - self._clock.seconds())

    async def _confirm(self, notice: Notice) -> None:
        """On the notice's link; a 404 there (or no usable link): on the standard resource."""
        standard = self._mep.confirm_termination_url()
        urls = [u for u in (notice.confirm_url, standard) if u is not None]
        error = "the deadline passed"
        for url in dict.fromkeys(urls):  # each once, in order
            notice.confirm_url = url
            error, status = await self._confirm_on(notice, url)
            if notice.confirmed_at is not None or status != 404 or url == standard:
                break
            self.log.info(
                "confirm_termination: {url} answered 404; confirming on the standard resource",
                url=url,
                event="termination.link_failed",
            )
        if notice.confirmed_at is not None:
            return
        notice.phase = TerminationPhase.NOT_CONFIRMED
        notice.error = error
        self.log.warn(
            "could not confirm the termination ({action}): {error}",
            action=notice.action,
            error=error,
            event="termination.not_confirmed",
        )

    async def _confirm_on(self, notice: Notice, url: str) -> tuple[str, int | None]:
        """Confirm on C{url} until confirmed, refused or out of time: (error, its status)."""
        error, status = "the deadline passed", None
        while self._clock.seconds() < notice.deadline:
            left = notice.deadline - self._clock.seconds()
            try:
                await self._mep.confirm_termination(url, notice.action, left)
            except NoToken as e:
                error, status = e.reason, None
            except MepError as e:
                error, status = str(e), e.status
                if not e.transient:
                    break  # 409 (nothing pending), 400, 404: asking again changes nothing
            else:
                notice.phase = TerminationPhase.CONFIRMED
                notice.confirmed_at = self._clock.seconds()
                notice.error = None
                self.log.info(
                    "confirmed the termination ({action}) to the MEP",
                    action=notice.action,
                    event="termination.confirmed",
                )
                return "", None
            if self._clock.seconds() + RETRY_GAP >= notice.deadline:
                break
            await sleep(self._clock, RETRY_GAP)
        return error, status
