"""
The agent against a MEP that rotates keys, refuses, redirects, floods, lies about
lifetimes, and against callers that send odd requests: the whole agent on a clock against
the in-memory emulator.
"""

from __future__ import annotations

import json
import random
from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogEvent, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.core.discovery import DiscoveryCache
from mep_agent.core.keeping import Phase
from mep_agent.core.token import TokenState
from mep_agent.mp1.auth import lifetime
from mep_agent.mp1.errors import MepError
from mep_agent.mp1.records import Discovered, ServiceInstance
from mep_agent.util import jsontext
from mep_agent.web.site import DeadlineChannel, LimitedRequest, Turnaway, serve
from mep_emulator.auth import App
from mep_emulator.dev import DEV_APP
from mep_emulator.memory import InMemoryMep

from .agent_harness import BASE, BEAT, NOTIFICATIONS, ApiTestCase, spec
from .helpers import SECRETS

TOKEN = "/mep-agent/v1/token"
ENDPOINT = "/mep-agent/v1/endpoint"


class HardeningTestCase(ApiTestCase):
    """ApiTestCase plus a log of every event, and a few MEP-side manipulations."""

    def setUp(self) -> None:
        super().setUp()
        self.events: list[LogEvent] = self.capture_events()

    def control(self, path: str, body: Any = None) -> int:
        d = self.mep.http.post(f"{BASE}/_emulator/{path}", json=body)
        self.mep.flush()
        code: int = self.successResultOf(d).code
        return code

    def rotate_sk(self) -> None:
        """The MEP now expects another SK for the agent's AK (an SK rotation)."""
        self.emulator.apps[DEV_APP.access_key] = App(
            DEV_APP.access_key, "r" * 64, DEV_APP.app_instance_id
        )

    def token_answer(self, raw: str) -> None:
        self.fault(kind="token", status=200, raw=raw)

    def assert_no_secret_logged(self) -> None:
        for event in self.events:
            text = formatEvent(event) + repr(event)
            for secret in SECRETS:
                self.assertNotIn(secret, text)


class GatewayRefusalTests(HardeningTestCase):
    def test_invalid_signature_renews_token(self) -> None:
        """A key rotation (403 "Invalid signature") replaces the token; beats resume."""
        self.build((spec("a"),), sync_interval=0)
        self.start()
        old = self.tokens.current()
        assert old is not None
        self.assertEqual(self.control("rotate-key"), 204)
        self.fault(kind="token", status=503)  # the first new-token request fails
        self.advance(BEAT)  # the beat: 403 with the old token, which is dropped
        self.assertIsNone(self.tokens.current())
        code, body, _ = self.get_json(self.api, TOKEN)
        self.assertEqual(code, 503)  # the refused token is never served
        self.advance(2)  # the 503's pause, a new token, and the beat is retried once
        self.assertEqual(self.requests("heartbeat"), [403, 204])
        new = self.tokens.current()
        assert new is not None
        self.assertNotEqual(new.access_token.reveal(), old.access_token.reveal())
        self.assertEqual(self.requests("token"), [200, 503, 200])
        self.assertTrue(self.keeper("a").healthy)
        code, body, _ = self.get_json(self.api, TOKEN)
        self.assertEqual((code, body["access_token"]), (200, new.access_token.reveal()))

    def test_many_refusals_invalidate_once(self) -> None:
        """Fifty services refused at once cause one token request, not fifty."""
        self.build(tuple(spec(f"s{i}") for i in range(50)))
        self.start()
        self.control("rotate-key")
        self.advance(BEAT + 1)
        self.assertEqual(self.emulator.tokens_issued, 2)
        self.assertEqual(self.requests("heartbeat").count(204), 50)


class StopNeverLocksTests(HardeningTestCase):
    def test_stop_after_sk_rotation_sends_at_most_two_signatures(self) -> None:
        """Stopping 50 services with a refused SK never locks the AK."""
        self.emulator.token_lifetime = 100
        self.build(tuple(spec(f"s{i}", interval=0) for i in range(50)))
        self.start()
        self.rotate_sk()
        self.advance(110)  # the refresh at 80 s is refused; the token expired at 100 s
        self.stop()
        refused = [s for s in self.requests("token") if s == 401]
        self.assertLessEqual(len(refused), 2)
        self.assertFalse(self.emulator.lockout.is_locked(DEV_APP.access_key, self.clock.seconds()))

    def test_refusal_budget_holds_across_callers(self) -> None:
        """Whatever asks, the agent sends no third signature within 300 s."""
        self.build((spec("a", interval=0),), sk="w" * 64)
        self.start()
        for _ in range(10):
            ensureDeferred(self.tokens.get(5, hurry=True)).addErrback(lambda f: None)
            self.advance(5)
        self.assertEqual(self.requests("token"), [401, 401])
        self.assertEqual(self.tokens.state, TokenState.REJECTED)
        self.advance(300)
        self.assertFalse(self.emulator.lockout.is_locked(DEV_APP.access_key, self.clock.seconds()))

    def test_locked_ak_waited_out(self) -> None:
        """A locked AK is waited out (900 s) without a further request, and said so."""
        for _ in range(3):
            self.emulator.lockout.record_failure(DEV_APP.access_key, 0)
        self.build()
        self.start()
        self.assertEqual(self.tokens.state, TokenState.LOCKED)
        self.advance(890, step=10)
        self.assertEqual(self.requests("token"), [403])
        self.advance(20, step=10)
        self.assertEqual(self.requests("token"), [403, 200])
        locked = [e for e in self.events if e.get("event") == "token.locked"]
        self.assertIn("check AK/SK", formatEvent(locked[0]))

    def test_a_403_that_is_no_lock_is_retried_soon(self) -> None:
        """A 403 to the token request that does not say the AK is locked: back-off, not 900 s."""
        self.fault(kind="token", status=403, count=1)
        self.build()
        self.start()
        self.assertEqual(self.tokens.state, TokenState.FAILING)
        self.advance(30, step=1)
        self.assertEqual(self.requests("token"), [403, 200])


class DeadlineTests(HardeningTestCase):
    def test_endpoint_answers_within_deadline(self) -> None:
        """With the token refused and renewal failing, discovery answers 503 in time."""
        self.build((spec("httpbin"),))
        self.start()
        self.control("rotate-key")
        self.fault(kind="token", status=500, count=1000)
        d = self.api.get(f"http://127.0.0.1{ENDPOINT}/httpbin")
        self.advance(11)
        response = self.successResultOf(d)
        self.assertEqual(response.code, 503)

    def test_slow_mep_discovery_deadline(self) -> None:
        """A MEP that never answers discovery gets the application a 503 in time."""
        self.build((spec("httpbin"),))
        self.start()
        self.fault(kind="discovery", delay=1000)
        d = self.api.get(f"http://127.0.0.1{ENDPOINT}/httpbin")
        self.advance(11)
        self.assertEqual(self.successResultOf(d).code, 503)


class RedirectTests(HardeningTestCase):
    def test_discovery_redirect_not_followed(self) -> None:
        """A discovery 302 to another origin is a MEP error (502), never followed."""
        self.build((spec("httpbin"),))
        self.start()
        self.fault(
            kind="discovery",
            status=302,
            headers={"Location": "http://127.0.0.1:9/evil"},
            raw="",
        )
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 502)
        self.assertIn("redirect", body["cause"])
        self.assertEqual(self.requests("discovery"), [302])

    def test_heartbeat_redirect_is_a_failure(self) -> None:
        """A heartbeat answered 303 counts as failed, never as a heartbeat."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=303, headers={"Location": "/elsewhere"}, raw="")
        self.advance(BEAT)
        keeper = self.keeper("a")
        self.assertEqual((keeper.beats.failed, keeper.beats.last_good), (1, None))
        self.assertIn("HTTP 303", keeper.last_error or "")


class BoundedBodyTests(HardeningTestCase):
    def test_huge_discovery_answer_refused(self) -> None:
        """An answer over the limit is a 502 and is not kept."""
        self.build((spec("httpbin"),))
        self.start()
        self.fault(kind="discovery", status=200, raw="[" + " " * (2 * 1024 * 1024) + "]")
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 502)
        self.assertIn("larger than", body["cause"])
        self.assertEqual(self.discovery.size, (0, 0))

    def test_gzip_bomb_refused_after_decoding(self) -> None:
        """A small compressed answer that inflates past the limit is refused."""
        self.build((spec("httpbin"),))
        self.start()
        bomb = "[" + " " * (64 * 1024 * 1024) + "]"
        self.fault(kind="discovery", status=200, raw=bomb, gzip=True)
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 502)
        self.assertIn("larger than", body["cause"])

    def test_gzip_within_limit_decoded(self) -> None:
        """A MEP that compresses anyway is understood (within the limit)."""
        self.build((spec("httpbin"),))
        self.start()
        endpoint = {"uris": ["http://httpbin.local/"]}
        answer = [
            {"serInstanceId": "1", "state": "ACTIVE", "transportInfo": {"endpoint": endpoint}}
        ]
        self.fault(kind="discovery", status=200, raw=json.dumps(answer), gzip=True)
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual((code, body), (200, endpoint))


class CacheBoundsTests(SynchronousTestCase):
    def cache(self, **kw: Any) -> tuple[DiscoveryCache, Clock, list[Deferred[Discovered]]]:
        clock = Clock()
        pending: list[Deferred[Discovered]] = []

        def fetch(name: str) -> Deferred[Discovered]:
            d: Deferred[Discovered] = Deferred()
            pending.append(d)
            return d

        return DiscoveryCache(fetch, clock, **kw), clock, pending

    def fill(self, cache: DiscoveryCache, pending: list[Deferred[Discovered]], name: str) -> None:
        d = ensureDeferred(cache.lookup(name))
        pending[-1].callback(Discovered((ServiceInstance("1", "ACTIVE", {}),), 100))
        self.successResultOf(d)

    def test_max_entries_evicts_oldest(self) -> None:
        """Past max_entries the oldest name is dropped."""
        cache, _, pending = self.cache(max_entries=3)
        for name in "abcd":
            self.fill(cache, pending, name)
        self.assertEqual(cache.size, (3, 300))
        ensureDeferred(cache.lookup("a"))
        self.assertEqual(len(pending), 5)  # "a" was evicted: asked again

    def test_max_bytes_evicts_oldest(self) -> None:
        """Past max_bytes the oldest names are dropped."""
        cache, _, pending = self.cache(max_bytes=250)
        for name in "abc":
            self.fill(cache, pending, name)
        self.assertEqual(cache.size, (2, 200))

    def test_expired_entries_swept_on_timer(self) -> None:
        """Entries too old to serve even stale are dropped by the periodic sweep."""
        cache, clock, pending = self.cache(ttl=10, stale_if_error=20)
        cache.startService()
        self.addCleanup(cache.stopService)
        self.fill(cache, pending, "a")
        clock.advance(29)
        self.assertEqual(cache.size[0], 1)
        clock.advance(30)
        self.assertEqual(cache.size, (0, 0))


class LifetimeTests(HardeningTestCase):
    def test_lifetime_sanitised(self) -> None:
        """expires_in: finite, positive, clamped to 1 s .. 24 h; anything else refused."""
        self.assertEqual(lifetime(3600), 3600)
        self.assertEqual(lifetime("3600"), 3600)
        self.assertEqual(lifetime(0.001), 1)
        self.assertEqual(lifetime(1e12), 86400)
        self.assertEqual(lifetime(int("9" * 400)), 86400)
        for bad in (float("inf"), float("nan"), 0, -5, True, None, "1e3", [1]):
            self.assertRaises(ValueError, lifetime, bad)

    def test_non_finite_lifetimes_are_failures(self) -> None:
        """Infinity, NaN and 1e400 are malformed answers: backoff, never a 500."""
        for raw in ("Infinity", "NaN", "1e400"):
            self.token_answer(f'{{"access_token": "x", "expires_in": {raw}}}')
        self.build()
        self.start()
        self.assertEqual(self.tokens.state, TokenState.FAILING)
        code, _, _ = self.get_json(self.api, TOKEN)
        self.assertEqual(code, 412)
        self.advance(1 + 2 + 4)
        self.assertEqual(self.requests("token"), [200, 200, 200, 200])
        self.assertEqual(self.get_json(self.api, TOKEN)[0], 200)

    def test_tiny_lifetime_refreshed_at_most_once_a_second(self) -> None:
        """A 0.001 s lifetime is clamped: one token request a second, not a storm."""
        self.emulator.token_lifetime = 1
        self.build()
        self.start()
        self.advance(10, step=0.1)
        self.assertLessEqual(len(self.requests("token")), 11)

    def test_huge_lifetime_still_refreshed(self) -> None:
        """A lifetime of 1e12 s is clamped to a day: refreshed after 80 % of it."""
        self.token_answer('{"access_token": "x", "expires_in": 1000000000000}')
        self.build(confirm_ready=False)
        self.start()
        (obtained,) = [e for e in self.events if e.get("event") == "token.obtained"][:1]
        self.assertEqual(obtained["expires_in"], 86400)


class ClassificationTests(HardeningTestCase):
    def test_401_then_malformed_token_answer_uses_normal_backoff(self) -> None:
        """A 401 on a beat, then a malformed token answer: back within seconds, not 160."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=401, body={"exp": "token expired"})
        self.token_answer('{"nothing": 1}')
        self.advance(BEAT)  # beat 401; the new token's answer is malformed
        self.assertEqual(self.tokens.state, TokenState.FAILING)
        self.advance(1)  # normal backoff (1 s, not 160 s), a good token, the beat retried
        self.assertEqual(self.tokens.state, TokenState.VALID)
        self.assertEqual(self.tokens.refresh_failures, 1)
        self.assertEqual(self.requests("heartbeat"), [401, 204])
        self.assertEqual(self.registry.services[self.sid("a")].state, "ACTIVE")

    def test_bad_request_is_not_a_credentials_refusal(self) -> None:
        """A 400 from the token endpoint uses the normal backoff."""
        self.fault(kind="token", status=400, raw='"Bad auth header format"')
        self.build()
        self.start()
        self.advance(1)
        self.assertEqual(self.requests("token"), [400, 200])

    def test_waiting_for_token_shown(self) -> None:
        """Services waiting for a token say so in /status, /readyz?verbose and metrics."""
        self.fault(kind="token", status=503, count=100)
        self.build((spec("a"),))
        self.start()
        self.advance(21)  # the first sync's wait for a token, then the registration's
        _, status, _ = self.get_json(self.ops, "/mep-agent/v1/status")
        self.assertTrue(status["services"][0]["waitingForToken"])
        _, ready, _ = self.get_json(self.ops, "/readyz?verbose")
        self.assertTrue(ready["checks"]["service:a"]["waitingForToken"])
        _, raw = self.request(self.ops, "GET", "/metrics")
        self.assertIn(b'mep_agent_service_waiting_for_token{ser_name="a"} 1.0', raw)


class ForgedNotificationTests(HardeningTestCase):
    def test_forged_notifications_404(self) -> None:
        """Without the per-process secret, the notification route does not exist."""
        self.build()
        self.start()
        note = {"notificationType": "SerAvailabilityNotification", "serviceReferences": []}
        for path in ("/mep-agent/v1/notifications", "/mep-agent/v1/notifications/guess"):
            response, _ = self.request(self.ops, "POST", path, json=note)
            self.assertEqual(response.code, 404, path)
        response, _ = self.request(self.ops, "POST", NOTIFICATIONS, json=note)
        self.assertEqual(response.code, 204)


class OddRequestTests(HardeningTestCase):
    def test_odd_paths_and_hosts_are_json_4xx(self) -> None:
        """Double slashes, odd hosts and deep JSON bodies: JSON 4xx, never a 500."""
        self.build((spec("httpbin"),))
        self.start()
        for path in ("/mep-agent//v1/token", f"{ENDPOINT}//x", "//livez", "/mep-agent/v1/x/"):
            response, raw = self.request(self.api, "GET", path)
            self.assertLess(response.code, 500, path)
            self.assertIn(b'"error"', raw)
        response, raw = self.request(self.api, "GET", TOKEN, headers={"Host": "a..b"})
        self.assertLess(response.code, 500)
        deep = b"[" * 100000 + b"]" * 100000
        response, raw = self.request(self.ops, "POST", NOTIFICATIONS, data=deep)
        self.assertEqual(response.code, 400)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_json_depth_limited(self) -> None:
        """Network JSON nested deeper than 32 levels is refused; NaN is not JSON."""
        self.assertEqual(jsontext.depth(jsontext.loads(b"[" * 32 + b"]" * 32)), 32)
        self.assertRaises(ValueError, jsontext.loads, b"[" * 33 + b"]" * 33)
        self.assertRaises(ValueError, jsontext.loads, b"[" * 100000 + b"]" * 100000)
        self.assertRaises(ValueError, jsontext.loads, b"[NaN]")


class ListenerLimitTests(SynchronousTestCase):
    def connect(self, clock: Clock, max_connections: int = 4) -> tuple[Any, Any]:
        from twisted.web.resource import Resource

        factory = serve(Resource(), clock, max_connections=max_connections, header_deadline=10)
        factory.doStart()
        self.addCleanup(factory.doStop)
        return factory, clock

    def test_large_body_refused_from_content_length(self) -> None:
        """A body announced over the limit is answered 413 at once and never stored."""
        factory, _ = self.connect(Clock())
        protocol = factory.buildProtocol(("127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n" + b"x" * 1000
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)

    def test_streamed_body_refused_past_limit(self) -> None:
        """A chunked body is refused once it passes the limit, held in memory until then."""
        factory, _ = self.connect(Clock())
        protocol = factory.buildProtocol(("127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(b"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4096
        for _ in range(20):
            protocol.dataReceived(b"1000\r\n" + chunk + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertEqual(LimitedRequest.max_body, 64 * 1024)

    def test_slow_headers_dropped(self) -> None:
        """A request whose headers do not arrive within the deadline loses its connection."""
        clock = Clock()
        factory, _ = self.connect(clock)
        protocol = factory.buildProtocol(("127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        for _ in range(9):
            protocol.dataReceived(b"G")
            clock.advance(1)
        self.assertFalse(transport.disconnected)
        clock.advance(1)
        self.assertTrue(transport.disconnected)

    def test_connections_capped(self) -> None:
        """Past the cap a new connection is turned away (answered 503, see test_refusals)."""
        factory, _ = self.connect(Clock(), max_connections=2)
        protocols = [factory.buildProtocol(("127.0.0.1", n)) for n in range(3)]
        for protocol in protocols[:2]:
            protocol.makeConnection(StringTransport())
        self.assertIsInstance(protocols[2], Turnaway)
        protocols[0].connectionLost(Failure(ConnectionDone()))
        again = factory.buildProtocol(("127.0.0.1", 4))
        self.assertIsInstance(again, DeadlineChannel, "a closed connection still counted")
        self.assertIsInstance(factory.buildProtocol(("127.0.0.1", 5)), Turnaway)


class ConnectionErrorTests(HardeningTestCase):
    def test_no_answer_names_the_address(self) -> None:
        """A connection the MEP drops is reported with the address it was made to (#11.4)."""
        self.fault(kind="token", drop=True)
        self.build()
        self.start()
        self.assertIn("(connecting to 127.0.0.1:8443)", self.tokens.last_error or "")


class RedactionTests(HardeningTestCase):
    def test_app_instance_id_not_in_errors(self) -> None:
        """A redirect naming the app instance id leaves no trace of it in logs or status."""
        self.build((spec("a"),))
        self.start()
        location = f"{BASE}/mep/mec_service_mgmt/v1/applications/{DEV_APP.app_instance_id}/x"
        self.fault(kind="heartbeat", status=302, headers={"Location": location}, raw="")
        self.advance(BEAT)
        _, raw = self.request(self.ops, "GET", "/mep-agent/v1/status")
        self.assertNotIn(DEV_APP.app_instance_id.encode(), raw)
        self.assertIn(b"redirect", raw)
        self.assert_no_secret_logged()

    def test_token_not_in_errors(self) -> None:
        """A MEP that echoes the bearer token in an error has it redacted."""
        self.build((spec("a"),))
        self.start()
        token = self.tokens.current()
        assert token is not None
        self.fault(
            kind="heartbeat", status=500, raw=f'{{"echo": "{token.access_token.reveal()}"}}'
        )
        self.advance(BEAT)
        self.assertNotIn(token.access_token.reveal(), self.keeper("a").last_error or "")
        for event in self.events:
            self.assertNotIn(token.access_token.reveal(), formatEvent(event) + repr(event))


class DiscoveryAnswerTests(HardeningTestCase):
    def test_malformed_answers_are_502_not_cached(self) -> None:
        """Invalid JSON, null, an object, a wrong content type: 502, nothing cached."""
        self.build((spec("httpbin"),))
        self.start()
        cases: list[dict[str, Any]] = [
            {"raw": "[{"},
            {"raw": "null"},
            {"raw": '{"a": 1}'},
            {"raw": "[1, 2]"},
            {"raw": "[]", "headers": {"Content-Type": "text/html"}},
        ]
        for case in cases:
            self.fault(kind="discovery", status=200, **case)
            code, _, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
            self.assertEqual(code, 502, case)
            self.assertEqual(self.discovery.size, (0, 0))
        code, _, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 200)

    def test_last_error_cleared_on_recovery(self) -> None:
        """A failed beat sets lastError; the next good one (after the 503's pause) clears it."""
        self.build((spec("a"),))
        self.start()
        self.fault(kind="heartbeat", status=503)
        self.advance(BEAT)
        self.assertIsNotNone(self.keeper("a").last_error)
        self.advance(2)
        self.assertIsNone(self.keeper("a").last_error)
        self.assertEqual(self.keeper("a").phase, Phase.HELD)


class MepErrorClassificationTests(SynchronousTestCase):
    def test_gateway_403_is_a_token_refusal(self) -> None:
        """Kong's 403 bodies mean the token; mepserver's ProblemDetails 403 does not."""
        from mep_agent.mp1.errors import Verdict

        kong = MepError("heartbeat", 403, "x", {"message": "Invalid signature"})
        server = MepError("register", 403, "x", {"title": "Forbidden", "status": 20})
        self.assertEqual(kong.verdict, Verdict.TOKEN_REFUSED)
        self.assertEqual(server.verdict, Verdict.REFUSED)
        locked = MepError("token", 403, "x", "Access is locked.")  # mepauth's JSON string
        self.assertEqual(locked.verdict, Verdict.LOCKED)
        self.assertEqual(MepError("token", 403, "x", {"message": "no"}).verdict, Verdict.REFUSED)
        for body in ("Request blocked", {"message": "Your IP is blocked"}, "account unlocked"):
            self.assertEqual(MepError("token", 403, "x", body).verdict, Verdict.REFUSED)
        self.assertEqual(MepError("token", 401, "bad").verdict, Verdict.CREDENTIALS_REFUSED)
        self.assertEqual(MepError("token", 400, "bad").verdict, Verdict.REFUSED)
        self.assertEqual(MepError("discovery", 302, "r").verdict, Verdict.UNEXPECTED)


class FaultRunTests(HardeningTestCase):
    """The fault runs of docs/reliability.md that a Clock can drive."""

    def test_mep_down_at_start(self) -> None:
        """Every connection dropped for minutes: nothing gives up; all registered after."""
        self.fault(kind="any", drop=True, count=10)  # 10 attempts: about 4 minutes
        self.build(tuple(spec(f"s{i}") for i in range(5)))
        self.start()
        self.advance(600, step=5)
        self.assertEqual(len(self.registry.services), 5)
        self.assertTrue(all(k.healthy for k in self.holdings.services.values()))

    def test_restart_storm(self) -> None:
        """Ten MEP restarts in a row: every service back once, no duplicate."""
        self.build(tuple(spec(f"s{i}") for i in range(5)))
        self.start()
        for _ in range(10):
            self.registry.restart()
            self.advance(BEAT + 1)
        names = sorted(s.body["serName"] for s in self.registry.services.values())
        self.assertEqual(names, [f"s{i}" for i in range(5)])

    def test_stop_bounded_in_every_state(self) -> None:
        """A stop ends within --shutdown-timeout whatever the MEP and the token are doing."""
        setups = {
            "no token yet (MEP down)": {"kind": "token", "drop": True, "count": 1000},
            "token refused": {"kind": "token", "status": 401, "count": 1000},
            "registering (refused)": {"kind": "register", "status": 400, "count": 1000},
            "deregistration hangs": {"kind": "deregister", "delay": 1000, "count": 1000},
            "MEP answers 503": {"kind": "any", "status": 503, "count": 1000},
        }
        for name, fault in setups.items():
            self.use_mep(InMemoryMep.create(clock=MemoryReactorClock()))
            if fault["kind"] != "deregister":
                self.fault(**fault)
            self.build(tuple(spec(f"s{i}") for i in range(3)))
            self.start()
            self.advance(5)
            if fault["kind"] == "deregister":
                self.fault(**fault)
            started = self.clock.seconds()
            self.stop()
            self.assertLessEqual(self.clock.seconds() - started, 5.1, name)  # --shutdown-timeout
            if name == "deregistration hangs":
                self.assertEqual(len(self.registry.services), 3, name)


class HostileInputTests(HardeningTestCase):
    """Random requests to both listeners: always JSON, never a 500 (counted in the docs)."""

    def test_random_requests_never_500(self) -> None:
        """300 random paths, methods, hosts and bodies per listener: no 500, no traceback."""
        rng = random.Random(7)
        alphabet = [
            "a",
            "/",
            "//",
            "%",
            "%2F",
            "..",
            "?",
            "&",
            "=",
            "é",
            "\x00",
            " ",
            "v1",
            "mep-agent",
            "token",
            "endpoint",
            "notifications",
            "#",
            ";",
            "~",
        ]
        self.build((spec("httpbin"),))
        self.start()
        outcomes: dict[int, int] = {}
        for stub in (self.api, self.ops):
            for _ in range(300):
                path = "/" + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 8)))
                method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH"])
                body = rng.choice([b"", b"{", b"[]", b"null", b"[" * 50, b'{"a":1}'])
                host = rng.choice(["127.0.0.1", "a..b", "", "x" * 300, "[::1"])
                response, raw = self.request(
                    stub, method, path.replace("\x00", "%00"), data=body, headers={"Host": host}
                )
                outcomes[response.code] = outcomes.get(response.code, 0) + 1
                self.assertLess(response.code, 500, (method, path, host))
                if raw:
                    json.loads(raw)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertEqual(sum(outcomes.values()), 600)
