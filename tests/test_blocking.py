"""Tests for mep_agent.web.blocking: the waiting room of blocking discovery queries."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mep_agent.web.blocking import Waiter, WaitingRoom


class WaitingRoomTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.room = WaitingRoom(self.clock)
        self.woken: list[str] = []

    def park(self, name: str, timeout: float, label: str) -> Waiter:
        return self.room.park(name, timeout, self.woken.append, label)

    def test_wake_all_wakes_one_name(self) -> None:
        """Waiters of the name wake together, once; the others keep waiting."""
        self.park("a", 30, "a1")
        self.park("a", 60, "a2")
        self.park("b", 30, "b1")
        self.room.wake_all("a")
        self.assertEqual(self.woken, ["a1", "a2"])
        self.assertEqual(len(self.room), 1)
        self.clock.advance(30)
        self.assertEqual(self.woken, ["a1", "a2", "b1"])
        self.clock.advance(60)
        self.assertEqual(len(self.woken), 3)

    def test_deadlines_in_order_on_one_timer(self) -> None:
        """Each waiter wakes at its own deadline; the room holds a single timer."""
        for timeout in (50, 10, 30, 20, 40):
            self.park("a", timeout, str(timeout))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(10)
        self.assertEqual(self.woken, ["10"])
        for _ in range(4):
            self.clock.advance(10)
        self.assertEqual(self.woken, ["10", "20", "30", "40", "50"])
        self.assertEqual((len(self.room), self.clock.getDelayedCalls()), (0, []))

    def test_earlier_deadline_rearms(self) -> None:
        """A waiter with a nearer deadline than everyone's is not woken late."""
        self.park("a", 300, "late")
        self.park("a", 1, "soon")
        self.clock.advance(1)
        self.assertEqual(self.woken, ["soon"])

    def test_leave(self) -> None:
        """A waiter whose caller left is never woken and no longer counted."""
        waiter = self.park("a", 30, "gone")
        self.park("a", 30, "stays")
        waiter.leave()
        waiter.leave()  # twice is harmless
        self.assertEqual(len(self.room), 1)
        self.room.wake_all("a")
        self.assertEqual(self.woken, ["stays"])

    def test_churn_does_not_grow(self) -> None:
        """Waiters woken early leave nothing behind that grows with their number."""
        for _ in range(10000):
            self.park("a", 300, "x")
            self.room.wake_all("a")
        self.assertEqual(len(self.room), 0)
        self.assertLess(len(self.room._deadlines), 100)

    def test_close_wakes_everyone(self) -> None:
        """Stopping answers every waiter now and leaves no timer."""
        self.park("a", 30, "a")
        self.park("b", 60, "b")
        self.room.close()
        self.assertEqual(sorted(self.woken), ["a", "b"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
