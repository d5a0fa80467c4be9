"""
The agent against the emulator's EdgeGallery face playing EdgeGallery's mepserver where the
interop run found it departing from the emulator, end to end in memory, the MEP's
notifications delivered to the agent's route: the ATTRIBUTES_CHANGED notice of every
registration and heartbeat, the repair of an adopted service (mepserver's presentation read
back), a termination run as mepserver runs it, and restarts with and without the store.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from twisted.internet.testing import MemoryReactorClock

from mep_agent.config.model import SubscriptionSpec
from mep_agent.util.secret import Secret
from mep_emulator.memory import DEV_APP, InMemoryMep
from mep_emulator.mm5 import KONG_CLEANUP

from .agent_harness import BASE, BEAT, INFO, AgentTestCase, MemoryState, spec

APP = DEV_APP.app_instance_id
NOTIFY = "http://127.0.0.1:9090/mep-agent/v1/notifications"
MGMT = f"{BASE}/mep/mec_service_mgmt/v1"
#: An availability subscription to both of the agent's services: every notice is heard.
OURS = SubscriptionSpec(
    0,
    {
        "subscriptionType": "SerAvailabilityNotificationSubscription",
        "callbackReference": "http://app.local/cb",
        "filteringCriteria": {"serNames": ["a", "b"]},
    },
)
GATEWAY = "https://mep-api-gw.mep:8443/"


class EdgeGalleryAgentTestCase(AgentTestCase):
    """
    The agent with two services, OURS and a termination subscription, a state directory,
    on the EdgeGallery face as mepserver (its presentation, its termination).
    """

    def setUp(self) -> None:
        self.use_mep(InMemoryMep.create(clock=MemoryReactorClock()))
        self.pod_state = MemoryState()
        self.events = self.capture_events()

    def start_agent(self) -> None:
        """The next life of the agent's container, the MEP's notices reaching it."""
        self.lives = getattr(self, "lives", 0) + 1
        getattr(self, "files", {}).pop(INFO, None)
        self.build(
            (spec("a"), spec("b")),
            (OURS,),
            notify_url=NOTIFY,
            termination=True,
            sync_interval=60,
            state=self.pod_state,
            earlier=self.pod_state.snapshot(),
            notify_secret=Secret(f"secret-of-life-{self.lives}"),
        )
        self.mep.notifier.http = self.ops
        self.start()

    def control(self, path: str, body: Any = None) -> tuple[int, Any]:
        """A call to the emulator's control API."""
        return self.mep_json("POST", f"{BASE}/_emulator{path}", body)

    def changes(self) -> Counter[tuple[str, Any]]:
        """The availability notices delivered so far, by (changeType, answer status)."""
        return Counter(
            (n["body"]["serviceReferences"][0]["changeType"], n["status"])
            for n in self.mep.notifier.delivered
            if n["body"].get("notificationType") == "SerAvailabilityNotification"
        )

    def kinds_since(self, before: int) -> Counter[str]:
        """The agent's requests since the C{before}th, by kind."""
        return Counter(r.kind for r in list(self.emulator.requests)[before:])

    def sids(self) -> dict[str, list[str]]:
        """The MEP's instances by service name."""
        found: dict[str, list[str]] = {}
        for record in self.registry.services.values():
            found.setdefault(record.body["serName"], []).append(record.ser_instance_id)
        return found


class NoticeTests(EdgeGalleryAgentTestCase):
    def five_minutes(self, heard: bool) -> tuple[Counter[str], Counter[tuple[str, Any]], int]:
        """
        A fresh MEP and agent for 5 minutes after the start, the MEP's notices reaching the
        agent or not: its requests by kind, the notices by (change, status), its repairs.
        """
        self.setUp()
        self.start_agent()
        if not heard:
            self.mep.notifier.http = None  # recorded, never POSTed
        before = len(self.emulator.requests)
        self.advance(300, step=1)
        assert self.reconciler is not None
        repairs = sum(self.reconciler.repaired.values())
        kinds, notices = self.kinds_since(before), self.changes()
        self.stop()
        return kinds, notices, repairs

    def test_every_update_notice_costs_nothing(self) -> None:
        """
        mepserver tells every heartbeat as ATTRIBUTES_CHANGED: the agent hears each (204)
        and sends nothing for them, the same requests as when it hears none (heartbeats
        and the periodic syncs' reads), and repairs nothing.
        """
        kinds, notices, repairs = self.five_minutes(heard=True)
        self.assertEqual(notices, {("ATTRIBUTES_CHANGED", 204): 10})  # 5 beats of each
        received = [e for e in self.events if e.get("event") == "notification.received"]
        self.assertEqual(len(received), 10)
        self.assertEqual(set(kinds), {"heartbeat", "sync"})
        self.assertEqual(repairs, 0)
        unheard, notices, _ = self.five_minutes(heard=False)
        self.assertEqual(set(notices), {("ATTRIBUTES_CHANGED", "recorded")})
        self.assertEqual(kinds, unheard)


class AdoptedRepairTests(EdgeGalleryAgentTestCase):
    def test_an_adopted_service_is_repaired_with_the_agents_own_body(self) -> None:
        """
        A restarted container adopts its service (read back: mepserver's gateway URI,
        grantTypes [""]); a third party sets it INACTIVE; the repair PUTs the agent's own
        body, ACTIVE, answered 200: no refusal, no new instance, no new gateway route.
        """
        self.start_agent()
        sid = self.sid("a")
        self.crash()
        self.start_agent()
        self.assertEqual(self.sid("a"), sid)  # adopted, by a read of it
        adopted = self.registration("a").info
        assert adopted is not None
        self.assertTrue(adopted["transportInfo"]["endpoint"]["uris"][0].startswith(GATEWAY))
        routes = dict(self.registry.services[sid].routes)
        registrations = len(self.requests("register"))
        self.assertEqual(self.control(f"/services/{sid}/state", {"state": "INACTIVE"})[0], 200)
        self.advance(BEAT + 5)
        (put,) = [r for r in self.emulator.requests if r.kind == "update"]
        self.assertEqual(put.status, 200)
        sent = json.loads(put.body)
        self.assertEqual(sent, dict(spec("a").body, state="ACTIVE"))
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")
        self.assertEqual(self.registry.services[sid].routes, routes)
        self.assertEqual(len(self.requests("register")), registrations)
        self.assertNotIn(400, [r.status for r in self.emulator.requests])


class TerminationTests(EdgeGalleryAgentTestCase):
    def test_the_platform_deletes_the_agent_confirms(self) -> None:
        """
        MECM's termination: the agent deletes nothing itself and confirms; mepserver's
        request deletes both services and the AK/SK (no "instance not found"), its worker
        the subscriptions once confirmed; the stop afterwards sends nothing.
        """
        self.start_agent()
        code, answer = self.control(f"/terminate/{APP}", {})
        self.assertEqual((code, answer["notified"]), (200, 1))
        self.settle()
        self.assertEqual(self.requests("confirm_termination"), [204])
        self.assertEqual(self.requests("deregister") + self.requests("unsubscribe"), [])
        self.assertEqual(self.registry.subscriptions, {})  # the worker's, at the confirmation
        self.advance(3 * KONG_CLEANUP, step=KONG_CLEANUP / 2)
        (termination,) = self.registry.terminations.values()
        self.assertEqual(termination.result, "success")
        self.assertEqual((self.registry.services, self.emulator.retired.keys()), ({}, {APP}))
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 503)
        # The AK/SK went with the app: a terminated agent asks mepauth for nothing more
        # (its token's refresh would be refused every 160 s for good); the token it holds
        # is still served while it lasts.
        after_confirmation = len(self.emulator.requests)
        self.advance(3700, step=50)
        self.assertEqual(self.kinds_since(after_confirmation), Counter())
        self.assertEqual(self.get_json(self.api, "/mep-agent/v1/token")[0], 503)
        before = len(self.emulator.requests)
        started = self.clock.seconds()
        self.stop()
        self.assertLess(self.clock.seconds() - started, 1.0)
        self.assertEqual(self.kinds_since(before), Counter())
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))


class RestartTests(EdgeGalleryAgentTestCase):
    def test_a_restart_keeping_the_store_changes_nothing(self) -> None:
        """
        mepserver restarted with its store: the agent's heartbeats keep being answered,
        it registers and subscribes nothing again; one instance per service throughout.
        """
        self.start_agent()
        held = self.sids()
        self.advance(30)
        self.assertEqual(self.control("/restart", {"keep": True})[0], 204)
        before = len(self.emulator.requests)
        self.advance(300, step=1)
        later = self.kinds_since(before)
        self.assertEqual(set(later) - {"heartbeat", "sync", "token"}, set())
        self.assertEqual(set(self.requests("heartbeat")), {204})
        self.assertEqual(self.sids(), held)
        self.assertEqual(len(self.registry.subscriptions), 2)

    def test_a_restart_without_the_store_is_refilled(self) -> None:
        """
        mepserver restarted with its store wiped: the agent learns it (a heartbeat's 404 or
        a sync) and registers and subscribes anew, one instance per service, no more.
        """
        self.start_agent()
        held = self.sids()
        self.advance(30)
        self.assertEqual(self.control("/restart")[0], 204)
        self.advance(BEAT + 5, step=1)
        now = self.sids()
        self.assertEqual(sorted(now), ["a", "b"])
        self.assertEqual([len(sids) for sids in now.values()], [1, 1])
        self.assertNotEqual(now, held)
        self.assertEqual(len(self.registry.subscriptions), 2)
        self.assertEqual(len(self.requests("register")), 4)
        self.advance(300, step=5)
        self.assertEqual(len(self.requests("register")), 4)
