"""
The emulator's HTTP face: a Klein app that answers like EdgeGallery's Kong gateway,
mepauth and mepserver together, with fault injection; the control API it mounts under
/_emulator is control.py.

Drive it in memory (treq's StubTreq / RequestTraversalAgent over C{resource()}) or serve
it with C{twistd mep-emulator}.
"""

from __future__ import annotations

import functools
import gzip
import json
import random
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from typing import Any

from attrs import define, field
from klein import Klein
from twisted.internet.defer import ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET, Request

from mep_emulator import mm5
from mep_emulator.answers import body_start, header, query, read_body, write_json
from mep_emulator.auth import App, Lockout, TokenIssuer, verify_token_request
from mep_emulator.control import ControlAPI
from mep_emulator.faults import Fault, FaultPlan
from mep_emulator.kong import CONSUMER, RATE_LIMITED, MinuteLimit
from mep_emulator.registry import MGMT, SUPPORT, Registry, ServiceRecord
from mep_emulator.rules import UUID, Rejected
from mep_emulator.termination import TerminationLinks, edgegallery_termination_links

MAX_BODY = 4096  # mepserver refuses larger request bodies
_HTTP_FOR_CODE = {3: 404, 5: 404, 17: 404, 10: 412, 9: 503, 11: 401, 18: 409, 16: 422, 20: 403}
#: mepserver's ProblemDetails title for each internal code: the title follows the code,
#: whatever the detail (common/httprsp_builder.go, cvtHttpErrInfo); any other: "Bad Request".
_TITLE_FOR_CODE = {
    2: "Can not found resource",
    3: "Can not found resource",
    5: "Can not found resource",
    17: "Can not found resource",
    9: "Remote server error",
    10: "Precondition failed",
    11: "UnAuthorization",
    12: "Service register failed",
    13: "Service instance failed",
    14: "Request parameter error",
    15: "App subscription error",
    16: "Resource already exists",
    18: "Service is in INACTIVE state",
    19: "Duplicate request error",
    20: "Operation Not Allowed",
}

log = Logger()
Handler = Callable[..., Any]
Route = Callable[..., Any]


def problem(request: Request, error: Rejected) -> bytes:
    """
    mepserver's error shape: internal code in 'status', the title its code's;
    service-center's for 400012.
    """
    if error.code >= 400000:
        return write_json(
            request,
            400,
            {"errorCode": str(error.code), "errorMessage": error.title, "detail": error.detail},
        )
    status = _HTTP_FOR_CODE.get(error.code, 400)
    title = _TITLE_FOR_CODE.get(error.code, "Bad Request")
    return write_json(
        request, status, {"title": title, "status": error.code, "detail": error.detail}
    )


class Problem(Exception):
    """An answer with an HTTP status and an RFC 7807 ProblemDetails body (the ETSI face)."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail

    def body(self) -> dict[str, Any]:
        """The ProblemDetails."""
        return {
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }


class Unauthorized(Exception):
    """The gateway refused the bearer token (status and Kong's body)."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status = status
        self.body = body


@define
class RequestRecord:
    """One request the emulator answered, for tests and /_emulator/state."""

    method: str
    path: str
    kind: str
    status: int
    query: str = ""  # the raw query string, as received
    body: bytes = b""  # the first 4 KiB of the request body


def _subscription_kind(request: Request) -> str:
    return "unsubscribe" if request.method == b"DELETE" else "subscribe"


def fault_point(kind: str | Callable[[Request], str]) -> Callable[[Handler], Route]:
    """
    Make a route handler injectable: the request first takes a queued fault of C{kind}
    (a name, or a function of the request), then runs the handler; mepserver's and the
    gateway's refusals become their answers, and the outcome is recorded.
    """

    def decorate(handler: Handler) -> Route:
        @functools.wraps(handler)
        def route(self: MepEmulator, request: Request, **kwargs: str) -> Any:
            name = kind if isinstance(kind, str) else kind(request)
            return ensureDeferred(
                self.handle(request, name, lambda: handler(self, request, **kwargs))
            )

        return route

    return decorate


def _fault_answer(request: Request, fault: Fault) -> bytes:
    """The answer an injected fault gives instead of the handler's."""
    assert fault.status is not None
    request.setResponseCode(fault.status)
    for name, value in fault.headers:
        request.setHeader(name.encode(), value.encode())
    if fault.raw is not None:
        data = fault.raw.encode()
        if not request.responseHeaders.hasHeader(b"content-type"):
            request.setHeader(b"Content-Type", b"application/json; charset=UTF-8")
    else:
        body = (
            fault.body
            if fault.body is not None
            else {"title": "Injected fault", "status": fault.status, "detail": "emulator fault"}
        )
        data = json.dumps(body).encode()
        request.setHeader(b"Content-Type", b"application/json; charset=UTF-8")
    if fault.gzip:
        data = gzip.compress(data)
        request.setHeader(b"Content-Encoding", b"gzip")
    return data


@define
class MepEmulator:
    """One emulated MEP. Every collaborator is injected; nothing reads the global reactor."""

    clock: IReactorTime
    registry: Registry
    apps: dict[str, App]  # by access key
    token_lifetime: int = 3600
    accept_patch: bool = False
    issuer: TokenIssuer = field(factory=TokenIssuer)
    lockout: Lockout = field(factory=Lockout)
    faults: FaultPlan = field(factory=FaultPlan)
    requests: deque[RequestRecord] = field(factory=lambda: deque(maxlen=500))
    #: Every request answered, by "kind status" (the last 500 are in C{requests}).
    counts: Counter[str] = field(factory=Counter)
    notifications: list[dict[str, Any]] = field(
        factory=list
    )  # the notifier's deliveries, for /_emulator/state
    tokens_issued: int = 0
    # Connections accepted per listener ("https" ones are TLS handshakes): what a client's
    # connection pooling saves shows here.
    connections: dict[str, int] = field(factory=dict)
    # How a termination notification's _links look: mepserver's paths, unless a face
    # (the ETSI one) builds its own absolute links.
    termination_links: TerminationLinks = edgegallery_termination_links
    # Kong's rate-limiting as EdgeGallery configures it (mep_emulator.kong), EdgeGallery face
    # only: the Mp1 routes per calendar minute for all apps together, the token route per
    # client address. A limit of 0 is none (the default).
    mp1_limit: MinuteLimit = field(factory=MinuteLimit)
    token_limit: MinuteLimit = field(factory=MinuteLimit)
    retry_after: bool = False  # add Retry-After to a 429 (Kong, as EdgeGallery sets it: none)
    refuse_updates: int | None = None  # 501 or 405 for every PUT .../services/{id}
    chaos: float = 0.0  # the share of Mp1 requests refused at random (_chaos)
    chaos_rng: random.Random = field(factory=lambda: random.Random(7), repr=False)
    termination_link: str = "standard"  # the ETSI face's confirmTermination link: or "advantedge"
    # The real platform the ETSI face plays where it departs from MEC 011: "standard" (none)
    # or "advantedge" (AdvantEDGE 1.9.2; mep_emulator/advantedge.py).
    platform: str = "standard"
    # The app instances a termination deleted (platform advantedge): every call for one
    # answers 404 until /_emulator/provision creates it again.
    deleted_apps: set[str] = field(factory=set)
    # The maxGracefulTimeout of a termination that names none: the face decides.
    default_graceful_timeout: Callable[[], float] = field(default=lambda: 5)
    termination_deletes_credentials: bool = True  # as mepserver's termination does at mepauth
    # How the EdgeGallery face shows a service: "registered" (the body as registered) or
    # "mepserver" (as mepserver answers: its reads rebuilt with the gateway's URIs, its
    # 201 and PUT answers Go's decoding of the body; mepserver.py).
    presentation: str = "mepserver"
    # The mepauth records (AK/SK, requiredServices) terminations deleted, by app instance id:
    # /_emulator/provision puts them back, as MECM's provisioning PUTs them again.
    retired: dict[str, App] = field(factory=dict)
    control: ControlAPI = field(init=False)

    app = Klein()

    def __attrs_post_init__(self) -> None:
        self.control = ControlAPI(self)
        self.registry.termination_listeners.append(self._termination_ended)

    def resource(self) -> IResource:
        """The resource to serve."""
        return self.app.resource()

    # -- plumbing ------------------------------------------------------------------------

    async def handle(
        self, request: Request, kind: str, handler: Callable[[], Any], kong: bool = True
    ) -> Any:
        """
        Apply Kong's rate limits (C{kong}: the EdgeGallery face) and an injected fault, run
        the handler, record the outcome.
        """
        self.registry.check_liveness()
        if kong and self._over_rate_limit(request, kind):
            self._record(request, kind, 429)
            return RATE_LIMITED
        fault = self.faults.take(kind) or self._chaos(kind)
        if fault is not None and fault.delay:
            await deferLater(self.clock, fault.delay, lambda: None)
        if fault is not None and fault.drop:
            transport: Any = request.channel.transport
            transport.abortConnection()
            self._record(request, kind, 0)
            return NOT_DONE_YET
        if fault is not None and fault.status is not None:
            result = _fault_answer(request, fault)
        else:
            try:
                outcome = handler()
                result = await outcome if isinstance(outcome, Awaitable) else outcome
            except Rejected as e:
                result = problem(request, e)
            except Unauthorized as e:
                result = write_json(request, e.status, e.body)
            except Problem as e:
                result = write_json(request, e.status, e.body())
            except Exception:
                log.failure("emulator error in {kind} request", kind=kind)
                result = write_json(
                    request,
                    500,
                    {"title": "Internal Server Error", "status": 500, "detail": "emulator bug"},
                )
        self._record(request, kind, request.code)
        return result

    def _chaos(self, kind: str) -> Fault | None:
        """
        With the C{chaos} setting, that share of Mp1 requests (not token requests) answered
        with a refusal drawn at random: 400, 403, 404, 409, 429, 500-503, a Retry-After of
        1-10 s on half the 429s and 503s. Seeded: the same requests, the same refusals.
        """
        if not self.chaos or kind == "token" or self.chaos_rng.random() >= self.chaos:
            return None
        status = self.chaos_rng.choice(CHAOS_STATUSES)
        headers: tuple[tuple[str, str], ...] = ()
        if status in (429, 503) and self.chaos_rng.random() < 0.5:
            headers = (("Retry-After", str(self.chaos_rng.randint(1, 10))),)
        body = {"title": "Chaos", "status": status, "detail": "a refusal the emulator chose"}
        return Fault(kind, status, body, headers=headers)

    def _over_rate_limit(self, request: Request, kind: str) -> bool:
        """
        Kong's rate-limiting plugin on the route of C{kind}; over the limit, its 429 is set
        on C{request}. Kong's jwt plugin runs first: a request whose token it refuses is
        neither limited nor counted (the handler answers it).
        """
        now = self.clock.seconds()
        if kind == "token":
            limit, identity = self.token_limit, self._client_host(request)
        else:
            limit, identity = self.mp1_limit, CONSUMER
        if limit.limit <= 0:  # none (the default): no token check for it on every request
            return False
        if kind != "token":  # the jwt plugin first: a refused token is not counted
            verdict = self.issuer.check(header(request, "authorization"), now)
            if verdict.app_instance_id is None:
                return False
        reset = limit.admit(identity, now)
        if reset is None:
            return False
        request.setResponseCode(429)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        if self.retry_after:
            request.setHeader(b"Retry-After", str(reset).encode())
        return True

    def _shown(self, record: ServiceRecord) -> dict[str, Any]:
        """A service as a read answers it (the setting presentation)."""
        return record.read_back() if self.presentation == "mepserver" else record.view()

    def _answered(self, record: ServiceRecord) -> dict[str, Any]:
        """A service as the registration or update that made it so answers it."""
        return record.answer() if self.presentation == "mepserver" else record.view()

    @staticmethod
    def _client_host(request: Request) -> str:
        """The peer address, as Kong's C{get_forwarded_ip} without trusted_ips."""
        return str(getattr(request.getClientAddress(), "host", ""))

    def app_instance(self, app_id: str) -> App | None:
        """The app instance's mepauth record, None when it has none."""
        return next((a for a in self.apps.values() if a.app_instance_id == app_id), None)

    def _termination_ended(self, app_id: str) -> None:
        """
        A termination of C{app_id} cleans up: as EdgeGallery's, delete its AK/SK (and so its
        requiredServices) from mepauth. mepserver's AppInstanceTermination handler does
        (mepserver/mm5/plans/app_instance_termination.go, DeleteFromMepauth: DELETE
        .../{id}/confs); on the interop kit a token request with that AK then answers 401
        "Invalid access or signature." until the AK/SK are provisioned again, while tokens
        issued before stay valid until they expire. mepserver does it within that request
        (the kit: about 0.5 s after the notification, the graceful window still open), once
        it deleted the app's services: the EdgeGallery face there too (mm5.py); the ETSI
        face when its termination ends, with the rest of its clean-up.
        """
        if not self.termination_deletes_credentials:
            return
        for app in [a for a in self.apps.values() if a.app_instance_id == app_id]:
            del self.apps[app.access_key]
            self.retired[app_id] = app

    def _record(self, request: Request, kind: str, status: int) -> None:
        self.counts[f"{kind} {status}"] += 1
        self.requests.append(
            RequestRecord(
                request.method.decode(),
                request.path.decode("utf-8", "replace"),
                kind,
                status,
                request.uri.decode("utf-8", "replace").partition("?")[2],
                body_start(request),
            )
        )

    def _authorize(self, request: Request, path_app_id: str | None) -> str:
        """Kong's jwt + appid-header plugins, then mepserver's path/token app check."""
        verdict = self.issuer.check(header(request, "authorization"), self.clock.seconds())
        if verdict.app_instance_id is None:
            raise Unauthorized(verdict.status, verdict.body)
        if path_app_id is not None and path_app_id != verdict.app_instance_id:
            raise Rejected(11, "UnAuthorization", "UnAuthorization")
        return verdict.app_instance_id

    @staticmethod
    def _body(request: Request) -> bytes:
        raw = read_body(request)
        if len(raw) > MAX_BODY:
            raise Rejected(1, "Bad Request", "request body too large")
        return raw

    def _json_body(self, request: Request) -> Any:
        try:
            return json.loads(self._body(request))
        except ValueError:
            raise Rejected(4, "Bad Request", "unmarshal request body error") from None

    @staticmethod
    def _uuid_path(app_id: str) -> None:
        if not UUID.match(app_id):
            raise Rejected(14, "Bad Request", "request param validation failed: appInstanceId")

    # -- mepauth -------------------------------------------------------------------------

    @app.route("/mep/token", methods=["POST"])
    @fault_point("token")
    def token(self, request: Request) -> bytes:
        """mepauth: verify the AK/SK signature and mint a token."""
        outcome = verify_token_request(
            self.apps,
            self.lockout,
            self.clock.seconds(),
            lambda name: header(request, name),
            request.uri.decode(),
        )
        if outcome.app is None:
            return write_json(
                request, outcome.status, outcome.body, b"application/json; charset=utf-8"
            )
        self.tokens_issued += 1
        token = self.issuer.mint(
            outcome.app.app_instance_id, self.clock.seconds(), self.token_lifetime
        )
        return write_json(
            request,
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime},
        )

    # -- Mp1 service management ----------------------------------------------------------

    @app.route(f"{MGMT}/applications/<app_id>/services", methods=["POST"])
    @fault_point("register")
    def register(self, request: Request, app_id: str) -> bytes:
        """mepserver: register a ServiceInfo."""
        self._authorize(request, app_id)
        self._uuid_path(app_id)
        record = self.registry.register(app_id, self._json_body(request))
        request.setHeader(b"Location", f"/mep/mp1/v1/services/{record.ser_instance_id}")
        return write_json(request, 201, self._answered(record))

    @app.route(f"{MGMT}/applications/<app_id>/services", methods=["GET"])
    @fault_point("sync")
    def own_services(self, request: Request, app_id: str) -> bytes:
        """mepserver: the app's own services (filters as discovery)."""
        self._authorize(request, app_id)
        found = self.registry.discover(query(request), app_id)
        return write_json(request, 200, [self._shown(r) for r in found])

    @app.route(f"{MGMT}/applications/<app_id>/services/<ser_id>", methods=["GET"])
    @fault_point("service")
    def one_service(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """mepserver: one registered service."""
        self._authorize(request, app_id)
        return write_json(request, 200, self._shown(self.registry.get(app_id, ser_id)))

    @app.route(f"{MGMT}/applications/<app_id>/services/<ser_id>", methods=["PUT"])
    @fault_point("update")
    def update(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """
        mepserver: PUT a service's ServiceInfo (restores its state). With the setting
        refuse_updates, every PUT is refused: 405 as a gateway that lets no PUT through
        (before any token check), 501 as a server without the operation (behind Kong's).
        Neither kit does this (mepserver 971f2d0 has serviceUpdate, mp1/controller.go; the
        Kong stand-in routes every method): it stands for deployments that do.
        """
        if self.refuse_updates == 405:
            request.setHeader(b"Allow", b"GET, DELETE")
            raise Problem(405, "Method Not Allowed", "PUT is not allowed here")
        self._authorize(request, app_id)
        if self.refuse_updates == 501:
            raise Problem(501, "Not Implemented", "updating a service is not implemented")
        record = self.registry.update(app_id, ser_id, self._json_body(request))
        return write_json(request, 200, self._answered(record))

    @app.route(f"{MGMT}/applications/<app_id>/services/<ser_id>", methods=["DELETE"])
    @fault_point("deregister")
    def deregister(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """mepserver: delete a registration."""
        self._authorize(request, app_id)
        self._uuid_path(app_id)
        self.registry.deregister(app_id, ser_id)
        return write_json(request, 204, None)

    @app.route(
        f"{MGMT}/applications/<app_id>/services/<ser_id>/liveness", methods=["PUT", "PATCH"]
    )
    @fault_point("heartbeat")
    def heartbeat(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """mepserver: a liveness heartbeat (PUT; PATCH with --accept-patch)."""
        if request.method == b"PATCH" and not self.accept_patch:
            return write_json(
                request,
                405,
                {"title": "Method Not Allowed", "status": 405, "detail": "use PUT"},
            )
        self._authorize(request, app_id)
        self.registry.heartbeat(app_id, ser_id, self._body(request))
        return write_json(request, 204, None)

    @app.route(f"{MGMT}/applications/<app_id>/services/<ser_id>/liveness", methods=["GET"])
    @fault_point("service")
    def liveness(self, request: Request, app_id: str, ser_id: str) -> bytes:
        """mepserver: a service's liveness state and interval."""
        self._authorize(request, app_id)
        record = self.registry.get(app_id, ser_id)
        seconds = record.last_beat
        return write_json(
            request,
            200,
            {
                "state": record.state,
                "interval": record.interval,
                "timeStamp": {
                    "seconds": int(seconds),
                    "nanoSeconds": int((seconds % 1) * 1e9),
                },
            },
        )

    @app.route(f"{MGMT}/services", methods=["GET"])
    @fault_point("discovery")
    def discover(self, request: Request) -> bytes:
        """
        mepserver: discovery by ser_name or the other filters, answering only instances of
        the names in the calling app's requiredServices as mepauth keeps them (none when
        mepauth has no record of the app, e.g. after a termination): a known name outside
        them answers 200 []; a name nobody registered is still 400012. From
        mepserver/mp1/plan_svc_discover.go (Mp1CvtSrvAuthenDiscover), and observed on the
        interop kit with EG_REQUIRED_SERVICES=svc-a and after a termination.
        """
        app_id = self._authorize(request, None)
        found = self.registry.discover(query(request))
        app = self.app_instance(app_id)
        return write_json(
            request,
            200,
            [
                self._shown(r)
                for r in found
                if app is not None and app.may_discover(r.body["serName"])
            ],
        )

    @app.route(f"{MGMT}/services/<ser_id>", methods=["GET"])
    @fault_point("discovery")
    def global_service(self, request: Request, ser_id: str) -> bytes:
        """mepserver: any service by its id."""
        self._authorize(request, None)
        record = self.registry.services.get(ser_id)
        if record is None:
            raise Rejected(3, "Can not found resource", "service instance id not found")
        return write_json(request, 200, self._shown(record))

    @app.route(f"{MGMT}/transports", methods=["GET"])
    @fault_point("discovery")
    def transports(self, request: Request) -> bytes:
        """mepserver: the transports the platform offers."""
        self._authorize(request, None)
        return write_json(
            request,
            200,
            [
                {
                    "name": "REST",
                    "type": "REST_HTTP",
                    "protocol": "HTTP",
                    "version": "2.0",
                    "security": {
                        "oAuth2Info": {
                            "grantTypes": ["OAUTH2_CLIENT_CREDENTIALS"],
                            "tokenEndpoint": "/mep/token",
                        }
                    },
                }
            ],
        )

    # -- subscriptions (both APIs) -------------------------------------------------------

    def _subscribe(self, request: Request, app_id: str, termination: bool) -> bytes:
        self._authorize(request, app_id)
        self._uuid_path(app_id)
        record = self.registry.subscribe(app_id, self._json_body(request), termination)
        request.setHeader(b"Location", record.href)
        body = dict(
            record.body,
            subscriptionId=record.subscription_id,
            _links={"self": {"href": record.href}},
        )
        return write_json(request, 201, body)

    def _list_subscriptions(self, request: Request, app_id: str, termination: bool) -> bytes:
        self._authorize(request, app_id)
        subs = self.registry.app_subscriptions(app_id, termination)
        if not subs:
            raise Rejected(5, "Can not found resource", "subscription not found")
        rel = (
            "AppTerminationNotificationSubscription"
            if termination
            else "SerAvailabilityNotificationSubscription"
        )
        base = subs[0].href.rsplit("/", 1)[0]
        return write_json(
            request,
            200,
            {
                "_links": {
                    "self": {"href": base},
                    "subscriptions": [{"href": s.href, "rel": rel} for s in subs],
                }
            },
        )

    def _one_subscription(
        self, request: Request, app_id: str, sub_id: str, termination: bool
    ) -> bytes:
        self._authorize(request, app_id)
        if request.method == b"DELETE":
            self.registry.unsubscribe(app_id, sub_id, termination)
            return write_json(request, 204, None)
        record = self.registry.subscription(app_id, sub_id, termination)
        return write_json(request, 200, dict(record.body, _links={"self": {"href": record.href}}))

    @app.route(f"{MGMT}/applications/<app_id>/subscriptions", methods=["POST"])
    @fault_point("subscribe")
    def subscribe(self, request: Request, app_id: str) -> bytes:
        """mepserver: create an availability subscription."""
        return self._subscribe(request, app_id, termination=False)

    @app.route(f"{MGMT}/applications/<app_id>/subscriptions", methods=["GET"])
    @fault_point("sync")
    def subscriptions(self, request: Request, app_id: str) -> bytes:
        """mepserver: the app's availability subscriptions."""
        return self._list_subscriptions(request, app_id, termination=False)

    @app.route(f"{MGMT}/applications/<app_id>/subscriptions/<sub_id>", methods=["GET", "DELETE"])
    @fault_point(_subscription_kind)
    def subscription(self, request: Request, app_id: str, sub_id: str) -> bytes:
        """mepserver: read or delete one availability subscription."""
        return self._one_subscription(request, app_id, sub_id, termination=False)

    @app.route(f"{SUPPORT}/applications/<app_id>/subscriptions", methods=["POST"])
    @fault_point("subscribe")
    def termination_subscribe(self, request: Request, app_id: str) -> bytes:
        """mepserver: create an app-termination subscription."""
        return self._subscribe(request, app_id, termination=True)

    @app.route(f"{SUPPORT}/applications/<app_id>/subscriptions", methods=["GET"])
    @fault_point("sync")
    def termination_subscriptions(self, request: Request, app_id: str) -> bytes:
        """mepserver: the app's termination subscriptions."""
        return self._list_subscriptions(request, app_id, termination=True)

    @app.route(
        f"{SUPPORT}/applications/<app_id>/subscriptions/<sub_id>", methods=["GET", "DELETE"]
    )
    @fault_point(_subscription_kind)
    def termination_subscription(self, request: Request, app_id: str, sub_id: str) -> bytes:
        """mepserver: read or delete one termination subscription."""
        return self._one_subscription(request, app_id, sub_id, termination=True)

    # -- app support ---------------------------------------------------------------------

    @app.route(f"{SUPPORT}/applications/<app_id>/confirm_ready", methods=["POST"])
    @fault_point("confirm_ready")
    def confirm_ready(self, request: Request, app_id: str) -> bytes:
        """mepserver: the app confirms it is READY."""
        self._authorize(request, None)  # mepserver does no app check here
        self.registry.confirm_ready(app_id, self._body(request))
        return write_json(request, 204, None)

    @app.route(f"{SUPPORT}/applications/<app_id>/confirm_termination", methods=["POST"])
    @fault_point("confirm_termination")
    def confirm_termination(self, request: Request, app_id: str) -> bytes:
        """mepserver: the app confirms a termination (mm5.py)."""
        self._authorize(request, None)
        mm5.confirm(self.registry, app_id, self._body(request))
        return write_json(request, 204, None)

    @app.route(f"{SUPPORT}/timing/current_time", methods=["GET"])
    @fault_point("service")
    def current_time(self, request: Request) -> bytes:
        """mepserver: the platform's time."""
        self._authorize(request, None)
        now = self.clock.seconds()
        return write_json(
            request,
            200,
            {
                "seconds": int(now),
                "nanoSeconds": int((now % 1) * 1e9),
                "timeSourceStatus": "TRACEABLE",
            },
        )

    # -- control API (control.py) ----------------------------------------------------------

    @app.route("/_emulator/", branch=True)
    def control_api(self, request: Request) -> IResource:
        """The control API under /_emulator (development and tests only)."""
        return self.control.app.resource()


CHAOS_STATUSES = (400, 403, 404, 409, 429, 500, 501, 502, 503)
