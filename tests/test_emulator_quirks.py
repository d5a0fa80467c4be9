"""
Tests of what the emulator reproduces of the real platforms (EdgeGallery's Kong, mepauth and
mepserver; AdvantEDGE), each switchable, through its HTTP API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from mep_emulator.app import CHAOS_STATUSES
from mep_emulator.kong import MinuteLimit
from mep_emulator.memory import DEV_APP, OTHER_APP, InMemoryMep

from .emulator_client import (
    BASE,
    CONTROL,
    MGMT,
    SUPPORT,
    EmulatorTestCase,
    Reply,
    etsi_bearer,
    service,
)

APP = DEV_APP.app_instance_id
RATE_LIMITED = b'{"message":"API rate limit exceeded"}'


class QuirkTestCase(EmulatorTestCase):
    def discover(self, headers: dict[str, str], query: str = "") -> Reply:
        return self.call("GET", f"{MGMT}/services{query}", headers=headers)

    def token_reply(self, app: Any = DEV_APP) -> Reply:
        return self.call("POST", f"{BASE}/mep/token", headers=self.token_headers(app))

    def state(self) -> Any:
        return self.call("GET", f"{CONTROL}/state").json

    def terminate(self, **options: Any) -> None:
        self.terminate_app(APP, **options)


class RateLimitTests(QuirkTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.mep.clock.advance(30)  # half-way through the calendar minute 0

    def test_off_by_default(self) -> None:
        """Without a limit set, 150 Mp1 and 150 token requests in one minute all pass."""
        headers = self.bearer()
        for _ in range(150):
            self.assertEqual(self.discover(headers).code, 200)
            self.assertEqual(self.token_reply().code, 200)

    def test_shared_by_all_apps_per_calendar_minute(self) -> None:
        """Over rate_limit Mp1 requests of all apps in one calendar minute: Kong's 429."""
        self.assertEqual(self.settings(rate_limit=3).json["rate_limit"], 3)
        mine, other = self.bearer(), self.bearer(OTHER_APP)
        self.assertEqual([self.discover(h).code for h in (mine, other, mine)], [200] * 3)
        refused = self.discover(other)
        self.assertEqual((refused.code, refused.raw), (429, RATE_LIMITED))
        self.assertEqual(
            refused.headers.getRawHeaders("content-type"), ["application/json; charset=utf-8"]
        )
        names = {name.lower() for name, _ in refused.headers.getAllRawHeaders()}
        self.assertNotIn(b"retry-after", names)
        self.assertFalse([n for n in names if b"ratelimit" in n])
        self.assertEqual(self.register(service(), headers=mine).code, 429)
        self.mep.clock.advance(30)  # a new calendar minute, 30 s after the first request
        self.assertEqual(self.discover(mine).code, 200)
        kinds = [(r["kind"], r["status"]) for r in self.state()["requests"]]
        self.assertIn(("register", 429), kinds)

    def test_refused_requests_are_not_counted(self) -> None:
        """Requests answered 429 use none of the minute's budget: a raised limit admits them."""
        self.settings(rate_limit=2)
        headers = self.bearer()
        codes = [self.discover(headers).code for _ in range(5)]
        self.assertEqual(codes, [200, 200, 429, 429, 429])
        self.settings(rate_limit=4)
        codes = [self.discover(headers).code for _ in range(3)]
        self.assertEqual(codes, [200, 200, 429])

    def test_tokens_kong_refuses_are_not_counted(self) -> None:
        """A request Kong's jwt plugin refuses (401) is answered before the limit is counted."""
        self.settings(rate_limit=1)
        for _ in range(3):
            self.assertEqual(self.discover({"Authorization": "Bearer x.y.z"}).code, 401)
        headers = self.bearer()
        self.assertEqual([self.discover(headers).code for _ in range(2)], [200, 429])

    def test_token_route_limited_apart(self) -> None:
        """POST /mep/token has its own per-minute limit; Mp1 requests do not use it up."""
        self.settings(rate_limit=1, token_rate_limit=2)
        headers = self.bearer()  # the first token request
        self.assertEqual(self.discover(headers).code, 200)
        self.assertEqual(self.token_reply().code, 200)
        refused = self.token_reply()
        self.assertEqual((refused.code, refused.raw), (429, RATE_LIMITED))
        self.mep.clock.advance(30)
        self.assertEqual(self.token_reply(OTHER_APP).code, 200)

    def test_token_limit_per_client_address(self) -> None:
        """The token route's limit counts each client address apart (it has no consumer)."""
        limit = MinuteLimit(1)
        self.assertEqual((limit.admit("127.0.0.1", 0), limit.admit("127.0.0.2", 1)), (None, None))
        self.assertEqual(limit.admit("127.0.0.1", 45.5), 15)

    def test_retry_after_when_asked(self) -> None:
        """With retry_after, a 429 says when the calendar minute ends."""
        self.settings(rate_limit=1, retry_after=True)
        headers = self.bearer()
        self.discover(headers)
        self.mep.clock.advance(15)
        refused = self.discover(headers)
        self.assertEqual(refused.code, 429)
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["15"])

    def test_set_at_creation(self) -> None:
        """InMemoryMep.create takes the limits (the twistd options pass them the same way)."""
        self.mep = InMemoryMep.create(rate_limit=1, token_rate_limit=2, retry_after=True)
        settings = self.call("GET", f"{CONTROL}/settings").json
        self.assertEqual(
            (settings["rate_limit"], settings["token_rate_limit"], settings["retry_after"]),
            (1, 2, True),
        )
        headers = self.bearer()
        self.assertEqual([self.discover(headers).code for _ in range(2)], [200, 429])

    def test_etsi_face_has_no_kong(self) -> None:
        """The ETSI face is not behind Kong: its requests are never rate-limited."""
        self.mep = InMemoryMep.create(dialect="etsi", rate_limit=1, token_rate_limit=1)
        headers = {}
        for _ in range(3):
            headers = etsi_bearer(self)
        ready = f"{SUPPORT}/applications/{APP}/confirm_ready"
        self.assertEqual(self.call("POST", ready, {"indication": "READY"}, headers).code, 204)
        self.assertEqual([self.discover(headers).code for _ in range(3)], [200] * 3)

    def test_twistd_options(self) -> None:
        """twistd mep-emulator takes --rate-limit, --token-rate-limit and --retry-after."""
        from mep_emulator import tap

        options = tap.Options()
        options.parseOptions(["--rate-limit", "1000", "--token-rate-limit", "100"])
        tap.validate(options)
        self.assertEqual((options["rate-limit"], options["retry-after"]), (1000, "kong"))
        for argv, part in (
            (["--rate-limit", "-1"], "--rate-limit"),
            (["--retry-after", "never"], "--retry-after"),
        ):
            options = tap.Options()
            options.parseOptions(argv)
            self.assertIn(part, self.assertRaises(SystemExit, tap.validate, options).code)


class SettingsTests(QuirkTestCase):
    def test_bad_settings_change_nothing(self) -> None:
        """An unknown setting or a bad value answers 400 and applies none of the body."""
        bodies: list[Any] = [
            {"rate_limit": -1},
            {"rate_limit": True},
            {"refuse_updates": 500},
            {"termination_link": "etsi"},
            {"retry_after": 1},
            {"nope": 1},
            [],
            {"token_lifetime": 5, "retry_after": "no"},
        ]
        for body in bodies:
            self.assertEqual(self.call("POST", f"{CONTROL}/settings", body).code, 400, body)
        self.assertEqual(self.call("GET", f"{CONTROL}/settings").json["token_lifetime"], 3600)
        self.assertEqual(self.state()["settings"]["retry_after"], False)


class RefusedUpdateTests(QuirkTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.headers = self.bearer()
        self.sid = self.register(service(), headers=self.headers).json["serInstanceId"]
        self.url = f"{MGMT}/applications/{APP}/services/{self.sid}"

    def test_not_implemented(self) -> None:
        """refuse_updates 501: every PUT of a service is 501 until the setting is null."""
        self.settings(refuse_updates=501)
        for _ in range(2):
            reply = self.call("PUT", self.url, service(), self.headers)
            self.assertEqual((reply.code, reply.json["status"]), (501, 501))
        self.assertEqual(self.call("GET", self.url, headers=self.headers).code, 200)
        self.settings(refuse_updates=None)
        self.assertEqual(self.call("PUT", self.url, service(), self.headers).code, 200)

    def test_method_not_allowed(self) -> None:
        """refuse_updates 405: a PUT is refused before any token check, with Allow."""
        self.settings(refuse_updates=405)
        reply = self.call("PUT", self.url, service())
        self.assertEqual(reply.code, 405)
        self.assertEqual(reply.headers.getRawHeaders("allow"), ["GET, DELETE"])
        self.assertEqual(self.call("DELETE", self.url, headers=self.headers).code, 204)


class RequiredServicesTests(QuirkTestCase):
    def setUp(self) -> None:
        super().setUp()
        other = self.bearer(OTHER_APP)
        for name in ("svc-a", "svc-b"):
            self.assertEqual(self.register(service(name), OTHER_APP, other).code, 201)

    def provision(self, **body: Any) -> Reply:
        return self.call("POST", f"{CONTROL}/provision", body)

    def names(self, query: str = "") -> Any:
        reply = self.discover(self.bearer(), query)
        if reply.code != 200:
            return reply.code, reply.json.get("errorCode")
        return sorted(s["serName"] for s in reply.json)

    def test_every_service_by_default(self) -> None:
        """An app provisioned without requiredServices discovers every name."""
        self.assertEqual(self.names(), ["svc-a", "svc-b"])
        self.assertEqual(self.state()["apps"][0]["requiredServices"], None)

    def test_only_required_names(self) -> None:
        """Discovery answers only the app's requiredServices: a known name outside them is []."""
        reply = self.provision(app_instance_id=APP, required_services=["svc-a"])
        self.assertEqual((reply.code, reply.json["required_services"]), (200, ["svc-a"]))
        self.assertEqual(self.names("?ser_name=svc-a"), ["svc-a"])
        self.assertEqual(self.names("?ser_name=svc-b"), [])
        self.assertEqual(self.names(""), ["svc-a"])
        self.assertEqual(self.names("?scope_of_locality=MEC_HOST"), ["svc-a"])
        self.assertEqual(self.names("?ser_name=nope"), (400, "400012"))
        self.assertEqual(self.token_reply().code, 200)  # the AK/SK are unchanged

    def test_service_discovery_means_all(self) -> None:
        """A required name holding "service-discovery" lets the app discover every name."""
        self.provision(required_services=["my-service-discovery"])
        self.assertEqual(self.names(), ["svc-a", "svc-b"])
        self.provision(required_services=[])
        self.assertEqual(self.names(), [])
        self.provision(required_services=None)
        self.assertEqual(self.names(), ["svc-a", "svc-b"])

    def test_bad_provisioning(self) -> None:
        """Provisioning refuses a bad app id, AK, SK or list, and another app's AK."""
        for body, status in (
            ({"app_instance_id": "X"}, 400),
            ({"ak": "short"}, 400),
            ({"sk": ""}, 400),
            ({"required_services": "svc-a"}, 400),
            ({"required_services": [1]}, 400),
            ({"ak": OTHER_APP.access_key}, 409),
        ):
            self.assertEqual(self.provision(**body).code, status, body)


class TerminationCredentialTests(QuirkTestCase):
    def subscribe_and_register(self, headers: dict[str, str]) -> str:
        body = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/term",
            "appInstanceId": APP,
        }
        url = f"{SUPPORT}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, body, headers).code, 201)
        reply = self.register(service("svc-a"), headers=headers)
        link: str = reply.json["_links"]["self"]["liveness"]
        return f"{BASE}{link}"

    def test_the_termination_deletes_the_ak(self) -> None:
        """
        mepserver's request deletes the AK once it deleted the app's services (the kit:
        within the 0.38 s MECM waited), unconfirmed: then it is unknown, 401 as mepauth.
        """
        headers = self.bearer()
        liveness = self.subscribe_and_register(headers)
        self.terminate(maxGracefulTimeout=5)
        self.assertEqual(self.token_reply().code, 200)  # the service's gateway clean-up first
        self.mep.advance(0.2)
        refused = self.token_reply()
        self.assertEqual((refused.code, refused.json), (401, "Invalid access or signature."))
        self.assertEqual(self.state()["retired"], [APP])
        # as on the kit: the old token still passes Kong; the instances are gone, READY
        # is nothing mepserver keeps, and the app discovers nothing without a mepauth record
        beat = self.call("PUT", liveness, {"state": "ACTIVE"}, headers)
        self.assertEqual((beat.code, beat.json["status"]), (404, 3))
        ready = self.call(
            "POST", f"{SUPPORT}/applications/{APP}/confirm_ready", {"indication": "READY"}, headers
        )
        self.assertEqual(ready.code, 204)
        self.register(service("svc-a"), OTHER_APP)
        self.assertEqual(self.discover(headers, "?ser_name=svc-a").json, [])

    def test_confirmation_deletes_the_ak_and_provisioning_restores_it(self) -> None:
        """A confirmed termination deletes the AK too; /_emulator/provision puts it back."""
        headers = self.bearer()
        self.subscribe_and_register(headers)
        self.terminate()
        url = f"{SUPPORT}/applications/{APP}/confirm_termination"
        confirm = self.call("POST", url, {"operationAction": "TERMINATING"}, headers)
        self.assertEqual(confirm.code, 204)
        self.mep.advance(0.2)
        self.assertEqual(self.token_reply().code, 401)
        self.assertEqual(self.token_reply(OTHER_APP).code, 200)
        reply = self.call("POST", f"{CONTROL}/provision", {"app_instance_id": APP})
        self.assertEqual(
            (reply.json["ak"], reply.json["sk"]), (DEV_APP.access_key, DEV_APP.secret_key)
        )
        self.assertEqual(self.token_reply().code, 200)
        self.assertEqual(self.state()["retired"], [])

    def test_switched_off(self) -> None:
        """With termination_deletes_credentials false, the AK outlives the termination."""
        self.settings(termination_deletes_credentials=False)
        self.terminate(maxGracefulTimeout=1)
        self.mep.advance(2)
        self.assertEqual(self.token_reply().code, 200)


class LivenessIntervalTests(QuirkTestCase):
    def test_any_interval_asked_is_sixty(self) -> None:
        """Any non-zero livenessInterval asked is granted 60, as EdgeGallery's mepserver does."""
        headers = self.bearer()
        for asked in (1, 5, 59, 61, 3600):
            reply = self.register(service(f"s{asked}", interval=asked), headers=headers)
            self.assertEqual(reply.json["livenessInterval"], 60, asked)
        self.assertEqual(
            self.register(service("s0", interval=0), headers=headers).json["livenessInterval"], 0
        )


class AdvantedgeTerminationLinkTests(QuirkTestCase):
    def setUp(self) -> None:
        self.mep = InMemoryMep.create(dialect="etsi")
        self.headers = etsi_bearer(self)
        support = f"{SUPPORT}/applications/{APP}"
        self.assertEqual(
            self.call(
                "POST", f"{support}/confirm_ready", {"indication": "READY"}, self.headers
            ).code,
            204,
        )
        body = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/term",
            "appInstanceId": APP,
        }
        self.assertEqual(
            self.call("POST", f"{support}/subscriptions", body, self.headers).code, 201
        )

    def confirm_link(self) -> str:
        self.terminate(maxGracefulTimeout=30)
        href: str = self.mep.notifier.delivered[-1]["body"]["_links"]["confirmTermination"]["href"]
        return href

    def test_standard_by_default(self) -> None:
        """By default the link is the app's own confirm_termination, and it answers 204."""
        href = self.confirm_link()
        self.assertEqual(
            urlsplit(href).path, f"/mep/mec_app_support/v1/applications/{APP}/confirm_termination"
        )
        reply = self.call("POST", href, {"operationAction": "TERMINATING"}, self.headers)
        self.assertEqual(reply.code, 204)

    def test_advantedge_link_answers_404(self) -> None:
        """termination_link advantedge: the link lacks applications/{id}/ and answers 404."""
        self.assertEqual(self.settings(termination_link="advantedge").code, 200)
        href = self.confirm_link()
        self.assertEqual(urlsplit(href).path, "/mep/mec_app_support/v1/confirm_termination")
        reply = self.call("POST", href, {"operationAction": "TERMINATING"}, self.headers)
        self.assertEqual((reply.code, reply.raw), (404, b"404 page not found\n"))
        self.assertEqual(
            reply.headers.getRawHeaders("content-type"), ["text/plain; charset=utf-8"]
        )
        url = f"{SUPPORT}/applications/{APP}/confirm_termination"
        reply = self.call("POST", url, {"operationAction": "TERMINATING"}, self.headers)
        self.assertEqual(reply.code, 204)


class ChaosTests(QuirkTestCase):
    def test_a_share_of_mp1_requests_refused_at_random(self) -> None:
        """chaos 0.5: about half the Mp1 requests refused (seeded), token requests never."""
        self.assertEqual(self.settings(chaos=0.5).code, 200)
        headers = self.bearer()
        statuses = [self.call("GET", f"{MGMT}/services", headers=headers).code for _ in range(200)]
        refused = [s for s in statuses if s != 200]
        self.assertTrue(60 <= len(refused) <= 140, len(refused))
        self.assertTrue(set(refused) <= set(CHAOS_STATUSES))
        self.assertGreater(len(set(refused)), 3)  # a mix, not one status
        for _ in range(20):
            self.assertEqual(self.token_reply().code, 200)  # the token route: never
