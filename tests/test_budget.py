"""
The request budget (core/budget.py) on a clock: the burst, the steady rate, the pause a 429
or 503 brings, urgent calls, and a search over answers that never makes it send faster.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.core.budget import Budget, burst_for
from mep_agent.mp1.errors import MepError
from mep_agent.mp1.gate import Pace


class BudgetTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.budget = Budget(self.clock, rate=1.0, burst=3.0, rng=lambda: 0.5)
        self.admitted: list[tuple[float, str]] = []

    def ask(
        self, operation: str = "register", urgent_until: float | None = None, later: bool = False
    ) -> Deferred[Any]:
        d = self.budget.admit(operation, Pace(urgent_until, later))
        d.addCallback(lambda _: self.admitted.append((self.clock.seconds(), operation)))
        return d

    def times(self) -> list[float]:
        return [t for t, _ in self.admitted]


class PaceTests(BudgetTestCase):
    def test_burst_then_one_a_second(self) -> None:
        """The burst goes at once; after it, one request a second, in the order asked."""
        for _ in range(6):
            self.ask()
        self.assertEqual(self.times(), [0.0, 0.0, 0.0])
        self.clock.pump([1.0] * 3)
        self.assertEqual(self.times(), [0.0, 0.0, 0.0, 1.0, 2.0, 3.0])
        self.assertEqual(self.budget.sent["paced"], 6)
        self.assertEqual(self.budget.waited, 6.0)

    def test_clean_up_waits_behind_everything_else(self) -> None:
        """A leftover's deletion queued first still goes after the registrations asked later."""
        for _ in range(3):
            self.ask()
        self.ask("deregister", later=True)
        self.ask("register")
        self.ask("register")
        self.clock.pump([1.0] * 3)
        self.assertEqual([o for _, o in self.admitted[3:]], ["register", "register", "deregister"])

    def test_heartbeats_are_not_paced(self) -> None:
        """Heartbeats go at their own schedule: never queued, never counted against it."""
        for _ in range(3):
            self.ask()
        for _ in range(10):
            self.ask("heartbeat")
        self.assertEqual(len(self.admitted), 13)
        self.assertEqual(self.budget.available(), 0.0)

    def test_a_cancelled_wait_leaves_the_queue(self) -> None:
        """A request given up while it waits (a stop) takes no turn."""
        for _ in range(3):
            self.ask()
        waiting = self.ask()
        self.ask()
        waiting.cancel()
        self.failureResultOf(waiting)
        self.clock.advance(1)
        self.assertEqual(self.times(), [0.0, 0.0, 0.0, 1.0])
        self.assertEqual(self.budget.queued, 0)

    def test_burst_grows_with_the_objects(self) -> None:
        """Eight, and two per object kept (its creation and one repair)."""
        self.assertEqual(burst_for(0), 8)
        self.assertEqual(burst_for(50), 108)
        self.budget.resize(10)
        self.assertEqual(self.budget.burst, 28)
        self.assertEqual(self.budget.available(), 3.0)  # the bucket is not refilled by it


class PauseTests(BudgetTestCase):
    def test_retry_after_pauses_everyone(self) -> None:
        """
        A 429 with Retry-After: 7 holds every paced request for 7 s; then one goes, and the
        rest at the rate: the bucket did not fill during the pause (no burst after it).
        """
        self.budget.answered("heartbeat", 429, 7.0)
        for _ in range(4):
            self.ask()
        self.clock.advance(6.9)
        self.assertEqual(self.admitted, [])
        self.clock.advance(0.1)
        for _ in range(3):
            self.clock.advance(1)
        self.assertEqual(self.times(), [7.0, 8.0, 9.0, 10.0])

    def test_429_without_retry_after_waits_for_the_next_minute(self) -> None:
        """
        Without Retry-After, a 429 lasts until the gateway's next calendar minute begins, and
        a random part of its first ten seconds (a fleet does not resume in one second).
        """
        self.clock.advance(100)  # 1:40
        self.budget.answered("register", 429, None)
        self.assertEqual(self.budget.paused_until, 120 + 5.0)  # 2:00, and rng 0.5 of 10 s

    def test_503s_pause_longer_each_time(self) -> None:
        """503s in a row: 2, 4, 8 ... up to 30 s (jittered); any other answer starts over."""
        pauses = []
        for _ in range(6):
            self.budget.answered("sync", 503, None)
            pauses.append(self.budget.paused_until - self.clock.seconds())
            self.clock.advance(pauses[-1])
        self.assertEqual(pauses, [1.0, 2.0, 4.0, 8.0, 15.0, 15.0])  # rng 0.5: half of each
        self.budget.answered("sync", 200, None)
        self.budget.answered("sync", 503, None)
        self.assertEqual(self.budget.paused_until - self.clock.seconds(), 1.0)

    def test_urgent_calls_count_after_a_long_quiet(self) -> None:
        """Long after a pause, urgent calls still draw on the bucket (it was refilled first)."""
        self.budget.answered("sync", 503, 300.0)
        self.clock.advance(1000)
        for _ in range(2):
            self.budget.admit("deregister", Pace(urgent_until=2000.0))
        self.assertEqual(self.budget.available(), 1.0)  # the full 3, less the two

    def test_a_pause_is_bounded(self) -> None:
        """Retry-After: 86400 pauses five minutes at most."""
        self.budget.answered("sync", 503, 86400.0)
        self.assertEqual(self.budget.paused_until, 300.0)

    def test_discovery_is_not_sent_in_a_pause(self) -> None:
        """The application's discovery fails at once in a pause (its cache answers)."""
        self.budget.answered("sync", 429, 30.0)
        error = self.assertRaises(MepError, self.budget.admit, "discovery", Pace())
        self.assertIn("slow down", str(error))
        self.clock.advance(30)
        self.assertTrue(self.budget.admit("discovery", Pace()).called)


class UrgentTests(BudgetTestCase):
    def test_urgent_calls_go_first_and_unpaced(self) -> None:
        """Deletions at stop take no turn: past a queue, and past an empty bucket."""
        for _ in range(5):
            self.ask()
        for _ in range(3):
            self.ask("deregister", urgent_until=5.0)
        self.assertEqual(self.times(), [0.0] * 6)
        self.assertEqual([o for _, o in self.admitted[3:]], ["deregister"] * 3)

    def test_urgent_calls_wait_out_a_pause_that_ends_in_time(self) -> None:
        """A pause of 2 s before a deadline of 5 s: the urgent call goes when it ends."""
        self.budget.answered("heartbeat", 429, 2.0)
        self.ask("deregister", urgent_until=5.0)
        self.clock.advance(1.9)
        self.assertEqual(self.admitted, [])
        self.clock.advance(0.1)
        self.assertEqual(self.times(), [2.0])

    def test_urgent_calls_go_at_the_last_moment_in_a_long_pause(self) -> None:
        """A pause past the deadline: the urgent call goes a second before the deadline."""
        self.budget.answered("heartbeat", 429, 60.0)
        self.ask("confirm_termination", urgent_until=5.0)
        self.clock.advance(4)
        self.assertEqual(self.times(), [4.0])


class NoAnswerSpeedsItUpTests(SynchronousTestCase):
    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from([200, 201, 204, 400, 404, 409, 429, 500, 501, 503, None]),
                st.one_of(st.none(), st.floats(0, 120)),
                st.floats(0, 5),
            ),
            max_size=60,
        )
    )
    def test_within_burst_plus_rate_whatever_the_answers(
        self, answers: list[tuple[int | None, float | None, float]]
    ) -> None:
        """
        Requests asked for without end, answered anything (Retry-After or not): in every
        window of t seconds at most burst + rate x t paced requests went out.
        """
        clock = Clock()
        budget = Budget(clock, rate=1.0, burst=4.0)
        sent: list[float] = []

        def ask() -> None:
            d = budget.admit("register", Pace())
            d.addCallback(lambda _: sent.append(clock.seconds()))

        for _ in range(50):
            ask()
        for status, retry, wait in answers:
            budget.answered("register", status, retry)
            ask()
            clock.advance(wait)
        clock.advance(600)
        for i, start in enumerate(sent):
            for j in range(i, len(sent)):
                self.assertLessEqual(j - i + 1, 4.0 + 1.0 * (sent[j] - start) + 1e-6)
