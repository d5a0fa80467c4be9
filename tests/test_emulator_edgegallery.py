"""
The EdgeGallery face where the interop run found EdgeGallery's mepserver (EdgeGallery/mep
971f2d0) departing from what the emulator did, through the HTTP API; each test names the
behaviour it holds. (mm5.py's termination is tested in test_emulator_mm5.py.)
"""

from __future__ import annotations

from typing import Any

from mep_emulator.memory import DEV_APP

from .emulator_client import BASE, CONTROL, MGMT, EmulatorTestCase, Reply, service
from .emulator_client import SUPPORT as SUPPORT_URL

APP = DEV_APP.app_instance_id
SERVICES = f"{MGMT}/applications/{APP}/services"
SERVICES_PATH = f"/mep/mec_service_mgmt/v1/applications/{APP}/services"

#: mepserver's answer to a body that breaks any of its rules (status 14, one detail for all).
VALIDATION_FAILED = {
    "title": "Request parameter error",
    "status": 14,
    "detail": "request param validation failed",
}


class EdgeGalleryTestCase(EmulatorTestCase):
    """The EdgeGallery face with the app's token at hand."""

    def setUp(self) -> None:
        super().setUp()
        self.headers = self.bearer()

    def made(self, body: dict[str, Any]) -> str:
        """Register C{body}; its serInstanceId."""
        reply = self.register(body, headers=self.headers)
        self.assertEqual(reply.code, 201, reply.raw)
        sid: str = reply.json["serInstanceId"]
        return sid

    def beat(self, sid: str) -> Reply:
        return self.call("PUT", f"{SERVICES}/{sid}/liveness", {"state": "ACTIVE"}, self.headers)


class ProblemTests(EdgeGalleryTestCase):
    def test_heartbeat_on_an_inactive_service(self) -> None:
        """mepserver's 409 to a heartbeat on an INACTIVE service, word for word."""
        sid = self.made(service())
        self.assertEqual(
            self.control("POST", f"/services/{sid}/state", {"state": "INACTIVE"}).code, 200
        )
        reply = self.beat(sid)
        self.assertEqual(reply.code, 409)
        self.assertEqual(
            reply.json,
            {
                "title": "Service is in INACTIVE state",
                "status": 18,
                "detail": "The service is in INACTIVE state",
            },
        )

    def test_a_broken_rule(self) -> None:
        """
        Any rule broken: mepserver's one detail, whatever the field, and the title of status
        14 (its titles follow the status).
        """
        for body in (service(serName="a b"), service(state="SUSPENDED")):
            reply = self.register(body, headers=self.headers)
            self.assertEqual(
                (reply.code, reply.json),
                (400, VALIDATION_FAILED),
            )

    def test_a_type_error(self) -> None:
        """A member of the wrong type: status 4, "unmarshal request body error"."""
        reply = self.register(service(livenessInterval="60"), headers=self.headers)
        self.assertEqual(
            reply.json,
            {"title": "Bad Request", "status": 4, "detail": "unmarshal request body error"},
        )

    def test_the_service_cap(self) -> None:
        """The 51st service: status 12 and its title."""
        for i in range(50):
            self.made(service(f"s{i}"))
        reply = self.register(service("s50"), headers=self.headers)
        self.assertEqual(reply.code, 400)
        self.assertEqual(reply.json["title"], "Service register failed")
        self.assertEqual(reply.json["detail"], "registered services have achieve the limit")


class EveryUpdateTests(EdgeGalleryTestCase):
    """mepserver notifies every UPDATE of an instance as ATTRIBUTES_CHANGED."""

    def setUp(self) -> None:
        super().setUp()
        self.subscribe({"serNames": ["svc1"]}, "http://127.0.0.1:8080/cb")
        self.subscribe({"serNames": ["other"]}, "http://127.0.0.1:8080/other")

    def subscribe(self, criteria: dict[str, Any], callback: str) -> None:
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": callback,
            "filteringCriteria": criteria,
        }
        url = f"{MGMT}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, body, self.headers).code, 201)

    def changes(self) -> list[tuple[str, str, str]]:
        """Every notification so far: (callback, changeType, state)."""
        return [
            (
                n["callback"],
                n["body"]["serviceReferences"][0]["changeType"],
                n["body"]["serviceReferences"][0]["state"],
            )
            for n in self.mep.notifier.delivered
        ]

    def test_a_registration_is_added_then_changed(self) -> None:
        """ADDED, then at once ATTRIBUTES_CHANGED, both linking the service."""
        sid = self.made(service())
        cb = "http://127.0.0.1:8080/cb"
        self.assertEqual(
            self.changes(), [(cb, "ADDED", "ACTIVE"), (cb, "ATTRIBUTES_CHANGED", "ACTIVE")]
        )
        links = [n["body"]["serviceReferences"][0]["link"] for n in self.mep.notifier.delivered]
        self.assertEqual(links, [{"href": f"/mec_service_mgmt/v1/services/{sid}"}] * 2)

    def test_every_heartbeat(self) -> None:
        """Each heartbeat of an ACTIVE service: one more ATTRIBUTES_CHANGED."""
        sid = self.made(service())
        for _ in range(3):
            self.mep.clock.advance(59)
            self.assertEqual(self.beat(sid).code, 204)
        kinds = [change for _, change, _ in self.changes()]
        self.assertEqual(kinds, ["ADDED"] + ["ATTRIBUTES_CHANGED"] * 4)

    def test_a_revival_is_one_notification(self) -> None:
        """A SUSPENDED service's heartbeat: one ATTRIBUTES_CHANGED, ACTIVE."""
        sid = self.made(service())
        self.mep.advance(64)
        self.assertEqual(self.changes()[-1][1:], ("ATTRIBUTES_CHANGED", "SUSPENDED"))
        before = len(self.changes())
        self.assertEqual(self.beat(sid).code, 204)
        self.assertEqual(
            self.changes()[before:], [(self.changes()[0][0], "ATTRIBUTES_CHANGED", "ACTIVE")]
        )

    def test_an_update(self) -> None:
        """A PUT: one ATTRIBUTES_CHANGED."""
        sid = self.made(service())
        before = len(self.changes())
        reply = self.call("PUT", f"{SERVICES}/{sid}", service(version="2.0"), self.headers)
        self.assertEqual(reply.code, 200)
        self.assertEqual([c for _, c, _ in self.changes()[before:]], ["ATTRIBUTES_CHANGED"])

    def test_refused_heartbeats_notify_nothing(self) -> None:
        """A heartbeat refused (409 on INACTIVE) changes nothing, so tells nothing."""
        sid = self.made(service())
        self.control("POST", f"/services/{sid}/state", {"state": "INACTIVE"})
        before = len(self.changes())
        self.assertEqual(self.beat(sid).code, 409)
        self.assertEqual(self.changes()[before:], [])


#: The interop kit's two services (conf/app_instance_info.yaml): alpha with URIs and a full
#: category, beta with an address only.
ALPHA = {
    "serName": "egtest-alpha",
    "serCategory": {
        "href": "/example/catalogue1",
        "id": "id12345",
        "name": "RNI",
        "version": "1.0",
    },
    "version": "1.0.0",
    "state": "ACTIVE",
    "transportInfo": {
        "id": "transport1",
        "name": "REST",
        "description": "alpha over REST",
        "type": "REST_HTTP",
        "protocol": "HTTP",
        "version": "2.0",
        "endpoint": {"uris": ["http://alpha-svc.interop:8080/"]},
        "security": {},
    },
    "serializer": "JSON",
    "scopeOfLocality": "MEC_HOST",
    "consumedLocalOnly": True,
    "isLocal": True,
    "livenessInterval": 60,
}
BETA = {
    "serName": "egtest-beta",
    "version": "1.0.0",
    "state": "ACTIVE",
    "transportInfo": {
        "id": "transport2",
        "name": "status",
        "type": "REST_HTTP",
        "protocol": "HTTP",
        "version": "1.1",
        "endpoint": {"addresses": [{"host": "beta-svc.interop", "port": 8080}]},
        "security": {},
    },
    "serializer": "JSON",
    "livenessInterval": 60,
}
GATEWAY = "https://mep-api-gw.mep:8443/"


class ReadingTestCase(EdgeGalleryTestCase):
    """Reads of one service, and its gateway URI."""

    def route(self, sid: str) -> str:
        """The service's one gateway URI."""
        (name,) = self.mep.emulator.registry.services[sid].routes.values()
        return GATEWAY + name

    def read(self, sid: str) -> dict[str, Any]:
        reply = self.call("GET", f"{SERVICES}/{sid}", headers=self.headers)
        self.assertEqual(reply.code, 200)
        body: dict[str, Any] = reply.json
        return body


class PresentationTests(ReadingTestCase):
    """What mepserver answers is not what was registered (presentation: mepserver)."""

    def test_the_default(self) -> None:
        """The EdgeGallery face presents services as mepserver does unless told otherwise."""
        self.assertEqual(self.control("GET", "/settings").json["presentation"], "mepserver")
        self.assertEqual(self.control("POST", "/settings", {"presentation": "x"}).code, 400)

    def test_a_read_as_the_kit_showed_it(self) -> None:
        """
        GET of alpha: its endpoint the gateway's URI (the serName and 20 hex digits),
        transportId "", addresses and alternative null, grantTypes [""] for security {},
        and the app in _links (the kit's s3 GET, word for word but the ids).
        """
        sid = self.made(ALPHA)
        uri = self.route(sid)
        self.assertRegex(uri, r"^https://mep-api-gw\.mep:8443/egtest-alpha[0-9a-f]{20}$")
        self.assertEqual(
            self.read(sid),
            {
                "serInstanceId": sid,
                "serName": "egtest-alpha",
                "serCategory": ALPHA["serCategory"],
                "version": "1.0.0",
                "state": "ACTIVE",
                "transportId": "",
                "transportInfo": {
                    "id": "transport1",
                    "name": "REST",
                    "description": "alpha over REST",
                    "type": "REST_HTTP",
                    "protocol": "HTTP",
                    "version": "2.0",
                    "endpoint": {"uris": [uri], "addresses": None, "alternative": None},
                    "security": {"oAuth2Info": {"grantTypes": [""], "tokenEndpoint": ""}},
                },
                "serializer": "JSON",
                "scopeOfLocality": "MEC_HOST",
                "consumedLocalOnly": True,
                "isLocal": True,
                "livenessInterval": 60,
                "_links": {
                    "self": {"liveness": f"{SERVICES_PATH}/{sid}/liveness"},
                    "appInstanceId": APP,
                },
            },
        )

    def test_an_address_reads_back_as_a_gateway_uri(self) -> None:
        """
        beta, registered with an address only: read back with a gateway URI and no address
        (Kong refused to make that service on the kit: the URI leads nowhere), an empty
        category; the list and discovery show the same.
        """
        sid = self.made(BETA)
        mepserver = self.mep.emulator.registry.services[sid]
        self.assertEqual(list(mepserver.routes), ["HTTP://beta-svc.interop:8080/"])
        read = self.read(sid)
        self.assertEqual(
            read["transportInfo"]["endpoint"],
            {"uris": [self.route(sid)], "addresses": None, "alternative": None},
        )
        self.assertEqual(read["serCategory"], {"href": "", "id": "", "name": "", "version": ""})
        self.assertEqual(read["transportInfo"]["description"], "")
        listed = self.call("GET", SERVICES, headers=self.headers).json
        found = self.call("GET", f"{MGMT}/services?ser_name=egtest-beta", headers=self.headers)
        self.assertEqual(listed, [read])
        self.assertEqual(found.json, [read])
        self.assertEqual(
            self.call("GET", f"{MGMT}/services/{sid}", headers=self.headers).json, read
        )

    def test_the_registration_answer_is_the_body_decoded(self) -> None:
        """
        201: the body as Go decoded it -- every member, empty ones "" or null, the
        registered endpoint (not yet the gateway's), grantTypes null, appInstanceId "".
        """
        reply = self.register(BETA, headers=self.headers)
        sid = reply.json["serInstanceId"]
        self.assertEqual(
            reply.json,
            {
                "serInstanceId": sid,
                "serName": "egtest-beta",
                "serCategory": {"href": "", "id": "", "name": "", "version": ""},
                "version": "1.0.0",
                "state": "ACTIVE",
                "transportId": "",
                "transportInfo": {
                    "id": "transport2",
                    "name": "status",
                    "description": "",
                    "type": "REST_HTTP",
                    "protocol": "HTTP",
                    "version": "1.1",
                    "endpoint": {
                        "uris": None,
                        "addresses": [{"host": "beta-svc.interop", "port": 8080}],
                        "alternative": None,
                    },
                    "security": {"oAuth2Info": {"grantTypes": None, "tokenEndpoint": ""}},
                },
                "serializer": "JSON",
                "scopeOfLocality": "MEC_HOST",
                "consumedLocalOnly": True,
                "isLocal": True,
                "livenessInterval": 60,
                "_links": {
                    "self": {"liveness": f"{SERVICES_PATH}/{sid}/liveness"},
                    "appInstanceId": "",
                },
            },
        )

    def test_grant_types_split_on_a_comma_they_were_not_joined_with(self) -> None:
        """One grant type reads back as given; two as one string with a full-width comma."""
        one = {"grantTypes": ["OAUTH2_CLIENT_CREDENTIALS"], "tokenEndpoint": "https://mep/token"}
        two = dict(one, grantTypes=["OAUTH2_CLIENT_CREDENTIALS", "OAUTH2_IMPLICIT_GRANT"])
        for given, shown in (
            (one, ["OAUTH2_CLIENT_CREDENTIALS"]),
            (two, ["OAUTH2_CLIENT_CREDENTIALS\uff0cOAUTH2_IMPLICIT_GRANT"]),
        ):
            body = service(f"s{len(shown[0])}")
            body["transportInfo"]["security"] = {"oAuth2Info": given}
            read = self.read(self.made(body))
            self.assertEqual(read["transportInfo"]["security"]["oAuth2Info"]["grantTypes"], shown)

    def test_registered_presentation(self) -> None:
        """presentation: registered echoes the body as registered, as the emulator did."""
        self.assertEqual(
            self.control("POST", "/settings", {"presentation": "registered"}).code, 200
        )
        sid = self.made(ALPHA)
        read = self.read(sid)
        self.assertEqual(read["transportInfo"], ALPHA["transportInfo"])
        self.assertNotIn("transportId", read)
        self.assertEqual(read["_links"]["appInstanceId"], APP)


class OwnPresentationRefusedTests(ReadingTestCase):
    """mepserver refuses its own read-back on PUT; its registration answer it takes."""

    def test_a_read_sent_back(self) -> None:
        """
        A GET answer PUT back with only the state changed: 400 for grantTypes [""], as a
        third party's first try on the kit; with security {} instead, it is taken.
        """
        sid = self.made(ALPHA)
        read = dict(self.read(sid), state="INACTIVE")
        reply = self.call("PUT", f"{SERVICES}/{sid}", read, self.headers)
        self.assertEqual(
            (reply.code, reply.json),
            (400, VALIDATION_FAILED),
        )
        self.assertEqual(self.mep.emulator.registry.services[sid].state, "ACTIVE")
        read["transportInfo"]["security"] = {}
        self.assertEqual(self.call("PUT", f"{SERVICES}/{sid}", read, self.headers).code, 200)
        self.assertEqual(self.mep.emulator.registry.services[sid].state, "INACTIVE")

    def test_the_registration_answer_sent_back(self) -> None:
        """The 201 answer PUT back (grantTypes null): 200, and its answer is that body."""
        reply = self.register(ALPHA, headers=self.headers)
        sid = reply.json["serInstanceId"]
        put = self.call("PUT", f"{SERVICES}/{sid}", reply.json, self.headers)
        self.assertEqual(put.code, 200)
        self.assertEqual(put.json, reply.json)


class RouteNameTests(ReadingTestCase):
    """An update that names another endpoint URI gets a new gateway route."""

    def test_sending_back_the_gateway_uri_renames_the_route(self) -> None:
        """
        A PUT of the read-back (security {}), so naming the gateway URI as endpoint: a new
        route for it, the old one gone -- the URI a consumer discovers changes at each such
        update (the kit's admin log: PUT egtest-alpha6aca..., DELETE egtest-alpha6764...).
        """
        sid = self.made(ALPHA)
        shown = []
        for _ in range(3):
            read = self.read(sid)
            shown.append(read["transportInfo"]["endpoint"]["uris"][0])
            read["transportInfo"]["security"] = {}
            self.assertEqual(self.call("PUT", f"{SERVICES}/{sid}", read, self.headers).code, 200)
        shown.append(self.route(sid))
        self.assertEqual(len(set(shown)), 4)
        routes = self.mep.emulator.registry.services[sid].routes
        self.assertEqual(list(routes), [shown[2]])  # the route now leads to the last URI

    def test_the_same_endpoint_keeps_its_route(self) -> None:
        """A PUT of the registered body (the agent's own, a new state): the same route."""
        sid = self.made(ALPHA)
        before = self.route(sid)
        body = dict(ALPHA, state="INACTIVE")
        self.assertEqual(self.call("PUT", f"{SERVICES}/{sid}", body, self.headers).code, 200)
        self.assertEqual(self.route(sid), before)

    def test_back_to_the_registered_endpoint_is_another_route(self) -> None:
        """
        After a PUT of the gateway URI, the agent's own body (its endpoint) again: yet
        another route, as the agent's repair on the kit (egtest-alpha86b1...).
        """
        sid = self.made(ALPHA)
        first = self.route(sid)
        read = self.read(sid)
        read["transportInfo"]["security"] = {}
        self.call("PUT", f"{SERVICES}/{sid}", read, self.headers)
        self.assertEqual(self.call("PUT", f"{SERVICES}/{sid}", ALPHA, self.headers).code, 200)
        routes = self.mep.emulator.registry.services[sid].routes
        self.assertEqual(list(routes), ["http://alpha-svc.interop:8080/"])
        self.assertNotIn(self.route(sid), (first, read["transportInfo"]["endpoint"]["uris"][0]))


class RestartTests(EdgeGalleryTestCase):
    """mepserver restarted: with its store (etcd) kept, or without it (/restart's default)."""

    def setUp(self) -> None:
        super().setUp()
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/cb",
            "filteringCriteria": {"serNames": ["svc1"]},
        }
        url = f"{MGMT}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, body, self.headers).code, 201)

    def listed(self) -> tuple[int, int]:
        """How many services and subscriptions the app's lists answer (404: none)."""
        services = self.call("GET", SERVICES, None, self.headers)
        subs = self.call("GET", f"{MGMT}/applications/{APP}/subscriptions", None, self.headers)
        return (
            len(services.json) if services.code == 200 else 0,
            len(subs.json["_links"]["subscriptions"]) if subs.code == 200 else 0,
        )

    def test_keeping_the_store_keeps_everything(self) -> None:
        """{"keep": true}: services, liveness and subscriptions survive, discovery too."""
        sid = self.made(service())
        self.assertEqual(self.control("POST", "/restart", {"keep": True}).code, 204)
        self.assertEqual(self.listed(), (1, 1))
        self.mep.clock.advance(30)
        self.assertEqual(self.beat(sid).code, 204)
        found = self.call("GET", f"{MGMT}/services?ser_name=svc1", None, self.headers)
        self.assertEqual([s["serInstanceId"] for s in found.json], [sid])

    def test_without_the_store_everything_is_forgotten(self) -> None:
        """No body, null or {"keep": false}: services and subscriptions gone, heartbeats 404."""
        for raw in (b"", b"null", b'{"keep": false}'):
            with self.subTest(raw=raw):
                sid = self.made(service())
                self.assertEqual(self.call("POST", f"{CONTROL}/restart", raw=raw).code, 204)
                self.assertEqual(self.listed(), (0, 0))
                self.assertEqual(self.beat(sid).code, 404)

    def test_keeping_the_store_loses_a_termination_under_way(self) -> None:
        """
        A restart 0.05 s into a termination: the request's deletions and the worker stop
        where they were; the rest of the services, the subscriptions and the AK/SK stay
        for good; a confirmation is still taken (its record is stored), nothing follows.
        """
        subscription = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/term",
            "appInstanceId": APP,
        }
        url = f"{SUPPORT_URL}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, subscription, self.headers).code, 201)
        for name in ("svc1", "svc2", "svc3"):
            self.made(service(name))
        self.assertEqual(self.control("POST", f"/terminate/{APP}", {}).code, 200)
        self.mep.clock.advance(0.05)
        self.assertEqual(self.control("POST", "/restart", {"keep": True}).code, 204)
        self.mep.advance(60)
        self.assertEqual(self.listed(), (2, 1))
        self.assertEqual(len(self.mep.emulator.registry.subscriptions), 2)
        token = self.call("POST", f"{BASE}/mep/token", headers=self.token_headers())
        self.assertEqual(token.code, 200)
        confirm = f"{SUPPORT_URL}/applications/{APP}/confirm_termination"
        body = {"operationAction": "TERMINATING"}
        self.assertEqual(self.call("POST", confirm, body, self.headers).code, 204)
        self.assertEqual(len(self.mep.emulator.registry.subscriptions), 2)
        (termination,) = self.control("GET", "/state").json["terminations"]
        self.assertEqual(termination["abandonedAt"], 0.05)
        self.assertEqual(termination["result"], "failure: restarted")

    def test_keep_must_be_a_boolean(self) -> None:
        """Another body is refused with a 400, and nothing restarts."""
        sid = self.made(service())
        for raw in (b'{"keep": "yes"}', b"[true]", b"keep"):
            with self.subTest(raw=raw):
                self.assertEqual(self.call("POST", f"{CONTROL}/restart", raw=raw).code, 400)
        self.assertEqual(self.beat(sid).code, 204)
