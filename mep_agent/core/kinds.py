"""
The kinds of object the agent keeps at the MEP behind one small interface -- create, read,
update, delete, list -- so that one keeper (keeper.py) keeps service instances and
subscriptions alike (txkube's IKubernetesClient is the model: one client interface over
every kind of object). Each kind also says how its objects are named (C{ref}) and listed.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from attrs import frozen

from mep_agent.core.owned import SERVICE, SUBSCRIPTION
from mep_agent.mp1.client import MepClient, Registration, Subscription, Urgency
from mep_agent.mp1.errors import MepError
from mep_agent.mp1.records import HeldService

#: What the MEP holds for one object: a service's registration, or a subscription.
Held = Registration | Subscription


@frozen
class Listed:
    """One object as a list of the app's objects shows it."""

    ref: str  # a serInstanceId, or a subscription's link
    name: str | None = None  # a service's name (subscriptions: unknown until read)
    state: str | None = None
    echoed: dict[str, Any] = {}
    interval: int = 0  # a service's liveness interval (0: none)


class MepKind(Protocol):
    """One kind of object at the MEP, as a keeper uses it."""

    kind: str  # owned.SERVICE or owned.SUBSCRIPTION
    label: str  # for logs: "service", "subscription", "termination subscription"
    event: str  # the first part of its log events' names
    event_key: str  # the log field that names it (ser_name, subscription)
    words: tuple[str, str, str]  # made, made again, deleted: as logs say it
    events: tuple[str, str, str]  # the same as log event names

    def stub(self, ref: str, interval: int = 0) -> Held:
        """A held object known only by its ref (from a list), to read it back whole."""
        ...

    def refused_for_room(self, error: MepError) -> bool:
        """Whether a creation was refused because the platform holds too many already."""
        ...

    def ref(self, held: Held) -> str:
        """What names C{held} at the MEP (and in the state file)."""
        ...

    def usable(self, held: Held) -> bool:
        """Whether the agent can read and delete it (its link may lead elsewhere)."""
        ...

    async def create(self, body: dict[str, Any]) -> Held:
        """POST it."""
        ...

    async def read(self, held: Held) -> Held | None:
        """GET it as the MEP holds it now (None: gone)."""
        ...

    async def update(self, held: Held, body: dict[str, Any]) -> Held:
        """PUT C{body} on it (MepError 405 where the kind cannot be changed)."""
        ...

    async def delete(self, held: Held, urgency: Urgency | None) -> bool:
        """
        DELETE it: True when the MEP confirmed, False when it answered 404 (already gone,
        as far as that answer goes: a gateway's 404 says nothing of the registry).
        """
        ...

    async def list(self) -> list[Listed]:
        """The app's objects of this kind."""
        ...


class Services:
    """Service instances: POST/GET/PUT/DELETE …/applications/{id}/services[/{serInstanceId}]."""

    kind = SERVICE
    label = event = "service"
    event_key = "ser_name"
    words = ("registered", "re-registered", "deregistered")
    events = ("registered", "reregistered", "deregistered")

    def __init__(self, mep: MepClient, restore_sends_held: bool = True) -> None:
        """@param restore_sends_held: see L{mep_agent.mp1.dialect.Dialect}."""
        self._mep = mep
        self._restore_sends_held = restore_sends_held

    def restore_body(self, held: Registration, body: dict[str, Any]) -> dict[str, Any]:
        """What a repair of only the state PUTs (the dialect's rule, Dialect)."""
        base = held.info if self._restore_sends_held and held.info else body
        return dict(base, state=body.get("state"))

    def stub(self, ref: str, interval: int = 0) -> Held:
        """An instance known by its serInstanceId."""
        return Registration(ref, None, interval)

    def refused_for_room(self, error: MepError) -> bool:
        """mepserver's "registered services have achieve the limit" (internal code 12)."""
        return _no_room(error, 12)

    def ref(self, held: Held) -> str:
        """The serInstanceId."""
        assert isinstance(held, Registration)
        return held.ser_instance_id

    def usable(self, held: Held) -> bool:
        """Always: its own path is built from the id."""
        return True

    async def create(self, body: dict[str, Any]) -> Held:
        """Register it."""
        return await self._mep.register(body)

    async def read(self, held: Held) -> Held | None:
        """The instance as the MEP holds it, its liveness link kept when not answered."""
        assert isinstance(held, Registration)
        seen = await self._mep.service(held.ser_instance_id)
        return None if seen is None else _same_links(seen, held)

    async def update(self, held: Held, body: dict[str, Any]) -> Held:
        """PUT a ServiceInfo on it: same serInstanceId, so the same liveness link."""
        assert isinstance(held, Registration)
        return _same_links(await self._mep.update(held.ser_instance_id, body), held)

    async def delete(self, held: Held, urgency: Urgency | None) -> bool:
        """Deregister it; a 404 is what was wanted, unconfirmed (MepKind.delete)."""
        assert isinstance(held, Registration)
        return await _confirmed(self._mep.deregister(held.ser_instance_id, urgency))

    async def list(self) -> list[Listed]:
        """GET …/applications/{id}/services."""
        return [_listed(s) for s in await self._mep.own_services()]


async def _confirmed(deletion: Awaitable[object]) -> bool:
    """True once C{deletion} succeeded, False when it was answered 404 (MepKind.delete)."""
    try:
        await deletion
    except MepError as e:
        if e.status != 404:
            raise
        return False
    return True


def _listed(service: HeldService) -> Listed:
    return Listed(
        service.ser_instance_id, service.ser_name, service.state, service.echoed, service.interval
    )


def _same_links(seen: Registration, held: Registration) -> Registration:
    """C{seen}, with C{held}'s liveness link and interval where the answer omits them."""
    if seen.liveness_path or not held.liveness_path:
        return seen
    return Registration(
        seen.ser_instance_id,
        held.liveness_path,
        seen.interval or held.interval,
        held.liveness_method,
        seen.info or held.info,
        seen.refused_link,
    )


class Subscriptions:
    """
    Availability subscriptions (…/mec_service_mgmt/v1/…) or, C{termination}, the app
    termination subscription (…/mec_app_support/v1/…): made, read and deleted on the link
    the MEP gave; never changed in place (a changed one is deleted and made anew).
    """

    kind = SUBSCRIPTION
    event = event_key = "subscription"
    words = ("created", "created again", "deleted")
    events = ("created", "created", "deleted")

    def __init__(self, mep: MepClient, termination: bool = False) -> None:
        self._mep = mep
        self._termination = termination
        self.label = "termination subscription" if termination else "subscription"

    def stub(self, ref: str, interval: int = 0) -> Held:
        """A subscription known by its link."""
        return Subscription(_last(ref), ref)

    def refused_for_room(self, error: MepError) -> bool:
        """mepserver's "subscriptions have achieve the limit" (internal code 15)."""
        return _no_room(error, 15)

    def ref(self, held: Held) -> str:
        """Its link (or, when it leads elsewhere, the link as given)."""
        assert isinstance(held, Subscription)
        return held.url or held.refused_link or held.subscription_id

    def usable(self, held: Held) -> bool:
        """Whether its link leads to the MEP (else it cannot be read or deleted)."""
        assert isinstance(held, Subscription)
        return held.url is not None

    async def create(self, body: dict[str, Any]) -> Held:
        """POST it."""
        return await self._mep.subscribe(body, self._termination)

    async def read(self, held: Held) -> Held | None:
        """GET it (None: gone)."""
        assert isinstance(held, Subscription)
        return held if await self._mep.subscription_body(held) is not None else None

    async def update(self, held: Held, body: dict[str, Any]) -> Held:
        """Subscriptions are never changed in place."""
        raise MepError("subscription", 405, "a subscription is deleted and made anew")

    async def delete(self, held: Held, urgency: Urgency | None) -> bool:
        """DELETE it on its link; a 404 is what was wanted, unconfirmed (MepKind.delete)."""
        assert isinstance(held, Subscription)
        return await _confirmed(self._mep.unsubscribe(held, urgency))

    async def list(self) -> list[Listed]:
        """The app's subscriptions of this kind, by link."""
        if self._termination:
            found = await self._mep.termination_subscriptions()
        else:
            found = await self._mep.availability_subscriptions()
        return [Listed(s.url) for s in found if s.url is not None]

    async def body(self, listed: Listed) -> dict[str, Any] | None:
        """What a listed subscription holds (None: gone meanwhile)."""
        return await self._mep.subscription_body(Subscription(_last(listed.ref), listed.ref))


def _no_room(error: MepError, code: int) -> bool:
    """A 400 that says the app holds as many as the platform allows (mepserver's C{code})."""
    body = error.body
    if error.status != 400 or not isinstance(body, dict):
        return False
    return body.get("status") == code or "limit" in str(body.get("detail", "")).lower()


def _last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]
