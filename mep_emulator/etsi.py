"""
The emulator's second face: a platform that follows ETSI MEC 011 v2.2.1 as observed on
AdvantEDGE (docs/protocol.md), over the same registry as the EdgeGallery face.

- A configurable API root; an OAuth 2.0 client-credentials token endpoint at
  C{/oauth2/token} (RFC 6749 section 4.4, client authenticated with HTTP Basic).
- Registrations refused with 403 until the app confirmed READY; ServiceInfoPost validated
  (required TransportInfo members, transportId xor transportInfo, no read-only fields).
- Absolute C{_links.self.href}, C{_links.liveness.href} and C{Location}; PATCH-only
  liveness (PUT is 405); an update may change nothing but C{state}.
- ProblemDetails errors with the HTTP status; names are plain strings (C{rnis.v2}).
- SerAvailabilityNotifications with absolute links; a PUT that changes C{state} notifies
  STATE_CHANGED.
- With the setting C{platform: advantedge}, AdvantEDGE 1.9.2's departures from MEC 011
  (advantedge.py): a terminated app instance deleted, its error shapes and texts.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any
from urllib.parse import parse_qs, unquote

from attrs import define, field
from klein import Klein
from twisted.web.resource import IResource
from twisted.web.server import Request
from werkzeug.exceptions import NotFound

from mep_emulator import advantedge
from mep_emulator import termination as mec011
from mep_emulator.answers import read_body, write_json
from mep_emulator.app import (
    MepEmulator,
    Problem,
    RequestRecord,
    Unauthorized,
    fault_point,
)
from mep_emulator.registry import ServiceRecord, SubscriptionRecord
from mep_emulator.rules import Rejected

NOT_READY = "App Instance not ready. Waiting for AppReadyConfirmation."
TRANSPORT_MEMBERS = ("id", "name", "type", "protocol", "version", "endpoint", "security")
READ_ONLY = ("_links", "serInstanceId")
#: The platform's own transports (GET …/transports); a service may name one by id.
TRANSPORTS = (
    {
        "id": "rest-http-1",
        "name": "REST",
        "description": "REST over HTTP",
        "type": "REST_HTTP",
        "protocol": "HTTP",
        "version": "1.1",
        "endpoint": {"uris": ["http://gateway.example:8080/"]},
        "security": {},
    },
)


def service_info_post(body: Any) -> dict[str, Any]:
    """MEC 011 v2.2.1 ServiceInfoPost as the observed server checks it; 400 otherwise."""
    if not isinstance(body, dict):
        raise Problem(400, "Bad Request", "body must be a ServiceInfoPost object")
    for key in READ_ONLY:
        if key in body:
            raise Problem(400, "Bad Request", f"{key} is read-only")
    for key in ("serName", "version", "state", "serializer"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise Problem(400, "Bad Request", f"{key} is required")
    if ("transportId" in body) == ("transportInfo" in body):
        raise Problem(400, "Bad Request", "exactly one of transportId and transportInfo")
    transport = body.get("transportInfo")
    if transport is not None:
        if not isinstance(transport, dict):
            raise Problem(400, "Bad Request", "transportInfo must be an object")
        for key in TRANSPORT_MEMBERS:
            if key not in transport:
                raise Problem(400, "Bad Request", f"transportInfo.{key} is required")
    elif body["transportId"] not in {t["id"] for t in TRANSPORTS}:
        raise Problem(400, "Bad Request", "unknown transportId")
    interval = body.get("livenessInterval", 0)
    if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
        raise Problem(400, "Bad Request", "livenessInterval must be an integer >= 0")
    return dict(body)


class NoSuchService(Problem):
    """An unknown service id: a ProblemDetails, or AdvantEDGE's empty 404."""

    def __init__(self) -> None:
        super().__init__(404, "Not Found", "no such service instance")


@define
class OAuth2Client:
    """A client the token endpoint knows, bound to one app instance."""

    client_id: str
    client_secret: str = field(repr=False)
    app_instance_id: str


@define
class EtsiMep:
    """The ETSI face; C{core} holds the registry, faults, tokens and the control API."""

    core: MepEmulator
    api_root: str
    clients: dict[str, OAuth2Client]
    check_tokens: bool = True  # AdvantEDGE checks none; a real platform would
    # The platform's public URL: every link is built from it (AdvantEDGE's MEEP_HOST_URL),
    # however the app reached it. None: from the request's own Host.
    public_url: str | None = None
    app: Klein = field(init=False)
    # The platform's URL as its apps reach it (the last Mp1 request's): notifications, sent
    # outside any request, build their links from it.
    _mp1_base: str = field(init=False, default="https://127.0.0.1")

    def __attrs_post_init__(self) -> None:
        self.app = Klein()
        root = self.api_root
        mgmt, support = f"{root}/mec_service_mgmt/v1", f"{root}/mec_app_support/v1"
        routes: list[tuple[str, list[str], Any]] = [
            ("/oauth2/token", ["POST"], self.token),
            (f"{mgmt}/applications/<app_id>/services", ["POST"], self.register),
            (f"{mgmt}/applications/<app_id>/services", ["GET"], self.own_services),
            (
                f"{mgmt}/applications/<app_id>/subscriptions",
                ["GET"],
                self.subscriptions,
            ),
            (f"{mgmt}/applications/<app_id>/services/<ser_id>", ["GET"], self.one_service),
            (f"{mgmt}/applications/<app_id>/services/<ser_id>", ["PUT"], self.update),
            (f"{mgmt}/applications/<app_id>/services/<ser_id>", ["DELETE"], self.deregister),
            (
                f"{mgmt}/applications/<app_id>/services/<ser_id>/liveness",
                ["PATCH", "PUT"],
                self.heartbeat,
            ),
            (f"{mgmt}/services", ["GET"], self.discover),
            (f"{mgmt}/services/<ser_id>", ["GET"], self.any_service),
            (f"{mgmt}/transports", ["GET"], self.transports),
            (f"{mgmt}/applications/<app_id>/subscriptions", ["POST"], self.subscribe),
            (
                f"{mgmt}/applications/<app_id>/subscriptions/<sub_id>",
                ["GET", "DELETE"],
                self.subscription,
            ),
            (f"{support}/applications/<app_id>/confirm_ready", ["POST"], self.confirm_ready),
            (
                f"{support}/applications/<app_id>/confirm_termination",
                ["POST"],
                self.confirm_termination,
            ),
            (
                f"{support}/applications/<app_id>/subscriptions",
                ["POST"],
                self.termination_subscribe,
            ),
            (
                f"{support}/applications/<app_id>/subscriptions",
                ["GET"],
                self.termination_subscriptions,
            ),
            (
                f"{support}/applications/<app_id>/subscriptions/<sub_id>",
                ["GET", "DELETE"],
                self.termination_subscription,
            ),
            (f"{support}/confirm_termination", ["GET", "POST", "PUT"], self.unrouted),
        ]
        for path, methods, handler in routes:
            self.app.route(path, methods=methods)(handler)
        handle_errors: Any = self.app.handle_errors  # Klein types handlers without self
        handle_errors(NotFound)(self._elsewhere)
        self.core.termination_links = self._termination_links
        self.core.default_graceful_timeout = self._graceful_timeout
        self.core.registry.availability_links = self._availability_links
        self.core.registry.mepserver = False
        self.core.registry.termination_listeners.append(self._termination_ended)

    def resource(self) -> IResource:
        """The resource to serve (the control API under /_emulator comes from the core)."""
        return self.app.resource()

    def _elsewhere(self, request: Request, failure: Any) -> Any:
        if request.path.startswith(b"/_emulator/"):
            return self.core.resource()
        return write_json(request, 404, self._problem(404, "Not Found", "no such resource"))

    # -- what the fault_point decorator and the handlers use ---------------------------

    @property
    def advantedge(self) -> bool:
        """Whether the face plays AdvantEDGE 1.9.2 (the setting platform)."""
        return self.core.platform == "advantedge"

    async def handle(self, request: Request, kind: str, handler: Any) -> Any:
        """Run a handler with the core's fault points and error answers (no Kong here)."""
        return await self.core.handle(
            request, kind, lambda: self._answer(request, handler), kong=False
        )

    def _answer(self, request: Request, handler: Any) -> Any:
        """The handler's answer; its Problem in the platform's shape (the handlers are sync)."""
        try:
            return handler()
        except NoSuchService:
            if not self.advantedge:
                raise
            # AdvantEDGE: w.WriteHeader(404) after the JSON Content-Type, and no body
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"application/json; charset=UTF-8")
            return b""
        except Problem as e:
            return write_json(request, e.status, self._problem(e.status, e.title, e.detail))

    def _problem(self, status: int, title: str, detail: str) -> dict[str, Any]:
        if self.advantedge:
            return advantedge.problem_details(status, detail)
        return _problem(status, title, detail)

    def _base(self, request: Request) -> str:
        host = (request.getHeader(b"host") or b"127.0.0.1").decode("latin-1")
        base = self.public_url or f"{'https' if request.isSecure() else 'http'}://{host}"
        self._mp1_base = base
        return base

    def _notice_base(self) -> str:
        """The base of a notification's links, sent outside any request."""
        return self.public_url or self._mp1_base

    def _availability_links(
        self, record: ServiceRecord, sub: SubscriptionRecord, change: str
    ) -> tuple[str | None, str]:
        """
        A SerAvailabilityNotification's links: absolute, REMOVED included, as MEC 011's
        LinkType and AdvantEDGE 1.9.2 (service-mgmt.go checkSerAvailNotification builds the
        service's from hostUrl + basePath + "services/{id}", seen on the interop kit).
        """
        base = f"{self._notice_base()}{self.api_root}"
        return f"{base}/mec_service_mgmt/v1/services/{record.ser_instance_id}", base + sub.href

    def _graceful_timeout(self) -> float:
        """A termination's maxGracefulTimeout when the control call names none."""
        return advantedge.GRACEFUL_TIMEOUT if self.advantedge else 5

    def _termination_ended(self, app_id: str) -> None:
        """
        AdvantEDGE deletes the app instance once its termination is over (confirmed or at
        the deadline: app-support.go delAppInfo): 404 for every call until it is created
        again (/_emulator/provision).
        """
        if self.advantedge:
            self.core.deleted_apps.add(app_id)

    def _termination_links(self, app_id: str, sub: SubscriptionRecord) -> dict[str, Any]:
        """
        MEC 011 v2.2.1's AppTerminationNotification links: absolute {"href"}s. With the
        setting termination_link "advantedge", confirmTermination is AdvantEDGE 1.9.2's
        C{{base}}/mec_app_support/v1/confirm_termination, without C{applications/{id}/}
        (meep-app-enablement/server/app-support/app-support.go builds it from basePath +
        "confirm_termination"; seen in its notification on the interop kit), a path that
        answers 404. The setting platform "advantedge" implies it.
        """
        support = f"{self._notice_base()}{self.api_root}/mec_app_support/v1"
        app = f"{support}/applications/{app_id}"
        theirs = self.core.termination_link == "advantedge" or self.advantedge
        confirm = support if theirs else app
        return {
            "subscription": {"href": f"{app}/subscriptions/{sub.subscription_id}"},
            "confirmTermination": {"href": f"{confirm}/confirm_termination"},
        }

    def unrouted(self, request: Request) -> bytes:
        """
        {root}/mec_app_support/v1/confirm_termination, which AdvantEDGE links to and has no
        route for: its gorilla/mux router's 404, plain text (observed on the interop kit).
        """
        self.core.requests.append(
            RequestRecord(
                request.method.decode(),
                request.path.decode("utf-8", "replace"),
                "confirm_termination",
                404,
            )
        )
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return b"404 page not found\n"

    def _authorize(self, request: Request, app_id: str | None, ready: bool = True) -> None:
        """
        The bearer token, when checked; and, as AdvantEDGE does, READY: every call of an
        app (but confirm_ready and confirm_termination) is a 403 "not ready" until the app
        confirmed READY, again after the platform lost its state (docs/protocol.md). Before
        all that, with platform advantedge, a deleted app instance: 404 (AdvantEDGE looks
        the app up first in every handler).
        """
        if self.advantedge and app_id is not None and app_id in self.core.deleted_apps:
            raise Problem(404, "Not Found", advantedge.APP_NOT_FOUND)
        if ready and app_id is not None and app_id not in self.core.registry.ready:
            raise Problem(403, "Forbidden", NOT_READY)
        if not self.check_tokens:
            return
        values = request.requestHeaders.getRawHeaders("authorization")
        verdict = self.core.issuer.check(values[0] if values else None, self.core.clock.seconds())
        if verdict.app_instance_id is None:
            raise Unauthorized(
                401, self._problem(401, "Unauthorized", "a valid bearer token is needed")
            )
        if app_id is not None and app_id != verdict.app_instance_id:
            raise Problem(403, "Forbidden", "the token is another application's")

    def _json(self, request: Request) -> Any:
        return self._decode(read_body(request))

    def _decode(self, raw: bytes) -> Any:
        """
        A request's JSON body: 400 when it is not JSON; with platform advantedge, Go's
        decoder and AdvantEDGE's 500 with its message (every handler answers a decoding
        error so).
        """
        if self.advantedge:
            try:
                return advantedge.decode(raw)
            except advantedge.GoJsonError as e:
                raise Problem(500, "Internal Server Error", str(e)) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise Problem(400, "Bad Request", "body is not JSON") from None

    def _view(self, request: Request, record: ServiceRecord) -> dict[str, Any]:
        base = self._base(request)
        path = (
            f"{self.api_root}/mec_service_mgmt/v1/applications/{record.app_instance_id}"
            f"/services/{record.ser_instance_id}"
        )
        out = dict(record.body, serInstanceId=record.ser_instance_id, state=record.state)
        links: dict[str, Any] = {"self": {"href": base + path}}
        if record.interval:
            out["livenessInterval"] = record.interval
            links["liveness"] = {"href": f"{base}{path}/liveness"}
        out["_links"] = links
        return out

    def _subscription_url(self, request: Request, record: SubscriptionRecord) -> str:
        return f"{self._base(request)}{self.api_root}{record.href}"

    def _own(self, app_id: str, ser_id: str) -> ServiceRecord:
        try:
            return self.core.registry.get(app_id, ser_id)
        except Rejected:
            raise NoSuchService() from None

    # -- OAuth 2.0 --------------------------------------------------------------------------

    @fault_point("token")
    def token(self, request: Request) -> bytes:
        """RFC 6749 client credentials: Basic-authenticated client, form-encoded grant."""
        client = self._client(request)
        form = parse_qs(read_body(request).decode("utf-8", "replace"))
        if form.get("grant_type") != ["client_credentials"]:
            return write_json(request, 400, {"error": "unsupported_grant_type"})
        if client is None:
            request.setHeader(b"WWW-Authenticate", b'Basic realm="mep-emulator"')
            return write_json(request, 401, {"error": "invalid_client"})
        self.core.tokens_issued += 1
        lifetime = self.core.token_lifetime
        token = self.core.issuer.mint(client.app_instance_id, self.core.clock.seconds(), lifetime)
        request.setHeader(b"Cache-Control", b"no-store")
        return write_json(
            request, 200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime}
        )

    def _client(self, request: Request) -> OAuth2Client | None:
        values = request.requestHeaders.getRawHeaders("authorization") or [""]
        scheme, _, encoded = values[0].partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, _, secret = decoded.partition(":")
        client = self.clients.get(unquote(client_id))
        if client is None or not hmac.compare_digest(unquote(secret), client.client_secret):
            return None
        return client

    # -- service management -------------------------------------------------------------

    @fault_point("register")
    def register(self, request: Request, app_id: str) -> bytes:
        """POST a ServiceInfoPost: 403 before confirm_ready, 201 with absolute links."""
        self._authorize(request, app_id)
        body = self._json(request)
        record = self.core.registry.register(app_id, body, validate=service_info_post)
        view = self._view(request, record)
        request.setHeader(b"Location", view["_links"]["self"]["href"].encode())
        return write_json(request, 201, view)

    @fault_point("sync")
    def own_services(self, request: Request, app_id: str) -> bytes:
        """GET the app's own services: a JSON array ([] when none)."""
        self._authorize(request, app_id)
        records = [r for r in self.core.registry.services.values() if r.app_instance_id == app_id]
        return write_json(request, 200, [self._view(request, r) for r in records])

    @fault_point("sync")
    def subscriptions(self, request: Request, app_id: str) -> bytes:
        """GET the app's availability subscriptions: a SubscriptionLinkList."""
        self._authorize(request, app_id)
        return self._link_list(request, app_id, termination=False)

    def _link_list(self, request: Request, app_id: str, termination: bool) -> bytes:
        """The app's subscriptions of one kind as a SubscriptionLinkList."""
        records = self.core.registry.app_subscriptions(app_id, termination)
        api = "mec_app_support" if termination else "mec_service_mgmt"
        url = self._termination_url if termination else self._subscription_url
        kind = (
            "AppTerminationNotificationSubscription"
            if termination
            else "SerAvailabilityNotificationSubscription"
        )
        base = f"{self._base(request)}{self.api_root}/{api}/v1"
        # AdvantEDGE names the kind of its app-support ones in "rel", as MEC 011 v1.1.1 did
        member = (
            advantedge.SUBSCRIPTION_KIND_MEMBER
            if termination and self.advantedge
            else "subscriptionType"
        )
        listed = [{"href": url(request, r), member: kind} for r in records]
        return write_json(
            request,
            200,
            {
                "_links": {
                    "self": {"href": f"{base}/applications/{app_id}/subscriptions"},
                    "subscriptions": listed,
                }
            },
        )

    @fault_point("service")
    def one_service(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """GET one service."""
        self._authorize(request, app_id)
        return write_json(request, 200, self._view(request, self._own(app_id, ser_id)))

    @fault_point("update")
    def update(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """
        PUT a ServiceInfo: only state may differ from what the server holds. A new state
        is notified as STATE_CHANGED, to the subscriptions whose states filter names it
        (MEC 011's ServiceAvailabilityNotification; AdvantEDGE does the same).
        """
        self._authorize(request, app_id)
        record = self._own(app_id, ser_id)
        body = self._json(request)
        held = self._view(request, record)
        if not isinstance(body, dict) or {k: v for k, v in body.items() if k != "state"} != {
            k: v for k, v in held.items() if k != "state"
        }:
            raise Problem(400, "Bad Request", "Only the ServiceInfo state property may be changed")
        if body.get("state") not in ("ACTIVE", "INACTIVE"):
            raise Problem(400, "Bad Request", "state must be ACTIVE or INACTIVE")
        record.last_beat = self.core.clock.seconds()
        if body["state"] != record.state:
            self.core.registry.set_state(record.ser_instance_id, body["state"], "STATE_CHANGED")
        return write_json(request, 200, self._view(request, record))

    @fault_point("deregister")
    def deregister(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """DELETE a service."""
        self._authorize(request, app_id)
        self._own(app_id, ser_id)
        self.core.registry.deregister(app_id, ser_id)
        return write_json(request, 204, None)

    @fault_point("heartbeat")
    def heartbeat(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """PATCH ServiceLivenessUpdate {"state": "ACTIVE"}; PUT is not allowed (405)."""
        if request.method != b"PATCH":
            request.setHeader(b"Allow", b"GET, PATCH")
            raise Problem(405, "Method Not Allowed", "use PATCH")
        self._authorize(request, app_id)
        self._own(app_id, ser_id)
        try:
            self.core.registry.heartbeat(app_id, ser_id, read_body(request))
        except Rejected as e:
            status = 409 if e.code == 18 else 404 if e.code in (3, 17) else 400
            raise Problem(status, e.title, str(e)) from None
        return write_json(request, 204, None)

    @fault_point("discovery")
    def discover(self, request: Request) -> bytes:
        """GET services by ser_name (a plain string): a list, [] when none."""
        self._authorize(request, None)
        query = parse_qs(request.uri.decode("utf-8", "replace").partition("?")[2])
        names = query.get("ser_name")
        records = [
            r
            for r in self.core.registry.services.values()
            if not names or r.body.get("serName") in names
        ]
        return write_json(request, 200, [self._view(request, r) for r in records])

    @fault_point("discovery")
    def any_service(self, request: Request, ser_id: str) -> bytes:
        """GET any service by its id: where a notification's service link leads."""
        self._authorize(request, None)
        record = self.core.registry.services.get(ser_id)
        if record is None:
            raise NoSuchService()
        return write_json(request, 200, self._view(request, record))

    @fault_point("discovery")
    def transports(self, request: Request) -> bytes:
        """GET the platform's transports."""
        self._authorize(request, None)
        return write_json(request, 200, list(TRANSPORTS))

    # -- subscriptions and app support ---------------------------------------------------

    @fault_point("subscribe")
    def subscribe(self, request: Request, app_id: str) -> bytes:
        """POST a SerAvailabilityNotificationSubscription: 201 with absolute links."""
        return self._create_subscription(request, app_id, termination=False)

    def _create_subscription(self, request: Request, app_id: str, termination: bool) -> bytes:
        self._authorize(request, app_id)
        try:
            record = self.core.registry.subscribe(app_id, self._json(request), termination)
        except Rejected as e:
            raise Problem(400, e.title, str(e)) from None
        url = (self._termination_url if termination else self._subscription_url)(request, record)
        request.setHeader(b"Location", url.encode())
        return write_json(
            request,
            201,
            dict(
                record.body, subscriptionId=record.subscription_id, _links={"self": {"href": url}}
            ),
        )

    @fault_point(lambda request: "unsubscribe" if request.method == b"DELETE" else "subscribe")
    def subscription(self, request: Request, app_id: str, sub_id: str) -> bytes:
        """GET or DELETE one subscription (on the absolute link it was given)."""
        self._authorize(request, app_id)
        try:
            if request.method == b"DELETE":
                self.core.registry.unsubscribe(app_id, sub_id)
                return write_json(request, 204, None)
            record = self.core.registry.subscription(app_id, sub_id, False)
        except Rejected:
            raise Problem(404, "Not Found", "no such subscription") from None
        url = self._subscription_url(request, record)
        return write_json(request, 200, dict(record.body, _links={"self": {"href": url}}))

    @fault_point("confirm_ready")
    def confirm_ready(self, request: Request, app_id: str) -> bytes:
        """POST AppReadyConfirmation {"indication": "READY"}."""
        self._authorize(request, app_id, ready=False)
        raw = read_body(request)
        if self.advantedge:
            self._decode(raw)  # its decoder's 500 (an empty body: "EOF")
        try:
            self.core.registry.confirm_ready(app_id, raw)
        except Rejected as e:
            raise Problem(400, e.title, str(e)) from None
        return write_json(request, 204, None)

    @fault_point("confirm_termination")
    def confirm_termination(self, request: Request, app_id: str) -> bytes:
        """
        POST AppTerminationConfirmation: 204; 409 when no termination is pending (with
        platform advantedge a 400, checked before the body is decoded, as app-support.go).
        """
        self._authorize(request, app_id, ready=False)
        raw = read_body(request)
        registry = self.core.registry
        if self.advantedge:
            if not mec011.pending(registry, app_id):
                raise Problem(400, "Bad Request", advantedge.UNEXPECTED_CONFIRMATION)
            self._decode(raw)
        try:
            mec011.confirm(registry, app_id, raw)
        except Rejected as e:
            status = 409 if e.code == 18 else 400
            raise Problem(status, e.title, str(e)) from None
        return write_json(request, 204, None)

    @fault_point("subscribe")
    def termination_subscribe(self, request: Request, app_id: str) -> bytes:
        """POST an AppTerminationNotificationSubscription: 201 with absolute links."""
        return self._create_subscription(request, app_id, termination=True)

    @fault_point("sync")
    def termination_subscriptions(self, request: Request, app_id: str) -> bytes:
        """GET the app's termination subscriptions: a SubscriptionLinkList (none: empty)."""
        self._authorize(request, app_id)
        return self._link_list(request, app_id, termination=True)

    @fault_point(lambda request: "unsubscribe" if request.method == b"DELETE" else "subscribe")
    def termination_subscription(self, request: Request, app_id: str, sub_id: str) -> bytes:
        """GET or DELETE one termination subscription."""
        self._authorize(request, app_id)
        try:
            if request.method == b"DELETE":
                self.core.registry.unsubscribe(app_id, sub_id, termination=True)
                return write_json(request, 204, None)
            record = self.core.registry.subscription(app_id, sub_id, termination=True)
        except Rejected:
            raise Problem(404, "Not Found", "no such subscription") from None
        url = self._termination_url(request, record)
        return write_json(request, 200, dict(record.body, _links={"self": {"href": url}}))

    def _termination_url(self, request: Request, record: SubscriptionRecord) -> str:
        app = f"{self._base(request)}{self.api_root}/mec_app_support/v1/applications"
        return f"{app}/{record.app_instance_id}/subscriptions/{record.subscription_id}"


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail}
