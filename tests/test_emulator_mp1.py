"""Tests of the emulator's mepserver: registration, liveness, discovery, subscriptions."""

from __future__ import annotations

import json
from typing import Any

from mep_emulator.memory import DEV_APP, OTHER_APP
from mep_emulator.registry import suspension_grace

from .emulator_client import MGMT, SUPPORT, EmulatorTestCase, Reply, service

APP = DEV_APP.app_instance_id


class RegistrationTests(EmulatorTestCase):
    def test_created(self) -> None:
        """Registration answers 201, a 32-hex serInstanceId, Location and liveness link."""
        reply = self.register(service("svc1", interval=10))
        self.assertEqual(reply.code, 201)
        sid = reply.json["serInstanceId"]
        self.assertRegex(sid, r"^[0-9a-f]{32}$")
        self.assertEqual(reply.headers.getRawHeaders("Location"), [f"/mep/mp1/v1/services/{sid}"])
        self.assertEqual(reply.json["livenessInterval"], 60)
        self.assertEqual(
            reply.json["_links"]["self"]["liveness"],
            f"/mep/mec_service_mgmt/v1/applications/{APP}/services/{sid}/liveness",
        )
        self.assertTrue(reply.json["isLocal"])
        self.assertEqual(reply.json["scopeOfLocality"], "MEC_HOST")

    def test_same_name_twice_two_instances(self) -> None:
        """Registering one serName twice makes two instances sharing the service id half."""
        first = self.register(service()).json["serInstanceId"]
        second = self.register(service()).json["serInstanceId"]
        self.assertNotEqual(first, second)
        self.assertEqual(first[:16], second[:16])

    def test_zero_interval(self) -> None:
        """livenessInterval 0 stays 0 and has no liveness link."""
        reply = self.register(service(interval=0))
        self.assertEqual(reply.json["livenessInterval"], 0)
        self.assertEqual(reply.json["_links"]["self"], {})

    def test_validation_rules(self) -> None:
        """mepserver's rules: type errors status 4, rule errors 14, non-objects 1."""
        cases = [
            (service(serName="a b"), 14),
            (service(serName=None), 14),
            (service(version="x" * 33), 14),
            (service(state="SUSPENDED"), 14),
            (service(serializer="YAML"), 14),
            (service(livenessInterval="60"), 4),
            (service(livenessInterval=1.5), 4),
            (service(serName=5), 4),
            (service(scopeOfLocality="X"), 14),
            (service(transportId="a_b"), 14),
            (service(transportInfo={"type": "SOAP"}), 14),
            (service(transportInfo={"endpoint": {"uris": ["rel"]}}), 14),
            (service(serCategory={"href": "relative"}), 14),
            ([1], 1),
            ("x", 1),
        ]
        for body, code in cases:
            reply = self.register(body)
            self.assertEqual((reply.code, reply.json["status"]), (400, code), body)

    def test_unknown_fields_ignored(self) -> None:
        """Unknown fields are accepted and dropped, as mepserver does."""
        self.assertEqual(self.register(service(whatever=1)).code, 201)

    def test_body_limit(self) -> None:
        """Bodies over 4096 bytes are refused."""
        reply = self.register(service(padding="x" * 5000))
        self.assertEqual(reply.code, 400)

    def test_not_json(self) -> None:
        """A body that is not JSON is an unmarshal error."""
        reply = self.call(
            "POST", f"{MGMT}/applications/{APP}/services", raw=b"{", headers=self.bearer()
        )
        self.assertEqual((reply.code, reply.json["status"]), (400, 4))

    def test_fifty_service_cap(self) -> None:
        """The 51st registration of an app is refused with status 12."""
        headers = self.bearer()
        for i in range(50):
            self.assertEqual(self.register(service(f"s{i}"), headers=headers).code, 201)
        reply = self.register(service("s50"), headers=headers)
        self.assertEqual((reply.code, reply.json["status"]), (400, 12))
        self.assertEqual(self.register(service("x"), OTHER_APP).code, 201)

    def test_update_restores_state(self) -> None:
        """PUT on a service replaces its body and state, keeping the serInstanceId."""
        headers = self.bearer()
        sid = self.register(service(), headers=headers).json["serInstanceId"]
        self.mep.emulator.registry.set_state(sid, "INACTIVE")
        reply = self.call("PUT", f"{MGMT}/applications/{APP}/services/{sid}", service(), headers)
        self.assertEqual((reply.code, reply.json["state"]), (200, "ACTIVE"))
        self.assertEqual(reply.json["serInstanceId"], sid)


class LivenessTests(EmulatorTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.headers = self.bearer()
        reply = self.register(service(), headers=self.headers)
        self.sid = reply.json["serInstanceId"]
        self.link = reply.json["_links"]["self"]["liveness"]

    def beat(
        self,
        body: Any = None,
        method: str = "PUT",
        sid: str | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        link = self.link if sid is None else self.link.replace(self.sid, sid)
        return self.call(
            method,
            f"https://127.0.0.1:8443{link}",
            body if body is not None else {"state": "ACTIVE"},
            self.headers,
            raw,
        )

    def test_heartbeat(self) -> None:
        """PUT {"state":"ACTIVE"} answers 204 and is counted."""
        self.assertEqual(self.beat().code, 204)
        self.assertEqual(self.mep.emulator.registry.services[self.sid].heartbeats, 1)

    def test_heartbeat_errors(self) -> None:
        """Unknown 404/3, bad id 400/1, empty 400/14, bad state 400/14, not JSON 400/4."""
        cases = [
            (self.beat(sid="f" * 32), 404, 3),
            (self.beat(sid="xyz"), 400, 1),
            (self.beat(raw=b""), 400, 14),
            (self.beat({"state": "INACTIVE"}), 400, 14),
            (self.beat(raw=b"{"), 400, 4),
        ]
        for reply, code, status in cases:
            self.assertEqual((reply.code, reply.json["status"]), (code, status))

    def test_inactive_conflict(self) -> None:
        """A heartbeat for an INACTIVE service answers 409 status 18."""
        self.mep.emulator.registry.set_state(self.sid, "INACTIVE")
        reply = self.beat()
        self.assertEqual((reply.code, reply.json["status"]), (409, 18))

    def test_zero_interval_service(self) -> None:
        """A heartbeat for a service registered with interval 0 answers 404 status 17."""
        sid = self.register(service("quiet", interval=0), headers=self.headers).json[
            "serInstanceId"
        ]
        reply = self.beat(sid=sid)
        self.assertEqual((reply.code, reply.json["status"]), (404, 17))

    def test_patch_only_when_configured(self) -> None:
        """PATCH is refused unless the emulator accepts it."""
        self.assertEqual(self.beat(method="PATCH").code, 405)
        self.mep.emulator.accept_patch = True
        self.assertEqual(self.beat(method="PATCH").code, 204)

    def test_suspension_and_revival(self) -> None:
        """No heartbeat for interval + grace suspends; the next heartbeat revives."""
        record = self.mep.emulator.registry.services[self.sid]
        self.assertEqual(suspension_grace(60), 3)
        self.mep.advance(63)
        self.assertEqual(record.state, "ACTIVE")
        self.mep.advance(1)
        self.assertEqual(record.state, "SUSPENDED")
        self.assertEqual(self.beat().code, 204)
        self.assertEqual(record.state, "ACTIVE")

    def test_get_liveness(self) -> None:
        """GET on the liveness link reports state and interval."""
        reply = self.call("GET", f"https://127.0.0.1:8443{self.link}", headers=self.headers)
        self.assertEqual(
            (reply.code, reply.json["state"], reply.json["interval"]), (200, "ACTIVE", 60)
        )

    def test_deregister(self) -> None:
        """DELETE answers 204, then 404; the heartbeat then answers 404."""
        url = f"{MGMT}/applications/{APP}/services/{self.sid}"
        self.assertEqual(self.call("DELETE", url, headers=self.headers).code, 204)
        self.assertEqual(self.call("DELETE", url, headers=self.headers).code, 404)
        self.assertEqual(self.beat().code, 404)


class DiscoveryTests(EmulatorTestCase):
    def discover(self, query: str) -> Reply:
        return self.call("GET", f"{MGMT}/services?{query}", headers=self.bearer())

    def test_unknown_name(self) -> None:
        """A name never registered: HTTP 400 with service-center's errorCode 400012."""
        reply = self.discover("ser_name=nope")
        self.assertEqual((reply.code, reply.json["errorCode"]), (400, "400012"))

    def test_known_name_without_instances(self) -> None:
        """A name whose instances were all deregistered: 200 []."""
        headers = self.bearer()
        sid = self.register(service(), headers=headers).json["serInstanceId"]
        self.call("DELETE", f"{MGMT}/applications/{APP}/services/{sid}", headers=headers)
        reply = self.discover("ser_name=svc1")
        self.assertEqual((reply.code, reply.json), (200, []))

    def test_found(self) -> None:
        """
        A registered name returns its instances with endpoint (mepserver's: the gateway's
        URI) and provider.
        """
        self.register(service())
        reply = self.discover("ser_name=svc1")
        self.assertEqual(reply.code, 200)
        (record,) = self.mep.emulator.registry.services.values()
        self.assertEqual(
            record.routes, {"http://svc1.local:80/": record.routes["http://svc1.local:80/"]}
        )
        self.assertEqual(
            reply.json[0]["transportInfo"]["endpoint"]["uris"],
            [f"https://mep-api-gw.mep:8443/{record.routes['http://svc1.local:80/']}"],
        )
        self.assertEqual(reply.json[0]["_links"]["appInstanceId"], APP)

    def test_filters_or_combined(self) -> None:
        """Without ser_name, the other filters are OR-combined."""
        self.register(service("a", scopeOfLocality="MEC_SYSTEM"))
        self.register(service("b", serCategory={"id": "cat1"}))
        self.register(service("c"))
        names = {
            s["serName"]
            for s in self.discover("scope_of_locality=MEC_SYSTEM&ser_category_id=CAT1").json
        }
        self.assertEqual(names, {"a", "b"})
        self.assertEqual(len(self.discover("").json), 3)


class SubscriptionTests(EmulatorTestCase):
    def subscribe(self, criteria: Any = None, callback: str = "http://127.0.0.1:8080/cb") -> Reply:
        body = {
            "subscriptionType": "SerAvailabilityNotificationSubscription",
            "callbackReference": callback,
            "filteringCriteria": criteria or {},
        }
        return self.call("POST", f"{MGMT}/applications/{APP}/subscriptions", body, self.bearer())

    def test_created_and_deleted(self) -> None:
        """A subscription answers 201 with id and link; DELETE 204; then 404."""
        reply = self.subscribe({"serNames": ["svc1"]})
        self.assertEqual(reply.code, 201)
        href = reply.json["_links"]["self"]["href"]
        self.assertEqual(
            href,
            f"/mec_service_mgmt/v1/applications/{APP}/subscriptions/"
            f"{reply.json['subscriptionId']}",
        )
        self.assertEqual(reply.headers.getRawHeaders("Location"), [href])
        url = f"https://127.0.0.1:8443/mep{href}"
        self.assertEqual(self.call("GET", url, headers=self.bearer()).code, 200)
        self.assertEqual(self.call("DELETE", url, headers=self.bearer()).code, 204)
        self.assertEqual(self.call("DELETE", url, headers=self.bearer()).code, 404)

    def test_list(self) -> None:
        """Listing: 404 status 5 with none, the links with some."""
        url = f"{MGMT}/applications/{APP}/subscriptions"
        reply = self.call("GET", url, headers=self.bearer())
        self.assertEqual((reply.code, reply.json["status"]), (404, 5))
        self.subscribe()
        self.assertEqual(
            len(self.call("GET", url, headers=self.bearer()).json["_links"]["subscriptions"]), 1
        )

    def test_validation(self) -> None:
        """A callback that is not a URI, or a bad state filter, is refused."""
        self.assertEqual(self.subscribe(callback="string").code, 400)
        self.assertEqual(self.subscribe({"states": ["GONE"]}).code, 400)

    def test_notifications(self) -> None:
        """
        Matching subscriptions are notified of ADDED (and at once ATTRIBUTES_CHANGED, as
        mepserver writes the new instance's properties) and REMOVED, others not.
        """
        self.subscribe({"serNames": ["svc1"]})
        self.subscribe({"serNames": ["other"]}, callback="http://127.0.0.1:8080/other")
        headers = self.bearer()
        sid = self.register(service(), headers=headers).json["serInstanceId"]
        self.call("DELETE", f"{MGMT}/applications/{APP}/services/{sid}", headers=headers)
        sent = self.mep.notifier.delivered
        self.assertEqual([n["callback"] for n in sent], ["http://127.0.0.1:8080/cb"] * 3)
        changes = [n["body"]["serviceReferences"][0]["changeType"] for n in sent]
        self.assertEqual(changes, ["ADDED", "ATTRIBUTES_CHANGED", "REMOVED"])
        self.assertEqual(sent[0]["body"]["notificationType"], "SerAvailabilityNotification")

    def test_cap(self) -> None:
        """The 51st subscription of an app is refused with status 15."""
        for _ in range(50):
            self.assertEqual(self.subscribe().code, 201)
        reply = self.subscribe()
        self.assertEqual((reply.code, reply.json["status"]), (400, 15))


class AppSupportTests(EmulatorTestCase):
    def setUp(self) -> None:
        super().setUp()
        # a termination deletes the AK/SK; the token had before stays valid
        self.headers = self.bearer()

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> int:
        url = f"{SUPPORT}/applications/{APP}/{path}"
        return self.call("POST", url, body, headers or self.headers).code

    def test_confirm_ready(self) -> None:
        """READY answers 204 and is remembered; anything else 400."""
        self.assertEqual(self.post("confirm_ready", {"indication": "READY"}), 204)
        self.assertIn(APP, self.mep.emulator.registry.ready)
        self.assertEqual(self.post("confirm_ready", {"indication": "NOPE"}), 400)

    def test_termination_flow(self) -> None:
        """Without a termination 409; after one, subscribers are told and confirm is 204."""
        self.assertEqual(self.post("confirm_termination", {"operationAction": "TERMINATING"}), 409)
        self.assertEqual(
            self.post(
                "subscriptions",
                {
                    "subscriptionType": "AppTerminationNotificationSubscription",
                    "callbackReference": "http://127.0.0.1:8080/term",
                    "appInstanceId": APP,
                },
            ),
            201,
        )
        reply = self.call("POST", f"https://127.0.0.1:8443/_emulator/terminate/{APP}")
        self.assertEqual(reply.json["notified"], 1)
        note = self.mep.notifier.delivered[-1]["body"]
        self.assertEqual(note["notificationType"], "AppTerminationNotification")
        self.assertEqual(
            note["_links"]["confirmTermination"],
            f"/mep/mec_app_support/v1/applications/{APP}/confirm_termination",
        )
        self.assertEqual(self.post("confirm_termination", {"operationAction": "X"}), 400)
        self.assertEqual(self.post("confirm_termination", {"operationAction": "TERMINATING"}), 204)
        (termination,) = self.mep.emulator.registry.terminations.values()
        self.assertTrue(termination.view()["confirmed"])

    def subscribe_termination(self) -> None:
        body = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/term",
            "appInstanceId": APP,
        }
        self.assertEqual(self.post("subscriptions", body), 201)

    def test_termination_cleans_up_after_the_graceful_timeout(self) -> None:
        """
        Unconfirmed: the app's services go at once (mepserver's request deletes them), its
        subscriptions after maxGracefulTimeout (its worker's wait).
        """
        self.assertEqual(
            self.call(
                "POST", f"{MGMT}/applications/{APP}/services", service("a"), self.headers
            ).code,
            201,
        )
        self.subscribe_termination()
        headers = self.headers
        options = {"operationAction": "STOPPING", "maxGracefulTimeout": 3}
        reply = self.call("POST", f"https://127.0.0.1:8443/_emulator/terminate/{APP}", options)
        self.assertEqual((reply.json["operationAction"], reply.json["deadline"]), ("STOPPING", 3))
        self.assertEqual(self.mep.notifier.delivered[-1]["body"]["maxGracefulTimeout"], 3)
        registry = self.mep.emulator.registry
        self.assertEqual(registry.services, {})
        self.mep.advance(2.5)
        self.assertEqual(len(registry.subscriptions), 1)
        self.mep.advance(1)
        self.assertEqual((registry.services, registry.subscriptions), ({}, {}))
        state = self.call("GET", "https://127.0.0.1:8443/_emulator/state").json
        (termination,) = state["terminations"]
        self.assertFalse(termination["confirmed"])
        self.assertGreaterEqual(termination["endedAt"], 3)
        # over: a late confirmation finds nothing pending
        late = self.post("confirm_termination", {"operationAction": "STOPPING"}, headers)
        self.assertEqual(late, 409)

    def test_confirmation_ends_the_termination_at_once(self) -> None:
        """Confirmed: the clean-up comes at once, and the state says when it was confirmed."""
        self.subscribe_termination()
        self.call("POST", f"https://127.0.0.1:8443/_emulator/terminate/{APP}")
        self.mep.advance(1)
        self.assertEqual(self.post("confirm_termination", {"operationAction": "TERMINATING"}), 204)
        state = self.call("GET", "https://127.0.0.1:8443/_emulator/state").json
        (termination,) = state["terminations"]
        self.assertEqual((termination["confirmedAt"], termination["endedAt"]), (1, 1))
        self.assertEqual(self.mep.emulator.registry.subscriptions, {})


class FaultTests(EmulatorTestCase):
    def fault(self, **spec: Any) -> int:
        return self.call("POST", "https://127.0.0.1:8443/_emulator/faults", spec).code

    def test_fail_next_n(self) -> None:
        """The next N requests of a kind answer the injected status, then normal service."""
        headers = self.bearer()
        self.assertEqual(self.fault(kind="register", count=2, status=503), 201)
        self.assertEqual(self.register(service(), headers=headers).code, 503)
        self.assertEqual(self.register(service(), headers=headers).code, 503)
        self.assertEqual(self.register(service(), headers=headers).code, 201)

    def test_kind_isolated(self) -> None:
        """A fault for one kind does not touch another."""
        self.fault(kind="heartbeat", status=500)
        self.assertEqual(self.register(service()).code, 201)

    def test_delay(self) -> None:
        """A delayed request answers only once the clock has moved."""
        self.fault(kind="token", delay=5)
        d = self.mep.http.post("https://127.0.0.1:8443/mep/token", headers=self.token_headers())
        self.assertNoResult(d)
        self.mep.advance(5)
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_drop(self) -> None:
        """A dropped request closes the connection without an answer."""
        self.fault(kind="token", drop=True)
        d = self.mep.http.post("https://127.0.0.1:8443/mep/token", headers=self.token_headers())
        self.mep.http.flush()
        self.failureResultOf(d)

    def test_restart_forgets(self) -> None:
        """After a restart heartbeats answer 404 and names are unknown."""
        headers = self.bearer()
        reply = self.register(service(), headers=headers)
        self.call("POST", "https://127.0.0.1:8443/_emulator/restart")
        link = reply.json["_links"]["self"]["liveness"]
        self.assertEqual(
            self.call("PUT", f"https://127.0.0.1:8443{link}", {"state": "ACTIVE"}, headers).code,
            404,
        )

    def test_token_lifetime(self) -> None:
        """The token lifetime can be shortened at run time."""
        reply = self.call(
            "POST", "https://127.0.0.1:8443/_emulator/settings", {"token_lifetime": 5}
        )
        self.assertEqual(reply.code, 200)
        token = self.call(
            "POST", "https://127.0.0.1:8443/mep/token", headers=self.token_headers()
        ).json
        self.assertEqual(token["expires_in"], 5)

    def test_bad_control_requests(self) -> None:
        """Malformed control requests answer 400 with a reason."""
        self.assertEqual(self.fault(kind="nope", status=500), 400)
        self.assertEqual(self.fault(kind="token"), 400)
        self.assertEqual(self.fault(kind="token", status=99), 400)
        self.assertEqual(self.fault(kind="token", count=0, status=500), 400)
        reply = self.call("POST", "https://127.0.0.1:8443/_emulator/settings", raw=b"[")
        self.assertEqual(reply.code, 400)

    def test_state(self) -> None:
        """The state endpoint lists services, requests and faults, and no credential."""
        self.register(service())
        reply = self.call("GET", "https://127.0.0.1:8443/_emulator/state")
        self.assertEqual(reply.json["services"][0]["serName"], "svc1")
        self.assertIn("register", [r["kind"] for r in reply.json["requests"]])
        text = json.dumps(reply.json)
        self.assertNotIn(DEV_APP.secret_key, text)
        self.assertNotIn("Bearer", text)


class EmulatorTapTests(EmulatorTestCase):
    def options(self, *argv: str) -> tuple[Any, Any]:
        from mep_emulator import tap

        options = tap.Options()
        options.parseOptions(list(argv))
        return tap, options

    def test_bad_options_one_line(self) -> None:
        """Unusable emulator options exit with one line naming the option."""
        for argv, part in (
            (["--ak", "short"], "--ak"),
            (["--app-instance-id", "X"], "--app-instance-id"),
            (["--port", "0"], "nothing to serve"),
            (["--token-lifetime", "0"], "--token-lifetime"),
        ):
            tap, options = self.options(*argv)
            error = self.assertRaises(SystemExit, tap.validate, options)
            self.assertIn(part, error.code)

    def test_agent_environment(self) -> None:
        """The printed environment points an agent at the HTTPS (or plain) listener."""
        tap, options = self.options("--port", "18443")
        env = tap.agent_environment(options, "/x/ca.crt", 18443, None)
        self.assertEqual(
            (env["MEP_APIGW_PORT"], env["CA_CERT"], env["CA_CERT_DOMAIN_NAME"]),
            ("18443", "/x/ca.crt", "edgegallery"),
        )
        tap, options = self.options("--port", "0", "--http-port", "18000")
        env = tap.agent_environment(options, "/x/ca.crt", None, 18000)
        self.assertEqual((env["MEP_APIGW_PORT"], env["EG_PROTOCOL"]), ("18000", "http"))
