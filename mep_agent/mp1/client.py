"""
MepClient: the MEP's HTTP API (mepauth token, Mp1 service management, app support) over
an injected L{MepHttp}. Every call has one deadline on the injected clock for the whole
exchange, reads at most C{max_body} bytes, follows no redirect, parses JSON with a depth
limit, and turns any failure into a L{MepError} whose detail has every secret removed.
What comes back is checked before it is believed: typed, frozen records or an error.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from attrs import frozen
from twisted.internet.defer import CancelledError, TimeoutError, ensureDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IResponse

from mep_agent.config.load import Credentials
from mep_agent.mp1 import links, signing
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.mp1.http import BadBody, MepHttp
from mep_agent.util import jsontext
from mep_agent.util.secret import Secret, redact

MAX_BODY = 1024 * 1024  # default limit of a MEP answer (--max-response-bytes)
MIN_LIFETIME = 1  # expires_in is clamped into [MIN_LIFETIME, MAX_LIFETIME] seconds
MAX_LIFETIME = 24 * 3600
MAX_LISTED = 100  # links read from a MEP's subscription list (it holds at most 50)
_MAX_DETAIL = 400

#: Told (operation, HTTP status or None, seconds) after every exchange: metrics.
Observer = Callable[[str, "int | None", float], None]


@frozen
class Token:
    """A bearer token from the MEP; the value prints as <redacted>."""

    access_token: Secret
    token_type: str
    expires_in: int
    obtained_at: float

    @property
    def expires_at(self) -> float:
        """When the MEP stops accepting it (clock seconds)."""
        return self.obtained_at + self.expires_in

    def authorization(self) -> str | None:
        """The Authorization header value (None with --auth none: no header at all)."""
        value = self.access_token.reveal()
        # mepauth answers "Bearer"; Kong matches [Bb]earer, so normalise the case.
        return f"Bearer {value}" if value else None


@frozen
class Registration:
    """
    What the MEP answered to a registration: its id, the liveness link (absolute, on the
    MEP's origin) with the method to beat it with, the interval, and the ServiceInfo as
    the MEP holds it (for a repair that changes nothing but the state).
    """

    ser_instance_id: str
    liveness_path: str | None
    interval: int
    liveness_method: str = "PUT"
    info: dict[str, Any] = {}
    refused_link: str | None = None  # a liveness link to another origin, not followed


@frozen
class Subscription:
    """A subscription the MEP created; C{url} its link resolved (None: not usable)."""

    subscription_id: str
    url: str | None
    refused_link: str | None = None


@frozen
class ServiceInstance:
    """One instance of a discovered service, as far as the application needs it."""

    ser_instance_id: str | None
    state: str | None
    endpoint: dict[str, Any]  # transportInfo.endpoint as registered ({} when absent)
    transport_id: str | None = None  # a service that gives only transportId

    @property
    def has_endpoint(self) -> bool:
        """
        Whether the instance says where to reach it: a platform that stored a transportId
        only, or lost the transport it named, answers with no endpoint at all.
        """
        return any(self.endpoint.get(key) for key in ("uris", "addresses", "alternative"))

    def summary(self) -> dict[str, Any]:
        """The JSON the application API shows for C{?all=true}."""
        return {
            "serInstanceId": self.ser_instance_id,
            "state": self.state,
            "endpoint": self.endpoint,
        }


@frozen
class HeldService:
    """One of the app's own service instances as the MEP holds it (the sync reads them)."""

    ser_instance_id: str
    ser_name: str
    state: str
    #: The members a MEP echoes as registered (not the endpoint: EdgeGallery answers its
    #: gateway's URIs there), to tell a body that drifted from the wanted one.
    echoed: dict[str, Any] = {}


#: What L{HeldService.echoed} holds.
ECHOED_MEMBERS = ("version", "serializer", "serCategory", "scopeOfLocality")


@frozen
class Discovered:
    """A discovery answer: the instances (None: the MEP never heard of the name)."""

    instances: tuple[ServiceInstance, ...] | None
    size: int  # bytes of the MEP's answer, for the cache's byte budget


def _describe_failure(error: Exception) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:  # ResponseNeverReceived / ResponseFailed wrap failures
        inner = reasons[0].value
        if isinstance(inner, CancelledError):
            return "timed out"
        return f"{type(inner).__name__}: {inner}"
    return f"{type(error).__name__}: {error}"


def lifetime(value: Any) -> int:
    """
    C{expires_in} as whole seconds within [MIN_LIFETIME, MAX_LIFETIME]; ValueError when
    it is not a positive finite number (or a string of digits, as EdgeGallery's docs show).
    """
    if isinstance(value, str) and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expires_in is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("expires_in is not finite")
    if value <= 0:
        raise ValueError("expires_in is not positive")
    return int(max(MIN_LIFETIME, min(MAX_LIFETIME, value)))


def _instance(item: Any) -> ServiceInstance:
    if not isinstance(item, dict):
        raise ValueError("an instance is not a JSON object")
    ser_instance_id = item.get("serInstanceId")
    state = item.get("state")
    transport_id = item.get("transportId")
    if not all(isinstance(v, str | None) for v in (ser_instance_id, state, transport_id)):
        raise ValueError("serInstanceId, state or transportId is not a string")
    transport = item.get("transportInfo")
    endpoint = transport.get("endpoint") if isinstance(transport, dict) else None
    return ServiceInstance(
        ser_instance_id, state, endpoint if isinstance(endpoint, dict) else {}, transport_id
    )


class MepClient:
    """The MEP's API as the agent uses it; one instance per agent."""

    def __init__(
        self,
        http: MepHttp,
        clock: IReactorTime,
        base_url: str,
        host_header: str,
        credentials: Credentials,
        timeout: float,
        observe: Observer | None = None,
        max_body: int = MAX_BODY,
        api_root: str = "/mep",
        links_under_root: bool = True,
        heartbeat_method: str = "auto",
        explain: Callable[[str], str | None] | None = None,
        public_origins: frozenset[links.Origin] = frozenset(),
    ) -> None:
        """
        @param explain: turns a failure's text into advice (TLS: which setting to check).
        @param public_origins: the MEP's public origins (--mep-public-url): links to them
            are followed on C{base_url} (L{links.resolve}).
        @param api_root: the path before mec_service_mgmt/v1 and mec_app_support/v1.
        @param links_under_root: EdgeGallery's links omit the API root (L{links.resolve}).
        @param heartbeat_method: 'auto' (the method that goes with the link) or one forced.
        """
        self._http = http
        self._root = api_root
        self._mgmt = f"{api_root}/mec_service_mgmt/v1"
        self._support = f"{api_root}/mec_app_support/v1"
        self._links_under_root = links_under_root
        self._public_origins = public_origins
        self._heartbeat_method = heartbeat_method
        self._patch_type = "application/json"
        self._explain = explain or (lambda text: None)
        self._clock = clock
        self._base = base_url
        self._host = host_header
        self._credentials = credentials
        self._timeout = timeout
        self._observe: Observer = observe or (lambda operation, status, seconds: None)
        self._max_body = max_body

    def set_credentials(self, credentials: Credentials) -> None:
        """Sign from now on with C{credentials} (the files changed: credentials.py)."""
        self._credentials = credentials

    @property
    def _app(self) -> str:
        return self._credentials.app_instance_id.reveal()

    def _error(
        self,
        operation: str,
        status: int | None,
        detail: str,
        body: Any = None,
        verdict: Verdict | None = None,
        token: Token | None = None,
    ) -> MepError:
        """Every MepError is built here: its detail is shortened and scrubbed of secrets."""
        secrets = self._credentials.all() + ((token.access_token,) if token else ())
        text = redact(detail, secrets)[:_MAX_DETAIL] or "(empty body)"
        return MepError(operation, status, text, body, verdict)

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        expected: tuple[int, ...],
        headers: dict[str, str],
        body: Any = None,
        timeout: float | None = None,
        token: Token | None = None,
    ) -> tuple[IResponse, Any, int]:
        """
        One exchange: C{(response, parsed JSON or None, body size)} when the status is
        one of C{expected}, else a MepError.
        """
        authorization = token.authorization() if token is not None else None
        if authorization is not None:
            headers = dict(headers, Authorization=authorization)
        data = None
        if isinstance(body, bytes):
            data = body  # already encoded (a form), Content-Type set by the caller
        elif body is not None:
            data = _json_bytes(body)
            headers = {"Content-Type": "application/json", **headers}
        url = path if "://" in path else self._base + path
        # One deadline for the whole exchange, the body included: a MEP that sends its
        # headers and then stalls must not hang a heartbeat.
        exchange = ensureDeferred(self._http.exchange(method, url, headers, data, self._max_body))
        exchange.addTimeout(timeout or self._timeout, self._clock)
        started = self._clock.seconds()
        try:
            response, raw = await exchange
        except (TimeoutError, CancelledError):
            self._observe(operation, None, self._clock.seconds() - started)
            raise self._error(operation, None, "timed out") from None
        except BadBody as e:
            self._observe(operation, e.status, self._clock.seconds() - started)
            raise self._error(
                operation, e.status, str(e.reason), verdict=Verdict.UNEXPECTED
            ) from None
        except Exception as e:
            self._observe(operation, None, self._clock.seconds() - started)
            text = _describe_failure(e)
            target = urlsplit(url).netloc
            detail = self._explain(text) or (
                text if text == "timed out" else f"{text} (connecting to {target})"
            )
            raise self._error(operation, None, detail, token=token) from None
        status = response.code
        self._observe(operation, status, self._clock.seconds() - started)
        parsed: Any = None
        parse_error: str | None = None
        if raw:
            try:
                parsed = jsontext.loads(raw)
            except ValueError as e:
                parse_error = str(e)
        if status not in expected:
            if 300 <= status < 400:
                location = (response.headers.getRawHeaders("location") or ["(none)"])[0]
                detail = f"redirect to {location} not followed"
            else:
                detail = raw.decode("utf-8", "replace")
            raise self._error(operation, status, detail, parsed, token=token)
        if parse_error is not None:
            raise self._error(
                operation, status, f"answer is not JSON ({parse_error})", None, Verdict.UNEXPECTED
            )
        return response, parsed, len(raw)

    def _unexpected(self, operation: str, status: int, detail: str) -> MepError:
        return self._error(operation, status, detail, verdict=Verdict.UNEXPECTED)

    def _link(self, href: str) -> str:
        """A link from the MEP as an absolute URL; ForeignLink/ValueError when unusable."""
        return links.resolve(
            self._base, self._root, href, self._links_under_root, self._public_origins
        )

    # -- mepauth ---------------------------------------------------------------------------

    async def fetch_token(self) -> Token:
        """POST <api root>/token signed with AK/SK (EdgeGallery's mepauth)."""
        access_key = self._credentials.access_key
        secret_key = self._credentials.secret_key
        assert access_key is not None and secret_key is not None  # config requires them
        headers = signing.token_request_headers(
            access_key.reveal(),
            secret_key.reveal(),
            self._host,
            signing.sdk_date(self._clock.seconds()),
            f"{self._root}/token",
        )
        _, body, _ = await self._call("token", "POST", f"{self._root}/token", (200,), headers)
        return self._token("token", body)

    async def fetch_oauth2_token(self) -> Token:
        """RFC 6749 section 4.4: client credentials, the client authenticated with Basic."""
        client = self._credentials.oauth2
        assert client is not None  # config requires it with --auth oauth2
        form = {"grant_type": "client_credentials"}
        if client.scope:
            form["scope"] = client.scope
        # Section 2.3.1: id and secret are form-encoded, then joined for Basic.
        basic = base64.b64encode(
            f"{quote(client.client_id.reveal(), safe='')}:"
            f"{quote(client.client_secret.reveal(), safe='')}".encode()
        ).decode()
        headers = {
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        }
        _, body, _ = await self._call(
            "token", "POST", client.token_url, (200,), headers, urlencode(form).encode()
        )
        return self._token("token", body)

    def no_token(self) -> Token:
        """--auth none: a token that sends no Authorization header (valid for a day)."""
        return Token(Secret(""), "Bearer", MAX_LIFETIME, self._clock.seconds())

    def _token(self, operation: str, body: Any) -> Token:
        try:
            access = body["access_token"]
            expires_in = lifetime(body["expires_in"])
            token_type = body.get("token_type", "Bearer")
            if not isinstance(access, str) or not access or not isinstance(token_type, str):
                raise ValueError("access_token or token_type is not a string")
            if len(access) > 16384:
                raise ValueError("access_token is longer than 16384 characters")
        except (KeyError, TypeError, AttributeError):
            raise self._unexpected(
                operation, 200, "answer without access_token/expires_in"
            ) from None
        except ValueError as e:
            raise self._unexpected(operation, 200, f"bad token answer: {e}") from None
        return Token(Secret(access), token_type, expires_in, self._clock.seconds())

    # -- Mp1 service management ------------------------------------------------------------

    def _service_path(self, ser_instance_id: str) -> str:
        return f"{self._mgmt}/applications/{self._app}/services/{quote(ser_instance_id, safe='')}"

    async def register(self, token: Token, body: dict[str, Any]) -> Registration:
        """POST a ServiceInfo; the MEP's id, liveness link and interval."""
        _, answer, _ = await self._call(
            "register",
            "POST",
            f"{self._mgmt}/applications/{self._app}/services",
            (201,),
            {},
            body,
            token=token,
        )
        return self._registration("register", answer)

    async def update(
        self, token: Token, ser_instance_id: str, body: dict[str, Any]
    ) -> Registration:
        """PUT a ServiceInfo on the service (restores its state after an INACTIVE 409)."""
        _, answer, _ = await self._call(
            "update", "PUT", self._service_path(ser_instance_id), (200,), {}, body, token=token
        )
        return self._registration("update", answer)

    def _registration(self, operation: str, answer: Any) -> Registration:
        """
        The registration in the MEP's answer. The liveness link is ETSI v2.2.1's
        C{_links.liveness.href} (beaten with PATCH) or EdgeGallery's
        C{_links.self.liveness} (PUT); without one, no heartbeats are due.
        """
        try:
            ser_instance_id = answer["serInstanceId"]
            interval = answer.get("livenessInterval") or 0
            found = _liveness_link(answer.get("_links") or {})
            if not isinstance(ser_instance_id, str) or not ser_instance_id:
                raise ValueError
            if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
                raise ValueError
        except (KeyError, TypeError, ValueError, AttributeError):
            raise self._unexpected(operation, 201, "answer without serInstanceId") from None
        url = refused = None
        method = "PUT"
        if found is not None:
            href, method = found
            try:
                url = self._link(href)
            except ValueError:  # ForeignLink too: never sent the token
                refused = href[:200]
        if self._heartbeat_method != "auto":
            method = self._heartbeat_method
        return Registration(
            ser_instance_id,
            url,
            interval if url else 0,
            method,
            answer,
            refused,
        )

    async def heartbeat(
        self,
        token: Token,
        liveness_path: str,
        method: str = "PUT",
        timeout: float | None = None,
    ) -> None:
        """PUT (EdgeGallery) or PATCH (ETSI) {"state":"ACTIVE"} on the liveness link."""
        headers = {"Content-Type": self._patch_type} if method == "PATCH" else {}
        try:
            await self._call(
                "heartbeat",
                method,
                liveness_path,
                (200, 204),
                headers,
                {"state": "ACTIVE"},
                timeout,
                token=token,
            )
        except MepError as e:
            if e.status != 415 or method != "PATCH":
                raise
            # The media type of the PATCH is not pinned (docs/protocol.md): try the other one.
            self._patch_type = (
                "application/merge-patch+json"
                if self._patch_type == "application/json"
                else "application/json"
            )
            await self._call(
                "heartbeat",
                method,
                liveness_path,
                (200, 204),
                {"Content-Type": self._patch_type},
                {"state": "ACTIVE"},
                timeout,
                token=token,
            )

    async def deregister(self, token: Token, ser_instance_id: str) -> None:
        """DELETE a registration."""
        await self._call(
            "deregister",
            "DELETE",
            self._service_path(ser_instance_id),
            (204, 200),
            {},
            token=token,
        )

    async def discover(self, token: Token, ser_name: str) -> Discovered:
        """Instances of a service name; C{instances} None when the MEP never heard of it."""
        try:
            response, answer, size = await self._call(
                "discovery",
                "GET",
                f"{self._mgmt}/services?ser_name={quote(ser_name, safe='')}",
                (200,),
                {},
                token=token,
            )
        except MepError as e:
            if e.status == 404 and _is_problem(e.body):
                return Discovered(None, 0)  # ETSI: ProblemDetails 404 for an unknown name
            if (
                e.status == 400
                and isinstance(e.body, dict)
                and str(e.body.get("errorCode")) == "400012"
            ):
                return Discovered(None, 0)  # EdgeGallery's service-center: never registered
            raise
        instances = self._json_list("discovery", response, answer)
        try:
            return Discovered(tuple(_instance(item) for item in instances), size)
        except ValueError as e:
            raise self._unexpected("discovery", 200, str(e)) from None

    async def transports(self, token: Token) -> dict[str, dict[str, Any]]:
        """The platform's transports: each C{endpoint} by transport id (GET …/transports)."""
        response, answer, _ = await self._call(
            "discovery", "GET", f"{self._mgmt}/transports", (200,), {}, token=token
        )
        endpoints: dict[str, dict[str, Any]] = {}
        for item in self._json_list("discovery", response, answer):
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                endpoint = item.get("endpoint")
                endpoints[item["id"]] = endpoint if isinstance(endpoint, dict) else {}
        return endpoints

    def _json_list(self, operation: str, response: IResponse, answer: Any) -> list[Any]:
        content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
        media = content_type.split(";")[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise self._unexpected(operation, 200, f"answer is {media or 'untyped'}, not JSON")
        if not isinstance(answer, list):
            raise self._unexpected(operation, 200, "answer is not a JSON list")
        return answer

    # -- subscriptions ---------------------------------------------------------------------

    async def subscribe(
        self, token: Token, body: dict[str, Any], termination: bool = False
    ) -> Subscription:
        """POST an availability (or, C{termination}, app termination) subscription."""
        root = self._support if termination else self._mgmt
        response, answer, _ = await self._call(
            "subscribe",
            "POST",
            f"{root}/applications/{self._app}/subscriptions",
            (201,),
            {},
            body,
            token=token,
        )
        href = None
        if isinstance(answer, dict):
            links_ = answer.get("_links")
            self_link = links_.get("self") if isinstance(links_, dict) else None
            href = self_link.get("href") if isinstance(self_link, dict) else None
        location = response.headers.getRawHeaders("location") or [None]
        href = href or location[0]
        if not isinstance(href, str) or not href:
            raise self._unexpected("subscribe", 201, "answer without a subscription link")
        sub_id = answer.get("subscriptionId") if isinstance(answer, dict) else None
        if not isinstance(sub_id, str) or not sub_id:
            sub_id = href.rstrip("/").rsplit("/", 1)[-1]
        try:
            return Subscription(sub_id, self._link(href))
        except ValueError:  # ForeignLink too: never sent the token
            return Subscription(sub_id, None, href[:200])

    async def subscription_exists(self, token: Token, subscription: Subscription) -> bool:
        """Whether the MEP still holds the subscription (404: it does not)."""
        if subscription.url is None:
            return True  # its link is not usable: nothing to check it with
        try:
            await self._call("subscription", "GET", subscription.url, (200,), {}, token=token)
        except MepError as e:
            if e.status == 404:
                return False
            raise
        return True

    async def unsubscribe(self, token: Token, subscription: Subscription) -> None:
        """DELETE a subscription on the link the MEP gave."""
        if subscription.url is None:
            raise self._unexpected(
                "unsubscribe", 0, f"no usable link to delete it ({subscription.refused_link})"
            )
        await self._call("unsubscribe", "DELETE", subscription.url, (204, 200), {}, token=token)

    async def own_services(self, token: Token) -> list[HeldService]:
        """The app's service instances as the MEP holds them (GET …/applications/{id}/services)."""
        response, answer, _ = await self._call(
            "sync",
            "GET",
            f"{self._mgmt}/applications/{self._app}/services",
            (200,),
            {},
            token=token,
        )
        held = []
        for item in self._json_list("sync", response, answer)[:MAX_LISTED]:
            if not isinstance(item, dict):
                continue
            sid, name, state = item.get("serInstanceId"), item.get("serName"), item.get("state")
            if isinstance(sid, str) and isinstance(name, str) and isinstance(state, str):
                echoed = {k: item[k] for k in ECHOED_MEMBERS if k in item}
                held.append(HeldService(sid, name, state, echoed))
        return held

    async def availability_subscriptions(self, token: Token) -> list[Subscription]:
        """The app's availability subscriptions (a link list; none: EdgeGallery's 404)."""
        return await self._subscription_list(token, self._mgmt)

    async def termination_subscriptions(self, token: Token) -> list[Subscription]:
        """
        The app's termination subscriptions (GET …/mec_app_support/v1/applications/{id}/
        subscriptions: a link list; EdgeGallery answers 404 when there is none), each with
        its link resolved; links to another origin are left out.
        """
        return await self._subscription_list(token, self._support)

    async def _subscription_list(self, token: Token, root: str) -> list[Subscription]:
        try:
            _, answer, _ = await self._call(
                "subscription",
                "GET",
                f"{root}/applications/{self._app}/subscriptions",
                (200,),
                {},
                token=token,
            )
        except MepError as e:
            if e.status == 404:
                return []
            raise
        links_ = answer.get("_links") if isinstance(answer, dict) else None
        listed = links_.get("subscriptions") if isinstance(links_, dict) else None
        found = []
        for item in listed[:MAX_LISTED] if isinstance(listed, list) else []:
            href = item.get("href") if isinstance(item, dict) else None
            if not isinstance(href, str) or not href:
                continue
            try:
                url = self._link(href)
            except ValueError:  # ForeignLink too: never sent the token
                continue
            found.append(Subscription(href.rstrip("/").rsplit("/", 1)[-1], url))
        return found

    async def subscription_callback(self, token: Token, subscription: Subscription) -> str | None:
        """The callbackReference of a subscription (None: not usable or not a string)."""
        if subscription.url is None:
            return None
        _, answer, _ = await self._call(
            "subscription", "GET", subscription.url, (200,), {}, token=token
        )
        callback = answer.get("callbackReference") if isinstance(answer, dict) else None
        return callback if isinstance(callback, str) else None

    def resolve(self, href: str) -> str:
        """A link from the MEP as an absolute URL on its origin; ValueError when not."""
        return self._link(href)

    def confirm_termination_url(self) -> str:
        """Where confirm_termination goes when a notification gives no usable link."""
        return self._link(f"{self._support}/applications/{self._app}/confirm_termination")

    # -- app support -----------------------------------------------------------------------

    async def confirm_termination(
        self, token: Token, url: str, action: str, timeout: float | None = None
    ) -> None:
        """POST AppTerminationConfirmation {"operationAction": action} on C{url}."""
        await self._call(
            "confirm_termination",
            "POST",
            url,
            (204, 200),
            {},
            {"operationAction": action},
            timeout,
            token=token,
        )

    async def confirm_ready(self, token: Token) -> None:
        """POST confirm_ready {"indication": "READY"}."""
        await self._call(
            "confirm_ready",
            "POST",
            f"{self._support}/applications/{self._app}/confirm_ready",
            (204, 200),
            {},
            {"indication": "READY"},
            token=token,
        )


def _liveness_link(links_: Any) -> tuple[str, str] | None:
    """(href, method) of the liveness link in C{_links}, if there is one."""
    if not isinstance(links_, dict):
        raise ValueError
    etsi = links_.get("liveness")
    if isinstance(etsi, dict) and isinstance(etsi.get("href"), str) and etsi["href"]:
        return etsi["href"], "PATCH"
    own = links_.get("self")
    edgegallery = own.get("liveness") if isinstance(own, dict) else None
    if isinstance(edgegallery, str) and edgegallery:
        return edgegallery, "PUT"
    return None


def _is_problem(body: Any) -> bool:
    return isinstance(body, dict) and ("title" in body or "detail" in body)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()
