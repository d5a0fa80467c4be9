"""C{--check}: what the agent would send, as one JSON document; it contacts nothing."""

from __future__ import annotations

from typing import Any

from mep_agent.config.load import AgentConfig
from mep_agent.core.bodies import effective_body, termination_body

#: Stands for the per-process secret the agent appends to --notify-url.
SECRET_PLACEHOLDER = "{secret}"


def callback_url(notify_url: str | None, secret: str) -> str | None:
    """The callbackReference the agent registers: --notify-url, then the secret segment."""
    if not notify_url:
        return None
    return f"{notify_url.rstrip('/')}/{secret}"


def report(cfg: AgentConfig) -> dict[str, Any]:
    """The resolved settings (no secrets) and the exact bodies to be sent."""
    mgmt = f"{cfg.api_root}/mec_service_mgmt/v1/applications/{{APPINSTID}}"
    services_path = f"{mgmt}/services"
    subscriptions_path = f"{mgmt}/subscriptions"
    callback = callback_url(cfg.notify_url, SECRET_PLACEHOLDER)
    subscriptions, warnings = [], []
    for sub in cfg.app.subscriptions:
        body = effective_body(sub, callback, SECRET_PLACEHOLDER)  # as its keeper sends it
        if body is None:
            warnings.append(
                f"serAvailabilityNotificationSubscriptions[{sub.index}].callbackReference: "
                f"{sub.callback_reference[:60]!r} is not a URI and --notify-url is not set; "
                "this subscription will not be sent"
            )
        else:
            subscriptions.append({"method": "POST", "path": subscriptions_path, "body": body})
    if cfg.handles_termination and callback is not None:
        support = f"{cfg.api_root}/mec_app_support/v1/applications/{{APPINSTID}}/subscriptions"
        subscriptions.append(
            {
                "method": "POST",
                "path": support,
                "body": termination_body(callback, cfg.api_root, "{APPINSTID}"),
            }
        )
    return {
        "config": cfg.summary(),
        "registrations": [
            {"method": "POST", "path": services_path, "body": service.body}
            for service in cfg.app.services
        ],
        "subscriptions": subscriptions,
        "warnings": warnings,
    }
