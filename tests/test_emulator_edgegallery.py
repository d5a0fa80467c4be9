"""
The EdgeGallery face where the interop run found EdgeGallery's mepserver (EdgeGallery/mep
971f2d0) departing from what the emulator did (the report's differences D1-D9), through the
HTTP API; each test names its difference.
"""

from __future__ import annotations

from typing import Any

from mep_emulator.memory import DEV_APP

from .emulator_client import BASE, MGMT, EmulatorTestCase, Reply, service

APP = DEV_APP.app_instance_id
CONTROL = f"{BASE}/_emulator"
SERVICES = f"{MGMT}/applications/{APP}/services"


class EdgeGalleryTestCase(EmulatorTestCase):
    """The EdgeGallery face with the app's token at hand."""

    def setUp(self) -> None:
        super().setUp()
        self.headers = self.bearer()

    def control(self, method: str, path: str, body: Any = None) -> Reply:
        return self.call(method, f"{CONTROL}{path}", body)

    def made(self, body: dict[str, Any]) -> str:
        """Register C{body}; its serInstanceId."""
        reply = self.register(body, headers=self.headers)
        self.assertEqual(reply.code, 201, reply.raw)
        sid: str = reply.json["serInstanceId"]
        return sid

    def beat(self, sid: str) -> Reply:
        return self.call("PUT", f"{SERVICES}/{sid}/liveness", {"state": "ACTIVE"}, self.headers)


class ProblemTests(EdgeGalleryTestCase):
    def test_heartbeat_on_an_inactive_service(self) -> None:
        """D9: mepserver's 409 to a heartbeat on an INACTIVE service, word for word."""
        sid = self.made(service())
        self.assertEqual(
            self.control("POST", f"/services/{sid}/state", {"state": "INACTIVE"}).code, 200
        )
        reply = self.beat(sid)
        self.assertEqual(reply.code, 409)
        self.assertEqual(
            reply.json,
            {
                "title": "Service is in INACTIVE state",
                "status": 18,
                "detail": "The service is in INACTIVE state",
            },
        )

    def test_a_broken_rule(self) -> None:
        """
        Any rule broken: mepserver's one detail, whatever the field, and the title of status
        14 (its titles follow the status).
        """
        for body in (service(serName="a b"), service(state="SUSPENDED")):
            reply = self.register(body, headers=self.headers)
            self.assertEqual(
                (reply.code, reply.json),
                (
                    400,
                    {
                        "title": "Request parameter error",
                        "status": 14,
                        "detail": "request param validation failed",
                    },
                ),
            )

    def test_a_type_error(self) -> None:
        """A member of the wrong type: status 4, "unmarshal request body error"."""
        reply = self.register(service(livenessInterval="60"), headers=self.headers)
        self.assertEqual(
            reply.json,
            {"title": "Bad Request", "status": 4, "detail": "unmarshal request body error"},
        )

    def test_the_service_cap(self) -> None:
        """The 51st service: status 12 and its title."""
        for i in range(50):
            self.made(service(f"s{i}"))
        reply = self.register(service("s50"), headers=self.headers)
        self.assertEqual(reply.code, 400)
        self.assertEqual(reply.json["title"], "Service register failed")
        self.assertEqual(reply.json["detail"], "registered services have achieve the limit")


class EveryUpdateTests(EdgeGalleryTestCase):
    """D1: mepserver notifies every UPDATE of an instance as ATTRIBUTES_CHANGED."""

    def setUp(self) -> None:
        super().setUp()
        self.subscribe({"serNames": ["svc1"]}, "http://127.0.0.1:8080/cb")
        self.subscribe({"serNames": ["other"]}, "http://127.0.0.1:8080/other")

    def subscribe(self, criteria: dict[str, Any], callback: str) -> None:
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": callback,
            "filteringCriteria": criteria,
        }
        url = f"{MGMT}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, body, self.headers).code, 201)

    def changes(self) -> list[tuple[str, str, str]]:
        """Every notification so far: (callback, changeType, state)."""
        return [
            (
                n["callback"],
                n["body"]["serviceReferences"][0]["changeType"],
                n["body"]["serviceReferences"][0]["state"],
            )
            for n in self.mep.notifier.delivered
        ]

    def test_a_registration_is_added_then_changed(self) -> None:
        """ADDED, then at once ATTRIBUTES_CHANGED, both linking the service."""
        sid = self.made(service())
        cb = "http://127.0.0.1:8080/cb"
        self.assertEqual(
            self.changes(), [(cb, "ADDED", "ACTIVE"), (cb, "ATTRIBUTES_CHANGED", "ACTIVE")]
        )
        links = [n["body"]["serviceReferences"][0]["link"] for n in self.mep.notifier.delivered]
        self.assertEqual(links, [{"href": f"/mec_service_mgmt/v1/services/{sid}"}] * 2)

    def test_every_heartbeat(self) -> None:
        """Each heartbeat of an ACTIVE service: one more ATTRIBUTES_CHANGED."""
        sid = self.made(service())
        for _ in range(3):
            self.mep.clock.advance(59)
            self.assertEqual(self.beat(sid).code, 204)
        kinds = [change for _, change, _ in self.changes()]
        self.assertEqual(kinds, ["ADDED"] + ["ATTRIBUTES_CHANGED"] * 4)

    def test_a_revival_is_one_notification(self) -> None:
        """A SUSPENDED service's heartbeat: one ATTRIBUTES_CHANGED, ACTIVE."""
        sid = self.made(service())
        self.mep.advance(64)
        self.assertEqual(self.changes()[-1][1:], ("ATTRIBUTES_CHANGED", "SUSPENDED"))
        before = len(self.changes())
        self.assertEqual(self.beat(sid).code, 204)
        self.assertEqual(
            self.changes()[before:], [(self.changes()[0][0], "ATTRIBUTES_CHANGED", "ACTIVE")]
        )

    def test_an_update(self) -> None:
        """A PUT: one ATTRIBUTES_CHANGED."""
        sid = self.made(service())
        before = len(self.changes())
        reply = self.call("PUT", f"{SERVICES}/{sid}", service(version="2.0"), self.headers)
        self.assertEqual(reply.code, 200)
        self.assertEqual([c for _, c, _ in self.changes()[before:]], ["ATTRIBUTES_CHANGED"])

    def test_refused_heartbeats_notify_nothing(self) -> None:
        """A heartbeat refused (409 on INACTIVE) changes nothing, so tells nothing."""
        sid = self.made(service())
        self.control("POST", f"/services/{sid}/state", {"state": "INACTIVE"})
        before = len(self.changes())
        self.assertEqual(self.beat(sid).code, 409)
        self.assertEqual(self.changes()[before:], [])
