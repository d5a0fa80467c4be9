"""Tests of the emulator's mepauth: independent verifier, token endpoint, lock-out, gateway."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mep_emulator import auth
from mep_emulator.auth import App
from mep_emulator.memory import DEV_APP, OTHER_APP

from .emulator_client import BASE, MGMT, EmulatorTestCase, service
from .helpers import sign_vectors


class VerifierVectorTests(SynchronousTestCase):
    def test_server_side_vectors(self) -> None:
        """The emulator's own verifier computes every vector's server-side signature."""
        for v in sign_vectors():
            signed = [
                ("content-type", v["content_type"]),
                ("x-sdk-date", v["x_sdk_date"]),
                ("host", v["host"]),
            ]
            canonical = auth.server_canonical_request(v["request_target"], signed)
            self.assertEqual(canonical, v["canonical_request"], v["name"])
            self.assertEqual(
                auth.server_signature(v["sk"], v["x_sdk_date"], canonical),
                v["expected_server_signature"],
                v["name"],
            )

    def test_go_query_escape(self) -> None:
        """Go's QueryEscape: unreserved kept, space as '+', the rest upper-case %XX."""
        self.assertEqual(auth.go_query_escape("a b+c/中~_.-"), "a+b%2Bc%2F%E4%B8%AD~_.-")

    def test_sdk_date_shape(self) -> None:
        """Only 16-character valid calendar dates with a literal Z are accepted."""
        self.assertTrue(auth.valid_sdk_date("20240229T235959Z"))
        for bad in ("20230229T000000Z", "2024-01-02T03:04:05Z", "20240102T030405", ""):
            self.assertFalse(auth.valid_sdk_date(bad), bad)


class TokenEndpointTests(EmulatorTestCase):
    def post_token(self, headers: dict[str, str]) -> tuple[int, Any]:
        reply = self.call("POST", f"{BASE}/mep/token", headers=headers)
        return reply.code, reply.json

    def test_valid_request(self) -> None:
        """A correctly signed request gets a Bearer token with expires_in 3600."""
        code, body = self.post_token(self.token_headers())
        self.assertEqual(code, 200)
        self.assertEqual(body["token_type"], "Bearer")
        self.assertEqual(body["expires_in"], 3600)
        self.assertEqual(body["access_token"].count("."), 2)

    def test_tampered_fields(self) -> None:
        """Every tampered part of the request is refused with mepauth's status and body."""
        good = self.token_headers()
        sig = good["Authorization"].rsplit("=", 1)[1]
        cases = [
            (
                {"Authorization": good["Authorization"].replace(sig, sig.upper())},
                401,
                "Invalid access or signature.",
            ),
            (
                {"Authorization": good["Authorization"].replace(", ", ",")},
                400,
                "Bad auth header format",
            ),
            ({"Authorization": good["Authorization"] + " x"}, 400, "Bad auth header format"),
            (
                {"Authorization": good["Authorization"].replace("Access=Q", "Access=")},
                400,
                "Bad auth header format",
            ),
            ({"x-sdk-date": "20240102T030405"}, 400, "Bad x-sdk-time format"),
            ({"x-sdk-date": "20241302T030405Z"}, 400, "Bad x-sdk-time format"),
            ({"x-sdk-date": "20240102T030406Z"}, 401, "Invalid access or signature."),
            ({"Host": "127.0.0.1:8444"}, 401, "Invalid access or signature."),
            ({"Content-Type": "text/plain"}, 401, "Invalid access or signature."),
            (
                {"Authorization": good["Authorization"].replace(sig, "0" * 64)},
                401,
                "Invalid access or signature.",
            ),
            (
                {"Authorization": good["Authorization"].replace(DEV_APP.access_key, "X" * 20)},
                401,
                "Invalid access or signature.",
            ),
        ]
        for change, status, message in cases:
            self.emulator_unlock()
            code, body = self.post_token(dict(good, **change))
            self.assertEqual((code, body), (status, message), change)
        self.emulator_unlock()
        reply = self.call("POST", f"{BASE}/mep/token?x=1", headers=good)
        self.assertEqual(reply.code, 401, "a query not signed")
        headers = dict(good)
        del headers["x-sdk-date"]
        self.emulator_unlock()
        self.assertEqual(self.post_token(headers), (400, "Bad x-sdk-time format"))

    def emulator_unlock(self) -> None:
        self.mep.emulator.lockout.unlock_all()

    def test_signature_over_other_path_target(self) -> None:
        """A signature made for the trailing-slash path is the same, and accepted."""
        code, _ = self.post_token(self.token_headers(target="/mep/token/"))
        self.assertEqual(code, 200)

    def test_wrong_method(self) -> None:
        """GET on the token route is not allowed."""
        self.assertEqual(self.call("GET", f"{BASE}/mep/token").code, 405)


class LockoutTests(EmulatorTestCase):
    def bad(self) -> int:
        return self.call("POST", f"{BASE}/mep/token", headers=self.token_headers(sk="w" * 64)).code

    def good(self) -> int:
        return self.call("POST", f"{BASE}/mep/token", headers=self.token_headers()).code

    def test_third_failure_locks_for_900s(self) -> None:
        """Three bad signatures in 300 s lock the AK for 900 s, even for good requests."""
        self.assertEqual([self.bad(), self.bad(), self.bad()], [401, 401, 401])
        self.assertEqual(self.good(), 403)
        self.assertEqual(
            self.call("POST", f"{BASE}/mep/token", headers=self.token_headers()).json,
            "Access is locked.",
        )
        self.mep.advance(899, step=100)
        self.assertEqual(self.good(), 403)
        self.mep.advance(1)
        self.assertEqual(self.good(), 200)

    def test_spread_failures_do_not_lock(self) -> None:
        """Failures more than 300 s apart never lock the AK."""
        for _ in range(6):
            self.assertEqual(self.bad(), 401)
            self.mep.advance(160, step=160)
        self.assertEqual(self.good(), 200)

    def test_success_clears_counter(self) -> None:
        """A good signature resets the failure count."""
        self.bad()
        self.bad()
        self.assertEqual(self.good(), 200)
        self.bad()
        self.assertEqual(self.good(), 200)

    def test_other_app_not_locked(self) -> None:
        """A locked AK does not affect another app."""
        for _ in range(3):
            self.bad()
        self.assertEqual(
            self.call("POST", f"{BASE}/mep/token", headers=self.token_headers(OTHER_APP)).code, 200
        )


class GatewayTests(EmulatorTestCase):
    def services_url(self, app: App = DEV_APP) -> str:
        return f"{MGMT}/applications/{app.app_instance_id}/services"

    def test_missing_token(self) -> None:
        """No bearer token: Kong's 401 Unauthorized."""
        reply = self.call("POST", self.services_url(), service())
        self.assertEqual((reply.code, reply.json), (401, {"message": "Unauthorized"}))

    def test_foreign_token(self) -> None:
        """A token signed by another MEP: 403 Invalid signature."""
        other = auth.TokenIssuer().mint(DEV_APP.app_instance_id, 0, 3600)
        reply = self.register(service(), headers={"Authorization": f"Bearer {other}"})
        self.assertEqual((reply.code, reply.json), (403, {"message": "Invalid signature"}))

    def test_garbage_token(self) -> None:
        """An undecodable token: 401 Bad token."""
        reply = self.register(service(), headers={"Authorization": "Bearer nonsense"})
        self.assertEqual(reply.code, 401)
        self.assertIn("Bad token", reply.json["message"])

    def test_expired_token(self) -> None:
        """An expired token: 401 {"exp": "token expired"}."""
        headers = self.bearer()
        self.mep.advance(3600, step=600)
        reply = self.register(service(), headers=headers)
        self.assertEqual((reply.code, reply.json), (401, {"exp": "token expired"}))

    def test_token_bound_to_app(self) -> None:
        """Another app's token on this app's path: mepserver's 401 status 11."""
        reply = self.register(service(), headers=self.bearer(OTHER_APP))
        self.assertEqual(reply.code, 401)
        self.assertEqual(reply.json["status"], 11)


_KEY = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+/=",
    min_size=1,
    max_size=64,
)
_SEGMENT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="/?#%"), max_size=8
)


class SignerVerifierAgreement(SynchronousTestCase):
    @settings(max_examples=300)
    @given(
        sk=_KEY,
        host=st.sampled_from(
            ["127.0.0.1:8443", "mep-api-gw.mep:8443", "edgegallery", "[::1]:30443"]
        ),
        seconds=st.integers(0, 4102444799),
        segments=st.lists(_SEGMENT, max_size=4),
        query=st.lists(
            st.tuples(st.text("abc xyz", min_size=1, max_size=3), st.text("0123 +", max_size=3)),
            max_size=3,
        ),
    )
    def test_independent_implementations_agree(
        self,
        sk: str,
        host: str,
        seconds: int,
        segments: list[str],
        query: list[tuple[str, str]],
    ) -> None:
        """The agent's signer and the emulator's verifier agree on random requests."""
        from urllib.parse import quote, urlencode

        from mep_agent.mp1 import signing

        path = "/" + "/".join(quote(s, safe="") for s in segments)
        target = path + ("?" + urlencode(query) if query else "")
        date = signing.sdk_date(seconds)
        headers = signing.token_request_headers("A" * 20, sk, host, date, target)
        given_sig = headers["Authorization"].rsplit("=", 1)[1]
        signed = [("content-type", headers["Content-Type"]), ("x-sdk-date", date), ("host", host)]
        canonical = auth.server_canonical_request(target, signed)
        self.assertEqual(auth.server_signature(sk, date, canonical), given_sig)
