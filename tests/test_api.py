"""Tests for the application API: token, discovery, status mapping, cache, protection."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from mep_agent.core.discovery import CacheSource, DiscoveryCache
from mep_agent.core.errors import DiscoveryFailed
from mep_agent.mp1.client import Discovered, ServiceInstance
from mep_agent.mp1.errors import MepError
from mep_agent.util.secret import Secret
from mep_agent.web.problems import problem_for

from .agent_harness import NOTIFICATIONS, ApiTestCase, spec
from .helpers import SECRETS

ENDPOINT = "/mep-agent/v1/endpoint"


class TokenRouteTests(ApiTestCase):
    def test_before_first_token(self) -> None:
        """Before the first token: 412 with a JSON reason."""
        self.fault(kind="token", status=503, count=100)
        self.build()
        self.start()
        code, body, _ = self.get_json(self.api, "/mep-agent/v1/token")
        self.assertEqual(code, 412)
        self.assertIn("no token yet", body["error"])

    def test_token_with_remaining_lifetime(self) -> None:
        """The token is served with expires_in counting down."""
        self.build()
        self.start()
        self.advance(100, step=10)
        code, body, response = self.get_json(self.api, "/mep-agent/v1/token")
        self.assertEqual(code, 200)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3500)
        self.assertEqual(body["access_token"], self.token_value())
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])

    def test_expired_never_served(self) -> None:
        """While the token is expired and renewing fails: 503, never the stale token."""
        self.emulator.token_lifetime = 100
        self.build()
        self.start()
        self.fault(kind="token", status=500, count=100)
        self.advance(100, step=5)
        code, body, _ = self.get_json(self.api, "/mep-agent/v1/token")
        self.assertEqual(code, 503)
        self.assertNotIn("access_token", body)


class TokenFastPathTests(ApiTestCase):
    """GET /token skips Klein; its answers must be exactly the routed ones."""

    def test_same_answer_as_the_route(self) -> None:
        """The fast path and the Klein route give the same status, headers and body."""
        self.build()
        self.start()
        fast, fast_raw = self.request(self.api, "GET", "/mep-agent/v1/token")
        # With a trailing slash the path is not the fast path's: Klein routes it.
        routed, routed_raw = self.request(self.api, "GET", "/mep-agent/v1/token/")
        self.assertEqual((fast.code, routed.code), (200, 200))
        self.assertEqual(fast_raw, routed_raw)
        for name in ("content-type", "cache-control"):
            self.assertEqual(fast.headers.getRawHeaders(name), routed.headers.getRawHeaders(name))

    def test_body_follows_the_clock_and_the_token(self) -> None:
        """The encoded body is reused within a second only, and never for another token."""
        self.build()
        self.start()
        first = self.get_json(self.api, "/mep-agent/v1/token")[1]
        self.assertEqual(self.get_json(self.api, "/mep-agent/v1/token")[1], first)
        self.advance(1)
        later = self.get_json(self.api, "/mep-agent/v1/token")[1]
        self.assertEqual(later["expires_in"], first["expires_in"] - 1)
        self.advance(3600 - 300, step=60)  # past the refresh: a new token
        renewed = self.get_json(self.api, "/mep-agent/v1/token")[1]
        self.assertNotEqual(renewed["access_token"], first["access_token"])
        self.assertEqual(renewed["access_token"], self.token_value())

    def test_other_methods_and_failures_go_through_the_routes(self) -> None:
        """POST is a JSON 405, no token a 412: the routes' answers."""
        self.fault(kind="token", status=503, count=100)
        self.build()
        self.start()
        response, raw = self.request(self.api, "POST", "/mep-agent/v1/token")
        self.assertEqual(response.code, 405)
        self.assertIn(b"error", raw)
        self.assertEqual(self.get_json(self.api, "/mep-agent/v1/token")[0], 412)


class CountingResource(Resource):
    """Counts the requests that reach the wrapped resource (Klein's routes)."""

    isLeaf = True

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner
        self.count = 0

    def render(self, request: Any) -> Any:
        self.count += 1
        return self.inner.render(request)

    def refusal(self, request: Any) -> Any:
        return self.inner.refusal(request)  # the front door's check, not a visit to Klein


class EndpointFastPathTests(ApiTestCase):
    """GET /endpoint/{name} from a fresh cache entry skips Klein, with the routed answers."""

    HEADERS = ("content-type", "cache-control", "age", "x-cache", "x-mep-agent-index")

    def setUp(self) -> None:
        super().setUp()
        self.build((spec("httpbin"),))
        self.start()
        self.routes = CountingResource(self.front._routed)
        self.front._routed = self.routes

    def compare(self, path: str) -> tuple[Any, bytes]:
        """The fast answer to C{path} and the routed one (an unknown parameter) agree."""
        joiner = "&" if "?" in path else "?"
        self.request(self.api, "GET", f"{path}{joiner}warm=1")  # a cache miss, if any
        routed, routed_raw = self.request(self.api, "GET", f"{path}{joiner}x=1")
        before = self.routes.count
        fast, fast_raw = self.request(self.api, "GET", path)
        self.assertEqual(self.routes.count, before, "the fast path went through Klein")
        self.assertEqual((fast.code, fast_raw), (routed.code, routed_raw))
        for name in self.HEADERS:
            self.assertEqual(fast.headers.getRawHeaders(name), routed.headers.getRawHeaders(name))
        return fast, fast_raw

    def test_cached_answers_same_as_the_routes(self) -> None:
        """The endpoint, ?all=true and a cached 404 are the routes' bytes and headers."""
        self.assertEqual(self.compare(f"{ENDPOINT}/httpbin")[0].code, 200)
        self.assertEqual(self.compare(f"{ENDPOINT}/httpbin?all=true")[0].code, 200)
        self.assertEqual(self.compare(f"{ENDPOINT}/nosuch")[0].code, 404)
        self.advance(5)
        fast, _ = self.compare(f"{ENDPOINT}/httpbin")
        self.assertEqual(fast.headers.getRawHeaders("age"), ["5"])

    def test_encoded_once_per_answer(self) -> None:
        """The same MEP answer is encoded once; a new answer is encoded again."""
        first = self.request(self.api, "GET", f"{ENDPOINT}/httpbin")[1]
        encoded = self.agent_api._endpoint_bodies[("httpbin", False)][1]
        again = self.request(self.api, "GET", f"{ENDPOINT}/httpbin")[1]
        self.assertIs(self.agent_api._endpoint_bodies[("httpbin", False)][1], encoded)
        self.assertEqual(first, again)
        self.discovery.invalidate(["httpbin"])
        self.request(self.api, "GET", f"{ENDPOINT}/httpbin")  # from the MEP
        self.assertEqual(len(self.agent_api._endpoint_bodies), 1)

    def test_misses_and_odd_requests_go_through_the_routes(self) -> None:
        """A miss, an escaped or invalid name, a missing API token: Klein answers."""
        before = self.routes.count
        self.advance(31)  # past the TTL: a miss
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/httpbin")[0], 200)
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/http%62in")[0], 200)
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/{'a' * 129}")[0], 400)
        self.assertEqual(self.routes.count, before + 3)


class EndpointFastPathTokenTests(ApiTestCase):
    def test_api_token_checked(self) -> None:
        """With --api-token, the fast path answers only a caller that sent it."""
        self.build((spec("httpbin"),), api_token=Secret("s3cret-app-token-1234"))
        self.start()
        auth = {"Authorization": "Bearer s3cret-app-token-1234"}
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/httpbin", headers=auth)[0], 200)
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/httpbin", headers=auth)[0], 200)
        self.assertEqual(self.get_json(self.api, f"{ENDPOINT}/httpbin")[0], 401)


class DiscoveryRouteTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.build((spec("httpbin"),))
        self.start()

    def test_found(self) -> None:
        """
        A registered service answers with its transportInfo.endpoint as the MEP gave it
        (mepserver: the gateway's URI for the route it made, addresses and alternative null).
        """
        code, body, response = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 200)
        (record,) = self.instances("httpbin")
        (route,) = record.routes.values()
        gateway = f"https://mep-api-gw.mep:8443/{route}"
        self.assertEqual(body, {"uris": [gateway], "addresses": None, "alternative": None})
        self.assertEqual(response.headers.getRawHeaders("x-cache"), ["MEP"])
        self.assertEqual(response.headers.getRawHeaders("age"), ["0"])

    def test_all_instances(self) -> None:
        """?all=true lists every instance with its state and endpoint."""
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin?all=true")
        self.assertEqual(code, 200)
        self.assertEqual(body[0]["state"], "ACTIVE")
        self.assertRegex(body[0]["serInstanceId"], "^[0-9a-f]{32}$")

    def test_unknown_name_404(self) -> None:
        """A name the MEP never heard of (its 400 errorCode 400012) is a 404."""
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/nothere")
        self.assertEqual((code, body["error"]), (404, "service not found"))

    def test_known_without_instances_404(self) -> None:
        """A name with no instance left (MEP 200 []) is a 404 too."""
        sid = self.sid("httpbin")
        self.registry.deregister(self.registry.services[sid].app_instance_id, sid)
        code, _, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 404)

    def test_no_active_instance(self) -> None:
        """Only SUSPENDED instances: 404 naming the states."""
        sid = self.sid("httpbin")
        self.registry.set_state(sid, "SUSPENDED")
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual((code, body["states"]), (404, ["SUSPENDED"]))

    def test_unreachable_without_cache_503(self) -> None:
        """The MEP unreachable and nothing cached: 503."""
        self.fault(kind="discovery", drop=True)
        code, body, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 503)
        self.assertIn("cannot be reached", body["error"])

    def test_other_mep_refusal_502(self) -> None:
        """A MEP 4xx other than not-found is a 502."""
        self.fault(kind="discovery", status=400, body={"title": "bad"})
        code, _, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 502)

    def test_hostile_names(self) -> None:
        """Names outside the MEP's rules are 400s, never reach the MEP, and are escaped."""
        for raw in ("a%26b", "..%2Fx", "%E4%B8%AD", "a" * 129, "a%20b", "x%3Fser_name%3Dy", "-a"):
            code, body, _ = self.get_json(self.api, f"{ENDPOINT}/{raw}")
            self.assertEqual(code, 400, raw)
            self.assertIn("invalid service name", body["error"])
        self.assertEqual(self.discovery_calls, [])

    def test_name_is_escaped_in_mep_query(self) -> None:
        """The MEP query carries the name percent-encoded, whatever it holds."""
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        d = ensureDeferred(self.client.discover("a b&ser_name=x/ü"))
        self.settle()
        self.successResultOf(d)
        self.assertEqual(
            [r.query for r in self.emulator.requests if r.kind == "discovery"],
            ["ser_name=httpbin", "ser_name=a%20b%26ser_name%3Dx%2F%C3%BC"],
        )

    def test_404_405_json(self) -> None:
        """Unknown routes 404 and wrong methods 405, both JSON."""
        self.assertEqual(self.get_json(self.api, "/nope")[0], 404)
        response, raw = self.request(self.api, "POST", "/mep-agent/v1/token")
        self.assertEqual(response.code, 405)
        self.assertIn(b"method not allowed", raw)

    def test_no_secret_in_bodies(self) -> None:
        """No error body contains a credential."""
        self.fault(kind="discovery", status=400, body={"detail": SECRETS[2]})
        for path in (f"{ENDPOINT}/httpbin", f"{ENDPOINT}/a%26b", "/nope"):
            _, raw = self.request(self.api, "GET", path)
            for secret in SECRETS:
                self.assertNotIn(secret.encode(), raw)


class CacheTests(ApiTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.build((spec("httpbin"),), ttl=30, stale=300)
        self.start()

    def test_hit_within_ttl(self) -> None:
        """A second lookup within the TTL is served from the cache with its age."""
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.advance(10, step=5)
        code, _, response = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders("x-cache"), ["CACHE"])
        self.assertEqual(response.headers.getRawHeaders("age"), ["10"])
        self.assertEqual(self.discovery_calls, ["httpbin"])

    def test_refetched_after_ttl(self) -> None:
        """After the TTL the MEP is asked again."""
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.advance(30, step=5)
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(self.discovery_calls, ["httpbin", "httpbin"])

    def test_stale_if_error(self) -> None:
        """While the MEP fails, the old answer is served for up to ttl + stale seconds."""
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.fault(kind="discovery", status=503, count=10)
        self.advance(100, step=10)
        code, _, response = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders("x-cache"), ["STALE"])
        self.advance(230, step=10)
        code, _, _ = self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(code, 503)

    def test_notification_invalidates(self) -> None:
        """An availability notification for a name drops its cache entry."""
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        note = {
            "notificationType": "SerAvailabilityNotification",
            "serviceReferences": [{"serName": "httpbin", "changeType": "REMOVED"}],
        }
        response, _ = self.request(self.ops, "POST", NOTIFICATIONS, json=note)
        self.assertEqual(response.code, 204)
        self.get_json(self.api, f"{ENDPOINT}/httpbin")
        self.assertEqual(self.discovery_calls, ["httpbin", "httpbin"])


class CoalescingTests(SynchronousTestCase):
    def test_concurrent_misses_share_one_request(self) -> None:
        """Concurrent lookups of one name make one MEP request and all get its answer."""
        from twisted.internet.defer import Deferred, ensureDeferred
        from twisted.internet.task import Clock

        pending: list[Deferred[Discovered]] = []

        def fetch(name: str) -> Deferred[Discovered]:
            d: Deferred[Discovered] = Deferred()
            pending.append(d)
            return d

        cache = DiscoveryCache(fetch, Clock())
        lookups = [ensureDeferred(cache.lookup("svc")) for _ in range(3)]
        self.assertEqual(len(pending), 1)
        pending[0].callback(Discovered((ServiceInstance("1", "ACTIVE", {}),), 10))
        results = [self.successResultOf(d) for d in lookups]
        self.assertEqual({r.source for r in results}, {CacheSource.MEP})
        self.assertEqual(cache.misses, 3)

    def test_shared_failure(self) -> None:
        """A failed shared request fails every waiter."""
        from twisted.internet.defer import Deferred, ensureDeferred
        from twisted.internet.task import Clock

        pending: list[Deferred[Discovered]] = []

        def fetch(name: str) -> Deferred[Discovered]:
            pending.append(Deferred())
            return pending[-1]

        cache = DiscoveryCache(fetch, Clock())
        lookups = [ensureDeferred(cache.lookup("svc")) for _ in range(2)]
        pending[0].errback(MepError("discovery", None, "down"))
        for d in lookups:
            failure = self.failureResultOf(d, DiscoveryFailed)
            self.assertEqual(problem_for(failure.value).status, 503)


class ProtectionTests(ApiTestCase):
    def test_bearer_required_when_configured(self) -> None:
        """With an API token, requests without it get 401; with it, 200."""
        self.build(api_token=Secret("s3cret-app-token-1234"))
        self.start()
        code, _, response = self.get_json(self.api, "/mep-agent/v1/token")
        self.assertEqual(code, 401)
        self.assertTrue(response.headers.getRawHeaders("www-authenticate"))
        code, _, _ = self.get_json(
            self.api, "/mep-agent/v1/token", headers={"Authorization": "Bearer wrong"}
        )
        self.assertEqual(code, 401)
        code, _, _ = self.get_json(
            self.api,
            "/mep-agent/v1/token",
            headers={"Authorization": "Bearer s3cret-app-token-1234"},
        )
        self.assertEqual(code, 200)


class BugTests(ApiTestCase):
    def test_unexpected_error_is_json_500_and_logged(self) -> None:
        """A bug behind a route answers a JSON 500 without a traceback, and is logged."""
        self.build()
        self.start()

        async def broken(name: str) -> Discovered:
            raise RuntimeError("bug")

        self.patch(self.discovery, "_fetch", broken)
        response, raw = self.request(self.api, "GET", f"{ENDPOINT}/httpbin")
        self.assertEqual((response.code, raw), (500, b'{"error": "internal error"}'))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ApiRequestMetricTests(ApiTestCase):
    """mep_agent_api_requests_total{route,code}: every answer, the fast path's included."""

    def answers(self) -> dict[tuple[str, str], float]:
        """The counter's samples by (route, code), from GET /metrics."""
        _, raw = self.request(self.ops, "GET", "/metrics")
        return {
            (sample.labels["route"], sample.labels["code"]): sample.value
            for family in text_string_to_metric_families(raw.decode())
            for sample in family.samples
            if sample.name == "mep_agent_api_requests_total"
        }

    def test_every_answer_counted_by_route_and_status(self) -> None:
        """Fast and routed answers alike, by route and folded status; 0 before any."""
        self.build((spec("httpbin"),))
        self.start()
        self.assertEqual(self.answers(), {("token", "200"): 0, ("endpoint", "200"): 0})
        for _ in range(2):
            self.request(self.api, "GET", "/mep-agent/v1/token")  # fast
            self.request(self.api, "GET", f"{ENDPOINT}/httpbin")  # a miss, then fast
            self.request(self.api, "GET", f"{ENDPOINT}/nosuch")  # routed, then cached
        self.request(self.api, "POST", "/mep-agent/v1/token")  # 405, folded
        self.request(self.api, "GET", "/mep-agent/v1/termination")  # off: 404
        self.request(self.api, "GET", "/mep-agent/v1/nowhere")
        self.assertEqual(
            self.answers(),
            {
                ("token", "200"): 2,
                ("token", "4xx"): 1,
                ("endpoint", "200"): 2,
                ("endpoint", "404"): 2,
                ("termination", "404"): 1,
                ("other", "404"): 1,
            },
        )

    def test_refusals_before_the_routes_are_counted(self) -> None:
        """A 401 (wrong API token) and a 412 (no token yet) are counted on their route."""
        self.fault(kind="token", status=503, count=100)
        self.build(api_token=Secret("s3cret-app-token-1234"))
        self.start()
        auth = {"Authorization": "Bearer s3cret-app-token-1234"}
        self.request(self.api, "GET", "/mep-agent/v1/token")
        self.request(self.api, "GET", "/mep-agent/v1/token", headers=auth)
        answers = self.answers()
        self.assertEqual((answers[("token", "401")], answers[("token", "412")]), (1, 1))

    def test_a_parked_query_is_counted_once_answered(self) -> None:
        """A blocking query counts nothing while it waits, and once when it is answered."""
        self.build((spec("httpbin"),))
        self.start()
        self.request(self.api, "GET", f"{ENDPOINT}/httpbin")
        d = self.api.get(
            f"http://127.0.0.1{ENDPOINT}/httpbin?wait=5s", headers={"X-Mep-Agent-Index": "1"}
        )
        self.advance(4)
        self.assertNoResult(d)
        self.assertEqual(self.answers()[("endpoint", "200")], 1)
        self.advance(1)
        self.assertEqual(self.successResultOf(d).code, 200)
        self.assertEqual(self.answers()[("endpoint", "200")], 2)

    def test_the_fast_path_looks_no_label_up(self) -> None:
        """Fast answers increment children made once: no labels() lookup per request."""
        self.build((spec("httpbin"),))
        self.start()
        self.request(self.api, "GET", f"{ENDPOINT}/httpbin")  # the miss: routed

        def no_lookup(*labels: str) -> Any:
            raise AssertionError(f"labels{labels} looked up on the fast path")

        self.patch(self.agent_api._observe.requests, "labels", no_lookup)
        for _ in range(3):
            self.assertEqual(self.request(self.api, "GET", "/mep-agent/v1/token")[0].code, 200)
            self.assertEqual(self.request(self.api, "GET", f"{ENDPOINT}/httpbin")[0].code, 200)
        self.assertEqual(self.answers()[("token", "200")], 3)
        self.assertEqual(self.answers()[("endpoint", "200")], 1 + 3)  # the miss, then fast
