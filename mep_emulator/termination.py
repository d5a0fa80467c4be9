"""
An app termination at the emulated MEP: its record (L{Termination}), the notice to a
termination subscription, and the procedure MEC 011 describes, which the ETSI face runs --
notify every termination subscriber, wait for confirm_termination or the grace period, then
delete the app's services and subscriptions. The EdgeGallery face runs mepserver's instead
(mm5.py), from the same pieces. The registry keeps the records (C{Registry.terminations}).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from attrs import define, field

from mep_emulator import rules
from mep_emulator.registry import SUPPORT, Notification, Registry, SubscriptionRecord
from mep_emulator.rules import Rejected

#: The _links of an AppTerminationNotification for one termination subscription.
TerminationLinks = Callable[[str, "SubscriptionRecord"], dict[str, Any]]


def edgegallery_termination_links(app_id: str, sub: SubscriptionRecord) -> dict[str, Any]:
    """mepserver's links: plain paths, not {"href": ...} (docs/protocol.md, "App termination")."""
    return {
        "subscription": f"/mep{sub.href}",
        "confirmTermination": f"{SUPPORT}/applications/{app_id}/confirm_termination",
    }


@define
class Termination:
    """An app termination under way or over: what was asked, and what the app confirmed."""

    app_instance_id: str
    action: str
    notified_at: float
    deadline: float
    notified: int  # termination subscribers told
    confirmed_at: float | None = None
    confirmed_action: str | None = None
    ended_at: float | None = None  # the platform's clean-up is over (nothing more follows)
    timer: Any = field(default=None, repr=False)
    # mepserver's way (mm5.py): the one subscription told; whether the notice was delivered
    # (None: not yet answered); the request's outcome as MECM hears it (None: deleting);
    # when a restart that kept the store lost the request and the worker.
    subscriber: str | None = None
    delivered: bool | None = None
    result: str | None = None
    abandoned_at: float | None = None
    deleting: Any = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        """What the control API shows."""
        return {
            "appInstanceId": self.app_instance_id,
            "operationAction": self.action,
            "notifiedAt": self.notified_at,
            "deadline": self.deadline,
            "notified": self.notified,
            "confirmed": self.confirmed_at is not None,
            "confirmedAt": self.confirmed_at,
            "confirmedAction": self.confirmed_action,
            "endedAt": self.ended_at,
            "subscriber": self.subscriber,
            "delivered": self.delivered,
            "result": self.result,
            "abandonedAt": self.abandoned_at,
        }

    def stop_waiting(self) -> None:
        """The wait for the confirmation is over (it came)."""
        if self.timer is not None and self.timer.active():
            self.timer.cancel()

    def cancel(self) -> None:
        """Stop whatever of it is still to come (a new one replaces it; a restart)."""
        self.stop_waiting()
        if self.deleting is not None and self.deleting.active():
            self.deleting.cancel()

    def abandon(self, now: float) -> None:
        """
        The platform restarted keeping its store: what ran in its memory (mepserver: the
        request's deletions, the worker's wait) is lost, what it stored stays. A delivered
        notice's record is in etcd, so a confirmation is still taken, and nothing follows.
        """
        self.cancel()
        if self.result is None:
            self.result = "failure: restarted"  # MECM's connection closed unanswered
        if self.ended_at is None:
            self.abandoned_at = now
            if not self.delivered:
                self.ended_at = now  # no record: a confirmation is refused


def start(
    registry: Registry, app_id: str, action: str, grace: float, told: list[SubscriptionRecord]
) -> Termination:
    """A new termination of C{app_id} on record (what is left of the one before stopped)."""
    previous = registry.terminations.get(app_id)
    if previous is not None:
        previous.cancel()
    now = registry.clock.seconds()
    termination = Termination(app_id, action, now, now + grace, len(told))
    registry.terminations[app_id] = termination
    return termination


def notice(
    sub: SubscriptionRecord,
    termination: Termination,
    grace: float,
    links: TerminationLinks,
    outcome: Callable[[bool], None] | None = None,
) -> Notification:
    """The AppTerminationNotification to C{sub}."""
    return Notification(
        sub.body["callbackReference"],
        {
            "notificationType": "AppTerminationNotification",
            "operationAction": termination.action,
            "maxGracefulTimeout": grace,
            "_links": links(termination.app_instance_id, sub),
        },
        outcome=outcome,
    )


def terminate(
    registry: Registry,
    app_id: str,
    action: str = "TERMINATING",
    max_graceful_timeout: float = 5,
    links: TerminationLinks = edgegallery_termination_links,
) -> Termination:
    """
    Start an app termination as MEC 011 describes it: notify the app's termination
    subscribers, wait C{max_graceful_timeout} seconds for confirm_termination, then delete
    the app's services and subscriptions either way (at once when confirmed).
    """
    subscribers = registry.app_subscriptions(app_id, termination=True)
    termination = start(registry, app_id, action, max_graceful_timeout, subscribers)
    for sub in subscribers:
        registry.notify(notice(sub, termination, max_graceful_timeout, links))
    termination.timer = registry.clock.callLater(max_graceful_timeout, _end, registry, termination)
    return termination


def pending(registry: Registry, app_id: str) -> bool:
    """Whether a termination of C{app_id} waits for its confirmation."""
    termination = registry.terminations.get(app_id)
    return termination is not None and termination.ended_at is None


def confirm(registry: Registry, app_id: str, raw: bytes) -> None:
    """Record the app's confirmation; the platform's clean-up follows at once."""
    termination = confirmation(registry, app_id, raw)
    termination.stop_waiting()
    _end(registry, termination)


def confirmation(registry: Registry, app_id: str, raw: bytes) -> Termination:
    """The app's confirmation of its pending termination, checked and recorded."""
    if not pending(registry, app_id):
        raise Rejected(18, "Conflict", "no termination is going on")
    termination = registry.terminations[app_id]
    try:
        body = json.loads(raw)
    except ValueError:
        raise rules.type_error("body") from None
    if not isinstance(body, dict) or body.get("operationAction") != termination.action:
        raise rules.invalid("operationAction")
    termination.confirmed_at = registry.clock.seconds()
    termination.confirmed_action = termination.action
    return termination


def drop_subscriptions(registry: Registry, app_id: str) -> None:
    """The app's subscriptions, termination and availability, deleted (no notice)."""
    for sub in [s for s in registry.subscriptions.values() if s.app_instance_id == app_id]:
        del registry.subscriptions[sub.subscription_id]


def cleaned_up(registry: Registry, app_id: str) -> None:
    """Tell the MEP's other parts (mepauth: the AK/SK) that the app is gone."""
    for listener in registry.termination_listeners:
        listener(app_id)


def _end(registry: Registry, termination: Termination) -> None:
    """
    Delete the app's services (notifying REMOVED) and subscriptions, and READY (which only
    the ETSI face keeps: mepserver's confirm_ready keeps nothing); tell the listeners.
    """
    app_id = termination.app_instance_id
    termination.ended_at = registry.clock.seconds()
    for record in [s for s in registry.services.values() if s.app_instance_id == app_id]:
        registry.deregister(app_id, record.ser_instance_id)
    drop_subscriptions(registry, app_id)
    registry.ready.discard(app_id)
    cleaned_up(registry, app_id)
