"""
The emulated mepserver's state: service instances with liveness, suspension and
deregistration; discovery; availability and termination subscriptions; and the
notifications all of this produces. Time comes from an injected clock. Terminations are
kept here and run by termination.py (MEC 011's) and mm5.py (mepserver's).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from attrs import define, field, frozen
from twisted.internet.interfaces import IReactorTime

from mep_emulator import mepserver, rules
from mep_emulator.rules import Rejected

if TYPE_CHECKING:
    from mep_emulator.termination import Termination

SERVICES_MAX = 50
SUBSCRIPTIONS_MAX = 50
MGMT = "/mep/mec_service_mgmt/v1"
SUPPORT = "/mep/mec_app_support/v1"
SERVICE_ID = re.compile(r"[0-9a-f]{32}")


def suspension_grace(interval: int) -> int:
    """mepserver suspends after interval + min(ceil(5 % of it), 5) seconds."""
    return min(math.ceil(0.05 * interval), 5)


@frozen
class Notification:
    """
    A notification to POST to a callback; C{outcome}, when given, is told whether it was
    delivered (a 2xx answer), as mepserver's termination worker needs to know.
    """

    callback: str
    body: dict[str, Any]
    outcome: Callable[[bool], None] | None = field(default=None, eq=False, repr=False)


@define
class ServiceRecord:
    """One registered service instance with its liveness state."""

    ser_instance_id: str
    app_instance_id: str
    body: dict[str, Any]
    interval: int
    state: str
    last_beat: float
    heartbeats: int = 0
    # What mepserver keeps of it (registry.mepserver only): the instance's properties and
    # its gateway routes by endpoint URI (mepserver.py).
    properties: dict[str, str] = field(factory=dict)
    routes: dict[str, str] = field(factory=dict)

    @property
    def liveness_path(self) -> str:
        """The liveness link mepserver answers."""
        return (
            f"{MGMT}/applications/{self.app_instance_id}/services/{self.ser_instance_id}/liveness"
        )

    def view(self) -> dict[str, Any]:
        """The ServiceInfo mepserver answers: echo, false booleans dropped, ids and links."""
        out = {k: v for k, v in self.body.items() if v is not False and k != "_links"}
        out.update(
            serInstanceId=self.ser_instance_id, state=self.state, livenessInterval=self.interval
        )
        links: dict[str, Any] = {"appInstanceId": self.app_instance_id}
        if self.interval:
            links["self"] = {"liveness": self.liveness_path}
        out["_links"] = links
        return out

    def read_back(self) -> dict[str, Any]:
        """The ServiceInfo mepserver answers a read with, rebuilt from what it keeps."""
        return mepserver.read_back(
            self.ser_instance_id,
            self.state,
            self.interval,
            self.app_instance_id,
            self.liveness_path,
            self.properties,
            self.routes,
        )

    def answer(self) -> dict[str, Any]:
        """mepserver's answer to the registration or update that gave it its body."""
        return mepserver.answer(self.body, self.ser_instance_id, self.interval, self.liveness_path)

    def kept(self, body: dict[str, Any], first: bool) -> None:
        """Keep C{body} as mepserver does: its properties, its gateway routes."""
        self.properties = mepserver.properties(
            body, self.interval, None if first else self.properties
        )
        self.routes = mepserver.routes(body, None if first else self.routes)


@define
class SubscriptionRecord:
    """One subscription (availability or termination)."""

    subscription_id: str
    app_instance_id: str
    body: dict[str, Any]

    @property
    def href(self) -> str:
        """The subscription's link, as mepserver answers it."""
        kind = "mec_app_support" if self.is_termination else "mec_service_mgmt"
        return (
            f"/{kind}/v1/applications/{self.app_instance_id}/subscriptions/{self.subscription_id}"
        )

    @property
    def is_termination(self) -> bool:
        """Whether this is an app-termination subscription."""
        return self.body.get("subscriptionType") == "AppTerminationNotificationSubscription"

    def matches(self, record: ServiceRecord) -> bool:
        """Whether a change to C{record} concerns this subscription."""
        criteria = self.body.get("filteringCriteria") or {}
        states = criteria.get("states") or []
        if states and record.state not in states:
            return False
        ids = criteria.get("serInstanceIds") or []
        names = criteria.get("serNames") or []
        categories = [c.get("id") for c in criteria.get("serCategories") or []]
        if not (ids or names or categories):
            return True
        category = (record.body.get("serCategory") or {}).get("id")
        return (
            record.ser_instance_id in ids
            or record.body["serName"] in names
            or (category is not None and category in categories)
        )


#: The links of a SerAvailabilityNotification about C{record} (a change of C{change}) to one
#: subscriber: the service reference's link (None: none) and the subscription's.
AvailabilityLinks = Callable[[ServiceRecord, "SubscriptionRecord", str], tuple[str | None, str]]


def edgegallery_availability_links(
    record: ServiceRecord, sub: SubscriptionRecord, change: str
) -> tuple[str | None, str]:
    """Paths without the gateway's /mep, and no service link on REMOVED."""
    if change == "REMOVED":
        return None, sub.href
    return f"/mec_service_mgmt/v1/services/{record.ser_instance_id}", sub.href


@define
class Registry:
    """mepserver's registry: services, liveness, subscriptions, notifications."""

    clock: IReactorTime
    notify: Callable[[Notification], None]
    liveness_interval: int | None = 60  # None: keep the interval the app asked for
    services: dict[str, ServiceRecord] = field(factory=dict)
    known_names: set[str] = field(factory=set)  # service-center keeps names after DELETE
    subscriptions: dict[str, SubscriptionRecord] = field(factory=dict)
    ready: set[str] = field(factory=set)
    terminations: dict[str, Termination] = field(factory=dict)  # by app instance id
    # Told the app instance id when the MEP's other parts clean up after a termination: at
    # its end; mepserver's once its request deleted the app's services (mm5.py).
    termination_listeners: list[Callable[[str], None]] = field(factory=list)
    # How availability notifications link: paths, unless a face (the ETSI one) builds its own.
    availability_links: AvailabilityLinks = edgegallery_availability_links
    # Whether the store behaves as EdgeGallery's mepserver, over servicecomb's
    # service-center: every update of an instance is notified (below). The ETSI face sets
    # False: MEC 011 notifies changes of state.
    mepserver: bool = True

    # -- services ------------------------------------------------------------------------

    def register(
        self,
        app_id: str,
        body: Any,
        validate: Callable[[Any], dict[str, Any]] = rules.service_info,
    ) -> ServiceRecord:
        """Validate (mepserver's rules by default) and store a registration; notify."""
        body = validate(body)
        if sum(1 for s in self.services.values() if s.app_instance_id == app_id) >= SERVICES_MAX:
            raise Rejected(12, "Bad Request", "registered services have achieve the limit")
        requested = body.get("livenessInterval") or 0
        interval = (
            requested
            if not requested or self.liveness_interval is None
            else self.liveness_interval
        )
        service_id = hashlib.sha256(body["serName"].encode()).hexdigest()[:16]
        record = ServiceRecord(
            service_id + secrets.token_hex(8),
            app_id,
            body,
            interval,
            body["state"],
            self.clock.seconds(),
        )
        if self.mepserver:
            record.kept(body, first=True)
        self.services[record.ser_instance_id] = record
        self.known_names.add(body["serName"])
        self._changed(record, "ADDED")
        if self.mepserver:
            # mepserver registers the instance (CREATE), then writes its properties
            # (UpdateInstanceProperties: an UPDATE), and notifies each
            self._changed(record, "ATTRIBUTES_CHANGED")
        return record

    def _own(self, app_id: str, ser_instance_id: str, missing: str) -> ServiceRecord:
        if not SERVICE_ID.search(ser_instance_id):
            raise Rejected(1, "Bad Request", "Invalid service ID")
        record = self.services.get(ser_instance_id)
        if record is None or record.app_instance_id != app_id:
            raise Rejected(3, "Can not found resource", missing)
        return record

    def get(self, app_id: str, ser_instance_id: str) -> ServiceRecord:
        """The app's service C{ser_instance_id}, or mepserver's 404."""
        return self._own(app_id, ser_instance_id, "service instance id not found")

    def update(
        self,
        app_id: str,
        ser_instance_id: str,
        body: Any,
        validate: Callable[[Any], dict[str, Any]] = rules.service_info,
    ) -> ServiceRecord:
        """PUT .../services/{id}: replace the ServiceInfo (and so its state), same id."""
        record = self._own(app_id, ser_instance_id, "service instance id not found")
        body = validate(body)
        if self.mepserver:
            record.kept(body, first=False)
        record.body = body
        record.state = body["state"]
        record.last_beat = self.clock.seconds()
        self._changed(record, "ATTRIBUTES_CHANGED")
        return record

    def heartbeat(self, app_id: str, ser_instance_id: str, raw: bytes) -> None:
        """A liveness heartbeat: revives a SUSPENDED service; 404/409 as mepserver."""
        if not SERVICE_ID.search(ser_instance_id):
            raise Rejected(1, "Bad Request", "Invalid service ID")
        if not raw.strip():
            raise Rejected(14, "Bad Request", "request body is empty")
        try:
            update = json.loads(raw)
        except ValueError:
            raise rules.type_error("body") from None
        if not isinstance(update, dict) or update.get("state") != "ACTIVE":
            raise rules.invalid("state")
        record = self._own(app_id, ser_instance_id, "service instance id not found")
        if not record.interval:
            raise Rejected(17, "Can not found resource", "Invalid heartbeat update request")
        if record.state == "INACTIVE":
            raise Rejected(18, "Conflict", "The service is in INACTIVE state")
        record.last_beat = self.clock.seconds()
        record.heartbeats += 1
        if record.state != "ACTIVE" or self.mepserver:
            # mepserver writes the beat's time into the instance's properties: an UPDATE,
            # notified as any (mp1/plans/heartbeat_patched.go, mp1/event)
            record.state = "ACTIVE"
            self._changed(record, "ATTRIBUTES_CHANGED")

    def deregister(self, app_id: str, ser_instance_id: str) -> None:
        """Remove a registration; notify subscribers."""
        record = self._own(app_id, ser_instance_id, "find service failed")
        del self.services[ser_instance_id]
        self._changed(record, "REMOVED")

    def set_state(
        self, ser_instance_id: str, state: str, change: str = "ATTRIBUTES_CHANGED"
    ) -> ServiceRecord:
        """
        Set a service's state and notify C{change}: the control API forces one (e.g.
        INACTIVE, to make heartbeats answer 409) as mepserver's attribute change; the ETSI
        face's update notifies STATE_CHANGED.
        """
        record = self.services[ser_instance_id]
        record.state = state
        self._changed(record, change)
        return record

    def check_liveness(self) -> None:
        """mepserver's 1 s sweep: ACTIVE services without a recent heartbeat -> SUSPENDED."""
        now = self.clock.seconds()
        for record in list(self.services.values()):
            if record.state == "ACTIVE" and record.interval:
                deadline = record.last_beat + record.interval + suspension_grace(record.interval)
                if now > deadline:
                    record.state = "SUSPENDED"
                    self._changed(record, "ATTRIBUTES_CHANGED")

    def discover(
        self, query: dict[str, list[str]], app_id: str | None = None
    ) -> list[ServiceRecord]:
        """GET .../services: by ser_name, or the OR of the other filters."""
        candidates = [
            s for s in self.services.values() if app_id is None or s.app_instance_id == app_id
        ]
        names = query.get("ser_name")
        if names:
            name = names[0]
            if name not in self.known_names:
                raise Rejected(
                    400012,
                    "Micro-service does not exist",
                    f"service with name {name[:128]} provider does not exist",
                )
            return [s for s in candidates if s.body["serName"] == name]
        if query.get("instance_id"):
            candidates = [s for s in candidates if s.ser_instance_id in query["instance_id"]]
        filters = {
            k: v[0].lower()
            for k, v in query.items()
            if k in ("ser_category_id", "scope_of_locality", "consumed_local_only", "is_local")
        }
        if not filters:
            return candidates

        def properties(s: ServiceRecord) -> dict[str, str]:
            return {
                "ser_category_id": str((s.body.get("serCategory") or {}).get("id", "")).lower(),
                "scope_of_locality": str(s.body.get("scopeOfLocality", "")).lower(),
                "consumed_local_only": str(s.body.get("consumedLocalOnly")).lower(),
                "is_local": str(s.body.get("isLocal")).lower(),
            }

        return [s for s in candidates if any(properties(s)[k] == v for k, v in filters.items())]

    # -- subscriptions -------------------------------------------------------------------

    def subscribe(self, app_id: str, body: Any, termination: bool = False) -> SubscriptionRecord:
        """Validate and store a subscription."""
        body = rules.subscription(body)
        if (body["subscriptionType"] == "AppTerminationNotificationSubscription") != termination:
            raise rules.invalid("subscriptionType")
        if (
            sum(1 for s in self.subscriptions.values() if s.app_instance_id == app_id)
            >= SUBSCRIPTIONS_MAX
        ):
            raise Rejected(15, "Bad Request", "subscriptions have achieve the limit")
        record = SubscriptionRecord(str(uuid.uuid4()), app_id, body)
        self.subscriptions[record.subscription_id] = record
        return record

    def subscription(
        self, app_id: str, subscription_id: str, termination: bool = False
    ) -> SubscriptionRecord:
        """One of the app's subscriptions, or mepserver's 404."""
        record = self.subscriptions.get(subscription_id)
        if (
            record is None
            or record.app_instance_id != app_id
            or record.is_termination != termination
        ):
            raise Rejected(3, "Can not found resource", "subscription not found")
        return record

    def unsubscribe(self, app_id: str, subscription_id: str, termination: bool = False) -> None:
        """Delete one of the app's subscriptions."""
        record = self.subscription(app_id, subscription_id, termination)
        del self.subscriptions[record.subscription_id]

    def app_subscriptions(
        self, app_id: str, termination: bool = False
    ) -> list[SubscriptionRecord]:
        """The app's subscriptions of one kind."""
        return [
            s
            for s in self.subscriptions.values()
            if s.app_instance_id == app_id and s.is_termination == termination
        ]

    # -- app support ---------------------------------------------------------------------

    def confirm_ready(self, app_id: str, raw: bytes) -> None:
        """Record the app's READY indication."""
        try:
            body = json.loads(raw)
        except ValueError:
            raise rules.type_error("body") from None
        if not isinstance(body, dict) or body.get("indication") != "READY":
            raise rules.type_error("indication")
        self.ready.add(app_id)

    def restart(self) -> None:
        """Forget every registration and subscription, as a MEP that lost its data."""
        self.services.clear()
        self.known_names.clear()
        self.subscriptions.clear()
        self.ready.clear()
        for termination in self.terminations.values():
            termination.cancel()
        self.terminations.clear()

    def restart_keeping(self) -> None:
        """
        Restart keeping the store, as mepserver over its etcd: services, subscriptions,
        names and READY survive; terminations under way are abandoned.
        """
        now = self.clock.seconds()
        for termination in self.terminations.values():
            termination.abandon(now)

    def _changed(self, record: ServiceRecord, change: str) -> None:
        for sub in list(self.subscriptions.values()):
            if sub.is_termination or not sub.matches(record):
                continue
            link, subscription = self.availability_links(record, sub, change)
            reference: dict[str, Any] = {
                "serName": record.body["serName"],
                "serInstanceId": record.ser_instance_id,
                "state": record.state,
                "changeType": change,
            }
            if link is not None:
                reference["link"] = {"href": link}
            self.notify(
                Notification(
                    sub.body["callbackReference"],
                    {
                        "notificationType": "SerAvailabilityNotification",
                        "serviceReferences": [reference],
                        "_links": {"subscription": {"href": subscription}},
                    },
                )
            )
