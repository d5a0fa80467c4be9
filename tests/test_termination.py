"""
App termination: the platform's AppTerminationNotification, in both dialects,
against the in-memory emulator on a Clock: subscribed at start (orphans of earlier runs
deleted), not ready at once, services deregistered (on EdgeGallery the platform deletes
them itself), the application told, confirmed on the notice's link before
maxGracefulTimeout, nothing registered again afterwards.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.logger import LogEvent

from mep_agent.core.holdings import Wanted
from mep_agent.core.termination import TerminationPhase
from mep_emulator.memory import DEV_APP
from mep_emulator.registry import SubscriptionRecord

from .agent_harness import GUARD, NOTIFICATIONS, ApiTestCase, spec
from .test_etsi import ROOT, EtsiTestCase, etsi_spec

APP = DEV_APP.app_instance_id
NOTIFY = "http://127.0.0.1:9090/mep-agent/v1/notifications"
CALLBACK = f"http://127.0.0.1:9090{NOTIFICATIONS}"  # what the agent subscribes with
OLD_CALLBACK = "http://127.0.0.1:9090/mep-agent/v1/notifications/secret-of-a-dead-process"


class TerminationHarness(ApiTestCase):
    """What both dialects' tests share: start terminating-aware, and play the platform."""

    def setUp(self) -> None:
        super().setUp()
        self.events: list[LogEvent] = self.capture_events()

    def terminate(self, **options: Any) -> dict[str, Any]:
        """The platform starts a termination; the notice it sends, as delivered to us."""
        d = self.mep.http.post(
            f"https://127.0.0.1:8443/_emulator/terminate/{APP}", data=json.dumps(options).encode()
        )
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        deliveries = [
            n
            for n in self.mep.notifier.delivered
            if n["body"].get("notificationType") == "AppTerminationNotification"
        ]
        self.assertEqual(len(deliveries), 1)
        self.assertEqual(deliveries[0]["callback"], CALLBACK)
        body: dict[str, Any] = deliveries[0]["body"]
        return body

    def deliver(self, notice: dict[str, Any]) -> tuple[int, Any]:
        """POST a notice to the agent's notification route, as the platform does."""
        response, raw = self.request(self.ops, "POST", NOTIFICATIONS, json=notice)
        return response.code, json.loads(raw) if raw else None

    def termination(self) -> dict[str, Any]:
        """The emulator's record of the termination."""
        (record,) = self.emulator.registry.terminations.values()
        view: dict[str, Any] = record.view()
        return view

    def events_named(self, name: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == name]


class EdgeGalleryTerminationTests(TerminationHarness):
    def start_agent(self, services: int = 2, **options: Any) -> None:
        self.build(
            tuple(spec(f"svc{i}") for i in range(services)),
            notify_url=NOTIFY,
            termination=True,
            **options,
        )
        self.start()

    def test_subscribed_at_start(self) -> None:
        """The agent keeps an AppTerminationNotificationSubscription to its own route."""
        self.start_agent()
        (sub,) = self.registry.app_subscriptions(APP, termination=True)
        self.assertEqual(sub.body["callbackReference"], CALLBACK)
        self.assertEqual(sub.body["appInstanceId"], APP)
        _, raw = self.request(self.ops, "GET", "/mep-agent/v1/status")
        kinds = [s["kind"] for s in json.loads(raw)["subscriptions"]]
        self.assertEqual(kinds, ["termination"])

    def test_notice_is_acted_on_and_confirmed_in_time(self) -> None:
        """Not ready at once; services gone; confirmed within maxGracefulTimeout."""
        self.start_agent()
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 200)
        registrations = len(self.requests("register"))
        notice = self.terminate()
        self.assertEqual(self.deliver(notice), (204, None))
        code, body, _ = self.get_json(self.ops, "/readyz")
        self.assertEqual((code, body["reason"]), (503, "terminating"))
        self.assertEqual(body["termination"]["operationAction"], "TERMINATING")
        self.settle()
        # mepserver deletes the app's services itself, at once, and fails MECM's termination
        # when the app deleted one first: on EdgeGallery the agent leaves them to it.
        self.assertEqual(self.requests("deregister"), [])
        self.assertEqual(self.requests("confirm_termination"), [204])
        record = self.termination()
        self.assertTrue(record["confirmed"])
        self.assertLessEqual(record["confirmedAt"], record["deadline"])
        self.advance(0.3, step=0.1)  # its request deletes them one by one (mm5.KONG_CLEANUP)
        self.assertEqual(self.registry.services, {})
        self.assertEqual(self.registry.subscriptions, {})
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertEqual((view["terminating"], view["phase"]), (True, "confirmed"))
        _, status, _ = self.get_json(self.ops, "/mep-agent/v1/status")
        self.assertEqual(status["termination"]["phase"], "confirmed")
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(
            b'mep_agent_terminating{operation_action="TERMINATING",phase="confirmed"} 1.0', raw
        )
        # The platform's clean-up is expected: nothing is registered or subscribed again.
        self.advance(600, step=5)
        self.assertEqual(len(self.requests("register")), registrations)
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 503)
        # A reloaded file brings nothing back; a stop finds nothing to delete.
        self.assertEqual(self.holdings.apply(Wanted((spec("svc0"),), ()))["added"], [])
        deletions = len(self.requests("deregister")) + len(self.requests("unsubscribe"))
        self.stop()
        self.assertEqual(
            len(self.requests("deregister")) + len(self.requests("unsubscribe")), deletions
        )

    def test_no_heartbeat_after_the_notice(self) -> None:
        """Heartbeats stop with the notice."""
        self.start_agent()
        self.deliver(self.terminate())
        beats = len(self.requests("heartbeat"))
        self.advance(300, step=5)
        self.assertEqual(len(self.requests("heartbeat")), beats)

    def test_application_told_and_its_acknowledgement_awaited(self) -> None:
        """Forwarded to the application; with wait_app, confirmed only after its ack."""
        forwarded: list[dict[str, Any]] = []
        self.start_agent(wait_app=True, forward=forwarded.append)
        notice = self.terminate(maxGracefulTimeout=30)
        self.deliver(notice)
        self.assertEqual(forwarded, [notice])
        self.advance(5)
        self.assertEqual(self.requests("confirm_termination"), [])
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertEqual(view["phase"], "waiting-for-app")
        response, _ = self.request(self.api, "POST", "/mep-agent/v1/termination/ack")
        self.assertEqual(response.code, 204)
        self.assertEqual(self.requests("confirm_termination"), [204])
        self.assertTrue(self.termination()["confirmed"])

    def test_confirmed_before_the_deadline_without_the_ack(self) -> None:
        """The application never acknowledges: the agent confirms before the deadline."""
        self.start_agent(wait_app=True)
        self.deliver(self.terminate(maxGracefulTimeout=5))
        self.advance(3.5)
        self.assertEqual(self.requests("confirm_termination"), [])
        self.advance(0.5)  # 4 s: the deadline less a second
        self.assertEqual(self.requests("confirm_termination"), [204])
        record = self.termination()
        self.assertEqual((record["confirmed"], record["confirmedAt"] < 5), (True, True))

    def test_ack_without_termination_is_409(self) -> None:
        """An acknowledgement with no termination under way is a JSON 409."""
        self.start_agent()
        response, raw = self.request(self.api, "POST", "/mep-agent/v1/termination/ack")
        self.assertEqual(response.code, 409)
        self.assertIn(b"no termination", raw)

    def test_blocking_read_wakes_on_the_notice(self) -> None:
        """GET /termination?wait= answers as soon as a notice comes (or when the wait ends)."""
        self.start_agent()
        early = self.api.get("http://127.0.0.1/mep-agent/v1/termination?wait=2s")
        self.settle()
        self.advance(2)
        self.assertEqual(
            json.loads(self.successResultOf(self.api.content(self.successResultOf(early)))),
            {"terminating": False},
        )
        waiting = self.api.get("http://127.0.0.1/mep-agent/v1/termination?wait=60s")
        self.settle()
        self.assertNoResult(waiting)
        self.deliver(self.terminate())
        body = json.loads(self.successResultOf(self.api.content(self.successResultOf(waiting))))
        self.assertEqual((body["terminating"], body["operationAction"]), (True, "TERMINATING"))

    def test_unknown_action_is_a_json_400(self) -> None:
        """An unknown operationAction gets a JSON 400 and changes nothing."""
        self.start_agent()
        notice = dict(self.terminate(), operationAction="EXPLODING")
        code, body = self.deliver(notice)
        self.assertEqual(code, 400)
        self.assertIn("operationAction", body["error"])
        self.assertIsNone(self.terminator.notice if self.terminator else None)
        self.assertEqual(self.requests("deregister"), [])

    def test_duplicate_notice_no_second_storm(self) -> None:
        """The same notice twice: one confirmation, nothing deleted twice."""
        self.start_agent()
        notice = self.terminate(maxGracefulTimeout=30)
        self.assertEqual(self.deliver(notice)[0], 204)
        self.assertEqual(self.deliver(notice)[0], 204)
        self.settle()
        self.assertEqual(self.requests("deregister"), [])  # the platform's to delete
        self.assertEqual(self.requests("confirm_termination"), [204])
        self.assertEqual(len(self.events_named("termination.duplicate")), 1)

    def test_missing_or_foreign_link_confirms_on_the_mep(self) -> None:
        """No link, or a link elsewhere: confirmed on the MEP's own path, never elsewhere."""
        for links in ({}, {"confirmTermination": "https://evil.example/steal"}):
            with self.subTest(links=links):
                self.setUp()
                self.start_agent()
                notice = dict(self.terminate(), _links=links)
                self.assertEqual(self.deliver(notice)[0], 204)
                self.settle()
                self.assertEqual(self.requests("confirm_termination"), [204])
                self.assertTrue(self.termination()["confirmed"])

    def test_timeouts_clamped(self) -> None:
        """A negative maxGracefulTimeout counts as 1 s, an absurd one as 600 s."""
        self.start_agent()
        self.deliver(dict(self.terminate(), maxGracefulTimeout=-5))
        assert self.terminator is not None and self.terminator.notice is not None
        self.assertEqual(self.terminator.notice.max_graceful_timeout, 1.0)
        self.settle()
        self.assertEqual(self.requests("confirm_termination"), [204])
        notice = dict(self.terminate(), maxGracefulTimeout=10**12, operationAction="STOPPING")
        self.deliver(notice)
        self.assertEqual(self.terminator.notice.max_graceful_timeout, 600.0)

    def test_refusal_logged_once_and_not_retried(self) -> None:
        """A 409 to confirm_termination is logged once; nothing is retried."""
        self.start_agent()
        self.fault(kind="confirm_termination", status=409, count=5)
        self.deliver(self.terminate())
        self.advance(10)
        self.assertEqual(self.requests("confirm_termination"), [409])
        self.assertEqual(len(self.events_named("termination.not_confirmed")), 1)
        assert self.terminator is not None and self.terminator.notice is not None
        self.assertEqual(self.terminator.notice.phase, TerminationPhase.NOT_CONFIRMED)

    def test_transient_failure_retried_within_the_deadline(self) -> None:
        """
        A 503 pauses the agent's requests: the confirmation is tried again when the pause
        ends, or at the last moment before the deadline, and arrives in time.
        """
        self.start_agent()
        self.fault(kind="confirm_termination", status=503, count=2)
        self.deliver(self.terminate())
        self.advance(4.5)
        self.assertEqual(self.requests("confirm_termination"), [503, 503, 204])
        record = self.termination()
        self.assertTrue(record["confirmed"])
        self.assertLess(record["confirmedAt"], record["deadline"])

    def test_orphans_of_earlier_runs_deleted(self) -> None:
        """Termination subscriptions of a dead process of this agent go; others stay."""
        for callback in (OLD_CALLBACK, "http://other-app.local/notify"):
            body = {
                "subscriptionType": "AppTerminationNotificationSubscription",
                "callbackReference": callback,
                "appInstanceId": APP,
            }
            record = SubscriptionRecord(f"old-{len(callback)}", APP, body)
            self.registry.subscriptions[record.subscription_id] = record
        self.start_agent()  # the Reconciler's first sync finds what a dead run left
        callbacks = sorted(
            s.body["callbackReference"] for s in self.registry.app_subscriptions(APP, True)
        )
        self.assertEqual(callbacks, sorted([CALLBACK, "http://other-app.local/notify"]))
        assert self.reconciler is not None
        self.assertEqual(self.reconciler.repaired["orphan-subscription"], 1)

    def test_lost_termination_subscription_recreated(self) -> None:
        """A termination subscription the MEP lost is created again, like every other."""
        self.start_agent()
        self.registry.subscriptions.clear()
        self.reconciler.soon("a test")
        self.advance(GUARD)  # on EdgeGallery, after the guard's check (core/guard.py)
        self.assertEqual(len(self.registry.app_subscriptions(APP, termination=True)), 1)


class EtsiTerminationTests(TerminationHarness, EtsiTestCase):
    def start_agent(self) -> None:
        self.build((etsi_spec("rnis.v2"),), notify_url=NOTIFY, termination=True)
        self.start()

    def test_notice_with_absolute_links_confirmed(self) -> None:
        """MEC 011 v2.2.1: absolute {"href"} links; confirmed there, services gone."""
        self.start_agent()
        (sub,) = self.registry.app_subscriptions(APP, termination=True)
        self.assertEqual(sub.body["callbackReference"], CALLBACK)
        notice = self.terminate(operationAction="STOPPING", maxGracefulTimeout=8)
        href = notice["_links"]["confirmTermination"]["href"]
        self.assertTrue(href.startswith("https://127.0.0.1:8443/"), href)
        self.assertEqual(self.deliver(notice), (204, None))
        self.settle()
        self.assertEqual(self.requests("deregister"), [204])
        self.assertEqual(self.requests("confirm_termination"), [204])
        record = self.termination()
        self.assertEqual((record["confirmed"], record["confirmedAction"]), (True, "STOPPING"))
        self.assertEqual(self.registry.services, {})
        self.advance(300, step=5)
        self.assertEqual(self.registry.services, {}, "nothing registered again")


class AdvantEdgeLinkTests(TerminationHarness, EtsiTestCase):
    """AdvantEDGE 1.9.2's notice names …/mec_app_support/v1/confirm_termination: a 404."""

    def start_agent(self) -> None:
        self.build((etsi_spec("rnis.v2"),), notify_url=NOTIFY, termination=True)
        self.start()

    def test_a_404_link_falls_back_to_the_standard_resource(self) -> None:
        """The link answers 404: confirmed at once on …/applications/{id}/confirm_termination."""
        d = self.mep.http.post(
            "https://127.0.0.1:8443/_emulator/settings",
            data=json.dumps({"termination_link": "advantedge"}).encode(),
        )
        self.mep.flush()
        self.assertEqual(self.successResultOf(d).code, 200)
        self.start_agent()
        notice = self.terminate(maxGracefulTimeout=10)
        href = notice["_links"]["confirmTermination"]["href"]
        self.assertTrue(href.endswith(f"{ROOT}/mec_app_support/v1/confirm_termination"), href)
        self.assertEqual(self.deliver(notice)[0], 204)
        self.settle()
        confirms = [(r.path, r.status) for r in self.emulator.requests if "confirm_term" in r.path]
        self.assertEqual([status for _, status in confirms], [404, 204])
        self.assertTrue(confirms[1][0].endswith(f"/applications/{APP}/confirm_termination"))
        (failed,) = self.events_named("termination.link_failed")
        self.assertEqual(failed["url"], href)
        record = self.termination()
        self.assertTrue(record["confirmed"])
        self.assertLess(record["confirmedAt"], record["deadline"])


class StopDuringTerminationTests(TerminationHarness):
    def start_agent(self) -> None:
        self.build((spec("a"), spec("b")), notify_url=NOTIFY, termination=True)
        self.start()

    def test_sigterm_at_once_after_the_notice_still_confirms(self) -> None:
        """
        A SIGTERM 5 ms after the notice, the platform's deletions under way: the stop
        confirms and deletes nothing itself, and the platform's request, undisturbed,
        succeeds (services, then the AK/SK) and nothing is left.
        """
        self.start_agent()
        notice = self.terminate(maxGracefulTimeout=30)
        self.request(self.ops, "POST", NOTIFICATIONS, json=notice)
        self.clock.advance(0.005)
        self.stop()
        self.assertEqual(self.requests("confirm_termination"), [204])
        self.assertEqual(self.requests("deregister"), [])
        self.advance(0.5, step=0.1)  # its request: a service, then the other, then the AK/SK
        self.assertEqual(self.termination()["result"], "success")
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))
        self.assertEqual(self.emulator.retired.keys(), {APP})

    def test_sigterm_while_waiting_for_the_application_confirms_at_once(self) -> None:
        """
        --termination-wait-app true, SIGTERM 1 s into the wait: the application will not
        acknowledge any more (the pod is going), so the stop confirms at once.
        """
        self.build((spec("a"),), notify_url=NOTIFY, termination=True, wait_app=True)
        self.start()
        self.deliver(self.terminate(maxGracefulTimeout=30))
        self.advance(1, step=0.1)
        self.assertEqual(self.requests("confirm_termination"), [])  # waiting for the app
        started = self.clock.seconds()
        self.stop()
        self.assertLess(self.clock.seconds() - started, 1.0)
        self.assertEqual(self.requests("confirm_termination"), [204])
        self.assertTrue(self.events_named("termination.stop_confirms"))

    def test_a_terminated_agent_leaves_the_mep_alone(self) -> None:
        """After the termination: no READY, no registration, no subscription, no sync read."""
        self.start_agent()
        self.deliver(self.terminate())
        self.settle()
        before = len(self.emulator.requests)
        self.registry.terminations.clear()  # the platform creates the app instance again
        self.advance(600, step=5)
        kinds = {r.kind for r in list(self.emulator.requests)[before:]}
        self.assertEqual(kinds - {"token"}, set())
        _, status, _ = self.get_json(self.ops, "/mep-agent/v1/status")
        self.assertFalse(status["sync"]["reading"])


class EtsiStopDuringTerminationTests(TerminationHarness, EtsiTestCase):
    """The ETSI face, where the agent deletes its services itself at a termination."""

    def start_agent(self) -> None:
        self.build((etsi_spec("a"), etsi_spec("b")), notify_url=NOTIFY, termination=True)
        self.start()

    def test_sigterm_during_slow_deletions_finishes_the_termination(self) -> None:
        """
        Deletions take a second each, the notice gives 30 s, SIGTERM 0.3 s after it: the
        stop deletes everything and confirms, within --shutdown-timeout.
        """
        self.start_agent()
        self.fault(kind="deregister", delay=1, count=2)
        self.deliver(self.terminate(maxGracefulTimeout=30))
        self.advance(0.3, step=0.1)
        started = self.clock.seconds()
        self.stop()
        self.assertLessEqual(self.clock.seconds() - started, 5.0)
        self.assertEqual(self.requests("deregister"), [204, 204])
        self.assertEqual(self.registry.services, {})
        self.assertEqual(self.requests("confirm_termination"), [204])
        self.assertTrue(self.termination()["confirmed"])

    def test_sigterm_at_once_after_the_notice_still_deletes_and_confirms(self) -> None:
        """A SIGTERM 5 ms after the notice, deletions under way: deleted and confirmed."""
        self.start_agent()
        self.fault(kind="deregister", delay=0.01, count=2)
        notice = self.terminate(maxGracefulTimeout=30)
        self.request(self.ops, "POST", NOTIFICATIONS, json=notice)
        self.clock.advance(0.005)
        self.stop()
        self.assertEqual(self.requests("deregister"), [204, 204])
        self.assertEqual(self.registry.services, {})
        self.assertEqual(self.requests("confirm_termination"), [204])


class TerminationSpecTests(TerminationHarness, EtsiTestCase):
    def test_bodies_match_the_specs(self) -> None:
        """The termination subscription and the confirmation validate against MEC 011."""
        from .test_etsi import SUPPORT_V211, validate

        self.build((etsi_spec("rnis.v2"),), notify_url=NOTIFY, termination=True)
        self.start()
        self.deliver(self.terminate(maxGracefulTimeout=5))
        self.settle()
        (subscription,) = self.sent("subscribe")
        (confirmation,) = self.sent("confirm_termination")
        for spec_file in (SUPPORT_V211, "advantedge_app-support_swagger_v2.2.1.yaml"):
            validate(spec_file, "AppTerminationNotificationSubscription", subscription)
            validate(spec_file, "AppTerminationConfirmation", confirmation)
