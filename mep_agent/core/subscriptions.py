"""
Subscriber: creates the availability subscriptions of app_instance_info.yaml (the
original parsed and dropped them), and the app termination subscription that lets the
platform announce a termination (termination.py), re-creates any the MEP lost, deletes them
on stop. What an earlier run of the agent left behind is the Reconciler's to delete
(reconcile.py).

The callback each subscription sends is the agent's own notification URL (--notify-url
plus a per-process secret path segment) when one is configured, so that the agent learns
about changes; otherwise the YAML's callbackReference as written. A callback that is not
a URI is skipped with a warning.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from attrs import define
from twisted.application.service import Service
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    ensureDeferred,
    gatherResults,
    succeed,
)
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mep_agent.config.model import SubscriptionSpec
from mep_agent.core.errors import NoToken
from mep_agent.core.token import TokenKeeper
from mep_agent.mp1.client import MepClient, Subscription, Urgency
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.util.retry import Alarm, Delays, backoff, sleep
from mep_agent.util.tasks import InFlight, stop_and_clean_up, supervise

REFUSED_RETRY = 300.0
VERIFY_INTERVAL = 300.0  # how often to check that the MEP still has our subscriptions


NOTIFICATION_ROUTE = "/mep-agent/v1/notifications"


def effective_body(
    spec: SubscriptionSpec, callback_url: str | None, secret: str | None = None
) -> dict[str, Any] | None:
    """
    The body to send, or None when there is no usable callback. Without --notify-url, a
    YAML callback that names the agent's own notification route gets the secret segment
    too, so that the MEP's notifications reach it.
    """
    body = dict(spec.body)
    if callback_url:
        body["callbackReference"] = callback_url
    elif not spec.callback_is_uri:
        return None
    elif secret and spec.callback_reference.rstrip("/").endswith(NOTIFICATION_ROUTE):
        body["callbackReference"] = f"{spec.callback_reference.rstrip('/')}/{secret}"
    return body


def termination_body(callback_url: str, api_root: str, app_instance_id: str) -> dict[str, Any]:
    """The AppTerminationNotificationSubscription the agent keeps (MEC 011 requires _links)."""
    collection = f"{api_root}/mec_app_support/v1/applications/{app_instance_id}/subscriptions"
    return {
        "subscriptionType": "AppTerminationNotificationSubscription",
        "callbackReference": callback_url,
        "_links": {"self": {"href": collection}},
        "appInstanceId": app_instance_id,
    }


class SubscriptionStatus(enum.Enum):
    """Where one subscription stands with the MEP."""

    PENDING = "pending"
    ACTIVE = "active"
    FAILING = "failing"
    DELETED = "deleted"


@define
class SubscriptionState:
    """What the agent knows about one subscription."""

    index: int  # its place in the YAML list; -1 for the termination subscription
    body: dict[str, Any]
    subscription: Subscription | None = None
    status: SubscriptionStatus = SubscriptionStatus.PENDING
    creations: int = 0
    last_error: str | None = None
    termination: bool = False  # an AppTerminationNotificationSubscription

    @property
    def label(self) -> str:
        """How logs and checks name it."""
        return "termination" if self.termination else str(self.index)


class Subscriber(Service):
    """Creates, verifies, re-creates and deletes the subscriptions; see the module."""

    name = "subscriber"
    log = Logger()

    def __init__(
        self,
        mep: MepClient,
        tokens: TokenKeeper,
        clock: IReactorTime,
        specs: tuple[SubscriptionSpec, ...],
        callback_url: str | None = None,
        notify_secret: str | None = None,
        shutdown_timeout: float = 5.0,
        verify_interval: float = VERIFY_INTERVAL,
        delete_on_stop: bool = True,
        delays: Delays = backoff,
        termination_body: dict[str, Any] | None = None,
        when_ready: Callable[[], Awaitable[None]] | None = None,
        ready_lost: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """
        @param callback_url: the agent's notification URL (with its secret), or None.
        @param notify_secret: appended to a YAML callback naming the agent's own route.
        @param delete_on_stop: False in one-shot mode.
        @param termination_body: the AppTerminationNotificationSubscription to keep, if any
            (its callbackReference is C{callback_url}).
        @param when_ready: awaited before every creation (platforms that refuse every call
            before confirm_ready).
        @param ready_lost: a call was refused "not ready": confirm READY again (once for
            all callers) and return when it is; the call is then made again at once.
        """
        self._mep = mep
        self._when_ready = when_ready
        self._ready_lost = ready_lost
        self._tokens = tokens
        self._clock = clock
        self._shutdown_timeout = shutdown_timeout
        self._verify_interval = verify_interval
        self._delete_on_stop = delete_on_stop
        self._delays = delays
        self._alarm = Alarm(clock)
        self._callback_url = callback_url
        self._notify_secret = notify_secret
        self._tasks: list[Deferred[None]] = []
        self._creations: dict[int, Deferred[None]] = {}  # by id() of the state
        self._verifying = False
        self._posting = InFlight()  # creations under way: a stop waits for them
        self.states: list[SubscriptionState] = [
            SubscriptionState(index, body) for index, body in self._bodies(specs)
        ]
        if termination_body is not None:
            self.states.append(SubscriptionState(-1, termination_body, termination=True))
        self.withdrawn = False  # the platform is terminating the app: nothing is wanted

    def _bodies(self, specs: tuple[SubscriptionSpec, ...]) -> list[tuple[int, dict[str, Any]]]:
        bodies = []
        for spec in specs:
            body = effective_body(spec, self._callback_url, self._notify_secret)
            if body is None:
                self.log.warn(
                    "serAvailabilityNotificationSubscriptions[{index}]: callbackReference is "
                    "not a URI and --notify-url is not set; not subscribing",
                    index=spec.index,
                    event="subscription.skipped",
                )
                continue
            bodies.append((spec.index, body))
        return bodies

    def apply(self, specs: tuple[SubscriptionSpec, ...]) -> dict[str, int]:
        """
        Make the MEP hold C{specs} (a reloaded file): create the new subscriptions,
        delete the removed ones, keep the unchanged ones. Returns the counts by change.
        """
        if self.withdrawn:
            return {"added": 0, "removed": 0, "kept": 0}  # no file brings them back
        wanted = self._bodies(specs)
        kept: list[SubscriptionState] = [s for s in self.states if s.termination]
        unmatched = list(wanted)
        removed = 0
        for state in self.states:
            if state.termination:
                continue  # not the file's: it stays as long as the agent runs
            match = next((w for w in unmatched if w[1] == state.body), None)
            if match is not None:
                unmatched.remove(match)
                state.index = match[0]
                kept.append(state)
                continue
            removed += 1
            task = self._creations.pop(id(state), None)
            if task is not None:
                task.cancel()
            if state.subscription is not None:
                self._tasks.append(ensureDeferred(self._delete_quietly(state)))
        added = [SubscriptionState(index, body) for index, body in unmatched]
        self.states = kept + added
        if self.running:
            for state in added:
                self._start_creating(state)
            self._start_verifying()
        return {"added": len(added), "removed": removed, "kept": len(kept)}

    def _start_creating(self, state: SubscriptionState) -> None:
        task = supervise(self._clock, f"subscription {state.label}", partial(self._create, state))
        self._creations[id(state)] = task
        self._tasks.append(task)

    def _start_verifying(self) -> None:
        if self.states and not self._verifying:
            self._verifying = True
            self._tasks.append(supervise(self._clock, "subscription check", self._verify_all))

    async def _delete_quietly(self, state: SubscriptionState) -> None:
        try:
            await self._delete(state)
        except (MepError, NoToken):
            pass  # logged by _delete

    def startService(self) -> None:
        """Create every subscription, then check on them periodically."""
        super().startService()
        for state in self.states:
            self._start_creating(state)
        self._start_verifying()

    def stopService(self) -> Deferred[list[bool]]:
        """
        Let the creations under way finish, stop the tasks, then DELETE every subscription
        in parallel, all within the bound (a stop leaves nothing behind).
        """
        super().stopService()
        if not self._delete_on_stop:
            for task in self._tasks:
                task.cancel()
            return succeed([])
        return ensureDeferred(
            stop_and_clean_up(
                self._clock,
                self._shutdown_timeout,
                self._posting,
                self._tasks,
                lambda: [partial(self._delete, s) for s in self.states if s.subscription],
            )
        )

    def check_now(self) -> None:
        """The MEP may have lost data (a heartbeat got 404): verify at once."""
        self._alarm.wake()

    async def withdraw(self, termination_too: bool = True) -> None:
        """
        The platform is terminating the app: stop keeping any subscription (the platform
        deletes them; none is created again) and delete them, a 404 being what was
        wanted; the termination subscription too unless C{termination_too} is False (it
        goes once the termination is confirmed). Once everything is withdrawn the
        Subscriber holds nothing, so a stop deletes nothing.
        """
        self.withdrawn = True
        for task in self._tasks:
            task.cancel()
        self._tasks, self._creations = [], {}
        going = [s for s in self.states if termination_too or not s.termination]
        self.states = [s for s in self.states if s not in going]
        await gatherResults(
            [ensureDeferred(self._delete_quietly(s)) for s in going if s.subscription]
        )

    async def _create(self, state: SubscriptionState) -> bool:
        delays = self._delays()
        while True:
            if self._when_ready is not None:
                await self._when_ready()
            if not self.running:
                raise CancelledError()  # stopping: no new POST
            try:
                subscription = await self._posting.track(
                    self._mep.subscribe(state.body, state.termination)
                )
                break
            except NoToken as e:
                state.last_error = e.reason
                if not self._tokens.running:
                    await sleep(self._clock, next(delays))
            except MepError as e:
                if e.verdict is Verdict.NOT_READY and self._ready_lost is not None:
                    state.last_error = str(e)
                    await self._ready_lost()  # READY was lost: confirm, then at once again
                    continue
                delay = next(delays) if e.transient else REFUSED_RETRY
                state.status = SubscriptionStatus.FAILING
                state.last_error = str(e)
                self.log.warn(
                    "subscription {index} failed ({error}); retrying in {delay:.1f}s",
                    index=state.label,
                    error=str(e),
                    delay=delay,
                    event="subscription.failed",
                    status=e.status,
                )
                await sleep(self._clock, delay)
        state.subscription = subscription
        state.status = SubscriptionStatus.ACTIVE
        state.creations += 1
        state.last_error = None
        if subscription.refused_link:
            self.log.warn(
                "subscription {index}: the MEP's link {link} leads to another host than the "
                "MEP; it is not followed (the subscription cannot be checked or deleted)",
                index=state.label,
                link=subscription.refused_link,
                event="subscription.link_refused",
            )
        self.log.info(
            "subscription {index} created ({subscription_id})",
            index=state.label,
            subscription_id=subscription.subscription_id,
            event="subscription.created",
        )
        return True

    async def _verify_all(self) -> bool:
        await self._alarm.sleep(self._verify_interval)
        for state in self.states:
            await self._verify(state)
        return False

    async def _verify(self, state: SubscriptionState, again: bool = True) -> None:
        subscription = state.subscription
        if subscription is None:
            return  # still being created
        try:
            exists = await self._mep.subscription_exists(subscription)
        except MepError as e:
            if e.verdict is Verdict.NOT_READY and self._ready_lost is not None and again:
                await self._ready_lost()  # the platform lost its state: check again
                await self._verify(state, again=False)
                return
            self._unverified(state, str(e))
            return
        except NoToken as e:
            self._unverified(state, e.reason)
            return
        if not exists:
            self.log.warn(
                "the MEP lost subscription {index}; creating it again",
                index=state.label,
                event="subscription.lost",
            )
            state.subscription = None
            state.status = SubscriptionStatus.PENDING
            await self._create(state)

    def _unverified(self, state: SubscriptionState, error: str) -> None:
        self.log.info(
            "could not verify subscription {index}: {error}",
            index=state.label,
            error=error,
            event="subscription.verify_failed",
        )

    async def _delete(self, state: SubscriptionState) -> None:
        subscription = state.subscription
        assert subscription is not None
        try:
            await self._mep.unsubscribe(subscription, Urgency(self._shutdown_timeout, hurry=True))
        except NoToken as e:
            self._delete_failed(state, e.reason, None)
            raise
        except MepError as e:
            if e.status != 404:  # already gone is what we wanted
                self._delete_failed(state, str(e), e.status)
                raise
        state.subscription = None
        state.status = SubscriptionStatus.DELETED
        self.log.info(
            "subscription {index} deleted", index=state.label, event="subscription.deleted"
        )

    def _delete_failed(self, state: SubscriptionState, error: str, status: int | None) -> None:
        self.log.warn(
            "deleting subscription {index} failed: {error}",
            index=state.label,
            error=error,
            event="subscription.delete_failed",
            status=status,
        )
