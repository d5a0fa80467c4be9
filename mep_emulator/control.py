"""
The emulator's control API under /_emulator (development and tests only; serve it on
loopback): what the emulator holds and saw, faults, settings, restarts, credentials,
forced service states and terminations. app.py mounts it; it acts on the L{MepEmulator}.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, evolve
from klein import Klein
from twisted.web.server import Request

from mep_emulator import mm5
from mep_emulator import termination as mec011
from mep_emulator.answers import json_object_body, read_body, write_json
from mep_emulator.auth import ACCESS_KEY, App
from mep_emulator.dev import DEV_APP
from mep_emulator.faults import BadFault, Fault
from mep_emulator.rules import UUID

if TYPE_CHECKING:
    from mep_emulator.app import MepEmulator


@define
class ControlAPI:
    """The control API of one emulated MEP."""

    mep: MepEmulator

    app = Klein()

    @app.route("/state", methods=["GET"])
    def state(self, request: Request) -> bytes:
        """Control API: everything the emulator holds, and what it saw."""
        self.mep.registry.check_liveness()
        return write_json(
            request,
            200,
            {
                "services": [
                    dict(
                        r.view(),
                        heartbeats=r.heartbeats,
                        lastHeartbeat=r.last_beat,
                        gatewayRoutes=r.routes,
                    )
                    for r in self.mep.registry.services.values()
                ],
                "subscriptions": [
                    dict(s.body, subscriptionId=s.subscription_id)
                    for s in self.mep.registry.subscriptions.values()
                ],
                "ready": sorted(self.mep.registry.ready),
                "terminations": [t.view() for t in self.mep.registry.terminations.values()],
                "tokens_issued": self.mep.tokens_issued,
                "request_counts": dict(self.mep.counts),
                "connections": dict(self.mep.connections),
                "token_lifetime": self.mep.token_lifetime,
                "settings": self.settings_view(),
                "apps": [
                    {
                        "appInstanceId": a.app_instance_id,
                        "requiredServices": _listed(a.required_services),
                    }
                    for a in self.mep.apps.values()
                ],
                "retired": sorted(self.mep.retired),
                "deleted": sorted(self.mep.deleted_apps),
                "faults": self.mep.faults.describe(),
                "notifications": self.mep.notifications[-100:],
                "requests": [
                    {"method": r.method, "path": r.path, "kind": r.kind, "status": r.status}
                    for r in self.mep.requests
                ],
            },
        )

    @app.route("/faults", methods=["POST"])
    def add_fault(self, request: Request) -> bytes:
        """Control API: queue a fault."""
        try:
            fault, count = Fault.from_json(json.loads(read_body(request) or b"null"))
        except (ValueError, BadFault) as e:
            return write_json(request, 400, {"error": str(e)})
        self.mep.faults.add(fault, count)
        return write_json(request, 201, {"faults": self.mep.faults.describe()})

    @app.route("/faults", methods=["DELETE"])
    def clear_faults(self, request: Request) -> bytes:
        """Control API: forget the queued faults."""
        self.mep.faults.clear()
        return write_json(request, 204, None)

    @app.route("/settings", methods=["POST"])
    def settings(self, request: Request) -> bytes:
        """
        Control API: change settings, C{{name: value}} for any of SETTINGS (all or none are
        applied); answers every setting.
        """
        try:
            body = json.loads(read_body(request) or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not set(body) <= set(SETTINGS):
            expected = ", ".join(SETTINGS)
            return write_json(request, 400, {"error": f"expected some of {{{expected}}}"})
        for key, value in body.items():
            check, expected = SETTINGS[key]
            if not check(value):
                return write_json(request, 400, {"error": f"{key} must be {expected}"})
        for key, value in body.items():
            self._apply_setting(key, value)
        return write_json(request, 200, self.settings_view())

    @app.route("/settings", methods=["GET"])
    def get_settings(self, request: Request) -> bytes:
        """Control API: every setting."""
        return write_json(request, 200, self.settings_view())

    def _apply_setting(self, key: str, value: Any) -> None:
        if key == "liveness_interval":
            self.mep.registry.liveness_interval = value
        elif key == "rate_limit":
            self.mep.mp1_limit.limit = value
        elif key == "token_rate_limit":
            self.mep.token_limit.limit = value
        else:  # an attribute of the same name
            setattr(self.mep, key, value)

    def settings_view(self) -> dict[str, Any]:
        """Every setting the control API changes, by name."""
        return {
            "token_lifetime": self.mep.token_lifetime,
            "liveness_interval": self.mep.registry.liveness_interval,
            "rate_limit": self.mep.mp1_limit.limit,
            "token_rate_limit": self.mep.token_limit.limit,
            "retry_after": self.mep.retry_after,
            "refuse_updates": self.mep.refuse_updates,
            "chaos": self.mep.chaos,
            "termination_link": self.mep.termination_link,
            "termination_deletes_credentials": self.mep.termination_deletes_credentials,
            "platform": self.mep.platform,
            "presentation": self.mep.presentation,
        }

    @app.route("/flush", methods=["POST"])
    def flush(self, request: Request) -> bytes:
        """
        Control API: the platform restarted with an empty store: every service,
        subscription and READY forgotten (the ETSI face then answers every call of the app
        403 "not ready" until confirm_ready, as AdvantEDGE does).
        """
        self.mep.registry.restart()
        return write_json(request, 204, None)

    @app.route("/restart", methods=["POST"])
    def restart(self, request: Request) -> bytes:
        """
        Control API: the platform restarted. By default with an empty store, as /flush;
        C{{"keep": true}}: with its store kept, as mepserver over its etcd (what it stored
        survives, a termination under way is lost).
        """
        try:
            options = json.loads(read_body(request) or b"null")
        except ValueError:
            options = []
        if options is None:  # no body, or JSON null (treq's json=None): as it always was
            options = {}
        keep = options.get("keep", False) if isinstance(options, dict) else None
        if not isinstance(keep, bool):
            return write_json(request, 400, {"error": 'the body must be {"keep": true|false}'})
        if keep:
            self.mep.registry.restart_keeping()
        else:
            self.mep.registry.restart()
        return write_json(request, 204, None)

    @app.route("/rotate-key", methods=["POST"])
    def rotate_key(self, request: Request) -> bytes:
        """Sign with a new key (as a restarted MEP does): every issued token turns invalid."""
        self.mep.issuer.rotate()
        return write_json(request, 204, None)

    @app.route("/rotate-credentials", methods=["POST"])
    def rotate_credentials(self, request: Request) -> bytes:
        """
        Control API: switch an app to a new AK/SK, as the platform's provisioning does when
        it rotates them: C{{"app_instance_id", "ak", "sk"}} (new ones generated when not
        given); the old AK is unknown from then on (401). Answers the new pair.
        """
        options = json_object_body(request)
        if options is None:
            return write_json(request, 400, {"error": "the body must be a JSON object"})
        app_id = options.get("app_instance_id", DEV_APP.app_instance_id)
        old = self.mep.app_instance(app_id)
        if old is None:
            return write_json(request, 404, {"error": "no such app instance"})
        access_key = options.get("ak") or _generated(20)
        secret_key = options.get("sk") or _generated(64)
        del self.mep.apps[old.access_key]
        self.mep.apps[access_key] = evolve(old, access_key=access_key, secret_key=secret_key)
        return write_json(request, 200, {"ak": access_key, "sk": secret_key})

    @app.route("/provision", methods=["POST"])
    def provision(self, request: Request) -> bytes:
        """
        Control API: provision an app's mepauth record, as MECM does with mepauth's PUT
        .../applications/{id}/confs: C{{"app_instance_id", "ak", "sk",
        "required_services"}}. ak and sk default to the app's present ones, else to those a
        termination deleted, else new ones; required_services is a list of names or null
        (every service), unchanged when not given. Answers the record, SK included. An app
        instance a termination deleted (the ETSI face as AdvantEDGE) exists again, not
        READY, as AdvantEDGE's sandbox creates it anew.
        """
        options = json_object_body(request)
        error = _provision_error(options)
        if options is None or error is not None:
            return write_json(request, 400, {"error": error})
        app_id = options.get("app_instance_id", DEV_APP.app_instance_id)
        base = self.mep.app_instance(app_id) or self.mep.retired.get(app_id)
        access_key = options.get("ak") or (base.access_key if base else _generated(20))
        holder = self.mep.apps.get(access_key)
        if holder is not None and holder.app_instance_id != app_id:
            return write_json(request, 409, {"error": "ak belongs to another app instance"})
        required = (
            _tuple(options["required_services"])
            if "required_services" in options
            else (base.required_services if base else None)
        )
        app = App(
            access_key,
            options.get("sk") or (base.secret_key if base else _generated(64)),
            app_id,
            required,
        )
        for old in [a for a in self.mep.apps.values() if a.app_instance_id == app_id]:
            del self.mep.apps[old.access_key]
        self.mep.retired.pop(app_id, None)
        self.mep.deleted_apps.discard(app_id)  # the app instance exists again (not READY)
        self.mep.apps[access_key] = app
        return write_json(
            request,
            200,
            {
                "app_instance_id": app_id,
                "ak": app.access_key,
                "sk": app.secret_key,
                "required_services": _listed(required),
            },
        )

    @app.route("/unlock", methods=["POST"])
    def unlock(self, request: Request) -> bytes:
        """Control API: lift every AK lock-out."""
        self.mep.lockout.unlock_all()
        return write_json(request, 204, None)

    @app.route("/services/<ser_id>/state", methods=["POST"])
    def force_state(self, request: Request, ser_id: str) -> bytes:
        """Control API: force a service's state."""
        try:
            state = json.loads(read_body(request) or b"null").get("state")
        except (ValueError, AttributeError):
            state = None
        if state not in ("ACTIVE", "INACTIVE", "SUSPENDED"):
            return write_json(
                request, 400, {"error": "state must be ACTIVE, INACTIVE or SUSPENDED"}
            )
        if ser_id not in self.mep.registry.services:
            return write_json(request, 404, {"error": "no such service"})
        return write_json(request, 200, self.mep.registry.set_state(ser_id, state).view())

    @app.route("/terminate/<app_id>", methods=["POST"])
    def terminate(self, request: Request, app_id: str) -> bytes:
        """
        Control API: start an app termination, C{{"operationAction", "maxGracefulTimeout"}}
        (TERMINATING and the face's default, 5 s or AdvantEDGE's 10, when not given; any
        values, to try the agent with bad ones).
        """
        options = json_object_body(request)
        if options is None:
            return write_json(request, 400, {"error": "the body must be a JSON object"})
        timeout = options.get("maxGracefulTimeout", self.mep.default_graceful_timeout())
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            return write_json(request, 400, {"error": "maxGracefulTimeout must be a number"})
        start = mm5.terminate if self.mep.registry.mepserver else mec011.terminate
        started = start(
            self.mep.registry,
            app_id,
            options.get("operationAction", "TERMINATING"),
            timeout,
            self.mep.termination_links,
        )
        return write_json(request, 200, started.view())


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


#: What /_emulator/settings takes: name -> (check, what the check wants).
SETTINGS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "token_lifetime": (_positive_int, "a positive integer"),
    "liveness_interval": (_positive_int, "a positive integer"),
    "rate_limit": (_count, "an integer >= 0 (0: none)"),
    "token_rate_limit": (_count, "an integer >= 0 (0: none)"),
    "retry_after": (lambda v: isinstance(v, bool), "true or false"),
    "refuse_updates": (lambda v: v is None or (_count(v) and v in (501, 405)), "501, 405 or null"),
    "chaos": (
        lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1,
        "a number from 0 to 1",
    ),
    "termination_link": (lambda v: v in ("standard", "advantedge"), "standard or advantedge"),
    "termination_deletes_credentials": (lambda v: isinstance(v, bool), "true or false"),
    "platform": (lambda v: v in ("standard", "advantedge"), "standard or advantedge"),
    "presentation": (lambda v: v in ("registered", "mepserver"), "registered or mepserver"),
}


def _provision_error(options: dict[str, Any] | None) -> str | None:
    """What is wrong with a /_emulator/provision body, None when nothing."""
    if options is None:
        return "the body must be a JSON object"
    app_id = options.get("app_instance_id", DEV_APP.app_instance_id)
    if not isinstance(app_id, str) or not UUID.match(app_id):
        return "app_instance_id must be a lower-case UUID"
    ak, sk = options.get("ak"), options.get("sk")
    if ak is not None and not (isinstance(ak, str) and ACCESS_KEY.fullmatch(ak)):
        return "ak must be 20 characters of A-Z a-z 0-9 _ + / ="
    if sk is not None and not (isinstance(sk, str) and sk):
        return "sk must be a non-empty string"
    required = options.get("required_services")
    if required is not None and not (
        isinstance(required, list) and all(isinstance(n, str) for n in required)
    ):
        return "required_services must be a list of service names or null"
    return None


def _generated(length: int) -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _tuple(names: list[str] | None) -> tuple[str, ...] | None:
    return None if names is None else tuple(names)


def _listed(names: tuple[str, ...] | None) -> list[str] | None:
    return None if names is None else list(names)
