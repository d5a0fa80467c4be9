"""
The guard against a termination nobody announced to the agent (core/guard.py), on the
EdgeGallery face as mepserver runs a termination: an earlier termination subscription of
the app is the one told, the agent sees its services vanish and checks its AK/SK (one token
request) before it makes anything anew; a store-wiped restart is still refilled, a token
check that fails for another reason terminates nothing, and a restarted container remembers.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mep_agent.core.guard import settle_delay

from .agent_harness import BEAT
from .test_edgegallery import APP, NOTIFY, EdgeGalleryAgentTestCase

#: The callback of a pod killed for good: mepserver tells it and nobody answers 2xx.
DEAD = "http://127.0.0.1:9/mep-agent/v1/notifications/killed-pod"
#: The longest settle delay for the agent's two services (guard.settle_delay; a test of
#: its own holds the two equal).
SETTLED = 3.3


class SettleTests(SynchronousTestCase):
    def test_the_settle_delay(self) -> None:
        """2 s, 0.15 s per service and up to 1 s of jitter: for two services, 2.3 to 3.3 s."""
        self.assertEqual(settle_delay(2, lambda: 0.0), 2.3)
        self.assertAlmostEqual(settle_delay(2, lambda: 1.0), SETTLED)


class UnannouncedTestCase(EdgeGalleryAgentTestCase):
    def earlier_subscription(self) -> str:
        """A termination subscription of the app made before the agent's: the one told."""
        body = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": DEAD,
            "appInstanceId": APP,
        }
        return self.registry.subscribe(APP, body, termination=True).subscription_id

    def agents_subscriptions(self) -> list[str]:
        """The subscriptions at the MEP whose callback is this agent's route."""
        return [
            s.subscription_id
            for s in self.registry.subscriptions.values()
            if str(s.body.get("callbackReference", "")).startswith(NOTIFY)
            or s.body.get("callbackReference") == "http://app.local/cb"
        ]

    def terminated_unannounced(self) -> None:
        """The agent runs; MECM terminates the app; the notice goes to the dead pod."""
        earlier = self.earlier_subscription()
        self.start_agent()
        self.assertEqual(len(self.agents_subscriptions()), 2)
        self.advance(30)
        self.before = len(self.emulator.requests)
        code, answer = self.control(f"/terminate/{APP}", {})
        self.assertEqual((code, answer["notified"], answer["subscriber"]), (200, 1, earlier))
        self.advance(BEAT + 5 + SETTLED, step=0.1)


class UnannouncedTerminationTests(UnannouncedTestCase):
    def test_the_agent_finds_out_and_registers_nothing_again(self) -> None:
        """
        Not told, the agent sees its services gone, checks its AK/SK once (401), and leaves:
        no registration anew, no confirmation, terminated (unannounced) in its termination
        view, status, readiness and metric, recorded; its subscriptions deleted, so a stop
        leaves nothing it made.
        """
        self.terminated_unannounced()
        # Past two of the retries a refused token request gets (token.REJECTED_RETRY): a
        # terminated agent asks mepauth for nothing more.
        self.advance(400, step=2)
        kinds = self.kinds_since(self.before)
        self.assertEqual(kinds["register"], 0)
        self.assertEqual(kinds["subscribe"], 0)
        self.assertEqual(kinds["confirm_ready"], 0)
        self.assertEqual(self.requests("confirm_termination"), [])
        self.assertEqual(
            [r.status for r in list(self.emulator.requests)[self.before :] if r.kind == "token"],
            [401],
        )
        self.assertEqual(self.registry.services, {})
        self.assertEqual(self.agents_subscriptions(), [])  # deleted by the agent itself
        self.assertEqual(kinds["unsubscribe"], 2)
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertEqual(
            (view["terminating"], view["phase"], view["announced"]), (True, "unannounced", False)
        )
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 503)
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(
            b'mep_agent_terminating{operation_action="TERMINATING",phase="unannounced"} 1.0', raw
        )
        self.assertIn(b"mep_agent_termination_deadline_seconds 0.0", raw)
        warned = [e for e in self.events if e.get("event") == "termination.unannounced"]
        self.assertEqual(len(warned), 1)
        # The refusal the check expects is no user's mistake: a warning that says so, not
        # the error that tells the operator to check AK, SK and APPINSTID.
        refused = [e for e in self.events if str(e.get("event", "")).startswith("token.")]
        self.assertEqual(
            [(e["event"], e["log_level"].name) for e in refused if e["event"] != "token.obtained"],
            [("token.check_refused", "warn"), ("token.retired", "info")],
        )
        snapshot = self.pod_state.snapshot()
        assert snapshot is not None
        self.assertEqual(snapshot.terminated, "UNANNOUNCED")
        self.stop()
        self.assertEqual(self.registry.services, {})
        self.assertEqual(self.agents_subscriptions(), [])
        self.assertEqual(self.kinds_since(self.before)["register"], 0)

    def test_a_restarted_container_remembers(self) -> None:
        """
        The state directory records the unannounced termination: the next life of the
        container registers and subscribes nothing and says it was terminated.
        """
        self.terminated_unannounced()
        self.stop()
        before = len(self.emulator.requests)
        self.start_agent()
        self.advance(300, step=5)
        kinds = self.kinds_since(before)
        self.assertEqual(
            (kinds["register"], kinds["subscribe"], kinds["confirm_ready"]), (0, 0, 0)
        )
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertEqual(
            (view["terminating"], view["earlierLife"], view["announced"]), (True, True, False)
        )
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 503)
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b'phase="earlier-life-unannounced"', raw)


class LostStoreTests(UnannouncedTestCase):
    def restarted_without_store(self) -> int:
        """The agent runs; mepserver restarts with its store wiped; the requests before."""
        self.start_agent()
        self.advance(30)
        before = len(self.emulator.requests)
        self.assertEqual(self.control("/restart")[0], 204)
        return before

    def test_a_wiped_store_is_refilled_after_one_check(self) -> None:
        """
        The MEP lost every service, the AK/SK are still there: one token request, then
        both services are registered anew, once each, and nothing is terminated.
        """
        before = self.restarted_without_store()
        self.advance(BEAT + 5 + SETTLED, step=0.5)
        kinds = self.kinds_since(before)
        self.assertEqual(kinds["token"], 1)
        self.assertEqual(kinds["register"], 2)
        self.assertEqual(sorted(self.sids()), ["a", "b"])
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertFalse(view["terminating"])
        self.advance(300, step=5)
        self.assertEqual(self.kinds_since(before)["register"], 2)

    def test_a_failing_check_terminates_nothing(self) -> None:
        """
        The check's token request answered 503: no verdict on the AK/SK; it is asked again
        after the back-off, and the services are registered anew once it gives a token.
        """
        before = self.restarted_without_store()
        self.fault(kind="token", status=503)
        self.advance(BEAT + 5 + SETTLED + 60, step=0.5)
        tokens = [r.status for r in list(self.emulator.requests)[before:] if r.kind == "token"]
        self.assertEqual(tokens[0], 503)
        self.assertEqual(tokens[-1], 201 if 201 in tokens else 200)
        self.assertEqual(len(tokens), 2)
        self.assertEqual(self.kinds_since(before)["register"], 2)
        _, view, _ = self.get_json(self.api, "/mep-agent/v1/termination")
        self.assertFalse(view["terminating"])
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 200)
