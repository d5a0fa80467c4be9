"""Tests for TokenKeeper: start, backoff forever, slow retry when refused, refresh, 401."""

from __future__ import annotations

from itertools import islice

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.core.errors import NoToken
from mep_agent.core.keeping import Phase
from mep_agent.core.token import REJECTED_RETRY, TokenKeeper, TokenState
from mep_agent.mp1.errors import MepError
from mep_agent.mp1.tokens import Token
from mep_agent.util import retry
from mep_agent.util.secret import Secret
from mep_agent.web.problems import problem_for
from mep_emulator.auth import LOCK_WINDOW

from .agent_harness import AgentTestCase, spec
from .helpers import capture_events


class BackoffTests(SynchronousTestCase):
    def test_schedule(self) -> None:
        """At the top of the jitter: 1, 2, 4 ... capped at 60 s."""
        delays = list(islice(retry.backoff(rng=lambda: 1.0), 9))
        self.assertEqual(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60])

    def test_full_jitter_draws_below_the_ceiling(self) -> None:
        """Each delay is drawn between 0 and its ceiling, and never exceeds the cap."""
        policy = retry.full_jitter(rng=lambda: 0.5)
        self.assertEqual([policy(n) for n in range(3)], [0.5, 1.0, 2.0])
        draws = iter([0.0, 0.999999] * 50)
        policy = retry.full_jitter(rng=lambda: next(draws))
        self.assertTrue(all(0 <= policy(n) < 60 for n in range(100)))


class TokenStartTests(AgentTestCase):
    def test_fetched_at_start(self) -> None:
        """A token is fetched as soon as the service starts."""
        self.build()
        self.start()
        self.assertEqual(self.tokens.state, TokenState.VALID)
        self.assertIsNotNone(self.tokens.current())
        self.assertEqual(self.requests("token"), [200])

    def test_transient_backoff_schedule(self) -> None:
        """
        5xx answers are retried with the back-off, never giving up; a 503 also pauses every
        request a growing while (2, 4, 8, 16, 30 s here), which the next attempt waits out.
        """
        self.fault(kind="token", status=503, count=5)
        self.build()
        self.start()
        self.advance(59.5)
        self.assertIsNone(self.tokens.current())
        self.assertEqual(self.tokens.state, TokenState.FAILING)
        self.advance(0.5)  # t = 60 = 2 + 4 + 8 + 16 + 30
        self.assertEqual(self.requests("token"), [503] * 5 + [200])
        self.assertIsNotNone(self.tokens.current())

    def test_unreachable_retried_forever(self) -> None:
        """Dropped connections and 429 are retried for as long as it takes."""
        self.fault(kind="token", drop=True, count=10)
        self.fault(kind="token", status=429, count=10)
        self.build()
        self.start()
        self.advance(20 * 60, step=5)
        self.assertIsNotNone(self.tokens.current())
        self.assertEqual(self.requests("token")[-1], 200)
        self.assertEqual(self.tokens.refresh_failures, 20)

    def test_refused_credentials_never_lock(self) -> None:
        """A wrong SK is retried slowly enough never to trip the MEP's lock-out."""
        self.build(sk="w" * 64)
        self.start()
        self.advance(3 * LOCK_WINDOW + 10, step=10)
        statuses = self.requests("token")
        self.assertEqual(statuses, [401] * len(statuses))
        self.assertGreaterEqual(len(statuses), 5)
        self.assertEqual(self.tokens.state, TokenState.REJECTED)
        self.assertGreater(REJECTED_RETRY * 2, LOCK_WINDOW)


class RefreshTests(AgentTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.emulator.token_lifetime = 100

    def test_refresh_at_80_percent(self) -> None:
        """The token is refreshed when 80 % of its lifetime has passed."""
        self.build()
        self.start()
        self.advance(79.5)
        self.assertEqual(self.emulator.tokens_issued, 1)
        self.advance(0.5)
        self.assertEqual(self.emulator.tokens_issued, 2)

    def test_very_short_lifetime(self) -> None:
        """A 2-second token is refreshed every 1.6 s and is always valid."""
        self.emulator.token_lifetime = 2
        self.build()
        self.start()
        for _ in range(10):
            self.advance(0.4, step=0.4)
            self.assertIsNotNone(self.tokens.current())

    def test_failed_refresh_retried_and_old_token_only_while_valid(self) -> None:
        """A failing refresh is retried; the old token is served until it expires, not after."""
        self.build()
        self.start()
        self.fault(kind="token", status=500, count=6)
        self.advance(99.5)
        self.assertIsNotNone(self.tokens.current())
        self.advance(0.5)
        self.assertIsNone(self.tokens.current())
        waiting = ensureDeferred(self.tokens.get(timeout=100))
        self.assertNoResult(waiting)
        self.advance(42, step=1)  # failures at 80, 81, 83, 87, 95, 111; success at 143
        self.assertNoResult(waiting)
        self.advance(1, step=1)
        self.assertEqual(self.successResultOf(waiting), self.tokens.current())
        self.assertEqual(self.requests("token").count(500), 6)

    def test_one_request_in_flight(self) -> None:
        """Repeated invalidation during a slow token request sends no second request."""
        self.build()
        self.start()
        token = self.tokens.current()
        assert token is not None
        refused = MepError("heartbeat", 401, "refused")
        self.fault(kind="token", delay=5)
        self.tokens.invalidate(token, refused)
        self.advance(1)  # a token request at most once a second
        for _ in range(5):
            self.tokens.invalidate(token, refused)
            ensureDeferred(self.tokens.get(timeout=10)).addErrback(lambda f: None)
        self.advance(5)
        self.assertEqual(len(self.requests("token")), 2)

    def test_mp1_401_refreshes_and_retries_once(self) -> None:
        """A Mp1 call answered 401 triggers a token refresh and one retry of that call."""
        self.fault(kind="register", status=401, body={"exp": "token expired"})
        self.build((spec(),))
        self.start()
        self.advance(1)  # the new token: at most one request a second
        self.assertEqual(self.requests("register"), [401, 201])
        self.assertEqual(self.emulator.tokens_issued, 2)
        self.assertEqual(self.keeper("svc1").phase, Phase.HELD)


def by_hand(
    test: SynchronousTestCase,
) -> tuple[Clock, TokenKeeper, list[Deferred[Token]]]:
    """A started keeper on a Clock whose token requests the test answers (C{answers})."""
    clock = Clock()
    answers: list[Deferred[Token]] = []

    def fetch(urgent_until: float | None) -> Deferred[Token]:
        answers.append(Deferred())
        return answers[-1]

    keeper = TokenKeeper(fetch, clock)
    keeper.startService()
    test.addCleanup(keeper.stopService)
    return clock, keeper, answers


class ExpiredTokenTests(SynchronousTestCase):
    def test_expired_before_the_refresh_is_not_called_valid(self) -> None:
        """A token that expires while its refresh is under way is "expired", never "valid"."""
        clock, keeper, answers = by_hand(self)
        answers[0].callback(Token(Secret("t"), "Bearer", 10, clock.seconds()))
        self.assertEqual(keeper.state, TokenState.VALID)
        clock.advance(8)  # the refresh goes out at 80 % of the lifetime, and hangs
        self.assertEqual(len(answers), 2)
        clock.advance(2.5)
        self.assertEqual(keeper.state, TokenState.EXPIRED)
        error = problem_for(self.assertRaises(NoToken, keeper.require))
        self.assertEqual((error.status, error.fields["state"]), (503, "expired"))
        self.assertIn("expired", error.message)
        self.assertNotIn("valid", str(error.fields))


class RetireTests(SynchronousTestCase):
    """A terminated app's token keeper (termination.py calls retire)."""

    def test_retired_asks_nothing_more(self) -> None:
        """
        After retire: no token request ever again, the token held is still served while
        it lasts, a caller waiting for a check or a token is answered at once.
        """
        clock, keeper, answers = by_hand(self)
        answers[0].callback(Token(Secret("t"), "Bearer", 100, clock.seconds()))
        check = keeper.verify()
        clock.advance(1)  # the check's request is under way
        self.assertEqual(len(answers), 2)
        keeper.retire()
        self.assertEqual(self.successResultOf(check), False)
        self.assertEqual(keeper.state, TokenState.STOPPED)
        self.assertIsNotNone(keeper.require())  # still valid: served
        clock.advance(100)
        self.assertEqual(len(answers), 2)
        self.failureResultOf(ensureDeferred(keeper.get(5)), NoToken)
        clock.pump([160] * 10)
        self.assertEqual(len(answers), 2)


class StopTests(SynchronousTestCase):
    def test_a_request_the_stop_cuts_short_is_no_failure(self) -> None:
        """
        The stop cancels the token request under way (the wire answers "timed out"): no
        failure logged or counted, and no request tried again.
        """
        clock = Clock()
        answers: list[Deferred[Token]] = []

        def timed_out(d: Deferred[Token]) -> None:  # what the wire makes of a cancellation
            d.errback(MepError("token", None, "no answer: timed out"))

        def fetch(urgent_until: float | None) -> Deferred[Token]:
            answers.append(Deferred(timed_out))
            return answers[-1]

        keeper = TokenKeeper(fetch, clock)
        keeper.startService()
        events = capture_events(self)
        keeper.stopService()
        clock.pump([1.0] * 10)
        self.assertEqual(len(answers), 1)
        self.assertEqual(keeper.refresh_failures, 0)
        self.assertEqual([e for e in events if e.get("event") == "token.failed"], [])
