"""
The ETSI face's setting C{platform: advantedge} through the HTTP API: what AdvantEDGE 1.9.2
answers where it departs from MEC 011 (the interop report's differences from the emulator),
each beside what the standard face does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from treq.testing import StubTreq
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from mep_emulator import advantedge
from mep_emulator.memory import InMemoryMep

from .emulator_client import CONTROL, Reply
from .test_emulator_etsi import APP, MGMT, ROOT, SUPPORT, EtsiEmulatorTestCase
from .test_etsi import etsi_service

JSON = ["application/json; charset=UTF-8"]
NOT_FOUND = {"status": 404, "detail": "App Instance not found"}
UNKNOWN = f"{MGMT}/applications/{APP}/services/00000000000000000000000000000000"


class PlatformTestCase(EtsiEmulatorTestCase):
    """The ETSI face, the app READY and subscribed to its termination; platform advantedge."""

    platform = "advantedge"

    def setUp(self) -> None:
        super().setUp()
        if self.platform != "standard":
            self.assertEqual(self.settings(platform=self.platform).code, 200)
        body = {
            "subscriptionType": "AppTerminationNotificationSubscription",
            "callbackReference": "http://127.0.0.1:8080/term",
            "appInstanceId": APP,
        }
        url = f"{SUPPORT}/applications/{APP}/subscriptions"
        self.assertEqual(self.call("POST", url, body, self.headers).code, 201)

    def terminate(self, **options: Any) -> dict[str, Any]:
        """Start a termination; the notice the subscriber got."""
        self.terminate_app(APP, **options)
        notice: dict[str, Any] = self.mep.notifier.delivered[-1]["body"]
        return notice

    def confirm(self, action: str = "TERMINATING") -> Reply:
        url = f"{SUPPORT}/applications/{APP}/confirm_termination"
        return self.call("POST", url, {"operationAction": action}, self.headers)

    def app_calls(self) -> dict[str, Reply]:
        """One call of each kind for the app, by name."""
        services = f"{MGMT}/applications/{APP}/services"
        support = f"{SUPPORT}/applications/{APP}"
        return {
            "list services": self.call("GET", services, headers=self.headers),
            "register": self.call("POST", services, etsi_service("a", 0), self.headers),
            "one service": self.call("GET", UNKNOWN, headers=self.headers),
            "availability list": self.call(
                "GET", f"{MGMT}/applications/{APP}/subscriptions", headers=self.headers
            ),
            "termination list": self.call("GET", f"{support}/subscriptions", headers=self.headers),
            "delete subscription": self.call(
                "DELETE", f"{support}/subscriptions/x", headers=self.headers
            ),
            "confirm_ready": self.call(
                "POST", f"{support}/confirm_ready", {"indication": "READY"}, self.headers
            ),
            "confirm_termination": self.confirm(),
        }


class SettingTests(PlatformTestCase):
    platform = "standard"

    def test_standard_by_default_and_switched_at_run_time(self) -> None:
        """platform is "standard" until set; "advantedge" or "standard" only."""
        self.assertEqual(self.call("GET", f"{CONTROL}/settings").json["platform"], "standard")
        self.assertEqual(self.settings(platform="edgegallery").code, 400)
        self.assertEqual(self.settings(platform="advantedge").json["platform"], "advantedge")
        self.assertEqual(
            self.call("GET", f"{CONTROL}/state").json["settings"]["platform"], "advantedge"
        )

    def test_set_at_creation(self) -> None:
        """InMemoryMep.create(platform=...) sets it too."""
        mep = InMemoryMep.create(dialect="etsi", platform="advantedge")
        self.assertEqual(mep.emulator.platform, "advantedge")


class TerminationNoticeTests(PlatformTestCase):
    def test_ten_seconds_and_advantedges_link(self) -> None:
        """
        maxGracefulTimeout 10 (hard-coded in AdvantEDGE) when the control call names none,
        and the confirmTermination link without applications/{id}/, whatever
        termination_link says.
        """
        notice = self.terminate()
        self.assertEqual(notice["maxGracefulTimeout"], 10)
        (termination,) = self.call("GET", f"{CONTROL}/state").json["terminations"]
        self.assertEqual(termination["deadline"], termination["notifiedAt"] + 10)
        href = notice["_links"]["confirmTermination"]["href"]
        self.assertEqual(urlsplit(href).path, f"{ROOT}/mec_app_support/v1/confirm_termination")
        self.assertEqual(self.call("POST", href, {"operationAction": "TERMINATING"}).code, 404)

    def test_an_explicit_timeout_is_kept(self) -> None:
        """A maxGracefulTimeout given to /_emulator/terminate is what the notice says."""
        self.assertEqual(self.terminate(maxGracefulTimeout=3)["maxGracefulTimeout"], 3)


class StandardTerminationNoticeTests(PlatformTestCase):
    platform = "standard"

    def test_five_seconds_and_the_standard_link(self) -> None:
        """The standard face: 5 s and the app's own confirm_termination."""
        notice = self.terminate()
        self.assertEqual(notice["maxGracefulTimeout"], 5)
        href = notice["_links"]["confirmTermination"]["href"]
        self.assertTrue(href.endswith(f"/applications/{APP}/confirm_termination"), href)


class AppDeletedTests(PlatformTestCase):
    def test_confirmed_termination_deletes_the_app_instance(self) -> None:
        """
        Once confirmed, every call for the app answers AdvantEDGE's 404 (the agent's DELETE
        of its termination subscription got it on the kit), until provisioned again.
        """
        self.terminate()
        self.assertEqual(self.confirm().code, 204)
        for name, reply in self.app_calls().items():
            self.assertEqual((reply.code, reply.json), (404, NOT_FOUND), name)
            self.assertEqual(reply.headers.getRawHeaders("content-type"), JSON, name)
        self.assertEqual(self.call("GET", f"{CONTROL}/state").json["deleted"], [APP])

    def test_the_deadline_deletes_it_too(self) -> None:
        """Unconfirmed, the app instance goes at the deadline (10 s)."""
        self.terminate()
        self.mep.advance(9)
        self.assertEqual(self.app_calls()["list services"].code, 200)
        self.mep.advance(2)
        self.assertEqual(self.app_calls()["list services"].json, NOT_FOUND)

    def test_the_clean_ups_notices_arrive_once_it_is_over(self) -> None:
        """
        The REMOVED notices of the clean-up reach the app after the app instance is gone
        (on the clock's next turn), as over a network: in memory, a receiver that calls
        the platform back must not find it half-way through.
        """
        self.register_service(etsi_service("a", 0))
        self.subscribe("http://app/cb")
        seen: list[bool] = []  # whether the app instance was gone, per REMOVED notice
        emulator = self.mep.emulator

        class Receiver(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                if request.path == b"/cb":
                    seen.append(APP in emulator.deleted_apps)
                return b""

        receiver = self.mep.notifier.http = StubTreq(Receiver())
        self.terminate()
        self.confirm()
        receiver.flush()
        self.assertEqual(seen, [])
        self.mep.clock.advance(0)
        receiver.flush()
        self.assertEqual(seen, [True])

    def test_provisioning_creates_it_again_not_ready(self) -> None:
        """
        /_emulator/provision creates the app instance again, as AdvantEDGE's sandbox does:
        INITIALIZED, so 403 "not ready" until confirm_ready. A restart does not.
        """
        self.terminate()
        self.confirm()
        self.assertEqual(self.call("POST", f"{CONTROL}/restart").code, 204)
        self.assertEqual(self.app_calls()["list services"].code, 404)
        reply = self.call("POST", f"{CONTROL}/provision", {"app_instance_id": APP})
        self.assertEqual(reply.code, 200, reply.raw)
        calls = self.app_calls()
        self.assertEqual(calls["list services"].code, 403)
        self.assertEqual(calls["confirm_ready"].code, 204)
        self.assertEqual(self.app_calls()["list services"].code, 200)
        self.assertEqual(self.call("GET", f"{CONTROL}/state").json["deleted"], [])

    def test_standard_face_keeps_the_app(self) -> None:
        """The standard face: the app stays, not READY (403), and confirm_ready works."""
        self.settings(platform="standard")
        self.terminate()
        self.confirm()
        calls = self.app_calls()
        self.assertEqual(calls["list services"].code, 403)
        self.assertEqual(calls["confirm_ready"].code, 204)


class ErrorShapeTests(PlatformTestCase):
    def test_confirmation_without_termination_is_400(self) -> None:
        """confirm_termination with none pending: AdvantEDGE's 400 (standard: 409)."""
        reply = self.confirm()
        self.assertEqual(
            (reply.code, reply.json),
            (400, {"status": 400, "detail": advantedge.UNEXPECTED_CONFIRMATION}),
        )
        self.settings(platform="standard")
        self.assertEqual(self.confirm().code, 409)

    def test_problem_details_have_status_and_detail_only(self) -> None:
        """Every ProblemDetails: {"status", "detail"}, no type or title."""
        self.call("POST", f"{CONTROL}/restart")
        reply = self.call("GET", f"{MGMT}/applications/{APP}/services", headers=self.headers)
        self.assertEqual(
            reply.json,
            {"status": 403, "detail": "App Instance not ready. Waiting for AppReadyConfirmation."},
        )
        self.call(
            "POST",
            f"{SUPPORT}/applications/{APP}/confirm_ready",
            {"indication": "READY"},
            self.headers,
        )
        reply = self.call(
            "POST", f"{MGMT}/applications/{APP}/services", {"serName": "x"}, self.headers
        )
        self.assertEqual(set(reply.json), {"status", "detail"})
        self.assertEqual(self.call("GET", f"{MGMT}/services").json["status"], 401)
        self.settings(platform="standard")
        self.assertEqual(self.call("GET", f"{MGMT}/services").json["type"], "about:blank")

    def test_unknown_service_is_an_empty_404(self) -> None:
        """GET, PUT and DELETE of an unknown service id: 404, no body, JSON Content-Type."""
        body = etsi_service("a", 0)
        replies = [
            self.call("GET", UNKNOWN, headers=self.headers),
            self.call("PUT", UNKNOWN, body, self.headers),
            self.call("DELETE", UNKNOWN, headers=self.headers),
            self.call(
                "GET", f"{MGMT}/services/00000000000000000000000000000000", headers=self.headers
            ),
        ]
        for reply in replies:
            self.assertEqual((reply.code, reply.raw), (404, b""))
            self.assertEqual(reply.headers.getRawHeaders("content-type"), JSON)
        self.settings(platform="standard")
        reply = self.call("GET", UNKNOWN, headers=self.headers)
        self.assertEqual(reply.json["detail"], "no such service instance")

    def test_malformed_json_is_a_500_with_gos_message(self) -> None:
        """
        A body Go's decoder refuses: 500 with its message (POST services, PUT service,
        subscriptions, confirm_ready and confirm_termination); the standard face: 400.
        """
        services = f"{MGMT}/applications/{APP}/services"
        view = self.call("POST", services, etsi_service("a", 0), self.headers).json
        message = "invalid character 'n' looking for beginning of object key string"
        for method, url in (
            ("POST", services),
            ("PUT", view["_links"]["self"]["href"]),
            ("POST", f"{MGMT}/applications/{APP}/subscriptions"),
            ("POST", f"{SUPPORT}/applications/{APP}/subscriptions"),
            ("POST", f"{SUPPORT}/applications/{APP}/confirm_ready"),
        ):
            reply = self.call(method, url, headers=self.headers, raw=b"{not json")
            self.assertEqual((reply.code, reply.json), (500, {"status": 500, "detail": message}))
        ready = self.call(
            "POST", f"{SUPPORT}/applications/{APP}/confirm_ready", headers=self.headers, raw=b""
        )
        self.assertEqual(ready.json, {"status": 500, "detail": "EOF"})
        self.terminate()
        url = f"{SUPPORT}/applications/{APP}/confirm_termination"
        reply = self.call("POST", url, headers=self.headers, raw=b'{"operationAction"')
        self.assertEqual(reply.json, {"status": 500, "detail": "unexpected EOF"})
        self.settings(platform="standard")
        self.assertEqual(self.call("POST", services, headers=self.headers, raw=b"{x").code, 400)

    def test_app_support_list_says_rel(self) -> None:
        """The app-support list's entries carry "rel"; the availability list's do not."""
        support = self.call(
            "GET", f"{SUPPORT}/applications/{APP}/subscriptions", headers=self.headers
        ).json
        (entry,) = support["_links"]["subscriptions"]
        self.assertEqual(set(entry), {"href", "rel"})
        self.assertEqual(entry["rel"], "AppTerminationNotificationSubscription")
        self.subscribe("http://app/cb")
        availability = self.call(
            "GET", f"{MGMT}/applications/{APP}/subscriptions", headers=self.headers
        ).json
        (entry,) = availability["_links"]["subscriptions"]
        self.assertEqual(entry["subscriptionType"], "SerAvailabilityNotificationSubscription")
        self.settings(platform="standard")
        support = self.call(
            "GET", f"{SUPPORT}/applications/{APP}/subscriptions", headers=self.headers
        ).json
        self.assertIn("subscriptionType", support["_links"]["subscriptions"][0])


#: Bodies and what Go 1.19's encoding/json Decoder.Decode answered (into an interface{}):
#: AdvantEDGE's 500 details.
GO_DECODER = [
    ("", "EOF"),
    ("   ", "EOF"),
    ("{not json", "invalid character 'n' looking for beginning of object key string"),
    ("{", "unexpected EOF"),
    ('{"a"', "unexpected EOF"),
    ('{"a":', "unexpected EOF"),
    ('{"a', "unexpected EOF"),
    ('{"a" 1}', "invalid character '1' after object key"),
    ('{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
    ("[1 2]", "invalid character '2' after array element"),
    ('{"a":[1 2]}', "invalid character '2' after array element"),
    ('{"a":1,}', "invalid character '}' looking for beginning of object key string"),
    ("x", "invalid character 'x' looking for beginning of value"),
    ("'", "invalid character '\\'' looking for beginning of value"),
    ('"', "unexpected EOF"),
    ('{"a":"\u0001"}', "invalid character '\\x01' in string literal"),
    ('{"a":"\\q"}', "invalid character 'q' in string escape code"),
    ("NaN", "invalid character 'N' looking for beginning of value"),
    ("Infinity", "invalid character 'I' looking for beginning of value"),
    ("-Infinity", "invalid character 'I' in numeric literal"),
    ('{"a":NaN}', "invalid character 'N' looking for beginning of value"),
    ("{} trailing", "<nil>"),
    ('{"a":"\u00e9" x}', "invalid character 'x' after object key:value pair"),
    ("{\u00e9}", "invalid character '\u00c3' looking for beginning of object key string"),
    ('{"a":tru}', "invalid character '}' in literal true (expecting 'e')"),
    ('{"a":-x}', "invalid character 'x' in numeric literal"),
    ("{\\}", "invalid character '\\\\' looking for beginning of object key string"),
    ("[", "unexpected EOF"),
    ("[1,", "unexpected EOF"),
    ('{"a":1}}', "<nil>"),
    ('\n{"a" :\t}', "invalid character '}' looking for beginning of value"),
    ('{"a":"\\u12x4"}', "invalid character 'x' in \\u hexadecimal character escape"),
    ('{"a":"\\u12', "unexpected EOF"),
    ("[1,]", "invalid character ']' looking for beginning of value"),
    ('{"a":nul', "unexpected EOF"),
    ('{"a":fals}', "invalid character '}' in literal false (expecting 'e')"),
    ('{"a":-}', "invalid character '}' in numeric literal"),
    ("-", "unexpected EOF"),
    ('{"a":[{"b":"}" 1]}', "invalid character '1' after object key:value pair"),
    ('{"a":"\\"" 2}', "invalid character '2' after object key:value pair"),
    ('{"a":"x\n"}', "invalid character '\\n' in string literal"),
    ('{"a":"x\t"}', "invalid character '\\t' in string literal"),
    ("\u00a0{}", "invalid character '\u00c2' looking for beginning of value"),
    ('{"a":"\\\\" ,}', "invalid character '}' looking for beginning of object key string"),
    ('{"x": [true false]}', "invalid character 'f' after array element"),
    ('{"x": {"y": 1 ]}', "invalid character ']' after object key:value pair"),
    ("{,}", "invalid character ',' looking for beginning of object key string"),
    ("[}", "invalid character '}' looking for beginning of value"),
    ('{"a"::1}', "invalid character ':' looking for beginning of value"),
    ('{"a" \u00e9}', "invalid character '\u00c3' after object key"),
    ('{"a":1\u0080}', "invalid character '\u00c2' after object key:value pair"),
]


class GoDecoderTests(SynchronousTestCase):
    def test_messages_are_gos(self) -> None:
        """advantedge.decode refuses what Go's decoder refuses, with its message."""
        for body, expected in GO_DECODER:
            try:
                advantedge.decode(body.encode())
                got = "<nil>"
            except advantedge.GoJsonError as e:
                got = str(e)
            self.assertEqual(got, expected, body)

    def test_the_first_value_is_read(self) -> None:
        """As Go's Decoder, what follows the first value is never read."""
        self.assertEqual(advantedge.decode(b' {"a": [1]} trailing'), {"a": [1]})
