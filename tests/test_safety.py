"""
Hostile clients and files: undecodable paths and odd Host headers answered in
JSON by both doors alike, pipelining without reading, connection floods from one peer,
YAML expansion bombs, half-written configuration files, parked queries at stop.
"""

from __future__ import annotations

import json
from typing import Any

import yaml
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import IResource

from mep_agent.web.site import serve

from .agent_harness import ApiTestCase, spec
from .helpers import data_text
from .test_tap import TapTestCase

TOKEN = b"/mep-agent/v1/token"
ENDPOINT = b"/mep-agent/v1/endpoint/httpbin"


def parse_answer(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    """(status, headers in lower case, body) of the first HTTP/1.1 answer in C{raw}."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body[: int(headers.get("content-length", "0"))]


class WireTestCase(ApiTestCase):
    """Sends raw HTTP/1.1 requests through the hardened site, as a client on the wire would."""

    def wire(self, resource: IResource, request: bytes) -> tuple[int, dict[str, str], Any]:
        site = serve(resource, self.clock)
        channel = site.buildProtocol(("127.0.0.1", 40000))
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.dataReceived(request)
        self.settle()
        status, headers, body = parse_answer(transport.value())
        channel.connectionLost(None)
        return status, headers, json.loads(body) if body else None

    def get(self, resource: IResource, path: bytes, host: bytes = b"127.0.0.1") -> Any:
        return self.wire(resource, b"GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host))


class UndecodablePathTests(WireTestCase):
    def test_percent_ff_is_a_json_400_on_both_listeners(self) -> None:
        """A path that is not UTF-8 once percent-decoded: JSON 400, logged without a traceback."""
        self.build((spec("httpbin"),))
        self.start()
        for resource, path in (
            (self.front, b"/mep-agent/v1/endpoint/%ff"),
            (self.front, b"/mep-agent/v1/%ff"),
            (self.ops_resource, b"/readyz%ff"),
            (self.ops_resource, b"/%c3%28"),
        ):
            status, headers, body = self.get(resource, path)
            self.assertEqual(status, 400, path)
            self.assertEqual(headers["content-type"], "application/json", path)
            self.assertEqual(body["error"], "bad request")
        self.assertEqual(self.flushLoggedErrors(), [])


class HostAgreementTests(WireTestCase):
    def test_fast_path_and_routes_agree_on_host(self) -> None:
        """Every Host gets the same status from the fast path as from the routes alone."""
        self.build((spec("httpbin"),))
        self.start()
        self.get(self.front, ENDPOINT)  # cached: the next one takes the fast path
        routes = self.front._routed  # the routes behind the fast path, on their own
        for host in (b"127.0.0.1", b"localhost:8080", b"a..b", b"x" * 300, b"\xff", b"[::1]"):
            for path in (TOKEN, ENDPOINT):
                fast = self.get(self.front, path, host)
                routed = self.get(routes, path, host)
                self.assertEqual(fast[0], routed[0], (host, path))
                self.assertEqual(fast[1]["content-type"], "application/json")
        self.assertEqual(self.get(self.front, TOKEN, b"a..b")[0], 400)
        self.assertEqual(self.get(self.front, TOKEN, b"x" * 300)[0], 400)
        self.assertEqual(self.flushLoggedErrors(), [])


class ParkedQueriesAtStopTests(ApiTestCase):
    def test_parked_queries_answered_503_when_the_agent_stops(self) -> None:
        """Stopping answers every parked blocking query with a JSON 503, at once."""
        from mep_agent.web.api import ParkedQueries

        self.build((spec("httpbin"),))
        self.start()
        self.get_json(self.api, "/mep-agent/v1/endpoint/httpbin")
        url = "http://127.0.0.1/mep-agent/v1/endpoint/httpbin?wait=60s"
        parked = [self.api.get(url, headers={"X-Mep-Agent-Index": "1"}) for _ in range(3)]
        self.settle()
        for d in parked:
            self.assertNoResult(d)
        stopper = ParkedQueries(self.agent_api)
        stopper.startService()
        stopper.stopService()
        self.settle()
        for d in parked:
            response = self.successResultOf(d)
            self.assertEqual(response.code, 503)
            self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
            body = json.loads(self.successResultOf(self.api.content(response)))
            self.assertEqual(body, {"error": "the agent is stopping"})
        # A blocking query that arrives while stopping is answered at once, not parked.
        late = self.api.get(url, headers={"X-Mep-Agent-Index": "1"})
        self.settle()
        self.assertEqual(self.successResultOf(late).code, 200)
        self.assertEqual(len(self.agent_api.discovery_waits), 0)


def bombed_services() -> str:
    """A YAML alias bomb inside implSpecificInfo (tests/data/, used by the benchmark too)."""
    return data_text("alias_bomb_app_instance_info.yaml")


class YamlBombTests(SynchronousTestCase):
    def test_bomb_refused_without_expanding_it(self) -> None:
        """A kilobyte of nested aliases is refused at once, naming the file."""
        from mep_agent.config import model
        from mep_agent.config.errors import ConfigError

        error = self.assertRaises(ConfigError, model.load_yaml, "f.yaml", bombed_services())
        self.assertEqual(error.where, "f.yaml")
        self.assertIn("expands to more than 100000 YAML nodes", error.problem)

    def test_anchors_that_reuse_a_block_still_work(self) -> None:
        """An anchor reused a few times (a shared transportInfo) loads as before."""
        from mep_agent.config import model

        text = "t: &t {id: t1, name: REST}\na: *t\nb: [*t, *t]\n"
        self.assertEqual(model.load_yaml("f", text), yaml.safe_load(text))

    def test_alias_to_itself_refused(self) -> None:
        """A node that contains itself through an alias is refused, with its position."""
        from mep_agent.config import model
        from mep_agent.config.errors import ConfigError

        for text in ("a: &a [1, *a]\n", "a: &a {k: *a}\n"):
            error = self.assertRaises(ConfigError, model.load_yaml, "f.yaml", text)
            self.assertEqual(error.problem, "line 1, column 4: an alias refers to itself")

    def test_bomb_in_services_refused_before_expansion(self) -> None:
        """The bomb under implSpecificInfo is refused by the services parser too."""
        from mep_agent.config import model
        from mep_agent.config.errors import ConfigError

        text = bombed_services()
        self.assertLess(len(text), 1024)
        error = self.assertRaises(
            ConfigError, model.parse_app_instance_info, "info.yaml", text, True
        )
        self.assertIn("expands to more than", error.problem)

    def test_oversized_text_refused_before_parsing(self) -> None:
        """A text past the bound is refused without being parsed."""
        from mep_agent.config import model
        from mep_agent.config.errors import ConfigError

        text = "a: " + "x" * model.MAX_YAML_CHARACTERS
        error = self.assertRaises(ConfigError, model.load_yaml, "f.yaml", text)
        self.assertIn("longer than", error.problem)

    def test_oversized_file_never_read_whole(self) -> None:
        """The start-up file reader refuses a file past its bound with an OSError."""
        import errno

        from mep_agent import tap

        path = self.mktemp()
        with open(path, "wb") as f:
            f.truncate(tap.MAX_FILE_BYTES + 10)
        error = self.assertRaises(OSError, tap.read_file, path)
        self.assertEqual(error.errno, errno.EFBIG)


class YamlBombAtStartTests(TapTestCase):
    def test_check_refuses_the_bomb_in_one_line(self) -> None:
        """--check (and so the start) exits with one line naming the alias, no traceback."""
        self.write("app_instance_info.yaml", bombed_services())
        error = self.assertRaises(SystemExit, self.make, "--check")
        message = str(error.code)
        self.assertEqual(len(message.splitlines()), 1)
        self.assertIn("mep-agent: configuration error: ", message)
        self.assertIn("expands to more than 100000 YAML nodes", message)
        self.assertEqual(self.stdout.getvalue(), "")

    def test_app_conf_bomb_refused_too(self) -> None:
        """app_conf.yaml goes through the same loader: an alias there is refused as well."""
        self.write("app_conf.yaml", bombed_services())
        error = self.assertRaises(SystemExit, self.make, "--check")
        self.assertIn("expands to more than", str(error.code))


class UnreadSocket(StringTransport):
    """
    A socket whose peer reads nothing until L{drain}: writes pile up, and past C{bound}
    bytes the producer is paused, as Twisted's TCP transport pauses it when its send buffer
    fills. The peer may send only while the transport is not paused (producerState).
    """

    bound = 64 * 1024
    blocked = False

    def write(self, data: bytes) -> None:
        super().write(data)
        if not self.blocked and len(self.value()) > self.bound and self.producer is not None:
            self.blocked = True
            self.producer.pauseProducing()

    def drain(self) -> bytes:
        data: bytes = self.value()
        self.clear()
        if self.blocked and self.producer is not None:
            self.blocked = False
            self.producer.resumeProducing()
        return data


class BackPressureTests(ApiTestCase):
    REQUEST = b"GET /mep-agent/v1/token HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    READ = REQUEST * (64 * 1024 // len(REQUEST))  # one full socket read of requests

    def connect(self) -> tuple[Any, UnreadSocket]:
        """A running agent's API and a client connection whose peer reads nothing yet."""
        self.build((spec("httpbin"),))
        self.start()
        channel = serve(self.front, self.clock).buildProtocol(("127.0.0.1", 40000))
        transport = UnreadSocket()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, None)
        return channel, transport

    def test_pipelining_without_reading_is_bounded(self) -> None:
        """A client pipelining /token without reading gets no more answers queued than a bound."""
        channel, transport = self.connect()
        sent = 0
        for _ in range(20):  # the peer keeps sending whenever the agent reads
            if transport.producerState == "paused":
                break
            channel.dataReceived(self.READ)
            sent += self.READ.count(b"GET ")
        self.assertEqual(transport.producerState, "paused", "reading stopped")
        queued = len(transport.value())
        self.assertLess(queued, 256 * 1024, "answers queued for a client that does not read")
        self.assertGreater(sent, 1000)

    def test_every_held_request_is_answered_once_read(self) -> None:
        """Requests held while the peer did not read are all answered once it reads."""
        channel, transport = self.connect()
        count = self.READ.count(b"GET ")
        channel.dataReceived(self.READ)
        self.assertEqual(transport.producerState, "paused")
        answers = 0
        for _ in range(count):
            answers += transport.drain().count(b"HTTP/1.1 200 OK")
            if answers == count:
                break
        self.assertEqual(answers, count)
        self.assertEqual(transport.producerState, "producing", "reading again")


class PerPeerCapTests(SynchronousTestCase):
    def test_one_peer_cannot_take_every_connection(self) -> None:
        """Past the per-peer cap a peer's connections are turned away; other peers get in."""
        from twisted.internet.task import Clock
        from twisted.web.resource import Resource

        from mep_agent.web.site import DeadlineChannel, Turnaway

        site = serve(Resource(), Clock(), max_connections=100, max_per_peer=3)
        flood = [site.buildProtocol(("10.9.9.9", n)) for n in range(5)]
        for channel in flood[:3]:
            channel.makeConnection(StringTransport())
        self.assertEqual([type(p) for p in flood[3:]], [Turnaway, Turnaway])
        probe = site.buildProtocol(("10.1.1.1", 1))
        self.assertIsInstance(probe, DeadlineChannel)
        flood[0].connectionLost(None)
        again = site.buildProtocol(("10.9.9.9", 9))
        self.assertIsInstance(again, DeadlineChannel, "a closed one freed a place")
        self.assertEqual(site.refused, 2)

    def test_header_deadline_default_is_short(self) -> None:
        """
        The default header deadline is 5 s (a slow client holds a place for no longer): the
        table's default, which is the only one (AgentConfig has none of its own).
        """
        import attrs

        from mep_agent.config.load import AgentConfig
        from mep_agent.config.settings import BY_KEY

        setting = BY_KEY["header_timeout"]
        assert setting.default is not None and setting.parse is not None
        self.assertEqual(setting.parse(setting.default, "default"), 5.0)
        self.assertIs(attrs.fields(AgentConfig).header_timeout.default, attrs.NOTHING)


class StopLeavesNothingTests(ApiTestCase):
    """SIGTERM while registrations are in flight (the first second of a pod)."""

    def test_creations_in_flight_at_stop_are_awaited_and_deleted(self) -> None:
        """POSTs under way at stop are awaited, then what they created is deleted."""
        from mep_agent.config.model import SubscriptionSpec

        self.fault(kind="register", delay=2, count=2)
        self.fault(kind="subscribe", delay=2, count=1)
        subscription = SubscriptionSpec(
            0,
            {
                "subscriptionType": "SerAvailabilityNotificationSubscription",
                "callbackReference": "http://app.local/cb",
            },
        )
        self.build((spec("a"), spec("b")), subscriptions=(subscription,))
        self.start()
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))
        self.stop()  # the MEP carries the POSTs out; the agent then deletes the results
        self.assertEqual((self.registry.services, self.registry.subscriptions), ({}, {}))
        self.assertEqual(self.requests("deregister"), [204, 204])
        self.assertEqual(self.requests("unsubscribe"), [204])

    def test_the_wait_is_bounded(self) -> None:
        """A POST slower than --shutdown-timeout does not hold the stop."""
        self.fault(kind="register", delay=60, count=1)
        self.build((spec("a"),))
        self.start()
        started = self.clock.seconds()
        self.stop()
        self.assertLessEqual(self.clock.seconds() - started, 5.1)  # --shutdown-timeout
