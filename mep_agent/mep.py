"""
MepClient: the MEP's HTTP API (mepauth token, Mp1 service management, app support) over
an injected treq client. Every call has a timeout on the injected clock, reads the whole
response body, and turns any failure into a MepError with the HTTP status (or None for a
network failure) and a short detail with secrets removed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from attrs import frozen
from twisted.internet.defer import CancelledError, ensureDeferred
from twisted.internet.error import TimeoutError
from twisted.internet.interfaces import IReactorTime
from twisted.web.iweb import IResponse

from . import signing
from .config import Credentials
from .secret import Secret, redact

MGMT = "/mep/mec_service_mgmt/v1"
SUPPORT = "/mep/mec_app_support/v1"
_MAX_DETAIL = 200


class MepError(Exception):
    """
    A MEP call that did not succeed. C{status} is the HTTP status, or None when no answer
    arrived (connection refused, TLS failure, timeout). The message never holds a secret.
    """

    def __init__(self, operation: str, status: int | None, detail: str, body: Any = None) -> None:
        where = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"{operation}: {where}: {detail}")
        self.operation = operation
        self.status = status
        self.detail = detail
        self.body = body

    @property
    def transient(self) -> bool:
        """Worth retrying soon: no answer, a server error, or rate limiting."""
        return self.status is None or self.status >= 500 or self.status == 429


@frozen
class Token:
    access_token: Secret
    token_type: str
    expires_in: float
    obtained_at: float

    @property
    def expires_at(self) -> float:
        return self.obtained_at + self.expires_in

    def authorization(self) -> str:
        # mepauth answers "Bearer"; Kong matches [Bb]earer, so normalise the case.
        return f"Bearer {self.access_token.reveal()}"


@frozen
class Registration:
    ser_instance_id: str
    liveness_path: str | None
    interval: int


@frozen
class Subscription:
    subscription_id: str | None
    href: str  # as the MEP answers it, without the /mep prefix


def _describe_failure(error: Exception) -> str:
    reasons = getattr(error, "reasons", None)
    if reasons:  # ResponseNeverReceived / ResponseFailed wrap failures
        inner = reasons[0].value
        if isinstance(inner, CancelledError):
            return "timed out"
        return f"{type(inner).__name__}: {inner}"[:_MAX_DETAIL]
    return f"{type(error).__name__}: {error}"[:_MAX_DETAIL]


class MepClient:
    """The MEP's API as the agent uses it; one instance per agent."""

    def __init__(
        self,
        http: Any,
        clock: IReactorTime,
        base_url: str,
        host_header: str,
        credentials: Credentials,
        timeout: float,
        observe: Callable[[str, int | None, float], None] | None = None,
    ) -> None:
        self._http = http
        self._clock = clock
        self._base = base_url
        self._host = host_header
        self._credentials = credentials
        self._timeout = timeout
        # Told (operation, HTTP status or None, seconds) after every exchange: metrics.
        self._observe = observe or (lambda operation, status, seconds: None)

    @property
    def _app(self) -> str:
        return self._credentials.app_instance_id.reveal()

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        expected: tuple[int, ...],
        headers: dict[str, str],
        body: Any = None,
        timeout: float | None = None,
    ) -> tuple[IResponse, Any]:
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            headers = dict(headers, **{"Content-Type": "application/json"})
        # One deadline for the whole exchange: treq's own timeout stops at the headers,
        # and a MEP that sends headers and then stalls must not hang a heartbeat.
        exchange = ensureDeferred(self._exchange(method, self._base + path, headers, data))
        exchange.addTimeout(timeout or self._timeout, self._clock)
        started = self._clock.seconds()
        try:
            response, raw = await exchange
        except (TimeoutError, CancelledError):
            self._observe(operation, None, self._clock.seconds() - started)
            raise MepError(operation, None, "timed out") from None
        except Exception as e:
            self._observe(operation, None, self._clock.seconds() - started)
            raise MepError(operation, None, _describe_failure(e)) from None
        self._observe(operation, response.code, self._clock.seconds() - started)
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        if response.code not in expected:
            text = raw.decode("utf-8", "replace")[:_MAX_DETAIL]
            raise MepError(
                operation,
                response.code,
                redact(text, self._credentials.all()) or "(empty body)",
                parsed,
            )
        return response, parsed

    async def _exchange(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None
    ) -> tuple[IResponse, bytes]:
        response = await self._http.request(method, url, headers=headers, data=data)
        return response, await response.content()

    def _bearer(self, token: Token) -> dict[str, str]:
        return {"Authorization": token.authorization()}

    async def fetch_token(self) -> Token:
        """POST /mep/token signed with AK/SK."""
        headers = signing.token_request_headers(
            self._credentials.access_key.reveal(),
            self._credentials.secret_key.reveal(),
            self._host,
            signing.sdk_date(self._clock.seconds()),
        )
        _, body = await self._call("token", "POST", "/mep/token", (200,), headers)
        try:
            access = body["access_token"]
            expires_in = float(body["expires_in"])
            token_type = str(body.get("token_type", "Bearer"))
            if not isinstance(access, str) or not access or expires_in <= 0:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise MepError("token", 200, "answer without access_token/expires_in") from None
        return Token(Secret(access), token_type, expires_in, self._clock.seconds())

    async def register(self, token: Token, body: dict[str, Any]) -> Registration:
        _, answer = await self._call(
            "register",
            "POST",
            f"{MGMT}/applications/{self._app}/services",
            (201,),
            self._bearer(token),
            body,
        )
        return self._registration("register", answer)

    async def update(
        self, token: Token, ser_instance_id: str, body: dict[str, Any]
    ) -> Registration:
        """PUT the ServiceInfo again (restores ACTIVE after an INACTIVE 409)."""
        _, answer = await self._call(
            "update",
            "PUT",
            f"{MGMT}/applications/{self._app}/services/{ser_instance_id}",
            (200,),
            self._bearer(token),
            body,
        )
        return self._registration("update", answer)

    @staticmethod
    def _registration(operation: str, answer: Any) -> Registration:
        try:
            ser_instance_id = answer["serInstanceId"]
            interval = int(answer.get("livenessInterval") or 0)
            links = answer.get("_links") or {}
            liveness = (links.get("self") or {}).get("liveness") or None
            if not isinstance(ser_instance_id, str) or not ser_instance_id:
                raise ValueError
        except (KeyError, TypeError, ValueError, AttributeError):
            raise MepError(operation, 201, "answer without serInstanceId") from None
        return Registration(ser_instance_id, liveness, interval if liveness else 0)

    async def heartbeat(
        self, token: Token, liveness_path: str, method: str = "PUT", timeout: float | None = None
    ) -> None:
        """PUT (EdgeGallery) or PATCH (ETSI) {"state":"ACTIVE"} on the liveness link."""
        await self._call(
            "heartbeat",
            method,
            liveness_path,
            (200, 204),
            self._bearer(token),
            {"state": "ACTIVE"},
            timeout,
        )

    async def deregister(self, token: Token, ser_instance_id: str) -> None:
        await self._call(
            "deregister",
            "DELETE",
            f"{MGMT}/applications/{self._app}/services/{quote(ser_instance_id, safe='')}",
            (204, 200),
            self._bearer(token),
        )

    async def discover(self, token: Token, ser_name: str) -> list[dict[str, Any]] | None:
        """Instances of a service name; None when the MEP has never heard of the name."""
        try:
            _, answer = await self._call(
                "discovery",
                "GET",
                f"{MGMT}/services?ser_name={quote(ser_name, safe='')}",
                (200,),
                self._bearer(token),
            )
        except MepError as e:
            if (
                e.status == 400
                and isinstance(e.body, dict)
                and str(e.body.get("errorCode")) == "400012"
            ):
                return None
            raise
        if not isinstance(answer, list):
            return []
        return [item for item in answer if isinstance(item, dict)]

    async def subscribe(self, token: Token, body: dict[str, Any]) -> Subscription:
        response, answer = await self._call(
            "subscribe",
            "POST",
            f"{MGMT}/applications/{self._app}/subscriptions",
            (201,),
            self._bearer(token),
            body,
        )
        href = None
        if isinstance(answer, dict):
            href = ((answer.get("_links") or {}).get("self") or {}).get("href")
        location = response.headers.getRawHeaders("location") or [None]
        href = href or location[0]
        if not isinstance(href, str) or not href:
            raise MepError("subscribe", 201, "answer without a subscription link")
        sub_id = answer.get("subscriptionId") if isinstance(answer, dict) else None
        return Subscription(sub_id or href.rsplit("/", 1)[-1], href)

    def _subscription_path(self, href: str) -> str:
        # mepserver answers links without the gateway's /mep prefix.
        return href if href.startswith("/mep/") else "/mep" + href

    async def subscription_exists(self, token: Token, subscription: Subscription) -> bool:
        try:
            await self._call(
                "subscription",
                "GET",
                self._subscription_path(subscription.href),
                (200,),
                self._bearer(token),
            )
        except MepError as e:
            if e.status == 404:
                return False
            raise
        return True

    async def unsubscribe(self, token: Token, subscription: Subscription) -> None:
        await self._call(
            "unsubscribe",
            "DELETE",
            self._subscription_path(subscription.href),
            (204, 200),
            self._bearer(token),
        )

    async def confirm_ready(self, token: Token) -> None:
        await self._call(
            "confirm_ready",
            "POST",
            f"{SUPPORT}/applications/{self._app}/confirm_ready",
            (204, 200),
            self._bearer(token),
            {"indication": "READY"},
        )
