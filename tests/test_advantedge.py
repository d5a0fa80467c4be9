"""
The agent against the emulator's ETSI face playing AdvantEDGE 1.9.2 (C{platform:
advantedge}, no liveness), end to end in memory, the MEP's notifications delivered to the
agent's route: the start, a third party's INACTIVE repaired at once thanks to STATE_CHANGED,
a termination (a 404 link, the standard resource, the app instance deleted) and the clean
stops after it and without it.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from mep_agent.config.model import SubscriptionSpec
from mep_emulator.memory import DEV_APP, InMemoryMep

from .agent_harness import BASE
from .test_etsi import ROOT, EtsiTestCase, etsi_spec

APP = DEV_APP.app_instance_id
NOTIFY = "http://127.0.0.1:9090/mep-agent/v1/notifications"
MGMT = f"{BASE}{ROOT}/mec_service_mgmt/v1"
SUPPORT = f"{BASE}{ROOT}/mec_app_support/v1"
NOT_FOUND = {"status": 404, "detail": "App Instance not found"}
#: An availability subscription without a states filter: every change of ours is heard.
EVERY_CHANGE = SubscriptionSpec(
    0,
    {
        "subscriptionType": "SerAvailabilityNotificationSubscription",
        "callbackReference": "http://app.local/cb",
        "filteringCriteria": {"serNames": ["a", "b"]},
    },
)


class AdvantedgeAgentTestCase(EtsiTestCase):
    """The agent with two services, EVERY_CHANGE and termination, on platform advantedge."""

    def setUp(self) -> None:
        self.use_mep(
            InMemoryMep.create(
                clock=MemoryReactorClock(),
                dialect="etsi",
                api_root=ROOT,
                liveness_interval=0,
                platform="advantedge",
            )
        )
        self.events = self.capture_events()

    def start_agent(self) -> None:
        self.build(
            (etsi_spec("a"), etsi_spec("b")),
            subscriptions=(EVERY_CHANGE,),
            notify_url=NOTIFY,
            termination=True,
            sync_interval=60,
        )
        self.mep.notifier.http = self.ops  # the MEP's notifications reach the agent
        self.start()

    def mep_call(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        """A call to the MEP with the app's token, as a third party or the platform's UI."""
        return self.mep_json(method, url, body, token=True)

    def terminate(self, **options: Any) -> dict[str, Any]:
        """The platform terminates the app; the notice, delivered to the agent."""
        d = self.mep.http.post(
            f"{BASE}/_emulator/terminate/{APP}", data=json.dumps(options).encode()
        )
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        (delivery,) = [
            n
            for n in self.mep.notifier.delivered
            if n["body"]["notificationType"] == "AppTerminationNotification"
        ]
        self.settle()
        self.assertEqual(delivery["status"], 204)
        notice: dict[str, Any] = delivery["body"]
        return notice

    def refused(self) -> list[tuple[str, str, int]]:
        """Every request answered 400 or more, (method, kind, status)."""
        return [(r.method, r.kind, r.status) for r in self.emulator.requests if r.status >= 400]


class StartTests(AdvantedgeAgentTestCase):
    def test_start(self) -> None:
        """confirm_ready first, then everything created, nothing refused; ready."""
        self.start_agent()
        kinds = [r.kind for r in self.emulator.requests if r.kind != "token"]
        self.assertEqual(kinds[0], "confirm_ready")
        self.assertEqual(self.requests("confirm_ready"), [204])
        self.assertEqual(self.requests("register"), [201, 201])
        self.assertEqual(self.requests("subscribe"), [201, 201])  # availability, termination
        self.assertEqual(self.refused(), [])
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 200)
        self.assertEqual(len(self.registry.services), 2)
        self.assertEqual(len(self.registry.subscriptions), 2)


class StateChangedTests(AdvantedgeAgentTestCase):
    def test_a_third_partys_inactive_is_repaired_at_once(self) -> None:
        """
        A third party PUTs ours INACTIVE: the STATE_CHANGED notification makes the agent
        sync and PUT it ACTIVE again at once, not at the next periodic sync (60 s); its own
        repair's STATE_CHANGED costs one more sync, and nothing follows.
        """
        self.start_agent()
        sid = self.sid("a")
        url = f"{MGMT}/applications/{APP}/services/{sid}"
        _, view = self.mep_call("GET", url)
        self.assertEqual(self.mep_call("PUT", url, dict(view, state="INACTIVE"))[0], 200)
        self.advance(1, step=0.1)
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")
        self.assertEqual(self.requests("update"), [200, 200])  # the third party's, ours
        changes = [
            n["body"]["serviceReferences"][0]["state"]
            for n in self.mep.notifier.delivered
            if n["body"]["serviceReferences"][0]["changeType"] == "STATE_CHANGED"
        ]
        self.assertEqual(changes, ["INACTIVE", "ACTIVE"])
        self.assertTrue([e for e in self.events if e.get("event") == "notification.received"])
        before = len(self.emulator.requests)
        self.advance(30, step=1)
        later = [r.kind for r in list(self.emulator.requests)[before:]]
        self.assertNotIn("update", later)
        self.assertLessEqual(len(later), 3)  # at most the one more sync's three lists
        self.assertEqual(self.refused(), [])


class TerminationTests(AdvantedgeAgentTestCase):
    def test_termination(self) -> None:
        """
        The notice (10 s, AdvantEDGE's link): services and subscriptions deleted, the link's
        404, the standard resource's 204; then the app instance is gone (404 for its
        calls) and the agent sends nothing more, even once the app exists again.
        """
        self.start_agent()
        notice = self.terminate()
        self.assertEqual(notice["maxGracefulTimeout"], 10)
        self.advance(1, step=0.1)
        confirms = [(r.path, r.status) for r in self.emulator.requests if "confirm_term" in r.path]
        self.assertEqual(
            confirms,
            [
                (f"{ROOT}/mec_app_support/v1/confirm_termination", 404),
                (f"{ROOT}/mec_app_support/v1/applications/{APP}/confirm_termination", 204),
            ],
        )
        (termination,) = self.registry.terminations.values()
        self.assertIsNotNone(termination.confirmed_at)
        self.assertEqual(self.requests("deregister"), [204, 204])
        # the availability subscription, then the termination one: the app is gone, as on
        # the kit (a 404 counts as deleted)
        self.assertEqual(self.requests("unsubscribe"), [204, 404])
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))
        self.assertEqual(self.emulator.deleted_apps, {APP})
        self.assertEqual(
            self.mep_call("GET", f"{MGMT}/applications/{APP}/services"), (404, NOT_FOUND)
        )
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 503)
        before = len(self.emulator.requests)
        self.advance(300, step=5)
        provision = self.mep.http.post(
            f"{BASE}/_emulator/provision", data=json.dumps({"app_instance_id": APP}).encode()
        )
        self.mep.flush()
        self.assertEqual(self.successResultOf(provision).code, 200)  # the app exists again
        self.advance(300, step=5)
        kinds = {r.kind for r in list(self.emulator.requests)[before:]}
        self.assertEqual(kinds - {"token"}, set())
        self.assertNotIn(APP, self.registry.ready)

    def test_clean_stop_after_a_termination(self) -> None:
        """A SIGTERM after the termination: no loop on the app's 404s, and nothing left."""
        self.start_agent()
        self.terminate()
        self.advance(5, step=0.1)
        before = len(self.emulator.requests)
        started = self.clock.seconds()
        self.stop()
        self.assertLess(self.clock.seconds() - started, 6.0)
        during = [(r.kind, r.status) for r in list(self.emulator.requests)[before:]]
        self.assertEqual(during, [])  # everything was deleted during the termination
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))

    def test_an_unannounced_deletion_is_no_storm(self) -> None:
        """
        Without a termination subscription the agent is never told: once the app instance
        is gone every call answers 404, and the agent reads the lists again with the
        back-off (1, 2, 4 ... s, then once a sync interval), no more; its stop tries each
        deletion once.
        """
        self.build((etsi_spec("a"), etsi_spec("b")), notify_url=NOTIFY, sync_interval=60)
        self.mep.notifier.http = self.ops
        self.start()
        self.assertEqual(self.terminate_unheard(), 0)
        self.advance(15, step=0.5)  # the 10 s deadline: the app instance is deleted
        before = len(self.emulator.requests)
        self.advance(300, step=5)
        later = [(r.kind, r.status) for r in list(self.emulator.requests)[before:]]
        self.assertEqual(set(later), {("sync", 404)})
        self.assertLessEqual(len(later), 10)
        before = len(self.emulator.requests)
        self.stop()
        during = sorted(r.kind for r in list(self.emulator.requests)[before:])
        self.assertEqual(during, ["deregister", "deregister"])

    def terminate_unheard(self) -> int:
        """Start a termination nobody subscribed to; how many were told."""
        told: int = self.mep_json("POST", f"{BASE}/_emulator/terminate/{APP}", {})[1]["notified"]
        return told


class StopTests(AdvantedgeAgentTestCase):
    def test_clean_stop_leaves_nothing(self) -> None:
        """A SIGTERM: both services and both subscriptions deleted, nothing refused."""
        self.start_agent()
        self.stop()
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))
        self.assertEqual(self.requests("deregister"), [204, 204])
        self.assertEqual(self.requests("unsubscribe"), [204, 204])
        self.assertEqual(self.refused(), [])

    def test_a_service_gone_unseen_is_gone(self) -> None:
        """
        A service the platform lost without a word: the stop's DELETE gets AdvantEDGE's
        empty 404, which means gone; no retry, the stop ends.
        """
        self.start_agent()
        del self.registry.services[self.sid("a")]
        self.stop()
        self.assertEqual(sorted(self.requests("deregister")), [204, 404])
        self.assertEqual(self.registry.services, {})


class EmptiedStoreTests(AdvantedgeAgentTestCase):
    def test_an_emptied_store_is_refilled(self) -> None:
        """
        The platform's store emptied (READY lost): the next sync meets the 403 in
        AdvantEDGE's shape, confirms READY and makes everything again.
        """
        self.start_agent()
        flushed = self.mep.http.post(f"{BASE}/_emulator/flush")
        self.mep.flush()
        self.assertEqual(self.successResultOf(flushed).code, 204)
        self.advance(60, step=5)
        self.assertIn(("GET", "sync", 403), self.refused())
        self.assertEqual(self.requests("confirm_ready"), [204, 204])
        names = sorted(r.body["serName"] for r in self.registry.services.values())
        self.assertEqual(names, ["a", "b"])
        self.assertEqual(len(self.registry.subscriptions), 2)
