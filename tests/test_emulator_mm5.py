"""
The EdgeGallery face's app termination as EdgeGallery's mepserver runs it (mm5.py), through
the HTTP API: MECM's request deletes the app's services one after the other and then its
AK/SK, a worker tells one termination subscription and deletes the subscriptions after the
confirmation or the grace period; what an undelivered notice, a missing subscription and
the app's own DELETE do to it.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.web.resource import Resource
from twisted.web.server import Request

from mep_emulator.memory import DEV_APP
from mep_emulator.mm5 import KONG_CLEANUP

from .emulator_client import BASE, MGMT, SUPPORT, EmulatorTestCase, Reply, service

APP = DEV_APP.app_instance_id
SERVICES = f"{MGMT}/applications/{APP}/services"
TERMINATION_SUBSCRIPTIONS = f"{SUPPORT}/applications/{APP}/subscriptions"
CONFIRM = f"{SUPPORT}/applications/{APP}/confirm_termination"


class Callbacks(Resource):
    """An app's notification route that answers every POST with C{code}."""

    isLeaf = True

    def __init__(self, code: int) -> None:
        super().__init__()
        self.code = code
        self.paths: list[bytes] = []

    def render_POST(self, request: Request) -> bytes:
        self.paths.append(request.path)
        request.setResponseCode(self.code)
        return b""


class Mm5TestCase(EmulatorTestCase):
    """The app with services and subscriptions; MECM's termination at hand."""

    def setUp(self) -> None:
        super().setUp()
        self.headers = self.bearer()  # a termination deletes the AK/SK; the token stays valid

    def made(self, *names: str) -> list[str]:
        """Register a service per name; their serInstanceIds."""
        sids = []
        for name in names:
            reply = self.call("POST", SERVICES, service(name), self.headers)
            self.assertEqual(reply.code, 201, reply.raw)
            sids.append(reply.json["serInstanceId"])
        return sids

    def subscribe_termination(self, callback: str) -> str:
        body = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": callback,
            "appInstanceId": APP,
        }
        reply = self.call("POST", TERMINATION_SUBSCRIPTIONS, body, self.headers)
        self.assertEqual(reply.code, 201, reply.raw)
        link: str = reply.json["_links"]["self"]["href"]
        return link.rsplit("/", 1)[1]

    def subscribe_availability(self) -> None:
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": "http://127.0.0.1:9090/availability",
            "filteringCriteria": {"serNames": ["nothing-of-ours"]},
        }
        url = f"{MGMT}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, body, self.headers).code, 201)

    def terminate(self, **options: Any) -> dict[str, Any]:
        """MECM's termination request; the emulator's record as it answers."""
        view: dict[str, Any] = self.terminate_app(APP, **options).json
        return view

    def record(self) -> dict[str, Any]:
        view: dict[str, Any] = self.mep.emulator.registry.terminations[APP].view()
        return view

    def confirm(self) -> Reply:
        return self.call("POST", CONFIRM, {"operationAction": "TERMINATING"}, self.headers)

    def token_code(self) -> int:
        """mepauth's answer to a token request with the app's AK/SK."""
        return self.call("POST", f"{BASE}/mep/token", headers=self.token_headers()).code

    def remaining(self) -> tuple[list[str], int]:
        """The services left (by name) and the number of subscriptions left."""
        registry = self.mep.emulator.registry
        names = sorted(s.body["serName"] for s in registry.services.values())
        return names, len(registry.subscriptions)

    def notices(self) -> list[str]:
        """The callbacks termination notices went to."""
        return [
            n["callback"]
            for n in self.mep.notifier.delivered
            if n["body"].get("notificationType") == "AppTerminationNotification"
        ]

    def deliver_with(self, code: int) -> Callbacks:
        """Notices are POSTed to an app that answers C{code}."""
        callbacks = Callbacks(code)
        self.mep.notifier.http = StubTreq(callbacks)
        return callbacks


class RequestTests(Mm5TestCase):
    def test_services_deleted_one_after_the_other_then_the_ak(self) -> None:
        """
        The request deletes the app's services at once, one every KONG_CLEANUP seconds (the
        gateway clean-up between), then the AK/SK; MECM's answer does not wait for the app.
        """
        self.subscribe_termination("http://127.0.0.1:9090/notify")
        self.made("a", "b", "c")
        answer = self.terminate()
        self.assertEqual(answer["result"], None)  # still deleting
        self.assertEqual(self.remaining()[0], ["b", "c"])
        self.mep.clock.advance(KONG_CLEANUP)
        self.assertEqual(self.remaining()[0], ["c"])
        self.assertEqual(self.token_code(), 200)
        self.mep.clock.advance(KONG_CLEANUP)
        self.assertEqual(self.remaining(), ([], 1))  # the subscription is the worker's
        self.assertEqual(self.token_code(), 200)  # the last service's gateway clean-up
        self.mep.clock.advance(KONG_CLEANUP)
        self.assertEqual(self.record()["result"], "success")
        self.assertEqual(self.token_code(), 401)
        self.assertFalse(self.record()["confirmed"])  # none of it waited for the app

    def test_a_service_the_app_deleted_fails_the_request(self) -> None:
        """
        The app's DELETE of a listed service before the request reached it: "instance not
        found", the rest of the list and the AK/SK kept; the worker goes on.
        """
        self.subscribe_termination("http://127.0.0.1:9090/notify")
        sids = self.made("a", "b", "c")
        self.terminate()
        self.assertEqual(
            self.call("DELETE", f"{SERVICES}/{sids[1]}", None, self.headers).code, 204
        )
        self.mep.advance(1, step=KONG_CLEANUP)
        self.assertEqual(self.record()["result"], "failure: instance not found")
        self.assertEqual(self.remaining(), (["c"], 1))
        self.assertEqual(self.token_code(), 200)
        self.assertEqual(self.confirm().code, 204)
        self.assertEqual(self.remaining(), (["c"], 0))
        self.mep.advance(60, step=5)
        self.assertEqual((self.remaining(), self.token_code()), ((["c"], 0), 200))

    def test_the_apps_delete_after_the_request_is_harmless(self) -> None:
        """The same DELETE once the request passed that service: 404, the request succeeds."""
        self.subscribe_termination("http://127.0.0.1:9090/notify")
        sids = self.made("a", "b")
        self.terminate()
        self.assertEqual(
            self.call("DELETE", f"{SERVICES}/{sids[0]}", None, self.headers).code, 404
        )
        self.mep.advance(1, step=KONG_CLEANUP)
        self.assertEqual(self.record()["result"], "success")
        self.assertEqual(self.token_code(), 401)


class WorkerTests(Mm5TestCase):
    def test_only_the_first_termination_subscription_is_told(self) -> None:
        """Two termination subscriptions: only the first made hears of it."""
        first = self.subscribe_termination("http://127.0.0.1:9090/first")
        self.subscribe_termination("http://127.0.0.1:9090/second")
        answer = self.terminate()
        self.assertEqual(self.notices(), ["http://127.0.0.1:9090/first"])
        self.assertEqual((answer["notified"], answer["subscriber"]), (1, first))

    def test_the_subscriptions_go_with_the_confirmation(self) -> None:
        """Every subscription of the app is kept until confirm_termination, then deleted."""
        self.subscribe_termination("http://127.0.0.1:9090/notify")
        self.subscribe_availability()
        self.made("a")
        self.terminate(maxGracefulTimeout=30)
        self.mep.advance(10)
        self.assertEqual(self.remaining(), ([], 2))
        self.assertEqual(self.confirm().code, 204)
        self.assertEqual(self.remaining(), ([], 0))
        self.assertEqual(self.record()["endedAt"], self.mep.clock.seconds())
        self.assertEqual(self.confirm().code, 409)  # the worker's record is gone

    def test_the_grace_period_counts_from_the_answered_notice(self) -> None:
        """Unconfirmed: the subscriptions go maxGracefulTimeout after the app answered."""
        self.subscribe_termination("http://127.0.0.1:9090/notify")
        self.deliver_with(204)
        self.terminate(maxGracefulTimeout=5)
        self.assertIsNone(self.record()["delivered"])
        self.mep.clock.advance(0)  # the POST goes out and is answered
        self.mep.notifier.http.flush()
        self.assertTrue(self.record()["delivered"])
        self.mep.advance(4.9, step=0.1)
        self.assertEqual(self.remaining()[1], 1)
        self.mep.advance(0.2, step=0.1)
        self.assertEqual(self.remaining()[1], 0)

    def test_an_undelivered_notice_ends_the_worker(self) -> None:
        """
        The app answers the notice 500: the worker ends there, the subscriptions are never
        deleted and a confirmation is refused; the request's deletions go on.
        """
        self.subscribe_termination("http://127.0.0.1:9090/notify")
        self.subscribe_availability()
        self.made("a")
        callbacks = self.deliver_with(500)
        self.terminate()
        self.mep.clock.advance(0)
        self.mep.notifier.http.flush()
        self.assertEqual(callbacks.paths, [b"/notify"])
        self.assertEqual(self.record()["delivered"], False)
        self.assertEqual(self.confirm().code, 409)
        self.mep.advance(60, step=1)
        self.assertEqual(self.remaining(), ([], 2))
        self.assertEqual(self.record()["result"], "success")

    def test_without_a_termination_subscription_no_worker(self) -> None:
        """
        Nobody to tell: no notice, nothing waits (confirm_termination 409), the
        subscriptions stay; the request still deletes the services and the AK/SK.
        """
        self.subscribe_availability()
        self.made("a")
        answer = self.terminate()
        self.assertEqual((answer["notified"], self.notices()), (0, []))
        self.assertEqual(self.confirm().code, 409)
        self.mep.advance(60, step=1)
        self.assertEqual(self.remaining(), ([], 1))
        self.assertEqual(self.token_code(), 401)
