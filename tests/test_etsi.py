"""
The ETSI MEC 011 v2.2.1 dialect: the agent against the emulator's ETSI face on a Clock
(OAuth2 client credentials, confirm_ready first, absolute links, PATCH liveness, the
repair that changes only the state, transports, plain-string names), the link resolver,
and every body the agent sends validated against the MEC 011 OpenAPI documents.
"""

from __future__ import annotations

import json
import os
from functools import cache
from typing import Any, cast

import yaml
from openapi_schema_validator import OAS30Validator, OAS31Validator
from twisted.internet.defer import ensureDeferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.config.model import ServiceSpec, SubscriptionSpec, parse_app_instance_info
from mep_agent.core.token import TokenState
from mep_agent.mp1 import links
from mep_agent.mp1.auth import MepAuth
from mep_agent.mp1.client import Registration
from mep_agent.mp1.credentials import Credentials, OAuth2Client
from mep_agent.mp1.http import MepHttp
from mep_agent.mp1.wire import MepWire
from mep_agent.util.secret import Secret
from mep_emulator.dev import DEV_APP, DEV_CLIENT_ID, DEV_CLIENT_SECRET
from mep_emulator.memory import InMemoryMep

from .agent_harness import ETSI_BEAT, ETSI_BEAT_EVERY, AgentTestCase
from .helpers import DATA

ROOT = "/sbx1/mep"
BASE = "https://127.0.0.1:8443"
MGMT = f"{ROOT}/mec_service_mgmt/v1"
TOKEN_URL = f"{BASE}/oauth2/token"
SPECS = os.path.join(DATA, "specs")


def etsi_service(name: str = "rnis.v2", interval: int = 60, **extra: Any) -> dict[str, Any]:
    """A ServiceInfoPost valid under MEC 011 v2.2.1."""
    body: dict[str, Any] = {
        "serName": name,
        "version": "2.0",
        "state": "ACTIVE",
        "serializer": "JSON",
        "livenessInterval": interval,
        "transportInfo": {
            "id": "t1",
            "name": "REST",
            "type": "REST_HTTP",
            "protocol": "HTTP",
            "version": "1.1",
            "endpoint": {"uris": [f"http://{name}.local:80/"]},
            "security": {},
        },
    }
    body.update(extra)
    return body


def etsi_spec(name: str = "rnis.v2", **extra: Any) -> ServiceSpec:
    return ServiceSpec(name, etsi_service(name, **extra))


class EtsiTestCase(AgentTestCase):
    """The agent on the emulator's ETSI face under ROOT, with OAuth2 client credentials."""

    secret = DEV_CLIENT_SECRET
    public_url: str | None = None

    def setUp(self) -> None:
        self.use_mep(
            InMemoryMep.create(
                clock=MemoryReactorClock(),
                dialect="etsi",
                api_root=ROOT,
                public_url=self.public_url,
                liveness_interval=self.liveness,
            )
        )

    liveness: int | None = 60

    def environ(self) -> dict[str, str]:
        environ = super().environ()
        del environ["AK"], environ["SK"]
        return dict(
            environ,
            MEP_AGENT_DIALECT="etsi",
            MEP_AGENT_API_ROOT=ROOT,
            MEP_AGENT_AUTH="oauth2",
            MEP_AGENT_OAUTH2_TOKEN_URL=TOKEN_URL,
            MEP_AGENT_OAUTH2_CLIENT_ID=DEV_CLIENT_ID,
            MEP_AGENT_OAUTH2_CLIENT_SECRET=self.secret,
        )

    def sent(self, kind: str) -> list[Any]:
        """The JSON bodies the emulator received for requests of C{kind}."""
        return [json.loads(r.body) for r in self.emulator.requests if r.kind == kind and r.body]


class OAuth2Tests(EtsiTestCase):
    def test_client_credentials(self) -> None:
        """The token comes from the OAuth2 endpoint; Mp1 calls carry it."""
        self.build((etsi_spec(),))
        self.start()
        self.assertEqual(self.requests("token"), [200])
        self.assertEqual(self.tokens.state, TokenState.VALID)
        self.assertEqual(self.requests("register"), [201])

    def test_expiry_and_refresh(self) -> None:
        """expires_in is honoured: refreshed at 80 % of it."""
        self.emulator.token_lifetime = 100
        self.build()
        self.start()
        self.advance(79.5)
        self.assertEqual(self.emulator.tokens_issued, 1)
        self.advance(0.5)
        self.assertEqual(self.emulator.tokens_issued, 2)

    def test_401_refreshes_once(self) -> None:
        """A Mp1 401 replaces the token once and retries the call."""
        self.fault(kind="register", status=401, body={"title": "Unauthorized"})
        self.build((etsi_spec(),))
        self.start()
        self.advance(1)
        self.assertEqual(self.requests("register"), [401, 201])
        self.assertEqual(self.emulator.tokens_issued, 2)

    def test_wrong_secret_is_a_credentials_refusal(self) -> None:
        """invalid_client (401) is a refusal of the credentials: the long wait, no storm."""
        self.secret = "wrong"
        self.build()
        self.start()
        self.advance(100)
        self.assertEqual(self.requests("token"), [401])
        self.assertEqual(self.tokens.state, TokenState.REJECTED)


class StartupTests(EtsiTestCase):
    def test_confirm_ready_before_registration(self) -> None:
        """confirm_ready goes first, so the platform accepts the registrations."""
        self.build((etsi_spec("a"), etsi_spec("b")))
        self.start()
        kinds = [r.kind for r in self.emulator.requests if r.kind in ("confirm_ready", "register")]
        self.assertEqual(kinds, ["confirm_ready", "register", "register"])
        self.assertEqual(self.requests("register"), [201, 201])

    def test_nothing_before_confirm_ready_completes(self) -> None:
        """confirm_ready failing: no registration or subscription goes out until it passes."""
        self.fault(kind="confirm_ready", status=503)
        subscription = SubscriptionSpec(
            0,
            {
                "subscriptionType": "SerAvailabilityNotificationSubscription",
                "callbackReference": "http://127.0.0.1:9090/cb",
            },
        )
        self.build((etsi_spec(),), subscriptions=(subscription,))
        self.start()
        self.assertEqual((self.requests("register"), self.requests("subscribe")), ([], []))
        self.advance(2)  # the 503 paused every request 2 s; then confirm_ready alone
        self.assertEqual(self.requests("confirm_ready"), [503, 204])
        self.assertEqual((self.requests("register"), self.requests("subscribe")), ([], []))
        self.advance(6)  # then the sync's three lists and both creations, one a second
        self.assertEqual((self.requests("register"), self.requests("subscribe")), ([201], [201]))


class ReadyLostTests(EtsiTestCase):
    """READY is state the platform can lose (an empty store): a 403 "not ready" on any call."""

    def test_not_ready_on_a_heartbeat_confirms_and_beats_at_once(self) -> None:
        """One confirm_ready, then the beat again at once; not counted as a failed beat."""
        self.build((etsi_spec("a"), etsi_spec("b")))
        self.start()
        self.registry.ready.clear()  # the platform forgot READY, kept the services
        self.advance(ETSI_BEAT + ETSI_BEAT_EVERY)  # both services beat (they are staggered)
        self.assertEqual(self.requests("confirm_ready"), [204, 204], "one for both services")
        beats = self.requests("heartbeat")
        self.assertEqual(beats[:2], [403, 204], "the beat again at once, answered")
        self.assertEqual(set(beats[2:]), {204})
        self.assertEqual([k.beats.failed for k in self.holdings.services.values()], [0, 0])

    def test_not_ready_on_a_sync_is_not_a_wait(self) -> None:
        """A sync refused "not ready": READY confirmed, a lost subscription made at once."""
        subscription = SubscriptionSpec(
            0,
            {
                "subscriptionType": "SerAvailabilityNotificationSubscription",
                "callbackReference": "http://127.0.0.1:9090/cb",
            },
        )
        self.build((etsi_spec("a"),), subscriptions=(subscription,))
        self.start()
        self.registry.ready.clear()
        self.registry.subscriptions.clear()
        self.reconciler.soon("a test")
        self.advance(6)  # READY is confirmed again no sooner than 5 s after the last time
        # the sync: "not ready"; READY confirmed; the lists read again: gone; made at once
        kinds = [(r.kind, r.status) for r in self.emulator.requests]
        at = kinds.index(("sync", 403))
        self.assertEqual(
            kinds[at + 1 : at + 4], [("confirm_ready", 204), ("sync", 200), ("sync", 200)]
        )
        self.assertEqual(kinds[at + 4], ("subscribe", 201))
        created = [r for r in self.emulator.requests if r.kind == "subscribe"]
        ready = [r for r in self.emulator.requests if r.kind == "confirm_ready"]
        self.assertEqual(len(ready), 2)
        self.assertEqual(len(self.registry.subscriptions), 1)
        self.assertLess(
            list(self.emulator.requests).index(ready[-1]),
            list(self.emulator.requests).index(created[-1]),
        )

    def test_flush_recovers_within_one_beat(self) -> None:
        """An empty store (services, subscriptions and READY gone): whole again at the beat."""
        self.build((etsi_spec("a"), etsi_spec("b")))
        self.start()
        response = self.successResultOf(
            self.mep.http.post("https://127.0.0.1:8443/_emulator/flush")
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(self.registry.services, {})
        self.advance(ETSI_BEAT + ETSI_BEAT_EVERY)  # each service finds out at its next beat
        names = sorted(r.body["serName"] for r in self.registry.services.values())
        self.assertEqual(names, ["a", "b"])
        self.assertIn("891c2bba-f1f2-40bd-a97e-9bebbafcc964", self.registry.ready)

    def test_a_mep_that_keeps_saying_not_ready_is_no_storm(self) -> None:
        """READY confirmed, yet every beat "not ready": a confirm every few seconds at most."""
        self.build((etsi_spec("a"),))
        self.start()
        self.fault(
            kind="heartbeat",
            status=403,
            count=1000,
            body={"title": "Forbidden", "status": 403, "detail": "App Instance not ready."},
        )
        self.advance(ETSI_BEAT + 60, step=1)
        self.assertLessEqual(len(self.requests("confirm_ready")), 1 + 60 // 5 + 1)


class LivenessTests(EtsiTestCase):
    def test_patch_on_absolute_link(self) -> None:
        """Heartbeats PATCH the absolute _links.liveness.href, about once per interval."""
        self.build((etsi_spec(),))
        self.start()
        registration = self.registration("rnis.v2")
        self.assertTrue(registration.liveness_path)
        self.assertTrue(str(registration.liveness_path).startswith(f"{BASE}{MGMT}/"))
        self.assertEqual(registration.liveness_method, "PATCH")
        self.advance(ETSI_BEAT + 3 * ETSI_BEAT_EVERY)
        beats = [r for r in self.emulator.requests if r.kind == "heartbeat"]
        self.assertEqual([(r.method, r.status) for r in beats], [("PATCH", 204)] * 4)
        self.assertEqual(self.sent("heartbeat")[0], {"state": "ACTIVE"})

    def test_patch_media_type_fallback(self) -> None:
        """A 415 to the PATCH is retried once as application/merge-patch+json, then kept."""
        self.build((etsi_spec(),))
        self.start()
        self.fault(kind="heartbeat", status=415, body={"title": "Unsupported Media Type"})
        self.advance(ETSI_BEAT)
        self.assertEqual(self.requests("heartbeat"), [415, 204])
        self.assertEqual(self.client._patch_type, "application/merge-patch+json")
        self.assertTrue(self.keeper("rnis.v2").healthy)

    def test_put_refused_by_the_platform(self) -> None:
        """Forcing PUT on an ETSI platform fails (405), which is why auto follows the link."""
        self.build((etsi_spec(),), heartbeat_method="PUT")
        self.start()
        self.advance(ETSI_BEAT)
        self.assertEqual(self.requests("heartbeat"), [405])

    def test_no_link_no_heartbeats(self) -> None:
        """Without a liveness link (interval 0) nothing is sent."""
        self.build((etsi_spec(interval=0),))
        self.start()
        self.advance(200)
        self.assertEqual(self.requests("heartbeat"), [])

    def test_inactive_repair_sends_the_servers_info(self) -> None:
        """409: PUT the ServiceInfo the MEP returned, only state changed (the server's rule)."""
        self.build((etsi_spec(),), sync_interval=0)
        self.start()
        sid = self.sid("rnis.v2")
        self.registry.set_state(sid, "INACTIVE")
        self.advance(ETSI_BEAT)
        self.assertEqual(self.requests("heartbeat"), [409])
        self.assertEqual(self.requests("update"), [200])
        put = self.sent("update")[0]
        self.assertEqual(put["serInstanceId"], sid)
        self.assertIn("liveness", put["_links"])
        self.assertEqual(self.registry.services[sid].state, "ACTIVE")
        self.advance(ETSI_BEAT)
        self.assertEqual(self.requests("heartbeat"), [409, 204])


class LinkTests(SynchronousTestCase):
    base = "https://mep.example:8443"

    def test_absolute_and_relative(self) -> None:
        """Absolute links stay; absolute paths resolve against the MEP's origin."""
        same = f"{self.base}/x/services/1/liveness"
        self.assertEqual(links.resolve(self.base, "/x", same, False), same)
        self.assertEqual(
            links.resolve(self.base, "/x", "/x/a", False), "https://mep.example:8443/x/a"
        )
        self.assertEqual(
            links.resolve("http://mep.example", "", "http://MEP.example:80/a", False),
            "http://MEP.example:80/a",
        )

    def test_edgegallery_paths_lie_under_the_root(self) -> None:
        """mepserver's paths without the gateway root get it; paths with it stay."""
        self.assertEqual(
            links.resolve(self.base, "/mep", "/mec_service_mgmt/v1/a", True),
            f"{self.base}/mep/mec_service_mgmt/v1/a",
        )
        self.assertEqual(
            links.resolve(self.base, "/mep", "/mep/mec_service_mgmt/v1/a", True),
            f"{self.base}/mep/mec_service_mgmt/v1/a",
        )

    def test_foreign_links_refused(self) -> None:
        """Another host, port or scheme is refused; so is an unusable reference."""
        for href in (
            "https://evil.example:8443/x",
            "https://mep.example:9443/x",
            "http://mep.example:8443/x",
            "//evil.example/x",
        ):
            self.assertRaises(links.ForeignLink, links.resolve, self.base, "", href, False)
        self.assertRaises(ValueError, links.resolve, self.base, "", "a b", False)


class ForeignLinkTests(EtsiTestCase):
    def test_foreign_liveness_link_not_followed(self) -> None:
        """A registration whose liveness link points elsewhere: no beat is sent there."""
        answer = etsi_service()
        answer.update(
            serInstanceId="0123456789abcdef0123456789abcdef",
            _links={"liveness": {"href": "https://evil.example/liveness"}},
        )
        self.fault(kind="register", status=201, raw=json.dumps(answer))
        self.build((etsi_spec(),), sync_interval=0)  # the MEP does not hold that answer's id
        from twisted.logger import ILogObserver, globalLogPublisher

        events: list[Any] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.start()
        registration: Registration = self.registration("rnis.v2")
        self.assertIsNone(registration.liveness_path)
        self.assertEqual(registration.refused_link, "https://evil.example/liveness")
        self.assertEqual(len([e for e in events if e.get("event") == "service.link_refused"]), 1)
        self.advance(200)
        self.assertEqual(self.requests("heartbeat"), [])


class PublicOriginLinkTests(SynchronousTestCase):
    def test_public_origin_resolved_to_the_dialed_one(self) -> None:
        """A link to a configured public origin is followed on the MEP's own origin."""
        public = frozenset({links.public_origin("https://mep.example.com")})
        resolved = links.resolve(
            "https://10.0.0.5:8443",
            "/mep",
            "https://mep.example.com:443/mep/x?a=1#f",
            False,
            public,
        )
        self.assertEqual(resolved, "https://10.0.0.5:8443/mep/x?a=1")
        for other in (
            "https://mep.example.com:8443/x",
            "http://mep.example.com/x",
            "https://evil/x",
        ):
            self.assertRaises(
                links.ForeignLink, links.resolve, "https://10.0.0.5:8443", "", other, False, public
            )

    def test_public_url_must_be_an_origin(self) -> None:
        """--mep-public-url takes origins only: no path, no credentials, http(s) only."""
        self.assertEqual(
            links.public_origin("HTTPS://Mep.Example.com/"), ("https", "mep.example.com", 443)
        )
        for bad in ("ftp://x", "https://x/mep", "https://u:p@x", "x", "https://"):
            self.assertRaises(ValueError, links.public_origin, bad)


class PublicOriginTests(EtsiTestCase):
    """A platform that builds every link from its public URL (AdvantEDGE's MEEP_HOST_URL)."""

    PUBLIC = "https://mep.public.example:9443"
    public_url = PUBLIC

    def start_with(self, public_url: str | None) -> None:
        subscription = SubscriptionSpec(
            0,
            {
                "subscriptionType": "SerAvailabilityNotificationSubscription",
                "callbackReference": "http://127.0.0.1:9090/cb",
            },
        )
        self.build(
            (etsi_spec("rnis.v2"),), subscriptions=(subscription,), mep_public_url=public_url
        )
        self.start()

    def test_without_the_setting_its_links_are_refused_and_health_says_so(self) -> None:
        """
        Links to the public origin are not followed (no beats, no delete); /healthz/mep and
        status fail a check that names the origin and the setting.
        """
        self.start_with(None)
        self.assertTrue(self.registration("rnis.v2").refused_link)
        self.advance(ETSI_BEAT + 1)
        self.assertEqual(self.requests("heartbeat"), [])
        code, health, _ = self.get_json(self.ops, "/healthz/mep")
        self.assertEqual(code, 503)
        check = health["checks"]["links"]
        self.assertEqual((check["ok"], check["refused"]), (False, [self.PUBLIC]))
        self.assertIn("--mep-public-url", check["fix"])
        _, status, _ = self.get_json(self.ops, "/mep-agent/v1/status")
        self.assertEqual(status["checks"]["links"]["refused"], [self.PUBLIC])
        self.stop()
        self.assertEqual(self.requests("unsubscribe"), [], "it cannot be deleted")

    def test_public_origin_followed_on_the_dialed_address(self) -> None:
        """--mep-public-url: beats and the subscription's delete go to the dialed MEP."""
        self.start_with(self.PUBLIC)
        registration = self.registration("rnis.v2")
        self.assertIsNone(registration.refused_link)
        self.assertTrue(str(registration.liveness_path).startswith(f"{BASE}{ROOT}/"))
        self.advance(ETSI_BEAT + 1)
        self.assertEqual(self.requests("heartbeat"), [204])
        _, health, _ = self.get_json(self.ops, "/healthz/mep")
        self.assertNotIn("links", health["checks"])
        self.stop()
        self.assertEqual(self.requests("unsubscribe"), [204])
        self.assertEqual(self.registry.subscriptions, {})


class SubscriptionTests(EtsiTestCase):
    def test_delete_on_the_absolute_link(self) -> None:
        """The subscription is deleted on the absolute link the platform gave; nothing leaks."""
        subscription = SubscriptionSpec(
            0,
            {
                "subscriptionType": "SerAvailabilityNotificationSubscription",
                "callbackReference": "http://127.0.0.1:9090/cb",
            },
        )
        self.build(subscriptions=(subscription,))
        self.start()
        held = self.holdings.subscriptions[0].held
        self.assertTrue(str(getattr(held, "url", "")).startswith(f"{BASE}{MGMT}/applications/"))
        self.stop()
        deletes = [r for r in self.emulator.requests if r.kind == "unsubscribe"]
        self.assertEqual([(r.status, r.path.startswith(MGMT)) for r in deletes], [(204, True)])
        self.assertEqual(self.registry.subscriptions, {})


class DiscoveryTests(EtsiTestCase):
    def test_plain_string_names(self) -> None:
        """rnis.v2 is a name; it is escaped in the query and found."""
        self.build((etsi_spec("rnis.v2"),))
        self.start()
        code, body, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/rnis.v2")
        self.assertEqual((code, body), (200, {"uris": ["http://rnis.v2.local:80/"]}))

    def test_name_rules(self) -> None:
        """Control characters and names past 256 characters are 400s; none reach the MEP."""
        self.build()
        self.start()
        for raw in ("a%00b", "a%0Ab", "x" * 257):
            code, body, _ = self.get_json(self.api, f"/mep-agent/v1/endpoint/{raw}")
            self.assertEqual(code, 400, raw)
        self.assertEqual(self.requests("discovery"), [])
        code, _, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/none%20such")
        self.assertEqual(code, 404)

    def test_transport_id_resolved(self) -> None:
        """A service giving only transportId gets its endpoint from GET …/transports."""
        body = etsi_service("radio")
        del body["transportInfo"]
        body["transportId"] = "rest-http-1"
        self.build((ServiceSpec("radio", body),))
        self.start()
        code, endpoint, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/radio")
        self.assertEqual((code, endpoint), (200, {"uris": ["http://gateway.example:8080/"]}))
        self.get_json(self.api, "/mep-agent/v1/endpoint/radio?all=true")
        # the transports are fetched once and kept
        transports = [r for r in self.emulator.requests if r.path.endswith("/transports")]
        self.assertEqual(len(transports), 1)

    def test_instance_without_endpoint_is_never_a_200(self) -> None:
        """A transportId the MEP no longer knows, or no transport at all: 502, never {}."""
        self.build()
        self.start()
        dropped = {"serInstanceId": "a", "serName": "radio", "state": "ACTIVE", "transportId": "x"}
        bare = {"serInstanceId": "b", "serName": "radio", "state": "ACTIVE"}
        for instances in ([dropped], [bare], [dropped, bare]):
            self.discovery.invalidate()
            self.fault(kind="discovery", status=200, body=instances)
            code, body, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/radio")
            self.assertEqual(code, 502, instances)
            self.assertIn("no endpoint", body["error"])
            listed, every, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/radio?all=true")
            self.assertEqual((listed, len(every)), (200, len(instances)))
        usable = dict(bare, serInstanceId="c", transportInfo={"endpoint": {"uris": ["http://c/"]}})
        self.discovery.invalidate()
        self.fault(kind="discovery", status=200, body=[dropped, usable])
        code, endpoint, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/radio")
        self.assertEqual((code, endpoint), (200, {"uris": ["http://c/"]}))

    def test_problem_details_404_is_not_found(self) -> None:
        """A MEP that answers 404 ProblemDetails for a name: the app gets 404."""
        self.build()
        self.start()
        self.fault(kind="discovery", status=404, body={"title": "Not Found", "status": 404})
        code, body, _ = self.get_json(self.api, "/mep-agent/v1/endpoint/x")
        self.assertEqual((code, body["error"]), (404, "service not found"))


@cache
def _spec(name: str) -> dict[str, Any]:
    with open(os.path.join(SPECS, name), encoding="utf-8") as f:
        spec: dict[str, Any] = yaml.safe_load(f)
    return spec


def validate(name: str, schema: str, body: Any) -> None:
    """Validate C{body} against C{schema} of the OpenAPI document C{name}."""
    spec = _spec(name)
    validator = OAS31Validator if spec["openapi"].startswith("3.1") else OAS30Validator
    document = {"$ref": f"#/components/schemas/{schema}", "components": spec["components"]}
    validator(document).validate(body)


V221 = "advantedge_service-mgmt_swagger_v2.2.1.yaml"
V211 = "etsi-forge_MecServiceMgmtApi_v2.1.1.yaml"
SUPPORT_V211 = "etsi-forge_MecAppSupportApi_v2.1.1.yaml"


class SpecTests(EtsiTestCase):
    """Every body the agent sends in the etsi dialect, against the MEC 011 documents."""

    def test_bodies_match_the_specs(self) -> None:
        """Registrations, the repair, beats, confirm_ready and subscriptions validate."""
        with open(
            os.path.join(os.path.dirname(DATA), "..", "conf", "app_instance_info.yaml")
        ) as f:
            sample = parse_app_instance_info("sample", f.read(), etsi=True)
        subscription = SubscriptionSpec(
            0,
            {
                "subscriptionType": "SerAvailabilityNotificationSubscription",
                "callbackReference": "http://127.0.0.1:9090/cb",
                "filteringCriteria": {"serNames": ["httpbin"], "states": ["ACTIVE"]},
            },
        )
        self.build(sample.services, subscriptions=(subscription,))
        self.start()
        sid = self.sid("httpbin")
        self.registry.set_state(sid, "INACTIVE")
        self.advance(ETSI_BEAT)
        registrations = self.sent("register")
        self.assertEqual(len(registrations), 2)
        for body in registrations:
            validate(V221, "ServiceInfoPost", body)
        for body in self.sent("update"):
            validate(V221, "ServiceInfo", body)
        for body in self.sent("heartbeat"):
            validate(V221, "ServiceLivenessUpdate", body)
        for body in self.sent("subscribe"):
            validate(V221, "SerAvailabilityNotificationSubscription", body)
        for body in self.sent("confirm_ready"):
            validate(SUPPORT_V211, "AppReadyConfirmation", body)
        self.assertEqual(len(self.sent("update")), 1)

    def test_v211_service_info(self) -> None:
        """The sample's services also fit v2.1.1's ServiceInfo (livenessInterval aside)."""
        with open(
            os.path.join(os.path.dirname(DATA), "..", "conf", "app_instance_info.yaml")
        ) as f:
            sample = parse_app_instance_info("sample", f.read(), etsi=True)
        for service in sample.services:
            body = {k: v for k, v in service.body.items() if k != "livenessInterval"}
            validate(V211, "ServiceInfo", body)

    def test_validator_catches_a_bad_body(self) -> None:
        """The check itself can fail: a transportInfo without its required members."""
        from jsonschema.exceptions import ValidationError

        body = etsi_service()
        del body["transportInfo"]["security"]
        self.assertRaises(ValidationError, validate, V221, "ServiceInfoPost", body)


class MepClientUnitTests(SynchronousTestCase):
    def test_oauth2_request_shape(self) -> None:
        """RFC 6749 4.4: form-encoded grant, client authenticated with HTTP Basic."""
        mep = InMemoryMep.create(dialect="etsi", api_root=ROOT)
        credentials = Credentials(
            None,
            None,
            Secret(DEV_APP.app_instance_id),
            OAuth2Client(TOKEN_URL, Secret(DEV_CLIENT_ID), Secret(DEV_CLIENT_SECRET), "mp1"),
        )
        wire = MepWire(MepHttp(mep.agent), mep.clock, BASE, "127.0.0.1:8443", credentials, 10)
        d = ensureDeferred(MepAuth(wire, ROOT).fetch_oauth2_token())
        mep.flush()
        token = self.successResultOf(d)
        self.assertEqual(token.expires_in, 3600)
        record = [r for r in mep.emulator.requests if r.kind == "token"][0]
        self.assertEqual(record.body, b"grant_type=client_credentials&scope=mp1")
