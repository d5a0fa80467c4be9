"""The operations API: probes, metrics, status, the notification route."""

from __future__ import annotations

from typing import Any

from .agent_harness import BEAT, NOTIFICATIONS, ApiTestCase, spec
from .helpers import SECRETS


class ProbeTests(ApiTestCase):
    def test_livez(self) -> None:
        """/livez answers 200 as long as the reactor runs."""
        self.build()
        self.assertEqual(self.get_json(self.ops, "/livez")[:2], (200, {"status": "ok"}))

    def test_not_ready_until_registered(self) -> None:
        """/readyz is 503 (with the failing checks) until token and services are there."""
        self.fault(kind="register", status=503)
        self.build((spec("a"),))
        self.start()
        code, body, _ = self.get_json(self.ops, "/readyz")
        self.assertEqual(code, 503)
        self.assertFalse(body["checks"]["service:a"]["ok"])
        self.advance(2)  # the 503 paused the agent's requests for 2 s
        code, body, _ = self.get_json(self.ops, "/readyz")
        self.assertEqual((code, body), (200, {"status": "ready"}))
        code, body, _ = self.get_json(self.ops, "/healthz?verbose")
        self.assertEqual(code, 200)
        self.assertTrue(body["checks"]["token"]["ok"])

    def test_ready_while_the_mep_is_in_trouble(self) -> None:
        """After start-up, failing heartbeats never make the agent not ready (#11.1)."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=500, count=2)
        self.advance(BEAT)
        code, body, _ = self.get_json(self.ops, "/readyz?verbose")
        self.assertEqual((code, body["status"], body["mep"]), (200, "ready", "trouble"))
        self.assertFalse(body["checks"]["service:a"]["ok"])
        self.assertEqual(self.get_json(self.ops, "/healthz/mep")[0], 503)
        self.advance(61)  # two attempts failed: the third waits for the next interval
        self.assertEqual(self.get_json(self.ops, "/healthz/mep")[0], 200)

    def test_subscription_trouble_shown_not_unready(self) -> None:
        """A subscription the MEP refuses shows in ?verbose and /healthz/mep only."""
        from mep_agent.config.model import SubscriptionSpec

        self.fault(kind="subscribe", status=503, count=100)
        self.build(
            (spec("a"),),
            subscriptions=(SubscriptionSpec(0, {"callbackReference": "http://app.local/cb"}),),
        )
        self.start()
        code, body, _ = self.get_json(self.ops, "/readyz?verbose")
        self.assertEqual((code, body["checks"]["subscription:0"]["ok"]), (200, False))
        self.assertEqual(self.get_json(self.ops, "/healthz/mep")[0], 503)

    def test_not_ready_without_a_valid_token(self) -> None:
        """After start-up, /readyz is 503 once no valid token can be had."""
        self.emulator.token_lifetime = 100
        self.build((spec("a", interval=0),))
        self.start()
        self.fault(kind="token", status=503, count=100)
        self.advance(99)
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 200)
        self.advance(2)
        self.assertEqual(self.get_json(self.ops, "/readyz")[0], 503)

    def test_startupz(self) -> None:
        """/startupz turns 200 once the first token is held and every service registered once."""
        self.fault(kind="register", status=503)
        self.build((spec("a"), spec("b")))
        self.start()
        code, body, _ = self.get_json(self.ops, "/startupz")
        self.assertEqual((code, body["status"]), (503, "starting"))
        self.assertFalse(body["checks"]["service:a"]["ok"] and body["checks"]["service:b"]["ok"])
        self.advance(3)  # the 503 paused everything 2 s; then one request, then one a second
        self.assertEqual(self.get_json(self.ops, "/startupz")[:2], (200, {"status": "started"}))
        self.registry.restart()  # lost later: start-up stays done
        self.advance(BEAT)
        self.assertEqual(self.get_json(self.ops, "/startupz")[0], 200)


class MetricsTests(ApiTestCase):
    def test_metrics(self) -> None:
        """Prometheus text with registration, heartbeat, token and MEP request metrics."""
        self.build((spec("a"),))
        self.start()
        self.advance(BEAT + 1)
        response, raw = self.request(self.ops, "GET", "/metrics")
        text = raw.decode()
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        for line in (
            'mep_agent_service_registered{ser_name="a"} 1.0',
            'mep_agent_heartbeats_total{ser_name="a"} 1.0',
            'mep_agent_heartbeat_failures_total{ser_name="a"} 0.0',
            'mep_agent_seconds_since_heartbeat{ser_name="a"} 1.0',
            'mep_agent_reregistrations_total{ser_name="a"} 0.0',
            'mep_agent_mep_requests_total{operation="register",status="201"} 1.0',
            'mep_agent_mep_requests_total{operation="heartbeat",status="204"} 1.0',
            "mep_agent_token_refresh_failures_total 0.0",
            'mep_agent_discovery_lookups_total{result="hit"} 0.0',
        ):
            self.assertIn(line, text)
        self.assertIn("mep_agent_token_expiry_timestamp_seconds 3600.0", text)
        self.assertIn('mep_agent_mep_request_seconds_bucket{le="0.01",operation="token"}', text)
        for secret in SECRETS:
            self.assertNotIn(secret, text)

    def test_sync_interval_beside_the_sync_age(self) -> None:
        """The sync interval is exported, so an alert can compare the sync's age with it."""
        self.build((spec("a"),), sync_interval=45)
        self.start()
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b"\nmep_agent_sync_interval_seconds 45.0\n", raw)
        self.assertIn(b"\nmep_agent_sync_age_seconds 0.0\n", raw)


class StatusTests(ApiTestCase):
    def test_status(self) -> None:
        """Status shows desired and actual registrations and token expiry, never the token."""
        self.build((spec("a"), spec("b", interval=0)))
        self.start()
        code, body, _ = self.get_json(self.ops, "/mep-agent/v1/status")
        self.assertEqual(code, 200)
        services = {s["serName"]: s for s in body["services"]}
        self.assertEqual(services["a"]["status"], "held")
        self.assertEqual(services["a"]["livenessInterval"], 60)
        self.assertEqual(services["b"]["desired"]["livenessInterval"], 0)
        self.assertRegex(services["a"]["serInstanceId"], "^[0-9a-f]{32}$")
        self.assertEqual(body["token"]["expires_at"], 3600)
        self.assertTrue(body["ready_confirmed"])
        _, raw = self.request(self.ops, "GET", "/mep-agent/v1/status")
        self.assertNotIn(self.token_value().encode(), raw)
        for secret in SECRETS:
            self.assertNotIn(secret.encode(), raw)


class NotificationRouteTests(ApiTestCase):
    def test_bad_notifications_400(self) -> None:
        """Malformed notifications are refused with a JSON 400, never a 500."""
        self.build()
        cases: tuple[dict[str, Any], ...] = (
            {"data": b"{"},
            {"json": []},
            {"json": {"notificationType": "X"}},
            {
                "json": {
                    "notificationType": "SerAvailabilityNotification",
                    "serviceReferences": "x",
                }
            },
            {"data": b"x" * 70000},
        )
        for kw in cases:
            response, raw = self.request(self.ops, "POST", NOTIFICATIONS, **kw)
            self.assertEqual(response.code, 400, (kw, raw))

    def test_unknown_and_method(self) -> None:
        """Unknown routes 404, wrong methods 405 on the ops API."""
        self.build()
        self.assertEqual(self.get_json(self.ops, "/nope")[0], 404)
        response, _ = self.request(self.ops, "DELETE", "/readyz")
        self.assertEqual(response.code, 405)


class NotificationDeliveryTests(ApiTestCase):
    def test_emulator_notifies_agent_which_invalidates(self) -> None:
        """The MEP's notification reaches the agent's route and refreshes discovery."""
        from mep_agent.config.model import SubscriptionSpec

        self.build(
            (spec("httpbin"),),
            subscriptions=(
                SubscriptionSpec(
                    0,
                    {
                        "subscriptionType": "SerAvailabilityNotificationSubscription",
                        "callbackReference": "string",
                        "filteringCriteria": {"serNames": ["httpbin"]},
                    },
                ),
            ),
            notify_url="http://127.0.0.1:9090/mep-agent/v1/notifications",
        )
        self.mep.notifier.http = self.ops  # the emulator's callbacks reach the ops API
        self.start()
        self.get_json(self.api, "/mep-agent/v1/endpoint/httpbin")
        sid = self.sid("httpbin")
        self.registry.set_state(sid, "SUSPENDED")
        self.settle()
        self.assertEqual(self.mep.notifier.delivered[-1]["status"], 204)
        code, body, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/httpbin")
        self.assertEqual((code, body["states"]), (404, ["SUSPENDED"]))
        self.assertEqual(self.requests("discovery"), [200, 200])
