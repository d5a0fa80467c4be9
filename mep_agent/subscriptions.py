"""
Subscriber: creates the availability subscriptions of app_instance_info.yaml (the
original parsed and dropped them), re-creates any the MEP lost, deletes them on stop.

The callback each subscription sends is the agent's own notification URL (--notify-url)
when one is configured, so that the agent learns about changes; otherwise the YAML's
callbackReference as written. A callback that is not a URI is skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from attrs import define, field
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from .mep import MepClient, MepError, Subscription
from .model import SubscriptionSpec
from .retry import Alarm, backoff, until_success
from .tasks import bounded, start_task
from .token import TokenKeeper

REFUSED_RETRY = 300.0
VERIFY_INTERVAL = 300.0  # how often to check that the MEP still has our subscriptions


def effective_body(spec: SubscriptionSpec, notify_url: str | None) -> dict[str, Any] | None:
    """The body to send, or None when there is no usable callback."""
    body = dict(spec.body)
    if notify_url:
        body["callbackReference"] = notify_url
    elif not spec.callback_is_uri:
        return None
    return body


@define
class SubscriptionState:
    index: int
    body: dict[str, Any]
    subscription: Subscription | None = None
    status: str = "pending"  # pending | active | failing | deleted
    creations: int = 0
    last_error: str | None = None


@define(slots=False)  # Service sets attributes of its own
class Subscriber(Service):
    mep: MepClient
    tokens: TokenKeeper
    clock: IReactorTime
    specs: tuple[SubscriptionSpec, ...]
    notify_url: str | None = None
    shutdown_timeout: float = 5.0
    verify_interval: float = VERIFY_INTERVAL
    delete_on_stop: bool = True  # False in one-shot mode
    delays: Callable[[], Iterator[float]] = backoff
    states: list[SubscriptionState] = field(init=False, factory=list)
    _tasks: list[Deferred[None]] = field(init=False, factory=list)
    _alarm: Alarm = field(init=False)
    name = "subscriber"
    log = Logger()

    def __attrs_post_init__(self) -> None:
        self._alarm = Alarm(self.clock, lambda: self.running)
        for spec in self.specs:
            body = effective_body(spec, self.notify_url)
            if body is None:
                self.log.warn(
                    "serAvailabilityNotificationSubscriptions[{index}]: callbackReference is "
                    "not a URI and --notify-url is not set; not subscribing",
                    index=spec.index,
                    event="subscription.skipped",
                )
                continue
            self.states.append(SubscriptionState(spec.index, body))

    def startService(self) -> None:
        Service.startService(self)
        for state in self.states:
            self._tasks.append(start_task(self._create(state), f"subscription {state.index}"))
        if self.states:
            self._tasks.append(start_task(self._verify_loop(), "subscription check"))

    def stopService(self) -> Deferred[list[bool]]:
        Service.stopService(self)
        for task in self._tasks:
            task.cancel()
        if not self.delete_on_stop:
            return succeed([])
        created = [s for s in self.states if s.subscription is not None]
        return bounded(
            self.clock, self.shutdown_timeout, [partial(self._delete, s) for s in created]
        )

    def check_now(self) -> None:
        """The MEP may have lost data (a heartbeat got 404): verify at once."""
        self._alarm.wake()

    async def _create(self, state: SubscriptionState) -> None:
        def failed(error: MepError, delay: float) -> None:
            state.status = "failing"
            state.last_error = str(error)
            self.log.warn(
                "subscription {index} failed ({error}); retrying in {delay:.1f}s",
                index=state.index,
                error=str(error),
                delay=delay,
                event="subscription.failed",
            )

        subscription = await until_success(
            self.clock,
            lambda: self.tokens.with_token(lambda token: self.mep.subscribe(token, state.body)),
            lambda: bool(self.running),
            self.delays(),
            REFUSED_RETRY,
            failed,
        )
        if subscription is None:
            return
        state.subscription = subscription
        state.status = "active"
        state.creations += 1
        state.last_error = None
        self.log.info(
            "subscription {index} created ({subscription_id})",
            index=state.index,
            subscription_id=subscription.subscription_id,
            event="subscription.created",
        )

    async def _verify_loop(self) -> None:
        while self.running:
            await self._alarm.sleep(self.verify_interval)
            for state in self.states:
                try:
                    await self._verify(state)
                except CancelledError:
                    raise
                except Exception:
                    self.log.failure(
                        "verifying subscription {index} failed unexpectedly", index=state.index
                    )

    async def _verify(self, state: SubscriptionState) -> None:
        subscription = state.subscription
        if subscription is None:
            return  # still being created
        try:
            exists = await self.tokens.with_token(
                lambda token: self.mep.subscription_exists(token, subscription)
            )
        except MepError as e:
            self.log.info(
                "could not verify subscription {index}: {error}",
                index=state.index,
                error=str(e),
                event="subscription.verify_failed",
            )
            return
        if not exists:
            self.log.warn(
                "the MEP lost subscription {index}; creating it again",
                index=state.index,
                event="subscription.lost",
            )
            state.subscription = None
            state.status = "pending"
            await self._create(state)

    async def _delete(self, state: SubscriptionState) -> None:
        subscription = state.subscription
        assert subscription is not None
        token = self.tokens.current() or await self.mep.fetch_token()
        try:
            await self.mep.unsubscribe(token, subscription)
        except MepError as e:
            if e.status != 404:
                raise
        state.subscription = None
        state.status = "deleted"
        self.log.info(
            "subscription {index} deleted", index=state.index, event="subscription.deleted"
        )
