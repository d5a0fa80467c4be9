"""
The operations API, on its own listener for kubelet probes, Prometheus and the MEP's
notifications. It never shows a token or a key.

  GET  /livez       the process and its reactor answer
  GET  /readyz      a valid token and every service registered and heartbeating
                    (?verbose lists each check); /healthz is the same
  GET  /metrics     Prometheus text format
  GET  /mep-agent/v1/status        desired versus actual registrations, token expiry
  POST /mep-agent/v1/notifications the MEP's availability notifications (callback)
"""

from __future__ import annotations

from typing import Any

from klein import Klein
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.server import Request

from .discovery import DiscoveryCache
from .jsonweb import error, json_errors, query_flag, read_json, respond
from .registration import Registrar
from .subscriptions import Subscriber
from .token import TokenKeeper


class OpsAPI:
    app = Klein()
    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        tokens: TokenKeeper,
        registrar: Registrar,
        subscriber: Subscriber,
        discovery: DiscoveryCache,
        metrics: CollectorRegistry,
    ) -> None:
        self._clock = clock
        self._tokens = tokens
        self._registrar = registrar
        self._subscriber = subscriber
        self._discovery = discovery
        self._metrics = metrics

    def resource(self):
        return self.app.resource()

    @app.route("/livez", methods=["GET"])
    def livez(self, request: Request) -> bytes:
        return respond(request, 200, {"status": "ok"})

    def checks(self) -> dict[str, dict[str, Any]]:
        checks = {"token": {"ok": self._tokens.current() is not None, "state": self._tokens.state}}
        for name, state in self._registrar.states.items():
            checks[f"service:{name}"] = {"ok": state.healthy, "status": state.status}
        return checks

    @app.route("/readyz", methods=["GET"])
    @app.route("/healthz", methods=["GET"])
    def readyz(self, request: Request) -> bytes:
        checks = self.checks()
        ready = all(c["ok"] for c in checks.values())
        body: dict[str, Any] = {"status": "ready" if ready else "not ready"}
        if query_flag(request, "verbose") or not ready:
            body["checks"] = checks
        return respond(request, 200 if ready else 503, body)

    @app.route("/metrics", methods=["GET"])
    def metrics(self, request: Request) -> bytes:
        request.setHeader(b"Content-Type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(self._metrics)

    @app.route("/mep-agent/v1/status", methods=["GET"])
    def status(self, request: Request) -> bytes:
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
                    "status": state.status,
                    "serInstanceId": registration.ser_instance_id if registration else None,
                    "livenessInterval": registration.interval if registration else None,
                    "registeredAt": state.registered_at,
                    "registrations": state.registrations,
                    "lastHeartbeat": state.last_heartbeat,
                    "heartbeatsSent": state.heartbeats_sent,
                    "heartbeatsFailed": state.heartbeats_failed,
                    "consecutiveHeartbeatFailures": state.heartbeat_failures,
                    "lastError": state.last_error,
                }
            )
        return respond(
            request,
            200,
            {
                "token": {
                    "state": self._tokens.state,
                    "expires_at": token.expires_at if token else None,
                    "refresh_failures": self._tokens.refresh_failures,
                    "last_error": self._tokens.last_error,
                },
                "services": services,
                "subscriptions": [
                    {
                        "index": s.index,
                        "status": s.status,
                        "subscriptionId": s.subscription.subscription_id
                        if s.subscription
                        else None,
                        "lastError": s.last_error,
                    }
                    for s in self._subscriber.states
                ],
                "ready_confirmed": self._registrar.ready_confirmed,
                "now": self._clock.seconds(),
            },
        )

    @app.route("/mep-agent/v1/notifications", methods=["POST"])
    def notification(self, request: Request) -> bytes:
        try:
            body = read_json(request)
        except ValueError as e:
            return error(request, 400, f"not a JSON notification: {e}")
        if (
            not isinstance(body, dict)
            or body.get("notificationType") != "SerAvailabilityNotification"
        ):
            return error(request, 400, "expected a SerAvailabilityNotification")
        references = body.get("serviceReferences")
        if not isinstance(references, list):
            return error(request, 400, "serviceReferences must be a list")
        names = [
            r["serName"]
            for r in references
            if isinstance(r, dict) and isinstance(r.get("serName"), str)
        ]
        self._discovery.invalidate(names)
        self.log.info(
            "availability notification for {names}", names=names, event="notification.received"
        )
        request.setResponseCode(204)
        return b""

    json_errors(app)
