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
from collections.abc import Callable
from typing import Any

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource

from mep_agent.core.discovery import DiscoveryCache
from mep_agent.core.reconcile import Reconciler
from mep_agent.core.registration import Registrar
from mep_agent.core.reload import ConfigReloader
from mep_agent.core.subscriptions import Subscriber, SubscriptionStatus
from mep_agent.core.termination import NOTIFICATION_TYPE as TERMINATION_NOTICE
from mep_agent.core.termination import Terminator
from mep_agent.core.token import TokenKeeper
from mep_agent.util.secret import Secret
from mep_agent.web.jsonweb import JSONGuard, query_flag, read_json, respond, strict_routes
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


class OpsAPI:
    """The operations API's Klein app; see the module docstring."""

    app = Klein()
    strict_routes(app)
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        tokens: TokenKeeper,
        registrar: Registrar,
        subscriber: Subscriber,
        discovery: DiscoveryCache,
        metrics: CollectorRegistry,
        notify_secret: Secret,
        reloader: ConfigReloader | None = None,
        forward: Callable[[dict[str, Any]], None] | None = None,
        terminator: Terminator | None = None,
        reconciler: Reconciler | None = None,
    ) -> None:
        self._clock = clock
        self._tokens = tokens
        self._registrar = registrar
        self._subscriber = subscriber
        self._discovery = discovery
        self._metrics = metrics
        self._notify_secret = notify_secret
        self._reloader = reloader
        self._forward = forward
        self._terminator = terminator
        self._reconciler = reconciler
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
            self._started = self._tokens.tokens_obtained > 0 and all(
                s.registrations > 0 for s in self._registrar.states.values()
            )
        return self._started

    def checks(self) -> dict[str, dict[str, Any]]:
        """The token, every service (registered, heartbeating) and every subscription."""
        checks: dict[str, dict[str, Any]] = {
            "token": {"ok": self._tokens.current() is not None, "state": self._tokens.state.value}
        }
        for name, state in self._registrar.states.items():
            check: dict[str, Any] = {"ok": state.healthy, "status": state.status.value}
            if state.waiting_for_token:
                check["waitingForToken"] = True
            checks[f"service:{name}"] = check
        for subscription in self._subscriber.states:
            checks[f"subscription:{subscription.label}"] = {
                "ok": subscription.status is SubscriptionStatus.ACTIVE,
                "status": subscription.status.value,
            }
        if self._reconciler is not None:
            checks["sync"] = self._reconciler.view()
        return checks

    def _startup_checks(self) -> dict[str, dict[str, Any]]:
        checks: dict[str, dict[str, Any]] = {
            "token": {"ok": self._tokens.tokens_obtained > 0, "state": self._tokens.state.value}
        }
        for name, state in self._registrar.states.items():
            check: dict[str, Any] = {"ok": state.registrations > 0, "status": state.status.value}
            if state.waiting_for_token:
                check["waitingForToken"] = True
            checks[f"service:{name}"] = check
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
        if self._terminator is not None and self._terminator.notice is not None:
            body: dict[str, Any] = {"status": "not ready", "reason": "terminating"}
            body["termination"] = self._terminator.view()
            return respond(request, 503, body)
        if not self.started():
            body = {"status": "not ready", "reason": "starting"}
            body["checks"] = self._startup_checks()
            return respond(request, 503, body)
        ready = self._tokens.current() is not None
        body = {"status": "ready" if ready else "not ready"}
        if query_flag(request, "verbose") or not ready:
            body["checks"] = self.checks()
            body["mep"] = "ok" if all(c["ok"] for c in body["checks"].values()) else "trouble"
            if self._reloader is not None:
                error = self._reloader.last_error
                body["config"] = {"ok": error is None, **({"error": error} if error else {})}
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
        return generate_latest(self._metrics)

    @app.route("/mep-agent/v1/status", methods=["GET"])
    def status(self, request: IRequest) -> bytes:
        """Desired versus actual, per service and subscription, and the token's state."""
        token = self._tokens.current()
        services = []
        for name, state in self._registrar.states.items():
            registration = state.registration
            services.append(
                {
                    "serName": name,
                    "desired": {
                        "state": state.spec.body.get("state"),
                        "livenessInterval": state.spec.body.get("livenessInterval", 0),
                    },
                    "status": state.status.value,
                    "serInstanceId": registration.ser_instance_id if registration else None,
                    "livenessInterval": registration.interval if registration else None,
                    "registeredAt": state.registered_at,
                    "registrations": state.registrations,
                    "lastHeartbeat": state.last_heartbeat,
                    "heartbeatsSent": state.heartbeats_sent,
                    "heartbeatsFailed": state.heartbeats_failed,
                    "consecutiveHeartbeatFailures": state.heartbeat_failures,
                    "waitingForToken": state.waiting_for_token,
                    "lastError": state.last_error,
                    "mep": {"state": state.mep_state, "lastSeen": state.mep_seen_at},
                }
            )
        return respond(
            request,
            200,
            {
                "token": {
                    "state": self._tokens.state.value,
                    "expires_at": token.expires_at if token else None,
                    "refresh_failures": self._tokens.refresh_failures,
                    "last_error": self._tokens.last_error,
                },
                "services": services,
                "subscriptions": [
                    {
                        "index": s.index,
                        "kind": "termination" if s.termination else "availability",
                        "status": s.status.value,
                        "subscriptionId": s.subscription.subscription_id
                        if s.subscription
                        else None,
                        "lastError": s.last_error,
                    }
                    for s in self._subscriber.states
                ],
                "ready_confirmed": self._registrar.ready_confirmed,
                "termination": self._terminator.view() if self._terminator else None,
                "sync": self._reconciler.view() if self._reconciler else None,
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
            if self._terminator is None:
                raise BadNotification("termination notices are not handled (--termination off)")
            self._terminator.notified(body)
            request.setResponseCode(204)
            return b""
        if not isinstance(body, dict) or kind not in NOTIFICATION_TYPES:
            raise BadNotification(
                "expected a SerAvailabilityNotification or an AppTerminationNotification"
            )
        references = body.get("serviceReferences")
        if not isinstance(references, list):
            raise BadNotification("serviceReferences must be a list")
        if self._reconciler is not None:  # about one of ours: the MEP's truth changed
            changed = [
                r["serInstanceId"]
                for r in references[:1000]
                if isinstance(r, dict)
                and r.get("changeType") in ("STATE_CHANGED", "REMOVED")
                and isinstance(r.get("serInstanceId"), str)
            ]
            if changed:
                self._reconciler.own_change(changed)
        names = [
            r["serName"]
            for r in references
            if isinstance(r, dict) and isinstance(r.get("serName"), str)
        ][:1000]
        self._discovery.invalidate(names)
        if self._forward is not None:
            self._forward(body)
        self.log.info(
            "availability notification for {names}",
            names=names[:20],
            event="notification.received",
        )
        request.setResponseCode(204)
        return b""
