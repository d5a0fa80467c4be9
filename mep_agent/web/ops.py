"""
The operations API, on its own listener for kubelet probes, Prometheus and the MEP's
notifications. It never shows a token or a key.

  GET  /livez       the process and its reactor answer
  GET  /startupz    the first token held and every service registered once
  GET  /readyz      before start-up completes, as /startupz; after it, the agent can
                    serve the application (an unexpired token). MEP trouble (heartbeats,
                    registrations) is shown under ?verbose but never makes it not ready:
                    a pod is Ready only when every container is, and a short MEP outage
                    must not take the application out of its Service. /healthz is the same.
  GET  /healthz/mep every service registered and heartbeating and a valid token (for
                    operators and alerts, not for probes)
  GET  /metrics     Prometheus text format
  GET  /mep-agent/v1/status                 desired versus actual registrations, token
  POST /mep-agent/v1/notifications/{secret} the MEP's availability notifications; the
                    secret path segment is generated per process and sent to the MEP as
                    part of callbackReference, so nobody else can forge one
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import urlsplit

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from mep_agent.core.keeper import Keeper
from mep_agent.core.termination import NOTIFICATION_TYPE as TERMINATION_NOTICE
from mep_agent.util.secret import Secret
from mep_agent.web.jsonweb import JSONGuard, query_flag, read_json, respond, strict_routes
from mep_agent.web.parts import AgentParts
from mep_agent.web.problems import ApiProblem

NOTIFICATIONS = "/mep-agent/v1/notifications"
# v2.2.1 (and EdgeGallery) say SerAvailabilityNotification; v2.1.1's text says the other.
NOTIFICATION_TYPES = ("SerAvailabilityNotification", "SerAvailabilityNotificationSubscription")


class BadNotification(ApiProblem):
    """A POST to the notification route that is not an availability notification."""

    def __init__(self, problem: str) -> None:
        super().__init__(400, problem)


class NoSuchResource(ApiProblem):
    """404, as for any unknown path (a wrong notification secret looks like one)."""

    def __init__(self) -> None:
        super().__init__(404, "no such resource")


def origin(link: str) -> str:
    """The scheme, host and port a link names (what --mep-public-url would have to name)."""
    parts = urlsplit(link)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else link[:100]


class OpsAPI:
    """The operations API's Klein app; see the module docstring."""

    app = Klein()
    strict_routes(app)
    log = Logger()

    def __init__(self, clock: IReactorTime, parts: AgentParts, notify_secret: Secret) -> None:
        self._clock = clock
        self._parts = parts
        self._notify_secret = notify_secret
        self._started = False  # start-up completed once (a latch)

    def resource(self) -> IResource:
        """The resource to serve."""
        return JSONGuard(self.app.resource())

    @app.route("/livez", methods=["GET"])
    def livez(self, request: IRequest) -> bytes:
        """The reactor answers."""
        return respond(request, 200, {"status": "ok"})

    def started(self) -> bool:
        """Whether start-up completed: the first token held, every service registered once."""
        if not self._started:
            self._started = self._parts.tokens.tokens_obtained > 0 and all(
                _registered_once(k) for k in self._parts.holdings.services.values()
            )
        return self._started

    def checks(self) -> dict[str, dict[str, Any]]:
        """The token, every service and subscription, the MEP's links, the sync, the pace."""
        parts = self._parts
        tokens = parts.tokens
        checks: dict[str, dict[str, Any]] = {
            "token": {"ok": tokens.current() is not None, "state": tokens.state.value}
        }
        for name, keeper in parts.holdings.services.items():
            checks[f"service:{name}"] = _check(keeper, keeper.healthy)
        for keeper in _subscriptions(parts):
            checks[f"subscription:{keeper.key}"] = _check(keeper, keeper.healthy)
        refused = parts.holdings.unusable_links()
        if refused:
            origins = sorted({origin(link) for link in refused})
            checks["links"] = {
                "ok": False,
                "refused": origins,
                "fix": "the MEP's links lead to "
                + ", ".join(origins)
                + ": if that is the MEP's public origin, set --mep-public-url "
                "(MEP_AGENT_MEP_PUBLIC_URL) to it",
            }
        checks["sync"] = parts.reconciler.view()
        paused = parts.budget.paused_until - self._clock.seconds()
        checks["pace"] = {"ok": paused <= 0, "pausedFor": round(max(0.0, paused), 3)}
        return checks

    def _startup_checks(self) -> dict[str, dict[str, Any]]:
        tokens = self._parts.tokens
        checks: dict[str, dict[str, Any]] = {
            "token": {"ok": tokens.tokens_obtained > 0, "state": tokens.state.value}
        }
        for name, keeper in self._parts.holdings.services.items():
            checks[f"service:{name}"] = _check(keeper, _registered_once(keeper))
        return checks

    @app.route("/startupz", methods=["GET"])
    def startupz(self, request: IRequest) -> bytes:
        """200 once the first token was held and every service registered once."""
        started = self.started()
        body: dict[str, Any] = {"status": "started" if started else "starting"}
        if query_flag(request, "verbose") or not started:
            body["checks"] = self._startup_checks()
        return respond(request, 200 if started else 503, body)

    @app.route("/readyz", methods=["GET"])
    @app.route("/healthz", methods=["GET"])
    def readyz(self, request: IRequest) -> bytes:
        """Start-up first; then 200 while there is a valid token (MEP trouble is info)."""
        terminator = self._parts.terminator
        if terminator is not None and (terminator.notice or terminator.terminated_before):
            body: dict[str, Any] = {"status": "not ready", "reason": "terminating"}
            body["termination"] = terminator.view()
            return respond(request, 503, body)
        if not self.started():
            body = {"status": "not ready", "reason": "starting"}
            body["checks"] = self._startup_checks()
            return respond(request, 503, body)
        ready = self._parts.tokens.current() is not None
        body = {"status": "ready" if ready else "not ready"}
        if query_flag(request, "verbose") or not ready:
            body["checks"] = self.checks()
            body["mep"] = "ok" if all(c["ok"] for c in body["checks"].values()) else "trouble"
            error = self._parts.reloader.last_error
            body["config"] = {"ok": error is None, **({"error": error} if error else {})}
            body["state"] = self._parts.owned.view()
        return respond(request, 200 if ready else 503, body)

    @app.route("/healthz/mep", methods=["GET"])
    def mep_health(self, request: IRequest) -> bytes:
        """200 when every service is registered and heartbeating with a valid token."""
        checks = self.checks()
        healthy = all(c["ok"] for c in checks.values())
        body = {"status": "ok" if healthy else "trouble", "checks": checks}
        return respond(request, 200 if healthy else 503, body)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: IRequest) -> bytes:
        """Prometheus exposition."""
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._parts.metrics)

    @app.route("/mep-agent/v1/status", methods=["GET"])
    def status(self, request: IRequest) -> bytes:
        """Desired versus actual, per service and subscription; the token, READY, the state."""
        parts = self._parts
        tokens = parts.tokens
        token = tokens.current()
        terminator = parts.terminator
        return respond(
            request,
            200,
            {
                "token": {
                    "state": tokens.state.value,
                    "expires_at": token.expires_at if token else None,
                    "refresh_failures": tokens.refresh_failures,
                    "last_error": tokens.last_error,
                },
                "services": [_service(k) for k in parts.holdings.services.values()],
                "subscriptions": [_subscription(k) for k in _subscriptions(parts)],
                "leftovers": [_leftover(k) for k in parts.holdings.strays if not k.finished],
                "ready_confirmed": parts.ready.confirmed,
                "termination": terminator.view() if terminator else None,
                "sync": parts.reconciler.view(),
                "checks": {k: v for k, v in self.checks().items() if k == "links"},
                "pace": _pace(parts, self._clock.seconds()),
                "state": parts.owned.view(),
                "now": self._clock.seconds(),
            },
        )

    @app.route(f"{NOTIFICATIONS}/<secret>", methods=["POST"])
    def notification(self, request: IRequest, secret: str) -> bytes:
        """
        A notification from the MEP: an availability one drops the names it changes; an
        app termination notice starts the agent's leaving (termination.py).
        """
        expected = self._notify_secret.reveal().encode()
        if not hmac.compare_digest(secret.encode("utf-8", "replace"), expected):
            raise NoSuchResource()
        try:
            body = read_json(request)
        except ValueError as e:
            raise BadNotification(f"not a JSON notification: {e}") from None
        kind = body.get("notificationType") if isinstance(body, dict) else None
        if kind == TERMINATION_NOTICE and isinstance(body, dict):
            terminator = self._parts.terminator
            if terminator is None:
                raise BadNotification("termination notices are not handled (--termination off)")
            terminator.notified(body)
            request.setResponseCode(204)
            return b""
        if not isinstance(body, dict) or kind not in NOTIFICATION_TYPES:
            raise BadNotification(
                "expected a SerAvailabilityNotification or an AppTerminationNotification"
            )
        references = body.get("serviceReferences")
        if not isinstance(references, list):
            raise BadNotification("serviceReferences must be a list")
        # About one of ours: the MEP's truth changed.
        changed = [
            r["serInstanceId"]
            for r in references[:1000]
            if isinstance(r, dict)
            and r.get("changeType") in ("STATE_CHANGED", "REMOVED")
            and isinstance(r.get("serInstanceId"), str)
        ]
        if changed:
            self._parts.reconciler.own_change(changed)
        names = [
            r["serName"]
            for r in references
            if isinstance(r, dict) and isinstance(r.get("serName"), str)
        ][:1000]
        self._parts.discovery.invalidate(names)
        if self._parts.forward is not None:
            self._parts.forward(body)
        self.log.info(
            "availability notification for {names}",
            names=names[:20],
            event="notification.received",
        )
        request.setResponseCode(204)
        return b""


def _registered_once(keeper: Keeper) -> bool:
    return keeper.counts.created > 0 or keeper.held is not None


def _subscriptions(parts: AgentParts) -> list[Keeper]:
    holdings = parts.holdings
    return holdings.subscriptions + ([holdings.termination] if holdings.termination else [])


def _check(keeper: Keeper, ok: bool) -> dict[str, Any]:
    check: dict[str, Any] = {"ok": ok, "status": keeper.phase.value}
    if keeper.waiting_for_token:
        check["waitingForToken"] = True
    if keeper.last_error:
        check["lastError"] = keeper.last_error
    return check


def _service(keeper: Keeper) -> dict[str, Any]:
    held = keeper.held
    body = keeper.body or {}
    beats = keeper.beats
    return {
        "serName": keeper.key,
        "desired": {
            "state": body.get("state"),
            "livenessInterval": body.get("livenessInterval", 0),
        },
        "status": keeper.phase.value,
        "serInstanceId": keeper.kind.ref(held) if held is not None else None,
        "livenessInterval": getattr(held, "interval", None),
        "registeredAt": keeper.held_since,
        "registrations": keeper.counts.created,
        "repairs": keeper.counts.repaired,
        "lastHeartbeat": beats.last_good,
        "heartbeatsSent": beats.sent,
        "heartbeatsFailed": beats.failed,
        "consecutiveHeartbeatFailures": beats.failures,
        "waitingForToken": keeper.waiting_for_token,
        "lastError": keeper.last_error or beats.last_error,
        "mep": {"state": keeper.mep_state, "lastSeen": keeper.mep_seen_at},
    }


def _subscription(keeper: Keeper) -> dict[str, Any]:
    held = keeper.held
    return {
        "index": int(keeper.key) if keeper.key.isdigit() else -1,
        "kind": "termination" if keeper.key == "termination" else "availability",
        "status": keeper.phase.value,
        "subscriptionId": getattr(held, "subscription_id", None),
        "lastError": keeper.last_error,
    }


def _leftover(keeper: Keeper) -> dict[str, Any]:
    held = keeper.held
    return {
        "kind": keeper.kind.label,
        "of": keeper.key,
        "ref": keeper.kind.ref(held) if held is not None else None,
        "status": keeper.phase.value,
        "lastError": keeper.last_error,
    }


def _pace(parts: AgentParts, now: float) -> dict[str, Any]:
    budget = parts.budget
    return {
        "rate": budget.rate,
        "burst": budget.burst,
        "available": round(budget.available(), 3),
        "queued": budget.queued,
        "pausedFor": round(max(0.0, budget.paused_until - now), 3),
        "throttled": budget.throttled,
    }
