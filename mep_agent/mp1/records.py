"""What the MEP's answers are turned into: typed, frozen records, checked before believed."""

from __future__ import annotations

from typing import Any

from attrs import frozen


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

    @property
    def state(self) -> str | None:
        """The state the MEP answered it in, if it said."""
        state = self.info.get("state")
        return state if isinstance(state, str) else None


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
    interval: int = 0  # the liveness interval it runs with (0: none)


#: What L{HeldService.echoed} holds.
ECHOED_MEMBERS = ("version", "serializer", "serCategory", "scopeOfLocality")


@frozen
class Discovered:
    """A discovery answer: the instances (None: the MEP never heard of the name)."""

    instances: tuple[ServiceInstance, ...] | None
    size: int  # bytes of the MEP's answer, for the cache's byte budget
