"""
MepClient: the MEP's Mp1 service management and app support API, as the agent uses it.
It takes a L{TokenSource}: every call gets the token itself, and when the MEP refuses it,
reports it and tries once more with a new one, so no caller handles tokens. What comes
back is checked before it is believed: typed, frozen records (records.py) or a MepError.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from attrs import frozen
from twisted.web.iweb import IResponse

from mep_agent.mp1 import links
from mep_agent.mp1.errors import MepError, Verdict
from mep_agent.mp1.gate import Pace
from mep_agent.mp1.records import (
    ECHOED_MEMBERS,
    Discovered,
    HeldService,
    Registration,
    ServiceInstance,
    Subscription,
)
from mep_agent.mp1.tokens import TokenSource
from mep_agent.mp1.wire import MepWire

MAX_LISTED = 100  # links read from a MEP's subscription list (it holds at most 50)


@frozen
class Urgency:
    """
    How long a call may wait for a token (None: the request timeout), whether it cannot
    wait at all (deletions at stop, a termination's confirmation: the token keeper cuts its
    back-off short, and the gate lets it go first), or whether it is clean-up that waits
    behind everything else (a leftover's deletion).
    """

    token_wait: float | None = None
    hurry: bool = False
    background: bool = False


class MepClient:
    """The MEP's Mp1 API as the agent uses it; one instance per agent."""

    def __init__(
        self,
        wire: MepWire,
        tokens: TokenSource,
        api_root: str = "/mep",
        links_under_root: bool = True,
        heartbeat_method: str = "auto",
        public_origins: frozenset[links.Origin] = frozenset(),
    ) -> None:
        """
        @param public_origins: the MEP's public origins (--mep-public-url): links to them
            are followed on the dialed address (L{links.resolve}).
        @param api_root: the path before mec_service_mgmt/v1 and mec_app_support/v1.
        @param links_under_root: EdgeGallery's links omit the API root (L{links.resolve}).
        @param heartbeat_method: 'auto' (the method that goes with the link) or one forced.
        """
        self._wire = wire
        self._tokens = tokens
        self._root = api_root
        self._mgmt = f"{api_root}/mec_service_mgmt/v1"
        self._support = f"{api_root}/mec_app_support/v1"
        self._links_under_root = links_under_root
        self._public_origins = public_origins
        self._heartbeat_method = heartbeat_method
        self._patch_type = "application/json"

    @property
    def _app(self) -> str:
        return self._wire.app_instance_id

    async def _call(
        self,
        operation: str,
        method: str,
        path: str,
        expected: tuple[int, ...],
        headers: dict[str, str],
        body: Any = None,
        timeout: float | None = None,
        urgency: Urgency | None = None,
    ) -> tuple[IResponse, Any, int]:
        """
        One exchange (within C{timeout}, the request timeout by default) with the token;
        when the MEP refuses the token, it is reported and the call made once more with a
        new one.
        """
        urgency = urgency or Urgency()
        wait = urgency.token_wait
        if wait is None:
            wait = timeout if timeout is not None else self._wire.timeout
        # A call that cannot wait goes before the others and is not paced (the gate).
        until = self._wire.clock.seconds() + wait if urgency.hurry else None
        pace = Pace(until, urgency.background)
        token = await self._tokens.get(wait, urgency.hurry)
        try:
            return await self._wire.call(
                operation, method, path, expected, headers, body, timeout, token, pace
            )
        except MepError as e:
            if e.verdict is not Verdict.TOKEN_REFUSED:
                raise
            self._tokens.invalidate(token, e)
        token = await self._tokens.get(wait, urgency.hurry)
        return await self._wire.call(
            operation, method, path, expected, headers, body, timeout, token, pace
        )

    def _unexpected(self, operation: str, status: int, detail: str) -> MepError:
        return self._wire.unexpected(operation, status, detail)

    def _link(self, href: str) -> str:
        """A link from the MEP as an absolute URL; ForeignLink/ValueError when unusable."""
        return links.resolve(
            self._wire.base, self._root, href, self._links_under_root, self._public_origins
        )

    # -- Mp1 service management ------------------------------------------------------------

    def _service_path(self, ser_instance_id: str) -> str:
        return f"{self._mgmt}/applications/{self._app}/services/{quote(ser_instance_id, safe='')}"

    async def register(self, body: dict[str, Any]) -> Registration:
        """POST a ServiceInfo; the MEP's id, liveness link and interval."""
        _, answer, _ = await self._call(
            "register",
            "POST",
            f"{self._mgmt}/applications/{self._app}/services",
            (201,),
            {},
            body,
        )
        return self._registration("register", answer)

    async def service(self, ser_instance_id: str) -> Registration | None:
        """One of the app's instances as the MEP holds it (None: gone, a 404)."""
        try:
            _, answer, _ = await self._call(
                "service", "GET", self._service_path(ser_instance_id), (200,), {}
            )
        except MepError as e:
            if e.status == 404:
                return None
            raise
        return self._registration("service", answer)

    async def update(self, ser_instance_id: str, body: dict[str, Any]) -> Registration:
        """PUT a ServiceInfo on the service (restores its state after an INACTIVE 409)."""
        _, answer, _ = await self._call(
            "update", "PUT", self._service_path(ser_instance_id), (200,), {}, body
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
            )

    async def deregister(self, ser_instance_id: str, urgency: Urgency | None = None) -> None:
        """DELETE a registration."""
        await self._call(
            "deregister",
            "DELETE",
            self._service_path(ser_instance_id),
            (204, 200),
            {},
            urgency=urgency,
        )

    async def discover(self, ser_name: str) -> Discovered:
        """Instances of a service name; C{instances} None when the MEP never heard of it."""
        try:
            response, answer, size = await self._call(
                "discovery",
                "GET",
                f"{self._mgmt}/services?ser_name={quote(ser_name, safe='')}",
                (200,),
                {},
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

    async def transports(self) -> dict[str, dict[str, Any]]:
        """The platform's transports: each C{endpoint} by transport id (GET …/transports)."""
        response, answer, _ = await self._call(
            "discovery", "GET", f"{self._mgmt}/transports", (200,), {}
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

    async def subscribe(self, body: dict[str, Any], termination: bool = False) -> Subscription:
        """POST an availability (or, C{termination}, app termination) subscription."""
        root = self._support if termination else self._mgmt
        response, answer, _ = await self._call(
            "subscribe",
            "POST",
            f"{root}/applications/{self._app}/subscriptions",
            (201,),
            {},
            body,
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

    async def subscription_body(self, subscription: Subscription) -> dict[str, Any] | None:
        """The subscription as the MEP holds it (None: gone, a 404)."""
        if subscription.url is None:
            raise self._unexpected(
                "subscription", 0, f"no usable link to read it ({subscription.refused_link})"
            )
        try:
            _, answer, _ = await self._call("subscription", "GET", subscription.url, (200,), {})
        except MepError as e:
            if e.status == 404:
                return None
            raise
        if not isinstance(answer, dict):
            raise self._unexpected("subscription", 200, "answer is not a JSON object")
        return answer

    async def unsubscribe(
        self, subscription: Subscription, urgency: Urgency | None = None
    ) -> None:
        """DELETE a subscription on the link the MEP gave."""
        if subscription.url is None:
            raise self._unexpected(
                "unsubscribe", 0, f"no usable link to delete it ({subscription.refused_link})"
            )
        await self._call(
            "unsubscribe", "DELETE", subscription.url, (204, 200), {}, urgency=urgency
        )

    async def own_services(self) -> list[HeldService]:
        """The app's service instances as the MEP holds them (GET …/applications/{id}/services)."""
        response, answer, _ = await self._call(
            "sync",
            "GET",
            f"{self._mgmt}/applications/{self._app}/services",
            (200,),
            {},
        )
        held = []
        for item in self._json_list("sync", response, answer)[:MAX_LISTED]:
            if not isinstance(item, dict):
                continue
            sid, name, state = item.get("serInstanceId"), item.get("serName"), item.get("state")
            if isinstance(sid, str) and isinstance(name, str) and isinstance(state, str):
                echoed = {k: item[k] for k in ECHOED_MEMBERS if k in item}
                interval = item.get("livenessInterval")
                if isinstance(interval, bool) or not isinstance(interval, int):
                    interval = 0
                held.append(HeldService(sid, name, state, echoed, max(0, interval)))
        return held

    async def availability_subscriptions(self) -> list[Subscription]:
        """The app's availability subscriptions (a link list; none: EdgeGallery's 404)."""
        return await self._subscription_list(self._mgmt)

    async def termination_subscriptions(self) -> list[Subscription]:
        """
        The app's termination subscriptions (GET …/mec_app_support/v1/applications/{id}/
        subscriptions: a link list; EdgeGallery answers 404 when there is none), each with
        its link resolved; links to another origin are left out.
        """
        return await self._subscription_list(self._support)

    async def _subscription_list(self, root: str) -> list[Subscription]:
        try:
            _, answer, _ = await self._call(
                "subscription",
                "GET",
                f"{root}/applications/{self._app}/subscriptions",
                (200,),
                {},
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

    def resolve(self, href: str) -> str:
        """A link from the MEP as an absolute URL on its origin; ValueError when not."""
        return self._link(href)

    def confirm_termination_url(self) -> str:
        """Where confirm_termination goes when a notification gives no usable link."""
        return self._link(f"{self._support}/applications/{self._app}/confirm_termination")

    # -- app support -----------------------------------------------------------------------

    async def confirm_termination(
        self, url: str, action: str, timeout: float | None = None
    ) -> None:
        """
        POST AppTerminationConfirmation {"operationAction": action} on C{url}, within
        C{timeout} (the token too, in a hurry: the platform's deadline runs).
        """
        await self._call(
            "confirm_termination",
            "POST",
            url,
            (204, 200),
            {},
            {"operationAction": action},
            timeout,
            Urgency(timeout, hurry=True) if timeout is not None else None,
        )

    async def confirm_ready(self) -> None:
        """POST confirm_ready {"indication": "READY"}."""
        await self._call(
            "confirm_ready",
            "POST",
            f"{self._support}/applications/{self._app}/confirm_ready",
            (204, 200),
            {},
            {"indication": "READY"},
        )


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
