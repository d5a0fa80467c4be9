"""
The token seam of the Mp1 client: MepClient takes a TokenSource, gets the token for each
call itself, and when the MEP refuses one, reports it and tries once more with a new one.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import ensureDeferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.mp1.auth import MepAuth
from mep_agent.mp1.client import MepClient, Urgency
from mep_agent.mp1.errors import MepError, NoToken, Verdict
from mep_agent.mp1.gate import Pace, retry_after
from mep_agent.mp1.http import MepHttp
from mep_agent.mp1.tokens import Token
from mep_agent.mp1.wire import MepWire
from mep_agent.util.secret import Secret
from mep_emulator.faults import Fault
from mep_emulator.memory import InMemoryMep

from .agent_harness import credentials

BASE = "https://127.0.0.1:8443"
SERVICE = {
    "serName": "seam",
    "serCategory": {"href": "/c", "id": "1", "name": "c", "version": "1"},
    "version": "1.0",
    "state": "ACTIVE",
    "transportInfo": {
        "id": "t",
        "name": "REST",
        "type": "REST_HTTP",
        "protocol": "HTTP",
        "version": "1.1",
        "endpoint": {"uris": ["http://seam.local/"]},
        "security": {},
    },
    "serializer": "JSON",
    "scopeOfLocality": "MEC_SYSTEM",
}


class ScriptedTokens:
    """A TokenSource that hands out the tokens it was given, in order, and records calls."""

    def __init__(self, *tokens: Token | Exception) -> None:
        self._tokens = list(tokens)
        self.asked: list[tuple[float, bool]] = []
        self.refused: list[Token] = []

    async def get(self, timeout: float, hurry: bool = False) -> Token:
        self.asked.append((timeout, hurry))
        token = self._tokens.pop(0)
        if isinstance(token, Exception):
            raise token
        return token

    def invalidate(self, token: Token, error: MepError) -> None:
        self.refused.append(token)


class WireTestCase(SynchronousTestCase):
    """A wire to the in-memory emulator and a good token for it."""

    def setUp(self) -> None:
        self.mep = InMemoryMep.create()
        self.wire = MepWire(
            MepHttp(self.mep.agent), self.mep.clock, BASE, "127.0.0.1:8443", credentials(), 10
        )
        d = ensureDeferred(MepAuth(self.wire).fetch_token())
        self.mep.flush()
        self.good = self.successResultOf(d)
        self.bad = Token(Secret("refused-by-the-gateway"), "Bearer", 3600, 0.0)

    def run_call(self, tokens: ScriptedTokens, call: Any) -> Any:
        client = MepClient(self.wire, tokens)
        d = ensureDeferred(call(client))
        self.mep.flush()
        return d

    def statuses(self, kind: str) -> list[int]:
        return [r.status for r in self.mep.emulator.requests if r.kind == kind]


class TokenSeamTests(WireTestCase):
    def test_refused_token_reported_and_call_made_once_more(self) -> None:
        """A 401 to the token: the source is told, and the call goes again with a new one."""
        tokens = ScriptedTokens(self.bad, self.good)
        d = self.run_call(tokens, lambda client: client.register(SERVICE))
        self.assertTrue(self.successResultOf(d).ser_instance_id)
        self.assertEqual(tokens.refused, [self.bad])
        self.assertEqual(self.statuses("register"), [401, 201])

    def test_refused_twice_is_the_callers_error(self) -> None:
        """Only one retry: a second refusal is raised (TOKEN_REFUSED), nothing more is sent."""
        tokens = ScriptedTokens(self.bad, self.bad)
        d = self.run_call(tokens, lambda client: client.register(SERVICE))
        error = self.failureResultOf(d, MepError).value
        self.assertIs(error.verdict, Verdict.TOKEN_REFUSED)
        self.assertEqual(self.statuses("register"), [401, 401])

    def test_no_token_sends_nothing(self) -> None:
        """The source's NoToken reaches the caller; the MEP is not asked."""
        tokens = ScriptedTokens(NoToken(False, "failing", "mepauth is down"))
        d = self.run_call(tokens, lambda client: client.register(SERVICE))
        self.assertEqual(self.failureResultOf(d, NoToken).value.reason, "mepauth is down")
        self.assertEqual(self.statuses("register"), [])

    def test_urgency_reaches_the_source(self) -> None:
        """A call waits for its token as long as the request timeout; a stop's in a hurry."""
        tokens = ScriptedTokens(self.good, self.good)
        self.successResultOf(self.run_call(tokens, lambda client: client.own_services()))
        d = self.run_call(tokens, lambda client: client.deregister("x", Urgency(7, hurry=True)))
        self.failureResultOf(d, MepError)  # no such instance: the MEP's 404
        self.assertEqual(tokens.asked, [(10, False), (7, True)])


class RecordingGate:
    """A RequestGate that admits everything and records what it was asked."""

    def __init__(self) -> None:
        self.admitted: list[tuple[str, float | None]] = []
        self.heard: list[tuple[str, int | None, float | None]] = []

    def admit(self, operation: str, pace: Pace) -> Any:
        self.admitted.append((operation, pace.urgent_until))
        return succeed(None)

    def answered(self, operation: str, status: int | None, retry_after: float | None) -> None:
        self.heard.append((operation, status, retry_after))


class GateSeamTests(WireTestCase):
    def test_every_exchange_is_admitted_and_heard(self) -> None:
        """The gate admits each exchange (urgent ones with their deadline), hears each answer."""
        gate = RecordingGate()
        self.wire.gate = gate
        tokens = ScriptedTokens(self.good, self.good)
        self.successResultOf(self.run_call(tokens, lambda client: client.own_services()))
        d = self.run_call(tokens, lambda client: client.deregister("x", Urgency(7, hurry=True)))
        self.failureResultOf(d, MepError)  # "x" is no serInstanceId: the MEP's 400
        self.assertEqual(gate.admitted, [("sync", None), ("deregister", 7.0)])
        self.assertEqual([(o, s) for o, s, _ in gate.heard], [("sync", 200), ("deregister", 400)])

    def test_retry_after_reaches_the_gate(self) -> None:
        """A 429's Retry-After (seconds or an HTTP date) is handed to the gate in seconds."""
        gate = RecordingGate()
        self.wire.gate = gate
        self.mep.emulator.faults.add(Fault("sync", 429, headers=(("Retry-After", "17"),)), 1)
        tokens = ScriptedTokens(self.good)
        self.failureResultOf(self.run_call(tokens, lambda client: client.own_services()), MepError)
        self.assertEqual(gate.heard, [("sync", 429, 17.0)])
        self.assertEqual(retry_after("Thu, 01 Jan 1970 00:01:00 GMT", 30.0), 30.0)
        self.assertIsNone(retry_after("soon", 0.0))
