"""
The emulator's ETSI face through its HTTP API where MEC 011 v2.2.1 says what a platform
sends: availability notifications with absolute links, and STATE_CHANGED for a PUT that
changes a service's state (as AdvantEDGE 1.9.2 was seen to send them).
"""

from __future__ import annotations

from typing import Any

from mep_emulator.memory import DEV_APP, InMemoryMep

from .emulator_client import BASE, EmulatorTestCase, Reply, etsi_bearer
from .test_etsi import V221, etsi_service, validate

APP = DEV_APP.app_instance_id
ROOT = "/sbx1/mep"
MGMT = f"{BASE}{ROOT}/mec_service_mgmt/v1"
SUPPORT = f"{BASE}{ROOT}/mec_app_support/v1"


class EtsiEmulatorTestCase(EmulatorTestCase):
    """The ETSI face under ROOT, the app READY, with a bearer token."""

    public_url: str | None = None

    def setUp(self) -> None:
        self.mep = InMemoryMep.create(
            dialect="etsi", api_root=ROOT, liveness_interval=0, public_url=self.public_url
        )
        self.headers = etsi_bearer(self)
        ready = self.call(
            "POST",
            f"{SUPPORT}/applications/{APP}/confirm_ready",
            {"indication": "READY"},
            self.headers,
        )
        self.assertEqual(ready.code, 204, ready.raw)

    def subscribe(self, callback: str, **criteria: Any) -> Reply:
        body: dict[str, Any] = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": callback,
        }
        if criteria:
            body["filteringCriteria"] = criteria
        reply = self.call("POST", f"{MGMT}/applications/{APP}/subscriptions", body, self.headers)
        self.assertEqual(reply.code, 201, reply.raw)
        return reply

    def register_service(self, body: Any) -> Reply:
        reply = self.call("POST", f"{MGMT}/applications/{APP}/services", body, self.headers)
        self.assertEqual(reply.code, 201, reply.raw)
        return reply

    def put_state(self, view: dict[str, Any], state: str) -> Reply:
        url = view["_links"]["self"]["href"]
        return self.call("PUT", url, dict(view, state=state), self.headers)

    def availability(self) -> list[tuple[str, str, str]]:
        """(callback, changeType, state) of every availability notification so far."""
        out = []
        for n in self.mep.notifier.delivered:
            validate(V221, "ServiceAvailabilityNotification", n["body"])
            (reference,) = n["body"]["serviceReferences"]
            out.append((n["callback"], reference["changeType"], reference["state"]))
        return out


class StateChangedTests(EtsiEmulatorTestCase):
    def test_put_of_state_notifies_filtered_on_the_new_state(self) -> None:
        """
        As AdvantEDGE (the interop kit's probe2): a states filter is matched against the
        new state, so [ACTIVE] hears the return to ACTIVE and [INACTIVE] the change to it.
        """
        self.subscribe("http://app/nostates")
        self.subscribe("http://app/active", states=["ACTIVE"])
        self.subscribe("http://app/inactive", states=["INACTIVE"])
        view = self.register_service(etsi_service("probe-a", interval=0)).json
        self.assertEqual(self.put_state(view, "INACTIVE").code, 200)
        self.assertEqual(self.put_state(view, "INACTIVE").code, 200)  # no change: no notice
        self.assertEqual(self.put_state(view, "ACTIVE").code, 200)
        self.call("DELETE", view["_links"]["self"]["href"], headers=self.headers)
        self.assertEqual(
            self.availability(),
            [
                ("http://app/nostates", "ADDED", "ACTIVE"),
                ("http://app/active", "ADDED", "ACTIVE"),
                ("http://app/nostates", "STATE_CHANGED", "INACTIVE"),
                ("http://app/inactive", "STATE_CHANGED", "INACTIVE"),
                ("http://app/nostates", "STATE_CHANGED", "ACTIVE"),
                ("http://app/active", "STATE_CHANGED", "ACTIVE"),
                ("http://app/nostates", "REMOVED", "ACTIVE"),
                ("http://app/active", "REMOVED", "ACTIVE"),
            ],
        )

    def test_a_refused_update_notifies_nothing(self) -> None:
        """A PUT refused (another member changed) changes no state and tells nobody."""
        self.subscribe("http://app/nostates")
        view = self.register_service(etsi_service("probe-a", interval=0)).json
        reply = self.call(
            "PUT",
            view["_links"]["self"]["href"],
            dict(view, state="INACTIVE", version="9"),
            self.headers,
        )
        self.assertEqual(reply.code, 400)
        self.assertEqual([c for _, c, _ in self.availability()], ["ADDED"])

    def test_heartbeats_notify_nothing(self) -> None:
        """
        A heartbeat changes no state: nothing is notified (the EdgeGallery face's notice per
        heartbeat is mepserver's, test_emulator_edgegallery).
        """
        self.mep.emulator.registry.liveness_interval = None  # the interval asked is granted
        self.subscribe("http://app/nostates")
        view = self.register_service(etsi_service("probe-a", interval=10)).json
        liveness = view["_links"]["liveness"]["href"]
        for _ in range(3):
            self.mep.clock.advance(9)
            self.assertEqual(
                self.call("PATCH", liveness, {"state": "ACTIVE"}, self.headers).code, 204
            )
        self.assertEqual([c for _, c, _ in self.availability()], ["ADDED"])


class AbsoluteLinkTests(EtsiEmulatorTestCase):
    def test_links_are_absolute_with_the_api_root(self) -> None:
        """
        serviceReferences[].link and _links.subscription: base URL + API root, REMOVED
        included (MEC 011's LinkType; AdvantEDGE builds them from its MEEP_HOST_URL).
        """
        subscription = self.subscribe("http://app/cb").json["_links"]["self"]["href"]
        view = self.register_service(etsi_service("probe-a", interval=0)).json
        sid = view["serInstanceId"]
        self.put_state(view, "INACTIVE")
        self.call("DELETE", view["_links"]["self"]["href"], headers=self.headers)
        bodies = [n["body"] for n in self.mep.notifier.delivered]
        self.assertEqual(len(bodies), 3)
        for body in bodies:
            (reference,) = body["serviceReferences"]
            self.assertEqual(
                reference["link"], {"href": f"{MGMT}/services/{sid}"}, reference["changeType"]
            )
            self.assertEqual(body["_links"], {"subscription": {"href": subscription}})

    def test_the_service_link_leads_to_the_service(self) -> None:
        """GET on a notification's service link: the ServiceInfo; 404 once it is gone."""
        self.subscribe("http://app/cb")
        view = self.register_service(etsi_service("probe-a", interval=0)).json
        link = self.mep.notifier.delivered[-1]["body"]["serviceReferences"][0]["link"]["href"]
        self.assertEqual(self.call("GET", link, headers=self.headers).json, view)
        self.call("DELETE", view["_links"]["self"]["href"], headers=self.headers)
        self.assertEqual(self.call("GET", link, headers=self.headers).code, 404)

    def test_edgegallery_face_keeps_its_paths(self) -> None:
        """The EdgeGallery face is another code path: its paths, no link on REMOVED."""
        from .emulator_client import MGMT as EG_MGMT
        from .emulator_client import service

        self.mep = InMemoryMep.create()
        headers = self.bearer()
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/cb",
        }
        self.call("POST", f"{EG_MGMT}/applications/{APP}/subscriptions", body, headers)
        sid = self.call("POST", f"{EG_MGMT}/applications/{APP}/services", service(), headers).json[
            "serInstanceId"
        ]
        self.call("DELETE", f"{EG_MGMT}/applications/{APP}/services/{sid}", headers=headers)
        delivered = self.mep.notifier.delivered
        added, changed, removed = (n["body"]["serviceReferences"][0] for n in delivered)
        self.assertEqual(added["link"], {"href": f"/mec_service_mgmt/v1/services/{sid}"})
        self.assertEqual(changed["link"], added["link"])
        self.assertNotIn("link", removed)


class PublicUrlLinkTests(EtsiEmulatorTestCase):
    public_url = "https://mep.example.com:8443"

    def test_links_built_from_the_public_url(self) -> None:
        """With --public-url, notifications link there, as every other link."""
        self.subscribe("http://app/cb")
        sid = self.register_service(etsi_service("probe-a", interval=0)).json["serInstanceId"]
        body = self.mep.notifier.delivered[-1]["body"]
        self.assertEqual(
            body["serviceReferences"][0]["link"]["href"],
            f"{self.public_url}{ROOT}/mec_service_mgmt/v1/services/{sid}",
        )
        self.assertTrue(body["_links"]["subscription"]["href"].startswith(self.public_url))
