"""
Reconciliation with the MEP's truth, on a Clock against the in-memory emulator:
a dead run's leftovers, a platform that lost its state, another client's INACTIVE, a
platform without liveness, siblings left alone, orphan subscriptions.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from mep_emulator.memory import DEV_APP
from mep_emulator.registry import SERVICES_MAX, SubscriptionRecord

from .agent_harness import BEAT, GUARD, INFO, NOTIFICATIONS, ApiTestCase, document, spec
from .emulator_client import service
from .test_etsi import ROOT, EtsiTestCase, etsi_spec

APP = DEV_APP.app_instance_id
CALLBACK = "http://127.0.0.1:9090/mep-agent/v1/notifications"
DEAD_RUN = "http://127.0.0.1:9090/mep-agent/v1/notifications/secret-of-a-dead-run"


class ReconcileHarness(ApiTestCase):
    def leave_behind(self, name: str, state: str) -> str:
        """An instance of C{name} that an earlier run registered and left, in C{state}."""
        record = self.registry.register(APP, service(name, 60))
        self.registry.set_state(record.ser_instance_id, state)
        return record.ser_instance_id

    def instances(self, name: str) -> list[Any]:
        return [s for s in self.registry.services.values() if s.body["serName"] == name]

    def dead_run_subscription(self) -> None:
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": DEAD_RUN,
        }
        record = SubscriptionRecord("dead-run-subscription", APP, body)
        self.registry.subscriptions[record.subscription_id] = record


class EdgeGalleryReconcileTests(ReconcileHarness):
    def start_agent(self, *names: str, **options: Any) -> None:
        self.build(tuple(spec(n) for n in names), notify_url=CALLBACK, **options)
        self.start()

    def test_a_dead_runs_leftovers_go_before_the_first_post(self) -> None:
        """SUSPENDED instances and subscriptions of a dead run: deleted first, then ours."""
        leftovers = {self.leave_behind("a", "SUSPENDED"), self.leave_behind("a", "INACTIVE")}
        self.dead_run_subscription()
        self.start_agent("a")
        self.assertEqual(len(self.instances("a")), 1)
        self.assertNotIn(self.sid("a"), leftovers)
        kinds = [r.kind for r in self.emulator.requests]
        self.assertLess(kinds.index("deregister"), kinds.index("register"))
        self.assertNotIn("dead-run-subscription", self.registry.subscriptions)
        self.assertEqual(self.reconciler.repaired["leftover"] if self.reconciler else 0, 2)

    def test_a_full_cap_of_leftovers_is_no_lock_out(self) -> None:
        """
        25 unclean restarts left 50 instances (the cap): the new run deletes them at its
        pace, then registers, all within a minute (not after five).
        """
        for i in range(SERVICES_MAX):
            self.leave_behind("ab"[i % 2], "SUSPENDED")
        self.start_agent("a", "b")
        self.advance(60, step=1)
        self.assertEqual(self.requests("register"), [201, 201])
        self.assertEqual(len(self.registry.services), 2)
        self.assertEqual(self.requests("deregister"), [204] * SERVICES_MAX)

    def test_a_full_platform_of_dead_active_instances(self) -> None:
        """
        50 instances of runs that died a moment ago (still ACTIVE): the registration is
        refused (the cap), the instances are looked at again once their liveness deadline
        has passed, deleted, and the registration follows the first deletion at once.
        """
        for i in range(SERVICES_MAX):
            self.leave_behind("ab"[i % 2], "ACTIVE")
        self.start_agent("a")
        self.assertEqual(self.requests("register"), [400])  # mepserver's "status 12"
        self.assertTrue(self.keeper("a").cap_full)
        self.advance(63, step=1)
        self.assertEqual(self.requests("deregister"), [])  # not yet past their deadline
        self.advance(3, step=1)
        self.assertEqual(self.requests("register")[-1], 201)
        first_delete = next(
            i for i, r in enumerate(self.emulator.requests) if r.kind == "deregister"
        )
        registered = next(
            i
            for i, r in enumerate(self.emulator.requests)
            if r.kind == "register" and r.status == 201
        )
        self.assertLess(first_delete, registered)
        self.advance(60, step=1)
        self.assertEqual(len(self.instances("a")), 1)  # the 25 dead ones gone, ours kept
        self.assertEqual(len(self.instances("b")), 25)  # not wanted here: not ours to judge

    def test_a_dead_runs_active_instance_goes_after_its_deadline(self) -> None:
        """
        A run killed a moment before the start left an ACTIVE instance: looked at again
        once interval + grace have passed, and deleted then (no sync interval later).
        """
        dead = self.registry.register(APP, service("a", 60)).ser_instance_id
        self.start_agent("a", sync_interval=600)
        self.assertIn(dead, self.registry.services)
        self.advance(65, step=1)
        self.assertNotIn(dead, self.registry.services)
        self.assertEqual(len(self.instances("a")), 1)
        self.assertEqual(self.reconciler.repaired["leftover"], 1)

    def test_a_live_siblings_instance_is_left_alone(self) -> None:
        """An ACTIVE instance of our name that another agent keeps alive is never touched."""
        sibling = self.registry.register(APP, service("a", 60)).ser_instance_id
        self.start_agent("a")
        for _ in range(5):  # the sibling keeps beating it
            self.registry.services[sibling].last_beat = self.clock.seconds()
            self.advance(60, step=5)
        self.assertIn(sibling, self.registry.services)
        self.assertEqual(len(self.instances("a")), 2)
        self.assertEqual(self.requests("deregister"), [])

    def test_a_lost_registration_found_by_the_sync(self) -> None:
        """The MEP forgot one service between beats: registered again at the next sync."""
        self.start_agent("a", "b", sync_interval=10)
        lost = self.sid("b")
        del self.registry.services[lost]
        self.advance(10 + GUARD)  # the sync, then the guard's check (core/guard.py)
        self.assertNotEqual(self.sid("b"), lost)
        self.assertEqual(len(self.instances("b")), 1)
        self.assertEqual(self.reconciler.repaired["lost"] if self.reconciler else 0, 1)

    def test_a_404_syncs_everything_at_once(self) -> None:
        """A MEP restart: the first 404 makes the agent read the MEP and repair all at once."""
        self.start_agent("a", "b", "c")
        restart = self.mep.http.post("https://127.0.0.1:8443/_emulator/restart")
        self.mep.flush()
        self.successResultOf(restart)
        self.advance(BEAT + 1)  # the first beat (staggered: one service) gets 404
        names = sorted(r.body["serName"] for r in self.registry.services.values())
        self.assertEqual(names, ["a", "b", "c"])

    def test_state_changed_notification_about_ours_repairs_at_once(self) -> None:
        """Another client sets ours INACTIVE: the notification makes the agent restore it."""
        self.start_agent("a")
        sid = self.sid("a")
        self.registry.set_state(sid, "INACTIVE")
        note = {
            "notificationType": "SerAvailabilityNotification",
            "serviceReferences": [
                {
                    "serName": "a",
                    "serInstanceId": sid,
                    "state": "INACTIVE",
                    "changeType": "STATE_CHANGED",
                }
            ],
        }
        response, _ = self.request(self.ops, "POST", NOTIFICATIONS, json=note)
        self.assertEqual(response.code, 204)
        self.settle()
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")
        self.assertEqual(self.requests("update"), [200])

    def test_a_404_to_a_deletion_is_checked_by_a_list(self) -> None:
        """
        A service no longer wanted, its DELETE answered 404 by something in front of the
        registry: the record stays, the list that follows shows it, and it is deleted again.
        """
        self.start_agent("a", "b")
        b = self.sid("b")
        self.fault(kind="deregister", status=404, count=1)
        self.files[INFO] = document((spec("a"),))
        self.reloader.check_now()
        self.advance(10)
        self.assertNotIn(b, self.registry.services)
        self.assertEqual(self.requests("deregister"), [404, 204])
        self.assertIsNone(self.owned.made_by_this_pod(b))

    def test_a_404_to_every_deletion_is_no_loop(self) -> None:
        """
        Every DELETE answered 404 while the list still shows the object: one list to check,
        then the deletion is a failure like any other, retried with the back-off.
        """
        self.start_agent("a", "b", sync_interval=60)
        b = self.sid("b")
        self.fault(kind="deregister", status=404, count=10_000)
        self.files[INFO] = document((spec("a"),))
        self.reloader.check_now()
        before = len(self.emulator.requests)
        self.advance(120, step=1)
        kinds = Counter(r.kind for r in list(self.emulator.requests)[before:])
        self.assertLessEqual(kinds["deregister"], 8)  # 1, 2, 4 ... 32 s apart, then 60 s
        self.assertLessEqual(kinds["sync"], 3 * 4)  # the one asked for, and the periodic ones
        self.assertIn(b, self.registry.services)
        self.mep.emulator.faults.clear()
        self.advance(60, step=1)
        self.assertNotIn(b, self.registry.services)

    def test_a_record_whose_deletion_met_a_404_is_forgotten_by_the_next_list(self) -> None:
        """The MEP really lost it: the list after the 404 clears the record; a stop sends none."""
        self.start_agent("a", "b", sync_interval=10)
        b = self.sid("b")
        del self.registry.services[b]
        self.files[INFO] = document((spec("a"),))
        self.reloader.check_now()
        self.advance(10)
        self.assertEqual(self.requests("deregister"), [404])
        self.assertIsNone(self.owned.made_by_this_pod(b))
        self.stop()
        self.assertEqual(self.requests("deregister"), [404, 204])  # "a" only

    def test_a_replacement_waits_for_the_list_after_a_404(self) -> None:
        """
        A refused repair's deletion answered 404 by a gateway (the instance is still there):
        nothing is made before a list looks; it shows the instance, which is taken back and
        repaired. Never two instances.
        """
        self.start_agent("a", sync_interval=0)
        self.registry.set_state(self.sid("a"), "INACTIVE")
        self.fault(kind="update", status=501, count=1)
        self.fault(kind="deregister", status=404, count=1)
        self.advance(BEAT + 30)
        kinds = [r.kind for r in self.emulator.requests]
        after = kinds[kinds.index("deregister") :]
        self.assertEqual(after.count("register"), 0)
        self.assertIn("sync", after)
        (record,) = self.instances("a")
        self.assertEqual(record.state, "ACTIVE")

    def test_a_sibling_that_leaves_is_not_watched_for_ever(self) -> None:
        """A watched ACTIVE instance of another pod that goes away: the syncs go back to rest."""
        sibling = self.leave_behind("a", "ACTIVE")
        self.start_agent("a", sync_interval=60)
        self.advance(30, step=5)
        del self.registry.services[sibling]
        self.advance(120, step=5)
        before = len(self.emulator.requests)
        self.advance(600, step=5)
        kinds = Counter(r.kind for r in list(self.emulator.requests)[before:])
        self.assertLessEqual(kinds["sync"], 3 * 5)  # the full reads, every fifth sync

    def test_a_body_that_drifted_is_updated(self) -> None:
        """The MEP holds another version than the file says: the sync PUTs the wanted one."""
        self.start_agent("a", sync_interval=10)
        sid = self.sid("a")
        # a third party's PUT
        self.registry.update(APP, sid, dict(self.registry.services[sid].body, version="0.9"))
        self.advance(10)
        self.assertEqual(self.registry.services[sid].body["version"], "1.0")
        self.assertEqual(self.requests("update"), [200])
        self.assertEqual(self.reconciler.repaired["drifted"] if self.reconciler else 0, 1)
        self.advance(30)  # converged: nothing more to do
        self.assertEqual(self.requests("update"), [200])

    def test_health_shows_what_the_last_sync_saw(self) -> None:
        """Status: the MEP's state per service and when seen; the sync's age; repairs."""
        self.leave_behind("a", "SUSPENDED")
        self.start_agent("a", sync_interval=10)
        self.advance(10)
        _, status, _ = self.get_json(self.ops, "/mep-agent/v1/status")
        (svc,) = status["services"]
        self.assertEqual(svc["mep"]["state"], "ACTIVE")
        self.assertIsNotNone(svc["mep"]["lastSeen"])
        self.assertEqual(status["sync"]["divergencesRepaired"], {"leftover": 1})
        self.assertLessEqual(status["sync"]["secondsSinceGoodSync"], 10)
        code, health, _ = self.get_json(self.ops, "/healthz/mep")
        self.assertTrue(health["checks"]["sync"]["ok"])
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b'mep_agent_divergences_repaired_total{kind="leftover"} 1.0', raw)
        self.assertIn(b"mep_agent_sync_age_seconds", raw)
        self.assertIn(b'mep_agent_service_mep_state{ser_name="a",state="ACTIVE"} 1.0', raw)
        self.assertIn(b'mep_agent_service_mep_seen_timestamp_seconds{ser_name="a"}', raw)

    def test_steady_state_costs_little(self) -> None:
        """
        Nothing to repair, two services beating: the heartbeats prove them, so a sync reads
        the lists only every fifth time; at most 3.5 requests a minute in all.
        """
        self.start_agent("a", "b", sync_interval=60)
        self.advance(120, step=5)
        before = len(self.emulator.requests)
        self.advance(1200, step=10)
        kinds = [r.kind for r in list(self.emulator.requests)[before:]]
        self.assertLessEqual(len(kinds) / 20, 3.5)
        self.assertEqual(set(kinds) - {"sync", "heartbeat", "token"}, set())
        self.assertGreaterEqual(kinds.count("sync"), 3 * 4)  # every list, every 5th sync

    def test_a_kept_subscription_does_not_cost_a_read_of_the_services(self) -> None:
        """
        With the termination subscription kept too (production's default with a notify
        URL), the heartbeats still prove the services: the same few reads.
        """
        self.start_agent("a", "b", sync_interval=60, termination=True)
        self.advance(120, step=5)
        before = len(self.emulator.requests)
        self.advance(1200, step=10)
        kinds = [r.kind for r in list(self.emulator.requests)[before:]]
        self.assertLessEqual(len(kinds) / 20, 3.0)
        syncs = 1200 / 48  # the harness's jitter takes the whole fifth off: every 48 s
        self.assertLess(kinds.count("sync"), syncs)  # fewer reads than syncs: most read none


class IdenticalSubscriptionTests(ReconcileHarness):
    """Subscriptions whose callback is the file's (no --notify-url): identical is the same."""

    BODY = {
        "subscriptionType": "SerAvailabilityNotificationSubscription",
        "callbackReference": "http://app.local/cb",
        "filteringCriteria": {"serNames": ["a"]},
    }

    def copy(self, subscription_id: str) -> None:
        record = SubscriptionRecord(subscription_id, APP, dict(self.BODY))
        self.registry.subscriptions[subscription_id] = record

    def start_agent(self) -> None:
        from mep_agent.config.model import SubscriptionSpec

        self.build((spec("a"),), subscriptions=(SubscriptionSpec(0, dict(self.BODY)),))
        self.start()

    def test_an_identical_one_is_adopted_not_duplicated(self) -> None:
        """A dead run's copy of the wanted subscription: taken over, nothing POSTed."""
        self.copy("5-left-by-a-dead-run")
        self.start_agent()
        self.assertEqual(list(self.registry.subscriptions), ["5-left-by-a-dead-run"])
        self.assertEqual(
            [r for r in self.emulator.requests if r.kind == "subscribe" and r.method == "POST"], []
        )
        self.assertEqual(self.reconciler.repaired["adopted"], 1)

    def test_extra_identical_copies_are_deleted(self) -> None:
        """Three identical copies: the one with the least link kept, the others deleted."""
        for name in ("7-copy", "3-copy", "9-copy"):
            self.copy(name)
        self.start_agent()
        self.advance(5)
        self.assertEqual(list(self.registry.subscriptions), ["3-copy"])
        held = self.holdings.subscriptions[0].held
        self.assertTrue(str(getattr(held, "url", "")).endswith("/3-copy"))

    def test_a_lesser_copy_made_elsewhere_is_taken_over(self) -> None:
        """
        Another pod made the same subscription with a lesser link: this agent keeps that one
        and deletes its own, so that two pods wanting the same one converge on one.
        """
        self.start_agent()
        (own,) = list(self.registry.subscriptions)
        self.copy("0-made-by-a-sibling")
        self.reconciler.soon("a test")
        self.advance(5)
        self.assertEqual(list(self.registry.subscriptions), ["0-made-by-a-sibling"])
        self.assertNotIn(own, self.registry.subscriptions)


class NoLivenessPlatformTests(ReconcileHarness, EtsiTestCase):
    """A MEC 011 platform without liveness (AdvantEDGE 1.9.2): the sync is the only signal."""

    liveness = 0

    def start_agent(self) -> None:
        self.build((etsi_spec("a"), etsi_spec("b")), notify_url=CALLBACK, sync_interval=60)
        self.start()

    def test_an_empty_store_is_refilled_within_one_interval(self) -> None:
        """Flushed (services, subscriptions, READY): READY again and all back, no beat needed."""
        self.start_agent()
        self.assertEqual(self.requests("heartbeat"), [])
        flushed = self.mep.http.post("https://127.0.0.1:8443/_emulator/flush")
        self.mep.flush()
        self.assertEqual(self.successResultOf(flushed).code, 204)
        self.advance(60, step=5)
        names = sorted(r.body["serName"] for r in self.registry.services.values())
        self.assertEqual(names, ["a", "b"])
        self.assertIn(APP, self.registry.ready)

    def test_inactive_set_by_another_client_is_restored(self) -> None:
        """No liveness, no notification subscribed: the next sync restores ACTIVE."""
        self.start_agent()
        sid = self.sid("a")
        self.registry.set_state(sid, "INACTIVE")
        self.advance(60, step=5)
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")

    def test_list_answers_follow_the_spec(self) -> None:
        """The ETSI face lists the app's services as a JSON array (what the sync reads)."""
        self.start_agent()
        url = f"https://127.0.0.1:8443{ROOT}/mec_service_mgmt/v1/applications/{APP}/services"
        body = self.mep_json("GET", url, token=True)[1]
        self.assertEqual(sorted(s["serName"] for s in body), ["a", "b"])
