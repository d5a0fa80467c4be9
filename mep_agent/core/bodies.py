"""
What the agent subscribes to: the availability subscriptions of app_instance_info.yaml (the
original agent parsed and dropped them), and the app termination subscription that lets the
platform announce a termination (termination.py).

The callback each subscription sends is the agent's own notification URL (--notify-url plus
a per-process secret path segment) when one is configured, so that the agent learns about
changes; otherwise the YAML's callbackReference as written. A callback that is not a URI is
skipped with a warning.
"""

from __future__ import annotations

from typing import Any

from mep_agent.config.model import SubscriptionSpec

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


def subscription_bodies(
    specs: tuple[SubscriptionSpec, ...], callback_url: str | None, secret: str | None
) -> tuple[tuple[tuple[str, dict[str, Any]], ...], tuple[int, ...]]:
    """
    The availability subscriptions to keep, as (label, body) -- the label is the place in
    the file's list -- and the places of those skipped (no usable callback).
    """
    kept, skipped = [], []
    for spec in specs:
        body = effective_body(spec, callback_url, secret)
        if body is None:
            skipped.append(spec.index)
        else:
            kept.append((str(spec.index), body))
    return tuple(kept), tuple(skipped)


def termination_body(callback_url: str, api_root: str, app_instance_id: str) -> dict[str, Any]:
    """The AppTerminationNotificationSubscription the agent keeps (MEC 011 requires _links)."""
    collection = f"{api_root}/mec_app_support/v1/applications/{app_instance_id}/subscriptions"
    return {
        "subscriptionType": "AppTerminationNotificationSubscription",
        "callbackReference": callback_url,
        "_links": {"self": {"href": collection}},
        "appInstanceId": app_instance_id,
    }


def matches(wanted: dict[str, Any], held: dict[str, Any]) -> bool:
    """
    Whether a subscription the MEP holds is the one wanted: the same type, callback and
    filter (the MEP may add members of its own, such as _links or an id, and may show an
    empty filter where none was sent).
    """
    return all(_norm(wanted.get(k)) == _norm(held.get(k)) for k in _IDENTITY)


_IDENTITY = ("subscriptionType", "callbackReference", "filteringCriteria")


def _norm(value: Any) -> Any:
    return None if value in (None, {}, []) else value
